//! Secret random bytes from the operating system, for lease ids, Freivalds seeds and sign-in
//! nonces.

use crate::error::ApiError;

/// `N` random bytes, or an internal error when the system has no random source.
pub fn bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out)
        .map_err(|e| ApiError::Internal(format!("no secure random source: {e}")))?;
    Ok(out)
}

/// A uniformly random number below `n` (0 when `n` is 0).
pub fn below(n: u32) -> Result<u32, ApiError> {
    if n == 0 {
        return Ok(0);
    }
    // 64 random bits reduced modulo n: the bias is below n / 2^64, far under any use here.
    Ok((u64::from_le_bytes(bytes::<8>()?) % u64::from(n)) as u32)
}

/// True with probability `permille` / 1000.
pub fn chance(permille: u32) -> Result<bool, ApiError> {
    Ok(permille > 0 && below(1000)? < permille)
}

/// `len` random characters from `[0-9A-Za-z]`, each uniformly distributed (about 5.95 bits each).
pub fn alphanumeric(len: usize) -> Result<String, ApiError> {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        // 248 = 4 * 62: bytes at or above it would make some characters likelier; skip them.
        for byte in bytes::<32>()? {
            if byte < 248 && out.len() < len {
                out.push(ALPHABET[(byte % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphanumeric_strings_have_the_length_and_alphabet_asked_for() {
        let a = alphanumeric(20).unwrap();
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, alphanumeric(20).unwrap());
        assert_eq!(alphanumeric(100).unwrap().len(), 100);
    }
}
