//! Finding connections whose gossipsub send path is wedged for good.
//!
//! A peer's gossipsub send path can stop draining while its connection stays up: gossipsub's
//! connection handler disables itself for the rest of the connection's life at the fifth
//! stream it opens or accepts, and a connection whose streams make no progress leaves the
//! messages waiting too (seen among 1,000 in-process members: a member's only link, to the
//! peer everyone bootstrapped from, brought it nothing for about 50 s while the member's own
//! announcements went on reaching the org).
//! The peer then stops receiving the org's messages from this node.
//!
//! The verdict is taken from the queue itself (vendored gossipsub,
//! `send_queue_stalled_since`): messages wait in the peer's queue and none has been taken for
//! `WEDGED_AFTER`. That holds however rarely messages are offered to the peer. The verdict it
//! replaces asked for slow-peer reports (drops) at least every 3 s for 5 s: to a member of an
//! org of 1,000, whose messages from the rep come seconds apart, the reports never formed such
//! a streak, and the member stayed cut off; meanwhile reports from queues that were merely
//! slow replaced about 2,400 connections per run. A queue that drains at all, however slowly,
//! is never judged wedged.
//!
//! The node replaces a wedged connection (dials a fresh one, then closes the old), which the
//! election never sees as a loss because the peer stays connected throughout.
//!
//! Pure: the caller passes the time.

use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

/// How long messages may wait in a peer's queue with none taken before its send path counts as
/// wedged. Longer than a stream negotiation may take (libp2p gives up on one after 10 s): a
/// queue that waits for gossipsub's stream to a busy peer gets the stream, or a failure and a
/// new attempt, within that time. With 5 s, 1,000 in-process nodes on two cores replaced
/// 13,000 connections in a run (each replacement one more handshake for an overloaded machine);
/// with 12 s, about ten.
pub const WEDGED_AFTER: Duration = Duration::from_secs(12);

/// How far apart two checks that find the same stall must be. A process that was starved (a
/// suspended VM, an overloaded machine) finds every non-empty queue stalled since before the
/// starvation when it runs again; its connections drain it as soon as they run too, so a
/// stall counts only once it has outlived a check made while the process ran.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// A stall seen by a check.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Since when the queue has been stalled, as gossipsub said.
    stalled_since: Instant,
    /// When a check first found this stall.
    first_checked: Instant,
}

/// The stalls being watched, and when each peer's connection was last replaced.
#[derive(Debug)]
pub struct Wedges<P> {
    seen: HashMap<P, Seen>,
    replaced: HashMap<P, Instant>,
}

impl<P: Eq + Hash + Clone> Default for Wedges<P> {
    fn default() -> Self {
        Self {
            seen: HashMap::new(),
            replaced: HashMap::new(),
        }
    }
}

impl<P: Eq + Hash + Clone> Wedges<P> {
    /// Checks `peer`, whose queue has been stalled since `stalled_since` (`None`: empty or
    /// draining). Returns whether its connection should be replaced now: the stall has lasted
    /// `WEDGED_AFTER`, an earlier check at least `CONFIRM_AFTER` ago found the same stall, and
    /// the peer's connection was not replaced within the last `WEDGED_AFTER` (a replacement
    /// that did not help is tried again, not at every check).
    pub fn check(&mut self, peer: &P, stalled_since: Option<Instant>, now: Instant) -> bool {
        let Some(stalled_since) = stalled_since else {
            self.seen.remove(peer);
            return false;
        };
        let seen = self.seen.entry(peer.clone()).or_insert(Seen {
            stalled_since,
            first_checked: now,
        });
        if seen.stalled_since != stalled_since {
            // Something left the queue since the last check: a new stall, if any.
            *seen = Seen {
                stalled_since,
                first_checked: now,
            };
        }
        let wedged = now.saturating_duration_since(stalled_since) >= WEDGED_AFTER
            && now.saturating_duration_since(seen.first_checked) >= CONFIRM_AFTER;
        let replaced_lately = self
            .replaced
            .get(peer)
            .is_some_and(|at| now.saturating_duration_since(*at) < WEDGED_AFTER);
        if wedged && !replaced_lately {
            self.replaced.insert(peer.clone(), now);
            return true;
        }
        false
    }

    /// Forgets `peer` (disconnected).
    pub fn forget(&mut self, peer: &P) {
        self.seen.remove(peer);
        self.replaced.remove(peer);
    }

    /// Drops replacements older than `WEDGED_AFTER`, so the table stays as small as the set of
    /// peers stalled right now.
    pub fn expire(&mut self, now: Instant) {
        self.replaced
            .retain(|_, at| now.saturating_duration_since(*at) < WEDGED_AFTER);
    }

    /// Peers being watched or lately replaced.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len() + self.replaced.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_queue_stalled_for_wedged_after_is_wedged_once_per_wedged_after() {
        let mut wedges = Wedges::default();
        let t0 = Instant::now();
        let wedged_at: Vec<u64> = (0..=30)
            .filter(|s| wedges.check(&1, Some(t0), t0 + secs(*s as f64)))
            .collect();
        // At 12 s, and again at 24 s if the replacement did not help.
        assert_eq!(wedged_at, vec![12, 24]);
    }

    #[test]
    fn a_queue_that_drains_at_all_is_never_wedged() {
        let mut wedges = Wedges::default();
        let t0 = Instant::now();
        // Something leaves the queue every 10 s, for two minutes, with messages always waiting.
        for s in 0..120 {
            let stalled_since = t0 + secs((s / 10 * 10) as f64);
            assert!(!wedges.check(&1, Some(stalled_since), t0 + secs(s as f64)));
        }
        // An empty queue is not stalled.
        assert!(!wedges.check(&1, None, t0 + secs(200.0)));
    }

    #[test]
    fn a_stall_first_seen_after_starvation_waits_for_a_second_look() {
        let mut wedges = Wedges::default();
        let t0 = Instant::now();
        // The process ran nothing for 20 s; the first check after it sees a 20 s stall.
        assert!(!wedges.check(&1, Some(t0), t0 + secs(20.0)));
        // The connection ran meanwhile and took a message: a new, short stall.
        assert!(!wedges.check(&1, Some(t0 + secs(20.2)), t0 + secs(21.0)));
        // Had it not, the second look a second later confirms the stall.
        let mut other = Wedges::default();
        assert!(!other.check(&2, Some(t0), t0 + secs(20.0)));
        assert!(other.check(&2, Some(t0), t0 + secs(21.0)));
    }

    #[test]
    fn peers_are_judged_apart_and_forgotten() {
        let mut wedges = Wedges::default();
        let t0 = Instant::now();
        assert!(!wedges.check(&1, Some(t0), t0));
        assert!(!wedges.check(&2, Some(t0 + secs(3.0)), t0 + secs(3.0)));
        assert!(wedges.check(&1, Some(t0), t0 + secs(13.0)));
        assert!(!wedges.check(&2, Some(t0 + secs(3.0)), t0 + secs(13.0)));
        assert_eq!(wedges.len(), 3);
        wedges.forget(&1);
        wedges.forget(&2);
        assert_eq!(wedges.len(), 0);
        wedges.check(&3, Some(t0), t0 + secs(12.0));
        wedges.check(&3, Some(t0), t0 + secs(13.0));
        wedges.check(&3, None, t0 + secs(14.0));
        wedges.expire(t0 + secs(40.0));
        assert_eq!(wedges.len(), 0);
    }
}
