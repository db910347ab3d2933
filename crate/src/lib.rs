//! Glowworm's contributor module: runs the relay's units on a GPU, in the browser (WebAssembly,
//! WebGPU) and in the native worker (Vulkan/Metal/DX12), on top of `glowworm_protocol`, which holds
//! everything the contributor and the relay agree on.
//!
//! Data flows through it like this:
//!
//! 1. The contributor leases a unit and fetches its kernel and inputs with
//!    `glowworm_protocol::protocol` (its `Fetcher` caches both by content hash).
//! 2. [`gpu::Gpu`] runs the unit's `Work` through wgpu (WebGPU in the browser, Vulkan/Metal/DX12
//!    natively) and reads the output back.
//! 3. The output's bytes are signed and submitted with `glowworm_protocol::protocol` again.
//!
//! [`gpu`] compiles natively too (the native worker uses it); [`web`] is the wasm-bindgen surface
//! used by the page's Web Worker (see `www/worker.js`).

pub mod gpu;

#[cfg(target_arch = "wasm32")]
pub mod web;
