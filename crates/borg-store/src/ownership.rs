//! Who may write which key: the rule that stops a hostile peer from overwriting others' data.
//!
//! A store accepts two kinds of record, and nothing else:
//! - **Owned records**, key `/borg/rec/1/<peer id>/<name>`: the value is a [`SignedValue`]
//!   whose key is that peer's and whose signature over `key || payload` verifies. Only the
//!   holder of the peer's private key can write such a key; a peer can republish it (and must,
//!   for replication) but cannot alter it.
//! - **Content-addressed chunks**, key `/borg/chunk/1/<hex SHA-256 of the value>`: anyone may
//!   write one, but only with the bytes that hash to the key, so a write can never replace a
//!   chunk with different data.
//!
//! Kad's own `publisher` field is not trusted for this: it is whatever the sending peer claims.

use bincode::{Decode, Encode};
use libp2p::{
    PeerId,
    identity::{Keypair, PublicKey, SigningError},
};
use sha2::{Digest, Sha256};

/// Prefix of owned record keys.
pub const OWNED_PREFIX: &str = "/borg/rec/1/";

/// Prefix of chunk keys.
pub const CHUNK_PREFIX: &str = "/borg/chunk/1/";

const SIGNING_DOMAIN: &[u8] = b"/borg/rec/1";

fn codec() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
        .with_limit::<{ 16 * 1024 * 1024 }>()
}

/// The value of an owned record: the payload, signed by its owner.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct SignedValue {
    /// Layout version, 1.
    pub version: u8,
    /// The owner's public key (libp2p protobuf encoding).
    pub owner_key: Vec<u8>,
    /// The data.
    pub payload: Vec<u8>,
    /// The owner's signature over `"/borg/rec/1" || key || payload`.
    pub signature: Vec<u8>,
}

fn signing_input(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(SIGNING_DOMAIN.len() + key.len() + payload.len() + 16);
    v.extend_from_slice(SIGNING_DOMAIN);
    v.extend_from_slice(&(key.len() as u64).to_be_bytes());
    v.extend_from_slice(key);
    v.extend_from_slice(payload);
    v
}

/// The key of `owner`'s record `name`.
pub fn owned_key(owner: &PeerId, name: &str) -> Vec<u8> {
    format!("{OWNED_PREFIX}{owner}/{name}").into_bytes()
}

/// The key of a chunk with contents `data`.
pub fn chunk_key(data: &[u8]) -> Vec<u8> {
    let mut key = CHUNK_PREFIX.as_bytes().to_vec();
    key.extend_from_slice(hex_lower(&Sha256::digest(data)).as_bytes());
    key
}

/// The key of a chunk whose contents hash to `sha256`.
pub fn chunk_key_from_hash(sha256: &[u8; 32]) -> Vec<u8> {
    let mut key = CHUNK_PREFIX.as_bytes().to_vec();
    key.extend_from_slice(hex_lower(sha256).as_bytes());
    key
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the record `(key, value)` of `keypair`'s record `name` holding `payload`.
pub fn sign(
    keypair: &Keypair,
    name: &str,
    payload: Vec<u8>,
) -> Result<(Vec<u8>, Vec<u8>), SigningError> {
    let key = owned_key(&keypair.public().to_peer_id(), name);
    let signature = keypair.sign(&signing_input(&key, &payload))?;
    let value = SignedValue {
        version: 1,
        owner_key: keypair.public().encode_protobuf(),
        payload,
        signature,
    };
    let bytes = bincode::encode_to_vec(&value, codec()).unwrap_or_default();
    Ok((key, bytes))
}

/// The payload of a valid owned record value, or why it is not valid.
pub fn open_owned(key: &[u8], value: &[u8]) -> Result<Vec<u8>, String> {
    let rest = key
        .strip_prefix(OWNED_PREFIX.as_bytes())
        .ok_or("not an owned key")?;
    let slash = rest
        .iter()
        .position(|b| *b == b'/')
        .ok_or("owned key without a name")?;
    let owner: PeerId = std::str::from_utf8(&rest[..slash])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("owned key with an invalid peer id")?;
    let (signed, used): (SignedValue, usize) = bincode::decode_from_slice(value, codec())
        .map_err(|e| format!("malformed signed value: {e}"))?;
    if used != value.len() || signed.version != 1 {
        return Err("malformed signed value".into());
    }
    let public =
        PublicKey::try_decode_protobuf(&signed.owner_key).map_err(|_| "invalid owner key")?;
    if public.to_peer_id() != owner {
        return Err(format!(
            "value signed by {} for a key of {owner}",
            public.to_peer_id()
        ));
    }
    if !public.verify(&signing_input(key, &signed.payload), &signed.signature) {
        return Err("bad signature".into());
    }
    Ok(signed.payload)
}

/// Accepts a record only if its writer provably owns the key (see the module docs).
pub fn check(key: &[u8], value: &[u8]) -> Result<(), String> {
    if key.starts_with(OWNED_PREFIX.as_bytes()) {
        return open_owned(key, value).map(drop);
    }
    if key.starts_with(CHUNK_PREFIX.as_bytes()) {
        return if chunk_key(value) == key {
            Ok(())
        } else {
            Err("chunk does not hash to its key".into())
        };
    }
    Err("key outside the borg namespaces".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_can_write_their_keys() {
        let k = Keypair::generate_ed25519();
        let (key, value) = sign(&k, "notes", b"hello".to_vec()).unwrap();
        assert_eq!(check(&key, &value), Ok(()));
        assert_eq!(open_owned(&key, &value).unwrap(), b"hello");
    }

    #[test]
    fn nobody_else_can_write_them() {
        let owner = Keypair::generate_ed25519();
        let thief = Keypair::generate_ed25519();
        let (key, _) = sign(&owner, "notes", b"hello".to_vec()).unwrap();
        let (_, forged) = sign(&thief, "notes", b"overwritten".to_vec()).unwrap();
        assert!(
            check(&key, &forged).is_err(),
            "a value signed by another peer"
        );
        let (_, mut value) = sign(&owner, "notes", b"hello".to_vec()).unwrap();
        let last = value.len() - 1;
        value[last] ^= 1;
        assert!(check(&key, &value).is_err(), "a tampered value");
    }

    #[test]
    fn chunks_must_hash_to_their_key() {
        let key = chunk_key(b"data");
        assert_eq!(check(&key, b"data"), Ok(()));
        assert!(check(&key, b"other").is_err());
    }

    #[test]
    fn other_keys_are_refused() {
        assert!(check(b"/anything", b"x").is_err());
        assert!(check(b"/borg/rec/1/notapeer/x", b"x").is_err());
    }
}
