//! Contributor identity and result signatures (ed25519).
//!
//! A result is signed over a canonical, domain-separated message that binds the unit, the lease,
//! the kernel and the SHA-256 of the output bytes, so a signature cannot be replayed onto another
//! lease, unit, kernel or output.
//!
//! Asking for work and giving it back are signed too ([`lease_message`], [`release_message`]):
//! they change the relay's state on the key's behalf (its leases in flight, its rate limit), so
//! only the key's holder may make them. A lease request carries the time it was signed, which
//! the relay accepts once per key and only near its own clock, so a captured request cannot be
//! replayed; a release names its lease, which takes one release.
//!
//! Linking a wallet takes a second, differently domain-separated signature: the session key signs
//! the very Sign-In with Ethereum message the wallet signed ([`link_message`]), so nobody can link
//! someone else's public key to their own wallet, and a result signature can never pass for a
//! link signature or the other way round.

use crate::hash::ContentHash;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Prefix of every signed result message. Changing the message layout means changing this.
pub const RESULT_DOMAIN: &[u8] = b"glowworm/result/v1\0";

/// The canonical bytes a contributor signs for one result:
/// `RESULT_DOMAIN || u32be(len(lease_id)) || lease_id || i64be(unit_id) || kernel_hash || sha256(output)`.
pub fn result_message(
    unit_id: i64,
    lease_id: &str,
    kernel_hash: &ContentHash,
    output_digest: &ContentHash,
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(RESULT_DOMAIN.len() + 4 + lease_id.len() + 8 + 64);
    msg.extend_from_slice(RESULT_DOMAIN);
    msg.extend_from_slice(&(lease_id.len() as u32).to_be_bytes());
    msg.extend_from_slice(lease_id.as_bytes());
    msg.extend_from_slice(&unit_id.to_be_bytes());
    msg.extend_from_slice(kernel_hash.as_bytes());
    msg.extend_from_slice(output_digest.as_bytes());
    msg
}

/// Prefix of every signed lease request. Changing the message layout means changing this.
pub const LEASE_DOMAIN: &[u8] = b"glowworm/lease/v1\0";

/// What a lease request says besides the key and the time, each optional: the adapter's vendor
/// and architecture, the partner and the embedding origin.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseFields<'a> {
    pub adapter: Option<(&'a str, &'a str)>,
    pub partner: Option<&'a str>,
    pub origin: Option<&'a str>,
}

/// Appends `u32be(len) || bytes` for `Some`, `u32be(0xffffffff)` for `None`, so that no two
/// different requests give one message.
fn push_field(msg: &mut Vec<u8>, field: Option<&str>) {
    match field {
        Some(text) => {
            msg.extend_from_slice(&(text.len() as u32).to_be_bytes());
            msg.extend_from_slice(text.as_bytes());
        }
        None => msg.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

/// The canonical bytes a contributor signs to ask for work:
/// `LEASE_DOMAIN || public key hex || i64be(signed_at_ms) || vendor || architecture || partner
/// || origin`, each text field as [`push_field`] writes it.
pub fn lease_message(public_hex: &str, signed_at_ms: i64, fields: LeaseFields) -> Vec<u8> {
    let mut msg = Vec::with_capacity(LEASE_DOMAIN.len() + 64 + 8 + 64);
    msg.extend_from_slice(LEASE_DOMAIN);
    msg.extend_from_slice(public_hex.to_ascii_lowercase().as_bytes());
    msg.extend_from_slice(&signed_at_ms.to_be_bytes());
    push_field(&mut msg, fields.adapter.map(|(vendor, _)| vendor));
    push_field(
        &mut msg,
        fields.adapter.map(|(_, architecture)| architecture),
    );
    push_field(&mut msg, fields.partner);
    push_field(&mut msg, fields.origin);
    msg
}

/// Signing times for one key's lease requests: the clock's time, or one millisecond after the
/// last one when the clock has not moved on (several requests within a millisecond, or a clock
/// set back), since the relay takes a key's requests only in increasing order.
#[derive(Debug, Default)]
pub struct SigningClock {
    last_ms: std::sync::atomic::AtomicI64,
}

impl SigningClock {
    pub const fn new() -> Self {
        SigningClock {
            last_ms: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// The time to sign the next request at, given the clock reads `now_ms`.
    pub fn next(&self, now_ms: i64) -> i64 {
        use std::sync::atomic::Ordering;
        let mut last = self.last_ms.load(Ordering::Relaxed);
        loop {
            let next = now_ms.max(last + 1);
            match self.last_ms.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }
}

/// Prefix of every signed release. Changing the message layout means changing this.
pub const RELEASE_DOMAIN: &[u8] = b"glowworm/release/v1\0";

/// The canonical bytes a contributor signs to give lease `lease_id` back, for `reason` (its
/// wire name): `RELEASE_DOMAIN || u32be(len(lease_id)) || lease_id || reason`.
pub fn release_message(lease_id: &str, reason: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(RELEASE_DOMAIN.len() + 4 + lease_id.len() + reason.len());
    msg.extend_from_slice(RELEASE_DOMAIN);
    push_field(&mut msg, Some(lease_id));
    msg.extend_from_slice(reason.as_bytes());
    msg
}

/// Prefix of every signed link message. Changing the message layout means changing this.
pub const LINK_DOMAIN: &[u8] = b"glowworm/link/v1\0";

/// The canonical bytes a session key signs to agree to a wallet link:
/// `LINK_DOMAIN || siwe_message` (the EIP-4361 text exactly as the wallet signed it, UTF-8).
pub fn link_message(siwe_message: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(LINK_DOMAIN.len() + siwe_message.len());
    msg.extend_from_slice(LINK_DOMAIN);
    msg.extend_from_slice(siwe_message.as_bytes());
    msg
}

/// The resource a Sign-In with Ethereum message lists to name the session key it links:
/// `urn:glowworm:session:<public key, lowercase hex>`.
pub fn session_resource(public_hex: &str) -> String {
    format!("urn:glowworm:session:{}", public_hex.to_ascii_lowercase())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("public key must be 64 hex characters (32 bytes)")]
    MalformedPublicKey,
    #[error("public key is not a valid ed25519 point")]
    InvalidPublicKey,
    #[error("signature must be 128 hex characters (64 bytes)")]
    MalformedSignature,
    #[error("signature does not match the signed message and public key")]
    Mismatch,
    #[error("secret key must be 32 bytes, got {0}")]
    MalformedSecretKey(usize),
    #[error("no secure random source: {0}")]
    NoRandom(String),
}

/// 32 bytes from the operating system's (or browser's) secure random source: a key's seed.
fn random_seed() -> Result<[u8; 32], SignatureError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| SignatureError::NoRandom(e.to_string()))?;
    Ok(seed)
}

/// The signing key of a saved 32-byte seed.
fn signing_key(seed: &[u8]) -> Result<SigningKey, SignatureError> {
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| SignatureError::MalformedSecretKey(seed.len()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A contributor's ed25519 signing key.
pub struct ContributorKey {
    key: SigningKey,
    /// Times this key's lease requests are signed at, always moving forward.
    lease_clock: SigningClock,
}

impl ContributorKey {
    /// A fresh key from the operating system's (or browser's) secure random source.
    pub fn generate() -> Result<Self, SignatureError> {
        Self::from_secret_bytes(&random_seed()?)
    }

    /// Restores a key saved with [`ContributorKey::secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        Ok(ContributorKey {
            key: signing_key(bytes)?,
            lease_clock: SigningClock::new(),
        })
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key as 64 lowercase hex characters, as it appears on the wire.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Signs a result; returns the signature as 128 hex characters.
    pub fn sign_result(
        &self,
        unit_id: i64,
        lease_id: &str,
        kernel_hash: &ContentHash,
        output: &[u8],
    ) -> String {
        let msg = result_message(unit_id, lease_id, kernel_hash, &ContentHash::of(output));
        hex::encode(self.key.sign(&msg).to_bytes())
    }

    /// The time to sign this key's next lease request at, given the clock reads `now_ms` (Unix
    /// milliseconds): later than every earlier one ([`SigningClock`]), so requests made together
    /// (a worker's lanes, say) never share a time the relay would take for a replay.
    pub fn lease_time(&self, now_ms: i64) -> i64 {
        self.lease_clock.next(now_ms)
    }

    /// Signs a lease request made at `signed_at_ms`; returns the signature as 128 hex characters.
    pub fn sign_lease(&self, signed_at_ms: i64, fields: LeaseFields) -> String {
        let msg = lease_message(&self.public_hex(), signed_at_ms, fields);
        hex::encode(self.key.sign(&msg).to_bytes())
    }

    /// Signs the release of `lease_id` for `reason`; returns the signature as 128 hex characters.
    pub fn sign_release(&self, lease_id: &str, reason: &str) -> String {
        hex::encode(self.key.sign(&release_message(lease_id, reason)).to_bytes())
    }

    /// Agrees to link this key to the wallet that signed `siwe_message`; returns the signature
    /// over [`link_message`] as 128 hex characters.
    pub fn sign_link(&self, siwe_message: &str) -> String {
        hex::encode(self.key.sign(&link_message(siwe_message)).to_bytes())
    }
}

/// Prefix of every credit receipt the relay signs. Changing the message layout means changing
/// this.
pub const CREDIT_DOMAIN: &[u8] = b"glowworm/credit/v1\0";

/// The canonical bytes a relay signs for a credit ([`crate::wire::SignedCredit`]):
/// `CREDIT_DOMAIN || relay_key (32 bytes) || i64be(result_id) || i64be(unit_id) ||
/// u32be(len(account)) || account || i64be(credited) || i64be(credited_at_ms)`.
pub fn credit_message(
    relay_key: &VerifyingKey,
    result_id: i64,
    unit_id: i64,
    account: &str,
    credited: i64,
    credited_at_ms: i64,
) -> Vec<u8> {
    let mut msg = Vec::with_capacity(CREDIT_DOMAIN.len() + 32 + 8 * 4 + 4 + account.len());
    msg.extend_from_slice(CREDIT_DOMAIN);
    msg.extend_from_slice(relay_key.as_bytes());
    msg.extend_from_slice(&result_id.to_be_bytes());
    msg.extend_from_slice(&unit_id.to_be_bytes());
    msg.extend_from_slice(&(account.len() as u32).to_be_bytes());
    msg.extend_from_slice(account.as_bytes());
    msg.extend_from_slice(&credited.to_be_bytes());
    msg.extend_from_slice(&credited_at_ms.to_be_bytes());
    msg
}

/// A relay's own ed25519 key: it signs the credits it makes ([`RelayKey::sign_credit`]), so a
/// contributor can prove each one, whatever a later payout root says.
pub struct RelayKey {
    key: SigningKey,
}

impl RelayKey {
    /// A fresh key from the operating system's secure random source.
    pub fn generate() -> Result<Self, SignatureError> {
        Self::from_secret_bytes(&random_seed()?)
    }

    /// Restores a key saved with [`RelayKey::secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        Ok(RelayKey {
            key: signing_key(bytes)?,
        })
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key as 64 lowercase hex characters.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Signs that `account` was credited `credited` for result `result_id` of `unit_id` at
    /// `credited_at_ms`.
    pub fn sign_credit(
        &self,
        result_id: i64,
        unit_id: i64,
        account: &str,
        credited: i64,
        credited_at_ms: i64,
    ) -> crate::wire::SignedCredit {
        let msg = credit_message(
            &self.key.verifying_key(),
            result_id,
            unit_id,
            account,
            credited,
            credited_at_ms,
        );
        crate::wire::SignedCredit {
            result_id,
            unit_id,
            account: account.to_string(),
            credited,
            credited_at_ms,
            relay_key: self.public_hex(),
            signature: hex::encode(self.key.sign(&msg).to_bytes()),
        }
    }
}

/// Checks a credit receipt's signature by the relay key it names (strict ed25519). Whether that
/// key is the relay's is for the caller to check (`GET /v1/stats` names it).
pub fn verify_credit(credit: &crate::wire::SignedCredit) -> Result<(), SignatureError> {
    let key = parse_public_key(&credit.relay_key)?;
    let msg = credit_message(
        &key,
        credit.result_id,
        credit.unit_id,
        &credit.account,
        credit.credited,
        credit.credited_at_ms,
    );
    verify_message_with_key(&key, &credit.signature, &msg)
}

/// Parses a hex public key, checking it is a valid ed25519 point.
pub fn parse_public_key(public_hex: &str) -> Result<VerifyingKey, SignatureError> {
    let mut bytes = [0u8; 32];
    if public_hex.len() != 64 {
        return Err(SignatureError::MalformedPublicKey);
    }
    hex::decode_to_slice(public_hex, &mut bytes).map_err(|_| SignatureError::MalformedPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| SignatureError::InvalidPublicKey)
}

/// Checks a result signature (strict ed25519: no malleable or small-order keys).
pub fn verify_result(
    public_hex: &str,
    signature_hex: &str,
    unit_id: i64,
    lease_id: &str,
    kernel_hash: &ContentHash,
    output: &[u8],
) -> Result<(), SignatureError> {
    let key = parse_public_key(public_hex)?;
    verify_result_with_key(&key, signature_hex, unit_id, lease_id, kernel_hash, output)
}

/// [`verify_result`] with a public key already parsed (the relay keeps parsed keys in memory).
pub fn verify_result_with_key(
    key: &VerifyingKey,
    signature_hex: &str,
    unit_id: i64,
    lease_id: &str,
    kernel_hash: &ContentHash,
    output: &[u8],
) -> Result<(), SignatureError> {
    let msg = result_message(unit_id, lease_id, kernel_hash, &ContentHash::of(output));
    verify_message_with_key(key, signature_hex, &msg)
}

/// Checks a session key's link signature over `siwe_message` (strict ed25519).
pub fn verify_link(
    public_hex: &str,
    signature_hex: &str,
    siwe_message: &str,
) -> Result<(), SignatureError> {
    verify_message(public_hex, signature_hex, &link_message(siwe_message))
}

fn verify_message(public_hex: &str, signature_hex: &str, msg: &[u8]) -> Result<(), SignatureError> {
    verify_message_with_key(&parse_public_key(public_hex)?, signature_hex, msg)
}

/// Checks a signature over `msg` (such as a [`lease_message`] or [`release_message`]) with a
/// parsed key (strict ed25519).
pub fn verify_message_with_key(
    key: &VerifyingKey,
    signature_hex: &str,
    msg: &[u8],
) -> Result<(), SignatureError> {
    let mut sig = [0u8; 64];
    if signature_hex.len() != 128 {
        return Err(SignatureError::MalformedSignature);
    }
    hex::decode_to_slice(signature_hex, &mut sig)
        .map_err(|_| SignatureError::MalformedSignature)?;
    key.verify_strict(msg, &Signature::from_bytes(&sig))
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (ContributorKey, ContentHash, Vec<u8>) {
        let key = ContributorKey::generate().unwrap();
        (key, ContentHash::of(b"kernel"), vec![1, 2, 3, 4])
    }

    #[test]
    fn a_signed_result_verifies() {
        let (key, kh, out) = setup();
        let sig = key.sign_result(7, "lease-a", &kh, &out);
        assert_eq!(
            verify_result(&key.public_hex(), &sig, 7, "lease-a", &kh, &out),
            Ok(())
        );
    }

    #[test]
    fn lease_and_release_signatures_cover_every_field() {
        let key = ContributorKey::generate().unwrap();
        let pk = parse_public_key(&key.public_hex()).unwrap();
        let fields = LeaseFields {
            adapter: Some(("nvidia", "hopper")),
            partner: Some("0xabc"),
            origin: Some("https://blog.example"),
        };
        let sig = key.sign_lease(1_000, fields);
        let msg = |at, f| lease_message(&key.public_hex(), at, f);
        assert_eq!(
            verify_message_with_key(&pk, &sig, &msg(1_000, fields)),
            Ok(())
        );
        let mismatch = Err(SignatureError::Mismatch);
        for changed in [
            LeaseFields {
                adapter: None,
                ..fields
            },
            LeaseFields {
                adapter: Some(("nvidiahopper", "")),
                ..fields
            },
            LeaseFields {
                partner: None,
                ..fields
            },
            LeaseFields {
                partner: Some(""),
                ..fields
            },
            LeaseFields {
                origin: Some("https://evil.example"),
                ..fields
            },
        ] {
            assert_eq!(
                verify_message_with_key(&pk, &sig, &msg(1_000, changed)),
                mismatch
            );
        }
        assert_eq!(
            verify_message_with_key(&pk, &sig, &msg(1_001, fields)),
            mismatch
        );

        let release = key.sign_release("lease-a", "stopped");
        let check =
            |id, reason| verify_message_with_key(&pk, &release, &release_message(id, reason));
        assert_eq!(check("lease-a", "stopped"), Ok(()));
        assert_eq!(check("lease-b", "stopped"), mismatch);
        assert_eq!(check("lease-a", "gpu_failed"), mismatch);
        // Domain separation: a release signature is no result or lease signature.
        assert_ne!(RELEASE_DOMAIN, LEASE_DOMAIN);
        assert_ne!(RELEASE_DOMAIN, RESULT_DOMAIN);
    }

    #[test]
    fn signing_times_always_move_forward() {
        let clock = SigningClock::default();
        assert_eq!(clock.next(1_000), 1_000);
        assert_eq!(clock.next(1_000), 1_001);
        assert_eq!(clock.next(990), 1_002, "a clock set back");
        assert_eq!(clock.next(5_000), 5_000);
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let (key, kh, out) = setup();
        let pk = key.public_hex();
        let sig = key.sign_result(7, "lease-a", &kh, &out);
        let other = ContributorKey::generate().unwrap().public_hex();
        let mismatch = Err(SignatureError::Mismatch);
        assert_eq!(verify_result(&pk, &sig, 8, "lease-a", &kh, &out), mismatch);
        assert_eq!(verify_result(&pk, &sig, 7, "lease-b", &kh, &out), mismatch);
        assert_eq!(
            verify_result(&pk, &sig, 7, "lease-a", &ContentHash::of(b"x"), &out),
            mismatch
        );
        assert_eq!(
            verify_result(&pk, &sig, 7, "lease-a", &kh, &[1, 2, 3, 5]),
            mismatch
        );
        assert_eq!(
            verify_result(&other, &sig, 7, "lease-a", &kh, &out),
            mismatch
        );
    }

    #[test]
    fn malformed_keys_and_signatures_are_named() {
        let (key, kh, out) = setup();
        let sig = key.sign_result(1, "l", &kh, &out);
        assert_eq!(
            verify_result("abc", &sig, 1, "l", &kh, &out),
            Err(SignatureError::MalformedPublicKey)
        );
        assert_eq!(
            verify_result(&key.public_hex(), "00", 1, "l", &kh, &out),
            Err(SignatureError::MalformedSignature)
        );
    }

    #[test]
    fn secret_bytes_restore_the_same_identity() {
        let key = ContributorKey::generate().unwrap();
        let again = ContributorKey::from_secret_bytes(&key.secret_bytes()).unwrap();
        assert_eq!(key.public_hex(), again.public_hex());
        assert!(ContributorKey::from_secret_bytes(&[0; 5]).is_err());
    }

    const SIWE: &str = "relay.example wants you to sign in with your Ethereum account:\n\
        0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\n\nURI: https://relay.example/\n\
        Version: 1\nChain ID: 1\nNonce: abcdefgh12345678\nIssued At: 2025-06-01T12:00:00.000Z";

    #[test]
    fn a_signed_link_verifies_and_binds_the_message_and_key() {
        let key = ContributorKey::from_secret_bytes(&[1; 32]).unwrap();
        let pk = key.public_hex();
        let sig = key.sign_link(SIWE);
        assert_eq!(verify_link(&pk, &sig, SIWE), Ok(()));
        assert_eq!(
            verify_link(&pk, &sig, &SIWE.replace("Chain ID: 1", "Chain ID: 2")),
            Err(SignatureError::Mismatch)
        );
        let other = ContributorKey::from_secret_bytes(&[2; 32]).unwrap();
        assert_eq!(
            verify_link(&other.public_hex(), &sig, SIWE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_link(&pk, &sig[..126], SIWE),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            verify_link("xyz", &sig, SIWE),
            Err(SignatureError::MalformedPublicKey)
        );
        // Upper-case hex is the same key and signature.
        assert_eq!(
            verify_link(&pk.to_uppercase(), &sig.to_uppercase(), SIWE),
            Ok(())
        );
    }

    #[test]
    fn link_and_result_messages_are_domain_separated() {
        let msg = link_message(SIWE);
        assert!(msg.starts_with(LINK_DOMAIN));
        assert_eq!(&msg[LINK_DOMAIN.len()..], SIWE.as_bytes());
        // Neither domain is a prefix of the other, so no link message is a result message.
        assert!(!LINK_DOMAIN.starts_with(RESULT_DOMAIN) && !RESULT_DOMAIN.starts_with(LINK_DOMAIN));
        let key = ContributorKey::from_secret_bytes(&[1; 32]).unwrap();
        let kh = ContentHash::of(b"kernel");
        let result_sig = key.sign_result(1, "l", &kh, &[0; 4]);
        assert_eq!(
            verify_link(&key.public_hex(), &result_sig, SIWE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_session_resource_names_the_key_in_lowercase() {
        let key = ContributorKey::from_secret_bytes(&[1; 32]).unwrap();
        let pk = key.public_hex();
        assert_eq!(
            session_resource(&pk.to_uppercase()),
            format!("urn:glowworm:session:{pk}")
        );
    }

    #[test]
    fn the_message_layout_is_stable() {
        let msg = result_message(1, "ab", &ContentHash([1; 32]), &ContentHash([2; 32]));
        assert!(msg.starts_with(RESULT_DOMAIN));
        assert_eq!(msg.len(), RESULT_DOMAIN.len() + 4 + 2 + 8 + 32 + 32);
    }
}
