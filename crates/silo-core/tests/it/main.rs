//! silo-core's integration tests, one binary with a module per concern.

mod bulk;
mod common;
mod concurrency;
mod corruption;
mod crash;
mod faults;
mod model;
mod store;
