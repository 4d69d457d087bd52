//! `DirLock`: a second acquire of the same directory fails with `Locked`,
//! in this process and in another.

use std::process::Command;

use silo_io::{DirLock, IoError};

/// Set to a directory when this binary runs as the child of
/// [`another_process_is_refused_while_held`].
const CHILD_DIR: &str = "SILO_IO_LOCK_CHILD_DIR";
/// `locked` or `free`: what the child expects to find.
const CHILD_EXPECT: &str = "SILO_IO_LOCK_CHILD_EXPECT";

#[test]
fn second_acquire_in_the_same_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = DirLock::acquire(dir.path()).unwrap();
    let err = DirLock::acquire(dir.path()).unwrap_err();
    assert!(
        matches!(&err, IoError::Locked { path } if path == &dir.path().join("LOCK")),
        "{err}"
    );
    drop(first);
    let again = DirLock::acquire(dir.path()).unwrap();
    assert!(dir.path().join("LOCK").exists());
    drop(again);
}

#[test]
fn locks_on_different_directories_are_independent() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let _la = DirLock::acquire(a.path()).unwrap();
    let _lb = DirLock::acquire(b.path()).unwrap();
}

/// Runs only as a child process (does nothing in a normal test run).
#[test]
fn child_helper() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let expect = std::env::var(CHILD_EXPECT).unwrap();
    let result = DirLock::acquire(dir.as_ref());
    match expect.as_str() {
        "locked" => assert!(matches!(result, Err(IoError::Locked { .. })), "{result:?}"),
        _ => assert!(result.is_ok(), "{result:?}"),
    }
}

fn run_child(dir: &std::path::Path, expect: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock::child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_EXPECT, expect)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child expecting {expect} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn another_process_is_refused_while_held() {
    let dir = tempfile::tempdir().unwrap();
    let lock = DirLock::acquire(dir.path()).unwrap();
    run_child(dir.path(), "locked");
    drop(lock);
    run_child(dir.path(), "free");
}

/// A child process is started by forking, and until it runs its program it
/// holds a copy of every descriptor of its parent. A lock that lived on in
/// such a copy would refuse a reopen right after a close; the lock must
/// belong to the process, not to the descriptor.
#[test]
fn a_released_lock_can_be_taken_at_once_while_other_threads_spawn_processes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let status = Command::new("true").status().expect("spawn true");
                assert!(status.success());
            }
        });
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for round in 0..3000 {
                let lock =
                    DirLock::acquire(dir.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
                drop(lock);
            }
        }));
        done.store(true, Ordering::Relaxed);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}
