//! The message catch-up protocol `/borg/history/1.0.0` (request-response, CBOR).
//!
//! A member that joins or reconnects asks connected members of the org for the messages sent
//! since the newest one it has. Only opted-in members answer with messages, and only to peers
//! they know as members of that org. Pages are bounded ([`MAX_PAGE`]); the asker continues from
//! the last timestamp while `more` is set. Every envelope is checked (signature, org) by the
//! asker before it is logged. Specified in `docs/store.md`.

use serde::{Deserialize, Serialize};

/// The most messages in one response page.
pub const MAX_PAGE: u32 = 256;

/// "Send me what you have of `org` from `since_ms` on."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// The org.
    pub org: String,
    /// Unix ms, inclusive.
    pub since_ms: u64,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: u32,
}

/// One page of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryResponse {
    /// Whether the responder stores this org's messages (and may be asked again).
    pub storing: bool,
    /// Envelopes as logged, oldest first.
    pub messages: Vec<Envelope>,
    /// Whether more messages follow the last one.
    pub more: bool,
}

/// One envelope's bytes (CBOR byte string, not an array of integers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope(#[serde(with = "serde_bytes")] pub Vec<u8>);
