//! Integration tests of silo-engine, one binary.

mod beside_a_writer;
mod bitmap;
mod common;
mod concurrency;
mod crash;
mod docs;
mod engine;
mod faults;
mod full_disk;
mod index;
mod index_sigkill;
mod limits;
mod model;
mod power_cut;
mod read_only;
mod scheduler;
