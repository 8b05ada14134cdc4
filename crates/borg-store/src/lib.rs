//! borg-store: the opt-in store of borg-net.
//!
//! - [`Store`]: a RocksDB database with a schema version, a byte quota, durable (fsynced)
//!   writes and a purge that really removes the bytes from disk.
//! - [`KadStore`]: a Kademlia `RecordStore` over it, so replicated records and provider records
//!   survive restarts, with expiry kept as wall-clock time.
//! - [`ownership`]: which writer may store which key (signed owned records, content-addressed
//!   chunks), so a hostile peer cannot overwrite others' data.
//! - The org message log ([`Store::append_message`], [`Store::history`]): every message of an
//!   org, ordered by the author's timestamp, deduplicated by id.
//!
//! Layouts are specified in `docs/store.md`.
#![deny(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod db;
mod error;
mod kad_store;
mod log;
pub mod ownership;

pub use db::{Limits, SCHEMA_VERSION, Stats, Store};
pub use error::Error;
pub use kad_store::KadStore;
pub use log::LoggedMessage;

#[cfg(test)]
mod tests;
