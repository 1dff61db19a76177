//! Sandcat's compiled hot path: shard-key hashing (inbox collections, Kafka partitions).
//!
//! The pure-Python twin `sandcat/_native/shard.py` is the specification; `tests/golden.rs`
//! and the Python test suite check both against the vectors in `native/testdata/`.

pub mod shard;

#[cfg(feature = "python")]
mod python;
