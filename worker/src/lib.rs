//! Glowworm's native contributor for GPU servers: the same kernels, protocol and signatures as
//! the browser module, on wgpu's native backends (Vulkan, Metal, DX12; lavapipe on a CPU-only
//! machine, which makes it the load generator for relay tests).
//!
//! Data flows like this: [`runner::run`] keeps several units in flight on one thread. Each takes
//! a lease from the relay ([`client::RelayClient`], reqwest), fetches the kernel and inputs through
//! caches keyed by content hash (`glowworm_protocol::protocol::Fetcher`, the page's too), hands the
//! work (a matmul, or a custom kernel's dispatch) to the GPU thread ([`gpu_thread::GpuThread`],
//! which owns the wgpu device of `glowworm_contributor::gpu`),
//! signs the output's bytes with the key from
//! [`key_file`] and submits it. On stop, units in flight are finished; none is left leased. A
//! unit whose device is lost is given back (`gpu_failed`) and the GPU thread opens a new device.
//! [`claim`] claims earnings from the payout contract with the proof the relay gives.

pub mod claim;
pub mod client;
pub mod gpu_thread;
pub mod key_file;
pub mod link;
pub mod runner;
