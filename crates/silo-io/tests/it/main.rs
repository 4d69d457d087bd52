//! Integration tests of `silo-io`: one binary, one module per area.

mod allocate;
mod atomic_map;
mod coalesce_props;
#[cfg(feature = "fault-injection")]
mod durable_faults;
mod growable;
mod lock;
