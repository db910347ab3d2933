//! What Glowworm's contributors and its relay must agree on, in one crate that both use and
//! that carries no GPU code: the relay builds it without wgpu, the contributor module
//! (`glowworm-contributor`, in the browser and the native worker) on top of it.
//!
//! Data flows through it like this:
//!
//! 1. The relay hands out a [`wire::Lease`] naming a kernel (by content hash) and input blobs, and
//!    its [`wire::LeaseWork`]: a matmul shape or, for a requester's custom kernel (checked by
//!    [`kernels::custom`]), a dispatch; [`protocol::work`] reads it with the inputs it needs.
//! 2. The contributor fetches the kernel source ([`wire::KernelSource`], from the [`kernels`]
//!    catalogue on the relay) and the inputs with [`protocol::Fetcher`], which caches both by
//!    [`hash::ContentHash`] and gives the lease back when a fetch fails. Every HTTP failure is a
//!    [`protocol::RelayError`], whichever client met it.
//! 3. The contributor's GPU runs the kernel (not here: `glowworm-contributor`'s `gpu` module); the
//!    CPU references in [`kernels`] say what it should compute.
//! 4. [`signing::ContributorKey`] signs a domain-separated message binding the unit, lease, kernel
//!    and output digest; the contributor posts a [`wire::ResultSubmission`].
//! 5. The relay checks the signature with [`signing::verify_result`] and the output with
//!    [`freivalds::check`] before it credits anything; outputs that no cheap check covers are
//!    compared between replicas (and with known answers) by [`compare::agree`].
//! 6. At the end of each epoch the relay builds a [`merkle::EarningsTree`] of every address's
//!    lifetime earnings (OpenZeppelin's `StandardMerkleTree`), publishes its root to the payout
//!    contract and serves the tree; contributors claim with a proof that [`merkle::verify`]
//!    checks the way the contract does.
//!
//! Everything compiles to WebAssembly too, except the naga-based checks of custom kernels
//! (`kernels::custom::validate`), which only the relay (natively) runs.

pub mod cache;
pub mod compare;
pub mod encoding;
pub mod freivalds;
pub mod hash;
pub mod kernels;
pub mod link;
pub mod merkle;
pub mod npy;
pub mod payout;
pub mod protocol;
#[cfg(feature = "reqwest")]
pub mod relay_url;
pub mod signing;
pub mod wire;
