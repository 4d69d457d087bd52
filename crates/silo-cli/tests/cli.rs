//! The built `silo` binary, driven as a user would: every verb, its output
//! and its exit code, good stores and bad input.

use std::path::Path;
use std::process::{Command, Output};

use silo_engine::{Engine, EngineOptions};

fn silo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(args)
        .output()
        .expect("the silo binary runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Runs `silo args`, expecting exit code `code` (an error: one line on
/// standard error, never a panic); returns (stdout, stderr).
fn run(args: &[&str], code: i32) -> (String, String) {
    let out = silo(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(code),
        "silo {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    if code != 0 {
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "an error is one line: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{stderr}"
        );
    }
    (stdout, stderr)
}

/// Runs `silo args`, expecting exit code `code`; returns stdout.
fn expect(args: &[&str], code: i32) -> String {
    run(args, code).0
}

/// Runs `silo args` expecting failure with `code`; returns stderr.
fn fails(args: &[&str], code: i32) -> String {
    run(args, code).1
}

fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

const SCHEMA: &str = r#"
[[field]]
name = "user"
type = "u64"
filter = true

[[field]]
name = "tags"
type = "tags"
filter = true

[[field]]
name = "score"
type = "f64"
sort = true

[[field]]
name = "title"
type = "str"
"#;

/// Documents 0..200: user id % 7, tags {id % 10, id % 3}, score (id * 37) % 101.
fn write_docs(path: &Path) {
    let mut text = String::new();
    for id in 0..200u32 {
        text.push_str(&format!(
            "{{\"id\": {id}, \"user\": {}, \"tags\": [{}, {}], \"score\": {}.5, \"title\": \"doc {id}\"}}\n",
            id % 7,
            id % 10,
            id % 3,
            (id * 37) % 101
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// Where an index, its JSON lines and its schema go in `dir`.
struct Imported {
    store: std::path::PathBuf,
    docs: std::path::PathBuf,
    schema: std::path::PathBuf,
}

/// The documents and schema written in `dir`, the index not yet made.
fn inputs(dir: &Path) -> Imported {
    let i = Imported {
        store: dir.join("idx"),
        docs: dir.join("docs.jsonl"),
        schema: dir.join("schema.toml"),
    };
    write_docs(&i.docs);
    std::fs::write(&i.schema, SCHEMA).unwrap();
    i
}

/// [`inputs`], imported by `silo import`.
fn imported(dir: &Path) -> Imported {
    let i = inputs(dir);
    expect(
        &["import", p(&i.store), p(&i.docs), "--schema", p(&i.schema)],
        0,
    );
    i
}

fn ids_of(lines: &str) -> Vec<u32> {
    lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            u32::try_from(v["id"].as_u64().unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn import_then_query_answers_like_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let Imported {
        store,
        docs,
        schema,
    } = inputs(dir.path());
    let out = expect(
        &[
            "import",
            p(&store),
            p(&docs),
            "--schema",
            p(&schema),
            "--threads",
            "2",
        ],
        0,
    );
    assert!(out.contains("imported 200 documents"), "{out}");
    let got = expect(
        &[
            "query",
            p(&store),
            "tags = 5 and user = 3",
            "--sort",
            "score",
            "--desc",
            "--limit",
            "10",
        ],
        0,
    );
    let mut want: Vec<(u32, u32)> = (0..200u32)
        .filter(|id| (id % 10 == 5 || id % 3 == 5) && id % 7 == 3)
        .map(|id| (id, (id * 37) % 101))
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let want: Vec<u32> = want.into_iter().take(10).map(|(id, _)| id).collect();
    assert!(!want.is_empty());
    assert_eq!(ids_of(&got), want);
    // Every stored field comes back.
    let first: serde_json::Value = serde_json::from_str(got.lines().next().unwrap()).unwrap();
    assert_eq!(first["title"], format!("doc {}", want[0]));
    let count = expect(
        &["query", p(&store), "user in (1, 2) or tags = 9", "--count"],
        0,
    );
    let want = (0..200u32)
        .filter(|id| matches!(id % 7, 1 | 2) || id % 10 == 9)
        .count();
    assert_eq!(count.trim(), want.to_string());
    // Unsorted: id order, limited.
    let got = expect(&["query", p(&store), "score >= 100", "--limit", "3"], 0);
    let want: Vec<u32> = (0..200u32)
        .filter(|id| (id * 37) % 101 >= 100)
        .take(3)
        .collect();
    assert_eq!(ids_of(&got), want);
}

#[test]
fn bad_input_gets_one_line_and_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let Imported {
        store,
        docs,
        schema,
    } = imported(dir.path());

    // A query syntax error names its column.
    let err = fails(&["query", p(&store), "user = 3 and tags ="], 4);
    assert!(err.contains("column 20"), "{err}");
    let err = fails(&["query", p(&store), "colour = red"], 4);
    assert!(err.contains("colour") && err.contains("column 1"), "{err}");
    // A bad line of an import names it, and nothing is written.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"id\": 500, \"user\": 1}\n{\"id\": 501, \"user\": \"x\"}\n",
    )
    .unwrap();
    let err = fails(&["import", p(&store), p(&bad), "--schema", p(&schema)], 4);
    assert!(err.contains("line 2") && err.contains("user"), "{err}");
    assert_eq!(
        expect(&["query", p(&store), "all", "--count"], 0).trim(),
        "200"
    );
    // A bad schema.
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "[[field]]\nname = \"a\"\ntype = \"int\"\n").unwrap();
    let err = fails(
        &[
            "import",
            p(&dir.path().join("other")),
            p(&docs),
            "--schema",
            p(&toml),
        ],
        4,
    );
    assert!(err.contains("unknown type `int`"), "{err}");
    // No such store, or not a store.
    let err = fails(&["stats", p(&dir.path().join("nowhere"))], 3);
    assert!(err.contains("does not exist"), "{err}");
    let err = fails(&["stats", p(dir.path())], 3);
    assert!(err.contains("no silo store"), "{err}");
    // Bad keys and a missing key.
    fails(&["get", p(&store), "x3"], 4);
    fails(&["get", p(&store), "4294967296"], 4);
    fails(&["get", p(&store), "99999"], 1);
    // A usage error is clap's, with code 2.
    let out = silo(&["query", p(&store)]);
    assert_eq!(out.status.code(), Some(2));
    // A plain store is not an index.
    let kv = dir.path().join("kv");
    expect(&["put", p(&kv), "1", "one"], 0);
    let err = fails(&["query", p(&kv), "all"], 4);
    assert!(err.contains("not an index"), "{err}");
}

#[test]
fn a_store_open_in_another_process_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("kv");
    expect(&["put", p(&store), "7", "seven"], 0);
    // This test process holds the store open: the silo process cannot.
    let engine = Engine::open(&store, EngineOptions::default()).unwrap();
    for args in [
        vec!["stats", p(&store)],
        vec!["get", p(&store), "7"],
        vec!["put", p(&store), "8", "eight"],
    ] {
        let err = fails(&args, 3);
        assert!(err.contains("open in another process"), "{args:?}: {err}");
    }
    engine.close().unwrap();
    assert_eq!(expect(&["get", p(&store), "7"], 0), "seven\n");
}

#[test]
fn put_get_del_and_dump_load_round_trip_a_plain_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("kv");
    expect(&["put", p(&store), "1", "one"], 0);
    expect(&["put", p(&store), "0x10", "sixteen"], 0);
    expect(&["put", p(&store), "3", "three"], 0);
    expect(&["del", p(&store), "3"], 0);
    assert_eq!(expect(&["get", p(&store), "16"], 0), "sixteen\n");
    fails(&["get", p(&store), "3"], 1);
    // A value that is not UTF-8, written through the library.
    {
        let engine = Engine::open(&store, silo_options()).unwrap();
        engine.put(u64::MAX, &[0, 159, 146, 150]).unwrap();
        engine.close().unwrap();
    }
    let dump = expect(&["dump", p(&store)], 0);
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 4, "{dump}");
    assert!(lines[0].contains("\"kind\":\"kv\""), "{dump}");
    let mut rest = lines[1..].to_vec();
    rest.sort_unstable();
    assert_eq!(
        rest,
        [
            r#"{"hex":"009f9296","key":18446744073709551615}"#,
            r#"{"key":1,"value":"one"}"#,
            r#"{"key":16,"value":"sixteen"}"#,
        ]
    );
    let file = dir.path().join("dump.jsonl");
    std::fs::write(&file, &dump).unwrap();
    let copy = dir.path().join("copy");
    expect(&["load", p(&copy), p(&file)], 0);
    assert_eq!(expect(&["dump", p(&copy)], 0), dump);
    // Loading into a store that exists is refused; a bad dump line names
    // itself and leaves no store behind.
    fails(&["load", p(&copy), p(&file)], 4);
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{}\n{{\"key\": 1}}\n", lines[0])).unwrap();
    let err = fails(&["load", p(&dir.path().join("new")), p(&bad)], 4);
    assert!(err.contains("line 2"), "{err}");
    assert!(!dir.path().join("new").exists());
}

fn silo_options() -> EngineOptions {
    let mut o = EngineOptions::default();
    o.store.merge_operator = Some(std::sync::Arc::new(silo_engine::LayerOperator));
    o
}

#[test]
fn an_index_dumps_loads_checkpoints_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported(dir.path()).store;
    expect(&["del", p(&store), "5"], 0);
    expect(&["put", p(&store), "6", r#"{"user": 99, "tags": [1]}"#], 0);
    let doc6: serde_json::Value =
        serde_json::from_str(&expect(&["get", p(&store), "6"], 0)).unwrap();
    assert_eq!(doc6, serde_json::json!({"id": 6, "user": 99, "tags": [1]}));
    assert_eq!(
        expect(&["query", p(&store), "user = 99", "--count"], 0).trim(),
        "1"
    );
    let dump = expect(&["dump", p(&store)], 0);
    assert_eq!(dump.lines().count(), 1 + 199);
    let file = dir.path().join("dump.jsonl");
    std::fs::write(&file, &dump).unwrap();
    let copy = dir.path().join("copy");
    expect(&["load", p(&copy), p(&file)], 0);
    assert_eq!(expect(&["dump", p(&copy)], 0), dump);
    expect(&["compact", p(&copy), "--cold", "--threads", "2"], 0);
    assert_eq!(expect(&["dump", p(&copy)], 0), dump);
    let check = dir.path().join("check");
    expect(&["checkpoint", p(&copy), p(&check)], 0);
    assert_eq!(expect(&["dump", p(&check)], 0), dump);
    let stats: serde_json::Value =
        serde_json::from_str(&expect(&["stats", p(&check), "--json"], 0)).unwrap();
    assert_eq!(stats["documents"], 199);
    assert_eq!(stats["kind"], "index");
    let text = expect(&["stats", p(&check)], 0);
    assert!(text.contains("documents:          199"), "{text}");
    // The checkpoint's data files were written just now.
    assert!(text.contains("last compaction:    20"), "{text}");
    assert!(
        stats["data_last_written_unix"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000)
    );
}

#[test]
fn the_demo_runs_reopens_and_reports_what_stats_shows() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let out = expect(&["demo", "--docs", "20000", "--dir", p(&work), "--keep"], 0);
    assert!(out.contains("every answer is unchanged"), "{out}");
    let field = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` in the report:\n{out}"))
    };
    let stats: serde_json::Value =
        serde_json::from_str(&expect(&["stats", p(&work.join("index")), "--json"], 0)).unwrap();
    assert_eq!(stats["documents"].as_u64(), Some(field("documents:")));
    assert_eq!(stats["disk_bytes"].as_u64(), Some(field("disk bytes:")));
    assert!(field("documents:") < 20_000, "deletes happened");
    // Without --keep nothing is left.
    let gone = dir.path().join("gone");
    expect(&["demo", "--docs", "2000", "--dir", p(&gone)], 0);
    assert!(!gone.exists());
    // A directory in use is refused.
    let err = fails(&["demo", "--docs", "10", "--dir", p(&work)], 4);
    assert!(err.contains("not empty"), "{err}");
}

/// Every file under `dir` (but the `LOCK`s) with its bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            out.extend(tree(&path));
        } else if entry.file_name() != "LOCK" {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

fn copy_tree(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dest.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

#[test]
fn verify_reads_only_and_passes_a_good_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported(dir.path()).store;
    let before = tree(&store);
    let out = expect(&["verify", p(&store)], 0);
    assert!(out.contains("all well"), "{out}");
    assert!(out.contains("index: 200 documents"), "{out}");
    assert!(out.contains("they agree"), "{out}");
    assert_eq!(tree(&store), before, "verify changed a file");

    // Beside a read-only open in another process (this one): it works.
    let mut ro = silo_options();
    ro.store.read_only = true;
    let shared = Engine::open(&store, ro).unwrap();
    expect(&["verify", p(&store)], 0);
    drop(shared);
    // Beside a read-write open in another process (this one): it works,
    // on the state the store is in; repair, which reads files raw, is
    // refused, saying why.
    let engine = Engine::open(&store, silo_options()).unwrap();
    let out = expect(&["verify", p(&store)], 0);
    assert!(out.contains("all well"), "{out}");
    let err = fails(
        &["repair", p(&store), "--out", p(&dir.path().join("copy"))],
        3,
    );
    assert!(err.contains("open read-write in another process"), "{err}");
    engine.close().unwrap();
}

/// A plain store whose logs hold frames (no compaction at close), with
/// cross-shard batches.
fn store_with_logs(dir: &Path) {
    let mut o = silo_options();
    o.shards = Some(2);
    o.store.compact_on_close = false;
    let engine = Engine::open(dir, o).unwrap();
    for k in 0..200u64 {
        engine.put(k, format!("value {k}").as_bytes()).unwrap();
    }
    engine.compact().unwrap();
    let mut batch = silo_core::WriteBatch::new();
    for k in 0..50u64 {
        batch.put(k * 7, b"batched");
    }
    engine.write(&batch).unwrap();
    engine.close().unwrap();
}

#[test]
fn verify_names_the_file_and_byte_of_damage_in_each_kind_of_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    store_with_logs(&good);
    expect(&["verify", p(&good)], 0);
    let header = silo_format::HEADER_LEN as u64;
    let files: Vec<std::path::PathBuf> = tree(&good).into_keys().collect();
    let mut kinds = std::collections::BTreeSet::new();
    for (n, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let kind = name
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_owned();
        let len = std::fs::metadata(file).unwrap().len();
        // Inside the first record or frame where there is one, else in
        // the header.
        let at = if len > header + 40 && !name.starts_with("index") {
            header + 20
        } else {
            20.min(len - 1)
        };
        let copy = dir.path().join(format!("bad-{n}"));
        copy_tree(&good, &copy);
        let target = copy.join(file.strip_prefix(&good).unwrap());
        let mut bytes = std::fs::read(&target).unwrap();
        bytes[usize::try_from(at).unwrap()] ^= 0x5A;
        std::fs::write(&target, bytes).unwrap();
        let out = silo(&["verify", p(&copy)]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{name} at {at}: {all}");
        assert!(all.contains(&name), "{name}: the file is not named: {all}");
        assert!(all.contains("byte "), "{name}: no offset: {all}");
        kinds.insert(kind);
    }
    // The engine manifest, the batch log, and each shard's manifest, data
    // file, index and both log slots.
    assert!(kinds.len() >= 6, "{kinds:?}");
}

/// A store with a damaged index (shard 0) and a damaged log (shard 1)
/// does not open; `repair` writes a new store holding every record of the
/// data files and every intact logged operation, names what it could not
/// save, and leaves the original as it was.
#[test]
fn repair_salvages_every_intact_record_around_a_damaged_index_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("broken");
    let mut o = silo_options();
    o.shards = Some(2);
    o.store.compact_on_close = false;
    {
        let engine = Engine::open(&store, o.clone()).unwrap();
        for k in 0..300u64 {
            engine.put(k, format!("data {k}").as_bytes()).unwrap();
        }
        engine.compact().unwrap();
        // These stay in the logs: overwrites, new keys and a delete.
        for k in 250..400u64 {
            engine.put(k, format!("log {k}").as_bytes()).unwrap();
        }
        engine.delete(7).unwrap();
        engine.close().unwrap();
    }
    let shard0 = store.join("shard-0000");
    let shard1 = store.join("shard-0001");
    let index = std::fs::read_dir(&shard0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("index-")
        })
        .unwrap();
    let log = ["log-0", "log-1"]
        .iter()
        .map(|n| shard1.join(n))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    for (file, at) in [(&index, 20usize), (&log, silo_format::HEADER_LEN + 30)] {
        let mut bytes = std::fs::read(file).unwrap();
        bytes[at] ^= 0x5A;
        std::fs::write(file, bytes).unwrap();
    }
    fails(&["stats", p(&store)], 3);
    let before = tree(&store);
    let out = dir.path().join("repaired");
    let run = silo(&["repair", p(&store), "--out", p(&out)]);
    let stdout = text(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{stdout}{}", text(&run.stderr));
    assert!(
        stdout.contains("log-"),
        "the damaged log is named: {stdout}"
    );
    assert_eq!(tree(&store), before, "repair changed the original");
    // Every key but the one in the damaged frame, with its newest value.
    let engine = Engine::open(&out, silo_options()).unwrap();
    let mut lost = Vec::new();
    for k in 0..400u64 {
        let want = match k {
            7 => None,
            250.. => Some(format!("log {k}").into_bytes()),
            _ => Some(format!("data {k}").into_bytes()),
        };
        let got = engine.get(k).unwrap();
        if got != want {
            lost.push((k, got.map(|v| String::from_utf8_lossy(&v).into_owned())));
        }
    }
    engine.close().unwrap();
    // The damaged frame held one put, of a key in 250..400 of shard 1: at
    // most that key is lost (it reads as its data-file value or absent).
    assert!(lost.len() <= 1, "{lost:?}\n{stdout}");
    assert!(lost.iter().all(|(k, _)| (250..400).contains(k)), "{lost:?}");
    expect(&["verify", p(&out)], 0);
    // A store that is not damaged repairs with nothing lost.
    let good = dir.path().join("good");
    store_with_logs(&good);
    let out = expect(
        &["repair", p(&good), "--out", p(&dir.path().join("copy"))],
        0,
    );
    assert!(out.contains("nothing was lost"), "{out}");
    let sorted = |dump: String| {
        let mut lines: Vec<String> = dump.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(expect(&["dump", p(&dir.path().join("copy"))], 0)),
        sorted(expect(&["dump", p(&good)], 0))
    );
}

/// A store whose engine manifest says another format version (checksum
/// correct): `stats` refuses it with exit 3 and `verify` names the file;
/// neither changes a byte.
#[test]
fn an_unknown_format_version_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("kv");
    expect(&["put", p(&store), "1", "one"], 0);
    let manifest = store.join("ENGINE");
    let bytes = std::fs::read(&manifest).unwrap();
    let mut header =
        silo_format::FileHeader::decode(&bytes, silo_format::FileKind::EngineManifest).unwrap();
    header.version = 99;
    std::fs::write(&manifest, header.encode()).unwrap();
    let before = tree(&store);
    let err = fails(&["stats", p(&store)], 3);
    assert!(err.contains("ENGINE") && err.contains("99"), "{err}");
    let run = silo(&["verify", p(&store)]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        text(&run.stdout).contains("ENGINE"),
        "{}",
        text(&run.stdout)
    );
    assert_eq!(tree(&store), before);
}
