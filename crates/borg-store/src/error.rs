//! Errors of the store.

use std::path::PathBuf;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// RocksDB reported an error.
    #[error("store database error: {0}")]
    Db(#[from] rocksdb::Error),
    /// The data on disk is damaged.
    #[error("store in {0} is corrupt ({1}); move it away to start an empty store")]
    Corrupt(PathBuf, String),
    /// The store was written by a version with another layout.
    #[error("store in {path} has schema version {found}; this borg-node reads version {expected}")]
    IncompatibleSchema {
        /// The store's directory.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version this code reads.
        expected: u32,
    },
    /// The directory cannot be used.
    #[error("cannot use store directory {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The write would exceed the quota.
    #[error("store is full: {used} of {quota} bytes used, {needed} more needed")]
    QuotaExceeded {
        /// The quota.
        quota: u64,
        /// Bytes used now.
        used: u64,
        /// Bytes the write needs.
        needed: u64,
    },
    /// A value or message over its size limit.
    #[error("{len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The writer does not own the key.
    #[error("refused record: {0}")]
    NotOwner(String),
    /// This node does not store data (it has not opted in, or opted out).
    #[error("this node does not store data (store is off)")]
    Disabled,
    /// An org name the log cannot hold.
    #[error("invalid org {0:?}")]
    BadOrg(String),
}

impl Error {
    pub(crate) fn from_open(path: &std::path::Path, e: rocksdb::Error) -> Self {
        match e.kind() {
            rocksdb::ErrorKind::Corruption => Error::Corrupt(path.to_owned(), e.into_string()),
            _ => Error::Db(e),
        }
    }
}
