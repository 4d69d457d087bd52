//! The one integration-test binary of silo-format: property tests, frame
//! stream damage tests, the FORMAT.md constants check and golden fixtures.

mod arbitrary_input;
mod document_props;
mod fixtures;
mod format_doc;
mod frame_stream;
mod round_trip;
mod strategies;
