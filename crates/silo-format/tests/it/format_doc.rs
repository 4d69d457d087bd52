//! Ties `docs/FORMAT.md` to the code: the constants table it contains must
//! name every format constant with the value the code uses, and its byte
//! diagrams must be contiguous and add up to the fixed lengths.

use std::collections::BTreeMap;

use silo_format::document::{
    DOC_HEADER_LEN, DOC_VERSION, FIELD_HEADER_LEN, FLAG_RESET, TYPE_BOOL, TYPE_BYTES, TYPE_DELETED,
    TYPE_F64, TYPE_I64, TYPE_I64_LIST, TYPE_STR, TYPE_U64,
};
use silo_format::*;

fn format_md() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/FORMAT.md");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `(name, value)` for every constant FORMAT.md must state.
fn expected() -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("HEADER_LEN", HEADER_LEN.to_string()),
        ("FORMAT_VERSION", FORMAT_VERSION.to_string()),
        ("FRAME_HEADER_LEN", FRAME_HEADER_LEN.to_string()),
        ("FRAME_TRAILER_LEN", FRAME_TRAILER_LEN.to_string()),
        ("FRAME_OVERHEAD", FRAME_OVERHEAD.to_string()),
        ("DEFAULT_MAX_PAYLOAD", DEFAULT_MAX_PAYLOAD.to_string()),
        (
            "MANIFEST_BODY_LEN",
            silo_format::manifest::MANIFEST_BODY_LEN.to_string(),
        ),
        (
            "MANIFEST_LEN",
            silo_format::manifest::MANIFEST_LEN.to_string(),
        ),
        (
            "MANIFEST_FLAG_CLEAN",
            silo_format::manifest::MANIFEST_FLAG_CLEAN.to_string(),
        ),
        ("RECORD_HEADER_LEN", RECORD_HEADER_LEN.to_string()),
        ("RECORD_ALIGN", RECORD_ALIGN.to_string()),
        ("TOMBSTONE_LEN", TOMBSTONE_LEN.to_string()),
        ("KEY_CHECK_SALT", KEY_CHECK_SALT.to_string()),
        ("INDEX_ENTRY_LEN", INDEX_ENTRY_LEN.to_string()),
        ("SLOTS_PER_BUCKET", SLOTS_PER_BUCKET.to_string()),
        ("LOC_EMPTY", LOC_EMPTY.to_string()),
        ("LOC_DELETED", LOC_DELETED.to_string()),
        (
            "LOC_CHECK_SHIFT",
            silo_format::index_entry::LOC_CHECK_SHIFT.to_string(),
        ),
        ("BIT_OP_LEN", BIT_OP_LEN.to_string()),
        ("BIT_OP_SET", silo_format::bitmap::BIT_OP_SET.to_string()),
        (
            "BIT_OP_CLEAR",
            silo_format::bitmap::BIT_OP_CLEAR.to_string(),
        ),
        (
            "BIT_OP_UNION",
            silo_format::bitmap::BIT_OP_UNION.to_string(),
        ),
        (
            "BITMAP_VALUE_BITS",
            silo_format::bitmap::BITMAP_VALUE_BITS.to_string(),
        ),
        ("DOC_VERSION", DOC_VERSION.to_string()),
        ("DOC_HEADER_LEN", DOC_HEADER_LEN.to_string()),
        ("FIELD_HEADER_LEN", FIELD_HEADER_LEN.to_string()),
        ("FLAG_RESET", FLAG_RESET.to_string()),
        ("TYPE_DELETED", TYPE_DELETED.to_string()),
        ("TYPE_I64", TYPE_I64.to_string()),
        ("TYPE_U64", TYPE_U64.to_string()),
        ("TYPE_F64", TYPE_F64.to_string()),
        ("TYPE_BOOL", TYPE_BOOL.to_string()),
        ("TYPE_STR", TYPE_STR.to_string()),
        ("TYPE_BYTES", TYPE_BYTES.to_string()),
        ("TYPE_I64_LIST", TYPE_I64_LIST.to_string()),
        ("TAG_PUT", (Tag::Put as u8).to_string()),
        ("TAG_DELETE", (Tag::Delete as u8).to_string()),
        ("TAG_MERGE", (Tag::Merge as u8).to_string()),
        ("TAG_BATCH_BEGIN", (Tag::BatchBegin as u8).to_string()),
        ("TAG_BATCH_COMMIT", (Tag::BatchCommit as u8).to_string()),
    ];
    let kinds = [
        ("KIND_OPS_LOG", "MAGIC_OPS_LOG", FileKind::OpsLog),
        ("KIND_DATA", "MAGIC_DATA", FileKind::Data),
        ("KIND_INDEX", "MAGIC_INDEX", FileKind::Index),
        ("KIND_MANIFEST", "MAGIC_MANIFEST", FileKind::Manifest),
        ("KIND_JOURNAL", "MAGIC_JOURNAL", FileKind::Journal),
        (
            "KIND_ENGINE_MANIFEST",
            "MAGIC_ENGINE_MANIFEST",
            FileKind::EngineManifest,
        ),
        ("KIND_BATCH_LOG", "MAGIC_BATCH_LOG", FileKind::BatchLog),
    ];
    for (kind_name, magic_name, kind) in kinds {
        v.push((kind_name, (kind as u16).to_string()));
        v.push((
            magic_name,
            String::from_utf8(kind.magic().to_vec()).unwrap(),
        ));
    }
    v
}

/// Cells of a markdown table row, trimmed and with backticks removed.
fn cells(line: &str) -> Option<Vec<String>> {
    let line = line.trim();
    let inner = line.strip_prefix('|')?.strip_suffix('|')?;
    Some(
        inner
            .split('|')
            .map(|c| c.trim().replace('`', ""))
            .collect(),
    )
}

/// The `NAME | value` rows of the "## Constants" section.
fn constants_table(md: &str) -> BTreeMap<String, String> {
    let mut table = BTreeMap::new();
    let mut in_section = false;
    for line in md.lines() {
        if line.starts_with("## ") {
            in_section = line.trim() == "## Constants";
            continue;
        }
        if !in_section {
            continue;
        }
        let Some(c) = cells(line) else { continue };
        if c.len() >= 2
            && c[0]
                .chars()
                .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_')
            && !c[0].is_empty()
        {
            let previous = table.insert(c[0].clone(), c[1].replace('_', ""));
            assert!(previous.is_none(), "FORMAT.md names {} twice", c[0]);
        }
    }
    table
}

#[test]
fn constants_match_the_code() {
    let table = constants_table(&format_md());
    let expected = expected();
    for (name, value) in &expected {
        let found = table
            .get(*name)
            .unwrap_or_else(|| panic!("FORMAT.md's constants table lacks {name}"));
        assert_eq!(
            found, value,
            "FORMAT.md says {name} = {found}, the code says {value}"
        );
    }
    for name in table.keys() {
        assert!(
            expected.iter().any(|(n, _)| n == name),
            "FORMAT.md names {name}, which the test does not know"
        );
    }
}

/// Byte-diagram tables (`| offset | size | field | meaning |`) under each
/// `### ` heading: numeric rows must be contiguous; returns each table's end.
fn diagrams(md: &str) -> BTreeMap<String, usize> {
    let mut ends = BTreeMap::new();
    let mut heading = String::new();
    let mut next: Option<usize> = None;
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            heading = h.trim().to_owned();
            next = None;
            continue;
        }
        let Some(c) = cells(line) else {
            next = None;
            continue;
        };
        if c.first().map(String::as_str) == Some("offset") {
            next = Some(0);
            continue;
        }
        let (Some(expected_offset), Some(off), Some(size)) = (next, c.first(), c.get(1)) else {
            continue;
        };
        let (Ok(off), Ok(size)) = (off.parse::<usize>(), size.parse::<usize>()) else {
            continue;
        };
        assert_eq!(
            off, expected_offset,
            "FORMAT.md, {heading}: row at {off} should start at {expected_offset}"
        );
        next = Some(off + size);
        ends.insert(heading.clone(), off + size);
    }
    ends
}

#[test]
fn byte_diagrams_add_up() {
    let ends = diagrams(&format_md());
    let fixed = [
        ("File header", HEADER_LEN),
        ("Frame header", FRAME_HEADER_LEN),
        ("Record header", RECORD_HEADER_LEN),
        ("Index slot", INDEX_ENTRY_LEN),
        ("Manifest body", silo_format::manifest::MANIFEST_BODY_LEN),
        ("Bit op", BIT_OP_LEN),
        ("Document header", DOC_HEADER_LEN),
        ("Field header", FIELD_HEADER_LEN),
    ];
    for (heading, len) in fixed {
        assert_eq!(
            ends.get(heading),
            Some(&len),
            "FORMAT.md's `### {heading}` diagram should cover {len} bytes"
        );
    }
}
