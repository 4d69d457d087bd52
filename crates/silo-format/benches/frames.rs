//! Frame encode and decode+verify throughput at 100 B, 1 KiB and 64 KiB
//! payloads, with a memcpy of the same number of bytes as the reference in
//! each group, and a [`FrameReader`] pass over a stream of small frames.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented public function"
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use silo_format::{DEFAULT_MAX_PAYLOAD, FrameReader, Tag, decode_frame, encode_frame, frame_len};

const SIZES: [(usize, &str); 3] = [(100, "100B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

fn frames(c: &mut Criterion) {
    for (size, label) in SIZES {
        let payload: Vec<u8> = (0..size)
            .map(|i| u8::try_from(i * 31 % 251).unwrap_or(0))
            .collect();
        let len = frame_len(size);
        let mut encoded = vec![0u8; len];
        encode_frame(&mut encoded, Tag::Put, 42, &payload).expect("sized by frame_len");
        let mut out = vec![0u8; len];

        let mut group = c.benchmark_group(format!("frame_{label}"));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("memcpy", label), |b| {
            b.iter(|| {
                out.copy_from_slice(black_box(&encoded));
                black_box(&out);
            })
        });
        group.bench_function(BenchmarkId::new("encode", label), |b| {
            b.iter(|| {
                black_box(encode_frame(
                    &mut out,
                    Tag::Put,
                    black_box(42),
                    black_box(&payload),
                ))
            })
        });
        group.bench_function(BenchmarkId::new("decode_verify", label), |b| {
            b.iter(|| {
                let (frame, used) =
                    decode_frame(black_box(&encoded), DEFAULT_MAX_PAYLOAD).expect("valid frame");
                black_box((frame.payload.as_ptr(), frame.payload.len(), used))
            })
        });
        group.finish();
    }

    // A log body of 1000 frames of 100 bytes, read with the FrameReader.
    let payload = [7u8; 100];
    let mut stream = vec![0u8; 1000 * frame_len(100)];
    for chunk in stream.chunks_mut(frame_len(100)) {
        encode_frame(chunk, Tag::Put, 1, &payload).expect("sized by frame_len");
    }
    let mut group = c.benchmark_group("frame_reader_100B");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("read_1000_frames", |b| {
        b.iter(|| {
            let mut reader = FrameReader::new(black_box(&stream));
            let n = reader.by_ref().count();
            black_box((n, reader.end()))
        })
    });
    group.finish();
}

criterion_group!(benches, frames);
criterion_main!(benches);
