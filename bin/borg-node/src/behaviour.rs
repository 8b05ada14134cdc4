//! The composed network behaviour of a node and the swarm built around it.
//!
//! - `connections` (borg-proto): distinct connected peers, keep-alive for org members.
//! - `gossipsub`: org messages, signed by the publisher and validated by the node.
//! - `kad`: the private borg DHT (`/borg/kad/1.0.0`), used to find org members anywhere.
//! - `identify`: learns peers' listen addresses and protocols, which feed kad.
//! - `ping`: detects dead connections; the node closes a connection whose ping fails.
//! - `mdns`: zero-configuration discovery on the LAN (optional).

use std::time::Duration;

use anyhow::{Context, Result};
use borg_proto::{connections, org::TOPIC_PREFIX};
use libp2p::{
    StreamProtocol, Swarm, SwarmBuilder, Transport,
    core::{transport::MemoryTransport, upgrade::Version},
    gossipsub::{
        self, IdentityTransform, MaxCountSubscriptionFilter, MessageAuthenticity, TopicHash,
        TopicSubscriptionFilter, ValidationMode,
    },
    identify,
    identity::Keypair,
    kad::{self, store::MemoryStore, store::MemoryStoreConfig},
    mdns, noise, ping, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
    tcp, yamux,
};
use sha2::{Digest, Sha256};

use borg_store::KadStore;

use crate::{
    boxed::BoxedHandlers,
    config::Config,
    history::{HistoryRequest, HistoryResponse},
    transport,
};

/// The Kademlia protocol name; private, so borg nodes form a DHT of their own.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/borg/kad/1.0.0");

/// The Kademlia protocol of the store: a second DHT, in which only nodes that opted in to
/// storing are servers. Keeping it apart from the discovery DHT lets every node help others
/// find members while only opted-in nodes ever hold org data.
pub const STORE_PROTOCOL: StreamProtocol = StreamProtocol::new("/borg/store/1.0.0");

/// The request-response protocol a member uses to fetch the messages it missed.
pub const HISTORY_PROTOCOL: StreamProtocol = StreamProtocol::new("/borg/history/1.0.0");

/// Largest history request: an org name and two numbers.
const MAX_HISTORY_REQUEST_BYTES: u64 = 4 * 1024;

/// Largest history response: a page of up to 256 envelopes of at most 20 KiB each.
const MAX_HISTORY_RESPONSE_BYTES: u64 = 6 * 1024 * 1024;

/// The identify protocol version string borg nodes announce.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/borg/2.0.0";

/// Largest gossipsub frame accepted; the envelope limit is well below it.
const MAX_GOSSIP_TRANSMIT_BYTES: usize = 64 * 1024;

/// Messages larger than this (protobuf-encoded) are announced with IDONTWANT to mesh peers (see
/// `gossipsub_config`).
const IDONTWANT_THRESHOLD_BYTES: usize = 8 * 1024;

/// Message ids a node gossips to (IHAVE) or asks of (IWANT) one peer per heartbeat.
const MAX_GOSSIP_IDS_PER_HEARTBEAT: usize = 500;

/// Largest kad packet: a provider list of a large org must fit in one response.
const MAX_KAD_PACKET_BYTES: usize = 256 * 1024;

/// Providers remembered per DHT key: the largest org whose members can all be listed.
const MAX_PROVIDERS_PER_KEY: usize = 1024;

/// Provider records expire after this long unless re-provided. Members re-provide at every
/// discovery round (at most every 30 s by default), so a member that vanished drops out of
/// lookups within minutes instead of the default 48 hours.
const PROVIDER_RECORD_TTL: Duration = Duration::from_secs(10 * 60);

/// How many gossipsub topics a peer may announce. A node can be in hundreds of orgs, each with
/// two topics; the default of 100 would make peers drop that node's whole subscription list.
const MAX_SUBSCRIBED_TOPICS: usize = 10_000;

/// Accepts only borg topics, so a peer cannot make us track arbitrary topic strings.
#[derive(Debug, Clone, Default)]
pub struct BorgTopics;

impl TopicSubscriptionFilter for BorgTopics {
    fn can_subscribe(&mut self, topic: &TopicHash) -> bool {
        topic.as_str().starts_with(TOPIC_PREFIX)
    }
}

/// The gossipsub behaviour with borg's topic filter.
pub type Gossipsub =
    gossipsub::Behaviour<IdentityTransform, MaxCountSubscriptionFilter<BorgTopics>>;

/// Everything a borg node runs on each connection.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connected peers and keep-alive.
    pub connections: connections::Behaviour,
    /// Org messages.
    pub gossipsub: Gossipsub,
    /// The borg DHT.
    pub kad: kad::Behaviour<MemoryStore>,
    /// Peer information exchange.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// The store DHT (records on opted-in nodes).
    pub store_kad: kad::Behaviour<KadStore>,
    /// Message catch-up.
    pub history: request_response::cbor::Behaviour<HistoryRequest, HistoryResponse>,
    /// LAN discovery.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

/// What a node's swarm runs: [`Behaviour`] with its connection handlers on the heap (see
/// [`crate::boxed`] for why).
pub type NodeBehaviour = BoxedHandlers<Behaviour>;

/// Which transports a swarm uses. All of them are encrypted with Noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// TCP (Noise + yamux), QUIC and DNS: what the binary uses.
    Network,
    /// The in-process memory transport (Noise + yamux), for tests with many nodes in one
    /// process.
    Memory,
}

fn gossipsub_config() -> Result<gossipsub::Config> {
    gossipsub::ConfigBuilder::default()
        // Small orgs: a mesh of 4 (2..8) reaches everyone in a couple of hops, and flood
        // publishing (on by default) sends a member's own messages to every subscribed peer.
        .mesh_n_low(2)
        .mesh_n(4)
        .mesh_n_high(8)
        .mesh_outbound_min(1)
        .heartbeat_interval(Duration::from_millis(700))
        .heartbeat_initial_delay(Duration::from_millis(100))
        // Messages are published unsigned and anonymous: every borg payload (envelope,
        // announcement) carries its own signature, checked once per message after
        // deduplication. Gossipsub's own signatures were checked on every copy received
        // (the codec verifies before the duplicate check), which cost a node D verifications
        // per message in a mesh of degree D and signed every message twice.
        .validation_mode(ValidationMode::Anonymous)
        // The node decodes and checks every envelope before it is forwarded.
        .validate_messages()
        .max_transmit_size(MAX_GOSSIP_TRANSMIT_BYTES)
        // Gossip (IHAVE) and requests (IWANT) of at most 500 message ids per peer and
        // heartbeat: 500 ids of 20 bytes fit in the 16 KiB of control data a receiver accepts
        // in one RPC (`max_control_message_size`). The default, 5,000, does not: under load a
        // node sent IHAVEs of 3,000+ ids (65-73 KB); the receiver failed to decode them and
        // dropped the stream, the sender opened another, and after five such streams
        // gossipsub disables its handler for the connection for good: the peer's queue
        // stopped draining ("Send Queue full" for every message) while pings still passed.
        .max_control_messages_sent(MAX_GOSSIP_IDS_PER_HEARTBEAT)
        // IDONTWANT (gossipsub 1.2) for large messages only. Sent for every message over 1,000
        // bytes by default: each member then sends every mesh peer one control message
        // per message it receives, which on an org's ordinary messages (a few hundred bytes
        // to a few KiB) costs more CPU than the duplicate copies it saves. Measured with
        // borg-bench org-throughput (1 KiB, 5 nodes on 2 cores): 3,000 and 3,918 msg/s (two
        // runs) with the default, 4,280-5,510 (five runs, median 5,215) without. An envelope
        // can be 20 KiB, where a duplicate costs more than the note.
        .idontwant_message_size_threshold(IDONTWANT_THRESHOLD_BYTES)
        // The id includes the topic so that a rep can republish the same envelope into
        // another org's topic without it being dropped as a duplicate.
        .message_id_fn(|msg: &gossipsub::Message| {
            let mut h = Sha256::new();
            h.update(msg.topic.as_str().as_bytes());
            h.update([0]);
            h.update(&msg.data);
            gossipsub::MessageId::from(&h.finalize()[..20])
        })
        .build()
        .context("invalid gossipsub config")
}

fn build_behaviour(key: &Keypair, config: &Config, kad_store: KadStore) -> Result<NodeBehaviour> {
    let peer_id = key.public().to_peer_id();
    let gossipsub = Gossipsub::new_with_subscription_filter(
        MessageAuthenticity::Anonymous,
        gossipsub_config()?,
        MaxCountSubscriptionFilter {
            filter: BorgTopics,
            max_subscribed_topics: MAX_SUBSCRIBED_TOPICS,
            max_subscriptions_per_request: MAX_SUBSCRIBED_TOPICS,
        },
    )
    .map_err(|e| anyhow::anyhow!("cannot create gossipsub: {e}"))?;

    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config
        .set_max_packet_size(MAX_KAD_PACKET_BYTES)
        .set_query_timeout(Duration::from_secs(10))
        .set_provider_record_ttl(Some(PROVIDER_RECORD_TTL))
        // The node re-provides its orgs itself at every discovery round.
        .set_provider_publication_interval(None);
    let store = MemoryStore::with_config(
        peer_id,
        MemoryStoreConfig {
            max_providers_per_key: MAX_PROVIDERS_PER_KEY,
            ..MemoryStoreConfig::default()
        },
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
    // Every borg node answers DHT queries. Left to itself kad stays a client until an external
    // address is confirmed, which never happens on a plain LAN, and then no one stores the
    // member announcements.
    kad.set_mode(Some(kad::Mode::Server));

    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), key.public())
            .with_agent_version(format!("borg-node/{}", env!("CARGO_PKG_VERSION")))
            .with_push_listen_addr_updates(true),
    );
    let mut store_config = kad::Config::new(STORE_PROTOCOL);
    store_config
        .set_max_packet_size(MAX_KAD_PACKET_BYTES)
        .set_query_timeout(Duration::from_secs(10))
        .set_replication_factor(config.replication_factor)
        // Org data does not expire by itself; it leaves a node by `store off --purge`.
        .set_record_ttl(None)
        .set_provider_record_ttl(None)
        // Every holder re-puts what it holds to the nodes closest to each key this often
        // (kad re-puts its own records only at "publication", hence the same interval for
        // both), so data outlives the nodes that first stored it.
        .set_replication_interval(Some(config.store_replication_interval))
        .set_publication_interval(Some(config.store_replication_interval));
    let accepting = kad_store.is_accepting();
    let mut store_kad = kad::Behaviour::with_config(peer_id, kad_store, store_config);
    store_kad.set_mode(Some(if accepting {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    }));
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(MAX_HISTORY_REQUEST_BYTES)
        .set_response_size_maximum(MAX_HISTORY_RESPONSE_BYTES);
    let history = request_response::Behaviour::with_codec(
        codec,
        [(HISTORY_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(20)),
    );
    // Every link is pinged at the slower interval; the node speeds up its links to its reps
    // (`ping::Behaviour::set_interval`, vendored).
    let ping = ping::Behaviour::new(
        ping::Config::new()
            .with_interval(config.peer_ping_interval)
            .with_timeout(config.ping_timeout),
    );
    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(
                mdns::Config {
                    query_interval: config.mdns_query_interval,
                    ..mdns::Config::default()
                },
                peer_id,
            )
            .context("cannot start mDNS")?,
        )
    } else {
        None
    };
    Ok(BoxedHandlers(Behaviour {
        connections: connections::Behaviour::new(),
        gossipsub,
        kad,
        identify,
        ping,
        store_kad,
        history,
        mdns: mdns.into(),
    }))
}

/// Builds the swarm of a node with identity `key`.
pub fn build_swarm(
    key: Keypair,
    config: &Config,
    transport: TransportKind,
    kad_store: KadStore,
) -> Result<Swarm<NodeBehaviour>> {
    let idle = config.idle_timeout;
    let swarm = match transport {
        TransportKind::Network => SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            // QUIC dials wait for TCP's head start: see `transport` for why.
            .with_other_transport(transport::held_back_quic)?
            .with_dns()?
            .with_behaviour(|key| build_behaviour(key, config, kad_store).map_err(Into::into))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        TransportKind::Memory => SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_other_transport(|key| {
                Ok(MemoryTransport::default()
                    .upgrade(Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()))
            })?
            .with_behaviour(|key| build_behaviour(key, config, kad_store).map_err(Into::into))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    };
    Ok(swarm)
}
