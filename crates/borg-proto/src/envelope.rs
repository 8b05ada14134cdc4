//! The org message envelope: what one gossipsub message on an org topic carries.
//!
//! - The *core* (org, author key, timestamp, nonce, kind, body) is signed by the author, so the
//!   author stays provable however many representatives relay the message between tiers.
//! - The message id is derived from the core alone, so a relayed copy keeps the id of the
//!   original and every node can deduplicate it.
//! - The *routing* part (direction, relay path) is outside the author's signature: relays
//!   append to it, and each relay signs its own hop (chained over the hops before it), so the
//!   path a reader sees is exactly the reps that relayed the message. Gossipsub itself
//!   publishes unsigned messages: every signature is verified once, after deduplication,
//!   instead of once per copy received.
//! - Decoding is bounded: input longer than [`MAX_ENVELOPE_BYTES`] is refused before any parse,
//!   and every length prefix is checked against that limit before allocating.
//!
//! The byte layout is specified in `docs/wire.md`; `tests::pinned_encoding` keeps the two
//! identical.

use std::fmt;

use bincode::{Decode, Encode};
use libp2p::{PeerId, identity::Keypair};
use sha2::{Digest, Sha256};

use crate::{
    org::{OrgName, OrgNameError},
    signatures::{self, SignatureCheck, decode_key},
};

/// The envelope format version this crate writes and reads.
pub const ENVELOPE_VERSION: u8 = 2;

/// Version 1 had unsigned hops (gossipsub signed the relayer's copy instead). It is still read
/// when it has no hops, so that message logs written before version 2 remain readable.
const ENVELOPE_VERSION_1: u8 = 1;

/// The largest text body accepted, in bytes.
///
/// Org messages are chat-sized; bigger payloads belong in the store. 16 KiB keeps a full
/// envelope well under gossipsub's transmit limit even with a long relay path.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// The largest encoded envelope accepted by [`Envelope::decode`], in bytes.
pub const MAX_ENVELOPE_BYTES: usize = 20 * 1024;

/// The most relay hops an envelope may record; tiers deeper than this are not supported.
pub const MAX_RELAY_HOPS: usize = 16;

/// Domain separator signed in front of the core, so an envelope signature can never be
/// replayed as a signature over some other borg structure.
const SIGNING_DOMAIN: &[u8] = b"/borg/envelope/1.0.0";

/// Domain separator of a relay hop's signature.
const HOP_SIGNING_DOMAIN: &[u8] = b"/borg/envelope-hop/2.0.0";

/// Body kind byte for UTF-8 text.
const KIND_TEXT: u8 = 1;

/// The bincode configuration of every borg wire structure: big-endian, fixed-width integers,
/// lengths as u64, and a hard limit on what a decoder may claim.
fn wire_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_ENVELOPE_BYTES>()
}

#[derive(Encode, Decode, Clone, PartialEq, Eq, Debug)]
struct WireCore {
    org: String,
    author_key: Vec<u8>,
    sent_at_ms: u64,
    nonce: u64,
    kind: u8,
    body: Vec<u8>,
}

#[derive(Encode, Decode, Clone, PartialEq, Eq, Debug)]
struct WireHop {
    org: String,
    direction: u8,
    relayer_key: Vec<u8>,
    signature: Vec<u8>,
}

#[derive(Encode, Decode, Clone, PartialEq, Eq, Debug)]
struct WireEnvelope {
    version: u8,
    core: WireCore,
    signature: Vec<u8>,
    direction: u8,
    path: Vec<WireHop>,
}

/// What a message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// UTF-8 text, at most [`MAX_TEXT_BYTES`] bytes.
    Text(String),
}

/// Which way a message travels through the tiers of orgs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Published in its org; a rep relays it down into child orgs.
    Down,
    /// Published in its org and asks the org's rep to relay it up into the parent org.
    Up,
}

/// One relay step: the rep `relayer` re-published the envelope into `org`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The org the message was relayed into.
    pub org: OrgName,
    /// The rep that relayed it (its signature over the hop was verified).
    pub relayer: PeerId,
}

/// A 128-bit message id: the first 16 bytes of `SHA-256(core)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// A signed org message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `SHA-256(core)[..16]`, computed once.
    id: MessageId,
    org: OrgName,
    author: PeerId,
    sent_at_ms: u64,
    nonce: u64,
    body: Body,
    direction: Direction,
    path: Vec<Hop>,
    wire_core: WireCore,
    signature: Vec<u8>,
    /// The author's direction as on the wire (signed by the author from version 2 on).
    author_direction: u8,
    /// The format version it was read in (or 2): it is written back in the same one, as
    /// the author's signature depends on it.
    version: u8,
    wire_path: Vec<WireHop>,
}

/// Why an envelope could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The body is larger than the limit.
    #[error("message is {len} bytes; the limit is {max} bytes")]
    BodyTooLarge {
        /// Size of the body given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The relay path is already at its limit.
    #[error("message has already been relayed {MAX_RELAY_HOPS} times")]
    TooManyHops,
    /// A version 1 envelope (read from an old log) cannot carry signed hops.
    #[error("a version 1 envelope cannot be relayed")]
    Version1,
    /// The keypair could not sign.
    #[error("signing failed: {0}")]
    Signing(#[from] libp2p::identity::SigningError),
}

/// Why bytes received from the network are not a valid envelope.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope is {len} bytes; the limit is {MAX_ENVELOPE_BYTES}")]
    TooLarge {
        /// Size of the input.
        len: usize,
    },
    /// The bytes are not a well-formed envelope (truncated, bad length prefix, ...).
    #[error("malformed envelope: {0}")]
    Malformed(#[from] bincode::error::DecodeError),
    /// Bytes follow the end of the envelope.
    #[error("{0} trailing bytes after envelope")]
    TrailingBytes(usize),
    /// The version byte is not one this implementation reads.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The org name is invalid.
    #[error("invalid org name: {0}")]
    BadOrg(#[from] OrgNameError),
    /// A hop's org name or relayer key is invalid, or its signature does not verify.
    #[error("invalid relay hop")]
    BadHop,
    /// The author key is not a valid public key.
    #[error("invalid author key")]
    BadAuthorKey,
    /// The signature does not verify against the author key.
    #[error("bad signature")]
    BadSignature,
    /// The body kind is unknown.
    #[error("unknown body kind {0}")]
    UnknownKind(u8),
    /// The text body is not UTF-8 or too long.
    #[error("text body is not valid UTF-8 or exceeds {MAX_TEXT_BYTES} bytes")]
    BadText,
    /// The direction byte is unknown.
    #[error("unknown direction {0}")]
    UnknownDirection(u8),
    /// More relay hops than [`MAX_RELAY_HOPS`].
    #[error("too many relay hops")]
    TooManyHops,
}

/// What the author signs: the core and, from version 2 on, the direction it gave the message
/// (version 1 left the direction to gossipsub's signature).
fn signing_input(core_bytes: &[u8], direction: Option<u8>) -> Vec<u8> {
    let mut input = Vec::with_capacity(SIGNING_DOMAIN.len() + core_bytes.len() + 1);
    input.extend_from_slice(SIGNING_DOMAIN);
    input.extend_from_slice(core_bytes);
    input.extend(direction);
    input
}

/// What the relayer of hop `index` signs: the message id, the author's direction, and the
/// path up to and including this hop, so that hops can be neither altered nor reordered.
fn hop_signing_input(
    id: &MessageId,
    author_direction: u8,
    path: &[WireHop],
    index: usize,
) -> Vec<u8> {
    let mut input = HOP_SIGNING_DOMAIN.to_vec();
    input.extend_from_slice(&id.0);
    input.push(author_direction);
    for hop in &path[..=index] {
        input.extend_from_slice(&(hop.org.len() as u64).to_be_bytes());
        input.extend_from_slice(hop.org.as_bytes());
        input.push(hop.direction);
        input.extend_from_slice(&(hop.relayer_key.len() as u64).to_be_bytes());
        input.extend_from_slice(&hop.relayer_key);
    }
    input
}

fn direction_from(code: u8) -> Result<Direction, DecodeError> {
    match code {
        0 => Ok(Direction::Down),
        1 => Ok(Direction::Up),
        other => Err(DecodeError::UnknownDirection(other)),
    }
}

fn direction_code(direction: Direction) -> u8 {
    match direction {
        Direction::Down => 0,
        Direction::Up => 1,
    }
}

fn id_of_core_bytes(core_bytes: &[u8]) -> MessageId {
    let digest = Sha256::digest(core_bytes);
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    MessageId(id)
}

fn encode_wire<T: Encode>(value: &T) -> Vec<u8> {
    // Encoding into a Vec can only fail on a size limit; every structure passed here was
    // checked against smaller limits when it was built, so a failure is a bug, not input.
    bincode::encode_to_vec(value, wire_config()).unwrap_or_default()
}

impl Envelope {
    /// Builds and signs a new message of `keypair`'s peer into `org`.
    pub fn new_text(
        keypair: &Keypair,
        org: OrgName,
        sent_at_ms: u64,
        nonce: u64,
        text: String,
        direction: Direction,
    ) -> Result<Self, EncodeError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(EncodeError::BodyTooLarge {
                len: text.len(),
                max: MAX_TEXT_BYTES,
            });
        }
        let public = keypair.public();
        let wire_core = WireCore {
            org: org.as_str().to_owned(),
            author_key: public.encode_protobuf(),
            sent_at_ms,
            nonce,
            kind: KIND_TEXT,
            body: text.clone().into_bytes(),
        };
        let core_bytes = encode_wire(&wire_core);
        let signature =
            keypair.sign(&signing_input(&core_bytes, Some(direction_code(direction))))?;
        Ok(Self {
            id: id_of_core_bytes(&core_bytes),
            org,
            author: public.to_peer_id(),
            sent_at_ms,
            nonce,
            body: Body::Text(text),
            direction,
            path: Vec::new(),
            wire_core,
            signature,
            author_direction: direction_code(direction),
            version: ENVELOPE_VERSION,
            wire_path: Vec::new(),
        })
    }

    /// Parses and verifies an envelope received from the network.
    ///
    /// [`Envelope::parse`] followed by [`Unverified::verify`]. It never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::parse(bytes)?.verify()
    }

    /// Parses an envelope received from the network, leaving its signatures to be checked
    /// ([`Unverified::verify`], or [`verify_batch`] for many).
    ///
    /// Checks, in order: size, framing, version, org name, author key, body kind and content,
    /// direction and relay path (length, keys, orgs, directions). It never panics on any input.
    pub fn parse(bytes: &[u8]) -> Result<Unverified, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge { len: bytes.len() });
        }
        // Read the version before the rest so a future version with another layout gets a
        // precise error instead of a confusing framing error.
        let version = match bytes.first() {
            Some(&v @ (ENVELOPE_VERSION | ENVELOPE_VERSION_1)) => v,
            None => ENVELOPE_VERSION,
            Some(&other) => return Err(DecodeError::UnsupportedVersion(other)),
        };
        let (wire, used): (WireEnvelope, usize) = bincode::decode_from_slice(bytes, wire_config())?;
        if used != bytes.len() {
            return Err(DecodeError::TrailingBytes(bytes.len() - used));
        }
        let org = OrgName::new(&wire.core.org)?;
        // One encoding of the core serves the signature check and the message id.
        let core_bytes = encode_wire(&wire.core);
        let id = id_of_core_bytes(&core_bytes);
        let author_key =
            decode_key(&wire.core.author_key).map_err(|_| DecodeError::BadAuthorKey)?;
        let author_direction = direction_from(wire.direction)?;
        let signed_direction = (version != ENVELOPE_VERSION_1).then_some(wire.direction);
        let author_check = SignatureCheck::new(
            &author_key,
            &wire.signature,
            signing_input(&core_bytes, signed_direction),
        );
        let body = match wire.core.kind {
            KIND_TEXT => {
                if wire.core.body.len() > MAX_TEXT_BYTES {
                    return Err(DecodeError::BadText);
                }
                Body::Text(
                    String::from_utf8(wire.core.body.clone()).map_err(|_| DecodeError::BadText)?,
                )
            }
            other => return Err(DecodeError::UnknownKind(other)),
        };
        if wire.path.len() > MAX_RELAY_HOPS {
            return Err(DecodeError::TooManyHops);
        }
        if version == ENVELOPE_VERSION_1 && !wire.path.is_empty() {
            // Its hops were never signed: nothing vouches for them.
            return Err(DecodeError::BadHop);
        }
        let mut hop_checks = Vec::with_capacity(wire.path.len());
        let path = wire
            .path
            .iter()
            .enumerate()
            .map(|(index, hop)| {
                let key = decode_key(&hop.relayer_key).map_err(|_| DecodeError::BadHop)?;
                let signed = hop_signing_input(&id, wire.direction, &wire.path, index);
                hop_checks.push(SignatureCheck::new(&key, &hop.signature, signed));
                direction_from(hop.direction)?;
                Ok(Hop {
                    org: OrgName::new(&hop.org).map_err(|_| DecodeError::BadHop)?,
                    relayer: key.public.to_peer_id(),
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        let direction = match wire.path.last() {
            Some(hop) => direction_from(hop.direction)?,
            None => author_direction,
        };
        let envelope = Self {
            id,
            org,
            author: author_key.public.to_peer_id(),
            sent_at_ms: wire.core.sent_at_ms,
            nonce: wire.core.nonce,
            body,
            direction,
            path,
            wire_core: wire.core,
            signature: wire.signature,
            author_direction: wire.direction,
            version,
            wire_path: wire.path,
        };
        Ok(Unverified {
            envelope,
            author_check,
            hop_checks,
        })
    }

    /// The bytes to publish.
    pub fn encode(&self) -> Vec<u8> {
        encode_wire(&WireEnvelope {
            version: self.version,
            core: self.wire_core.clone(),
            signature: self.signature.clone(),
            direction: self.author_direction(),
            path: self.wire_path.clone(),
        })
    }

    /// The id of the message: the same for every relayed copy.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The org the author published into.
    pub fn org(&self) -> &OrgName {
        &self.org
    }

    /// The author, proven by the signature.
    pub fn author(&self) -> PeerId {
        self.author
    }

    /// The author's clock at sending, in Unix milliseconds (not verified: clocks differ).
    pub fn sent_at_ms(&self) -> u64 {
        self.sent_at_ms
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The text, for text bodies.
    pub fn text(&self) -> Option<&str> {
        match &self.body {
            Body::Text(t) => Some(t),
        }
    }

    /// Which way the message travels between tiers.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The relay steps taken so far, oldest first.
    pub fn path(&self) -> &[Hop] {
        &self.path
    }

    /// The peer that published this copy: the last relayer, or the author.
    pub fn publisher(&self) -> PeerId {
        self.path.last().map_or(self.author, |hop| hop.relayer)
    }

    /// The org this copy claims to be in: the org of the last relay hop, or the author's.
    pub fn claimed_org(&self) -> &OrgName {
        self.path.last().map_or(&self.org, |hop| &hop.org)
    }

    /// A copy relayed by `relayer` into `org`, travelling `direction`, with the hop signed
    /// by `relayer`.
    pub fn relayed(
        &self,
        org: OrgName,
        relayer: &Keypair,
        direction: Direction,
    ) -> Result<Self, EncodeError> {
        if self.path.len() >= MAX_RELAY_HOPS {
            return Err(EncodeError::TooManyHops);
        }
        if self.version == ENVELOPE_VERSION_1 {
            return Err(EncodeError::Version1);
        }
        let mut copy = self.clone();
        copy.wire_path.push(WireHop {
            org: org.as_str().to_owned(),
            direction: direction_code(direction),
            relayer_key: relayer.public().encode_protobuf(),
            signature: Vec::new(),
        });
        let index = copy.wire_path.len() - 1;
        let signed = hop_signing_input(&copy.id(), self.author_direction(), &copy.wire_path, index);
        copy.wire_path[index].signature = relayer.sign(&signed)?;
        copy.path.push(Hop {
            org,
            relayer: relayer.public().to_peer_id(),
        });
        copy.direction = direction;
        Ok(copy)
    }

    /// The direction the author gave the message (relays may change the current one).
    fn author_direction(&self) -> u8 {
        self.author_direction
    }
}

/// An envelope parsed by [`Envelope::parse`] whose signatures are not checked yet.
///
/// Nothing in it may be trusted, or acted on beyond rejecting it early, before
/// [`Unverified::verify`] or [`verify_batch`] returns the [`Envelope`].
#[derive(Debug)]
pub struct Unverified {
    envelope: Envelope,
    author_check: SignatureCheck,
    hop_checks: Vec<SignatureCheck>,
}

impl Unverified {
    /// The org the envelope claims to be in ([`Envelope::claimed_org`]; unproven until
    /// verified): a copy on the wrong topic can be rejected without checking signatures.
    pub fn claimed_org(&self) -> &OrgName {
        self.envelope.claimed_org()
    }

    /// Checks the author's signature, then every hop's.
    pub fn verify(self) -> Result<Envelope, DecodeError> {
        if !self.author_check.passes() {
            return Err(DecodeError::BadSignature);
        }
        if !self.hop_checks.iter().all(SignatureCheck::passes) {
            return Err(DecodeError::BadHop);
        }
        Ok(self.envelope)
    }

    fn checks(&self) -> impl Iterator<Item = &SignatureCheck> {
        std::iter::once(&self.author_check).chain(&self.hop_checks)
    }
}

/// Verifies many envelopes at once: the same results, in the same order, as calling
/// [`Unverified::verify`] on each, for less CPU when there are several (see `signatures`).
///
/// When a batch holds an invalid signature, each envelope is checked again alone, so a bad
/// envelope only costs the others of its batch one batch check.
pub fn verify_batch(envelopes: Vec<Unverified>) -> Vec<Result<Envelope, DecodeError>> {
    if envelopes.len() > 1 && signatures::all_pass(envelopes.iter().flat_map(Unverified::checks)) {
        return envelopes.into_iter().map(|e| Ok(e.envelope)).collect();
    }
    envelopes.into_iter().map(Unverified::verify).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fixed_keypair() -> Keypair {
        Keypair::ed25519_from_bytes([7u8; 32]).unwrap()
    }

    fn sample() -> Envelope {
        Envelope::new_text(
            &fixed_keypair(),
            OrgName::new("org").unwrap(),
            1_700_000_000_000,
            42,
            "hi".into(),
            Direction::Down,
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let env = sample();
        let decoded = Envelope::decode(&env.encode()).unwrap();
        assert_eq!(decoded, env);
        assert_eq!(decoded.text(), Some("hi"));
        assert_eq!(decoded.author(), fixed_keypair().public().to_peer_id());
        assert_eq!(decoded.id(), env.id());
    }

    /// The layout in docs/wire.md, byte for byte (signature elided: ed25519 is deterministic,
    /// so it is pinned too, through the hash of the whole frame).
    #[test]
    fn pinned_encoding() {
        let bytes = sample().encode();
        let mut expected = vec![2u8]; // version
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(b"org");
        expected.extend_from_slice(&36u64.to_be_bytes()); // protobuf ed25519 public key
        expected.extend_from_slice(&fixed_keypair().public().encode_protobuf());
        expected.extend_from_slice(&1_700_000_000_000u64.to_be_bytes());
        expected.extend_from_slice(&42u64.to_be_bytes());
        expected.push(1); // kind: text
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(b"hi");
        expected.extend_from_slice(&64u64.to_be_bytes()); // ed25519 signature
        assert_eq!(&bytes[..expected.len()], &expected[..]);
        let tail = &bytes[expected.len() + 64..];
        assert_eq!(tail, &[0u8, 0, 0, 0, 0, 0, 0, 0, 0]); // direction down, empty path
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            hex::encode(Sha256::digest(sample().encode()))
        );
        assert_eq!(sample().id().to_string().len(), 32);
    }

    #[test]
    fn relayed_copy_keeps_id_and_author() {
        let env = sample();
        let relayer = Keypair::generate_ed25519();
        let up = env
            .relayed(OrgName::new("parent").unwrap(), &relayer, Direction::Down)
            .unwrap();
        let decoded = Envelope::decode(&up.encode()).unwrap();
        assert_eq!(decoded.id(), env.id());
        assert_eq!(decoded.author(), env.author());
        assert_eq!(decoded.publisher(), relayer.public().to_peer_id());
        assert_eq!(decoded.path().len(), 1);
        assert_eq!(decoded, up);
    }

    /// An up message relayed up, then down into a sibling: two hops with two directions, each
    /// signed by its relayer; any change to a hop, or to the author's direction, is refused.
    #[test]
    fn relay_hops_are_signed_and_chained() {
        let author = fixed_keypair();
        let env = Envelope::new_text(
            &author,
            OrgName::new("child").unwrap(),
            5,
            6,
            "up we go".into(),
            Direction::Up,
        )
        .unwrap();
        let rep_a = Keypair::ed25519_from_bytes([1u8; 32]).unwrap();
        let rep_b = Keypair::ed25519_from_bytes([2u8; 32]).unwrap();
        let two = env
            .relayed(OrgName::new("parent").unwrap(), &rep_a, Direction::Down)
            .unwrap()
            .relayed(OrgName::new("sibling").unwrap(), &rep_b, Direction::Down)
            .unwrap();
        let bytes = two.encode();
        let decoded = Envelope::decode(&bytes).unwrap();
        assert_eq!(decoded.direction(), Direction::Down);
        assert_eq!(decoded.publisher(), rep_b.public().to_peer_id());
        assert_eq!(decoded.path()[0].relayer, rep_a.public().to_peer_id());
        // Flip every byte after the author's signature (direction and hops) in turn.
        let hops_start = env.encode().len() - 9;
        for i in hops_start..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            assert!(
                Envelope::decode(&tampered).is_err(),
                "byte {i} changed unnoticed"
            );
        }
        // A hop claimed by someone else: re-signed by a stranger over a path that names rep_a.
        let mut forged = two.clone();
        forged.wire_path[0].signature = Keypair::generate_ed25519()
            .sign(&hop_signing_input(&two.id(), 1, &two.wire_path, 0))
            .unwrap();
        assert!(matches!(
            Envelope::decode(&forged.encode()),
            Err(DecodeError::BadHop)
        ));
    }

    /// Logs written before version 2 hold version 1 envelopes; those without hops are fully
    /// vouched for by the author's signature and still read.
    #[test]
    fn version_1_without_hops_is_still_read() {
        let key = fixed_keypair();
        let core = WireCore {
            org: "org".into(),
            author_key: key.public().encode_protobuf(),
            sent_at_ms: 1,
            nonce: 2,
            kind: KIND_TEXT,
            body: b"old".to_vec(),
        };
        let signature = key.sign(&signing_input(&encode_wire(&core), None)).unwrap();
        let v1 = |path: Vec<WireHop>| {
            encode_wire(&WireEnvelope {
                version: 1,
                core: core.clone(),
                signature: signature.clone(),
                direction: 0,
                path,
            })
        };
        let decoded = Envelope::decode(&v1(Vec::new())).unwrap();
        assert_eq!(decoded.text(), Some("old"));
        assert_eq!(decoded.author(), key.public().to_peer_id());
        let hop = WireHop {
            org: "x".into(),
            direction: 0,
            relayer_key: key.public().encode_protobuf(),
            signature: vec![0; 64],
        };
        assert!(matches!(
            Envelope::decode(&v1(vec![hop])),
            Err(DecodeError::BadHop)
        ));
        // Re-encoded, it is a version 2 envelope whose author signature still verifies only
        // as version 1: writing it back out must keep it readable.
        assert_eq!(decoded.encode()[0], 1);
    }

    #[test]
    fn oversized_body_is_refused_when_building() {
        let err = Envelope::new_text(
            &fixed_keypair(),
            OrgName::new("org").unwrap(),
            0,
            0,
            "x".repeat(MAX_TEXT_BYTES + 1),
            Direction::Down,
        )
        .unwrap_err();
        assert!(
            matches!(err, EncodeError::BodyTooLarge { len, max } if len == MAX_TEXT_BYTES + 1 && max == MAX_TEXT_BYTES)
        );
        let ok = Envelope::new_text(
            &fixed_keypair(),
            OrgName::new("org").unwrap(),
            0,
            0,
            "x".repeat(MAX_TEXT_BYTES),
            Direction::Down,
        )
        .unwrap();
        assert!(Envelope::decode(&ok.encode()).is_ok());
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let big = vec![1u8; MAX_ENVELOPE_BYTES + 1];
        assert!(matches!(
            Envelope::decode(&big),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(Envelope::decode(&bytes[..len]).is_err(), "prefix {len}");
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(DecodeError::TrailingBytes(1))
        ));
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // version, then an org length of 2^63: must fail on the limit, not try to allocate.
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
        bytes.extend_from_slice(b"abc");
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn tampered_body_fails_signature() {
        let mut bytes = sample().encode();
        let pos = bytes.windows(2).position(|w| w == b"hi").unwrap();
        bytes[pos] = b'H';
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(DecodeError::BadSignature)
        ));
    }

    #[test]
    fn unknown_version_is_reported() {
        let mut bytes = sample().encode();
        bytes[0] = 3;
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(DecodeError::UnsupportedVersion(3))
        ));
        // Version 1 framing with a version 2 signature (over the direction too) is refused.
        bytes[0] = 1;
        assert!(matches!(
            Envelope::decode(&bytes),
            Err(DecodeError::BadSignature)
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Envelope::decode(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = sample().encode();
            for (pos, val) in flips {
                let i = pos % bytes.len();
                bytes[i] = val;
            }
            let _ = Envelope::decode(&bytes);
        }

        /// A batch gives every envelope the verdict it gets alone, whatever the mix of
        /// authors, relayed copies and bad signatures.
        #[test]
        fn batches_judge_as_single_checks_do(picks in proptest::collection::vec((0u8..3, 0u8..4), 0..40)) {
            let rep = Keypair::ed25519_from_bytes([9u8; 32]).unwrap();
            let encoded: Vec<Vec<u8>> = picks.iter().enumerate().map(|(n, &(author, what))| {
                let key = Keypair::ed25519_from_bytes([author + 1; 32]).unwrap();
                let env = Envelope::new_text(&key, OrgName::new("o").unwrap(), n as u64, 7, "hello".into(), Direction::Down).unwrap();
                let mut bytes = match what {
                    0 | 2 => env.encode(),
                    _ => env.relayed(OrgName::new("p").unwrap(), &rep, Direction::Down).unwrap().encode(),
                };
                match what {
                    // The author's signature no longer covers the body.
                    2 => {
                        let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
                        bytes[at] = b'j';
                    }
                    // The last byte is the relayer's signature over the hop.
                    3 => *bytes.last_mut().unwrap() ^= 0x01,
                    _ => {}
                }
                bytes
            }).collect();
            let parse = || encoded.iter().map(|b| Envelope::parse(b).unwrap()).collect::<Vec<_>>();
            let alone: Vec<String> = parse().into_iter().map(|u| format!("{:?}", u.verify().map(|e| e.id()))).collect();
            let together: Vec<String> = verify_batch(parse()).into_iter().map(|r| format!("{:?}", r.map(|e| e.id()))).collect();
            prop_assert_eq!(&alone, &together);
            for (verdict, &(_, what)) in alone.iter().zip(&picks) {
                let expected = match what { 2 => "Err(BadSignature)", 3 => "Err(BadHop)", _ => "Ok(" };
                prop_assert!(verdict.starts_with(expected), "{} for {}", verdict, what);
            }
        }

        #[test]
        fn text_round_trips(text in "\\PC{0,200}", ts in any::<u64>(), nonce in any::<u64>()) {
            let env = Envelope::new_text(&fixed_keypair(), OrgName::new("o").unwrap(), ts, nonce, text.clone(), Direction::Up).unwrap();
            let decoded = Envelope::decode(&env.encode()).unwrap();
            prop_assert_eq!(decoded.text(), Some(text.as_str()));
            prop_assert_eq!(decoded.direction(), Direction::Up);
            prop_assert_eq!(decoded.id(), env.id());
        }
    }
}
