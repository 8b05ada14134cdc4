//! Ed25519 signature checks of envelopes: one at a time, or many at once.
//!
//! Signatures are checked under the ZIP-215 rules (`ed25519-zebra`): the cofactored
//! verification equation, `s` canonical, any encoding of `A` and `R` that decompresses. Those
//! rules exist so that checking signatures one by one and in a batch accept exactly the same
//! signatures. With the usual (cofactorless) single check, a batch accepts some signatures a
//! single check rejects, and an author could then craft a message that nodes under load (which
//! batch) deliver and idle nodes (which do not) reject. Every signature an honest signer
//! makes passes both rule sets.
//!
//! Why batches: a receiver under load spent ~29 % of its CPU checking envelope signatures (perf
//! of a receiver in `borg-bench --only org-throughput`). A batch of 16 signatures costs ~19 µs
//! a signature when one author wrote them and ~31 µs when 16 did, against ~53 µs checked one by
//! one (this machine).

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes, batch};
use libp2p::identity::PublicKey;

/// The most signatures checked in one batch equation. Larger batches of distinct authors cost
/// more per signature again on this machine (~31 µs at 16, ~37 µs at 64), and a failed batch
/// is checked again one by one, so a bad signature costs the honest ones of its batch less.
const BATCH_LIMIT: usize = 16;

/// How many decoded keys are remembered.
const KEY_CACHE_SIZE: usize = 4096;

/// A public key as read from a protobuf encoding, in the two forms envelopes need.
#[derive(Clone)]
pub(crate) struct DecodedKey {
    /// For peer ids.
    pub(crate) public: PublicKey,
    /// For checking envelope signatures under ZIP-215.
    verification: VerificationKey,
}

/// Decodes a protobuf public key for checking envelope signatures, remembering recent ones.
///
/// Decoding an ed25519 key decompresses a curve point (a field inversion and a square root),
/// which cost as much as a fifth of a verification; an org has few authors and relayers, each
/// sending many messages. Bounded: the cache is emptied when it reaches `KEY_CACHE_SIZE`.
pub(crate) fn decode_key(bytes: &[u8]) -> Result<DecodedKey, BadKey> {
    static CACHE: KeyCache<DecodedKey> = OnceLock::new();
    cached(&CACHE, bytes, |bytes| {
        let public = decode_public_key(bytes)?;
        let ed25519 = public.clone().try_into_ed25519().map_err(|_| BadKey)?;
        let verification = VerificationKey::try_from(ed25519.to_bytes()).map_err(|_| BadKey)?;
        Ok(DecodedKey {
            public,
            verification,
        })
    })
}

/// Decodes a protobuf public key for libp2p's own checks (election announcements), remembering
/// recent ones: the same reasons as [`decode_key`], without the second decompression an
/// envelope key needs (a node in a large org hears announcements from many members).
pub(crate) fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, BadKey> {
    static CACHE: KeyCache<PublicKey> = OnceLock::new();
    cached(&CACHE, bytes, |bytes| {
        PublicKey::try_decode_protobuf(bytes).map_err(|_| BadKey)
    })
}

type KeyCache<T> = OnceLock<Mutex<HashMap<Vec<u8>, T>>>;

fn cached<T: Clone>(
    cache: &'static KeyCache<T>,
    bytes: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<T, BadKey>,
) -> Result<T, BadKey> {
    let cache = cache.get_or_init(Default::default);
    if let Ok(cache) = cache.lock()
        && let Some(key) = cache.get(bytes)
    {
        return Ok(key.clone());
    }
    let key = decode(bytes)?;
    if let Ok(mut cache) = cache.lock() {
        if cache.len() >= KEY_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(bytes.to_vec(), key.clone());
    }
    Ok(key)
}

/// The bytes are not an ed25519 public key in libp2p's protobuf encoding.
#[derive(Debug)]
pub(crate) struct BadKey;

/// One signature to check: `signature` by `key` over `signed`.
#[derive(Clone)]
pub(crate) struct SignatureCheck {
    key: VerificationKey,
    signature: Option<Signature>,
    signed: Vec<u8>,
}

impl std::fmt::Debug for SignatureCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureCheck")
            .field("key", &hex::encode(VerificationKeyBytes::from(self.key)))
            .field("signed_len", &self.signed.len())
            .finish_non_exhaustive()
    }
}

impl SignatureCheck {
    /// A check of `signature` (which must be 64 bytes to pass) by `key` over `signed`.
    pub(crate) fn new(key: &DecodedKey, signature: &[u8], signed: Vec<u8>) -> Self {
        Self {
            key: key.verification,
            signature: Signature::from_slice(signature).ok(),
            signed,
        }
    }

    /// Whether the signature verifies.
    pub(crate) fn passes(&self) -> bool {
        self.signature
            .is_some_and(|signature| self.key.verify(&signature, &self.signed).is_ok())
    }
}

/// Whether every one of `checks` passes, checked in batches.
///
/// Equivalent to `checks.all(SignatureCheck::passes)`, which is what ZIP-215 guarantees, but
/// cheaper when there are several: one multi-scalar multiplication per batch instead of one
/// double-scalar multiplication per signature, and the key of an author who signed several
/// of them decompressed once.
pub(crate) fn all_pass<'a>(checks: impl IntoIterator<Item = &'a SignatureCheck>) -> bool {
    let checks: Vec<&SignatureCheck> = checks.into_iter().collect();
    if let [one] = checks.as_slice() {
        // A batch of one costs more than a single check (~64 against ~53 µs).
        return one.passes();
    }
    checks.chunks(BATCH_LIMIT).all(|chunk| {
        let mut verifier = batch::Verifier::new();
        for check in chunk {
            let Some(signature) = check.signature else {
                return false;
            };
            verifier.queue((
                VerificationKeyBytes::from(check.key),
                signature,
                &check.signed,
            ));
        }
        // The batch's random coefficients must be unpredictable to whoever chose the
        // signatures, or invalid ones could be made to cancel out.
        verifier.verify(rand::thread_rng()).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;

    fn check(key: &Keypair, message: &[u8]) -> SignatureCheck {
        let decoded = decode_key(&key.public().encode_protobuf()).unwrap();
        SignatureCheck::new(&decoded, &key.sign(message).unwrap(), message.to_vec())
    }

    #[test]
    fn libp2p_signatures_pass_alone_and_in_batches() {
        let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
        let checks: Vec<SignatureCheck> = (0..40)
            .map(|i| check(&keys[i % 3], format!("message {i}").as_bytes()))
            .collect();
        assert!(checks.iter().all(SignatureCheck::passes));
        assert!(all_pass(&checks));
        assert!(all_pass(&checks[..1]));
        assert!(all_pass(std::iter::empty()));
    }

    #[test]
    fn one_bad_signature_fails_its_batch() {
        let key = Keypair::generate_ed25519();
        let mut checks: Vec<SignatureCheck> = (0..20)
            .map(|i| check(&key, format!("message {i}").as_bytes()))
            .collect();
        // In the second chunk, so a batch that only checked the first would pass.
        checks[17].signed.push(0);
        assert!(!checks[17].passes());
        assert!(!all_pass(&checks));
        assert!(all_pass(&checks[..17]));
    }

    #[test]
    fn a_signature_of_the_wrong_length_fails() {
        let key = Keypair::generate_ed25519();
        let decoded = decode_key(&key.public().encode_protobuf()).unwrap();
        let mut signature = key.sign(b"m").unwrap();
        signature.push(0);
        let long = SignatureCheck::new(&decoded, &signature, b"m".to_vec());
        assert!(!long.passes());
        assert!(!all_pass([&long, &check(&key, b"n")]));
    }

    #[test]
    fn a_key_that_is_not_a_key_is_refused() {
        assert!(decode_key(&[8, 1, 18, 32]).is_err());
        assert!(decode_key(b"not a key").is_err());
    }
}
