//! Helpers shared by the integration tests.

use silo_core::{MergeOperator, Options, Silo};

/// Merge operator used by the tests: concatenates operands onto the value.
pub(crate) struct Concat;

impl MergeOperator for Concat {
    fn merge(
        &self,
        _key: u64,
        existing: Option<&[u8]>,
        operands: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.extend_from_slice(existing.unwrap_or_default());
        for op in operands {
            if *op == b"!bad" {
                return Err("operand is !bad".to_owned());
            }
            out.extend_from_slice(op);
        }
        Ok(())
    }
}

/// Options the tests use: the concat operator, no automatic compaction.
pub(crate) fn opts() -> Options {
    let mut o = Options::default().with_merge_operator(Concat);
    o.auto_compact = false;
    o
}

/// Opens a store in `dir` with [`opts`].
pub(crate) fn open(dir: &std::path::Path) -> Silo {
    Silo::open(dir, opts()).expect("open store")
}

/// [`opts`] whose folds stay in place however many records they rewrite
/// (by default, a fold rewriting half the live bytes or more goes into a
/// cold rewrite instead): for tests of large in-place folds.
pub(crate) fn in_place_opts() -> Options {
    let mut o = opts();
    o.thresholds.rewrite_share = f64::INFINITY;
    o
}

/// Opens a store in `dir` with [`in_place_opts`].
pub(crate) fn open_in_place(dir: &std::path::Path) -> Silo {
    Silo::open(dir, in_place_opts()).expect("open store")
}

/// A self-checking value: `key`, `version` and a filler derived from both.
pub(crate) fn value(key: u64, version: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(16));
    v.extend_from_slice(&key.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    let mut x = key ^ version.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
    while v.len() < len.max(16) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

/// Puts [`value`]`(k, version, len)` for every key of `keys`, in batches of
/// 10,000, and records each in `model`.
pub(crate) fn put_values(
    silo: &silo_core::Silo,
    keys: std::ops::Range<u64>,
    version: u64,
    len: usize,
    model: &mut std::collections::BTreeMap<u64, Vec<u8>>,
) {
    let mut b = silo_core::WriteBatch::new();
    for chunk in keys.collect::<Vec<_>>().chunks(10_000) {
        b.clear();
        for k in chunk {
            let v = value(*k, version, len);
            b.put(*k, &v);
            model.insert(*k, v);
        }
        silo.write(&b).expect("write");
    }
}

/// Asserts that `silo` holds exactly `model` (every key, by iteration),
/// that `verify` finds its data file and index agreeing, and that the
/// store counts the live records' bytes as `verify` finds them; returns
/// `verify`'s report. `case` names the case in a failure.
pub(crate) fn assert_holds(
    silo: &silo_core::Silo,
    model: &std::collections::BTreeMap<u64, Vec<u8>>,
    case: &str,
) -> silo_core::VerifyReport {
    let all: std::collections::BTreeMap<u64, Vec<u8>> =
        silo.iter().collect::<Result<_, _>>().expect("iter");
    assert!(
        all == *model,
        "{case}: {} keys, {} expected",
        all.len(),
        model.len()
    );
    let report = silo.verify().expect("verify");
    assert!(report.problems.is_empty(), "{case}: {:?}", report.problems);
    assert_eq!(
        silo.stats().live_bytes,
        report.live_bytes,
        "{case}: the live bytes counted"
    );
    report
}

/// The first file in `dir` whose name starts with `prefix` (`data-`,
/// `index-`: a store holds one of each).
pub(crate) fn file_starting(dir: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no {prefix}* file in {}", dir.display()))
}

/// The data files and indexes in `dir`, by name, sorted.
pub(crate) fn store_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("data-") || n.starts_with("index-"))
        .collect();
    names.sort();
    names
}

/// The path the next cold rewrite of the store in `dir` creates its data
/// file at (`data-<id + 1>`).
pub(crate) fn next_data_file(dir: &std::path::Path) -> std::path::PathBuf {
    let id: u64 = store_files(dir)
        .iter()
        .find_map(|n| n.strip_prefix("data-")?.parse().ok())
        .expect("a data file");
    dir.join(format!("data-{}", id + 1))
}

/// A staged cold compaction of `silo` with nothing to fold, its (empty)
/// hot step applied: ready for `prepare_cold`.
pub(crate) fn staged_cold(silo: &Silo) -> silo_core::StagedCompaction<'_> {
    let staged = silo
        .stage_compaction(true)
        .expect("stage")
        .expect("a cold compaction");
    staged
        .apply_hot(staged.plan().expect("plan"))
        .expect("nothing to fold");
    staged
}

/// Checks a value made by [`value`]: returns its version, or `None` if torn or foreign.
pub(crate) fn check(key: u64, bytes: &[u8]) -> Option<u64> {
    let k = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let version = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    (k == key && value(key, version, bytes.len()) == bytes).then_some(version)
}

/// A command that runs this test binary again with only `test` (a test
/// that does nothing unless the caller sets its environment), its output
/// not captured: the body of a child process.
pub(crate) fn child_test(test: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().expect("test binary"));
    command.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    command
}
