//! Validation of gossipsub messages on org topics, and the bounded set of seen message ids.
//!
//! A message is delivered only if all of these hold (the rules of `docs/wire.md`):
//! - its topic is the message topic of an org this node has joined;
//! - its data decodes as an envelope whose author signature verifies;
//! - the org it claims matches the topic: the envelope's org, or for relayed copies the org of
//!   the last relay hop;
//! - every relay hop is signed by its relayer, over the path before it (checked by the
//!   decoder), so nobody can inject a message under someone else's name or relay claim;
//! - its id has not been delivered in this org before.

use std::{
    collections::{HashSet, VecDeque},
    hash::Hash,
};

use borg_proto::{Envelope, MessageId, OrgName, Unverified, envelope::DecodeError, verify_batch};
use libp2p::gossipsub;

/// How many message ids are remembered for deduplication. At 1,000 messages per second that
/// is over a minute, longer than gossipsub's own duplicate window.
const SEEN_CAPACITY: usize = 65_536;

/// Remembers the most recent keys, forgetting the oldest beyond a fixed capacity.
#[derive(Debug)]
pub struct Seen<K> {
    set: HashSet<K>,
    order: VecDeque<K>,
}

impl<K> Default for Seen<K> {
    fn default() -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }
}

/// Message ids seen per org: a message may rightly appear once in each org it is relayed to.
pub type SeenIds = Seen<(OrgName, MessageId)>;

impl<K: Hash + Eq + Clone> Seen<K> {
    /// Whether `key` is recorded.
    pub fn contains(&self, key: &K) -> bool {
        self.set.contains(key)
    }

    /// Records `key`; `false` if it was already recorded.
    pub fn insert(&mut self, key: K) -> bool {
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > SEEN_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// What to do with a received message.
#[derive(Debug)]
pub enum Verdict {
    /// Valid and new: deliver it.
    Deliver(Box<Envelope>),
    /// Valid, already delivered.
    Duplicate,
    /// For an org this node is not in (any more).
    NotJoined,
    /// Invalid: reject it and penalise the peer that sent it.
    Invalid(String),
}

/// A message on the topic of a joined org that passed every check but its signatures.
#[derive(Debug)]
pub struct Screened {
    org: OrgName,
    envelope: Unverified,
}

/// The first step of [`check_message`]: every rule but the signatures and deduplication,
/// which are left to [`conclude`] so that the signatures of several messages can be checked
/// together. `Err` is the verdict on a message that needs no signature check to judge.
pub fn screen_message(
    message: &gossipsub::Message,
    joined: impl Fn(&OrgName) -> bool,
) -> Result<Screened, Verdict> {
    let Some(topic_org) = OrgName::from_message_topic(message.topic.as_str()) else {
        return Err(Verdict::Invalid(format!("unknown topic {}", message.topic)));
    };
    if !joined(&topic_org) {
        return Err(Verdict::NotJoined);
    }
    let envelope = Envelope::parse(&message.data).map_err(|e| Verdict::Invalid(e.to_string()))?;
    let claimed_org = envelope.claimed_org();
    if *claimed_org != topic_org {
        return Err(Verdict::Invalid(format!(
            "envelope for org {claimed_org} on the topic of org {topic_org}"
        )));
    }
    Ok(Screened {
        org: topic_org,
        envelope,
    })
}

/// The second step: checks the signatures of `screened` (in batches) and deduplicates, in
/// order. The verdicts are those [`check_message`] gives each message in turn.
pub fn conclude(screened: Vec<Screened>, seen: &mut SeenIds) -> Vec<Verdict> {
    let (orgs, envelopes): (Vec<OrgName>, Vec<Unverified>) =
        screened.into_iter().map(|s| (s.org, s.envelope)).unzip();
    orgs.into_iter()
        .zip(verify_batch(envelopes))
        .map(|(org, verified)| judge(org, verified, seen))
        .collect()
}

fn judge(org: OrgName, verified: Result<Envelope, DecodeError>, seen: &mut SeenIds) -> Verdict {
    match verified {
        Err(e) => Verdict::Invalid(e.to_string()),
        Ok(envelope) if seen.insert((org, envelope.id())) => Verdict::Deliver(Box::new(envelope)),
        Ok(_) => Verdict::Duplicate,
    }
}

/// Checks `message` against the rules above.
pub fn check_message(
    message: &gossipsub::Message,
    joined: impl Fn(&OrgName) -> bool,
    seen: &mut SeenIds,
) -> Verdict {
    match screen_message(message, joined) {
        Err(verdict) => verdict,
        Ok(Screened { org, envelope }) => judge(org, envelope.verify(), seen),
    }
}

#[cfg(test)]
mod tests {
    use borg_proto::Direction;
    use libp2p::identity::Keypair;

    use super::*;

    fn message(key: &Keypair, org: &str, topic_org: &str) -> gossipsub::Message {
        let env = Envelope::new_text(
            key,
            OrgName::new(org).unwrap(),
            1,
            2,
            "x".into(),
            Direction::Down,
        )
        .unwrap();
        gossipsub::Message {
            // Published anonymously, as the node does.
            source: None,
            data: env.encode(),
            sequence_number: None,
            topic: gossipsub::TopicHash::from_raw(OrgName::new(topic_org).unwrap().message_topic()),
        }
    }

    #[test]
    fn valid_message_is_delivered_once() {
        let key = Keypair::generate_ed25519();
        let msg = message(&key, "a", "a");
        let mut seen = SeenIds::default();
        assert!(matches!(
            check_message(&msg, |_| true, &mut seen),
            Verdict::Deliver(_)
        ));
        assert!(matches!(
            check_message(&msg, |_| true, &mut seen),
            Verdict::Duplicate
        ));
    }

    #[test]
    fn org_mismatch_is_invalid() {
        let key = Keypair::generate_ed25519();
        let msg = message(&key, "a", "b");
        assert!(matches!(
            check_message(&msg, |_| true, &mut SeenIds::default()),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn relayed_copy_is_delivered_and_a_forged_hop_is_invalid() {
        let key = Keypair::generate_ed25519();
        let relayer = Keypair::generate_ed25519();
        let mut msg = message(&key, "a", "b");
        let copy = Envelope::decode(&msg.data)
            .unwrap()
            .relayed(OrgName::new("b").unwrap(), &relayer, Direction::Down)
            .unwrap();
        msg.data = copy.encode();
        assert!(matches!(
            check_message(&msg, |_| true, &mut SeenIds::default()),
            Verdict::Deliver(_)
        ));
        // The last bytes are the relayer's signature over the hop.
        let last = msg.data.len() - 1;
        msg.data[last] ^= 0x01;
        assert!(matches!(
            check_message(&msg, |_| true, &mut SeenIds::default()),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn garbage_is_invalid_and_unjoined_is_ignored() {
        let key = Keypair::generate_ed25519();
        let mut msg = message(&key, "a", "a");
        msg.data = vec![1, 2, 3];
        assert!(matches!(
            check_message(&msg, |_| true, &mut SeenIds::default()),
            Verdict::Invalid(_)
        ));
        assert!(matches!(
            check_message(&msg, |_| false, &mut SeenIds::default()),
            Verdict::NotJoined
        ));
    }

    /// Messages checked together get the verdicts they get one after another: the second
    /// copy of a message is a duplicate, and a bad signature spoils only its own message.
    #[test]
    fn messages_concluded_together_are_judged_in_order() {
        let key = Keypair::generate_ed25519();
        let first = message(&key, "a", "a");
        let mut forged = message(&key, "a", "a");
        // The envelope ends with the signature, the direction (1 byte) and the hop count (8).
        let at = forged.data.len() - 10;
        forged.data[at] ^= 0x01;
        let other = message(&Keypair::generate_ed25519(), "a", "a");
        let screened: Vec<Screened> = [&first, &forged, &first, &other]
            .into_iter()
            .map(|m| screen_message(m, |_| true).unwrap())
            .collect();
        let verdicts = conclude(screened, &mut SeenIds::default());
        assert!(
            matches!(
                verdicts.as_slice(),
                [
                    Verdict::Deliver(_),
                    Verdict::Invalid(_),
                    Verdict::Duplicate,
                    Verdict::Deliver(_)
                ]
            ),
            "{verdicts:?}"
        );
    }

    #[test]
    fn seen_ids_forget_the_oldest() {
        let mut seen = Seen::default();
        for i in 0..(SEEN_CAPACITY as u32 + 1) {
            assert!(seen.insert(i));
        }
        assert_eq!(seen.set.len(), SEEN_CAPACITY);
        assert!(seen.insert(0), "the oldest was forgotten");
        assert!(!seen.insert(SEEN_CAPACITY as u32));
    }

    #[test]
    fn same_message_in_another_org_is_new() {
        let key = Keypair::generate_ed25519();
        let mut seen = SeenIds::default();
        let msg = message(&key, "a", "a");
        assert!(matches!(
            check_message(&msg, |_| true, &mut seen),
            Verdict::Deliver(_)
        ));
        let env = Envelope::decode(&msg.data).unwrap();
        assert!(seen.contains(&(OrgName::new("a").unwrap(), env.id())));
        assert!(!seen.contains(&(OrgName::new("b").unwrap(), env.id())));
    }
}
