//! Files a compaction replaced are freed in steps only when nothing else
//! can read them: here a read-only open in another process holds the old
//! log slot (its pending values point into the slot's map) while the
//! writer compacts and lets the old file go. The file must stay whole
//! until the reader closes it, and the reader must read every value.

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::Stdio;

use silo_core::{Options, Silo};

use crate::common::{child_test, opts, value};

const CHILD_DIR: &str = "SILO_REPLACED_FILES_READER_DIR";

/// Keys the writer puts before the reader opens: over 7 MiB of frames, so
/// that the retired slot is replaced, not cut.
const KEYS: u64 = 60_000;

/// Reads every key through `silo`; panics on a wrong or missing value.
fn read_all(silo: &Silo) {
    for key in 0..KEYS {
        assert_eq!(
            silo.get(key).expect("get"),
            Some(value(key, 1, 100)),
            "key {key}"
        );
    }
}

/// Not a test by itself: the body of the reader process (it does nothing
/// unless the parent set its environment). Opens the store read-only,
/// reads every key, says `READ`, waits for a line, reads every key again
/// and says `DONE`.
#[test]
fn reader_child_process() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let options = Options {
        read_only: true,
        ..opts()
    };
    let silo = Silo::open(Path::new(&dir), options).expect("read-only open");
    read_all(&silo);
    println!("READ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");
    read_all(&silo);
    println!("DONE");
}

/// Descriptors of this process open on the file `observer` is open on,
/// `observer`'s own included (Linux: `/proc/self/fd`).
fn descriptors_on(observer: &silo_io::SiloFile) -> usize {
    use std::os::unix::fs::MetadataExt as _;
    let ino = observer.as_std().metadata().expect("stat").ino();
    std::fs::read_dir("/proc/self/fd")
        .expect("fd list")
        .filter_map(|entry| std::fs::metadata(entry.ok()?.path()).ok())
        .filter(|meta| meta.ino() == ino)
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn a_replaced_slot_a_reader_elsewhere_holds_stays_whole_until_it_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("s");
    let silo = Silo::open(&store, opts()).expect("open");
    for key in 0..KEYS {
        silo.put(key, &value(key, 1, 100)).expect("put");
    }
    silo.flush().expect("flush");
    let old = silo_io::SiloFile::open_read(&store.join("log-0")).expect("log-0");
    let len = old.len().expect("len");
    assert!(len > 7 << 20, "{len}");
    let mut child = child_test("replaced_files::reader_child_process")
        .env(CHILD_DIR, &store)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("reader process");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut said = |what: &str| {
        for line in lines.by_ref() {
            if line.expect("line").ends_with(what) {
                return;
            }
        }
        panic!("the reader never said {what}");
    };
    said("READ");
    // The slot is retired and replaced; the writer lets its old file go
    // on a thread of its own once the compaction is done.
    silo.compact().expect("compact");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while descriptors_on(&old) > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old slot is still open"
        );
        std::thread::yield_now();
    }
    assert_eq!(
        old.len().expect("len"),
        len,
        "a file a reader may map is never cut"
    );
    let stdin = child.stdin.as_mut().expect("stdin");
    writeln!(stdin, "go").expect("tell");
    stdin.flush().expect("flush");
    said("DONE");
    assert!(child.wait().expect("wait").success());
}
