//! borg-node: the borg-net daemon and the CLI that talks to it.
//!
//! The binary (`main.rs`) is thin; everything lives here so that the workspace's integration
//! tests can run many nodes in one process through [`node::start`].
//!
//! - [`config`]: settings and their precedence (defaults < file < env < flags).
//! - [`identity`]: the persisted ed25519 key.
//! - [`behaviour`]: the composed libp2p behaviour and swarm construction.
//! - [`transport`]: QUIC dials held back so that TCP is preferred.
//! - [`node`]: the event loop that owns the swarm, and [`node::NodeHandle`].
//! - [`messages`]: validation of received org messages.
//! - [`control`]: the local Unix-socket API between CLI and daemon.
//! - [`api`]: the JSON shapes of that API and of `--json` output.
//! - [`cli`]: argument parsing and the client subcommands.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod api;
#[allow(missing_docs)] // NetworkBehaviour derive generates an undocumented event enum
pub mod behaviour;
pub mod boxed;
pub mod cli;
pub mod config;
pub mod control;
pub mod history;
pub mod identity;
pub mod messages;
pub mod node;
pub mod transport;
