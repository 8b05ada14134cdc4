//! The org message log: every message of an org, in order, deduplicated by id.
//!
//! - `messages`: key `len(org):u8 || org || sent_at_ms:u64 BE || id:16` → the envelope bytes
//!   exactly as received, so a catching-up peer can verify the author's signature itself.
//! - `message_ids`: key `len(org):u8 || org || id` → `sent_at_ms:u64 BE`, the dedup index.
//! - Ordering is by the author's timestamp, then id: the same on every node, whatever order
//!   the messages arrived in.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::{
    Error, Store,
    db::{CF_MESSAGE_IDS, CF_MESSAGES, CF_META, KEY_SYNCED_PREFIX},
};

/// The longest org name accepted (as in borg-proto).
const MAX_ORG_BYTES: usize = 64;

/// One logged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedMessage {
    /// The author's timestamp, Unix ms.
    pub sent_at_ms: u64,
    /// The message id.
    pub id: [u8; 16],
    /// When this node logged it, Unix ms.
    pub received_at_ms: u64,
    /// The envelope, as received.
    pub envelope: Vec<u8>,
}

fn org_prefix(org: &str) -> Result<Vec<u8>, Error> {
    if org.is_empty() || org.len() > MAX_ORG_BYTES {
        return Err(Error::BadOrg(org.to_owned()));
    }
    let mut p = Vec::with_capacity(1 + org.len() + 24);
    p.push(org.len() as u8);
    p.extend_from_slice(org.as_bytes());
    Ok(p)
}

impl Store {
    /// Logs a message durably (fsynced before it returns); `Ok(false)` if this org already has a
    /// message with `id`.
    pub fn append_message(
        &mut self,
        org: &str,
        sent_at_ms: u64,
        id: [u8; 16],
        received_at_ms: u64,
        envelope: &[u8],
    ) -> Result<bool, Error> {
        self.append(org, sent_at_ms, id, received_at_ms, envelope, true)
    }

    /// Logs a message without waiting for the fsync: it survives the process being killed at
    /// once, and a power loss after the next [`Store::sync_wal`]. For messages received from
    /// others, which this node acknowledged to no one.
    pub fn append_message_buffered(
        &mut self,
        org: &str,
        sent_at_ms: u64,
        id: [u8; 16],
        received_at_ms: u64,
        envelope: &[u8],
    ) -> Result<bool, Error> {
        self.append(org, sent_at_ms, id, received_at_ms, envelope, false)
    }

    fn append(
        &mut self,
        org: &str,
        sent_at_ms: u64,
        id: [u8; 16],
        received_at_ms: u64,
        envelope: &[u8],
        sync: bool,
    ) -> Result<bool, Error> {
        if envelope.len() > self.limits().max_message_bytes {
            return Err(Error::TooLarge {
                len: envelope.len(),
                max: self.limits().max_message_bytes,
            });
        }
        let prefix = org_prefix(org)?;
        let mut id_key = prefix.clone();
        id_key.extend_from_slice(&id);
        let ids = self.cf(CF_MESSAGE_IDS)?;
        if self.db().get_cf(&ids, &id_key)?.is_some() {
            return Ok(false);
        }
        let mut key = prefix;
        key.extend_from_slice(&sent_at_ms.to_be_bytes());
        key.extend_from_slice(&id);
        let messages = self.cf(CF_MESSAGES)?;
        let mut value = Vec::with_capacity(8 + envelope.len());
        value.extend_from_slice(&received_at_ms.to_be_bytes());
        value.extend_from_slice(envelope);
        let mut batch = WriteBatch::default();
        batch.put_cf(&messages, &key, &value);
        batch.put_cf(&ids, &id_key, sent_at_ms.to_be_bytes());
        let delta = (key.len() + value.len() + id_key.len() + 8) as i64;
        drop((ids, messages));
        self.commit_with(batch, delta, sync)?;
        Ok(true)
    }

    /// Whether `org` has a message with `id`.
    pub fn has_message(&self, org: &str, id: [u8; 16]) -> Result<bool, Error> {
        let mut id_key = org_prefix(org)?;
        id_key.extend_from_slice(&id);
        let ids = self.cf(CF_MESSAGE_IDS)?;
        Ok(self.db().get_cf(&ids, &id_key)?.is_some())
    }

    /// Up to `limit` messages of `org` sent at or after `since_ms`, oldest first.
    pub fn history(
        &self,
        org: &str,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<LoggedMessage>, Error> {
        let prefix = org_prefix(org)?;
        let mut start = prefix.clone();
        start.extend_from_slice(&since_ms.to_be_bytes());
        let messages = self.cf(CF_MESSAGES)?;
        let mut out = Vec::new();
        for item in self
            .db()
            .iterator_cf(&messages, IteratorMode::From(&start, Direction::Forward))
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.starts_with(&prefix) || k.len() != prefix.len() + 24 {
                break;
            }
            let rest = &k[prefix.len()..];
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&rest[..8]);
            let mut id = [0u8; 16];
            id.copy_from_slice(&rest[8..]);
            if v.len() < 8 {
                return Err(Error::Corrupt(
                    self.path().to_owned(),
                    "logged message".into(),
                ));
            }
            let mut received = [0u8; 8];
            received.copy_from_slice(&v[..8]);
            out.push(LoggedMessage {
                sent_at_ms: u64::from_be_bytes(ts),
                id,
                received_at_ms: u64::from_be_bytes(received),
                envelope: v[8..].to_vec(),
            });
        }
        Ok(out)
    }
}

impl Store {
    /// The org's catch-up watermark, Unix ms: this node's log holds every message sent before
    /// it that the peers it caught up with held when it did (see
    /// [`Store::advance_history_synced`]); 0 until the node completes a catch-up for `org`.
    ///
    /// A node asks for history from here, not from the newest message it holds: live messages
    /// received before a catch-up finishes are newer than the gap being filled.
    pub fn history_synced_ms(&self, org: &str) -> Result<u64, Error> {
        let meta = self.cf(CF_META)?;
        let Some(value) = self.db().get_cf(&meta, synced_key(org)?)? else {
            return Ok(0);
        };
        let bytes: [u8; 8] = value
            .as_slice()
            .try_into()
            .map_err(|_| Error::Corrupt(self.path().to_owned(), "history watermark".into()))?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// Moves the org's catch-up watermark forward to `ms` (never back). Not fsynced: written
    /// after the caught-up messages to the same WAL, so a crash can lose it only with them.
    pub fn advance_history_synced(&mut self, org: &str, ms: u64) -> Result<(), Error> {
        if ms <= self.history_synced_ms(org)? {
            return Ok(());
        }
        let meta = self.cf(CF_META)?;
        self.db()
            .put_cf(&meta, synced_key(org)?, ms.to_be_bytes())?;
        Ok(())
    }
}

fn synced_key(org: &str) -> Result<Vec<u8>, Error> {
    let mut key = KEY_SYNCED_PREFIX.to_vec();
    key.extend_from_slice(&org_prefix(org)?);
    Ok(key)
}
