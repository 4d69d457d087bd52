//! Damage to a frame stream: cuts at every offset and single-bit flips in
//! every frame are detected, and the reader reports where the damage starts.

use proptest::prelude::*;
use silo_format::*;

use crate::strategies;

type Frames = Vec<(Tag, u64, Vec<u8>)>;

fn fixed_stream() -> Frames {
    vec![
        (Tag::BatchBegin, 2, vec![]),
        (Tag::Put, 0, b"first value".to_vec()),
        (Tag::Merge, u64::MAX, vec![0; 20]),
        (Tag::BatchCommit, 2, vec![]),
        (Tag::Delete, 7, vec![]),
        (Tag::Put, 1 << 40, vec![0xFF; 3]),
    ]
}

/// Cuts the stream at every offset (optionally followed by zeros) and checks
/// the reader yields exactly the whole frames before the cut.
fn check_cuts(frames: &Frames, zero_tail: usize) {
    let (bytes, starts) = strategies::encode_stream(frames);
    for cut in 0..=bytes.len() {
        let mut input = bytes[..cut].to_vec();
        input.resize(cut + zero_tail, 0);
        let mut reader = FrameReader::new(&input);
        let got: Vec<_> = reader.by_ref().collect();
        // Frames whose bytes all survive (zero fill can restore a cut-off
        // frame whose missing bytes were zeros).
        let whole = starts
            .iter()
            .zip(frames)
            .take_while(|(s, f)| {
                let e = **s + frame_len(f.2.len());
                input.get(**s..e).is_some_and(|b| b == &bytes[**s..e])
            })
            .count();
        assert!(
            whole
                >= starts
                    .iter()
                    .zip(frames)
                    .take_while(|(s, f)| **s + frame_len(f.2.len()) <= cut)
                    .count()
        );
        assert_eq!(got.len(), whole, "cut {cut}");
        for ((off, f), (start, (tag, key, payload))) in got.iter().zip(starts.iter().zip(frames)) {
            assert_eq!(
                (off, *f),
                (
                    start,
                    Frame {
                        tag: *tag,
                        key: *key,
                        payload
                    }
                )
            );
        }
        let at = starts.get(whole).copied().unwrap_or(bytes.len());
        let rest_is_zero = input[at.min(input.len())..].iter().all(|&b| b == 0);
        match reader.end() {
            Some(LogEnd::Clean { at: a }) => {
                assert!(a == at && rest_is_zero, "cut {cut}: clean at {a}")
            }
            Some(LogEnd::TornTail { at: a, .. }) => assert!(a == at && !rest_is_zero, "cut {cut}"),
            other => panic!("cut {cut}: expected torn tail, got {other:?}"),
        }
        if zero_tail == 0 && at != cut {
            assert!(matches!(
                reader.end(),
                Some(LogEnd::TornTail {
                    reason: StopReason::Incomplete { .. },
                    ..
                })
            ));
        }
    }
}

/// Flips one bit in frame `target` and checks the reader never yields a frame
/// that differs from what was encoded and stops at or before that frame.
fn check_flip(frames: &Frames, bit: usize, zero_tail: usize) {
    let (mut bytes, starts) = strategies::encode_stream(frames);
    let target = starts
        .iter()
        .rposition(|s| *s * 8 <= bit)
        .expect("bit inside the stream");
    bytes[bit / 8] ^= 1 << (bit % 8);
    bytes.resize(bytes.len() + zero_tail, 0);
    let mut reader = FrameReader::new(&bytes);
    let got: Vec<_> = reader.by_ref().collect();
    assert!(
        got.len() <= target,
        "bit {bit}: read past the damaged frame {target}"
    );
    for ((off, f), (start, (tag, key, payload))) in got.iter().zip(starts.iter().zip(frames)) {
        assert_eq!(
            (off, *f),
            (
                start,
                Frame {
                    tag: *tag,
                    key: *key,
                    payload
                }
            ),
            "bit {bit}"
        );
    }
    match reader.end() {
        Some(LogEnd::TornTail { at, .. } | LogEnd::Corrupt { at, .. }) => {
            assert_eq!(at, starts[got.len()], "bit {bit}")
        }
        other => panic!("bit {bit}: damage not reported: {other:?}"),
    }
}

#[test]
fn cut_at_every_offset() {
    check_cuts(&fixed_stream(), 0);
    check_cuts(&fixed_stream(), 64);
}

#[test]
fn every_single_bit_flip_is_detected() {
    let frames = fixed_stream();
    let (bytes, _) = strategies::encode_stream(&frames);
    for bit in 0..bytes.len() * 8 {
        check_flip(&frames, bit, 0);
        check_flip(&frames, bit, 100);
    }
}

#[test]
fn damage_in_the_middle_is_corrupt_not_torn() {
    let frames = fixed_stream();
    let (mut bytes, starts) = strategies::encode_stream(&frames);
    bytes[starts[1] + FRAME_HEADER_LEN] ^= 0x10;
    let mut reader = FrameReader::new(&bytes);
    assert_eq!(reader.by_ref().count(), 1);
    assert!(matches!(
        reader.end(),
        Some(LogEnd::Corrupt { at, reason: StopReason::BadChecksum { .. } }) if at == starts[1]
    ));
}

proptest! {
    #[test]
    fn random_streams_cut(frames in prop::collection::vec(strategies::frame(), 0..5), tail in 0usize..20) {
        check_cuts(&frames, tail);
    }

    #[test]
    fn random_streams_flip(frames in prop::collection::vec(strategies::frame(), 1..5), bit: usize, tail in 0usize..20) {
        let total: usize = frames.iter().map(|f| frame_len(f.2.len())).sum();
        check_flip(&frames, bit % (total * 8), tail);
    }
}
