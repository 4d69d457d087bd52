//! Integration tests of silo-engine, one binary.

mod bitmap;
mod common;
mod concurrency;
mod crash;
mod docs;
mod engine;
mod faults;
mod index;
mod index_sigkill;
mod model;
mod power_cut;
mod read_only;
mod scheduler;
