//! Sandcat's compiled hot paths: shard-key hashing and fan-out batching.
//!
//! The pure-Python twins in `sandcat/_native/` are the specification; `tests/golden.rs`
//! and the Python test suite check both against the vectors in `native/testdata/`.

pub mod fanout;
pub mod shard;

#[cfg(feature = "python")]
mod python;
