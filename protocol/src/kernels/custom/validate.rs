//! [`validate`]: the relay's checks of a custom kernel job, with naga (the WGSL compiler wgpu
//! uses), before it accepts the job.

use super::*;
use crate::wire::{KernelSpec, MAX_OUTPUT_BYTES};
use naga::valid::{Capabilities, FunctionInfo, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, ShaderStage, StorageAccess};

/// Checks a kernel job's shader and dispatch: syntax and types (naga), the entry point, that the
/// shader's group-0 storage buffers are exactly the declared inputs (read-only) and output
/// (read_write), each used by the entry point, and the limits in [`super`].
pub fn validate(spec: &KernelSpec) -> Result<Validated, KernelError> {
    check_job(spec)?;
    let (module, info) = compile(&spec.wgsl)?;
    let index = entry_point(&module, &spec.entry_point)?;
    let entry = &module.entry_points[index];
    let workgroup_size = check_workgroup_size(entry)?;
    check_invocations(spec.workgroups, workgroup_size)?;
    let uses = info.get_entry_point(index);
    let input_min_bytes = check_resources(spec, &module, uses)?;
    check_workgroup_memory(&module, uses)?;
    Ok(Validated {
        workgroup_size,
        input_min_bytes,
    })
}

/// Everything that needs no compiler: counts, names, bindings and sizes.
fn check_job(spec: &KernelSpec) -> Result<(), KernelError> {
    let limit = |message: String| Err(KernelError::Limit(message));
    if spec.wgsl.len() > MAX_WGSL_BYTES {
        return limit(format!(
            "the WGSL is {} bytes; at most {MAX_WGSL_BYTES} are accepted",
            spec.wgsl.len()
        ));
    }
    if let Some(name) = &spec.name {
        check_name("the kernel name", name)?;
    }
    if spec.inputs.is_empty() || spec.inputs.len() > MAX_INPUTS {
        return limit(format!(
            "{} inputs declared; a kernel takes 1 to {MAX_INPUTS}",
            spec.inputs.len()
        ));
    }
    for (i, input) in spec.inputs.iter().enumerate() {
        check_name("input name", &input.name)?;
        let earlier = &spec.inputs[..i];
        if earlier.iter().any(|e| e.name == input.name) {
            return limit(format!("input name '{}' is declared twice", input.name));
        }
        if earlier.iter().any(|e| e.binding == input.binding) {
            return Err(KernelError::Bindings(format!(
                "inputs '{}' and '{}' both use binding {}",
                earlier
                    .iter()
                    .find(|e| e.binding == input.binding)
                    .map_or("", |e| &e.name),
                input.name,
                input.binding
            )));
        }
        if input.binding == spec.output.binding {
            return Err(KernelError::Bindings(format!(
                "input '{}' and the output both use binding {}",
                input.name, input.binding
            )));
        }
    }
    let bytes = spec.output.bytes;
    if bytes == 0 || !bytes.is_multiple_of(4) || bytes > MAX_OUTPUT_BYTES {
        return limit(format!(
            "the output is {bytes} bytes per unit; it must be a positive multiple of 4 and at \
             most {MAX_OUTPUT_BYTES}"
        ));
    }
    if spec.workgroups.contains(&0)
        || spec
            .workgroups
            .iter()
            .any(|&w| w > MAX_WORKGROUPS_PER_DIMENSION)
    {
        return limit(format!(
            "workgroups {:?}: each must be 1 to {MAX_WORKGROUPS_PER_DIMENSION}",
            spec.workgroups
        ));
    }
    if spec.units == 0 || spec.units > MAX_UNITS {
        return limit(format!("{} units; a job has 1 to {MAX_UNITS}", spec.units));
    }
    // A kernel's output has no cheap check: it is verified only by distinct contributors
    // agreeing, so a result computed once would be credited (and could serve as a canary's
    // answer) unchecked.
    if spec.replicas < 2 || spec.replicas > MAX_REPLICAS {
        return limit(format!(
            "{} replicas; kernel results are verified by agreeing replicas from distinct \
             contributors, so a job asks for 2 to {MAX_REPLICAS}",
            spec.replicas
        ));
    }
    Ok(())
}

/// Parses and validates the WGSL with the capabilities every WebGPU device has (none beyond
/// the core language).
///
/// naga lowers an expression recursively, some kilobytes of stack per level in a debug build, and
/// sets no limit of its own: `!!!!…true` or `a[0][0]…` as long as a source may be would overflow
/// any thread's stack, and a stack overflow aborts the whole relay (found with the `wgsl` fuzz
/// target, on inputs written to probe naga's recursion). So [`check_expression_depth`] first
/// bounds how deep an expression can be, and naga runs on a thread of its own with a stack that
/// depth fits in, whichever thread calls [`validate`]. Should naga panic, the thread's panic becomes a refusal of the shader.
fn compile(wgsl: &str) -> Result<(Module, ModuleInfo), KernelError> {
    check_expression_depth(wgsl)?;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("naga".into())
            .stack_size(COMPILER_STACK_BYTES)
            .spawn_scoped(scope, || parse_and_validate(wgsl))
            .map_err(|e| KernelError::Compile(format!("could not start the WGSL compiler: {e}")))?
            .join()
            .unwrap_or_else(|_| {
                Err(KernelError::Compile(
                    "naga, the WGSL compiler, failed on this shader (a bug in naga)".into(),
                ))
            })
    })
}

/// The stack of the thread naga runs on: several times what the deepest expression
/// [`MAX_STATEMENT_OPERATORS`] allows takes in a debug build (some 7 MiB; far less in release).
/// Only the pages used are ever allocated.
const COMPILER_STACK_BYTES: usize = 64 << 20;

fn parse_and_validate(wgsl: &str) -> Result<(Module, ModuleInfo), KernelError> {
    let module = naga::front::wgsl::parse_str(wgsl)
        .map_err(|e| KernelError::Compile(e.emit_to_string(wgsl)))?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .map_err(|e| KernelError::Compile(e.emit_to_string(wgsl)))?;
    Ok((module, info))
}

/// Refuses a statement with more than [`MAX_STATEMENT_OPERATORS`] operators and opening
/// brackets, outside comments. An expression lies within one statement (between `;`, `{` and
/// `}`), and each level of it takes at least one of them, so this bounds every expression's
/// depth. Comments are skipped as naga's lexer skips them (block comments nest; line comments
/// end at any WGSL line break), so that none can hide an operator or fake a statement's end.
fn check_expression_depth(wgsl: &str) -> Result<(), KernelError> {
    let is_line_break =
        |c: char| matches!(c, '\u{a}'..='\u{d}' | '\u{85}' | '\u{2028}' | '\u{2029}');
    let mut chars = wgsl.chars().peekable();
    let mut operators = 0;
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '/' if chars.peek() == Some(&'/') => {
                line += usize::from(chars.find(|&c| is_line_break(c)) == Some('\n'));
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                // As naga: `*/` closes and `/*` opens, neither sharing a character with the
                // last pair; an unclosed comment runs to the end.
                let mut depth = 1;
                let mut prev = chars.next();
                line += usize::from(prev == Some('\n'));
                while depth > 0 {
                    let Some(c) = chars.next() else { break };
                    line += usize::from(c == '\n');
                    match (prev, c) {
                        (Some('*'), '/') => (depth, prev) = (depth - 1, None),
                        (Some('/'), '*') => (depth, prev) = (depth + 1, None),
                        _ => prev = Some(c),
                    }
                }
            }
            ';' | '{' | '}' => operators = 0,
            // A number's decimal point, as in `1.5` or `.5`.
            '.' if chars.peek().is_some_and(char::is_ascii_digit) => {}
            '!' | '~' | '-' | '+' | '*' | '/' | '%' | '&' | '|' | '^' | '<' | '>' | '=' | '.'
            | '(' | '[' => {
                operators += 1;
                if operators > MAX_STATEMENT_OPERATORS {
                    return Err(KernelError::Limit(format!(
                        "the statement on line {line} has more than \
                         {MAX_STATEMENT_OPERATORS} operators and brackets; split its \
                         expression between several `let`s"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The index of the compute entry point called `name`.
fn entry_point(module: &Module, name: &str) -> Result<usize, KernelError> {
    let named = || {
        module
            .entry_points
            .iter()
            .enumerate()
            .filter(|(_, e)| e.name == name)
    };
    if let Some((index, _)) = named().find(|(_, e)| e.stage == ShaderStage::Compute) {
        return Ok(index);
    }
    let message = match named().next() {
        Some((_, e)) => format!(
            "entry point '{name}' is a {:?} shader, not @compute",
            e.stage
        ),
        None => {
            let compute: Vec<&str> = module
                .entry_points
                .iter()
                .filter(|e| e.stage == ShaderStage::Compute)
                .map(|e| e.name.as_str())
                .collect();
            format!(
                "the shader has no entry point '{name}' (its compute entry points: {compute:?})"
            )
        }
    };
    Err(KernelError::Compile(message))
}

fn check_workgroup_size(entry: &naga::EntryPoint) -> Result<[u32; 3], KernelError> {
    if entry.workgroup_size_overrides.is_some() {
        return Err(KernelError::Limit(
            "@workgroup_size must be constant, not an override".into(),
        ));
    }
    let size = entry.workgroup_size;
    let product: u64 = size.iter().map(|&s| s as u64).product();
    let within = size
        .iter()
        .zip(MAX_WORKGROUP_SIZE)
        .all(|(&s, max)| s <= max);
    if !within || product > MAX_WORKGROUP_INVOCATIONS as u64 {
        return Err(KernelError::Limit(format!(
            "@workgroup_size{size:?} is beyond WebGPU's default limits: at most \
             {MAX_WORKGROUP_SIZE:?} along x, y and z and {MAX_WORKGROUP_INVOCATIONS} in all"
        )));
    }
    Ok(size)
}

fn check_invocations(workgroups: [u32; 3], size: [u32; 3]) -> Result<(), KernelError> {
    let invocations: u64 = workgroups.iter().chain(&size).map(|&n| n as u64).product();
    if invocations > MAX_INVOCATIONS {
        return Err(KernelError::Limit(format!(
            "workgroups {workgroups:?} of @workgroup_size{size:?} make {invocations} \
             invocations per unit; at most {MAX_INVOCATIONS}"
        )));
    }
    Ok(())
}

/// The shader's resources must be exactly the declared storage buffers, in group 0, each used by
/// the entry point (WebGPU's automatic pipeline layout leaves unused ones out, and binding them
/// would then fail on every contributor). Returns each input's least size in bytes (see
/// [`Validated::input_min_bytes`]).
fn check_resources(
    spec: &KernelSpec,
    module: &Module,
    uses: &FunctionInfo,
) -> Result<[u64; MAX_INPUTS], KernelError> {
    let bindings = |message: String| Err(KernelError::Bindings(message));
    let mut found = Vec::new();
    let mut input_min_bytes = [0; MAX_INPUTS];
    for (handle, var) in module.global_variables.iter() {
        let name = var.name.as_deref().unwrap_or("(unnamed)");
        let access = match var.space {
            AddressSpace::Function | AddressSpace::Private | AddressSpace::WorkGroup => continue,
            AddressSpace::Storage { access } => access,
            AddressSpace::Uniform => {
                return Err(KernelError::Limit(format!(
                    "'{name}' is a uniform buffer; kernels take storage buffers only"
                )));
            }
            AddressSpace::Handle => {
                return Err(KernelError::Limit(format!(
                    "'{name}' is a texture or sampler; kernels take storage buffers only"
                )));
            }
            AddressSpace::Immediate => {
                return Err(KernelError::Limit(format!(
                    "'{name}' is immediate data (push constants); kernels take storage buffers only"
                )));
            }
            other => {
                return Err(KernelError::Limit(format!(
                    "'{name}' is in address space {other:?}; kernels take storage buffers only"
                )));
            }
        };
        let Some(binding) = &var.binding else {
            return bindings(format!("'{name}' has no @group and @binding"));
        };
        if binding.group != 0 {
            return bindings(format!(
                "'{name}' is in @group({}); every buffer must be in @group(0)",
                binding.group
            ));
        }
        let slot = binding.binding;
        // The least bytes a buffer bound here must have: the whole type, or one element of a
        // runtime-sized array (WebGPU's minimum binding size).
        let least = module.types[var.ty].inner.size(module.to_ctx()) as u64;
        if slot == spec.output.binding {
            if !access.contains(StorageAccess::STORE) {
                return bindings(format!(
                    "the output '{name}' at @binding({slot}) must be var<storage, read_write>"
                ));
            }
            if least > spec.output.bytes {
                return bindings(format!(
                    "the output '{name}' needs at least {least} bytes; the job gives it {}",
                    spec.output.bytes
                ));
            }
        } else if let Some(i) = spec.inputs.iter().position(|i| i.binding == slot) {
            let input = &spec.inputs[i];
            input_min_bytes[i] = least;
            if access.contains(StorageAccess::STORE) {
                return bindings(format!(
                    "input '{}' ('{name}' at @binding({slot})) must be var<storage, read>",
                    input.name
                ));
            }
        } else {
            return bindings(format!(
                "'{name}' at @binding({slot}) is neither a declared input nor the output"
            ));
        }
        if uses[handle].is_empty() {
            return bindings(format!(
                "'{name}' at @binding({slot}) is not used by the entry point; every declared \
                 buffer must be"
            ));
        }
        found.push(slot);
    }
    for input in &spec.inputs {
        if !found.contains(&input.binding) {
            return bindings(format!(
                "input '{}' is at binding {}, but the shader declares no buffer there",
                input.name, input.binding
            ));
        }
    }
    if !found.contains(&spec.output.binding) {
        return bindings(format!(
            "the output is at binding {}, but the shader declares no buffer there",
            spec.output.binding
        ));
    }
    Ok(input_min_bytes)
}

/// `var<workgroup>` memory the entry point uses, within WebGPU's default limit.
fn check_workgroup_memory(module: &Module, uses: &FunctionInfo) -> Result<(), KernelError> {
    let bytes: u64 = module
        .global_variables
        .iter()
        .filter(|(handle, var)| var.space == AddressSpace::WorkGroup && !uses[*handle].is_empty())
        .map(|(_, var)| module.types[var.ty].inner.size(module.to_ctx()) as u64)
        .sum();
    if bytes > MAX_WORKGROUP_STORAGE_BYTES as u64 {
        return Err(KernelError::Limit(format!(
            "the entry point uses {bytes} bytes of var<workgroup> memory; at most \
             {MAX_WORKGROUP_STORAGE_BYTES}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
