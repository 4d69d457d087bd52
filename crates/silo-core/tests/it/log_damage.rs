//! Damaged and torn log slots at open: what lies past a slot's durable mark
//! is a torn tail (cut, counted, open succeeds); damage before the mark is
//! a typed error naming the file and offset, unless `recover_corrupt_log`,
//! which then cuts the file and lowers the mark so that nothing old can
//! follow new appends and later plain opens succeed.

use std::path::{Path, PathBuf};

use silo_core::{Durability, Error, Options, Silo};
use silo_format::{HEADER_LEN, frame_len};

use crate::common::opts;

const VALUE_LEN: usize = 40;

fn val(key: u64) -> Vec<u8> {
    let mut v = format!("value-{key}").into_bytes();
    v.resize(VALUE_LEN, b'.');
    v
}

fn sync_opts() -> Options {
    Options {
        durability: Durability::Sync,
        compact_on_close: false,
        ..opts()
    }
}

fn recovering() -> Options {
    Options {
        recover_corrupt_log: true,
        ..sync_opts()
    }
}

/// What a process kill leaves: every file as the page cache holds it
/// (`LOCK` aside: closing a copy's source descriptor would release the live
/// store's lock; a killed process's lock is gone anyway).
fn kill_image(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "LOCK" {
            continue;
        }
        std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
    }
}

/// Offset in `log-0` of the `n`-th frame of puts of [`val`]s.
fn frame_at(n: usize) -> usize {
    HEADER_LEN + n * frame_len(VALUE_LEN)
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// A closed store whose `log-0` holds puts of keys 0..10, all synced.
fn closed_store(dir: &Path) -> PathBuf {
    let silo = Silo::open(dir, sync_opts()).unwrap();
    for k in 0..10 {
        silo.put(k, &val(k)).unwrap();
    }
    silo.close().unwrap();
    dir.join("log-0")
}

#[test]
fn a_flipped_byte_before_the_durable_mark_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = closed_store(dir.path());
    flip(&log, frame_at(5) + 20);
    match Silo::open(dir.path(), sync_opts()) {
        Err(Error::Corrupt { file, offset, .. }) => {
            assert_eq!(file, log);
            assert_eq!(offset, frame_at(5) as u64);
        }
        other => panic!("expected Corrupt naming log-0, got {other:?}"),
    }
}

#[test]
fn a_recovered_cut_cuts_the_file_so_old_frames_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = closed_store(dir.path());
    flip(&log, frame_at(5) + 20);
    let silo = Silo::open(dir.path(), recovering()).unwrap();
    assert!(
        silo.stats().torn_tail_bytes > 0,
        "the recovered cut is counted"
    );
    assert_eq!(silo.get(4).unwrap(), Some(val(4)));
    assert_eq!(
        silo.get(6).unwrap(),
        None,
        "keys after the damage are dropped"
    );
    silo.put(6, b"NEW-VALUE-6").unwrap();
    // A crash now (the page cache survives), then a plain open.
    let crashed = tempfile::tempdir().unwrap();
    kill_image(dir.path(), crashed.path());
    drop(silo);
    let reopened = Silo::open(crashed.path(), sync_opts()).unwrap();
    assert_eq!(
        reopened.get(6).unwrap().as_deref(),
        Some(&b"NEW-VALUE-6"[..])
    );
    assert_eq!(reopened.get(7).unwrap(), None, "an old frame came back");
    assert_eq!(reopened.get(4).unwrap(), Some(val(4)));
}

#[test]
fn after_a_recovered_cut_a_plain_open_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let log = closed_store(dir.path());
    flip(&log, frame_at(3) + 20);
    Silo::open(dir.path(), recovering())
        .unwrap()
        .close()
        .unwrap();
    let silo = Silo::open(dir.path(), sync_opts()).expect("the mark was lowered");
    assert_eq!(silo.get(2).unwrap(), Some(val(2)));
    assert_eq!(silo.get(3).unwrap(), None);
}

#[test]
fn a_zeroed_page_then_valid_frames_in_an_unsynced_log_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        compact_on_close: false,
        ..opts()
    };
    let silo = Silo::open(dir.path(), o.clone()).unwrap();
    // Buffered and never flushed: nothing is durable, all of it may go.
    for k in 0..400 {
        silo.put(k, &val(k)).unwrap();
    }
    let crashed = tempfile::tempdir().unwrap();
    kill_image(dir.path(), crashed.path());
    drop(silo);
    let log = crashed.path().join("log-0");
    let mut bytes = std::fs::read(&log).unwrap();
    // Zero the second page of the file, as out-of-order writeback may leave it.
    bytes[4096..8192].fill(0);
    std::fs::write(&log, bytes).unwrap();
    let reopened = Silo::open(crashed.path(), o).expect("a torn tail, not damage");
    assert!(reopened.stats().torn_tail_bytes > 0);
    let first_lost = (4096 - HEADER_LEN) / frame_len(VALUE_LEN);
    for k in 0..first_lost as u64 {
        assert_eq!(
            reopened.get(k).unwrap(),
            Some(val(k)),
            "key {k} before the gap"
        );
    }
    for k in first_lost as u64..400 {
        assert_eq!(reopened.get(k).unwrap(), None, "key {k} after the gap");
    }
    // The torn tail was cut off the file: new frames of the same size,
    // written over the gap and past it, are never followed by an old one
    // lined up behind them.
    for k in 1000..1200 {
        reopened.put(k, &val(k)).unwrap();
    }
    let again = tempfile::tempdir().unwrap();
    kill_image(crashed.path(), again.path());
    drop(reopened);
    let last = Silo::open(again.path(), opts()).unwrap();
    for k in first_lost as u64..400 {
        assert_eq!(
            last.get(k).unwrap(),
            None,
            "an old frame of key {k} came back"
        );
    }
    for k in 1000..1200 {
        assert_eq!(last.get(k).unwrap(), Some(val(k)), "key {k}");
    }
}

/// The newer log slot must not start below the end of the older one: a
/// slot header saying otherwise is damage, not an order to replay in.
#[test]
fn a_newer_slot_starting_inside_the_older_one_is_corruption() {
    use silo_format::{FileHeader, FileKind, Tag, encode_frame};
    let dir = tempfile::tempdir().unwrap();
    let log0 = closed_store(dir.path());
    assert!(log0.exists());
    // log-0 holds sequence numbers 1..=10; give log-1 a later generation
    // but a base inside that range, and one valid frame.
    let header = FileHeader {
        generation: 2,
        base_seq: 4,
        ..FileHeader::new(FileKind::OpsLog)
    };
    let mut bytes = header.encode().to_vec();
    let at = bytes.len();
    bytes.resize(at + frame_len(3), 0);
    encode_frame(&mut bytes[at..], Tag::Put, 77, b"new").unwrap();
    std::fs::write(dir.path().join("log-1"), bytes).unwrap();
    match Silo::open(dir.path(), sync_opts()) {
        Err(Error::Corrupt { file, .. }) => assert_eq!(file, dir.path().join("log-1")),
        other => panic!("expected Corrupt naming log-1, got {other:?}"),
    }
}

/// The synced-length mark of each slot file, as its header says.
fn marks(dir: &Path) -> [u64; 2] {
    [0, 1].map(|n| {
        let bytes = std::fs::read(dir.join(format!("log-{n}"))).unwrap();
        silo_format::FileHeader::decode(&bytes, silo_format::FileKind::OpsLog)
            .unwrap()
            .param_a
    })
}

/// Sync writes move the mark along with them, in steps of at most 1 MiB
/// behind (no flush or close needed); a clean close sets it exactly and
/// trims each slot to its frames.
#[test]
fn the_durable_mark_follows_sync_writes_and_a_close_trims_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let silo = Silo::open(dir.path(), sync_opts()).unwrap();
    let value = vec![7u8; 4000];
    let frames = 800u64;
    for k in 0..frames {
        silo.put(k, &value).unwrap();
    }
    let written = HEADER_LEN as u64 + frames * frame_len(value.len()) as u64;
    let mark = marks(dir.path()).into_iter().max().unwrap();
    assert!(
        mark + (1 << 20) >= written && mark <= written,
        "mark {mark} for {written} bytes synced"
    );
    silo.close().unwrap();
    for (n, mark) in marks(dir.path()).into_iter().enumerate() {
        let len = std::fs::metadata(dir.path().join(format!("log-{n}")))
            .unwrap()
            .len();
        assert!(
            len == mark || mark == 0,
            "log-{n}: {len} bytes, mark {mark}"
        );
        if mark != 0 {
            assert_eq!(len, written, "log-{n} ends at its last frame");
        }
    }
}
