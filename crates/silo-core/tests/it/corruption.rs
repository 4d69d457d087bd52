//! corruption tests (next).
