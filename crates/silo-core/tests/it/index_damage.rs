//! The index never lies: it is checked against the data file (which says
//! on its own which keys are live) by `Silo::verify`, rebuilt from it by
//! `Silo::rebuild_index`, and every page of every file kind is flipped,
//! zeroed and cut off in turn: reads give the right data or a typed error,
//! never a wrong value or a phantom key, and a key that vanishes is one
//! `verify` reports.

use std::collections::BTreeMap;
use std::path::Path;

use silo_core::{Options, Problem, Silo};

use crate::common::{file_starting, opts, value};

const PAGE: usize = 4096;

fn test_opts() -> Options {
    let mut o = opts();
    o.compact_on_close = false;
    o
}

/// A store with `keys` compacted keys (some rewritten, some moved, some
/// deleted: tombstones), and operations left in the log. Returns the model.
fn build(dir: &Path, keys: u64) -> BTreeMap<u64, Vec<u8>> {
    let silo = Silo::open(dir, test_opts()).expect("open");
    let mut model = BTreeMap::new();
    for k in 0..keys {
        let v = value(k, 1, 40 + (k % 7) as usize * 8);
        silo.put(k, &v).expect("put");
        model.insert(k, v);
    }
    silo.compact().expect("compact");
    for k in (0..keys).step_by(3) {
        let v = value(k, 2, 40 + (k % 5) as usize * 30);
        silo.put(k, &v).expect("put");
        model.insert(k, v);
    }
    for k in (1..keys).step_by(7) {
        silo.delete(k).expect("delete");
        model.remove(&k);
    }
    silo.compact().expect("compact");
    for k in (2..keys).step_by(11) {
        let v = value(k, 3, 24);
        silo.put(k, &v).expect("pending put");
        model.insert(k, v);
    }
    silo.close().expect("close");
    model
}

#[test]
fn verify_agrees_with_a_busy_store_and_counts_its_tombstones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = build(dir.path(), 600);
    let silo = Silo::open(dir.path(), test_opts()).expect("open");
    silo.compact().expect("fold the log");
    let report = silo.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.live_keys, model.len() as u64);
    assert_eq!(report.index_entries, model.len() as u64);
    assert!(report.tombstones > 0, "deletes left tombstones");
    silo.compact_cold().expect("cold");
    let report = silo.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        report.tombstones, 0,
        "a cold compaction copies live records only"
    );
}

#[test]
fn a_zeroed_index_page_is_found_by_verify_and_rebuild_restores_every_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = build(dir.path(), 2000);
    let index = file_starting(dir.path(), "index-");
    let mut bytes = std::fs::read(&index).expect("index");
    assert!(bytes.len() > 3 * PAGE);
    bytes[PAGE..2 * PAGE].fill(0);
    std::fs::write(&index, bytes).expect("write");
    let silo = Silo::open(dir.path(), test_opts()).expect("open");
    let report = silo.verify().expect("verify");
    let missing = report
        .problems
        .iter()
        .filter(|p| matches!(p, Problem::MissingFromIndex { .. }))
        .count();
    assert!(missing > 0, "the lost page went unnoticed: {report:?}");
    let live = silo.rebuild_index().expect("rebuild");
    assert!(silo.verify().expect("verify").is_ok());
    silo.compact().expect("fold the log");
    for (k, v) in &model {
        assert_eq!(silo.get(*k).expect("get").as_ref(), Some(v), "key {k}");
    }
    assert_eq!(silo.iter().count(), model.len());
    assert!(live > 0);
    drop(silo);
    let reopened = Silo::open(dir.path(), test_opts()).expect("reopen");
    assert!(reopened.verify().expect("verify").is_ok());
}

/// Reads everything back from a damaged store: `Ok(true)` if it all reads
/// right, `Ok(false)` if some key vanished (then `verify` must have said
/// so), `Err` text for a typed error; panics on a wrong value or a phantom.
fn probe(dir: &Path, model: &BTreeMap<u64, Vec<u8>>, what: &str) {
    let Ok(silo) = Silo::open(dir, test_opts()) else {
        return; // a typed error at open
    };
    let mut vanished = Vec::new();
    for (k, v) in model {
        match silo.get(*k) {
            Ok(Some(found)) => assert_eq!(&found, v, "{what}: wrong value for key {k}"),
            Ok(None) => vanished.push(*k),
            Err(_) => {}
        }
    }
    // Deleted keys (their dead records and tombstones are in the data
    // file) and keys never written must stay absent.
    let top = model.keys().last().map_or(0, |k| k + 50);
    for k in (0..top).filter(|k| !model.contains_key(k)) {
        if let Ok(Some(_)) = silo.get(k) {
            panic!("{what}: phantom key {k}");
        }
    }
    for item in silo.iter().flatten() {
        let (k, v) = item;
        assert_eq!(
            model.get(&k),
            Some(&v),
            "{what}: iter yields a wrong or phantom key {k}"
        );
    }
    if !vanished.is_empty() {
        let report = silo.verify();
        assert!(
            report.is_err() || !report.as_ref().is_ok_and(silo_core::VerifyReport::is_ok),
            "{what}: keys {vanished:?} vanished and verify saw nothing"
        );
    }
}

#[test]
fn every_page_of_every_file_flipped_zeroed_or_cut_gives_right_data_or_an_error() {
    let pristine = tempfile::tempdir().expect("tempdir");
    let model = build(pristine.path(), 800);
    let files: Vec<(String, Vec<u8>)> = std::fs::read_dir(pristine.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "LOCK")
        .map(|n| {
            let bytes = std::fs::read(pristine.path().join(&n)).expect("read");
            (n, bytes)
        })
        .collect();
    let mut cases = 0;
    for (name, bytes) in &files {
        // Pages up to the last written byte (the zero tails are sampled by
        // the byte-flip test in corruption.rs).
        let used = silo_format::last_nonzero(bytes).map_or(1, |p| p + 1);
        for page in 0..used.div_ceil(PAGE) {
            let start = page * PAGE;
            let end = (start + PAGE).min(bytes.len());
            let mut flipped = bytes.clone();
            flipped[start + (end - start) / 2] ^= 0x10;
            let mut zeroed = bytes.clone();
            zeroed[start..end].fill(0);
            let cut = bytes[..start].to_vec();
            for (how, damaged) in [("flip", flipped), ("zero", zeroed), ("cut", cut)] {
                let dir = tempfile::tempdir().expect("tempdir");
                for (other, b) in &files {
                    let b = if other == name { &damaged } else { b };
                    std::fs::write(dir.path().join(other), b).expect("copy");
                }
                probe(dir.path(), &model, &format!("{name} page {page} {how}"));
                cases += 1;
            }
        }
    }
    assert!(cases > 60, "only {cases} cases");
    eprintln!("index_damage: {cases} damaged stores probed");
}

/// Regression (review): bulk records used to carry seq 0, below the
/// tombstones an earlier delete left in the same data file, so a rebuild
/// dropped bulk-loaded keys and verify reported them wrong.
#[test]
fn a_bulk_load_over_old_tombstones_verifies_and_rebuilds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let silo = Silo::open(dir.path(), test_opts()).expect("open");
    for k in 0..10 {
        silo.put(k, b"old").expect("put");
    }
    silo.compact().expect("compact");
    for k in 0..10 {
        silo.delete(k).expect("delete");
    }
    silo.compact().expect("compact: tombstones");
    let bulk = silo.bulk_writer().expect("an empty store again");
    let mut handle = bulk.handle();
    for k in 0..10 {
        handle.put(k, b"bulk").expect("bulk put");
    }
    handle.finish().expect("handle");
    bulk.finish().expect("bulk");
    assert!(silo.verify().expect("verify").is_ok());
    assert_eq!(silo.rebuild_index().expect("rebuild"), 10);
    for k in 0..10 {
        assert_eq!(silo.get(k).expect("get").as_deref(), Some(&b"bulk"[..]));
    }
}
