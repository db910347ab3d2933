//! Custom kernels: WGSL compute shaders that requesters submit with their jobs.
//!
//! The relay checks each one with [`validate`] before it accepts the job, so that contributors
//! are only ever sent shaders that compile, bind exactly the buffers the job declares, and stay
//! within limits that keep one dispatch short on a modest GPU. Their outputs have no CPU
//! reference: they are verified by replication (see `relay/src/replication.rs`).

use crate::wire::KernelSpec;

/// Largest WGSL source accepted, in bytes.
pub const MAX_WGSL_BYTES: usize = 64 << 10;
/// Most input buffers a kernel may declare.
pub const MAX_INPUTS: usize = 8;
/// Largest input buffer one unit may be given, in bytes.
pub const MAX_INPUT_BYTES: u64 = 16 << 20;
/// Most shader invocations (workgroups times workgroup size) in one unit's dispatch.
pub const MAX_INVOCATIONS: u64 = 1 << 22;
/// Most units in one job.
pub const MAX_UNITS: u32 = 65_536;
/// Most replicas a job may ask for.
pub const MAX_REPLICAS: u32 = 5;

/// What validation learnt about a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    /// The entry point's `@workgroup_size`.
    pub workgroup_size: [u32; 3],
}

/// Why a kernel was refused; the message names the problem for the requester.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    /// The WGSL does not parse or does not validate; the message is naga's.
    #[error("the WGSL does not compile: {0}")]
    Compile(String),
    /// The shader's bindings do not match the job's declared inputs and output.
    #[error("bindings: {0}")]
    Bindings(String),
    /// A limit on sizes, counts or features.
    #[error("{0}")]
    Limit(String),
}

/// Checks the size of one unit's chunk of an input: not empty (WebGPU has no empty buffers), a
/// multiple of 4 bytes, at most [`MAX_INPUT_BYTES`].
pub fn check_input_bytes(name: &str, bytes: u64) -> Result<(), KernelError> {
    if bytes == 0 || bytes % 4 != 0 || bytes > MAX_INPUT_BYTES {
        return Err(KernelError::Limit(format!(
            "input '{name}' gives each unit {bytes} bytes; it must be 4 to {MAX_INPUT_BYTES} \
             bytes, a multiple of 4"
        )));
    }
    Ok(())
}

/// Checks a kernel job's shader and dispatch: syntax and types (naga), the entry point, that the
/// shader's group-0 storage buffers are exactly the declared inputs (read-only) and output
/// (read_write), and the limits above.
#[cfg(not(target_arch = "wasm32"))]
pub fn validate(spec: &KernelSpec) -> Result<Validated, KernelError> {
    let _ = spec;
    Err(KernelError::Limit(
        "custom kernels are not supported yet".into(),
    ))
}
