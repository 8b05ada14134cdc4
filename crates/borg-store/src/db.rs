//! The RocksDB database of a node's store: column families, schema version, quota accounting,
//! durability and purge.
//!
//! - Column families: `meta` (schema version, bytes used, catch-up watermarks), `records`
//!   (Kademlia records), `providers` (provider records), `messages` (the org message log) and
//!   `message_ids` (its deduplication index). Layouts are in `docs/store.md`.
//! - Every write that is acknowledged to anyone is written with `sync = true`: the WAL is
//!   fsynced before the write returns, so an acknowledged write survives `kill -9` and power
//!   loss.
//! - Every write goes through one `WriteBatch` together with the updated byte count, so the
//!   quota accounting can never disagree with the data after a crash.

use std::path::{Path, PathBuf};

use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, MultiThreaded, Options,
    WriteBatch, WriteOptions,
};

use crate::Error;

/// The schema this code reads and writes. Bump it on any layout change.
pub const SCHEMA_VERSION: u32 = 1;

pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_RECORDS: &str = "records";
pub(crate) const CF_PROVIDERS: &str = "providers";
pub(crate) const CF_MESSAGES: &str = "messages";
pub(crate) const CF_MESSAGE_IDS: &str = "message_ids";
const ALL_CFS: [&str; 5] = [
    CF_META,
    CF_RECORDS,
    CF_PROVIDERS,
    CF_MESSAGES,
    CF_MESSAGE_IDS,
];
/// The column families that hold org data (everything but `meta`).
const DATA_CFS: [&str; 4] = [CF_RECORDS, CF_PROVIDERS, CF_MESSAGES, CF_MESSAGE_IDS];

const KEY_SCHEMA: &[u8] = b"schema_version";
const KEY_USED: &[u8] = b"used_bytes";
/// Followed by `len(org):u8 || org`: an org's catch-up watermark (`log.rs`).
pub(crate) const KEY_SYNCED_PREFIX: &[u8] = b"history_synced/";

/// Limits of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes (keys + values of records and messages) the store holds.
    pub quota_bytes: u64,
    /// The largest record value accepted.
    pub max_record_bytes: usize,
    /// The largest logged message accepted.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            quota_bytes: 1 << 30,
            max_record_bytes: 64 * 1024,
            max_message_bytes: 64 * 1024,
        }
    }
}

/// Figures reported by `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Kademlia records held.
    pub records: u64,
    /// Logged messages held.
    pub messages: u64,
    /// Bytes used against the quota.
    pub bytes: u64,
    /// The quota.
    pub quota: u64,
}

type Db = DBWithThreadMode<MultiThreaded>;

/// An open store.
pub struct Store {
    db: Db,
    path: PathBuf,
    limits: Limits,
    used: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("used", &self.used)
            .finish()
    }
}

fn db_options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // Check checksums on every read and refuse to open a damaged database, rather than
    // serving or silently dropping damaged data.
    opts.set_paranoid_checks(true);
    // Small memory footprint: a node may run on a Raspberry Pi.
    opts.set_write_buffer_size(4 << 20);
    opts.set_max_write_buffer_number(2);
    opts.set_keep_log_file_num(2);
    opts.set_max_open_files(64);
    opts
}

pub(crate) fn sync_writes() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

impl Store {
    /// Opens (or creates) the store in `path`.
    ///
    /// Fails with [`Error::Corrupt`] when RocksDB finds damage, and with
    /// [`Error::IncompatibleSchema`] when the store was written by an incompatible version.
    pub fn open(path: &Path, limits: Limits) -> Result<Self, Error> {
        std::fs::create_dir_all(path).map_err(|e| Error::Io(path.to_owned(), e))?;
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = Db::open_cf_descriptors(&db_options(), path, cfs)
            .map_err(|e| Error::from_open(path, e))?;
        let mut store = Self {
            db,
            path: path.to_owned(),
            limits,
            used: 0,
        };
        let meta = store.cf(CF_META)?;
        match store.db.get_cf(&meta, KEY_SCHEMA)? {
            None => {
                let mut batch = WriteBatch::default();
                batch.put_cf(&meta, KEY_SCHEMA, SCHEMA_VERSION.to_be_bytes());
                batch.put_cf(&meta, KEY_USED, 0u64.to_be_bytes());
                store.db.write_opt(batch, &sync_writes())?;
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| Error::Corrupt(path.to_owned(), "schema version".into()))?;
                if found != SCHEMA_VERSION {
                    return Err(Error::IncompatibleSchema {
                        path: path.to_owned(),
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        let used = match store.db.get_cf(&meta, KEY_USED)? {
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupt(path.to_owned(), "byte count".into()))?,
            None => 0,
        };
        drop(meta);
        store.used = used;
        Ok(store)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn cf(&self, name: &str) -> Result<std::sync::Arc<BoundColumnFamily<'_>>, Error> {
        self.db.cf_handle(name).ok_or_else(|| {
            Error::Corrupt(self.path.clone(), format!("missing column family {name}"))
        })
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Bytes used against the quota.
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    /// Writes `batch` durably, with the byte count changed by `delta`; refuses growth past the
    /// quota.
    pub(crate) fn commit(&mut self, batch: WriteBatch, delta: i64) -> Result<(), Error> {
        self.commit_with(batch, delta, true)
    }

    /// Like `commit`; with `sync = false` the write reaches the WAL in the operating system's
    /// page cache but is not fsynced: it survives the process being killed, not a power loss,
    /// until [`Store::sync_wal`].
    pub(crate) fn commit_with(
        &mut self,
        mut batch: WriteBatch,
        delta: i64,
        sync: bool,
    ) -> Result<(), Error> {
        let used = self.used.saturating_add_signed(delta);
        if delta > 0 && used > self.limits.quota_bytes {
            return Err(Error::QuotaExceeded {
                quota: self.limits.quota_bytes,
                used: self.used,
                needed: delta as u64,
            });
        }
        let meta = self.cf(CF_META)?;
        batch.put_cf(&meta, KEY_USED, used.to_be_bytes());
        if sync {
            self.db.write_opt(batch, &sync_writes())?;
        } else {
            self.db.write(batch)?;
        }
        drop(meta);
        self.used = used;
        Ok(())
    }

    /// Fsyncs the WAL: every write made so far survives a power loss.
    pub fn sync_wal(&self) -> Result<(), Error> {
        Ok(self.db.flush_wal(true)?)
    }

    /// Counts of what the store holds.
    pub fn stats(&self) -> Result<Stats, Error> {
        let count = |name: &str| -> Result<u64, Error> {
            let cf = self.cf(name)?;
            let mut n = 0;
            for item in self.db.iterator_cf(&cf, rocksdb::IteratorMode::Start) {
                item?;
                n += 1;
            }
            Ok(n)
        };
        Ok(Stats {
            records: count(CF_RECORDS)?,
            messages: count(CF_MESSAGES)?,
            bytes: self.used,
            quota: self.limits.quota_bytes,
        })
    }

    /// Deletes every record, provider record and message, then compacts, so that the bytes
    /// leave the files on disk (a delete alone only writes tombstones). The WAL is flushed and
    /// old log files are removed by the compaction's flush.
    pub fn purge(&mut self) -> Result<(), Error> {
        let mut batch = WriteBatch::default();
        for name in DATA_CFS {
            let cf = self.cf(name)?;
            let last = self
                .db
                .iterator_cf(&cf, rocksdb::IteratorMode::End)
                .next()
                .transpose()?;
            if let Some((last, _)) = last {
                // [empty, last ++ 0x00) covers every key of the column family.
                let mut end = last.to_vec();
                end.push(0);
                batch.delete_range_cf(&cf, [0u8; 0].as_slice(), end.as_slice());
            }
        }
        self.used = 0;
        let meta = self.cf(CF_META)?;
        batch.put_cf(&meta, KEY_USED, 0u64.to_be_bytes());
        // With the messages gone, so are the catch-up watermarks: a node that opts in again
        // catches up from the start.
        let mut synced_end = KEY_SYNCED_PREFIX.to_vec();
        synced_end.push(0xff);
        batch.delete_range_cf(&meta, KEY_SYNCED_PREFIX, synced_end.as_slice());
        drop(meta);
        self.db.write_opt(batch, &sync_writes())?;
        for name in ALL_CFS {
            let cf = self.cf(name)?;
            self.db.flush_cf(&cf)?;
            let mut opts = rocksdb::CompactOptions::default();
            opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
            self.db
                .compact_range_cf_opt(&cf, None::<&[u8]>, None::<&[u8]>, &opts);
        }
        self.db.flush_wal(true)?;
        Ok(())
    }
}
