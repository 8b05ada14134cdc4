//! The byte layout of an election announcement (`docs/election.md`, "Wire format").
//!
//! Same conventions as the envelope: bincode 2, big-endian fixed-width integers, `u64` length
//! prefixes, a hard decode limit. The org is not in the announcement: it is implied by the
//! control topic it is published on, and the sender is gossipsub's signed source.

use bincode::{Decode, Encode};
use libp2p::PeerId;

use super::{Announcement, AnnouncementKind, Reason};

/// The announcement format version.
pub const ANNOUNCEMENT_VERSION: u8 = 1;

/// The largest encoded announcement accepted.
pub const MAX_ANNOUNCEMENT_BYTES: usize = 8 * 1024;

/// The longest line of succession accepted on the wire.
pub const MAX_WIRE_SUCCESSION: usize = 128;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_ANNOUNCEMENT_BYTES>()
}

#[derive(Encode, Decode)]
struct WireAnnouncement {
    version: u8,
    kind: u8,
    incarnation: u64,
    seq: u64,
    score: u32,
    term: u64,
    rep: Vec<u8>,
    reason: u8,
    rep_reachable: u8,
    succession: Vec<Vec<u8>>,
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

/// Encodes an announcement.
pub fn encode_announcement(ann: &Announcement<PeerId>) -> Vec<u8> {
    let wire = WireAnnouncement {
        version: ANNOUNCEMENT_VERSION,
        kind: match ann.kind {
            AnnouncementKind::State => 1,
            AnnouncementKind::Leaving => 2,
        },
        incarnation: ann.incarnation,
        seq: ann.seq,
        score: ann.score,
        term: ann.term,
        rep: ann.rep.map(|p| p.to_bytes()).unwrap_or_default(),
        reason: reason_code(ann.reason),
        rep_reachable: u8::from(ann.rep_reachable),
        succession: ann
            .succession
            .iter()
            .take(MAX_WIRE_SUCCESSION)
            .map(|p| p.to_bytes())
            .collect(),
    };
    // Cannot fail: the succession is truncated so the whole stays far below the limit.
    bincode::encode_to_vec(&wire, config()).unwrap_or_default()
}

/// Decodes an announcement received from the network. Never panics.
pub fn decode_announcement(bytes: &[u8]) -> Result<Announcement<PeerId>, AnnouncementDecodeError> {
    if bytes.len() > MAX_ANNOUNCEMENT_BYTES {
        return Err(AnnouncementDecodeError::TooLarge(bytes.len()));
    }
    match bytes.first() {
        Some(&ANNOUNCEMENT_VERSION) | None => {}
        Some(&v) => return Err(AnnouncementDecodeError::UnsupportedVersion(v)),
    }
    let (wire, used): (WireAnnouncement, usize) = bincode::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(AnnouncementDecodeError::TrailingBytes);
    }
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
    Ok(Announcement {
        kind,
        incarnation: wire.incarnation,
        seq: wire.seq,
        score: wire.score,
        term: wire.term,
        rep,
        reason: reason_from(wire.reason).ok_or(AnnouncementDecodeError::Invalid("reason"))?,
        rep_reachable: match wire.rep_reachable {
            0 => false,
            1 => true,
            _ => return Err(AnnouncementDecodeError::Invalid("rep_reachable")),
        },
        succession,
    })
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use proptest::prelude::*;

    use super::*;

    fn peer(seed: u8) -> PeerId {
        Keypair::ed25519_from_bytes([seed; 32])
            .unwrap()
            .public()
            .to_peer_id()
    }

    fn sample() -> Announcement<PeerId> {
        Announcement {
            kind: AnnouncementKind::State,
            incarnation: 0x0102030405060708,
            seq: 9,
            score: 4,
            term: 3,
            rep: Some(peer(1)),
            reason: Reason::Crash,
            rep_reachable: true,
            succession: vec![peer(2)],
        }
    }

    #[test]
    fn round_trip() {
        let a = sample();
        assert_eq!(decode_announcement(&encode_announcement(&a)).unwrap(), a);
    }

    /// The layout of docs/election.md, byte for byte.
    #[test]
    fn pinned_encoding() {
        let bytes = encode_announcement(&sample());
        let rep = peer(1).to_bytes();
        let next = peer(2).to_bytes();
        let mut expected = vec![1u8, 1]; // version, kind state
        expected.extend_from_slice(&0x0102030405060708u64.to_be_bytes());
        expected.extend_from_slice(&9u64.to_be_bytes());
        expected.extend_from_slice(&4u32.to_be_bytes());
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(&(rep.len() as u64).to_be_bytes());
        expected.extend_from_slice(&rep);
        expected.push(2); // reason crash
        expected.push(1); // rep reachable
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&(next.len() as u64).to_be_bytes());
        expected.extend_from_slice(&next);
        assert_eq!(bytes, expected);
        assert_eq!(rep.len(), 38, "ed25519 peer ids are 38 bytes");
    }

    #[test]
    fn inconsistent_term_and_rep_is_invalid() {
        let mut a = sample();
        a.rep = None;
        assert!(decode_announcement(&encode_announcement(&a)).is_err());
    }

    #[test]
    fn truncations_and_oversize_are_errors() {
        let bytes = encode_announcement(&sample());
        for len in 0..bytes.len() {
            assert!(decode_announcement(&bytes[..len]).is_err());
        }
        assert!(decode_announcement(&vec![1u8; MAX_ANNOUNCEMENT_BYTES + 1]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_announcement(&bytes);
        }
    }
}
