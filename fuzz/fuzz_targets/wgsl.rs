//! `wgsl`: requesters' custom kernels, as the relay checks them before it accepts a job.
//!
//! The input is a kernel job: a first line of JSON declaring its inputs, output, workgroups and
//! so on (a `glowworm_protocol::wire::KernelSpec` without its `wgsl`), then the WGSL source. When the first
//! line is not such a declaration, the whole input is the source, declared with one input at
//! binding 0 and the output at binding 1. `glowworm_protocol::kernels::custom::validate` (naga's parser
//! and validator, then the bindings, limits and workgroup memory) checks it, and the relay then
//! checks each input's size with `Validated::check_input`.
//!
//! Properties: nothing panics (refusals are errors); a kernel accepted stays within WebGPU's
//! default workgroup limits and the relay's invocation limit.

#![no_main]

use glowworm_protocol::kernels::custom::{
    self, MAX_INVOCATIONS, MAX_WORKGROUP_INVOCATIONS, MAX_WORKGROUP_SIZE,
};
use glowworm_protocol::wire::KernelSpec;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|input: &[u8]| {
    let Some(spec) = kernel_job(input) else {
        return;
    };
    let Ok(validated) = custom::validate(&spec) else {
        return;
    };
    let size = validated.workgroup_size;
    assert!(
        size.iter()
            .zip(MAX_WORKGROUP_SIZE)
            .all(|(&s, max)| s <= max)
    );
    assert!(size.iter().map(|&s| s as u64).product::<u64>() <= MAX_WORKGROUP_INVOCATIONS as u64);
    let invocations: u64 = spec
        .workgroups
        .iter()
        .chain(&size)
        .map(|&n| n as u64)
        .product();
    assert!(invocations <= MAX_INVOCATIONS);
    for (index, declared) in spec.inputs.iter().enumerate() {
        for bytes in [0, 4, 64, 1 << 20] {
            let _ = validated.check_input(index, &declared.name, bytes);
        }
    }
});

/// The declaration on the first line with the rest as its WGSL, or the whole input as WGSL with
/// the default declaration.
fn kernel_job(input: &[u8]) -> Option<KernelSpec> {
    let text = std::str::from_utf8(input).ok()?;
    if let Some((first, rest)) = text.split_once('\n')
        && let Ok(Value::Object(mut declaration)) = serde_json::from_str(first)
    {
        declaration.insert("wgsl".into(), rest.into());
        if let Ok(spec) = serde_json::from_value(Value::Object(declaration)) {
            return Some(spec);
        }
    }
    let default = json!({
        "wgsl": text,
        "inputs": [{"name": "x", "binding": 0}],
        "output": {"binding": 1, "bytes": 256},
        "workgroups": [1, 1, 1],
    });
    Some(serde_json::from_value(default).expect("the default declaration is a kernel job"))
}
