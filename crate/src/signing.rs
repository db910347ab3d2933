//! Contributor identity and result signatures (ed25519).
//!
//! A result is signed over a canonical, domain-separated message that binds the unit, the lease,
//! the kernel and the SHA-256 of the output bytes, so a signature cannot be replayed onto another
//! lease, unit, kernel or output.

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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("public key must be 64 hex characters (32 bytes)")]
    MalformedPublicKey,
    #[error("public key is not a valid ed25519 point")]
    InvalidPublicKey,
    #[error("signature must be 128 hex characters (64 bytes)")]
    MalformedSignature,
    #[error("signature does not match the result and public key")]
    Mismatch,
    #[error("secret key must be 32 bytes, got {0}")]
    MalformedSecretKey(usize),
    #[error("no secure random source: {0}")]
    NoRandom(String),
}

/// A contributor's ed25519 signing key.
pub struct ContributorKey {
    key: SigningKey,
}

impl ContributorKey {
    /// A fresh key from the operating system's (or browser's) secure random source.
    pub fn generate() -> Result<Self, SignatureError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| SignatureError::NoRandom(e.to_string()))?;
        Self::from_secret_bytes(&seed)
    }

    /// Restores a key saved with [`ContributorKey::secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, SignatureError> {
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SignatureError::MalformedSecretKey(bytes.len()))?;
        Ok(ContributorKey {
            key: SigningKey::from_bytes(&seed),
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
    let mut sig = [0u8; 64];
    if signature_hex.len() != 128 {
        return Err(SignatureError::MalformedSignature);
    }
    hex::decode_to_slice(signature_hex, &mut sig)
        .map_err(|_| SignatureError::MalformedSignature)?;
    let msg = result_message(unit_id, lease_id, kernel_hash, &ContentHash::of(output));
    key.verify_strict(&msg, &Signature::from_bytes(&sig))
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

    #[test]
    fn the_message_layout_is_stable() {
        let msg = result_message(1, "ab", &ContentHash([1; 32]), &ContentHash([2; 32]));
        assert!(msg.starts_with(RESULT_DOMAIN));
        assert_eq!(msg.len(), RESULT_DOMAIN.len() + 4 + 2 + 8 + 32 + 32);
    }
}
