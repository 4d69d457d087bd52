//! Corruption: every byte of every file of a small store is flipped in
//! turn (all the bytes that hold data, and a sample of the preallocated
//! zero tails); open, get and iter must each return the right data or a
//! typed error. Never a panic, never wrong bytes.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use silo_core::{Options, Silo};

use crate::common::{file_starting, opts, put_values, staged_cold, store_files};

const KEYS: [u64; 10] = [0, 1, 2, 3, 4, 5, 6, 7, u64::MAX, 1 << 50];

fn test_opts() -> Options {
    let mut o = opts();
    o.compact_on_close = false;
    o
}

/// Builds the store: compacted records (some rewritten in place, some
/// deleted), then operations left in the log. Returns the expected contents.
fn build(dir: &Path) -> BTreeMap<u64, Vec<u8>> {
    let silo = Silo::open(dir, test_opts()).expect("open");
    let mut model = BTreeMap::new();
    for (i, k) in KEYS.iter().enumerate() {
        let v = vec![b'a' + i as u8; 10 + i * 3];
        silo.put(*k, &v).expect("put");
        model.insert(*k, v);
    }
    silo.compact().expect("compact");
    silo.put(1, b"in place").expect("put");
    model.insert(1, b"in place".to_vec());
    silo.delete(2).expect("delete");
    model.remove(&2);
    silo.compact().expect("compact");
    silo.put(3, b"pending put").expect("put");
    model.insert(3, b"pending put".to_vec());
    silo.merge(4, b"+m").expect("merge");
    model.get_mut(&4).expect("4").extend_from_slice(b"+m");
    silo.delete(5).expect("delete");
    model.remove(&5);
    silo.close().expect("close");
    model
}

/// The bytes of `file` worth flipping: everything up to the last non-zero
/// byte plus a margin, and every 509th byte of the zero tail after it. For
/// the index: its header, every byte of its used slots, and every 61st byte
/// of the empty ones.
fn offsets(name: &str, bytes: &[u8]) -> Vec<usize> {
    if name.starts_with("index-") {
        let slot = |at: usize| (at - 64) / 16;
        let used = |at: usize| {
            bytes[64 + slot(at) * 16..64 + slot(at) * 16 + 16]
                .iter()
                .any(|b| *b != 0)
        };
        return (0..bytes.len())
            .filter(|at| *at < 64 || used(*at) || at % 61 == 0)
            .collect();
    }
    let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    let dense = (used + 64).min(bytes.len());
    (0..dense)
        .chain((dense..bytes.len()).step_by(4093))
        .collect()
}

/// What opening a damaged copy and reading everything gave.
enum Probe {
    /// Open refused the store with a typed error.
    Refused,
    /// Every answer was right or a typed error.
    Fine,
    /// A wrong answer.
    Wrong(String),
}

fn probe(dir: &Path, model: &BTreeMap<u64, Vec<u8>>) -> Probe {
    let Ok(silo) = Silo::open(dir, test_opts()) else {
        return Probe::Refused;
    };
    for k in KEYS {
        if let Ok(v) = silo.get(k)
            && v.as_ref() != model.get(&k)
        {
            return Probe::Wrong(format!(
                "get({k}) returned {v:?}, expected {:?}",
                model.get(&k)
            ));
        }
    }
    for item in silo.iter() {
        if let Ok((k, v)) = item
            && model.get(&k) != Some(&v)
        {
            return Probe::Wrong(format!(
                "iter yielded key {k} = {v:?}, expected {:?}",
                model.get(&k)
            ));
        }
    }
    Probe::Fine
}

#[test]
fn flipping_any_byte_gives_right_data_or_a_typed_error() {
    // tmpfs when there is one: thousands of opens, each with a few fsyncs.
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let original = base.path().join("original");
    let model = build(&original);
    let mut files: Vec<_> = std::fs::read_dir(&original)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| n != "LOCK")
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut flips = 0;
    let mut refused = 0;
    for name in &files {
        let bytes = std::fs::read(original.join(name)).expect("read");
        for at in offsets(name, &bytes) {
            let copy = base.path().join("copy");
            let _ = std::fs::remove_dir_all(&copy);
            std::fs::create_dir(&copy).expect("mkdir");
            for other in &files {
                std::fs::copy(original.join(other), copy.join(other)).expect("copy");
            }
            let mut damaged = bytes.clone();
            damaged[at] = !damaged[at];
            std::fs::write(copy.join(name), &damaged).expect("write");
            let outcome = catch_unwind(AssertUnwindSafe(|| probe(&copy, &model)));
            match outcome {
                Err(_) => panic!("{name} byte {at}: a read panicked"),
                Ok(Probe::Wrong(wrong)) => panic!("{name} byte {at}: {wrong}"),
                Ok(Probe::Refused) => refused += 1,
                Ok(Probe::Fine) => {}
            }
            flips += 1;
        }
    }
    assert!(flips > 1000, "only {flips} flips");
    assert!(refused > 0, "no flip was ever detected at open");
}

/// The key whose value [`marked_store`] marks.
const MARKED_KEY: u64 = 1_234;

/// A store in `dir` of 3,000 compacted keys, [`MARKED_KEY`]'s value
/// `marked` (found in the data file by its bytes), left open; returns it
/// and its contents.
fn marked_store(dir: &Path, marked: &[u8]) -> (Silo, BTreeMap<u64, Vec<u8>>) {
    let silo = Silo::open(dir, test_opts()).expect("open");
    let mut model = BTreeMap::new();
    put_values(&silo, 0..3_000, 0, 50, &mut model);
    silo.put(MARKED_KEY, marked).expect("put");
    model.insert(MARKED_KEY, marked.to_vec());
    silo.compact().expect("compact");
    (silo, model)
}

/// Where `marked`'s bytes start in `bytes`.
fn find(bytes: &[u8], marked: &[u8]) -> usize {
    bytes
        .windows(marked.len())
        .position(|w| w == marked)
        .expect("the marked value is in the data file")
}

/// A cold rewrite checks every record it copies: one whose value was
/// damaged on disk fails the rewrite with a typed error naming the data
/// file, nothing is published (the store reopens on its old files, every
/// other key right), and the damage is not carried into a new file with a
/// fresh look.
#[test]
fn a_cold_rewrite_over_a_damaged_record_fails_and_publishes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marked = b"the-value-that-will-be-damaged";
    let (silo, model) = marked_store(dir.path(), marked);
    silo.close().expect("close");
    let before = store_files(dir.path());
    let data = file_starting(dir.path(), "data-");
    let mut bytes = std::fs::read(&data).expect("read");
    let at = find(&bytes, marked);
    bytes[at + 5] ^= 0x20;
    std::fs::write(&data, &bytes).expect("write");
    {
        let silo = Silo::open(dir.path(), test_opts()).expect("open");
        let err = silo
            .compact_cold()
            .expect_err("the damaged record fails the rewrite");
        let name = data
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        assert!(err.to_string().contains(&name), "{err}");
    }
    assert_eq!(
        store_files(dir.path()),
        before,
        "nothing published, no stray"
    );
    let silo = Silo::open(dir.path(), test_opts()).expect("reopen on the old files");
    assert!(
        silo.get(MARKED_KEY).is_err(),
        "the damaged record is still refused"
    );
    for (k, v) in model.iter().filter(|(k, _)| **k != MARKED_KEY) {
        assert_eq!(silo.get(*k).expect("get").as_ref(), Some(v), "key {k}");
    }
}

/// The copy of a cold rewrite checks each record against what the first
/// pass read of it: a record rewritten in between (here with a valid
/// checksum, another sequence number) fails the rewrite instead of being
/// copied under the room and place the first pass gave it.
#[test]
fn a_record_that_changes_between_a_rewrites_passes_fails_it() {
    use silo_format::{RECORD_HEADER_LEN, decode_record, encode_record};
    use silo_io::fault::{FaultPlan, install};
    let dir = tempfile::tempdir().expect("tempdir");
    let marked = b"the-value-rewritten-between-the-passes";
    let (silo, _) = marked_store(dir.path(), marked);
    let data = file_starting(dir.path(), "data-");
    let guard = install(dir.path(), FaultPlan::new().hold(silo_core::HOLD_COLD_COPY));
    let staged = staged_cold(&silo);
    std::thread::scope(|s| {
        let preparing = s.spawn(|| staged.prepare_cold());
        guard.wait_held(silo_core::HOLD_COLD_COPY, 1);
        let bytes = std::fs::read(&data).expect("read");
        let at = find(&bytes, marked) - RECORD_HEADER_LEN;
        let old = decode_record(&bytes[at..], 1 << 20).expect("the record");
        let mut new = vec![0u8; old.size()];
        encode_record(&mut new, old.key, old.seq + 1, marked, old.alloc).expect("encode");
        std::os::unix::fs::FileExt::write_all_at(
            &std::fs::OpenOptions::new()
                .write(true)
                .open(&data)
                .expect("open data file"),
            &new,
            at as u64,
        )
        .expect("rewrite the record");
        guard.release(silo_core::HOLD_COLD_COPY);
        let rewrite = preparing.join().expect("no panic").expect("prepared");
        let err = staged.finish_cold(rewrite).expect_err("the record changed");
        assert!(err.to_string().contains("changed between"), "{err}");
    });
}
