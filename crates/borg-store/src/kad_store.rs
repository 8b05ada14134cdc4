//! A Kademlia [`RecordStore`] persisted in the [`Store`].
//!
//! - Record expiry is stored as wall-clock Unix milliseconds, because kad's `Instant` means
//!   nothing after a restart. It is converted back against the current clocks when read, and
//!   expired records are skipped (and deleted when next written over).
//! - Sizes are bounded by [`Limits`](crate::Limits): a value over `max_record_bytes` or a write
//!   past the quota is refused with kad's `ValueTooLarge` / `MaxRecords`, the detail logged.
//! - Only records that pass [`crate::ownership::check`] are stored: nobody can overwrite a
//!   key they do not own.
//! - Provider records are keyed by `len(key):u16 || key || provider`, so one prefix scan lists
//!   the providers of a key.

use std::{
    borrow::Cow,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bincode::{Decode, Encode};
use libp2p::{
    Multiaddr, PeerId,
    kad::{
        ProviderRecord, Record, RecordKey,
        store::{self, RecordStore},
    },
};
use rocksdb::WriteBatch;

use crate::{
    Error, Store,
    db::{CF_PROVIDERS, CF_RECORDS},
    ownership,
};

/// Stored layout of a record value (`docs/store.md`).
#[derive(Encode, Decode)]
struct StoredRecord {
    version: u8,
    value: Vec<u8>,
    publisher: Vec<u8>,
    expires_unix_ms: u64,
}

/// Stored layout of a provider record.
#[derive(Encode, Decode)]
struct StoredProvider {
    version: u8,
    expires_unix_ms: u64,
    addresses: Vec<Vec<u8>>,
}

const STORED_VERSION: u8 = 1;

/// Never expires.
const NO_EXPIRY: u64 = u64::MAX;

fn codec() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ 16 * 1024 * 1024 }>()
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `Instant` → Unix ms, against the current readings of both clocks.
fn to_unix_ms(expires: Option<Instant>) -> u64 {
    match expires {
        None => NO_EXPIRY,
        Some(at) => {
            let now = Instant::now();
            let now_ms = unix_ms_now();
            if at >= now {
                now_ms.saturating_add(at.duration_since(now).as_millis() as u64)
            } else {
                now_ms.saturating_sub(now.duration_since(at).as_millis() as u64)
            }
        }
    }
}

/// Unix ms → `Instant`; `Err(())` if already expired.
fn from_unix_ms(ms: u64) -> Result<Option<Instant>, ()> {
    if ms == NO_EXPIRY {
        return Ok(None);
    }
    let now_ms = unix_ms_now();
    if ms <= now_ms {
        return Err(());
    }
    Ok(Some(Instant::now() + Duration::from_millis(ms - now_ms)))
}

fn provider_prefix(key: &RecordKey) -> Vec<u8> {
    let k = key.as_ref();
    let mut p = Vec::with_capacity(2 + k.len());
    p.extend_from_slice(&(k.len().min(u16::MAX as usize) as u16).to_be_bytes());
    p.extend_from_slice(k);
    p
}

/// The Kademlia record store of a node, over its [`Store`].
///
/// A node that has not opted in has no store at all ([`KadStore::disabled`]); one that opted
/// out after storing keeps its store open but stops accepting ([`KadStore::set_accepting`]).
#[derive(Debug)]
pub struct KadStore {
    store: Option<Store>,
    accepting: bool,
    local: PeerId,
}

impl KadStore {
    /// Wraps `store`, accepting records; `local` is this node's peer id (for
    /// [`RecordStore::provided`]).
    pub fn new(store: Store, local: PeerId) -> Self {
        Self {
            store: Some(store),
            accepting: true,
            local,
        }
    }

    /// A store that holds and accepts nothing.
    pub fn disabled(local: PeerId) -> Self {
        Self {
            store: None,
            accepting: false,
            local,
        }
    }

    /// Attaches an opened store (opting in at run time).
    pub fn attach(&mut self, store: Store) {
        self.store = Some(store);
    }

    /// Accept new records (opted in) or refuse them (opted out; what is held stays).
    pub fn set_accepting(&mut self, accepting: bool) {
        self.accepting = accepting;
    }

    /// Whether new records are accepted.
    pub fn is_accepting(&self) -> bool {
        self.accepting && self.store.is_some()
    }

    /// The underlying store, if any.
    pub fn store_opt(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// The underlying store, mutably, if any (message log, purge).
    pub fn store_opt_mut(&mut self) -> Option<&mut Store> {
        self.store.as_mut()
    }

    fn store(&self) -> Result<&Store, Error> {
        self.store.as_ref().ok_or(Error::Disabled)
    }

    fn writable(&mut self) -> Result<&mut Store, Error> {
        if !self.accepting {
            return Err(Error::Disabled);
        }
        self.store.as_mut().ok_or(Error::Disabled)
    }

    fn decode_record(&self, key: &[u8], bytes: &[u8]) -> Result<Option<Record>, Error> {
        let path = || {
            self.store
                .as_ref()
                .map(|s| s.path().to_owned())
                .unwrap_or_default()
        };
        let (stored, _): (StoredRecord, usize) = bincode::decode_from_slice(bytes, codec())
            .map_err(|e| Error::Corrupt(path(), format!("record: {e}")))?;
        if stored.version != STORED_VERSION {
            return Err(Error::Corrupt(
                path(),
                format!("record layout version {}", stored.version),
            ));
        }
        let Ok(expires) = from_unix_ms(stored.expires_unix_ms) else {
            return Ok(None);
        };
        let publisher = if stored.publisher.is_empty() {
            None
        } else {
            Some(
                PeerId::from_bytes(&stored.publisher)
                    .map_err(|_| Error::Corrupt(path(), "record publisher".into()))?,
            )
        };
        Ok(Some(Record {
            key: RecordKey::from(key.to_vec()),
            value: stored.value,
            publisher,
            expires,
        }))
    }

    /// Reads a record; expired records read as absent.
    pub fn get_record(&self, key: &RecordKey) -> Result<Option<Record>, Error> {
        let store = self.store()?;
        let cf = store.cf(CF_RECORDS)?;
        match store.db().get_cf(&cf, key.as_ref())? {
            None => Ok(None),
            Some(bytes) => self.decode_record(key.as_ref(), &bytes),
        }
    }

    /// Stores a record durably, after the ownership and size checks.
    pub fn put_record(&mut self, record: Record) -> Result<(), Error> {
        let store = self.writable()?;
        if record.value.len() > store.limits().max_record_bytes {
            return Err(Error::TooLarge {
                len: record.value.len(),
                max: store.limits().max_record_bytes,
            });
        }
        ownership::check(record.key.as_ref(), &record.value).map_err(Error::NotOwner)?;
        let stored = StoredRecord {
            version: STORED_VERSION,
            value: record.value,
            publisher: record.publisher.map(|p| p.to_bytes()).unwrap_or_default(),
            expires_unix_ms: to_unix_ms(record.expires),
        };
        let bytes = bincode::encode_to_vec(&stored, codec())
            .map_err(|e| Error::Corrupt(store.path().to_owned(), e.to_string()))?;
        let key = record.key.as_ref();
        let cf = store.cf(CF_RECORDS)?;
        let old = store
            .db()
            .get_cf(&cf, key)?
            .map_or(0, |v| v.len() + key.len());
        let delta = (key.len() + bytes.len()) as i64 - old as i64;
        let mut batch = WriteBatch::default();
        batch.put_cf(&cf, key, bytes);
        drop(cf);
        store.commit(batch, delta)
    }

    /// Deletes a record.
    pub fn remove_record(&mut self, key: &RecordKey) -> Result<(), Error> {
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        let cf = store.cf(CF_RECORDS)?;
        let Some(old) = store.db().get_cf(&cf, key.as_ref())? else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(&cf, key.as_ref());
        drop(cf);
        store.commit(batch, -((old.len() + key.as_ref().len()) as i64))
    }

    /// Every unexpired record.
    pub fn all_records(&self) -> Result<Vec<Record>, Error> {
        let Some(store) = self.store.as_ref() else {
            return Ok(Vec::new());
        };
        let cf = store.cf(CF_RECORDS)?;
        let mut out = Vec::new();
        for item in store.db().iterator_cf(&cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            if let Some(r) = self.decode_record(&k, &v)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Stores a provider record.
    pub fn put_provider(&mut self, record: ProviderRecord) -> Result<(), Error> {
        let store = self.writable()?;
        let stored = StoredProvider {
            version: STORED_VERSION,
            expires_unix_ms: to_unix_ms(record.expires),
            addresses: record
                .addresses
                .iter()
                .take(16)
                .map(|a| a.to_vec())
                .collect(),
        };
        let bytes = bincode::encode_to_vec(&stored, codec())
            .map_err(|e| Error::Corrupt(store.path().to_owned(), e.to_string()))?;
        let mut key = provider_prefix(&record.key);
        key.extend_from_slice(&record.provider.to_bytes());
        let cf = store.cf(CF_PROVIDERS)?;
        let old = store
            .db()
            .get_cf(&cf, &key)?
            .map_or(0, |v| v.len() + key.len());
        let delta = (key.len() + bytes.len()) as i64 - old as i64;
        let mut batch = WriteBatch::default();
        batch.put_cf(&cf, &key, bytes);
        drop(cf);
        store.commit(batch, delta)
    }

    /// The unexpired providers of `key`.
    pub fn get_providers(&self, key: &RecordKey) -> Result<Vec<ProviderRecord>, Error> {
        let Some(store) = self.store.as_ref() else {
            return Ok(Vec::new());
        };
        let prefix = provider_prefix(key);
        let cf = store.cf(CF_PROVIDERS)?;
        let mut out = Vec::new();
        for item in store.db().prefix_iterator_cf(&cf, &prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some(p) = self.decode_provider(key.clone(), &k[prefix.len()..], &v)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    fn decode_provider(
        &self,
        key: RecordKey,
        provider: &[u8],
        bytes: &[u8],
    ) -> Result<Option<ProviderRecord>, Error> {
        let path = self
            .store
            .as_ref()
            .map(|s| s.path().to_owned())
            .unwrap_or_default();
        let corrupt = |what: &str| Error::Corrupt(path.clone(), what.to_owned());
        let (stored, _): (StoredProvider, usize) =
            bincode::decode_from_slice(bytes, codec()).map_err(|_| corrupt("provider record"))?;
        let Ok(expires) = from_unix_ms(stored.expires_unix_ms) else {
            return Ok(None);
        };
        Ok(Some(ProviderRecord {
            key,
            provider: PeerId::from_bytes(provider).map_err(|_| corrupt("provider id"))?,
            expires,
            addresses: stored
                .addresses
                .into_iter()
                .filter_map(|a| Multiaddr::try_from(a).ok())
                .collect(),
        }))
    }

    /// Every unexpired provider record.
    pub fn all_providers(&self) -> Result<Vec<ProviderRecord>, Error> {
        let Some(store) = self.store.as_ref() else {
            return Ok(Vec::new());
        };
        let cf = store.cf(CF_PROVIDERS)?;
        let mut out = Vec::new();
        for item in store.db().iterator_cf(&cf, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            if k.len() < 2 {
                continue;
            }
            let len = u16::from_be_bytes([k[0], k[1]]) as usize;
            if k.len() < 2 + len {
                continue;
            }
            let key = RecordKey::from(k[2..2 + len].to_vec());
            if let Some(p) = self.decode_provider(key, &k[2 + len..], &v)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Deletes one provider record.
    pub fn delete_provider(&mut self, key: &RecordKey, provider: &PeerId) -> Result<(), Error> {
        let Some(store) = self.store.as_mut() else {
            return Ok(());
        };
        let mut k = provider_prefix(key);
        k.extend_from_slice(&provider.to_bytes());
        let cf = store.cf(CF_PROVIDERS)?;
        let Some(old) = store.db().get_cf(&cf, &k)? else {
            return Ok(());
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(&cf, &k);
        drop(cf);
        store.commit(batch, -((old.len() + k.len()) as i64))
    }
}

/// Logs a store error at the kad boundary, where only kad's coarse error kinds can pass.
fn to_kad(e: Error) -> store::Error {
    tracing::warn!(error = %e, "store refused a record");
    match e {
        Error::TooLarge { .. } => store::Error::ValueTooLarge,
        _ => store::Error::MaxRecords,
    }
}

impl RecordStore for KadStore {
    type RecordsIter<'a> = std::vec::IntoIter<Cow<'a, Record>>;
    type ProvidedIter<'a> = std::vec::IntoIter<Cow<'a, ProviderRecord>>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        match self.get_record(k) {
            Ok(r) => r.map(Cow::Owned),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a record");
                None
            }
        }
    }

    fn put(&mut self, r: Record) -> store::Result<()> {
        self.put_record(r).map_err(to_kad)
    }

    fn remove(&mut self, k: &RecordKey) {
        if let Err(e) = self.remove_record(k) {
            tracing::warn!(error = %e, "cannot remove a record");
        }
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.all_records()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot list records");
                Vec::new()
            })
            .into_iter()
            .map(Cow::Owned)
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        self.put_provider(record).map_err(|e| {
            tracing::warn!(error = %e, "store refused a provider record");
            store::Error::MaxProvidedKeys
        })
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.get_providers(key).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read providers");
            Vec::new()
        })
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.all_providers()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.provider == self.local)
            .map(Cow::Owned)
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        if let Err(e) = self.delete_provider(k, p) {
            tracing::warn!(error = %e, "cannot remove a provider record");
        }
    }
}
