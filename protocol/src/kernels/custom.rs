//! Custom kernels: WGSL compute shaders that requesters submit with their jobs.
//!
//! The relay checks each one with [`validate`] before it accepts the job, so that contributors
//! are only ever sent shaders that compile, bind exactly the buffers the job declares, and stay
//! within limits that keep one dispatch short on a modest GPU and within WebGPU's default device
//! limits (what every browser grants). Their outputs have no CPU reference: they are verified by
//! replication (see `relay/src/work/replication.rs`).
//!
//! Contributors run them with `glowworm_contributor::gpu::Gpu::run_dispatch`.

#[cfg(not(target_arch = "wasm32"))]
pub mod samples;
#[cfg(not(target_arch = "wasm32"))]
mod validate;

#[cfg(not(target_arch = "wasm32"))]
pub use validate::validate;

/// Largest WGSL source accepted, in bytes.
pub const MAX_WGSL_BYTES: usize = 64 << 10;
/// Most operators and opening brackets one statement may have (outside comments): a bound on
/// how deep its expression can be, for the compiler's stack.
pub const MAX_STATEMENT_OPERATORS: usize = 1024;
/// Most input buffers a kernel may declare. With the output that makes 8 storage buffers, WebGPU's
/// default `maxStorageBuffersPerShaderStage`.
pub const MAX_INPUTS: usize = 7;
/// Largest input buffer one unit may be given, in bytes.
pub const MAX_INPUT_BYTES: u64 = 16 << 20;
/// Most shader invocations (workgroups times workgroup size) in one unit's dispatch.
pub const MAX_INVOCATIONS: u64 = 1 << 22;
/// Most units in one job.
pub const MAX_UNITS: u32 = 65_536;
/// Most replicas a job may ask for.
pub const MAX_REPLICAS: u32 = 5;
/// Longest input (and kernel) name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// WebGPU's default limits on a workgroup: its size along x, y and z, its invocations, and
/// its `var<workgroup>` memory in bytes.
pub const MAX_WORKGROUP_SIZE: [u32; 3] = [256, 256, 64];
pub const MAX_WORKGROUP_INVOCATIONS: u32 = 256;
pub const MAX_WORKGROUP_STORAGE_BYTES: u32 = 16 << 10;
/// WebGPU's default `maxComputeWorkgroupsPerDimension`.
pub const MAX_WORKGROUPS_PER_DIMENSION: u32 = 65_535;

/// What validation learnt about a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validated {
    /// The entry point's `@workgroup_size`.
    pub workgroup_size: [u32; 3],
    /// The least bytes each input's buffer must have, in the order of the spec's `inputs` (0
    /// past them): the size of the shader's type at its binding, or of one element of a
    /// runtime-sized array. A smaller buffer would fail to bind on every contributor.
    pub input_min_bytes: [u64; MAX_INPUTS],
}

impl Validated {
    /// Checks one unit's share of the spec's input `index` (named `name`) once its size is
    /// known: [`check_input_bytes`], and at least what the shader reads there.
    pub fn check_input(&self, index: usize, name: &str, bytes: u64) -> Result<(), KernelError> {
        check_input_bytes(name, bytes)?;
        let least = self.input_min_bytes.get(index).copied().unwrap_or(0);
        if bytes < least {
            return Err(KernelError::Bindings(format!(
                "input '{name}' is {bytes} bytes per unit; the shader's buffer there needs at \
                 least {least}"
            )));
        }
        Ok(())
    }
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

/// Checks the size of one unit's input `name` once its data is known: at least 1 byte (WebGPU has
/// no empty buffers), at most [`MAX_INPUT_BYTES`], and a multiple of 4 (storage buffers hold
/// 4-byte words).
pub fn check_input_bytes(name: &str, bytes: u64) -> Result<(), KernelError> {
    if bytes == 0 || bytes > MAX_INPUT_BYTES || !bytes.is_multiple_of(4) {
        return Err(KernelError::Limit(format!(
            "input '{name}' is {bytes} bytes per unit; each unit's share must be a positive \
             multiple of 4 and at most {MAX_INPUT_BYTES}"
        )));
    }
    Ok(())
}

/// Checks a name shown to people or used as a multipart part: 1 to [`MAX_NAME_BYTES`] of
/// `A-Z a-z 0-9 _ -`.
pub fn check_name(what: &str, name: &str) -> Result<(), KernelError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if name.is_empty() || name.len() > MAX_NAME_BYTES || !name.chars().all(allowed) {
        return Err(KernelError::Limit(format!(
            "{what} {name:?} must be 1 to {MAX_NAME_BYTES} characters of A-Z, a-z, 0-9, _ and -"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_sizes() {
        assert!(check_input_bytes("x", 4).is_ok());
        assert!(check_input_bytes("x", MAX_INPUT_BYTES).is_ok());
        for bad in [0, 6, MAX_INPUT_BYTES + 4] {
            let err = check_input_bytes("x", bad).unwrap_err();
            assert!(err.to_string().contains("input 'x'"), "{err}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("input", "x_1-B").is_ok());
        for bad in ["", "a b", "é", &"n".repeat(MAX_NAME_BYTES + 1)] {
            assert!(check_name("input", bad).is_err(), "{bad:?}");
        }
    }
}
