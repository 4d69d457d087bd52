//! Fuzz target: the frame reader and `decode_frame` over arbitrary bytes.
//!
//! Besides "never panics", it checks the reader's invariants: frames are
//! contiguous from offset 0, every yielded frame decodes the same way on its
//! own, and the recorded end is where reading stopped.

#![no_main]

use libfuzzer_sys::fuzz_target;
use silo_format::{FrameReader, LogEnd, decode_frame, frame_len};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a payload limit, so the LengthTooLarge path is reached.
    let (max, body) = match data.split_first() {
        Some((&m, rest)) => (u32::from(m) * 4, rest),
        None => (0, data),
    };
    let _ = decode_frame(body, max);

    let mut reader = FrameReader::new(body).with_max_payload(max);
    let mut next = 0;
    for (offset, frame) in reader.by_ref() {
        assert_eq!(offset, next);
        let (again, used) = decode_frame(&body[offset..], max).expect("a yielded frame decodes");
        assert_eq!(again, frame);
        assert_eq!(used, frame_len(frame.payload.len()));
        next = offset + used;
    }
    let end = reader.end().expect("a drained reader records its end");
    assert_eq!(end.at(), next);
    assert_eq!(reader.position(), next);
    match end {
        LogEnd::Clean { at } => assert!(body[at..].iter().all(|&b| b == 0)),
        LogEnd::TornTail { at, .. } | LogEnd::Corrupt { at, .. } => {
            assert!(at < body.len());
            assert!(decode_frame(&body[at..], max).is_err());
        }
    }
    assert_eq!(reader.next(), None);
});
