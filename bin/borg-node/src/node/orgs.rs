//! Orgs inside the node: membership, elections, tiers and relaying.
//!
//! - Joining an org subscribes to its message and control topics, starts its election and
//!   announces the membership in the DHT. Leaving publishes a goodbye (a rep's goodbye hands
//!   over at once) and unsubscribes.
//! - Election outputs are drained after every event: announcements go to the control topic,
//!   rep changes are logged, streamed as events, and drive tiers: the rep of an org with a
//!   parent joins the parent (an *auto-joined* org) and leaves it when it stops being rep.
//! - Relaying: a message delivered in an org is republished by this node into every child org
//!   it represents (down), and, when it was sent `--up` in an org this node represents, into
//!   that org's parent. An org already on the message's path is never relayed into, and each
//!   (org, message id) is delivered or relayed at most once, so nothing loops or duplicates,
//!   even while two nodes both believe they are rep.

use std::{
    collections::{BTreeSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use borg_proto::{
    Direction, Envelope, OrgName,
    election::{Election, Output, Relay, decode_announcement, encode_announcement},
};
use libp2p::{
    PeerId,
    gossipsub::{self, IdentTopic, MessageAcceptance, PublishError},
};

use super::{Found, Node, NodeError, SEND_BACKLOG_LIMIT, SEND_HOLD_LIMIT, unix_ms};
use crate::{
    api::{Delivered, Event, MemberInfo, OrgInfo, Sent},
    config::OrgSpec,
    messages::{Screened, Verdict, conclude, screen_message},
};

/// How long a member may hear no other member of an org whose members it is connected to
/// before it replaces those connections (`Node::check_deaf_orgs`).
const DEAF_AFTER: Duration = Duration::from_secs(30);

/// An org message received and screened, waiting for its signatures to be checked.
pub(super) struct UnverifiedMessage {
    screened: Screened,
    propagation_source: PeerId,
    message_id: gossipsub::MessageId,
}

/// One joined org.
pub(super) struct Org {
    spec: OrgSpec,
    /// Joined by the user (config or `join`), not only as the rep of a child org.
    explicit: bool,
    /// Child orgs this node represents, which keep it in this org.
    via_children: BTreeSet<OrgName>,
    message_topic: IdentTopic,
    control_topic: IdentTopic,
    /// Peers subscribed to the message topic, as gossipsub reports them.
    subscribers: BTreeSet<PeerId>,
    pub(super) election: Election<PeerId>,
    rep_since_ms: u64,
    /// Unix ms at which this node joined the org.
    joined_ms: u64,
    /// When this node joined the org, or last replaced its links to it for hearing no one
    /// (`Node::check_deaf_orgs`).
    deaf_since: Instant,
}

impl Org {
    pub(super) fn name(&self) -> &OrgName {
        &self.spec.org
    }

    /// Whether `peer` is a member: announced in the election or subscribed to the messages.
    pub(super) fn has_member(&self, peer: &PeerId) -> bool {
        self.subscribers.contains(peer) || self.election.is_member(peer)
    }
}

/// The `subscribe`/`history` view of `envelope`, received in `org` at `received_at_ms`.
pub(super) fn delivered(envelope: &Envelope, org: &OrgName, received_at_ms: u64) -> Delivered {
    Delivered {
        org: org.to_string(),
        from: envelope.author().to_string(),
        id: envelope.id().to_string(),
        text: envelope.text().unwrap_or_default().to_owned(),
        sent_at_ms: envelope.sent_at_ms(),
        received_at_ms,
        origin_org: envelope.org().to_string(),
        path: envelope
            .path()
            .iter()
            .map(|hop| format!("{}:{}", hop.org, hop.relayer))
            .collect(),
    }
}

/// Converts an `Instant` in the past to Unix ms, using the current time of both clocks.
fn instant_to_unix_ms(at: Instant, now: Instant, now_ms: u64) -> u64 {
    now_ms.saturating_sub(now.saturating_duration_since(at).as_millis() as u64)
}

impl Node {
    /// Joins the org of `spec`. `explicit` marks a join the user asked for; an automatic join
    /// (as rep of a child) does not make the org explicit. Returns whether anything changed.
    pub(super) fn join(&mut self, spec: OrgSpec, explicit: bool) -> bool {
        if let Some(org) = self.orgs.get_mut(&spec.org) {
            let mut changed = false;
            if explicit && !org.explicit {
                org.explicit = true;
                changed = true;
            }
            if !spec.parents.is_empty() && org.spec.parents != spec.parents {
                org.spec.parents = spec.parents.clone();
                changed = true;
            }
            return changed;
        }
        let name = spec.org.clone();
        let message_topic = IdentTopic::new(name.message_topic());
        let control_topic = IdentTopic::new(name.control_topic());
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        for topic in [&message_topic, &control_topic] {
            if let Err(e) = gossipsub.subscribe(topic) {
                tracing::warn!(org = %name, error = %e, "cannot subscribe to org topic");
                return false;
            }
        }
        let now = Instant::now();
        let mut election = Election::new(
            self.local_peer_id(),
            self.config.election.clone(),
            rand::random(),
            now,
        );
        for peer in self.swarm.behaviour().connections.connected_peers() {
            election.handle_connected(*peer, now);
        }
        // Peers that subscribed before this node joined: their events went unheeded.
        let mut subscribers = BTreeSet::new();
        let (message_hash, control_hash) = (message_topic.hash(), control_topic.hash());
        for (peer, topics) in self.swarm.behaviour().gossipsub.all_peers() {
            if topics.contains(&&message_hash) {
                subscribers.insert(*peer);
            }
            if topics.contains(&&control_hash) {
                election.handle_subscribed(*peer, now);
            }
        }
        tracing::info!(org = %name, parent = ?spec.parent().map(ToString::to_string), auto = !explicit, "joined org");
        self.orgs.insert(
            name,
            Org {
                spec,
                explicit,
                via_children: BTreeSet::new(),
                message_topic,
                control_topic,
                subscribers,
                election,
                rep_since_ms: 0,
                joined_ms: unix_ms(),
                deaf_since: now,
            },
        );
        self.provide_soon();
        true
    }

    /// Leaves `org`, handing over first if this node is its rep. Returns whether it was joined.
    pub(super) fn leave(&mut self, org: &OrgName) -> bool {
        let Some(mut state) = self.orgs.remove(org) else {
            return false;
        };
        let goodbye =
            encode_announcement(&state.election.leave(Instant::now()), org, &self.keypair);
        let behaviour = self.swarm.behaviour_mut();
        if let Err(e) = behaviour
            .gossipsub
            .publish(state.control_topic.clone(), goodbye)
        {
            tracing::debug!(%org, error = %e, "goodbye not published");
        }
        behaviour.gossipsub.unsubscribe(&state.message_topic);
        behaviour.gossipsub.unsubscribe(&state.control_topic);
        behaviour
            .kad
            .stop_providing(&libp2p::kad::RecordKey::new(&org.dht_key()));
        let peers: Vec<PeerId> = state
            .subscribers
            .iter()
            .copied()
            .chain(state.election.members().map(|m| *m.peer))
            .collect();
        for peer in peers {
            self.refresh_keep_alive(peer);
        }
        tracing::info!(%org, "left org");
        // This node no longer represents `org` in its parent.
        if let Some(parent) = state.spec.parent().cloned() {
            self.release_parent(&parent, org);
        }
        // Auto-joined children of ours are unaffected; nothing else refers to `org`.
        state.via_children.clear();
        true
    }

    fn release_parent(&mut self, parent: &OrgName, child: &OrgName) {
        let Some(p) = self.orgs.get_mut(parent) else {
            return;
        };
        p.via_children.remove(child);
        if !p.explicit && p.via_children.is_empty() {
            tracing::info!(org = %parent, child = %child, "no longer rep of a child org; leaving the parent");
            self.leave(parent);
        }
    }

    /// Keeps the connection to `peer` open while it is one of this node's links in an org it
    /// shares: its rep, a member it represents, or a member it chose (or accepted) as one of its
    /// `org_degree` neighbours. (With gossipsub's streams open on every connection, libp2p
    /// closes none as idle anyway, rust-libp2p #5190; `trim_connections` closes the ones to
    /// non-members. The flag matters for peers without gossipsub.)
    pub(super) fn refresh_keep_alive(&mut self, peer: PeerId) {
        let keep = self.wants_link(&peer);
        self.swarm
            .behaviour_mut()
            .connections
            .set_keep_alive(peer, keep);
    }

    /// Whether this node keeps its connection to `peer` (see `refresh_keep_alive`): its rep,
    /// a member that names this node as its rep, or a member that is one of its links (or any
    /// member, while this node is rep).
    pub(super) fn wants_link(&self, peer: &PeerId) -> bool {
        let me = self.local_peer_id();
        self.orgs.values().any(|o| {
            o.election.rep() == Some(peer)
                || o.election.follows(peer) == Some(&me)
                || (o.has_member(peer) && (o.election.am_rep() || self.links.contains_key(peer)))
        })
    }

    /// Replaces this node's connections to the members of an org it has heard nothing from
    /// for `DEAF_AFTER` since it joined (or since the last such replacement): none of them has
    /// reached it, though they are subscribed, and under the election's rules at least one
    /// would have (a member that announces no ballot, or only its own, is answered by its
    /// settled neighbours within a second or so). Seen among 1,000 in-process members: a
    /// member whose only connection, to the bootstrap peer, carried nothing either way for
    /// minutes, pings included, while it stayed open. A fresh connection has fresh
    /// multiplexer and encryption state at both ends. (The connection is dialled anew before
    /// the old one closes, so the election sees no loss.)
    pub(super) fn check_deaf_orgs(&mut self, now: Instant) {
        let mut deaf_to = BTreeSet::new();
        for org in self.orgs.values_mut() {
            if now.saturating_duration_since(org.deaf_since) < DEAF_AFTER
                || org.election.members().next().is_some()
            {
                continue;
            }
            // `subscribers` also holds peers that disconnected since (gossipsub reports no
            // unsubscription for them): only the connected ones can be replaced.
            let swarm = &self.swarm;
            let linked: Vec<PeerId> = org
                .subscribers
                .iter()
                .copied()
                .filter(|peer| swarm.is_connected(peer))
                .collect();
            if linked.is_empty() {
                continue;
            }
            org.deaf_since = now;
            tracing::warn!(org = %org.name(), members = linked.len(), "heard no member of the org in {DEAF_AFTER:?}; replacing the connections to its members");
            deaf_to.extend(linked);
        }
        for peer in deaf_to {
            self.replace_connections(peer, "heard no member of an org it shares with this peer");
        }
    }

    /// Re-applies the keep-alive policy to every connected peer (after a rep change).
    fn refresh_keep_alive_all(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            self.refresh_keep_alive(peer);
        }
    }

    /// The earliest election deadline over all orgs.
    pub(super) fn next_election_deadline(&self) -> Option<Instant> {
        self.orgs.values().map(|o| o.election.poll_timeout()).min()
    }

    pub(super) fn on_election_timeout(&mut self, now: Instant) {
        for org in self.orgs.values_mut() {
            if org.election.poll_timeout() <= now {
                org.election.handle_timeout(now);
            }
        }
    }

    /// The reps of this node's orgs, other than itself (one per org: a peer that is the rep of
    /// two orgs comes twice).
    pub(super) fn other_reps(&self) -> impl Iterator<Item = PeerId> + '_ {
        let me = self.local_peer_id();
        self.orgs
            .values()
            .filter_map(|o| o.election.rep().copied())
            .filter(move |r| *r != me)
    }

    /// Dials the rep of every org whose rep is not connected: every member keeps a direct
    /// connection to its rep.
    pub(super) fn ensure_rep_connections(&mut self) {
        let reps: Vec<PeerId> = self.other_reps().collect();
        for rep in reps {
            self.dial_peer(rep, Vec::new());
        }
    }

    /// Takes every election's outputs and acts on them, until none is left (acting may join
    /// or leave orgs, whose elections produce outputs of their own).
    pub(super) fn drain_elections(&mut self) {
        let mut acted = false;
        loop {
            let mut outputs = Vec::new();
            for (name, org) in self.orgs.iter_mut() {
                while let Some(out) = org.election.poll_output() {
                    outputs.push((name.clone(), out));
                }
            }
            if outputs.is_empty() {
                if acted {
                    // A new rep's link is pinged at the rep rate from its first moment.
                    self.sync_ping_intervals(Instant::now());
                }
                return;
            }
            acted = true;
            for (org, out) in outputs {
                self.on_election_output(&org, out);
            }
        }
    }

    fn emit(&self, event: Event) {
        self.events.send(Arc::new(event));
    }

    fn on_election_output(&mut self, name: &OrgName, out: Output<PeerId>) {
        let Some(org) = self.orgs.get_mut(name) else {
            return;
        };
        match out {
            Output::Announce(ann) => {
                let topic = org.control_topic.clone();
                let me = self.local_peer_id();
                tracing::trace!(
                    org = %name,
                    term = ann.term,
                    seq = ann.seq,
                    heartbeat_ms = ann.heartbeat.as_millis() as u64,
                    rep = ann.rep.as_ref() == Some(&me),
                    "announcing"
                );
                let bytes = encode_announcement(&ann, name, &self.keypair);
                match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
                    Ok(_) | Err(PublishError::NoPeersSubscribedToTopic) => {}
                    Err(e) => {
                        tracing::debug!(org = %name, error = %e, "announcement not published")
                    }
                }
            }
            Output::RepChanged {
                rep,
                term,
                ballot_score,
                previous,
                reason,
            } => {
                let at_ms = unix_ms();
                org.rep_since_ms = at_ms;
                tracing::info!(
                    org = %name,
                    %rep,
                    term,
                    ballot_score,
                    previous = ?previous.map(|p| p.to_string()),
                    reason = reason.as_str(),
                    "representative changed"
                );
                self.emit(Event::RepChanged {
                    org: name.to_string(),
                    rep: rep.to_string(),
                    term,
                    previous: previous.map(|p| p.to_string()),
                    reason: reason.as_str().to_owned(),
                    at_ms,
                });
                if rep != self.local_peer_id() {
                    self.dial_peer(rep, Vec::new());
                }
                // Becoming or ceasing to be rep changes which links this node keeps.
                self.refresh_keep_alive_all();
                self.update_tier(name);
            }
            Output::MemberJoined(peer) => {
                tracing::debug!(org = %name, %peer, "member joined");
                self.emit(Event::MemberJoined {
                    org: name.to_string(),
                    peer_id: peer.to_string(),
                    at_ms: unix_ms(),
                });
                self.refresh_keep_alive(peer);
                // A member heard of is a candidate neighbour like one found on the LAN or in
                // the DHT: dialled only within the `org_degree` budget.
                self.dial_members(vec![(peer, Vec::new())], Found::Elsewhere);
                self.ask_history(peer, name);
            }
            Output::MemberLeft(peer) => {
                tracing::debug!(org = %name, %peer, "member left");
                self.emit(Event::MemberLeft {
                    org: name.to_string(),
                    peer_id: peer.to_string(),
                    at_ms: unix_ms(),
                });
                self.refresh_keep_alive(peer);
            }
        }
    }

    /// Joins or leaves the parent of `child` according to whether this node is `child`'s rep.
    fn update_tier(&mut self, child: &OrgName) {
        let Some(org) = self.orgs.get(child) else {
            return;
        };
        let Some(parent_spec) = org.spec.parent_spec() else {
            return;
        };
        let parent = parent_spec.org.clone();
        if org.election.am_rep() {
            if !self.orgs.contains_key(&parent) {
                tracing::info!(org = %parent, child = %child, "rep of a child org; joining the parent");
                self.join(parent_spec, false);
            }
            if let Some(p) = self.orgs.get_mut(&parent) {
                p.via_children.insert(child.clone());
            }
        } else {
            self.release_parent(&parent, child);
        }
    }

    pub(super) fn send(&mut self, org: OrgName, text: String, up: bool) -> Result<Sent, NodeError> {
        let Some(state) = self.orgs.get(&org) else {
            return Err(NodeError::NotMember(org));
        };
        if up && state.spec.parent().is_none() {
            return Err(NodeError::NoParent(org));
        }
        let envelope = Envelope::new_text(
            &self.keypair,
            org.clone(),
            unix_ms(),
            rand::random(),
            text,
            if up { Direction::Up } else { Direction::Down },
        )?;
        let id = envelope.id();
        let topic = state.message_topic.clone();
        let published = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, envelope.encode());
        // Our own relays (as rep of this org's children, or of this org for --up) go out even
        // when no other member of this org is connected.
        self.seen.insert((org.clone(), id));
        if published.is_ok() {
            self.log_message(&org, &envelope, true);
        }
        let relayed = self.relay(&envelope, &org);
        match published {
            Ok(_) => {}
            Err(PublishError::NoPeersSubscribedToTopic) if relayed > 0 => {}
            Err(PublishError::NoPeersSubscribedToTopic) => return Err(NodeError::NoPeers(org)),
            Err(e) => return Err(NodeError::Publish(e.to_string())),
        }
        tracing::debug!(%org, %id, up, "sent message");
        Ok(Sent {
            id: id.to_string(),
            org: org.to_string(),
        })
    }

    /// Sends the held `send` requests whose org has room (`SEND_BACKLOG_LIMIT`), in order
    /// within each org, and fails those that waited `SEND_HOLD_LIMIT`.
    pub(super) fn release_held_sends(&mut self, now: Instant) {
        let mut waiting = VecDeque::new();
        // An org whose oldest held message is still waiting holds back its later ones too.
        let mut blocked: BTreeSet<OrgName> = BTreeSet::new();
        while let Some(held) = self.held_sends.pop_front() {
            if !blocked.contains(&held.org) && !self.congested(&held.org) {
                let _ = held.reply.send(self.send(held.org, held.text, held.up));
            } else if now.saturating_duration_since(held.since) >= SEND_HOLD_LIMIT {
                tracing::warn!(org = %held.org, "message not sent: members' send queues stayed full");
                let _ = held.reply.send(Err(NodeError::Congested(held.org)));
            } else {
                blocked.insert(held.org.clone());
                waiting.push_back(held);
            }
        }
        self.held_sends = waiting;
    }

    /// Whether a member of `org` has `SEND_BACKLOG_LIMIT` data messages waiting for it.
    fn congested(&self, org: &OrgName) -> bool {
        self.orgs.get(org).is_some_and(|state| {
            self.swarm
                .behaviour()
                .gossipsub
                .topic_send_backlog(&state.message_topic.hash())
                >= SEND_BACKLOG_LIMIT
        })
    }

    /// Republishes `envelope`, delivered in `org`, into the orgs this node relays it to.
    /// Returns how many copies it published.
    fn relay(&mut self, envelope: &Envelope, org: &OrgName) -> usize {
        let visited: BTreeSet<&OrgName> = envelope
            .path()
            .iter()
            .map(|hop| &hop.org)
            .chain(std::iter::once(envelope.org()))
            .chain(std::iter::once(org))
            .collect();
        let mut targets: Vec<OrgName> = self
            .orgs
            .values()
            .filter(|o| o.spec.parent() == Some(org) && o.election.am_rep())
            .map(|o| o.name().clone())
            .filter(|c| !visited.contains(c))
            .collect();
        if envelope.direction() == Direction::Up
            && envelope.path().is_empty()
            && let Some(state) = self.orgs.get(org)
            && let Some(parent) = state.spec.parent()
            && state.election.am_rep()
            && self.orgs.contains_key(parent)
            && !visited.contains(parent)
        {
            targets.push(parent.clone());
        }
        let mut published = 0;
        for target in targets {
            if !self.seen.insert((target.clone(), envelope.id())) {
                continue; // delivered or relayed there already
            }
            let copy = match envelope.relayed(target.clone(), &self.keypair, Direction::Down) {
                Ok(copy) => copy,
                Err(e) => {
                    tracing::debug!(org = %target, error = %e, "not relayed");
                    continue;
                }
            };
            let Some(state) = self.orgs.get(&target) else {
                continue;
            };
            let topic = state.message_topic.clone();
            match self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(topic, copy.encode())
            {
                Ok(_) => {
                    published += 1;
                    tracing::debug!(from = %org, to = %target, id = %envelope.id(), "relayed message");
                }
                Err(e) => tracing::debug!(org = %target, error = %e, "relay not published"),
            }
            // This node is a member of `target` too: it receives the message there as well.
            self.publish_delivery(&copy, &target);
        }
        published
    }

    pub(super) fn on_gossipsub_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                if let Some(org) = OrgName::from_control_topic(message.topic.as_str()) {
                    self.on_announcement(org, propagation_source, &message_id, message);
                    return;
                }
                match screen_message(&message, |org| self.orgs.contains_key(org)) {
                    Err(verdict) => self.act_on_verdict(verdict, &propagation_source, &message_id),
                    // Its signatures are checked with those of the other messages that are
                    // ready now (`check_unverified`), before anything else is done with it.
                    Ok(screened) => self.unverified.push(UnverifiedMessage {
                        screened,
                        propagation_source,
                        message_id,
                    }),
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                if let Some(org) = OrgName::from_message_topic(topic.as_str())
                    && let Some(state) = self.orgs.get_mut(&org)
                {
                    state.subscribers.insert(peer_id);
                    self.refresh_keep_alive(peer_id);
                } else if let Some(org) = OrgName::from_control_topic(topic.as_str())
                    && let Some(state) = self.orgs.get_mut(&org)
                {
                    // It hears our announcements from now on (the election may introduce
                    // this member to its rep over the new link).
                    state.election.handle_subscribed(peer_id, Instant::now());
                }
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                if let Some(org) = OrgName::from_message_topic(topic.as_str())
                    && let Some(state) = self.orgs.get_mut(&org)
                {
                    state.subscribers.remove(&peer_id);
                    self.refresh_keep_alive(peer_id);
                }
            }
            // Gossipsub drops what it cannot queue to a peer that reads too slowly: the
            // operator should know that messages were lost on that link.
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                tracing::warn!(
                    peer = %peer_id,
                    dropped = failed_messages.priority + failed_messages.non_priority,
                    "gossipsub dropped messages to a slow peer"
                );
            }
            _ => {}
        }
    }

    /// Checks the signatures of the org messages received since the last call, together
    /// (`messages::conclude`), and delivers, forwards or rejects each, in the order received.
    pub(super) fn check_unverified(&mut self) {
        if self.unverified.is_empty() {
            return;
        }
        let (screened, routes): (Vec<Screened>, Vec<(PeerId, gossipsub::MessageId)>) =
            std::mem::take(&mut self.unverified)
                .into_iter()
                .map(|m| (m.screened, (m.propagation_source, m.message_id)))
                .unzip();
        let verdicts = conclude(screened, &mut self.seen);
        for ((source, message_id), verdict) in routes.into_iter().zip(verdicts) {
            self.act_on_verdict(verdict, &source, &message_id);
        }
    }

    fn act_on_verdict(
        &mut self,
        verdict: Verdict,
        propagation_source: &PeerId,
        message_id: &gossipsub::MessageId,
    ) {
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
            .report_message_validation_result(message_id, propagation_source, acceptance);
        if let Verdict::Deliver(envelope) = verdict {
            let org = envelope.claimed_org().clone();
            self.publish_delivery(&envelope, &org);
            self.relay(&envelope, &org);
        }
    }

    fn on_announcement(
        &mut self,
        org: OrgName,
        propagation_source: PeerId,
        message_id: &gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        // Forwarded only where the election says the org needs it (`Relay`): a member's
        // heartbeat is published to its neighbours and stops there. Ignore tells gossipsub not
        // to forward without penalising the sender.
        let acceptance = match decode_announcement(&message.data, &org) {
            Err(e) => {
                tracing::info!(peer = %propagation_source, reason = %e, "rejected invalid announcement");
                MessageAcceptance::Reject
            }
            Ok((source, ann)) => match self.orgs.get_mut(&org) {
                None => MessageAcceptance::Ignore,
                Some(state) => match state
                    .election
                    .handle_announcement(source, ann, Instant::now())
                {
                    Relay::Yes => MessageAcceptance::Accept,
                    Relay::No => MessageAcceptance::Ignore,
                },
            },
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, &propagation_source, acceptance);
    }

    fn publish_delivery(&mut self, envelope: &Envelope, org: &OrgName) {
        self.log_message(org, envelope, false);
        tracing::debug!(%org, id = %envelope.id(), "message received");
        // No subscriber is not an error: the message was still accepted and forwarded.
        self.delivered
            .send_with(|| Arc::new(delivered(envelope, org, unix_ms())));
    }

    pub(super) fn org_infos(&self) -> Vec<OrgInfo> {
        let now = Instant::now();
        let now_ms = unix_ms();
        let me = self.local_peer_id();
        self.orgs
            .values()
            .map(|o| {
                let e = &o.election;
                let mut members: Vec<MemberInfo> = e
                    .members()
                    .map(|m| MemberInfo {
                        peer_id: m.peer.to_string(),
                        score: m.score,
                        last_seen_ms: instant_to_unix_ms(m.last_heard, now, now_ms),
                        known_since_ms: instant_to_unix_ms(m.known_since, now, now_ms),
                    })
                    .collect();
                members.push(MemberInfo {
                    peer_id: me.to_string(),
                    score: e.score(),
                    last_seen_ms: now_ms,
                    known_since_ms: o.joined_ms,
                });
                OrgInfo {
                    org: o.name().to_string(),
                    parent: o.spec.parent().map(ToString::to_string),
                    rep: e.rep().map(ToString::to_string),
                    term: e.term(),
                    rep_since_ms: o.rep_since_ms,
                    reason: e.reason().as_str().to_owned(),
                    am_rep: e.am_rep(),
                    succession: e.succession().iter().map(ToString::to_string).collect(),
                    members,
                    score: e.score(),
                    auto_joined: !o.explicit,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn instants_convert_to_unix_ms() {
        let now = Instant::now();
        let earlier = now - Duration::from_millis(1_500);
        assert_eq!(instant_to_unix_ms(earlier, now, 10_000), 8_500);
        assert_eq!(instant_to_unix_ms(now, now, 10_000), 10_000);
    }
}
