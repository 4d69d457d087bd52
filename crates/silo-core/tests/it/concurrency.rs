//! concurrency tests (next).
