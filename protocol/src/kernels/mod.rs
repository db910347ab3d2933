//! The kernel catalogue: every kernel a contributor may be asked to run, as WGSL source plus a CPU
//! reference beside it. Kernels are named on the wire by the SHA-256 of their WGSL, so a changed
//! kernel is a new kernel and a contributor's cache can never serve stale code.

pub mod custom;
pub mod matmul;

use crate::hash::ContentHash;
use crate::wire::{KernelRef, KernelSource};

/// A compute kernel in the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// Stable human-readable id, shown in the page as "the kernel running".
    pub id: &'static str,
    pub entry_point: &'static str,
    pub wgsl: &'static str,
    /// Outputs per workgroup along x (columns) and y (rows).
    pub tile: [u32; 2],
}

impl Kernel {
    pub fn hash(&self) -> ContentHash {
        ContentHash::of(self.wgsl.as_bytes())
    }

    pub fn reference(&self) -> KernelRef {
        KernelRef {
            id: self.id.to_string(),
            hash: self.hash(),
        }
    }

    pub fn source(&self) -> KernelSource {
        KernelSource {
            id: self.id.to_string(),
            hash: self.hash(),
            entry_point: self.entry_point.to_string(),
            wgsl: self.wgsl.to_string(),
            tile: self.tile,
        }
    }
}

/// Every kernel the relay can hand out.
pub fn catalogue() -> &'static [Kernel] {
    &[matmul::TILED]
}

/// Looks a kernel up by the hash of its WGSL. The catalogue's hashes are computed once: the
/// relay looks a kernel up for every lease.
pub fn by_hash(hash: &ContentHash) -> Option<&'static Kernel> {
    static HASHES: std::sync::OnceLock<Vec<ContentHash>> = std::sync::OnceLock::new();
    let hashes = HASHES.get_or_init(|| catalogue().iter().map(Kernel::hash).collect());
    hashes
        .iter()
        .position(|h| h == hash)
        .map(|i| &catalogue()[i])
}
