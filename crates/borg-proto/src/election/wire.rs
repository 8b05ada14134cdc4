//! The byte layout of an election announcement (`docs/election.md`, "Wire format").
//!
//! Same conventions as the envelope: bincode 2, big-endian fixed-width integers, `u64` length
//! prefixes, a hard decode limit.
//!
//! Version 2 is signed by its sender: gossipsub publishes unsigned (anonymous) messages, so
//! that each message is verified once, after deduplication, instead of once per copy received.
//! Version 3 adds the ballot's score, by which two ballots of one term are ordered.
//! The org is not in the bytes but is signed: it is implied by the control topic, and binding
//! it into the signature stops an announcement from being replayed into another org.

use bincode::{Decode, Encode};
use libp2p::{PeerId, identity::Keypair};

use super::{Announcement, AnnouncementKind, Reason};
use crate::org::OrgName;

/// The announcement format version.
pub const ANNOUNCEMENT_VERSION: u8 = 3;

/// Signed in front of the org and the body, so that an announcement signature can never be
/// taken for a signature over another borg structure.
const SIGNING_DOMAIN: &[u8] = b"/borg/election/3.0.0";

/// The largest encoded announcement accepted.
pub const MAX_ANNOUNCEMENT_BYTES: usize = 8 * 1024;

/// The longest heartbeat interval a member may announce (10 minutes): it stretches how long
/// others wait for it, so it is bounded.
pub const MAX_HEARTBEAT_MS: u32 = 600_000;

/// The longest line of succession accepted on the wire.
pub const MAX_WIRE_SUCCESSION: usize = 128;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_ANNOUNCEMENT_BYTES>()
}

#[derive(Encode, Decode)]
struct WireSigned {
    body: WireAnnouncement,
    signature: Vec<u8>,
}

#[derive(Encode, Decode)]
struct WireAnnouncement {
    version: u8,
    kind: u8,
    incarnation: u64,
    seq: u64,
    heartbeat_ms: u32,
    score: u32,
    term: u64,
    rep: Vec<u8>,
    ballot_score: u32,
    reason: u8,
    rep_reachable: u8,
    succession: Vec<Vec<u8>>,
    sender_key: Vec<u8>,
}

/// Why bytes are not a valid announcement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnouncementDecodeError {
    /// Larger than [`MAX_ANNOUNCEMENT_BYTES`].
    #[error("announcement is {0} bytes; the limit is {MAX_ANNOUNCEMENT_BYTES}")]
    TooLarge(usize),
    /// Not well-formed.
    #[error("malformed announcement: {0}")]
    Malformed(#[from] bincode::error::DecodeError),
    /// Bytes after the end.
    #[error("trailing bytes after announcement")]
    TrailingBytes,
    /// Unknown version.
    #[error("unsupported announcement version {0}")]
    UnsupportedVersion(u8),
    /// A field has a value outside its range.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// The signature does not match the sender's key and the org.
    #[error("bad announcement signature")]
    BadSignature,
}

fn reason_code(reason: Reason) -> u8 {
    match reason {
        Reason::Elected => 1,
        Reason::Crash => 2,
        Reason::SilentTimeout => 3,
        Reason::Handover => 4,
        Reason::BetterCandidate => 5,
        Reason::PartitionHeal => 6,
    }
}

fn reason_from(code: u8) -> Option<Reason> {
    Some(match code {
        1 => Reason::Elected,
        2 => Reason::Crash,
        3 => Reason::SilentTimeout,
        4 => Reason::Handover,
        5 => Reason::BetterCandidate,
        6 => Reason::PartitionHeal,
        _ => return None,
    })
}

fn signing_input(org: &OrgName, body: &[u8]) -> Vec<u8> {
    let org = org.as_str().as_bytes();
    let mut input = Vec::with_capacity(SIGNING_DOMAIN.len() + 8 + org.len() + body.len());
    input.extend_from_slice(SIGNING_DOMAIN);
    input.extend_from_slice(&(org.len() as u64).to_be_bytes());
    input.extend_from_slice(org);
    input.extend_from_slice(body);
    input
}

/// Encodes an announcement of `key`'s owner in `org`, signed.
pub fn encode_announcement(ann: &Announcement<PeerId>, org: &OrgName, key: &Keypair) -> Vec<u8> {
    let body = WireAnnouncement {
        version: ANNOUNCEMENT_VERSION,
        kind: match ann.kind {
            AnnouncementKind::State => 1,
            AnnouncementKind::Leaving => 2,
        },
        incarnation: ann.incarnation,
        seq: ann.seq,
        heartbeat_ms: u32::try_from(ann.heartbeat.as_millis())
            .unwrap_or(MAX_HEARTBEAT_MS)
            .clamp(1, MAX_HEARTBEAT_MS),
        score: ann.score,
        term: ann.term,
        rep: ann.rep.map(|p| p.to_bytes()).unwrap_or_default(),
        ballot_score: ann.ballot_score,
        reason: reason_code(ann.reason),
        rep_reachable: u8::from(ann.rep_reachable),
        succession: ann
            .succession
            .iter()
            .take(MAX_WIRE_SUCCESSION)
            .map(|p| p.to_bytes())
            .collect(),
        sender_key: key.public().encode_protobuf(),
    };
    // Neither can fail: the succession is truncated so the whole stays far below the limit,
    // and signing with an in-memory ed25519 key does not fail.
    let body_bytes = bincode::encode_to_vec(&body, config()).unwrap_or_default();
    let signature = key
        .sign(&signing_input(org, &body_bytes))
        .unwrap_or_default();
    bincode::encode_to_vec(&WireSigned { body, signature }, config()).unwrap_or_default()
}

/// Decodes and verifies an announcement received on `org`'s control topic: returns the sender
/// and the announcement. Never panics.
pub fn decode_announcement(
    bytes: &[u8],
    org: &OrgName,
) -> Result<(PeerId, Announcement<PeerId>), AnnouncementDecodeError> {
    if bytes.len() > MAX_ANNOUNCEMENT_BYTES {
        return Err(AnnouncementDecodeError::TooLarge(bytes.len()));
    }
    match bytes.first() {
        Some(&ANNOUNCEMENT_VERSION) | None => {}
        Some(&v) => return Err(AnnouncementDecodeError::UnsupportedVersion(v)),
    }
    let (signed, used): (WireSigned, usize) = bincode::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(AnnouncementDecodeError::TrailingBytes);
    }
    let sender_key = crate::signatures::decode_public_key(&signed.body.sender_key)
        .map_err(|_| AnnouncementDecodeError::Invalid("sender key"))?;
    // The signed body is exactly the bytes before the signature: re-encoding the decoded
    // body gives them back (the encoding is canonical), without trusting a length field.
    let body_bytes = bincode::encode_to_vec(&signed.body, config())
        .map_err(|_| AnnouncementDecodeError::Invalid("body"))?;
    if !sender_key.verify(&signing_input(org, &body_bytes), &signed.signature) {
        return Err(AnnouncementDecodeError::BadSignature);
    }
    let wire = signed.body;
    let kind = match wire.kind {
        1 => AnnouncementKind::State,
        2 => AnnouncementKind::Leaving,
        _ => return Err(AnnouncementDecodeError::Invalid("kind")),
    };
    let rep = if wire.rep.is_empty() {
        None
    } else {
        Some(PeerId::from_bytes(&wire.rep).map_err(|_| AnnouncementDecodeError::Invalid("rep"))?)
    };
    if (wire.term == 0) != rep.is_none() {
        return Err(AnnouncementDecodeError::Invalid("term/rep"));
    }
    if wire.succession.len() > MAX_WIRE_SUCCESSION {
        return Err(AnnouncementDecodeError::Invalid("succession length"));
    }
    let succession = wire
        .succession
        .iter()
        .map(|b| PeerId::from_bytes(b).map_err(|_| AnnouncementDecodeError::Invalid("succession")))
        .collect::<Result<Vec<_>, _>>()?;
    if wire.heartbeat_ms == 0 || wire.heartbeat_ms > MAX_HEARTBEAT_MS {
        return Err(AnnouncementDecodeError::Invalid("heartbeat"));
    }
    let announcement = Announcement {
        kind,
        incarnation: wire.incarnation,
        seq: wire.seq,
        heartbeat: std::time::Duration::from_millis(u64::from(wire.heartbeat_ms)),
        score: wire.score,
        term: wire.term,
        rep,
        ballot_score: wire.ballot_score,
        reason: reason_from(wire.reason).ok_or(AnnouncementDecodeError::Invalid("reason"))?,
        rep_reachable: match wire.rep_reachable {
            0 => false,
            1 => true,
            _ => return Err(AnnouncementDecodeError::Invalid("rep_reachable")),
        },
        succession,
    };
    Ok((sender_key.to_peer_id(), announcement))
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use proptest::prelude::*;

    use super::*;

    fn key(seed: u8) -> Keypair {
        Keypair::ed25519_from_bytes([seed; 32]).unwrap()
    }

    fn peer(seed: u8) -> PeerId {
        key(seed).public().to_peer_id()
    }

    fn org() -> OrgName {
        OrgName::new("neighbourhood").unwrap()
    }

    fn sample() -> Announcement<PeerId> {
        Announcement {
            kind: AnnouncementKind::State,
            incarnation: 0x0102030405060708,
            seq: 9,
            heartbeat: std::time::Duration::from_millis(300),
            score: 4,
            term: 3,
            rep: Some(peer(1)),
            ballot_score: 7,
            reason: Reason::Crash,
            rep_reachable: true,
            succession: vec![peer(2)],
        }
    }

    #[test]
    fn round_trip() {
        let a = sample();
        let bytes = encode_announcement(&a, &org(), &key(5));
        assert_eq!(decode_announcement(&bytes, &org()).unwrap(), (peer(5), a));
    }

    /// The layout of docs/election.md, byte for byte.
    #[test]
    fn pinned_encoding() {
        let bytes = encode_announcement(&sample(), &org(), &key(5));
        let rep = peer(1).to_bytes();
        let next = peer(2).to_bytes();
        let sender_key = key(5).public().encode_protobuf();
        let mut body = vec![3u8, 1]; // version, kind state
        body.extend_from_slice(&0x0102030405060708u64.to_be_bytes());
        body.extend_from_slice(&9u64.to_be_bytes());
        body.extend_from_slice(&300u32.to_be_bytes()); // heartbeat ms
        body.extend_from_slice(&4u32.to_be_bytes());
        body.extend_from_slice(&3u64.to_be_bytes());
        body.extend_from_slice(&(rep.len() as u64).to_be_bytes());
        body.extend_from_slice(&rep);
        body.extend_from_slice(&7u32.to_be_bytes()); // ballot score
        body.push(2); // reason crash
        body.push(1); // rep reachable
        body.extend_from_slice(&1u64.to_be_bytes());
        body.extend_from_slice(&(next.len() as u64).to_be_bytes());
        body.extend_from_slice(&next);
        body.extend_from_slice(&(sender_key.len() as u64).to_be_bytes());
        body.extend_from_slice(&sender_key);
        let mut signed = b"/borg/election/3.0.0".to_vec();
        signed.extend_from_slice(&13u64.to_be_bytes());
        signed.extend_from_slice(b"neighbourhood");
        signed.extend_from_slice(&body);
        let signature = key(5).sign(&signed).unwrap();
        let mut expected = body;
        expected.extend_from_slice(&(signature.len() as u64).to_be_bytes());
        expected.extend_from_slice(&signature);
        assert_eq!(bytes, expected);
        assert_eq!(rep.len(), 38, "ed25519 peer ids are 38 bytes");
        assert_eq!(sender_key.len(), 36, "ed25519 protobuf keys are 36 bytes");
        assert_eq!(signature.len(), 64);
    }

    #[test]
    fn signature_binds_sender_and_org() {
        let bytes = encode_announcement(&sample(), &org(), &key(5));
        let other_org = OrgName::new("elsewhere").unwrap();
        assert!(matches!(
            decode_announcement(&bytes, &other_org),
            Err(AnnouncementDecodeError::BadSignature)
        ));
        // Any flipped bit of the body (score, term, succession, key) breaks the signature or
        // the framing.
        let body_len = bytes.len() - 8 - 64;
        for i in 1..body_len {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            assert!(
                decode_announcement(&tampered, &org()).is_err(),
                "byte {i} changed unnoticed"
            );
        }
    }

    #[test]
    fn inconsistent_term_and_rep_is_invalid() {
        let mut a = sample();
        a.rep = None;
        assert!(decode_announcement(&encode_announcement(&a, &org(), &key(5)), &org()).is_err());
    }

    #[test]
    fn truncations_and_oversize_are_errors() {
        let bytes = encode_announcement(&sample(), &org(), &key(5));
        for len in 0..bytes.len() {
            assert!(decode_announcement(&bytes[..len], &org()).is_err());
        }
        assert!(decode_announcement(&vec![2u8; MAX_ANNOUNCEMENT_BYTES + 1], &org()).is_err());
        let mut v1 = bytes.clone();
        v1[0] = 1;
        assert!(matches!(
            decode_announcement(&v1, &org()),
            Err(AnnouncementDecodeError::UnsupportedVersion(1))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_announcement(&bytes, &org());
        }

        #[test]
        fn decode_never_panics_on_mutated_announcements(
            at in 0usize..400,
            value in any::<u8>(),
            cut in 0usize..400,
        ) {
            let mut bytes = encode_announcement(&sample(), &org(), &key(5));
            let at = at % bytes.len();
            bytes[at] = value;
            bytes.truncate(cut.max(1));
            let _ = decode_announcement(&bytes, &org());
        }
    }
}
