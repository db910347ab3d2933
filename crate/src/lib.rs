//! Glowworm's contributor module, and the one home of everything the contributor and the relay
//! must agree on.
//!
//! Data flows through it like this:
//!
//! 1. The relay hands out a [`wire::Lease`] naming a kernel (by content hash) and input blobs, with
//!    a matmul shape or, for a requester's custom kernel (checked by
//!    [`kernels::custom`]), a dispatch; [`protocol::work`] reads which.
//! 2. The contributor fetches the kernel source ([`wire::KernelSource`], from the [`kernels`]
//!    catalogue on the relay) and the inputs, caching both by [`hash::ContentHash`].
//! 3. [`gpu::Gpu`] runs the kernel through wgpu (WebGPU in the browser, Vulkan/Metal/DX12 natively)
//!    and reads the output back.
//! 4. [`signing::ContributorKey`] signs a domain-separated message binding the unit, lease, kernel
//!    and output digest; the contributor posts a [`wire::ResultSubmission`].
//! 5. The relay checks the signature with [`signing::verify_result`] and the output with
//!    [`freivalds::check`] before it credits anything; outputs that no cheap check covers are
//!    compared between replicas (and with known answers) by [`compare::agree`].
//!
//! Everything except [`web`] compiles natively too; [`web`] is the wasm-bindgen surface used by the
//! page's Web Worker (see `www/worker.js`).

pub mod cache;
pub mod compare;
pub mod encoding;
pub mod freivalds;
pub mod gpu;
pub mod hash;
pub mod kernels;
pub mod link;
pub mod protocol;
pub mod signing;
pub mod wire;

#[cfg(target_arch = "wasm32")]
pub mod web;
