//! borg-store: the opt-in replicated store of borg-net (RocksDB-backed Kademlia records and
//! the org message log).
//!
//! Not implemented yet: it is the subject of its own issue ("borg-store: opt-in replicated
//! storage on Kademlia records, persisted in RocksDB"). Nothing in the node uses it so far.
#![deny(missing_docs)]
