//! Exhausted descriptors and address space: a child process of this test
//! binary runs under a low `RLIMIT_NOFILE` (or `RLIMIT_AS`) set by the
//! shell's `ulimit`, and every call that needs more than the limit allows
//! must fail with a clear, typed error (`EMFILE`, `ENOMEM`) — never a panic
//! or a signal — and lose nothing: the parent reopens the store without the
//! limit and finds every write the child had acknowledged.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use silo_engine::{Engine, EngineError};

use crate::common::{contents, opts};

const CHILD_DIR: &str = "SILO_LIMITS_CHILD_DIR";
const CHILD_KIND: &str = "SILO_LIMITS_CHILD_KIND";
/// `EMFILE`, `ENFILE` and `ENOMEM` on Linux.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
const ENOMEM: i32 = 12;
/// The child's descriptor limit, and the descriptor numbers it leaves free
/// below it (padding the rest): room for a two-shard engine's 12 and one
/// more, which is not enough for a checkpoint's copy beside them, nor for
/// a sixteen-shard engine. The limit leaves room for what the child
/// inherits (a terminal, a CI runner, cargo's jobserver, a mutation
/// tester: 3 to 9 descriptors seen).
const DESCRIPTOR_LIMIT: usize = 32;
const DESCRIPTOR_ROOM: usize = 13;

/// The error of a call made under the limit: it must name the exhausted
/// resource. Returns whether the call failed.
fn check<T>(what: &str, r: Result<T, EngineError>, out: &mut impl std::io::Write) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            let code = e.raw_os_error();
            let clear = matches!(code, Some(EMFILE | ENFILE | ENOMEM))
                || e.to_string().contains("Too many open files")
                || e.to_string().contains("Cannot allocate memory");
            assert!(clear, "{what}: not a clear resource error: {e}");
            writeln!(out, "LIMITED {what}: {e}").expect("stdout");
            None
        }
    }
}

/// Not a test by itself: the body of the child process (it does nothing
/// unless the parent set its environment).
#[test]
fn limits_child_process() {
    let (Ok(dir), Ok(kind)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_KIND)) else {
        return;
    };
    let dir = Path::new(&dir);
    let mut out = std::io::stdout().lock();
    // Held open to the end of the child: the padding below.
    let mut padding = Vec::new();
    if kind == "nofile" {
        // How many descriptors a process starts with depends on who ran it:
        // pad the numbers below the limit (where the kernel hands out new
        // ones, lowest first) so that the same room is left everywhere.
        let used = descriptors_below(DESCRIPTOR_LIMIT);
        assert!(
            used + DESCRIPTOR_ROOM <= DESCRIPTOR_LIMIT,
            "the child started with {used} descriptors below {DESCRIPTOR_LIMIT}, too many to leave {DESCRIPTOR_ROOM} free"
        );
        for _ in used..DESCRIPTOR_LIMIT - DESCRIPTOR_ROOM {
            padding.push(std::fs::File::open("/dev/null").expect("open /dev/null"));
        }
        assert_eq!(
            descriptors_below(DESCRIPTOR_LIMIT),
            DESCRIPTOR_LIMIT - DESCRIPTOR_ROOM
        );
        // 16 shards need 82 descriptors: more than the limit allows.
        assert!(
            check(
                "open 16 shards",
                Engine::open(dir.join("wide"), opts(16)),
                &mut out
            )
            .is_none(),
            "16 shards opened under the descriptor limit"
        );
    }
    let Some(db) = check("open", Engine::open(dir.join("db"), opts(2)), &mut out) else {
        return;
    };
    let mut acked = 0u64;
    let value = vec![7u8; if kind == "nofile" { 200 } else { 64 << 10 }];
    for k in 0..4000u64 {
        if check("put", db.put(k, &value), &mut out).is_none() {
            break;
        }
        acked = k + 1;
        writeln!(out, "ACK {k}").expect("stdout");
        if k % 500 == 499 {
            // Compactions and checkpoints open files of their own.
            let _ = check("compact", db.compact(), &mut out);
            let cp = dir.join(format!("cp-{k}"));
            let _ = check("checkpoint", db.checkpoint(&cp), &mut out);
        }
    }
    writeln!(out, "DONE {acked}").expect("stdout");
    drop(padding);
}

/// The descriptors this process has open with numbers below `limit` (the
/// directory listing's own descriptor not counted: it takes the lowest
/// free number, below the limit while any is free there).
fn descriptors_below(limit: usize) -> usize {
    let listed = std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
        .filter(|fd| *fd < limit)
        .count();
    listed - 1
}

/// Runs the child under `ulimit -<flag> <limit>`; returns its stdout.
fn run_child(dir: &Path, kind: &str, flag: &str, limit: u64) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -{flag} {limit} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args([
            "--exact",
            "limits::limits_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_KIND, kind)
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child under ulimit -{flag} {limit} failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every key the child acknowledged is in the store, with its value.
fn check_acknowledged(dir: &Path, stdout: &str) {
    let acked: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ACK ")?.parse().ok())
        .collect();
    let db = Engine::open(dir.join("db"), opts(2)).expect("reopen without the limit");
    let found: BTreeMap<u64, Vec<u8>> = contents(&db);
    for k in &acked {
        let v = found
            .get(k)
            .unwrap_or_else(|| panic!("acknowledged key {k} lost"));
        assert!(
            v.len() >= 200 && v.iter().all(|b| *b == 7),
            "key {k}: wrong value"
        );
    }
    db.put(u64::MAX, b"after")
        .expect("writes go on without the limit");
}

#[test]
fn too_few_descriptors_give_a_clear_error_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = run_child(dir.path(), "nofile", "n", DESCRIPTOR_LIMIT as u64);
    assert!(stdout.contains("LIMITED open 16 shards"), "{stdout}");
    assert!(
        stdout.contains("LIMITED checkpoint") || stdout.contains("LIMITED compact"),
        "{stdout}"
    );
    assert!(stdout.contains("DONE"), "{stdout}");
    check_acknowledged(dir.path(), &stdout);
}

#[test]
fn too_little_address_space_gives_a_clear_error_and_loses_nothing() {
    if let Ok(s) = std::env::var("SILO_SANITIZER") {
        // The sanitizers reserve terabytes of shadow address space up
        // front: no process of theirs starts under an address-space limit.
        println!("under {s}: an address-space limit cannot apply; not run");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // 400 MB of address space: the binary, its threads and a store's
    // first maps fit, but not 250 MB of values mapped beside their
    // compaction's new data file.
    let stdout = run_child(dir.path(), "as", "v", 400_000);
    assert!(stdout.contains("LIMITED"), "{stdout}");
    assert!(stdout.contains("Cannot allocate memory"), "{stdout}");
    assert!(stdout.contains("DONE"), "{stdout}");
    check_acknowledged(dir.path(), &stdout);
}
