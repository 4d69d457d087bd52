//! faults tests (next).
