//! Wire formats and network behaviours of borg-net.
//!
//! # Contents
//! - [`org`]: org names and the gossipsub topics and DHT keys derived from them.
//! - [`envelope`]: the signed, versioned envelope of every org message.
//! - [`connections`]: a behaviour that counts distinct connected peers and keeps connections
//!   to org members open.
//!
//! # Invariants
//! - Nothing decoded from the network can panic: every decoder is bounded and total.
//! - Every wire format here is specified in `docs/wire.md`, and pinned by a byte-level test.
#![deny(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod connections;
pub mod election;
pub mod envelope;
pub mod org;
mod signatures;

pub use envelope::{Direction, Envelope, MessageId, Unverified, verify_batch};
pub use org::OrgName;
