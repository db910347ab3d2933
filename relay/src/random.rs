//! Secret random bytes from the operating system, for lease ids and Freivalds seeds.

use crate::error::ApiError;

/// `N` random bytes, or an internal error when the system has no random source.
pub fn bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out)
        .map_err(|e| ApiError::Internal(format!("no secure random source: {e}")))?;
    Ok(out)
}
