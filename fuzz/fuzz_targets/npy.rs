//! `npy`: requesters' uploaded matrices, as the relay reads them.
//!
//! The input is one part of a `POST /v1/jobs` upload ("a" or "b" of a matmul job).
//! `npy::parse_f32` reads it when it is a .npy file; `job_api::matrix` is what the relay calls on
//! the part: a 2-D .npy, or raw little-endian f32 of the shape the job declares.
//!
//! Properties: nothing panics; an array read has as many bytes as its shape says, and
//! `npy::write_f32` writes it back into a file that reads as the same array; a matrix accepted
//! has sides within the relay's limit and exactly their product of f32s.

#![no_main]

use glowworm_relay::http::job_api::{MAX_MATRIX_SIDE, matrix};
use glowworm_protocol::npy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|upload: &[u8]| {
    if let Ok(array) = npy::parse_f32(upload) {
        let elements = array.shape.iter().map(|&d| d as u64).product::<u64>();
        assert_eq!(array.data.len() as u64, 4 * elements);
        let written = npy::write_f32(&array.shape, array.data);
        assert_eq!(npy::parse_f32(&written).as_ref(), Ok(&array));
    }

    // Without a declared shape (only .npy can be read), and with the two that make raw data of
    // this length a matrix.
    let words = u32::try_from(upload.len() / 4).unwrap_or(u32::MAX);
    for declared in [None, Some((1, words)), Some((words, 1))] {
        if let Ok(((rows, cols), data)) = matrix("a", upload, declared) {
            assert!((1..=MAX_MATRIX_SIDE).contains(&rows));
            assert!((1..=MAX_MATRIX_SIDE).contains(&cols));
            assert_eq!(data.len() as u64, 4 * rows as u64 * cols as u64);
        }
    }
});
