//! What goes wrong, as one line for the user and an exit code.

use std::fmt;
use std::path::Path;

use silo_engine::EngineError;

/// Exit codes, as `silo --help` lists them.
pub(crate) mod code {
    /// A check found a problem (verify, or the demo's answers changed).
    pub(crate) const PROBLEM: u8 = 1;
    /// The command line is wrong (clap's own code).
    pub(crate) const USAGE: u8 = 2;
    /// The store cannot be used: missing, locked, corrupt, or of an unknown
    /// format version.
    pub(crate) const STORE: u8 = 3;
    /// Input is wrong: a query, a file to import or load, a key or value.
    pub(crate) const INPUT: u8 = 4;
    /// The system failed: I/O, a full disk.
    pub(crate) const SYSTEM: u8 = 5;
}

/// A failure: what to print, and the exit code.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Fail {
    pub(crate) fn input(message: impl Into<String>) -> Fail {
        Fail {
            message: message.into(),
            code: code::INPUT,
        }
    }

    pub(crate) fn store(message: impl Into<String>) -> Fail {
        Fail {
            message: message.into(),
            code: code::STORE,
        }
    }

    pub(crate) fn problem(message: impl Into<String>) -> Fail {
        Fail {
            message: message.into(),
            code: code::PROBLEM,
        }
    }

    pub(crate) fn system(message: impl Into<String>) -> Fail {
        Fail {
            message: message.into(),
            code: code::SYSTEM,
        }
    }

    /// An engine error met while working on the store in `dir`, with what
    /// to do about it.
    pub(crate) fn engine(dir: &Path, e: EngineError) -> Fail {
        let d = dir.display();
        let text = e.to_string();
        match kind_of(&e) {
            Kind::Locked => Fail::store(format!(
                "{d} is open in another process (its lock is held); close that process first, or work on a checkpoint of the store"
            )),
            Kind::Input => Fail::input(text),
            Kind::Corrupt => Fail::store(format!(
                "{d}: {text} (`silo verify {d}` reports every damaged file)"
            )),
            Kind::Full => Fail::system(format!(
                "{d}: the disk is full: {text}; free space and retry"
            )),
            Kind::System => Fail::system(format!("{d}: {text}")),
            Kind::Store => Fail::store(format!("{d}: {text}")),
        }
    }
}

/// What kind of failure an engine error is.
enum Kind {
    Locked,
    Input,
    Corrupt,
    Full,
    System,
    Store,
}

fn kind_of(e: &EngineError) -> Kind {
    match e {
        EngineError::Io(io) => kind_of_io(io),
        EngineError::Store(core) | EngineError::Shard { source: core, .. } => kind_of_core(core),
        EngineError::Import { .. }
        | EngineError::QuerySyntax { .. }
        | EngineError::InvalidArgument { .. }
        | EngineError::UnknownField { .. }
        | EngineError::FieldType { .. }
        | EngineError::SchemaMismatch { .. } => Kind::Input,
        EngineError::Corrupt { .. } | EngineError::Format { .. } | EngineError::Value { .. } => {
            Kind::Corrupt
        }
        _ => Kind::Store,
    }
}

fn kind_of_core(e: &silo_core::Error) -> Kind {
    match e {
        silo_core::Error::Io(io) => kind_of_io(io),
        silo_core::Error::Corrupt { .. } | silo_core::Error::Format { .. } => Kind::Corrupt,
        silo_core::Error::ValueTooLarge { .. } => Kind::Input,
        _ => Kind::Store,
    }
}

fn kind_of_io(e: &silo_io::IoError) -> Kind {
    match e {
        silo_io::IoError::Locked { .. } => Kind::Locked,
        // A lock byte held too long by another process: its message says so.
        silo_io::IoError::LockWait { .. } => Kind::System,
        silo_io::IoError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
            Kind::Full
        }
        silo_io::IoError::Io { .. } => Kind::System,
        _ => Kind::Corrupt,
    }
}

/// A `Result` whose error is a [`Fail`].
pub(crate) type Outcome<T = ()> = std::result::Result<T, Fail>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_their_exit_codes_with_advice() {
        let dir = Path::new("/d");
        let full = EngineError::Io(silo_io::IoError::io(
            "write",
            Path::new("/d/log-0"),
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        ));
        let f = Fail::engine(dir, full);
        assert_eq!(f.code, code::SYSTEM);
        assert!(f.message.contains("the disk is full"), "{f}");
        let locked = EngineError::Io(silo_io::IoError::Locked {
            path: "/d/LOCK".into(),
        });
        let f = Fail::engine(dir, locked);
        assert_eq!(f.code, code::STORE);
        assert!(f.message.contains("open in another process"), "{f}");
        let corrupt = EngineError::Shard {
            shard: 1,
            source: silo_core::Error::Corrupt {
                file: "/d/shard-0001/log-0".into(),
                offset: 77,
                reason: "bad".into(),
            },
        };
        let f = Fail::engine(dir, corrupt);
        assert_eq!(f.code, code::STORE);
        assert!(f.message.contains("silo verify /d"), "{f}");
        let input = EngineError::QuerySyntax {
            column: 3,
            reason: "x".into(),
        };
        assert_eq!(Fail::engine(dir, input).code, code::INPUT);
        let io = EngineError::Io(silo_io::IoError::io(
            "open",
            Path::new("/d/x"),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        ));
        assert_eq!(Fail::engine(dir, io).code, code::SYSTEM);
    }
}
