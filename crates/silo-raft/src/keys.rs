//! The key layout of silo-raft's two engines, and the one encoding of every
//! value stored there: a version byte followed by JSON (`docs/FORMAT.md`).
//!
//! The log engine keys each entry by its index; the state machine engine
//! holds the users' keys. In both, the 16 keys from [`RESERVED_FROM`] up
//! hold meta records.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{RaftStoreError, Result};

/// The first reserved key: log indexes and user keys stay below it.
pub const RESERVED_FROM: u64 = u64::MAX - 15;

/// Log engine: the last saved vote.
pub const LOG_VOTE_KEY: u64 = u64::MAX;
/// Log engine: the last saved committed log id.
pub const LOG_COMMITTED_KEY: u64 = u64::MAX - 1;
/// Log engine: the last purged log id.
pub const LOG_PURGED_KEY: u64 = u64::MAX - 2;
/// Log engine: the log id of the last entry (absent when the log is empty).
pub const LOG_LAST_KEY: u64 = u64::MAX - 3;

/// State machine engine: the last applied log id.
pub const SM_APPLIED_KEY: u64 = u64::MAX;
/// State machine engine: the last applied membership.
pub const SM_MEMBERSHIP_KEY: u64 = u64::MAX - 1;
/// State machine engine: the resolved document commands of the entry being
/// applied ([`crate::documents::DocIntent`]), present only between their
/// first index write and the applied id that covers them.
pub const SM_DOC_INTENT_KEY: u64 = u64::MAX - 2;

/// With an index, user keys must lie in `INDEXED_USER_KEYS_FROM ..
/// INDEXED_USER_KEYS_TO`: bitmap fields `0x8000 ..= 0xFFFD` (top 16 bits).
/// The index keeps its registry in field 0, the fields of a schema in the
/// registry ids from 1 up (at most 4 per schema field, so below 0x8000
/// for any schema of at most [`MAX_INDEXED_FIELDS`] fields), its system
/// entries in 0xFFFE and documents in 0xFFFF.
pub const INDEXED_USER_KEYS_FROM: u64 = 0x8000 << 48;
/// The end (exclusive) of the user keys beside an index.
pub const INDEXED_USER_KEYS_TO: u64 = 0xFFFE << 48;
/// The most fields an index schema of a node may have (so that its
/// registry ids stay below [`INDEXED_USER_KEYS_FROM`]).
pub const MAX_INDEXED_FIELDS: usize = 0x7FFF / 4;

/// Whether `key` is a user key a command may touch: below
/// [`RESERVED_FROM`], and with an index inside the user window.
pub fn user_key_allowed(key: u64, indexed: bool) -> bool {
    if indexed {
        (INDEXED_USER_KEYS_FROM..INDEXED_USER_KEYS_TO).contains(&key)
    } else {
        key < RESERVED_FROM
    }
}

/// The version byte every stored value starts with.
pub const RECORD_VERSION: u8 = 1;

/// `value` as a stored record: [`RECORD_VERSION`] then its JSON.
pub fn encode_record<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_VERSION];
    serde_json::to_writer(&mut out, value)
        .map_err(|source| RaftStoreError::Encode { what, source })?;
    Ok(out)
}

/// Decodes a record stored under `key`; a missing version byte, another
/// version or bad JSON is [`RaftStoreError::BadRecord`] /
/// [`RaftStoreError::UnsupportedVersion`].
pub fn decode_record<T: DeserializeOwned>(what: &'static str, key: u64, bytes: &[u8]) -> Result<T> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(RaftStoreError::BadRecord {
            what,
            key,
            reason: "empty record (no version byte)".to_owned(),
        });
    };
    if version != RECORD_VERSION {
        return Err(RaftStoreError::UnsupportedVersion {
            path: format!("key {key:#x}").into(),
            what,
            version: u32::from(version),
            supported: u32::from(RECORD_VERSION),
        });
    }
    serde_json::from_slice(body).map_err(|e| RaftStoreError::BadRecord {
        what,
        key,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode_record("test", &(7_u64, "x")).expect("encodes");
        assert_eq!(bytes[0], RECORD_VERSION);
        let back: (u64, String) = decode_record("test", 1, &bytes).expect("decodes");
        assert_eq!(back, (7, "x".to_owned()));
    }

    #[test]
    fn detects_corruption() {
        let mut bytes = encode_record("test", &(7_u64, "x")).expect("encodes");
        assert!(matches!(
            decode_record::<(u64, String)>("test", 1, &[]),
            Err(RaftStoreError::BadRecord { .. })
        ));
        let last = bytes.len() - 1;
        bytes[last] = b'{';
        assert!(matches!(
            decode_record::<(u64, String)>("test", 1, &bytes),
            Err(RaftStoreError::BadRecord { .. })
        ));
        bytes[0] = 9;
        assert!(matches!(
            decode_record::<(u64, String)>("test", 1, &bytes),
            Err(RaftStoreError::UnsupportedVersion { version: 9, .. })
        ));
    }
}
