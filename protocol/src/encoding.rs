//! Byte encodings shared by the wire and the blob store: f32 arrays are little-endian, and
//! outputs travel inside JSON as standard base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Little-endian bytes of `values`.
pub fn f32s_to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("f32 data must be a multiple of 4 bytes long, got {0} bytes")]
    NotF32Aligned(usize),
    #[error("invalid base64: {0}")]
    Base64(String),
}

/// Reads little-endian f32s. Fails when the length is not a multiple of 4.
pub fn bytes_to_f32s(bytes: &[u8]) -> Result<Vec<f32>, DecodeError> {
    if !bytes.len().is_multiple_of(4) {
        return Err(DecodeError::NotF32Aligned(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

pub fn to_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn from_base64(text: &str) -> Result<Vec<u8>, DecodeError> {
    STANDARD
        .decode(text)
        .map_err(|e| DecodeError::Base64(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_round_trip() {
        let v = [1.5f32, -0.0, f32::MAX, 3.25e-8];
        assert_eq!(bytes_to_f32s(&f32s_to_bytes(&v)).unwrap(), v);
        assert_eq!(
            bytes_to_f32s(&[0, 1, 2]),
            Err(DecodeError::NotF32Aligned(3))
        );
        assert!(from_base64("not base64!").is_err());
    }
}
