//! Storage inside the node: opting in and out, the org message log, catch-up, and put/get of
//! replicated data.
//!
//! - Opted in: the store DHT (`/borg/store/1.0.0`) runs in server mode over RocksDB, and every
//!   message of the node's orgs is logged (deduplicated by id): own messages fsynced at once,
//!   received ones with the write-ahead log synced every second. Opted out: client mode, nothing
//!   of others' accepted, what is held is kept (or purged on request).
//! - Catch-up: when an opted-in member meets another member of an org (a new connection, or a
//!   member heard for the first time), it asks it once for the messages since its newest one.
//! - `put`: a value up to [`INLINE_MAX`] is one owned record; a larger one is split into
//!   content-addressed chunks plus an owned manifest. Each record is stored locally (when
//!   opted in) and on the `replication_factor` storing nodes closest to its key; the put
//!   reports the fewest acknowledgements any record got, and fails under a majority.
//! - `get`: the owned record (verified against its owner's signature), then every chunk
//!   (verified against its hash) and the whole (length and SHA-256).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use bincode::{Decode, Encode};
use borg_proto::{Envelope, OrgName, Unverified, verify_batch};
use borg_store::{KadStore, Store, ownership};
use libp2p::{
    PeerId,
    kad::{self, Quorum, Record, RecordKey},
    request_response::{self, OutboundRequestId},
};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::{Node, NodeError, unix_ms};
use crate::{
    api::{Delivered, GetResult, PutResult, StoreStatus},
    history::{self, HistoryRequest, HistoryResponse, MAX_PAGE},
};

/// Values up to this size are stored as one record; larger ones are chunked.
pub(super) const INLINE_MAX: usize = 32 * 1024;

/// Size of one chunk of a large value.
const CHUNK_BYTES: usize = 48 * 1024;

/// Buffered message-log writes are fsynced at least this often.
pub(super) const WAL_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// How long after an empty history answer, or a failed request, a node asks that peer once
/// more.
const HISTORY_RETRY_AFTER: Duration = Duration::from_secs(3);

/// How far behind the newest message a completed catch-up sets the org's watermark (see
/// `advance_history_synced`): the clock skew between authors that catch-up tolerates. Each
/// catch-up asks again for this much of what it already holds.
const HISTORY_SKEW_MARGIN: Duration = Duration::from_secs(60);

/// The largest value `put` accepts.
pub const MAX_PUT_BYTES: usize = 16 * 1024 * 1024;

fn codec() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ 1024 * 1024 }>()
}

/// The payload of an owned data record (`docs/store.md`).
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
enum Payload {
    /// The value itself.
    Inline(Vec<u8>),
    /// A large value: its length, SHA-256, and the SHA-256 of each chunk, in order.
    Manifest {
        len: u64,
        sha256: [u8; 32],
        chunks: Vec<[u8; 32]>,
    },
}

pub(super) struct PutJob {
    reply: Option<oneshot::Sender<Result<PutResult, NodeError>>>,
    remaining: usize,
    min_acks: usize,
    result: PutResult,
}

pub(super) enum PutStep {
    FindPeers {
        job: u64,
        record: Record,
        local: bool,
    },
    Store {
        job: u64,
        local: bool,
        sent: usize,
    },
}

pub(super) struct GetJob {
    reply: Option<oneshot::Sender<Result<GetResult, NodeError>>>,
    owner: PeerId,
    name: String,
    manifest: Option<(u64, [u8; 32])>,
    chunks: Vec<Option<Vec<u8>>>,
}

pub(super) enum GetStep {
    Root {
        job: u64,
    },
    Chunk {
        job: u64,
        index: usize,
        hash: [u8; 32],
    },
}

/// Storage state of the node.
#[derive(Default)]
pub(super) struct Storage {
    pub(super) on: bool,
    /// Buffered writes wait for a WAL sync.
    wal_dirty: bool,
    history_asked: std::collections::HashSet<(PeerId, OrgName)>,
    /// Asks answered with nothing or failed (see `on_history_page`): made once more at the
    /// given time (`Some`), or already made once more on this connection (`None`).
    history_retries: HashMap<(PeerId, OrgName), Option<Instant>>,
    /// Outstanding history requests: the org and the `since_ms` asked for.
    history_requests: HashMap<OutboundRequestId, (OrgName, u64)>,
    next_job: u64,
    put_jobs: HashMap<u64, PutJob>,
    put_steps: HashMap<kad::QueryId, PutStep>,
    get_jobs: HashMap<u64, GetJob>,
    get_steps: HashMap<kad::QueryId, GetStep>,
}

impl Storage {
    pub(super) fn new(on: bool) -> Self {
        Self {
            on,
            ..Self::default()
        }
    }

    /// Schedules one more ask of `peer` for `org`'s history `HISTORY_RETRY_AFTER` from now,
    /// unless one was already scheduled or made on this connection.
    fn retry_history_later(&mut self, peer: PeerId, org: &OrgName) {
        self.history_retries
            .entry((peer, org.clone()))
            .or_insert(Some(Instant::now() + HISTORY_RETRY_AFTER));
    }

    pub(super) fn forget_history_asks(&mut self, peer: &PeerId) {
        self.history_asked.retain(|(p, _)| p != peer);
        self.history_retries.retain(|(p, _), _| p != peer);
    }
}

/// Opens the store of `data_dir` if the node starts opted in.
pub(super) fn open_kad_store(
    config: &crate::config::Config,
    local: PeerId,
) -> anyhow::Result<KadStore> {
    if !config.store {
        return Ok(KadStore::disabled(local));
    }
    let store = Store::open(&config.data_dir.join("store"), config.store_limits.clone())?;
    Ok(KadStore::new(store, local))
}

impl Node {
    fn kad_store(&mut self) -> &mut KadStore {
        self.swarm.behaviour_mut().store_kad.store_mut()
    }

    pub(super) fn store_status(&mut self) -> StoreStatus {
        let on = self.storage.on;
        let stats = self.kad_store().store_opt().map(|s| s.stats());
        match stats {
            Some(Ok(stats)) => StoreStatus {
                store: on,
                records: stats.records,
                messages: stats.messages,
                bytes: stats.bytes,
                quota: stats.quota,
            },
            _ => StoreStatus {
                store: on,
                records: 0,
                messages: 0,
                bytes: 0,
                quota: self.config.store_limits.quota_bytes,
            },
        }
    }

    /// Opts in or out; `purge` (with `on = false`) deletes everything stored.
    pub(super) fn set_store(&mut self, on: bool, purge: bool) -> Result<StoreStatus, NodeError> {
        if on && self.kad_store().store_opt().is_none() {
            let store = Store::open(
                &self.config.data_dir.join("store"),
                self.config.store_limits.clone(),
            )
            .map_err(|e| NodeError::Store(e.to_string()))?;
            self.kad_store().attach(store);
        }
        self.kad_store().set_accepting(on);
        self.swarm.behaviour_mut().store_kad.set_mode(Some(if on {
            kad::Mode::Server
        } else {
            kad::Mode::Client
        }));
        self.storage.on = on;
        if purge && let Some(store) = self.kad_store().store_opt_mut() {
            store.purge().map_err(|e| NodeError::Store(e.to_string()))?;
        }
        tracing::info!(store = on, purge, "store setting changed");
        if on {
            // Catch up on what was missed while not storing.
            self.storage.history_asked.clear();
            self.ask_history_everywhere();
        }
        Ok(self.store_status())
    }

    /// Re-puts every record this node holds to the storing nodes closest to its key: done once
    /// shortly after start, so a restarted node restores replication at once rather than at the
    /// next periodic round.
    pub(super) fn republish_held_records(&mut self) {
        if !self.storage.on {
            return;
        }
        let records = match self.kad_store().all_records() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list records to republish");
                return;
            }
        };
        let n = records.len();
        for record in records {
            if let Err(e) = self
                .swarm
                .behaviour_mut()
                .store_kad
                .put_record(record, Quorum::One)
            {
                tracing::debug!(error = %e, "record not republished");
            }
        }
        if n > 0 {
            tracing::info!(records = n, "republished held records");
        }
    }

    /// Logs a delivered or sent message when opted in.
    ///
    /// `durable`: fsynced before returning, for this node's own messages (their `send` is
    /// acknowledged to the user). Messages received from others are written without waiting
    /// for the fsync (they survive the process being killed at once, and a power loss after
    /// the next WAL sync, at most [`WAL_SYNC_INTERVAL`] later): an fsync per received message
    /// would stall the event loop on slow disks.
    pub(super) fn log_message(&mut self, org: &OrgName, envelope: &Envelope, durable: bool) {
        if !self.storage.on {
            return;
        }
        let bytes = envelope.encode();
        let id = envelope.id().0;
        let sent = envelope.sent_at_ms();
        let Some(store) = self.kad_store().store_opt_mut() else {
            return;
        };
        let result = if durable {
            store.append_message(org.as_str(), sent, id, unix_ms(), &bytes)
        } else {
            store.append_message_buffered(org.as_str(), sent, id, unix_ms(), &bytes)
        };
        match result {
            Ok(_) => self.storage.wal_dirty |= !durable,
            Err(e) => tracing::warn!(%org, error = %e, "message not logged"),
        }
    }

    /// Fsyncs the store's WAL if buffered writes are waiting.
    pub(super) fn sync_wal_if_dirty(&mut self) {
        if !std::mem::take(&mut self.storage.wal_dirty) {
            return;
        }
        if let Some(store) = self.kad_store().store_opt()
            && let Err(e) = store.sync_wal()
        {
            tracing::warn!(error = %e, "cannot sync the store's write-ahead log");
        }
    }

    pub(super) fn history(
        &mut self,
        org: &OrgName,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<Delivered>, NodeError> {
        let Some(store) = self.kad_store().store_opt() else {
            return Err(NodeError::Store(
                "this node does not store messages; run `borg-node store on`".into(),
            ));
        };
        let logged = store
            .history(org.as_str(), since_ms, limit)
            .map_err(|e| NodeError::Store(e.to_string()))?;
        // Checked again on the way out (in batches): the data dir is only as trustworthy as
        // the disk it is on.
        let (parsed, received): (Vec<Unverified>, Vec<u64>) = logged
            .into_iter()
            .filter_map(|m| Some((Envelope::parse(&m.envelope).ok()?, m.received_at_ms)))
            .unzip();
        Ok(verify_batch(parsed)
            .into_iter()
            .zip(received)
            .filter_map(|(env, received_at_ms)| {
                Some(super::orgs::delivered(&env.ok()?, org, received_at_ms))
            })
            .collect())
    }

    /// Asks `peer` (a member of `org`) once for the messages this node missed.
    pub(super) fn ask_history(&mut self, peer: PeerId, org: &OrgName) {
        if !self.storage.on || peer == self.local_peer_id() || !self.swarm.is_connected(&peer) {
            return;
        }
        if !self.storage.history_asked.insert((peer, org.clone())) {
            return;
        }
        let since_ms = match self
            .kad_store()
            .store_opt()
            .map(|s| s.history_synced_ms(org.as_str()))
        {
            Some(Ok(since)) => since,
            Some(Err(e)) => {
                tracing::warn!(%org, error = %e, "catch-up watermark unreadable; asking for all");
                0
            }
            None => return,
        };
        self.request_history(peer, org.clone(), since_ms);
    }

    fn request_history(&mut self, peer: PeerId, org: OrgName, since_ms: u64) {
        let id = self.swarm.behaviour_mut().history.send_request(
            &peer,
            HistoryRequest {
                org: org.to_string(),
                since_ms,
                limit: MAX_PAGE,
            },
        );
        self.storage.history_requests.insert(id, (org, since_ms));
    }

    fn ask_history_everywhere(&mut self) {
        let pairs: Vec<(PeerId, OrgName)> = self
            .orgs
            .values()
            .flat_map(|o| {
                let org = o.name().clone();
                self.swarm
                    .behaviour()
                    .connections
                    .connected_peers()
                    .filter(|p| o.has_member(p))
                    .map(move |p| (*p, org.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (peer, org) in pairs {
            self.ask_history(peer, &org);
        }
    }

    pub(super) fn on_history_event(
        &mut self,
        event: request_response::Event<HistoryRequest, HistoryResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let response = self.answer_history(peer, &request);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .history
                    .send_response(channel, response);
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some((org, since_ms)) = self.storage.history_requests.remove(&request_id)
                else {
                    return;
                };
                self.on_history_page(peer, org, since_ms, response);
            }
            request_response::Event::OutboundFailure {
                request_id,
                peer,
                error,
                ..
            } => {
                if let Some((org, _)) = self.storage.history_requests.remove(&request_id) {
                    tracing::debug!(%peer, %org, %error, "history request failed");
                    // Ask once more a little later (if still connected), and on the next
                    // meeting in any case.
                    self.storage.retry_history_later(peer, &org);
                    self.storage.history_asked.remove(&(peer, org));
                }
            }
            _ => {}
        }
    }

    fn answer_history(&mut self, peer: PeerId, request: &HistoryRequest) -> HistoryResponse {
        let empty = |storing| HistoryResponse {
            storing,
            messages: Vec::new(),
            more: false,
        };
        let Ok(org) = OrgName::new(&request.org) else {
            return empty(false);
        };
        // Only members get an org's history: it must not leak to anyone who asks.
        let member = self.orgs.get(&org).is_some_and(|o| o.has_member(&peer));
        if !self.storage.on || !member {
            return empty(self.storage.on);
        }
        let limit = request.limit.min(MAX_PAGE) as usize;
        let Some(store) = self.kad_store().store_opt() else {
            return empty(false);
        };
        match store.history(org.as_str(), request.since_ms, limit + 1) {
            Ok(mut page) => {
                let more = page.len() > limit;
                page.truncate(limit);
                HistoryResponse {
                    storing: true,
                    messages: page
                        .into_iter()
                        .map(|m| history::Envelope(m.envelope))
                        .collect(),
                    more,
                }
            }
            Err(e) => {
                tracing::warn!(%org, error = %e, "cannot read history");
                empty(true)
            }
        }
    }

    /// Makes the history asks that are due again (`on_history_page`).
    pub(super) fn retry_history_asks(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (key, at) in &mut self.storage.history_retries {
            if at.is_some_and(|at| now >= at) {
                *at = None;
                due.push(key.clone());
            }
        }
        for (peer, org) in due {
            self.storage.history_asked.remove(&(peer, org.clone()));
            self.ask_history(peer, &org);
        }
    }

    fn on_history_page(
        &mut self,
        peer: PeerId,
        org: OrgName,
        since_ms: u64,
        page: HistoryResponse,
    ) {
        // An empty answer may only mean that the peer does not know us as a member yet (it
        // answers members only, and learns of us from our gossipsub subscription or our
        // announcement, which can arrive after our request): ask once more a little later.
        if page.messages.is_empty() && page.storing {
            self.storage.retry_history_later(peer, &org);
        }
        let mut newest = None;
        let mut added = 0;
        // The signatures are checked here (together): a peer cannot slip in forged history.
        let page_messages = &page.messages[..page.messages.len().min(MAX_PAGE as usize)];
        let envelopes: Option<Vec<Envelope>> = page_messages
            .iter()
            .map(|bytes| Envelope::parse(&bytes.0).ok())
            .collect::<Option<Vec<Unverified>>>()
            .and_then(|parsed| verify_batch(parsed).into_iter().map(Result::ok).collect());
        let Some(envelopes) = envelopes else {
            tracing::info!(%peer, %org, "invalid envelope in history; page dropped");
            return;
        };
        for (bytes, envelope) in page_messages.iter().zip(envelopes) {
            if *envelope.claimed_org() != org && envelope.org() != &org {
                tracing::info!(%peer, %org, "history of another org; page dropped");
                return;
            }
            newest = newest.max(Some(envelope.sent_at_ms()));
            if let Some(store) = self.kad_store().store_opt_mut() {
                match store.append_message_buffered(
                    org.as_str(),
                    envelope.sent_at_ms(),
                    envelope.id().0,
                    unix_ms(),
                    &bytes.0,
                ) {
                    Ok(true) => added += 1,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(%org, error = %e, "caught-up message not logged"),
                }
            }
        }
        if added > 0 {
            self.storage.wal_dirty = true;
            tracing::info!(%org, %peer, added, "caught up on missed messages");
        }
        // Continue only while pages move forward in time: a peer that keeps saying "more"
        // without moving forward (or a page of messages with one timestamp) cannot loop us. A
        // page of messages already held still moves forward: the asker starts at its
        // watermark, and live messages may have filled the newest part of the gap first.
        match newest {
            Some(newest) if page.more && newest > since_ms => {
                self.request_history(peer, org, newest);
            }
            _ if !page.more && page.storing => {
                // The peer has sent all it held from the watermark on.
                let reached = newest.unwrap_or(since_ms).max(since_ms);
                self.advance_history_synced(&org, reached);
            }
            _ => {}
        }
    }

    /// Moves `org`'s catch-up watermark to `reached` (the newest timestamp a completed
    /// catch-up covered) less `HISTORY_SKEW_MARGIN`, and never past the local clock: a message
    /// stamped by an author whose clock runs behind, or stamped in the future by a lying
    /// author, must not push the next catch-up past messages not yet received.
    fn advance_history_synced(&mut self, org: &OrgName, reached: u64) {
        let margin = HISTORY_SKEW_MARGIN.as_millis() as u64;
        let mark = reached.min(unix_ms()).saturating_sub(margin);
        if let Some(store) = self.kad_store().store_opt_mut()
            && let Err(e) = store.advance_history_synced(org.as_str(), mark)
        {
            tracing::warn!(%org, error = %e, "catch-up watermark not saved");
        }
    }

    /// Starts a put of `data` under `name`; answers on `reply` when done.
    pub(super) fn put(
        &mut self,
        name: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<PutResult, NodeError>>,
    ) {
        if data.len() > MAX_PUT_BYTES {
            let _ = reply.send(Err(NodeError::Store(format!(
                "value is {} bytes; the limit is {MAX_PUT_BYTES}",
                data.len()
            ))));
            return;
        }
        if name.is_empty() || name.len() > 256 || name.contains('\0') {
            let _ = reply.send(Err(NodeError::Store(
                "the key must be 1 to 256 bytes".into(),
            )));
            return;
        }
        let mut records = Vec::new();
        let payload = if data.len() <= INLINE_MAX {
            Payload::Inline(data.clone())
        } else {
            let mut hashes = Vec::new();
            for chunk in data.chunks(CHUNK_BYTES) {
                let key = ownership::chunk_key(chunk);
                hashes.push(Sha256::digest(chunk).into());
                records.push(Record::new(key, chunk.to_vec()));
            }
            Payload::Manifest {
                len: data.len() as u64,
                sha256: Sha256::digest(&data).into(),
                chunks: hashes,
            }
        };
        let payload = match bincode::encode_to_vec(&payload, codec()) {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(NodeError::Store(e.to_string())));
                return;
            }
        };
        let (key, value) = match ownership::sign(&self.keypair, &name, payload) {
            Ok(kv) => kv,
            Err(e) => {
                let _ = reply.send(Err(NodeError::Store(e.to_string())));
                return;
            }
        };
        let mut root = Record::new(key.clone(), value);
        root.publisher = Some(self.local_peer_id());
        records.push(root);
        let job = self.storage.next_job;
        self.storage.next_job += 1;
        let chunks = records.len() - 1;
        self.storage.put_jobs.insert(
            job,
            PutJob {
                reply: Some(reply),
                remaining: records.len(),
                min_acks: usize::MAX,
                result: PutResult {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    name,
                    replicas: 0,
                    quorum: self.quorum(),
                    chunks,
                    bytes: data.len(),
                },
            },
        );
        for record in records {
            let local = self.storage.on && self.kad_store().put_record(record.clone()).is_ok();
            let query = self
                .swarm
                .behaviour_mut()
                .store_kad
                .get_closest_peers(record.key.to_vec());
            self.storage
                .put_steps
                .insert(query, PutStep::FindPeers { job, record, local });
        }
    }

    /// Acknowledgements a put needs: a majority of the replication factor.
    fn quorum(&self) -> usize {
        self.config.replication_factor.get() / 2 + 1
    }

    fn put_step_done(&mut self, job: u64, acks: usize, error: Option<String>) {
        let Some(j) = self.storage.put_jobs.get_mut(&job) else {
            return;
        };
        j.min_acks = j.min_acks.min(acks);
        if let Some(e) = error {
            tracing::debug!(job, error = %e, "put step failed");
        }
        j.remaining -= 1;
        if j.remaining > 0 {
            return;
        }
        let Some(mut j) = self.storage.put_jobs.remove(&job) else {
            return;
        };
        j.result.replicas = j.min_acks;
        let outcome = if j.min_acks >= j.result.quorum {
            Ok(j.result)
        } else {
            Err(NodeError::Store(format!(
                "only {} of the {} storing nodes needed acknowledged (is anyone storing? `borg-node store on`)",
                j.min_acks, j.result.quorum
            )))
        };
        if let Some(reply) = j.reply.take() {
            let _ = reply.send(outcome);
        }
    }

    /// Starts a get of `owner`'s `name`.
    pub(super) fn get(
        &mut self,
        owner: PeerId,
        name: String,
        reply: oneshot::Sender<Result<GetResult, NodeError>>,
    ) {
        let job = self.storage.next_job;
        self.storage.next_job += 1;
        let key = ownership::owned_key(&owner, &name);
        self.storage.get_jobs.insert(
            job,
            GetJob {
                reply: Some(reply),
                owner,
                name,
                manifest: None,
                chunks: Vec::new(),
            },
        );
        let query = self
            .swarm
            .behaviour_mut()
            .store_kad
            .get_record(RecordKey::from(key));
        self.storage.get_steps.insert(query, GetStep::Root { job });
    }

    fn fail_get(&mut self, job: u64, error: NodeError) {
        if let Some(mut j) = self.storage.get_jobs.remove(&job)
            && let Some(reply) = j.reply.take()
        {
            let _ = reply.send(Err(error));
        }
    }

    fn on_root_record(&mut self, job: u64, record: &Record) -> Result<(), NodeError> {
        let payload = ownership::open_owned(record.key.as_ref(), &record.value)
            .map_err(|e| NodeError::Store(format!("invalid record: {e}")))?;
        let (payload, _): (Payload, usize) = bincode::decode_from_slice(&payload, codec())
            .map_err(|e| NodeError::Store(format!("invalid record payload: {e}")))?;
        match payload {
            Payload::Inline(data) => {
                if let Some(mut j) = self.storage.get_jobs.remove(&job) {
                    let result = GetResult {
                        owner: j.owner.to_string(),
                        name: j.name.clone(),
                        data,
                    };
                    if let Some(reply) = j.reply.take() {
                        let _ = reply.send(Ok(result));
                    }
                }
            }
            Payload::Manifest {
                len,
                sha256,
                chunks,
            } => {
                if chunks.len() > MAX_PUT_BYTES / CHUNK_BYTES + 1 || len > MAX_PUT_BYTES as u64 {
                    return Err(NodeError::Store("manifest too large".into()));
                }
                if let Some(j) = self.storage.get_jobs.get_mut(&job) {
                    j.manifest = Some((len, sha256));
                    j.chunks = vec![None; chunks.len()];
                }
                for (index, hash) in chunks.into_iter().enumerate() {
                    let key = ownership::chunk_key_from_hash(&hash);
                    let query = self
                        .swarm
                        .behaviour_mut()
                        .store_kad
                        .get_record(RecordKey::from(key));
                    self.storage
                        .get_steps
                        .insert(query, GetStep::Chunk { job, index, hash });
                }
                self.finish_get_if_complete(job);
            }
        }
        Ok(())
    }

    fn finish_get_if_complete(&mut self, job: u64) {
        let complete = self
            .storage
            .get_jobs
            .get(&job)
            .is_some_and(|j| j.manifest.is_some() && j.chunks.iter().all(Option::is_some));
        if !complete {
            return;
        }
        let Some(mut j) = self.storage.get_jobs.remove(&job) else {
            return;
        };
        let data: Vec<u8> = j.chunks.iter().flatten().flatten().copied().collect();
        let Some((len, sha256)) = j.manifest else {
            return;
        };
        let outcome =
            if data.len() as u64 == len && <[u8; 32]>::from(Sha256::digest(&data)) == sha256 {
                Ok(GetResult {
                    owner: j.owner.to_string(),
                    name: j.name.clone(),
                    data,
                })
            } else {
                Err(NodeError::Store(
                    "reassembled value does not match its manifest".into(),
                ))
            };
        if let Some(reply) = j.reply.take() {
            let _ = reply.send(outcome);
        }
    }

    pub(super) fn on_store_kad_event(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return;
        };
        match result {
            kad::QueryResult::GetClosestPeers(result) => {
                let Some(PutStep::FindPeers { job, record, local }) =
                    self.storage.put_steps.remove(&id)
                else {
                    return;
                };
                let me = self.local_peer_id();
                let mut peers: Vec<PeerId> = match result {
                    Ok(ok) => ok.peers.into_iter().map(|p| p.peer_id).collect(),
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => {
                        peers.into_iter().map(|p| p.peer_id).collect()
                    }
                };
                peers.retain(|p| *p != me);
                let wanted = self
                    .config
                    .replication_factor
                    .get()
                    .saturating_sub(usize::from(local));
                peers.truncate(wanted);
                if peers.is_empty() {
                    self.put_step_done(job, usize::from(local), None);
                    return;
                }
                let sent = peers.len();
                // Quorum::All makes the query wait for every answer, so the count of
                // acknowledgements is exact (a smaller quorum ends at the first ones).
                let query = self.swarm.behaviour_mut().store_kad.put_record_to(
                    record,
                    peers.into_iter(),
                    Quorum::All,
                );
                self.storage
                    .put_steps
                    .insert(query, PutStep::Store { job, local, sent });
            }
            kad::QueryResult::PutRecord(result) => {
                let Some(PutStep::Store { job, local, sent }) = self.storage.put_steps.remove(&id)
                else {
                    return;
                };
                let (remote, error) = match result {
                    Ok(_) => (sent, None),
                    Err(e @ kad::PutRecordError::QuorumFailed { .. })
                    | Err(e @ kad::PutRecordError::Timeout { .. }) => {
                        let n = match &e {
                            kad::PutRecordError::QuorumFailed { success, .. }
                            | kad::PutRecordError::Timeout { success, .. } => success.len(),
                        };
                        (n, Some(e.to_string()))
                    }
                };
                self.put_step_done(job, remote + usize::from(local), error);
            }
            kad::QueryResult::GetRecord(result) => {
                let Some(get_step) = self.storage.get_steps.get(&id) else {
                    return;
                };
                let (job, chunk) = match get_step {
                    GetStep::Root { job } => (*job, None),
                    GetStep::Chunk { job, index, hash } => (*job, Some((*index, *hash))),
                };
                match result {
                    Ok(kad::GetRecordOk::FoundRecord(found)) => {
                        let accepted = match chunk {
                            None => match self.on_root_record(job, &found.record) {
                                Ok(()) => true,
                                Err(e) => {
                                    tracing::info!(error = %e, "ignoring an invalid copy");
                                    false
                                }
                            },
                            Some((index, hash)) => {
                                let valid =
                                    <[u8; 32]>::from(Sha256::digest(&found.record.value)) == hash;
                                if valid {
                                    if let Some(j) = self.storage.get_jobs.get_mut(&job)
                                        && let Some(slot) = j.chunks.get_mut(index)
                                    {
                                        *slot = Some(found.record.value);
                                    }
                                    self.finish_get_if_complete(job);
                                }
                                valid
                            }
                        };
                        if accepted {
                            self.storage.get_steps.remove(&id);
                            if let Some(mut q) = self.swarm.behaviour_mut().store_kad.query_mut(&id)
                            {
                                q.finish();
                            }
                        }
                    }
                    Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => {
                        if step.last {
                            self.storage.get_steps.remove(&id);
                            self.fail_get(job, NodeError::NotFound);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
