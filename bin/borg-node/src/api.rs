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
