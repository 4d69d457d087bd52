//! Integration tests of silo-engine, one binary.

mod common;
mod concurrency;
mod crash;
mod engine;
mod faults;
mod model;
mod power_cut;
mod scheduler;
