//! Bulk writers (next).
