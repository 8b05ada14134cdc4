//! Organisation names and the gossipsub topics derived from them.
//!
//! - An org is named by a short ASCII string chosen by its members ([`OrgName`]).
//! - Each org has one gossipsub topic for member messages ([`OrgName::message_topic`]) and one
//!   for the election control traffic ([`OrgName::control_topic`]).
//! - Each org has a Kademlia key under which members announce themselves as providers
//!   ([`OrgName::dht_key`]), so that members on other LANs can find each other.
//!
//! The exact strings are specified in `docs/wire.md`.

use std::{fmt, str::FromStr};

use sha2::{Digest, Sha256};

/// The longest org name accepted, in bytes.
///
/// Names travel in every envelope and topic string; 64 bytes is plenty for a human-chosen name
/// and keeps topic strings short.
pub const MAX_ORG_NAME_BYTES: usize = 64;

/// Prefix of every borg gossipsub topic; peers' subscriptions to anything else are ignored.
pub const TOPIC_PREFIX: &str = "/borg/";

/// Prefix of org message topics, followed by the org name.
pub const MESSAGE_TOPIC_PREFIX: &str = "/borg/org/2.0.0/";

/// Prefix of org election control topics, followed by the org name.
pub const CONTROL_TOPIC_PREFIX: &str = "/borg/election/3.0.0/";

/// Domain separator hashed in front of the org name to form its DHT key.
const DHT_KEY_DOMAIN: &[u8] = b"/borg/org-members/1.0.0/";

/// A validated organisation name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
///
/// Restricting the alphabet keeps topic strings unambiguous (no `/`), printable in logs and
/// identical across platforms (no Unicode normalisation questions).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgName(String);

/// Why a string is not a valid [`OrgName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrgNameError {
    /// The name is empty.
    #[error("org name is empty")]
    Empty,
    /// The name is longer than [`MAX_ORG_NAME_BYTES`].
    #[error("org name is {0} bytes long; the limit is {MAX_ORG_NAME_BYTES}")]
    TooLong(usize),
    /// The name contains a character outside `[A-Za-z0-9._-]`.
    #[error("org name contains {0:?}; only ASCII letters, digits, '-', '_' and '.' are allowed")]
    BadChar(char),
}

impl OrgName {
    /// Validates `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, OrgNameError> {
        if name.is_empty() {
            return Err(OrgNameError::Empty);
        }
        if name.len() > MAX_ORG_NAME_BYTES {
            return Err(OrgNameError::TooLong(name.len()));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(OrgNameError::BadChar(c));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The gossipsub topic carrying this org's member messages.
    pub fn message_topic(&self) -> String {
        format!("{MESSAGE_TOPIC_PREFIX}{}", self.0)
    }

    /// The gossipsub topic carrying this org's election control messages.
    pub fn control_topic(&self) -> String {
        format!("{CONTROL_TOPIC_PREFIX}{}", self.0)
    }

    /// The Kademlia key under which members of this org provide themselves:
    /// `SHA-256("/borg/org-members/1.0.0/" || name)`.
    ///
    /// Hashing spreads orgs over the keyspace and keeps the name out of DHT requests made to
    /// peers that are not members (they see only the hash).
    pub fn dht_key(&self) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(DHT_KEY_DOMAIN);
        hasher.update(self.0.as_bytes());
        hasher.finalize().to_vec()
    }

    /// Recovers the org from a message topic string, if it is one.
    pub fn from_message_topic(topic: &str) -> Option<Self> {
        topic
            .strip_prefix(MESSAGE_TOPIC_PREFIX)
            .and_then(|name| Self::new(name).ok())
    }

    /// Recovers the org from a control topic string, if it is one.
    pub fn from_control_topic(topic: &str) -> Option<Self> {
        topic
            .strip_prefix(CONTROL_TOPIC_PREFIX)
            .and_then(|name| Self::new(name).ok())
    }
}

impl FromStr for OrgName {
    type Err = OrgNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrgName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgName({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_simple_names() {
        for n in [
            "neighbourhood",
            "a",
            "tenants-union_2024.v1",
            &"x".repeat(64),
        ] {
            assert_eq!(OrgName::new(n).map(|o| o.to_string()), Ok(n.to_string()));
        }
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(OrgName::new(""), Err(OrgNameError::Empty));
        assert_eq!(
            OrgName::new(&"x".repeat(65)),
            Err(OrgNameError::TooLong(65))
        );
        assert_eq!(OrgName::new("a/b"), Err(OrgNameError::BadChar('/')));
        assert_eq!(
            OrgName::new("caf\u{e9}"),
            Err(OrgNameError::BadChar('\u{e9}'))
        );
        assert_eq!(OrgName::new("a b"), Err(OrgNameError::BadChar(' ')));
    }

    #[test]
    fn topics_round_trip_and_are_distinct() {
        let org = OrgName::new("neighbourhood").unwrap();
        assert_eq!(org.message_topic(), "/borg/org/2.0.0/neighbourhood");
        assert_eq!(org.control_topic(), "/borg/election/3.0.0/neighbourhood");
        assert_eq!(
            OrgName::from_message_topic(&org.message_topic()),
            Some(org.clone())
        );
        assert_eq!(
            OrgName::from_control_topic(&org.control_topic()),
            Some(org.clone())
        );
        assert_eq!(OrgName::from_message_topic(&org.control_topic()), None);
        assert_eq!(OrgName::from_message_topic("/borg/org/2.0.0/a/b"), None);
    }

    #[test]
    fn dht_key_is_pinned() {
        // Pinned so that the documented derivation and the code cannot drift apart.
        let org = OrgName::new("neighbourhood").unwrap();
        let mut h = Sha256::new();
        h.update(b"/borg/org-members/1.0.0/neighbourhood");
        assert_eq!(org.dht_key(), h.finalize().to_vec());
        assert_eq!(org.dht_key().len(), 32);
    }
}
