//! Finding connections whose gossipsub send path is wedged for good.
//!
//! A connection's gossipsub send path can stop draining forever while the connection itself
//! stays healthy (pings pass): gossipsub's connection handler counts every stream it opens or
//! accepts and, at the fifth, disables itself for the rest of the connection's life, and the
//! peer's queue (shared by the peer's connections) is then never drained again. Gossipsub
//! reports the peer as slow at every heartbeat, and the peer stops receiving the org's
//! messages from this node. Measured in borg-bench org-throughput: after two seconds at twice
//! the capacity, a receiver delivered 0 of 1,000 later messages at 500/s, its links otherwise
//! up. The streams were being reopened because receivers dropped streams carrying control
//! messages larger than they accept; nodes no longer send such messages (see
//! `MAX_GOSSIP_IDS_PER_HEARTBEAT`), and this repair stays for any other way a handler ends up
//! disabled (a stream that fails five times on a long-lived connection).
//!
//! A peer that is merely slow drains its queue within a few heartbeats and stops being
//! reported; a wedged one is reported at every heartbeat. [`SlowLinks`] tells them apart, and
//! the node replaces the wedged connection (dials a fresh one, then closes the old), which
//! the election never sees as a loss because the peer stays connected throughout.
//!
//! Pure: the caller passes the time.

use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

/// How long a peer must be reported slow, with no quiet gap, to count as wedged. A LAN link
/// drains the largest queue gossipsub keeps within a second or two; replacing a connection
/// that was only slow costs a new connection and nothing else.
pub const WEDGED_AFTER: Duration = Duration::from_secs(5);

/// A gap between two slow-peer reports longer than this ends the streak: the queue drained.
/// Gossipsub reports at most once per heartbeat (700 ms); an idle org still sends an
/// announcement every heartbeat or two, so a wedged peer is reported at least every ~2 s.
pub const QUIET_GAP: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
struct Streak {
    since: Instant,
    last: Instant,
}

/// Streaks of slow-peer reports, per peer.
#[derive(Debug)]
pub struct SlowLinks<P> {
    streaks: HashMap<P, Streak>,
}

impl<P: Eq + Hash + Clone> Default for SlowLinks<P> {
    fn default() -> Self {
        Self {
            streaks: HashMap::new(),
        }
    }
}

impl<P: Eq + Hash + Clone> SlowLinks<P> {
    /// Records that gossipsub reported `peer` slow at `now`; returns whether its send path
    /// counts as wedged (reported without a quiet gap for `WEDGED_AFTER`). Once reported
    /// wedged, the peer's streak starts over, so a repair is asked for at most once per
    /// `WEDGED_AFTER`.
    pub fn report(&mut self, peer: &P, now: Instant) -> bool {
        let streak = self.streaks.entry(peer.clone()).or_insert(Streak {
            since: now,
            last: now,
        });
        if now.saturating_duration_since(streak.last) > QUIET_GAP {
            streak.since = now;
        }
        streak.last = now;
        if now.saturating_duration_since(streak.since) >= WEDGED_AFTER {
            self.streaks.remove(peer);
            return true;
        }
        false
    }

    /// Forgets `peer` (disconnected).
    pub fn forget(&mut self, peer: &P) {
        self.streaks.remove(peer);
    }

    /// Drops the streaks that ended (no report for `QUIET_GAP`), so the table stays as small as
    /// the set of peers slow right now.
    pub fn expire(&mut self, now: Instant) {
        self.streaks
            .retain(|_, s| now.saturating_duration_since(s.last) <= QUIET_GAP);
    }

    /// Peers with a streak in progress.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.streaks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(start: Instant, step_ms: u64, n: u64) -> impl Iterator<Item = Instant> {
        (0..n).map(move |i| start + Duration::from_millis(i * step_ms))
    }

    #[test]
    fn reported_at_every_heartbeat_for_five_seconds_is_wedged_once() {
        let mut links = SlowLinks::default();
        let t0 = Instant::now();
        let verdicts: Vec<bool> = every(t0, 700, 15).map(|t| links.report(&1, t)).collect();
        // 700 ms heartbeats: the report at 5.6 s (the 9th) is the first >= 5 s.
        assert_eq!(verdicts.iter().position(|w| *w), Some(8));
        // Then the streak starts over: the next verdict comes five seconds later, not at once.
        assert_eq!(verdicts.iter().filter(|w| **w).count(), 1);
    }

    #[test]
    fn a_slow_peer_that_drains_is_never_wedged() {
        let mut links = SlowLinks::default();
        let t0 = Instant::now();
        // Bursts of 4 s of drops with 4 s quiet between them, for a minute.
        let mut wedged = false;
        for burst in 0..7 {
            let start = t0 + Duration::from_secs(burst * 8);
            for t in every(start, 700, 6) {
                wedged |= links.report(&1, t);
            }
        }
        assert!(!wedged);
    }

    #[test]
    fn peers_are_judged_apart_and_expire() {
        let mut links = SlowLinks::default();
        let t0 = Instant::now();
        for t in every(t0, 1_000, 5) {
            assert!(!links.report(&1, t));
        }
        assert!(!links.report(&2, t0 + Duration::from_secs(4)));
        assert_eq!(links.len(), 2);
        // Peer 1's streak reaches five seconds; peer 2's is one second old.
        assert!(links.report(&1, t0 + Duration::from_secs(5)));
        assert!(!links.report(&2, t0 + Duration::from_secs(5)));
        links.expire(t0 + Duration::from_secs(20));
        assert_eq!(links.len(), 0);
        links.report(&3, t0);
        links.forget(&3);
        assert_eq!(links.len(), 0);
    }
}
