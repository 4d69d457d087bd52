//! Frame encode/decode benchmarks (filled in with the frame codec).
fn main() {}
