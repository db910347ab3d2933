use super::*;
use crate::kernels::custom::samples::{SAXPY_WGSL, conv1d_spec, saxpy_spec};
use crate::wire::KernelInput;

/// A SAXPY job with `edit` applied.
fn saxpy(edit: impl FnOnce(&mut KernelSpec)) -> KernelSpec {
    let mut spec = saxpy_spec(1024, 4);
    edit(&mut spec);
    spec
}

/// SAXPY with its WGSL's text `from` replaced by `to`.
fn saxpy_wgsl(from: &str, to: &str) -> KernelSpec {
    assert!(SAXPY_WGSL.contains(from), "{from}");
    saxpy(|s| s.wgsl = s.wgsl.replace(from, to))
}

/// Asserts `spec` is refused with a message containing `needle`.
#[track_caller]
fn refused(spec: &KernelSpec, needle: &str) -> KernelError {
    let err = validate(spec).expect_err("should be refused");
    assert!(
        err.to_string().contains(needle),
        "expected {needle:?} in: {err}"
    );
    err
}

#[test]
fn samples_are_valid() {
    // Runtime-sized f32 arrays: at least one element each.
    let mut one_f32_each = [0; MAX_INPUTS];
    one_f32_each[..2].copy_from_slice(&[4, 4]);
    let want = Ok(Validated {
        workgroup_size: [64, 1, 1],
        input_min_bytes: one_f32_each,
    });
    assert_eq!(validate(&saxpy_spec(1024, 4)), want);
    assert_eq!(validate(&conv1d_spec(4096 + 15, 16, 8)), want);
}

#[test]
fn inputs_smaller_than_the_shader_reads_are_refused_once_known() {
    let spec = saxpy_wgsl("y: array<f32>", "y: array<f32, 256>");
    let validated = validate(&spec).expect("valid");
    assert_eq!(validated.input_min_bytes[..2], [4, 1024]);
    assert!(validated.check_input(0, "x", 4).is_ok());
    assert!(validated.check_input(1, "y", 1024).is_ok());
    let err = validated.check_input(1, "y", 1020).unwrap_err();
    assert!(err.to_string().contains("needs at least 1024"), "{err}");
    let err = validated.check_input(0, "x", 6).unwrap_err();
    assert!(err.to_string().contains("multiple of 4"), "{err}");
}

#[test]
fn oversized_wgsl() {
    let spec = saxpy(|s| s.wgsl.push_str(&" ".repeat(MAX_WGSL_BYTES)));
    refused(&spec, "at most 65536 are accepted");
}

#[test]
fn syntax_error_carries_naga_message() {
    let err = refused(
        &saxpy_wgsl("let i = id.x;", "let i = ;"),
        "does not compile",
    );
    assert!(matches!(err, KernelError::Compile(_)));
    // naga's report points at the line.
    assert!(err.to_string().contains("wgsl:"), "{err}");
}

#[test]
fn type_error_is_a_validation_message() {
    refused(
        &saxpy_wgsl("out[i] = A * x[i] + y[i];", "out[i] = A * x[i] + i;"),
        "does not compile",
    );
}

#[test]
fn capabilities_beyond_webgpu_are_refused() {
    let spec = saxpy(|s| {
        s.wgsl = format!("enable f16;\n{}", s.wgsl).replace("A * x[i]", "A * f32(f16(x[i]))")
    });
    refused(&spec, "does not compile");
}

#[test]
fn missing_or_non_compute_entry_point() {
    refused(
        &saxpy(|s| s.entry_point = "run".into()),
        "no entry point 'run'",
    );
    let spec = saxpy(|s| {
        s.wgsl.push_str(
            "@vertex fn vs() -> @builtin(position) vec4<f32> { return vec4<f32>(0.0); }\n",
        );
        s.entry_point = "vs".into();
    });
    refused(&spec, "is a Vertex shader, not @compute");
}

#[test]
fn workgroup_size_limits() {
    refused(
        &saxpy_wgsl("@workgroup_size(64)", "@workgroup_size(512)"),
        "beyond WebGPU's default limits",
    );
    refused(
        &saxpy_wgsl("@workgroup_size(64)", "@workgroup_size(32, 16)"),
        "256 in all",
    );
    refused(
        &saxpy_wgsl("@workgroup_size(64)", "@workgroup_size(1, 1, 128)"),
        "beyond WebGPU's default limits",
    );
    let spec = saxpy(|s| {
        s.wgsl = format!("override W: u32 = 64;\n{}", s.wgsl).replace("size(64)", "size(W)")
    });
    refused(&spec, "must be constant");
}

#[test]
fn input_counts_names_and_bindings() {
    refused(&saxpy(|s| s.inputs.clear()), "0 inputs declared");
    let spec = saxpy(|s| {
        s.inputs = (0..=MAX_INPUTS as u32)
            .map(|b| KernelInput {
                name: format!("in{b}"),
                binding: b + 10,
                shared: false,
            })
            .collect()
    });
    refused(&spec, "a kernel takes 1 to 7");
    refused(&saxpy(|s| s.inputs[1].name = "x".into()), "declared twice");
    refused(
        &saxpy(|s| s.inputs[1].name = "y z".into()),
        "input name \"y z\"",
    );
    refused(
        &saxpy(|s| s.inputs[1].name = String::new()),
        "input name \"\"",
    );
    refused(
        &saxpy(|s| s.inputs[1].name = "n".repeat(65)),
        "1 to 64 characters",
    );
    refused(&saxpy(|s| s.name = Some("<b>".into())), "the kernel name");
    refused(
        &saxpy(|s| s.inputs[1].binding = 0),
        "inputs 'x' and 'y' both use binding 0",
    );
    refused(
        &saxpy(|s| s.inputs[1].binding = 2),
        "input 'y' and the output both use binding 2",
    );
}

#[test]
fn undeclared_or_missing_bindings() {
    // The shader's y is at binding 1, but the job says 5.
    refused(
        &saxpy(|s| s.inputs[1].binding = 5),
        "'y' at @binding(1) is neither a declared input nor the output",
    );
    // The job's output is at 3; the shader's read_write buffer at 2 is undeclared.
    refused(&saxpy(|s| s.output.binding = 3), "'out' at @binding(2)");
    // A declared input the shader lacks.
    let spec = saxpy(|s| {
        s.inputs.push(KernelInput {
            name: "z".into(),
            binding: 7,
            shared: false,
        })
    });
    refused(
        &spec,
        "input 'z' is at binding 7, but the shader declares no buffer there",
    );
}

#[test]
fn buffers_outside_group_zero() {
    refused(
        &saxpy_wgsl("@group(0) @binding(1)", "@group(1) @binding(1)"),
        "'y' is in @group(1)",
    );
}

#[test]
fn access_modes() {
    refused(
        &saxpy_wgsl("var<storage, read> y", "var<storage, read_write> y"),
        "input 'y' ('y' at @binding(1)) must be var<storage, read>",
    );
    // An output that is read only cannot be written; naga refuses the store, so make the
    // shader write nothing.
    let spec = saxpy(|s| {
        s.wgsl = s
            .wgsl
            .replace("var<storage, read_write> out", "var<storage, read> out")
            .replace(
                "out[i] = A * x[i] + y[i];",
                "let v = A * x[i] + y[i] + out[i];",
            )
    });
    refused(&spec, "must be var<storage, read_write>");
}

#[test]
fn unused_buffers() {
    refused(
        &saxpy_wgsl("out[i] = A * x[i] + y[i];", "out[i] = A * x[i];"),
        "'y' at @binding(1) is not used by the entry point",
    );
}

#[test]
fn uniforms_textures_and_samplers() {
    let uniform = saxpy(|s| {
        s.wgsl = s.wgsl.replace(
            "const A: f32 = 2.0;",
            "@group(0) @binding(3) var<uniform> A: f32;",
        )
    });
    refused(&uniform, "'A' is a uniform buffer");
    let texture = saxpy(|s| {
        s.wgsl
            .push_str("@group(0) @binding(4) var t: texture_2d<f32>;\n")
    });
    refused(&texture, "'t' is a texture or sampler");
    let sampler = saxpy(|s| s.wgsl.push_str("@group(0) @binding(4) var smp: sampler;\n"));
    refused(&sampler, "'smp' is a texture or sampler");
}

#[test]
fn workgroup_memory() {
    let spec = saxpy(|s| {
        s.wgsl = s
            .wgsl
            .replace(
                "const A: f32 = 2.0;",
                "const A: f32 = 2.0;\nvar<workgroup> tile: array<f32, 8192>;",
            )
            .replace(
                "out[i] = A * x[i] + y[i];",
                "tile[i % 8192u] = x[i];\n        out[i] = A * tile[i % 8192u] + y[i];",
            )
    });
    refused(&spec, "32768 bytes of var<workgroup> memory");
}

#[test]
fn dispatch_limits() {
    refused(
        &saxpy(|s| s.workgroups = [0, 1, 1]),
        "each must be 1 to 65535",
    );
    refused(
        &saxpy(|s| s.workgroups = [1, 65_536, 1]),
        "each must be 1 to 65535",
    );
    refused(
        &saxpy(|s| s.workgroups = [65_535, 2, 1]),
        "invocations per unit; at most 4194304",
    );
}

#[test]
fn unit_and_replica_counts() {
    refused(&saxpy(|s| s.units = 0), "0 units");
    refused(&saxpy(|s| s.units = MAX_UNITS + 1), "a job has 1 to 65536");
    refused(&saxpy(|s| s.replicas = 0), "0 replicas");
    refused(&saxpy(|s| s.replicas = 1), "2 to 5");
    refused(&saxpy(|s| s.replicas = MAX_REPLICAS + 1), "2 to 5");
}

#[test]
fn output_sizes() {
    refused(&saxpy(|s| s.output.bytes = 0), "positive multiple of 4");
    refused(&saxpy(|s| s.output.bytes = 6), "positive multiple of 4");
    refused(
        &saxpy(|s| s.output.bytes = MAX_OUTPUT_BYTES + 4),
        "positive multiple of 4",
    );
    let fixed = saxpy(|s| {
        s.wgsl = s
            .wgsl
            .replace("out: array<f32>", "out: array<f32, 2048>")
            .replace("arrayLength(&out)", "2048u")
    });
    refused(&fixed, "needs at least 8192 bytes; the job gives it 4096");
}

/// SAXPY whose output is also given `expression` (an f32).
fn saxpy_with(expression: &str) -> KernelSpec {
    saxpy_wgsl(
        "out[i] = A * x[i] + y[i];",
        &format!("out[i] = A * x[i] + y[i] + {expression};"),
    )
}

#[test]
fn deep_expressions_are_refused_before_they_overflow_the_stack() {
    // Found with the `wgsl` fuzz target, on inputs written to probe naga's recursion: naga
    // lowers expressions recursively, and chains like these, within 64 KiB, overflowed the stack
    // and aborted the process.
    let deep = [
        format!("select(0.0, 1.0, {}true)", "!".repeat(20_000)),
        format!("x{}", "[0]".repeat(20_000)),
        format!("{}x[0]", "*&".repeat(10_000)),
        format!("x[0]{}", " + 1.0".repeat(10_000)),
        format!("vec4<f32>(1.0){}", ".x".repeat(20_000)),
    ];
    for expression in deep {
        refused(&saxpy_with(&expression), "split its expression");
    }
    // Up to the limit they compile: one `+` and one `.` per term, and the statement's own.
    let terms = MAX_STATEMENT_OPERATORS / 2 - 8;
    let long = format!("x[0]{}", " + x[1]".repeat(terms));
    assert!(validate(&saxpy_with(&long)).is_ok());
    let deepest = format!(
        "select(0.0, 1.0, {}true)",
        "!".repeat(MAX_STATEMENT_OPERATORS - 16)
    );
    assert!(validate(&saxpy_with(&deepest)).is_ok());
}

#[test]
fn the_expression_bound_sees_comments_as_naga_does() {
    let nots = |n: usize| "!".repeat(n);
    let half = MAX_STATEMENT_OPERATORS / 2 + 1;
    // Operators in comments do not count...
    let commented = format!("0.0 /* {} */ // {}\n", nots(5_000), nots(5_000));
    assert!(validate(&saxpy_with(&commented)).is_ok());
    // ...and a `;` in a comment does not end the statement, nor does a line comment hide what
    // follows a line break (any of WGSL's), nor a nested comment's inner `*/` the rest.
    for comment in ["/* ; */", "// ;\u{2028}", "/* /* */ ; */", "/**/"] {
        let split = format!(
            "select(0.0, 1.0, {} {comment} {}true)",
            nots(half),
            nots(half)
        );
        refused(&saxpy_with(&split), "split its expression");
    }
    // An unclosed comment is naga's to refuse.
    refused(&saxpy_with("0.0 /* /* */"), "does not compile");
}
