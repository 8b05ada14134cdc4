//! The representative election of one org: a pure state machine.
//!
//! No I/O, no clock: the caller feeds inputs (`handle_*`) with the current time, takes
//! outputs with [`Election::poll_output`] and calls [`Election::handle_timeout`] when
//! [`Election::poll_timeout`] is reached. The rules are specified in `docs/election.md`.
//!
//! State:
//! - the member table: every peer that announced on the org's control topic, with its score,
//!   when it was last heard and whether it was lost (connection closed or unresponsive);
//! - the set of peers this node is directly connected to;
//! - the view: `(term, rep)`, the reason the rep got there, and the line of succession the rep
//!   last announced.
//!
//! Data flow:
//! - a member's *score* is the number of members it is directly connected to;
//! - every member announces `(score, term, rep)` every heartbeat; the rep also announces the
//!   line of succession (the other members, best first), and at once (at most every
//!   `min_announce_gap`) when it changes or a newcomer appears. Other members announce early only
//!   a ballot they inferred themselves and have not heard from its rep: announcements are
//!   broadcast, so repeating a heard ballot, or every member greeting every newcomer, would cost
//!   O(members²) messages in a large org;
//! - views are *ballots* `(term, rep)`, each with a score (the rep's score when the ballot was
//!   made), ordered by term, then by score, then by the lower peer id; every member moves to
//!   the greatest ballot it hears (a max-register), so two reps claimed for one term resolve to
//!   the better connected one without inflating the term;
//! - when the rep is lost, the first live member of the last announced line of succession
//!   becomes rep at `term + 1`: succession is known in advance. A rep that stopped answering is
//!   replaced by every member at once; when the rep's connection closes, the successor promotes
//!   itself and the others wait briefly for its announcement, so that one member's broken link
//!   does not move the whole org;
//! - the rep hands over to a member whose score beats its own by `margin` for `hold`.

use std::{
    cmp::{Ordering, Reverse},
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt::Debug,
    time::{Duration, Instant},
};

mod wire;

pub use wire::{
    ANNOUNCEMENT_VERSION, AnnouncementDecodeError, MAX_ANNOUNCEMENT_BYTES, MAX_HEARTBEAT_MS,
    MAX_WIRE_SUCCESSION, decode_announcement, encode_announcement,
};

/// Tunables of the election. All members of an org should use the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Interval between a member's periodic announcements in a small, settled org. Liveness
    /// does not depend on it where members are directly connected (a closed connection is a
    /// loss at once, and pings catch a silent one within a second); it carries scores and
    /// reaches members without a direct connection. At 1 s a settled 5-member org sends 5 a
    /// second, not 10 as at 300 ms; idle CPU per node measured 1.1 % → 0.8 %.
    pub heartbeat: Duration,
    /// The heartbeat while a member is settling: for `settle_time` after it joins or its rep
    /// changes, when scores and members are still being learnt (members started together
    /// elect from the scores they heard by the end of the join grace; a large org's rep
    /// learns its members from their heartbeats). 100 in-process members agreed in 4.2 s with
    /// a 300 ms heartbeat and in 6.8-12.1 s with 1 s.
    pub heartbeat_settling: Duration,
    /// How long a member heartbeats at `heartbeat_settling` after joining or a rep change.
    pub settle_time: Duration,
    /// Added to the heartbeat interval for every known member, so that the whole org's
    /// announcement rate stays bounded (about one per `heartbeat_per_member`) as it grows.
    pub heartbeat_per_member: Duration,
    /// A member that is not directly connected and has not been heard for this long is
    /// presumed dead (and so is a rep one cannot reach). Never less than four heartbeats.
    pub silence_timeout: Duration,
    /// A member not connected and not heard for this long is removed from the table. Never less
    /// than eight heartbeats.
    pub member_timeout: Duration,
    /// How long a new member listens for an existing rep before electing one itself.
    pub join_grace: Duration,
    /// By how much a member's score must exceed the rep's for the rep to hand over to it.
    pub margin: u32,
    /// How long that lead must last before the handover.
    pub hold: Duration,
    /// The longest line of succession announced.
    pub max_succession: usize,
    /// The shortest interval between two announcements of the rep that are not heartbeats
    /// (succession changed, newcomers), in a small org: a burst of joins costs one
    /// announcement per gap.
    pub min_announce_gap: Duration,
    /// Added to `min_announce_gap` for every known member: the rep's announcement is a
    /// broadcast to all of them.
    pub announce_gap_per_member: Duration,
    /// How long a member that inferred a new ballot itself (failover, first election) waits
    /// for its rep to announce it before announcing it itself; also how long a member whose
    /// connection to the rep closed waits for the successor to announce itself.
    pub announce_suppress: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(1_000),
            heartbeat_settling: Duration::from_millis(300),
            settle_time: Duration::from_secs(10),
            heartbeat_per_member: Duration::from_millis(100),
            silence_timeout: Duration::from_millis(1_500),
            member_timeout: Duration::from_secs(10),
            join_grace: Duration::from_millis(1_000),
            margin: 2,
            hold: Duration::from_secs(5),
            max_succession: 32,
            min_announce_gap: Duration::from_millis(100),
            announce_gap_per_member: Duration::from_millis(1),
            announce_suppress: Duration::from_millis(300),
        }
    }
}

/// Why the rep changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// First election in an org without a rep.
    Elected,
    /// The rep's connection closed (its process or host died).
    Crash,
    /// The rep stopped answering (dead link, no FIN) or went silent.
    SilentTimeout,
    /// The rep left gracefully and handed over.
    Handover,
    /// The rep handed over to a member with clearly more connections.
    BetterCandidate,
    /// Two reps met (after a partition healed) and one was chosen.
    PartitionHeal,
}

impl Reason {
    /// The name used in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Elected => "elected",
            Reason::Crash => "crash",
            Reason::SilentTimeout => "silent_timeout",
            Reason::Handover => "handover",
            Reason::BetterCandidate => "better_candidate",
            Reason::PartitionHeal => "partition_heal",
        }
    }
}

/// How a directly connected peer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The connection closed.
    Closed,
    /// The peer stopped answering pings.
    Unresponsive,
}

/// What a member tells the org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement<P> {
    /// State, or a goodbye.
    pub kind: AnnouncementKind,
    /// Random per process start, so a restarted member's sequence numbers are not taken as
    /// stale.
    pub incarnation: u64,
    /// Increases with every announcement of one incarnation.
    pub seq: u64,
    /// The sender's heartbeat interval: how soon its next announcement is due. Its silence is
    /// judged by it (in a large org the rep's heartbeat is longer than small members expect).
    pub heartbeat: Duration,
    /// The sender's score.
    pub score: u32,
    /// The sender's term.
    pub term: u64,
    /// The sender's rep (`None` only in term 0).
    pub rep: Option<P>,
    /// The ballot's score: the rep's score when the ballot was made (the highest any member
    /// has announced for this term and rep). Two ballots of one term are ordered by it first.
    pub ballot_score: u32,
    /// Why that rep got there.
    pub reason: Reason,
    /// Whether the sender reaches that rep itself: it is the rep, is connected to it, or heard
    /// it within the silence timeout. Members that do not reach the rep trust such members
    /// rather than failing over on their own.
    pub rep_reachable: bool,
    /// When the sender is the rep: the line of succession, best first. Otherwise empty.
    pub succession: Vec<P>,
}

/// The kind of an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncementKind {
    /// The periodic (or changed) state of a member.
    State,
    /// The member is leaving the org now.
    Leaving,
}

/// Whether a received announcement should be forwarded to the rest of the org.
///
/// Announcements are published to the sender's direct neighbours (gossipsub flood
/// publishing); a receiver forwards only what the org needs to hear from afar: the rep's own
/// announcements (the view and the line of succession; not those of a rival rep whose ballot
/// is lesser than the receiver's), goodbyes, and a ballot that the receiver itself has just
/// adopted (a new ballot must reach everyone). A member's routine heartbeat, or a newcomer's
/// first hello, stays with its neighbours and its rep, to whom every member keeps a
/// connection: broadcast to the whole org, the hellos of *n* members joining cost *n²*
/// signature checks (1,000 members: a million, ~45 CPU-seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Relay {
    /// Forward it.
    Yes,
    /// Keep it here.
    No,
}

/// What the election asks of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    /// Publish this on the org's control topic.
    Announce(Announcement<P>),
    /// The rep changed.
    RepChanged {
        /// The new rep.
        rep: P,
        /// The new term.
        term: u64,
        /// The new ballot's score (see [`Announcement::ballot_score`]).
        ballot_score: u32,
        /// The rep before, if any.
        previous: Option<P>,
        /// Why.
        reason: Reason,
    },
    /// A member was heard for the first time.
    MemberJoined(P),
    /// A member left or timed out.
    MemberLeft(P),
}

/// What an election knows of one member (see [`Election::members`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberView<'a, P> {
    /// The member.
    pub peer: &'a P,
    /// The score it last announced.
    pub score: u32,
    /// When its last announcement was heard.
    pub last_heard: Instant,
    /// When it was first heard: it has been a known member since (it is forgotten when it
    /// leaves or is lost, and starts over if heard again).
    pub known_since: Instant,
}

#[derive(Debug, Clone)]
struct Member<P> {
    score: u32,
    last_heard: Instant,
    /// When it was first heard (since it was last forgotten).
    known_since: Instant,
    /// The heartbeat interval it announced.
    heartbeat: Duration,
    /// The ballot this member last said it reaches the rep of.
    vouches_for: Option<(u64, P)>,
    incarnation: u64,
    seq: u64,
    lost: Option<(Instant, Loss)>,
}

/// One member's view of one org's election.
#[derive(Debug)]
pub struct Election<P> {
    me: P,
    config: Config,
    incarnation: u64,
    seq: u64,
    term: u64,
    rep: Option<P>,
    /// The score of the ballot `(term, rep)` (see [`Announcement::ballot_score`]).
    ballot_score: u32,
    reason: Reason,
    succession: Vec<P>,
    members: BTreeMap<P, Member<P>>,
    connected: BTreeSet<P>,
    /// Since when each connected peer has heard our announcements (its subscription to the
    /// org's control topic arrived over a connection that is still up).
    hears_us_since: BTreeMap<P, Instant>,
    joined_at: Instant,
    /// When the current rep was adopted: a rep never heard from directly is presumed alive
    /// for `silence_timeout` after that.
    rep_adopted_at: Instant,
    /// The connection to the current rep closed and was set aside to judge the rep by its
    /// silence (rule 4): first-hand evidence against the rep, which a member that merely hears
    /// nobody does not have (see `silence_is_evidence`). Cleared when the rep is heard or changes.
    rep_link_closed: bool,
    /// Within `settle_time` of joining or of the last rep change (see `heartbeat_settling`).
    settling: bool,
    next_heartbeat: Instant,
    /// Announce at the next opportunity, at most once per announcement gap.
    announce_soon: bool,
    /// Announce at this time, whatever the gap: our own new ballot (now), or one we inferred
    /// and its rep has not announced yet (after `announce_suppress`).
    announce_at: Option<Instant>,
    last_announced: Option<Instant>,
    /// Whether other members are known to exist (subscribed to the org) though none was heard.
    others_seen: bool,
    challenger: Option<(P, Instant)>,
    outputs: VecDeque<Output<P>>,
}

impl<P: Ord + Clone + Debug> Election<P> {
    /// A member `me` joining at `now`. `incarnation` must differ between process starts (pick it
    /// at random).
    pub fn new(me: P, config: Config, incarnation: u64, now: Instant) -> Self {
        Self {
            me,
            config,
            incarnation,
            seq: 0,
            term: 0,
            rep: None,
            ballot_score: 0,
            reason: Reason::Elected,
            succession: Vec::new(),
            members: BTreeMap::new(),
            connected: BTreeSet::new(),
            hears_us_since: BTreeMap::new(),
            joined_at: now,
            rep_adopted_at: now,
            rep_link_closed: false,
            settling: true,
            next_heartbeat: now,
            announce_soon: false,
            // A newcomer announces itself at once so that the rep answers with the view.
            announce_at: Some(now),
            last_announced: None,
            others_seen: false,
            challenger: None,
            outputs: VecDeque::new(),
        }
    }

    /// The current heartbeat interval: longer in larger orgs, and never shorter than the
    /// heartbeat the rep announced. The rep hears every member (each keeps a connection to
    /// it), so its interval reflects the org's size while a member that joined a moment ago
    /// knows only a few others: without that floor, the 1,000 newcomers of a large org would
    /// each announce every 300 ms until they had heard of most of the others, and every
    /// announcement is verified by every member.
    pub fn heartbeat(&self) -> Duration {
        let base = if self.settling {
            self.config.heartbeat_settling
        } else {
            self.config.heartbeat
        };
        let reps = self
            .rep
            .as_ref()
            .filter(|rep| **rep != self.me)
            .and_then(|rep| self.members.get(rep))
            .map_or(Duration::ZERO, |rep| rep.heartbeat);
        base.max(self.config.heartbeat_per_member * self.members.len() as u32)
            .max(reps)
    }

    /// When the first election is due if no rep is heard: after `join_grace`, or (four times
    /// that, at least the silence timeout) when other members are known to exist but none
    /// was heard yet. A newcomer to a
    /// large org is not in its gossip mesh for a moment; electing itself then (term 1, and
    /// perhaps a lower peer id than the rep's) would unseat the rep of a settled org.
    fn first_election_at(&self) -> Instant {
        if self.others_seen && self.members.is_empty() {
            self.joined_at + (self.config.join_grace * 4).max(self.config.silence_timeout)
        } else {
            self.joined_at + self.config.join_grace
        }
    }

    /// `peer` subscribed to the org's control topic: it is a member (though it may not have
    /// announced itself yet), and from now on it hears this member's announcements.
    ///
    /// If `peer` is our rep and we are connected to it, we announce at once: see the rule
    /// "a member whose link to its rep comes up" in `docs/election.md`. The moment is the
    /// subscription rather than the connection because an announcement published when the
    /// connection comes up reaches only the peers whose subscription is already known, and
    /// the rep's arrives over that connection a moment later.
    pub fn handle_subscribed(&mut self, peer: P, now: Instant) {
        if peer == self.me {
            return;
        }
        self.others_seen = true;
        if !self.connected.contains(&peer) {
            return;
        }
        self.hears_us_since.insert(peer.clone(), now);
        if self.rep.as_ref() == Some(&peer) {
            self.announce_at = Some(now);
            self.evaluate(now);
        }
    }

    /// The current silence timeout: at least four heartbeats.
    fn silence_timeout(&self) -> Duration {
        self.config.silence_timeout.max(self.heartbeat() * 4)
    }

    /// How long member `m` may be silent: also at least four of *its* heartbeats.
    fn silence_of(&self, m: &Member<P>) -> Duration {
        self.silence_timeout().max(m.heartbeat * 4)
    }

    /// The current term (0 before any rep is known).
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The current rep.
    pub fn rep(&self) -> Option<&P> {
        self.rep.as_ref()
    }

    /// Why the current rep got there.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// Whether this member is the rep.
    pub fn am_rep(&self) -> bool {
        self.rep.as_ref() == Some(&self.me)
    }

    /// The line of succession as known here: the rep first, then its announced successors.
    pub fn succession(&self) -> Vec<P> {
        self.rep
            .iter()
            .cloned()
            .chain(
                self.succession
                    .iter()
                    .filter(|p| Some(*p) != self.rep.as_ref())
                    .cloned(),
            )
            .collect()
    }

    /// This member's score: the members it is directly connected to.
    pub fn score(&self) -> u32 {
        // Both sets are ordered by peer id: one pass over each rather than a lookup per member
        // (a rep of 1,000 members computes its score at every announcement it hears).
        let mut members = self.members.keys().peekable();
        let mut score = 0;
        for peer in &self.connected {
            while members.next_if(|m| *m < peer).is_some() {}
            if members.peek() == Some(&peer) {
                score += 1;
            }
        }
        score
    }

    /// The known members other than this one.
    pub fn members(&self) -> impl Iterator<Item = MemberView<'_, P>> {
        self.members.iter().map(|(peer, m)| MemberView {
            peer,
            score: m.score,
            last_heard: m.last_heard,
            known_since: m.known_since,
        })
    }

    /// Whether `peer` is a known member.
    pub fn is_member(&self, peer: &P) -> bool {
        self.members.contains_key(peer)
    }

    /// The rep `peer` last said it reaches (its view), if it said so.
    pub fn follows(&self, peer: &P) -> Option<&P> {
        self.members
            .get(peer)
            .and_then(|m| m.vouches_for.as_ref())
            .map(|(_, rep)| rep)
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// When [`Election::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Instant {
        let mut next = self.next_heartbeat;
        if let Some(at) = self.announce_at {
            next = next.min(at);
        }
        if self.announce_soon {
            next = next.min(self.announce_gap_end());
        }
        if self.rep.is_none() {
            next = next.min(self.first_election_at());
        }
        // The rep's silence, when it counts (`silence_is_evidence`); not while its lost
        // connection is judged (below: a closed one after `announce_suppress`, an unresponsive
        // one at once).
        if let Some(rep) = self.rep.as_ref().filter(|r| **r != self.me)
            && !self.connected.contains(rep)
            && self.lost_unheard(rep).is_none()
        {
            let until = self.rep_presumed_alive_until(rep);
            if self.silence_is_evidence(rep, until) {
                next = next.min(until);
            }
        }
        if let Some((_, since)) = &self.challenger {
            next = next.min(*since + self.config.hold);
        }
        if let Some(closed_at) = self.rep.as_ref().and_then(|rep| self.rep_closed_at(rep)) {
            next = next.min(closed_at + self.config.announce_suppress);
        }
        next
    }

    /// A peer connection to `peer` was established.
    pub fn handle_connected(&mut self, peer: P, now: Instant) {
        if peer == self.me {
            return;
        }
        self.connected.insert(peer.clone());
        // The new score travels with the next heartbeat; the rep's line, if it changes,
        // is announced by `act_as_rep`. (A new link to the rep is announced over once the rep
        // can hear it: `handle_subscribed`.)
        if let Some(m) = self.members.get_mut(&peer) {
            m.lost = None;
        }
        self.evaluate(now);
    }

    /// The last connection to `peer` is gone.
    pub fn handle_disconnected(&mut self, peer: P, loss: Loss, now: Instant) {
        self.connected.remove(&peer);
        if loss == Loss::Closed {
            // (An unresponsive peer keeps its connection and subscription: if it answers
            // again, it still hears us.)
            self.hears_us_since.remove(&peer);
        }
        if let Some(m) = self.members.get_mut(&peer) {
            m.lost = Some((now, loss));
        }
        self.evaluate(now);
    }

    /// An announcement from `from` arrived. Returns whether it should travel on through the
    /// org (see [`Relay`]).
    pub fn handle_announcement(&mut self, from: P, ann: Announcement<P>, now: Instant) -> Relay {
        if from == self.me || (ann.term > 0 && ann.rep.is_none()) {
            return Relay::No;
        }
        // Goodbyes and the rep's own announcements travel on, except a rival rep's on a ballot
        // lesser than this member's: its members near it hear it from each other, and beyond
        // this member it would reach members that hold a greater ballot (they need not hear it)
        // or holders of its ballot whose neighbours hold a greater one (they move to that one
        // when they hear those neighbours). Members started together each elect someone, and
        // hundreds of such reps heartbeating to the whole org kept 1,000 members busy
        // checking signatures: agreement took 16-27 s (median 20.5 s, 5 trials); with this
        // rule, 12-18 s (median 15.4 s).
        // (Another ballot than the one held, and a lesser one: the same ballot with a lower
        // score is not a rival's.)
        let lesser_ballot = (ann.term, ann.rep.as_ref()) != (self.term, self.rep.as_ref())
            && self.cmp_with_held(ann.term, ann.ballot_score, ann.rep.as_ref()) == Ordering::Less;
        let for_everyone = ann.kind == AnnouncementKind::Leaving
            || (ann.rep.as_ref() == Some(&from) && !lesser_ballot);
        let before = (self.term, self.rep.clone());
        let announced = (ann.term, ann.rep.clone());
        if !self.apply_announcement(from, ann, lesser_ballot, now) {
            return Relay::No; // stale
        }
        let now_held = (self.term, self.rep.clone());
        // So does a ballot this member has just adopted from it: every member must hear it.
        let adopted = now_held == announced && now_held != before;
        if for_everyone || adopted {
            Relay::Yes
        } else {
            Relay::No
        }
    }

    /// Applies a fresh announcement; false if it was stale (reordered or duplicated).
    /// `lesser_ballot`: it states another ballot than the one held, and a lesser one.
    fn apply_announcement(
        &mut self,
        from: P,
        ann: Announcement<P>,
        lesser_ballot: bool,
        now: Instant,
    ) -> bool {
        match self.members.get_mut(&from) {
            Some(m) => {
                if m.incarnation == ann.incarnation && ann.seq <= m.seq {
                    return false;
                }
                m.incarnation = ann.incarnation;
                m.seq = ann.seq;
                m.score = ann.score;
                m.heartbeat = ann.heartbeat;
                m.last_heard = now;
                m.vouches_for = ann
                    .rep
                    .clone()
                    .filter(|_| ann.rep_reachable)
                    .map(|r| (ann.term, r));
            }
            None => {
                if ann.kind == AnnouncementKind::Leaving {
                    // Not ours to forget, but others may know it: a goodbye travels on.
                    return true;
                }
                self.members.insert(
                    from.clone(),
                    Member {
                        score: ann.score,
                        last_heard: now,
                        known_since: now,
                        heartbeat: ann.heartbeat,
                        vouches_for: ann
                            .rep
                            .clone()
                            .filter(|_| ann.rep_reachable)
                            .map(|r| (ann.term, r)),
                        incarnation: ann.incarnation,
                        seq: ann.seq,
                        lost: None,
                    },
                );
                self.outputs.push_back(Output::MemberJoined(from.clone()));
                // A newcomer should learn the view (and the succession) right away: from the
                // rep alone, not from every member.
                if self.am_rep() {
                    self.announce_soon = true;
                }
            }
        }
        if self.rep.as_ref() == Some(&from) {
            self.rep_link_closed = false;
        }
        let theirs = (ann.term, ann.rep.clone());
        let from_rep = ann.rep.as_ref() == Some(&from);
        let from_our_rep = from_rep && ann.term == self.term && self.rep.as_ref() == Some(&from);
        if from_our_rep && !self.am_rep() {
            // The rep announced our ballot itself: everyone heard it, no need to repeat it.
            self.announce_at = None;
        }
        if ann.kind == AnnouncementKind::Leaving {
            self.members.remove(&from);
            self.outputs.push_back(Output::MemberLeft(from.clone()));
            if from_our_rep {
                // Its goodbye carries the line of succession to hand over along.
                self.succession = ann.succession.clone();
            }
            if self.rep.as_ref() == Some(&from) && ann.term >= self.term {
                self.failover(Reason::Handover, now);
            }
            self.evaluate(now);
            return true;
        }
        if let Some(their_rep) = ann.rep {
            if ann.term > self.term {
                // Give a rep learnt second-hand the benefit of the doubt until its silence
                // says otherwise.
                if let Some(m) = self.members.get_mut(&their_rep)
                    && m.lost.is_none()
                {
                    m.last_heard = m.last_heard.max(now);
                }
                self.adopt(
                    ann.term,
                    their_rep,
                    ann.ballot_score,
                    ann.reason,
                    Inferred::No,
                    now,
                );
            } else if ann.term == self.term && self.rep.as_ref() == Some(&their_rep) {
                // The same ballot, seen with a higher score elsewhere: the greatest one is kept,
                // so that all members order it alike against a rival.
                self.ballot_score = self.ballot_score.max(ann.ballot_score);
            } else if ann.term == self.term
                && self.cmp_with_held(ann.term, ann.ballot_score, Some(&their_rep))
                    == Ordering::Greater
                && self.presumed_alive(&their_rep, now)
            {
                // Two reps for one term: only possible when groups elected apart (a partition,
                // or members that started together). Views are ordered as ballots (term, then
                // the ballot's score, then the lower peer id), and every member moves to the
                // greatest ballot it hears: a max-register, so all converge without inflating
                // the term, and on the better connected of the two reps. The holder of the
                // lesser ballot adopts this one when it hears it.
                self.adopt(
                    self.term,
                    their_rep,
                    ann.ballot_score,
                    Reason::PartitionHeal,
                    Inferred::No,
                    now,
                );
            }
        }
        // The line of succession is taken from the rep of the ballot held, and only from it:
        // the line of a rival claimant of the same term, such as a member that elected itself,
        // must not replace it.
        let holds_theirs = theirs == (self.term, self.rep.clone());
        if from_rep && holds_theirs {
            self.succession = ann.succession;
        }
        // A member still on another ballot than ours (none, or a lesser one: a greater one we
        // adopted above) has missed the announcement of ours (its link was busy or new). The
        // rep answers any such member, and so does a member that hears one of its own
        // neighbours: with its own announcement, at most once per gap. Otherwise, in a large
        // org whose members announce every ~100 s, such a member stayed on its own ballot that
        // long (measured at 1,000 members: 98 s before the rep answered; and a newcomer linked
        // to one busy member only, which no forwarded ballot reached, elected itself and
        // stayed so for minutes).
        // Only a *lesser* ballot is answered by a neighbour (one greater than ours that we did
        // not adopt, its rep presumed dead, would make the two answer each other), and only
        // by a member that has held its ballot for `settle_time`: while ballots are still
        // spreading (members started together), every member hears lesser ones all the time,
        // and answering them all kept a swarm of 1,000 busy with announcements.
        let a_neighbour = self.connected.contains(&from);
        let settled_neighbour = a_neighbour && lesser_ballot && !self.settling;
        if !holds_theirs && (self.am_rep() || settled_neighbour) {
            self.announce_soon = true;
        }
        self.evaluate(now);
        true
    }

    /// Time passed; call at [`Election::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.evaluate(now);
    }

    /// This member leaves the org: returns the goodbye to publish. A rep's goodbye carries its
    /// line of succession, so the org hands over without waiting for a timeout.
    pub fn leave(&mut self, now: Instant) -> Announcement<P> {
        self.announcement(AnnouncementKind::Leaving, now)
    }

    /// The next announcement of this member: its view, and the line of succession if it is
    /// the rep.
    fn announcement(&mut self, kind: AnnouncementKind, now: Instant) -> Announcement<P> {
        self.seq += 1;
        Announcement {
            kind,
            incarnation: self.incarnation,
            seq: self.seq,
            heartbeat: self.heartbeat(),
            score: self.score(),
            term: self.term,
            rep: self.rep.clone(),
            ballot_score: self.ballot_score,
            reason: self.reason,
            rep_reachable: self.reaches_rep(now),
            succession: if self.am_rep() {
                self.succession.clone()
            } else {
                Vec::new()
            },
        }
    }

    fn member_alive(&self, peer: &P, now: Instant) -> Option<bool> {
        if *peer == self.me || self.connected.contains(peer) {
            return Some(true);
        }
        let m = self.members.get(peer)?;
        if self.lost_unheard(peer).is_some() {
            return Some(false);
        }
        Some(now.saturating_duration_since(m.last_heard) < self.silence_of(m))
    }

    /// How `peer` was lost, if its connection was lost, it has not been heard since, and it is
    /// not connected again.
    fn lost_unheard(&self, peer: &P) -> Option<(Instant, Loss)> {
        let m = self.members.get(peer)?;
        let (at, loss) = m.lost?;
        (m.last_heard <= at && !self.connected.contains(peer)).then_some((at, loss))
    }

    /// Whether this member reaches the rep itself (for `rep_reachable`).
    fn reaches_rep(&self, now: Instant) -> bool {
        self.rep
            .as_ref()
            .is_some_and(|rep| self.member_alive(rep, now) == Some(true))
    }

    /// Whether the current rep (not this member) is alive:
    /// - a connection to it that closed since it was last heard: no, at once (a crash or a dead
    ///   link; every member connected to it sees the same and fails over the same way);
    /// - connected, or heard recently: yes;
    /// - otherwise, yes while some member heard recently says it reaches this rep in this term,
    ///   or (a rep never heard of) for a silence timeout after adopting it.
    fn rep_alive(&self, rep: &P, now: Instant) -> bool {
        if self.lost_unheard(rep).is_some() {
            return false;
        }
        *rep == self.me || self.connected.contains(rep) || now < self.rep_presumed_alive_until(rep)
    }

    /// Until when the rep (not connected, not lost) is presumed alive (`rep_alive`): its own
    /// silence timeout, or that of the last member that vouched for it in this term, whichever
    /// ends later. The verdict and the election's deadline (`poll_timeout`) both come from
    /// here: a deadline taken from the rep alone would lie in the past for as long as members
    /// vouch for it, and the caller, woken at every past deadline, would spin.
    fn rep_presumed_alive_until(&self, rep: &P) -> Instant {
        let own = match self.members.get(rep) {
            Some(m) => m.last_heard + self.silence_of(m),
            None => self.rep_adopted_at + self.silence_timeout(),
        };
        let ballot = (self.term, rep.clone());
        self.members
            .iter()
            .filter(|(p, m)| *p != rep && m.vouches_for.as_ref() == Some(&ballot))
            .map(|(_, m)| m.last_heard + self.silence_of(m))
            .fold(own, Instant::max)
    }

    /// Whether not hearing the rep says anything against it (rule 5(b)). It does when this member
    /// lost its own link to the rep (pongs stopped, or the connection closed), when it is
    /// connected to no one (alone, it is the whole org as far as it can tell), or when at the
    /// moment the rep's presumption of life ended (`rep_presumed_alive_until`) it still heard
    /// some member it is connected to: its hearing worked, and the rep was not in it. A member
    /// whose connected members had all gone quiet by then has lost its hearing, not its rep: a
    /// stalled link (measured at 1,000 members: a member's only link delivered nothing for
    /// ~50 s). Failing over then would promote a successor at a higher term, and that ballot
    /// would move the whole org the moment the link recovered. Judged at that moment (`until`,
    /// the caller's `rep_presumed_alive_until`), not now, so that the answer changes only with
    /// input, never with time.
    fn silence_is_evidence(&self, rep: &P, until: Instant) -> bool {
        if self.rep_link_closed || self.lost_unheard(rep).is_some() || self.connected.is_empty() {
            return true;
        }
        self.connected
            .iter()
            .filter(|p| *p != rep)
            .filter_map(|p| self.members.get(p))
            .any(|m| m.last_heard + self.silence_of(m) > until)
    }

    /// Alive as far as this member can tell: connected, or heard recently and not lost since.
    fn alive(&self, peer: &P, now: Instant) -> bool {
        self.member_alive(peer, now).unwrap_or(false)
    }

    /// Like `alive`, but a peer never heard of is presumed alive: it is in the rep's line of
    /// succession, so the rep heard it recently. Failing over to it keeps all members in
    /// agreement, where skipping it would split them by what each happens to have heard.
    fn presumed_alive(&self, peer: &P, now: Instant) -> bool {
        self.member_alive(peer, now).unwrap_or(true)
    }

    /// The best `limit` live members (this one included), best first: most connections, then
    /// lowest peer id. Only that head is sorted: a rep ranks its members at every announcement
    /// it hears, and sorting all of them (a clone of every peer id, ten comparisons each) took
    /// 4 % of the CPU of 1,000 in-process members starting together, most of it the rep's.
    fn ranked_alive(&self, now: Instant, limit: usize) -> Vec<P> {
        let mut alive: Vec<(Reverse<u32>, &P)> = self
            .members
            .iter()
            .filter(|(p, _)| self.alive(p, now))
            .map(|(p, m)| (Reverse(m.score), p))
            .chain(std::iter::once((Reverse(self.score()), &self.me)))
            .collect();
        if limit < alive.len() {
            alive.select_nth_unstable(limit);
            alive.truncate(limit);
        }
        alive.sort_unstable();
        alive.into_iter().map(|(_, p)| p.clone()).collect()
    }

    fn adopt(
        &mut self,
        term: u64,
        rep: P,
        ballot_score: u32,
        reason: Reason,
        inferred: Inferred,
        now: Instant,
    ) {
        if term == self.term && self.rep.as_ref() == Some(&rep) {
            self.ballot_score = self.ballot_score.max(ballot_score);
            return;
        }
        self.ballot_score = ballot_score;
        let was_rep = self.am_rep();
        self.rep_adopted_at = now;
        self.rep_link_closed = false;
        self.settling = true;
        let previous = self.rep.replace(rep.clone());
        self.term = term;
        self.reason = reason;
        self.challenger = None;
        // Keep the old line minus the new rep until the new rep announces its own: a second
        // failure right away still has a successor.
        self.succession.retain(|p| *p != rep);
        if rep == self.me || (was_rep && inferred == Inferred::Yes) {
            // A new rep takes charge at once; a rep handing over is the only one who knows.
            self.announce_at = Some(now);
        } else if inferred == Inferred::Yes {
            // Every member connected to the old rep inferred the same ballot; the new rep
            // normally announces it within a round trip, and then nobody else needs to.
            let at = now + self.config.announce_suppress;
            self.announce_at = Some(self.announce_at.map_or(at, |t| t.min(at)));
        } else {
            // Heard in a broadcast announcement: everyone else heard it too.
            self.announce_at = None;
            // But the new rep may never have heard of this member: a heartbeat reaches
            // neighbours only, and one linked to the rep before it was rep is not introduced
            // by a new link (`handle_subscribed`). It introduces itself, unless it has
            // announced since the rep could hear it. (Measured at 1,000 in-process members:
            // all held the rep's ballot and the rep lacked one member for ~100 s, its
            // heartbeat.)
            let unheard = self.hears_us_since.get(&rep).is_some_and(|since| {
                self.last_announced
                    .is_none_or(|announced| announced < *since)
            });
            if unheard {
                self.announce_soon = true;
            }
        }
        self.outputs.push_back(Output::RepChanged {
            rep,
            term,
            ballot_score,
            previous,
            reason,
        });
    }

    /// Who replaces the current rep: the first live member of its line of succession (a
    /// member never heard of is presumed alive: the rep vouched for it), else the best live
    /// member.
    fn successor(&self, now: Instant) -> P {
        let lost = self.rep.as_ref();
        self.succession
            .iter()
            .find(|p| Some(*p) != lost && self.presumed_alive(p, now))
            .cloned()
            .or_else(|| {
                self.ranked_alive(now, 2)
                    .into_iter()
                    .find(|p| Some(p) != lost)
            })
            .unwrap_or_else(|| self.me.clone())
    }

    fn failover(&mut self, reason: Reason, now: Instant) {
        let next = self.successor(now);
        let score = self.score_of(&next);
        self.adopt(self.term + 1, next, score, reason, Inferred::Yes, now);
    }

    /// The score of `peer` as known here (its last announced one; 0 if never heard).
    fn score_of(&self, peer: &P) -> u32 {
        if *peer == self.me {
            self.score()
        } else {
            self.members.get(peer).map_or(0, |m| m.score)
        }
    }

    /// When our connection to the rep closed (and it was not heard since), if it did.
    fn rep_closed_at(&self, rep: &P) -> Option<Instant> {
        match self.lost_unheard(rep)? {
            (at, Loss::Closed) => Some(at),
            _ => None,
        }
    }

    /// The rep's connection closed. The successor promotes itself at once; any other member
    /// waits up to `announce_suppress` for the successor's announcement of the new ballot
    /// rather than promoting it itself: when the rep crashed, the successor saw its connection
    /// close too and announces within a round trip; when only this member's link broke, the
    /// successor stays silent, and promoting it here would move the whole org (the greater
    /// ballot wins everywhere). After the wait, the closed connection is set aside and the rep
    /// is judged like one that is not connected: by its silence and by the members that vouch
    /// for it (the node redials it meanwhile).
    fn on_rep_connection_closed(&mut self, rep: &P, closed_at: Instant, now: Instant) {
        if self.successor(now) == self.me {
            self.failover(Reason::Crash, now);
            return;
        }
        if now < closed_at + self.config.announce_suppress {
            return; // the successor's announcement is due
        }
        if let Some(m) = self.members.get_mut(rep) {
            m.lost = None;
        }
        self.rep_link_closed = true;
        if !self.rep_alive(rep, now) {
            self.failover(Reason::SilentTimeout, now);
        }
    }

    fn evaluate(&mut self, now: Instant) {
        self.settling = now.saturating_duration_since(self.joined_at.max(self.rep_adopted_at))
            < self.config.settle_time;
        self.expire_members(now);
        match self.rep.clone() {
            None => {
                if now >= self.first_election_at() {
                    let best = self.ranked_alive(now, 1).swap_remove(0);
                    let score = self.score_of(&best);
                    self.adopt(
                        self.term + 1,
                        best,
                        score,
                        Reason::Elected,
                        Inferred::Yes,
                        now,
                    );
                    // Elected itself: its first announcement carries the line of succession.
                    // (Otherwise the line waited for the next input, a heartbeat away: in a
                    // large org, members would fail over with no successor known.)
                    if self.am_rep() {
                        self.act_as_rep(now);
                    }
                }
            }
            Some(rep) if rep == self.me => self.act_as_rep(now),
            Some(rep) => {
                if let Some(closed_at) = self.rep_closed_at(&rep) {
                    self.on_rep_connection_closed(&rep, closed_at, now);
                } else if !self.rep_alive(&rep, now)
                    && self.silence_is_evidence(&rep, self.rep_presumed_alive_until(&rep))
                {
                    self.failover(Reason::SilentTimeout, now);
                }
                if self.am_rep() {
                    self.act_as_rep(now);
                }
            }
        }
        let due = now >= self.next_heartbeat
            || self.announce_at.is_some_and(|at| now >= at)
            || (self.announce_soon && now >= self.announce_gap_end());
        if due {
            self.announce(now);
        }
    }

    fn act_as_rep(&mut self, now: Instant) {
        let mut line = self.ranked_alive(now, self.config.max_succession + 1);
        line.retain(|p| *p != self.me);
        line.truncate(self.config.max_succession);
        if line != self.succession {
            self.succession = line;
            self.announce_soon = true;
        }
        // Hysteresis: hand over only to a clearly better member, and only once its lead has
        // lasted `hold`, so one extra connection for a moment changes nothing.
        let my_score = self.score();
        let Some(best) = self.succession.first().cloned() else {
            self.challenger = None;
            return;
        };
        let best_score = self.score_of(&best);
        // The margin grows with the rep's score (an eighth of it): in a large org, two
        // well-connected members differ by a few links from moment to moment, and trading the
        // rep between them would make every member dial a new rep each time.
        let margin = self.config.margin.max(my_score / 8);
        if best_score < my_score.saturating_add(margin) {
            self.challenger = None;
            return;
        }
        match &self.challenger {
            Some((c, since)) if *c == best => {
                if now >= *since + self.config.hold {
                    self.adopt(
                        self.term + 1,
                        best,
                        best_score,
                        Reason::BetterCandidate,
                        Inferred::Yes,
                        now,
                    );
                }
            }
            _ => self.challenger = Some((best, now)),
        }
    }

    fn expire_members(&mut self, now: Instant) {
        let timeout = self.config.member_timeout.max(self.heartbeat() * 8);
        let expired: Vec<P> = self
            .members
            .iter()
            .filter(|(p, m)| {
                !self.connected.contains(*p)
                    && now.saturating_duration_since(m.last_heard) >= timeout.max(m.heartbeat * 8)
            })
            .map(|(p, _)| p.clone())
            .collect();
        for p in expired {
            self.members.remove(&p);
            self.outputs.push_back(Output::MemberLeft(p));
        }
    }

    /// `interval` scaled by a factor in [0.75, 1.25) drawn from this member's incarnation and
    /// sequence number. Members that joined together would otherwise keep announcing together:
    /// in a large org a whole heartbeat's worth of announcements (one per member) would arrive
    /// in one burst instead of spread over the interval. Deterministic, so tests replay.
    fn jittered(&self, interval: Duration) -> Duration {
        // splitmix64 of (incarnation, seq).
        let mut z = self
            .incarnation
            .wrapping_add(self.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let per_mille = 750 + (z % 500) as u32;
        interval * per_mille / 1000
    }

    /// How the ballot `(term, ballot_score, rep)` compares with the one held, by rule 2's
    /// order: term, then ballot score, then the lower rep peer id; no ballot is least.
    fn cmp_with_held(&self, term: u64, ballot_score: u32, rep: Option<&P>) -> Ordering {
        let theirs = rep.map(|r| (term, ballot_score, Reverse(r)));
        let mine = self
            .rep
            .as_ref()
            .map(|r| (self.term, self.ballot_score, Reverse(r)));
        theirs.cmp(&mine)
    }

    fn announce_gap_end(&self) -> Instant {
        let gap = self.config.min_announce_gap
            + self.config.announce_gap_per_member * self.members.len() as u32;
        self.last_announced.map_or(self.joined_at, |t| t + gap)
    }

    fn announce(&mut self, now: Instant) {
        self.announce_soon = false;
        self.announce_at = None;
        self.last_announced = Some(now);
        self.next_heartbeat = now + self.jittered(self.heartbeat());
        let announcement = self.announcement(AnnouncementKind::State, now);
        self.outputs.push_back(Output::Announce(announcement));
    }
}

/// How a member came to a ballot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inferred {
    /// It worked the ballot out itself (failover, first election, handing over).
    Yes,
    /// It heard the ballot in an announcement, which every member received too.
    No,
}

#[cfg(test)]
mod tests;
