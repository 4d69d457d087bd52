//! Fuzz target: opening a store from a damaged directory image.
//!
//! A small store is built once (compacted data, overwrites and merges still
//! in the log, a deleted key, closed cleanly); each input is a list of
//! edits to a copy of its files (flip bytes, zero a 4 KiB page, truncate,
//! splice or replace a file with input bytes). Opening the copy must then
//! either fail with a typed error, or give a store that never answers
//! wrongly: every key reads as its value or an error, never another value,
//! a phantom (a deleted or never-written key) or a vanished key, and
//! `iter` yields exactly what `get` answers.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use silo_core::{Append, Options, Silo, WriteBatch};

fn opts() -> Options {
    let mut o = Options::default().with_merge_operator(Append);
    o.auto_compact = false;
    o
}

/// The template's files (name, bytes) and the contents it holds.
struct Template {
    files: Vec<(String, Vec<u8>)>,
    model: BTreeMap<u64, Vec<u8>>,
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut model = BTreeMap::new();
        let silo = Silo::open(dir.path(), opts()).expect("open");
        for k in 0..40u64 {
            let v = vec![k as u8; 10 + (k as usize % 5) * 20];
            silo.put(k, &v).expect("put");
            model.insert(k, v);
        }
        silo.compact().expect("compact");
        for k in (0..40u64).step_by(3) {
            let v = vec![b'o'; 15];
            silo.put(k, &v).expect("overwrite");
            model.insert(k, v);
        }
        let mut b = WriteBatch::new();
        for k in 100..104u64 {
            b.put(k, b"batched");
            model.insert(k, b"batched".to_vec());
        }
        silo.write(&b).expect("batch");
        silo.merge(5, b"+m").expect("merge");
        model.get_mut(&5).expect("key 5").extend_from_slice(b"+m");
        silo.delete(7).expect("delete");
        model.remove(&7);
        silo.close().expect("close");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir.path()).expect("read dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != "LOCK" {
                files.push((name, std::fs::read(entry.path()).expect("read")));
            }
        }
        files.sort();
        Template { files, model }
    })
}

/// Applies the edits the input spells to `files`.
fn edit(files: &mut [(String, Vec<u8>)], mut data: &[u8]) {
    while data.len() >= 6 {
        let n = files.len();
        let (name, file) = &mut files[usize::from(data[0]) % n];
        let op = data[1];
        let at = u32::from_le_bytes([data[2], data[3], data[4], data[5]]) as usize;
        if std::env::var_os("SILO_FUZZ_DEBUG").is_some() {
            eprintln!(
                "edit {name} ({} bytes): op {op} at {}",
                file.len(),
                at % (file.len() + 1)
            );
        }
        data = &data[6..];
        match op {
            // Replace the file's bytes from `at` with the rest of the input.
            255 => {
                let at = at % (file.len() + 1);
                file.truncate(at);
                file.extend_from_slice(data);
                return;
            }
            254 => {
                let at = at % (file.len() + 1);
                file.truncate(at);
            }
            253 if !file.is_empty() => {
                let page = (at % file.len()) / 4096 * 4096;
                let end = (page + 4096).min(file.len());
                file[page..end].fill(0);
            }
            flip if !file.is_empty() => {
                let at = at % file.len();
                file[at] ^= flip | 1;
            }
            _ => {}
        }
    }
}

fn write_image(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("write image");
    }
}

fuzz_target!(|data: &[u8]| {
    let t = template();
    let mut files = t.files.clone();
    edit(&mut files, data);
    let dir = tempfile::tempdir().expect("tempdir");
    write_image(dir.path(), &files);
    let Ok(silo) = Silo::open(dir.path(), opts()) else {
        return;
    };
    // Point reads: the value, or an error; never another value or a phantom.
    let mut got = BTreeMap::new();
    let mut failed = Vec::new();
    let mut vanished = Vec::new();
    for key in (0..110u64).chain([u64::MAX, 1 << 40]) {
        match silo.get(key) {
            Ok(Some(v)) => {
                assert_eq!(
                    Some(&v),
                    t.model.get(&key),
                    "key {key}: a wrong value or a phantom"
                );
                got.insert(key, v);
            }
            Ok(None) if t.model.contains_key(&key) => vanished.push(key),
            Ok(None) => {}
            Err(_) => failed.push(key),
        }
    }
    // A key may vanish only where the index lost it (a zeroed or damaged
    // index page, which reads cannot see): then `verify`, which checks
    // the index against the data file, must say so.
    if !vanished.is_empty() {
        let reported = silo.verify().map_or(true, |r| !r.problems.is_empty());
        assert!(
            reported,
            "keys {vanished:?} vanished and verify found nothing"
        );
    }
    // `iter` yields exactly what `get` answers, key for key, until an error.
    let mut seen = BTreeMap::new();
    for item in silo.iter() {
        let Ok((key, value)) = item else { return };
        assert_eq!(t.model.get(&key), Some(&value), "iter key {key}");
        seen.insert(key, value);
    }
    for key in seen.keys() {
        assert!(
            got.contains_key(key) || failed.contains(key),
            "iter yields {key}, get did not"
        );
    }
    for key in got.keys() {
        assert!(
            seen.contains_key(key),
            "get answers {key}, iter did not yield it"
        );
    }
});
