//! Dialling TCP before QUIC: a QUIC dial starts only after a head start for TCP.
//!
//! Why: an org notices a crashed rep through its members' connections to it. When a process
//! dies, its kernel closes its TCP connections (a FIN or RST reaches every peer within a round
//! trip), but nothing at all is sent on its QUIC connections: a QUIC peer learns of the crash
//! only when pings go unanswered (800 ms, see `docs/wire.md`). A member whose link to the rep
//! happened to be QUIC then names the successor hundreds of milliseconds after the others, and
//! when that member *is* the successor, the whole org waits for it (measured with
//! `borg-bench --only failover-kill`: 4 of 50 trials took 82–282 ms instead of 1–4 ms, each
//! with a QUIC link to the killed rep).
//!
//! Whoever asks for a connection (this node, Kademlia's queries, mDNS) hands the swarm every
//! address it knows, and the swarm dials them all at once, so the first handshake to finish
//! decides the transport: often QUIC, whose handshake takes fewer round trips. Holding each QUIC
//! dial back by [`QUIC_HEAD_START`] lets TCP win wherever it works; the swarm then drops the
//! QUIC attempt before it has sent a packet. Where TCP does not work (refused, filtered, a peer
//! that listens on QUIC only) QUIC still connects, that much later; the node then moves such a
//! link to TCP once TCP works (`node::Node::link_over_tcp`). This is "happy eyeballs"
//! (RFC 8305) between transports instead of address families.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use libp2p::{
    Multiaddr, Transport,
    core::{
        Endpoint,
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
    },
    identity::Keypair,
    multiaddr::Protocol,
    quic,
};

/// How long a QUIC dial waits before it starts. A TCP connection, its Noise handshake and the
/// yamux negotiation take about four round trips: on a LAN a few milliseconds, and within this
/// head start up to a round trip time of about 100 ms.
pub const QUIC_HEAD_START: Duration = Duration::from_millis(500);

/// Whether `addr` is a TCP address.
pub fn is_tcp(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
}

/// Whether `addr` is a QUIC address (either version).
pub fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
}

/// The QUIC transport of a node with identity `key`, its dials held back by
/// [`QUIC_HEAD_START`]. Meant to sit beside TCP (`SwarmBuilder::with_other_transport`).
pub fn held_back_quic(key: &Keypair) -> HeldBack<quic::tokio::Transport> {
    HeldBack::new(
        quic::tokio::Transport::new(quic::Config::new(key)),
        QUIC_HEAD_START,
    )
}

/// A transport whose outgoing dials start `head_start` after they are asked for. Listening and
/// incoming connections are unchanged, and so are dials made as the listener (hole punching,
/// which must be simultaneous).
#[derive(Debug)]
pub struct HeldBack<T> {
    inner: T,
    head_start: Duration,
}

impl<T> HeldBack<T> {
    /// Wraps `inner` so that its dials wait `head_start`.
    pub fn new(inner: T, head_start: Duration) -> Self {
        Self { inner, head_start }
    }
}

impl<T> Transport for HeldBack<T>
where
    T: Transport + Unpin,
    T::Dial: Send + 'static,
    T::Output: 'static,
    T::Error: 'static,
{
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = BoxFuture<'static, Result<T::Output, T::Error>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let hold = opts.role == Endpoint::Dialer;
        // The inner dial is only created here; a QUIC dial sends its first packet when it is
        // first polled, i.e. after the wait (and never, if the swarm drops it first).
        let dial = self.inner.dial(addr, opts)?;
        let head_start = self.head_start;
        Ok(async move {
            if hold {
                tokio::time::sleep(head_start).await;
            }
            dial.await
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use libp2p::{
        Multiaddr, PeerId, Swarm, SwarmBuilder,
        core::ConnectedPoint,
        noise,
        swarm::{SwarmEvent, dial_opts::DialOpts, dummy},
        tcp, yamux,
    };

    use super::{HeldBack, QUIC_HEAD_START, is_quic};

    /// A swarm with the node's transports (TCP, and QUIC held back by `QUIC_HEAD_START`) and
    /// no protocols.
    fn swarm() -> Swarm<dummy::Behaviour> {
        swarm_holding_quic_for(QUIC_HEAD_START)
    }

    /// TCP, and QUIC with its dials held back by `head_start`.
    fn swarm_holding_quic_for(head_start: Duration) -> Swarm<dummy::Behaviour> {
        SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_other_transport(|key| {
                HeldBack::new(
                    libp2p::quic::tokio::Transport::new(libp2p::quic::Config::new(key)),
                    head_start,
                )
            })
            .expect("quic")
            .with_behaviour(|_| dummy::Behaviour)
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build()
    }

    /// Starts a listener on each of `addrs` (loopback, port 0) and returns the addresses it got.
    async fn listening(swarm: &mut Swarm<dummy::Behaviour>, addrs: &[&str]) -> Vec<Multiaddr> {
        for a in addrs {
            swarm.listen_on(a.parse().expect("addr")).expect("listen");
        }
        let mut got = Vec::new();
        while got.len() < addrs.len() {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                got.push(address);
            }
        }
        got
    }

    /// Dials `peer` at `addrs` from `from` and returns the address of the connection made,
    /// as the dialler sees it, and the remote addresses of the incoming connections `to` saw
    /// meanwhile.
    async fn connect(
        from: &mut Swarm<dummy::Behaviour>,
        to: &mut Swarm<dummy::Behaviour>,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> (Multiaddr, Vec<Multiaddr>) {
        from.dial(DialOpts::peer_id(peer).addresses(addrs).build())
            .expect("dial");
        let mut incoming = Vec::new();
        let wait = async {
            loop {
                tokio::select! {
                    event = from.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished {
                            endpoint: ConnectedPoint::Dialer { address, .. },
                            ..
                        } => return address,
                        SwarmEvent::OutgoingConnectionError { error, .. } => {
                            panic!("dial failed: {error}")
                        }
                        _ => {}
                    },
                    event = to.select_next_some() => {
                        if let SwarmEvent::IncomingConnection { send_back_addr, .. } = event {
                            incoming.push(send_back_addr);
                        }
                    }
                }
            }
        };
        let used = tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("connected within 30 s");
        (used, incoming)
    }

    /// The point of holding back: once TCP has connected, the QUIC attempt is dropped before
    /// it sent anything, so the peer never gets a QUIC connection that would outlive a crash.
    /// (Checked to fail with the plain `with_quic()` transport: `b` then sees `a`'s QUIC
    /// attempt.) The head start here is long so that a loaded machine cannot make the TCP
    /// handshake outlast it. QUIC is listed first: the order of addresses must not matter.
    #[tokio::test]
    async fn a_held_back_quic_dial_sends_nothing_once_tcp_connected() {
        let mut a = swarm_holding_quic_for(Duration::from_secs(30));
        let mut b = swarm();
        let mut addrs = listening(
            &mut b,
            &["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"],
        )
        .await;
        assert!(
            addrs.iter().any(is_quic),
            "b listens on QUIC too: {addrs:?}"
        );
        addrs.sort_by_key(|a| !is_quic(a));
        let peer = *b.local_peer_id();
        let (used, mut incoming) = connect(&mut a, &mut b, peer, addrs).await;
        assert!(!is_quic(&used), "connected over {used}, not TCP");
        // Any QUIC packet from `a` shows at `b` as an incoming connection on its QUIC
        // listener; give a packet sent at the dial ample time to arrive.
        let watch = async {
            loop {
                tokio::select! {
                    event = b.select_next_some() => {
                        if let SwarmEvent::IncomingConnection { send_back_addr, .. } = event {
                            incoming.push(send_back_addr);
                        }
                    }
                    _ = a.select_next_some() => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), watch).await;
        let incoming_quic: Vec<&Multiaddr> = incoming.iter().filter(|a| is_quic(a)).collect();
        assert!(
            incoming_quic.is_empty(),
            "b saw QUIC connections from a: {incoming_quic:?}"
        );
    }

    #[tokio::test]
    async fn quic_still_connects_a_peer_without_tcp() {
        let mut a = swarm();
        let mut b = swarm();
        let addrs = listening(&mut b, &["/ip4/127.0.0.1/udp/0/quic-v1"]).await;
        let peer = *b.local_peer_id();
        let (used, _) = connect(&mut a, &mut b, peer, addrs).await;
        assert!(is_quic(&used), "connected over {used}");
    }
}
