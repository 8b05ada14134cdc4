//! The node: one task that owns the swarm and serves commands.
//!
//! - [`start`] builds the swarm, opens the listeners (failing fast when one cannot open), joins
//!   the configured orgs and spawns the event loop; it returns a [`NodeHandle`].
//! - The event loop reacts to swarm events (discovery, messages, connection changes), to
//!   commands from handles (status, join, send, ...) and to a 250 ms tick that drives bootstrap
//!   redials and DHT member lookups.
//! - Received org messages are validated here (see [`crate::messages`]) and fanned out to
//!   subscribers through a bounded broadcast channel.
//! - Shutdown (a handle's `shutdown` or every handle dropped) unsubscribes from every org, gives
//!   the swarm a moment to send that, and ends the task.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{SocketAddr, TcpListener},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use borg_proto::{Direction, Envelope, OrgName};
use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    gossipsub::{self, IdentTopic, MessageAcceptance, PublishError},
    identify,
    identity::Keypair,
    kad, mdns,
    multiaddr::Protocol,
    ping,
    swarm::{
        ConnectionId, DialError, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    api::{BootstrapStatus, Delivered, PeerInfo, Sent, Status},
    behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL, TransportKind, build_swarm},
    config::Config,
    messages::{SeenIds, Verdict, check_message},
};

/// How often the event loop wakes up for its timers.
const TICK: Duration = Duration::from_millis(250);

/// First redial delay for a lost or unreachable bootstrap peer; doubles up to the maximum.
const BOOTSTRAP_BACKOFF_START: Duration = Duration::from_secs(1);

/// Longest redial delay for a bootstrap peer.
const BOOTSTRAP_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// First delay between DHT member lookups after something changed; doubles up to
/// `Config::discovery_interval`. Short at first so that two LANs joined by one link converge
/// in seconds, long later so that a quiet org costs almost nothing.
const DISCOVERY_BACKOFF_START: Duration = Duration::from_secs(1);

/// How long the swarm keeps running after leaving the orgs at shutdown, so the
/// unsubscriptions reach the peers. Bounded so that shutdown stays under a second.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(300);

/// Messages buffered per subscriber; a subscriber that falls further behind is told how many
/// it missed rather than slowing the node down.
const SUBSCRIBER_BUFFER: usize = 1024;

/// Commands queued from handles before senders wait.
const COMMAND_QUEUE: usize = 64;

/// Errors of node operations, reported to the CLI as one line.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The org is not joined.
    #[error("not a member of org {0}; join it first")]
    NotMember(OrgName),
    /// No other member is connected yet, so the message would reach no one.
    #[error("no other member of org {0} is reachable yet; message not sent")]
    NoPeers(OrgName),
    /// The message could not be built (too large, ...).
    #[error("{0}")]
    Envelope(#[from] borg_proto::envelope::EncodeError),
    /// Gossipsub refused to publish.
    #[error("publish failed: {0}")]
    Publish(String),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

enum Command {
    Status(oneshot::Sender<Status>),
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    Join(OrgName, oneshot::Sender<bool>),
    Leave(OrgName, oneshot::Sender<bool>),
    Send(OrgName, String, oneshot::Sender<Result<Sent, NodeError>>),
    Shutdown(oneshot::Sender<()>),
}

/// A cheap, cloneable handle to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    delivered: broadcast::Sender<Arc<Delivered>>,
}

impl NodeHandle {
    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// The node's status.
    pub async fn status(&self) -> Result<Status, NodeError> {
        self.ask(Command::Status).await
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NodeError> {
        self.ask(Command::Peers).await
    }

    /// Joins `org`; `false` if already a member.
    pub async fn join(&self, org: OrgName) -> Result<bool, NodeError> {
        self.ask(|tx| Command::Join(org, tx)).await
    }

    /// Leaves `org`; `false` if not a member.
    pub async fn leave(&self, org: OrgName) -> Result<bool, NodeError> {
        self.ask(|tx| Command::Leave(org, tx)).await
    }

    /// Sends `text` to `org`.
    pub async fn send(&self, org: OrgName, text: String) -> Result<Sent, NodeError> {
        self.ask(|tx| Command::Send(org, text, tx)).await?
    }

    /// Receives every message delivered from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Delivered>> {
        self.delivered.subscribe()
    }

    /// Leaves all orgs and stops the node; returns once it has stopped.
    pub async fn shutdown(&self) {
        let _ = self.ask(Command::Shutdown).await;
    }
}

/// The current Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug)]
enum BootstrapState {
    Waiting { until: Instant },
    Dialing(ConnectionId),
    Connected,
}

#[derive(Debug)]
struct Bootstrap {
    /// As configured, for status and logs.
    configured: Multiaddr,
    /// Without the `/p2p` suffix.
    addr: Multiaddr,
    peer: Option<PeerId>,
    state: BootstrapState,
    backoff: Duration,
}

struct Org {
    name: OrgName,
    message_topic: IdentTopic,
    /// Peers subscribed to this org's message topic, as gossipsub reports them.
    members: BTreeSet<PeerId>,
}

struct Node {
    swarm: Swarm<Behaviour>,
    keypair: Keypair,
    config: Config,
    orgs: BTreeMap<OrgName, Org>,
    bootstraps: Vec<Bootstrap>,
    listen_addrs: BTreeSet<Multiaddr>,
    /// Remote address of each connection, to judge which advertised addresses are usable.
    connection_addrs: HashMap<ConnectionId, Multiaddr>,
    seen: SeenIds,
    delivered: broadcast::Sender<Arc<Delivered>>,
    next_discovery: Instant,
    discovery_backoff: Duration,
    shutdown_reply: Option<oneshot::Sender<()>>,
}

/// Opens a plain listener on a TCP address with a fixed port, to learn whether another process
/// holds it. libp2p binds with `SO_REUSEPORT`, so a second node on the same port would
/// otherwise start "successfully" and silently share the first node's connections.
fn ensure_tcp_port_free(addr: &Multiaddr) -> Result<()> {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    if let (Some(ip), Some(port)) = (ip, port) {
        if port != 0 {
            TcpListener::bind(SocketAddr::new(ip, port))
                .map(drop)
                .with_context(|| format!("cannot listen on {addr}"))?;
        }
    }
    Ok(())
}

fn strip_p2p(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut stripped = Multiaddr::empty();
    let mut peer = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(id) => peer = Some(id),
            other => stripped.push(other),
        }
    }
    (stripped, peer)
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(a) => a.is_loopback(),
        Protocol::Ip6(a) => a.is_loopback(),
        _ => false,
    })
}

/// Starts a node: opens its listeners, joins its orgs and runs it on the tokio runtime.
///
/// Returns once every listener has an address, or with an error naming the listener that
/// could not open.
pub async fn start(
    keypair: Keypair,
    config: Config,
    transport: TransportKind,
) -> Result<NodeHandle> {
    let mut swarm = build_swarm(keypair.clone(), &config, transport)?;
    let mut pending_listeners = Vec::new();
    for addr in &config.listen {
        if transport == TransportKind::Network {
            ensure_tcp_port_free(addr)?;
        }
        let id = swarm
            .listen_on(addr.clone())
            .with_context(|| format!("cannot listen on {addr}"))?;
        pending_listeners.push((id, addr.clone()));
    }
    let mut listen_addrs = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !pending_listeners.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| anyhow!("listeners did not open within 10 s"))?;
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                listen_addrs.insert(address);
                pending_listeners.retain(|(id, _)| *id != listener_id);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason: Err(e),
                ..
            }
            | SwarmEvent::ListenerError {
                listener_id,
                error: e,
            } => {
                let addr = pending_listeners
                    .iter()
                    .find(|(id, _)| *id == listener_id)
                    .map_or_else(String::new, |(_, a)| a.to_string());
                bail!("cannot listen on {addr}: {e}");
            }
            _ => {}
        }
    }

    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let (delivered, _) = broadcast::channel(SUBSCRIBER_BUFFER);
    let now = Instant::now();
    let bootstraps = config
        .bootstrap
        .iter()
        .map(|configured| {
            let (addr, peer) = strip_p2p(configured);
            Bootstrap {
                configured: configured.clone(),
                addr,
                peer,
                state: BootstrapState::Waiting { until: now },
                backoff: BOOTSTRAP_BACKOFF_START,
            }
        })
        .collect();
    let mut node = Node {
        swarm,
        keypair: keypair.clone(),
        orgs: BTreeMap::new(),
        bootstraps,
        listen_addrs,
        connection_addrs: HashMap::new(),
        seen: SeenIds::default(),
        delivered: delivered.clone(),
        next_discovery: now,
        discovery_backoff: DISCOVERY_BACKOFF_START,
        shutdown_reply: None,
        config,
    };
    for org in node.config.orgs.clone() {
        node.join(org);
    }
    let handle = NodeHandle {
        peer_id: keypair.public().to_peer_id(),
        commands: commands_tx,
        delivered,
    };
    tokio::spawn(node.run(commands_rx));
    Ok(handle)
}

impl Node {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(Instant::now()),
            }
            if self.shutdown_reply.is_some() {
                break;
            }
        }
        self.shutdown().await;
    }

    async fn shutdown(mut self) {
        let orgs: Vec<OrgName> = self.orgs.keys().cloned().collect();
        for org in orgs {
            self.leave(&org);
        }
        let flush = tokio::time::sleep(SHUTDOWN_FLUSH);
        tokio::pin!(flush);
        loop {
            tokio::select! {
                _ = &mut flush => break,
                _ = self.swarm.select_next_some() => {}
            }
        }
        tracing::info!("stopped");
        if let Some(reply) = self.shutdown_reply.take() {
            let _ = reply.send(());
        }
    }

    fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    fn join(&mut self, org: OrgName) -> bool {
        if self.orgs.contains_key(&org) {
            return false;
        }
        let message_topic = IdentTopic::new(org.message_topic());
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&message_topic)
        {
            tracing::warn!(%org, error = %e, "cannot subscribe to org topic");
            return false;
        }
        tracing::info!(%org, "joined org");
        self.orgs.insert(
            org.clone(),
            Org {
                name: org,
                message_topic,
                members: BTreeSet::new(),
            },
        );
        self.discover_soon();
        true
    }

    fn leave(&mut self, org: &OrgName) -> bool {
        let Some(state) = self.orgs.remove(org) else {
            return false;
        };
        let behaviour = self.swarm.behaviour_mut();
        behaviour.gossipsub.unsubscribe(&state.message_topic);
        behaviour
            .kad
            .stop_providing(&kad::RecordKey::new(&org.dht_key()));
        for peer in state.members {
            self.refresh_keep_alive(peer);
        }
        tracing::info!(%org, "left org");
        true
    }

    /// Keeps the connection to `peer` open while it shares at least one org with us.
    fn refresh_keep_alive(&mut self, peer: PeerId) {
        let shared = self.orgs.values().any(|o| o.members.contains(&peer));
        self.swarm
            .behaviour_mut()
            .connections
            .set_keep_alive(peer, shared);
    }

    /// Brings the next DHT member lookup forward and restarts its backoff.
    fn discover_soon(&mut self) {
        self.discovery_backoff = DISCOVERY_BACKOFF_START;
        let soon = Instant::now() + Duration::from_millis(200);
        if soon < self.next_discovery {
            self.next_discovery = soon;
        }
    }

    fn on_tick(&mut self, now: Instant) {
        self.drive_bootstraps(now);
        if now >= self.next_discovery {
            self.discover_members();
            self.next_discovery = now + self.discovery_backoff;
            self.discovery_backoff =
                (self.discovery_backoff * 2).min(self.config.discovery_interval);
        }
    }

    /// Announces our memberships in the DHT and looks up the other members of each org.
    fn discover_members(&mut self) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        for org in self.orgs.keys() {
            let key = kad::RecordKey::new(&org.dht_key());
            if let Err(e) = kad.start_providing(key.clone()) {
                tracing::warn!(%org, error = %e, "cannot announce org membership");
            }
            kad.get_providers(key);
        }
    }

    fn drive_bootstraps(&mut self, now: Instant) {
        for i in 0..self.bootstraps.len() {
            let b = &mut self.bootstraps[i];
            match b.state {
                BootstrapState::Connected => {
                    if let Some(peer) = b.peer {
                        if !self.swarm.is_connected(&peer) {
                            b.state = BootstrapState::Waiting {
                                until: now + b.backoff,
                            };
                        }
                    }
                }
                BootstrapState::Dialing(_) => {}
                BootstrapState::Waiting { until } if until <= now => {
                    if let Some(peer) = b.peer {
                        if self.swarm.is_connected(&peer) {
                            b.state = BootstrapState::Connected;
                            continue;
                        }
                    }
                    let opts = match b.peer {
                        Some(peer) => DialOpts::peer_id(peer)
                            .addresses(vec![b.addr.clone()])
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .build(),
                        None => DialOpts::unknown_peer_id().address(b.addr.clone()).build(),
                    };
                    let id = opts.connection_id();
                    let configured = b.configured.clone();
                    match self.swarm.dial(opts) {
                        Ok(()) => self.bootstraps[i].state = BootstrapState::Dialing(id),
                        Err(DialError::DialPeerConditionFalse(_)) => {
                            self.bootstraps[i].state = BootstrapState::Waiting {
                                until: now + BOOTSTRAP_BACKOFF_START,
                            };
                        }
                        Err(e) => {
                            self.bootstrap_failed(i, now, &e.to_string());
                            tracing::debug!(addr = %configured, "bootstrap dial refused");
                        }
                    }
                }
                BootstrapState::Waiting { .. } => {}
            }
        }
    }

    fn bootstrap_failed(&mut self, i: usize, now: Instant, error: &str) {
        let b = &mut self.bootstraps[i];
        tracing::warn!(
            addr = %b.configured,
            retry_in_s = b.backoff.as_secs_f32(),
            "bootstrap peer unreachable: {error}"
        );
        b.state = BootstrapState::Waiting {
            until: now + b.backoff,
        };
        b.backoff = (b.backoff * 2).min(BOOTSTRAP_BACKOFF_MAX);
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peers());
            }
            Command::Join(org, reply) => {
                let _ = reply.send(self.join(org));
            }
            Command::Leave(org, reply) => {
                let _ = reply.send(self.leave(&org));
            }
            Command::Send(org, text, reply) => {
                let _ = reply.send(self.send(org, text));
            }
            Command::Shutdown(reply) => {
                self.shutdown_reply = Some(reply);
            }
        }
    }

    fn status(&self) -> Status {
        let peer_id = self.local_peer_id();
        let connections = &self.swarm.behaviour().connections;
        Status {
            peer_id: peer_id.to_string(),
            listen_addrs: self.listen_addrs.iter().map(ToString::to_string).collect(),
            dial_addrs: self
                .listen_addrs
                .iter()
                .map(|a| a.clone().with(Protocol::P2p(peer_id)).to_string())
                .collect(),
            peers: connections
                .connected_peers()
                .map(ToString::to_string)
                .collect(),
            orgs: self.orgs.keys().map(ToString::to_string).collect(),
            mdns: self.config.mdns,
            bootstrap: self
                .bootstraps
                .iter()
                .map(|b| BootstrapStatus {
                    addr: b.configured.to_string(),
                    peer_id: b.peer.map(|p| p.to_string()),
                    connected: matches!(b.state, BootstrapState::Connected),
                })
                .collect(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn peers(&self) -> Vec<PeerInfo> {
        let connections = &self.swarm.behaviour().connections;
        connections
            .connected_peers()
            .map(|peer| {
                let addrs = connections.connection_addrs(peer);
                PeerInfo {
                    peer_id: peer.to_string(),
                    connections: addrs.len(),
                    addrs: addrs.iter().map(ToString::to_string).collect(),
                    orgs: self
                        .orgs
                        .values()
                        .filter(|o| o.members.contains(peer))
                        .map(|o| o.name.to_string())
                        .collect(),
                }
            })
            .collect()
    }

    fn send(&mut self, org: OrgName, text: String) -> Result<Sent, NodeError> {
        let Some(state) = self.orgs.get(&org) else {
            return Err(NodeError::NotMember(org));
        };
        let envelope = Envelope::new_text(
            &self.keypair,
            org.clone(),
            unix_ms(),
            rand::random(),
            text,
            Direction::Down,
        )?;
        let id = envelope.id();
        let topic = state.message_topic.clone();
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, envelope.encode())
        {
            Ok(_) => {
                self.seen.insert(id);
                tracing::debug!(%org, %id, "sent message");
                Ok(Sent {
                    id: id.to_string(),
                    org: org.to_string(),
                })
            }
            Err(PublishError::NoPeersSubscribedToTopic) => Err(NodeError::NoPeers(org)),
            Err(e) => Err(NodeError::Publish(e.to_string())),
        }
    }

    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        if peer == self.local_peer_id() || self.swarm.is_connected(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            if !matches!(e, DialError::DialPeerConditionFalse(_)) {
                tracing::debug!(%peer, error = %e, "dial failed");
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listen_addrs.insert(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.remove(&address);
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connection established");
                self.connection_addrs
                    .insert(connection_id, endpoint.get_remote_address().clone());
                for b in &mut self.bootstraps {
                    if matches!(b.state, BootstrapState::Dialing(id) if id == connection_id) {
                        tracing::info!(addr = %b.configured, peer = %peer_id, "connected to bootstrap peer");
                        b.peer = Some(peer_id);
                        b.state = BootstrapState::Connected;
                        b.backoff = BOOTSTRAP_BACKOFF_START;
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                self.connection_addrs.remove(&connection_id);
                if num_established == 0 {
                    tracing::debug!(peer = %peer_id, cause = ?cause, "disconnected");
                    let now = Instant::now();
                    for b in &mut self.bootstraps {
                        if b.peer == Some(peer_id) && matches!(b.state, BootstrapState::Connected) {
                            tracing::info!(addr = %b.configured, "lost bootstrap peer; redialling");
                            b.state = BootstrapState::Waiting {
                                until: now + b.backoff,
                            };
                        }
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                let now = Instant::now();
                if let Some(i) = self.bootstraps.iter().position(
                    |b| matches!(b.state, BootstrapState::Dialing(id) if id == connection_id),
                ) {
                    self.bootstrap_failed(i, now, &error.to_string());
                }
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    tracing::debug!(%peer, "discovered on the LAN");
                    for addr in &addrs {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer, addr.clone());
                    }
                    self.dial_peer(peer, addrs);
                }
            }
            BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                connection_id,
            }) => {
                if info.protocols.contains(&KAD_PROTOCOL) {
                    // A peer's loopback addresses are only reachable from its own host.
                    let via_loopback = self
                        .connection_addrs
                        .get(&connection_id)
                        .is_some_and(is_loopback);
                    for addr in info.listen_addrs {
                        if via_loopback || !is_loopback(&addr) {
                            self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                        }
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                is_new_peer: true, ..
            }) => self.discover_soon(),
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result:
                    kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                        providers,
                        ..
                    })),
                ..
            }) => {
                for peer in providers {
                    self.dial_peer(peer, Vec::new());
                }
            }
            BehaviourEvent::Gossipsub(event) => self.on_gossipsub_event(event),
            BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            }) => {
                // Ping failures no longer close connections by themselves; a dead link would
                // otherwise look alive until TCP gives up minutes later.
                tracing::info!(%peer, %error, "ping failed; closing connection");
                self.swarm.close_connection(connection);
            }
            BehaviourEvent::Connections(event) => tracing::debug!(?event, "peer connectivity"),
            _ => {}
        }
    }

    fn on_gossipsub_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let verdict =
                    check_message(&message, |org| self.orgs.contains_key(org), &mut self.seen);
                let acceptance = match &verdict {
                    Verdict::Deliver(_) | Verdict::Duplicate => MessageAcceptance::Accept,
                    Verdict::NotJoined => MessageAcceptance::Ignore,
                    Verdict::Invalid(reason) => {
                        tracing::info!(peer = %propagation_source, %reason, "rejected invalid org message");
                        MessageAcceptance::Reject
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
                if let Verdict::Deliver(envelope) = verdict {
                    self.deliver(&envelope, &message.topic);
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                if let Some(org) = OrgName::from_message_topic(topic.as_str()) {
                    if let Some(state) = self.orgs.get_mut(&org) {
                        if state.members.insert(peer_id) {
                            tracing::debug!(%org, peer = %peer_id, "member joined");
                        }
                        self.refresh_keep_alive(peer_id);
                    }
                }
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                if let Some(org) = OrgName::from_message_topic(topic.as_str()) {
                    if let Some(state) = self.orgs.get_mut(&org) {
                        if state.members.remove(&peer_id) {
                            tracing::debug!(%org, peer = %peer_id, "member left");
                        }
                        self.refresh_keep_alive(peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn deliver(&mut self, envelope: &Envelope, topic: &gossipsub::TopicHash) {
        let org = OrgName::from_message_topic(topic.as_str())
            .map_or_else(|| envelope.org().to_string(), |o| o.to_string());
        let delivered = Delivered {
            org,
            from: envelope.author().to_string(),
            id: envelope.id().to_string(),
            text: envelope.text().unwrap_or_default().to_owned(),
            sent_at_ms: envelope.sent_at_ms(),
            received_at_ms: unix_ms(),
            origin_org: envelope.org().to_string(),
            path: envelope
                .path()
                .iter()
                .map(|hop| format!("{}:{}", hop.org, hop.relayer))
                .collect(),
        };
        tracing::debug!(org = %delivered.org, id = %delivered.id, "message received");
        // No subscriber is not an error: the message was still accepted and forwarded.
        let _ = self.delivered.send(Arc::new(delivered));
    }
}
