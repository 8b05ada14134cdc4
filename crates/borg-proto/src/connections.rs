//! Connection bookkeeping: which distinct peers are connected, over which connections, and
//! which connections must stay open.
//!
//! - The swarm closes a connection once no behaviour's handler wants it kept alive (after the
//!   idle timeout). This behaviour's handler keeps a connection alive exactly while its peer is
//!   flagged with [`Behaviour::set_keep_alive`]; the node flags org members, so connections to
//!   them stay open and connections made only for DHT lookups close when idle.
//! - It counts *distinct peers*, not connections: simultaneous dials and TCP plus QUIC give
//!   several connections per peer, and the election score must not depend on such accidents.
//! - It reports a peer as connected on its first connection and disconnected when its last one
//!   closes ([`Event`]).

use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    convert::Infallible,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse, upgrade::DeniedUpgrade},
    swarm::{
        ConnectionDenied, ConnectionHandlerEvent, ConnectionId, FromSwarm, NetworkBehaviour,
        NotifyHandler, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
        handler::ConnectionEvent,
    },
};

/// What [`Behaviour`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first connection to `peer` was established.
    PeerConnected(PeerId),
    /// The last connection to `peer` closed.
    PeerDisconnected(PeerId),
}

#[derive(Debug, Default)]
struct Peer {
    connections: HashMap<ConnectionId, Multiaddr>,
    keep_alive: bool,
}

/// Tracks connected peers and keeps connections to flagged peers alive.
#[derive(Debug, Default)]
pub struct Behaviour {
    peers: HashMap<PeerId, Peer>,
    /// Flags set for peers that are not connected yet, applied when they connect.
    keep_alive_wanted: HashMap<PeerId, bool>,
    pending: VecDeque<ToSwarm<Event, bool>>,
}

impl Behaviour {
    /// A behaviour with no peers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps every connection to `peer` open (`true`) or lets them close when idle (`false`).
    ///
    /// Applies to current and future connections of that peer.
    pub fn set_keep_alive(&mut self, peer: PeerId, keep_alive: bool) {
        if keep_alive {
            self.keep_alive_wanted.insert(peer, true);
        } else {
            self.keep_alive_wanted.remove(&peer);
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.keep_alive == keep_alive {
            return;
        }
        state.keep_alive = keep_alive;
        for connection in state.connections.keys() {
            self.pending.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(*connection),
                event: keep_alive,
            });
        }
    }

    /// Whether `peer` is flagged to be kept connected.
    pub fn is_kept_alive(&self, peer: &PeerId) -> bool {
        self.keep_alive_wanted.contains_key(peer)
    }

    /// The distinct peers with at least one established connection.
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    /// Whether `peer` has at least one established connection.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// The number of distinct connected peers.
    pub fn connected_count(&self) -> usize {
        self.peers.len()
    }

    /// The remote addresses of the established connections to `peer`.
    pub fn connection_addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|p| p.connections.values().cloned().collect())
            .unwrap_or_default()
    }

    fn on_established(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        remote: Multiaddr,
    ) -> bool {
        let keep_alive = self.is_kept_alive(&peer);
        match self.peers.entry(peer) {
            Entry::Occupied(mut e) => {
                e.get_mut().connections.insert(connection, remote);
            }
            Entry::Vacant(e) => {
                e.insert(Peer {
                    connections: HashMap::from([(connection, remote)]),
                    keep_alive,
                });
                self.pending
                    .push_back(ToSwarm::GenerateEvent(Event::PeerConnected(peer)));
            }
        }
        keep_alive
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler {
            keep_alive: self.on_established(peer, connection, remote.clone()),
        })
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler {
            keep_alive: self.on_established(peer, connection, addr.clone()),
        })
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(closed) = event
            && let Entry::Occupied(mut e) = self.peers.entry(closed.peer_id)
        {
            e.get_mut().connections.remove(&closed.connection_id);
            if e.get().connections.is_empty() {
                e.remove();
                self.pending
                    .push_back(ToSwarm::GenerateEvent(Event::PeerDisconnected(
                        closed.peer_id,
                    )));
            }
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.pending.pop_front() {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }
}

/// The per-connection side: opens no streams, only answers "keep this connection?".
#[derive(Debug)]
pub struct Handler {
    keep_alive: bool,
}

impl libp2p::swarm::ConnectionHandler for Handler {
    type FromBehaviour = bool;
    type ToBehaviour = Infallible;
    type InboundProtocol = DeniedUpgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(DeniedUpgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        self.keep_alive
    }

    fn on_behaviour_event(&mut self, keep_alive: bool) {
        self.keep_alive = keep_alive;
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        Poll::Pending
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        // DeniedUpgrade never negotiates, so no stream event can carry a value; the rest
        // (address changes, protocol changes) is irrelevant here.
        let _ = event;
    }
}
