//! Just enough of the .npy format to check a downloaded result: where its data starts, so the
//! data can be hashed and compared with the job's `output_hash`.

use anyhow::{Result, bail};
use glowworm_protocol::hash::ContentHash;
use std::path::Path;

/// The first bytes of every .npy file.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// The offset of the array data in a .npy file: after the magic string, the version, the header
/// length (2 bytes in version 1, 4 in versions 2 and 3) and the header.
pub fn data_offset(bytes: &[u8]) -> Result<usize> {
    if !bytes.starts_with(MAGIC) || bytes.len() < 10 {
        bail!("not a .npy file");
    }
    let (length_bytes, header_len) = match bytes[6] {
        1 => (2, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (
            4,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        version => bail!("unsupported .npy version {version}"),
    };
    let offset = 8 + length_bytes + header_len;
    if offset > bytes.len() {
        bail!("the .npy header is longer than the file");
    }
    Ok(offset)
}

/// The hash of a downloaded result's data: the whole file when raw, the array data when .npy.
pub fn result_hash(path: &Path, npy: bool) -> Result<ContentHash> {
    let bytes = std::fs::read(path)?;
    let offset = if npy { data_offset(&bytes)? } else { 0 };
    Ok(ContentHash::of(&bytes[offset..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 .npy file of `data` with `header` padded as NumPy pads it.
    fn npy_v1(header: &str, data: &[u8]) -> Vec<u8> {
        let mut header = header.to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = MAGIC.to_vec();
        bytes.extend([1, 0]);
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    #[test]
    fn the_data_follows_the_header() {
        let bytes = npy_v1(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }",
            &[1, 2, 3, 4, 5, 6, 7, 8],
        );
        // The header is padded so the data starts on a 64-byte boundary.
        assert_eq!(data_offset(&bytes).unwrap(), 128);
        assert_eq!(&bytes[128..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn other_files_are_refused() {
        assert!(data_offset(b"hello world").is_err());
        let mut truncated = npy_v1("{}", &[]);
        truncated.truncate(20);
        assert!(data_offset(&truncated).is_err());
        let mut version9 = npy_v1("{}", &[]);
        version9[6] = 9;
        assert!(data_offset(&version9).is_err());
    }
}
