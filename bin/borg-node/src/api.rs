//! The data a node reports: the JSON contract of the control API and the CLI's `--json`.
//!
//! Field names are part of the contract that scripts and tests rely on; add fields freely,
//! never rename or remove one.

use serde::{Deserialize, Serialize};

/// `borg-node status --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// This node's peer id.
    pub peer_id: String,
    /// Addresses the node listens on (without `/p2p`).
    pub listen_addrs: Vec<String>,
    /// The same addresses with `/p2p/<peer id>`: what others pass to `--bootstrap`.
    pub dial_addrs: Vec<String>,
    /// Peer ids connected now.
    pub peers: Vec<String>,
    /// Orgs joined.
    pub orgs: Vec<String>,
    /// Whether LAN discovery runs.
    pub mdns: bool,
    /// The configured bootstrap peers and whether each is connected.
    pub bootstrap: Vec<BootstrapStatus>,
    /// The borg-node version.
    pub version: String,
    /// Whether this node stores org data (opted in).
    pub store: bool,
    /// Storage figures.
    pub storage: StoreStatus,
}

/// What the store holds: `borg-node store` and `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreStatus {
    /// Opted in.
    pub store: bool,
    /// Records held.
    pub records: u64,
    /// Messages logged.
    pub messages: u64,
    /// Bytes used.
    pub bytes: u64,
    /// The quota, bytes.
    pub quota: u64,
}

/// The result of `borg-node put`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutResult {
    /// The record key.
    pub key: String,
    /// The name given.
    pub name: String,
    /// Acknowledged copies (the fewest over the value's records), this node's included.
    pub replicas: usize,
    /// Copies required for success.
    pub quorum: usize,
    /// Chunks the value was split into (0: one record).
    pub chunks: usize,
    /// Value size.
    pub bytes: usize,
}

/// The result of `borg-node get`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetResult {
    /// The owner's peer id.
    pub owner: String,
    /// The name.
    pub name: String,
    /// The value.
    #[serde(with = "hex_bytes")]
    pub data: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// One configured bootstrap address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BootstrapStatus {
    /// The address as configured.
    pub addr: String,
    /// The peer behind it, once known.
    pub peer_id: Option<String>,
    /// Whether it is connected now.
    pub connected: bool,
}

/// One entry of `borg-node peers --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer id.
    pub peer_id: String,
    /// Remote addresses of the connections to it.
    pub addrs: Vec<String>,
    /// Number of established connections to it.
    pub connections: usize,
    /// Orgs the peer shares with this node.
    pub orgs: Vec<String>,
    /// How often it is pinged, in ms: `ping_interval_ms` if it is the rep of one of this
    /// node's orgs, `peer_ping_interval_ms` otherwise.
    #[serde(default)]
    pub ping_interval_ms: u64,
    /// Pongs it has sent on its present connections.
    #[serde(default)]
    pub pongs: u64,
}

/// One message received in an org: a line of `borg-node subscribe --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivered {
    /// The org it was received in.
    pub org: String,
    /// The author's peer id.
    pub from: String,
    /// The message id (32 hex digits).
    pub id: String,
    /// The text.
    pub text: String,
    /// The author's clock when sending, Unix ms.
    pub sent_at_ms: u64,
    /// This node's clock when receiving, Unix ms.
    pub received_at_ms: u64,
    /// The org the author published into (differs from `org` for relayed messages).
    pub origin_org: String,
    /// The reps that relayed it, oldest first, as `org:peer_id`.
    pub path: Vec<String>,
}

/// The result of `borg-node send`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sent {
    /// The message id.
    pub id: String,
    /// The org it was sent to.
    pub org: String,
}

/// One entry of `borg-node orgs --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrgInfo {
    /// The org.
    pub org: String,
    /// Its parent org, if it has one.
    pub parent: Option<String>,
    /// The current rep.
    pub rep: Option<String>,
    /// The election term (0: no rep yet).
    pub term: u64,
    /// Unix ms at which this node adopted the current rep (0: none yet).
    pub rep_since_ms: u64,
    /// Why the current rep got there.
    pub reason: String,
    /// Whether this node is the rep.
    pub am_rep: bool,
    /// The line of succession: the rep, then its successors in order.
    pub succession: Vec<String>,
    /// Every known member, this node included.
    pub members: Vec<MemberInfo>,
    /// This node's score: the org members it is directly connected to.
    pub score: u32,
    /// Whether the node joined this org by itself, as the rep of a child org.
    pub auto_joined: bool,
}

/// One member of an org.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member.
    pub peer_id: String,
    /// Its announced score.
    pub score: u32,
    /// Unix ms of its last announcement heard here.
    pub last_seen_ms: u64,
    /// Unix ms since which this node has known it as a member (for this node itself: when it
    /// joined the org). 0 when the node does not say (read from an older node).
    #[serde(default)]
    pub known_since_ms: u64,
}

/// One line of `borg-node events --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The rep of an org changed.
    RepChanged {
        /// The org.
        org: String,
        /// The new rep.
        rep: String,
        /// The new term.
        term: u64,
        /// The rep before.
        previous: Option<String>,
        /// Why: elected, crash, silent_timeout, handover, better_candidate, partition_heal.
        reason: String,
        /// Unix ms, this node's clock.
        at_ms: u64,
    },
    /// A member was heard for the first time.
    MemberJoined {
        /// The org.
        org: String,
        /// The member.
        peer_id: String,
        /// Unix ms.
        at_ms: u64,
    },
    /// A member left or timed out.
    MemberLeft {
        /// The org.
        org: String,
        /// The member.
        peer_id: String,
        /// Unix ms.
        at_ms: u64,
    },
}
