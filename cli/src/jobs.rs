//! Building a job upload from the command line: the `job` part (a [`JobSpec`]) and one file
//! part per input, each read from disk with errors that name the file.
//!
//! A kernel input given as a .npy file (its name ends in .npy, or it starts with NumPy's magic
//! string) is read with the relay's own parser (`glowworm_protocol::npy`): float32, int32 or
//! uint32, little-endian, C order; only its data is sent. Any other file is sent as raw bytes.

use anyhow::{Context, Result, anyhow, bail};
use glowworm_protocol::kernels::custom;
use glowworm_protocol::npy::{self as relay_npy, NpyError};
use glowworm_protocol::wire::{JobSpec, KernelSpec, MatmulShape, MatmulSpec};
use reqwest::multipart::{Form, Part};
use std::path::{Path, PathBuf};

/// A job ready to upload: its spec and its input files, by part name.
#[derive(Debug)]
pub struct Upload {
    pub spec: JobSpec,
    pub inputs: Vec<Input>,
}

/// One input file, read into memory.
#[derive(Debug)]
pub struct Input {
    /// The multipart part's name: "a", "b", or a kernel input's name.
    pub name: String,
    pub path: PathBuf,
    /// What is uploaded: the whole file, or a kernel's .npy input's data without its header.
    pub bytes: Vec<u8>,
    pub format: Format,
}

/// How an input file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Sent as it is.
    Raw,
    /// A .npy array: its dtype (NumPy's `descr`) and shape. `header` is the header's length
    /// when it is still in `bytes` (a matmul input, which the relay reads as .npy itself), 0
    /// when only the data is sent.
    Npy {
        dtype: &'static str,
        shape: Vec<usize>,
        header: usize,
    },
}

/// A .npy shape as NumPy prints it: "(1024,)", "(4, 256)".
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl Input {
    /// Reads `path`; the error names the file.
    pub fn read(name: &str, path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Input {
            name: name.to_string(),
            path: path.to_path_buf(),
            bytes,
            format: Format::Raw,
        })
    }

    /// A matrix: sent whole (the relay reads .npy and raw f32 itself); a .npy file's dtype and
    /// shape are noted for the progress line when they can be read.
    ///
    /// A .npy file (by its name or its magic string) must be one the relay accepts: float32,
    /// little-endian, C order, two dimensions; else the error names the file and the problem.
    pub fn matrix(name: &str, path: &Path) -> Result<Self> {
        let mut input = Input::read(name, path)?;
        if !crate::client::is_npy_path(path) && !relay_npy::is_npy(&input.bytes) {
            return Ok(input);
        }
        let array = relay_npy::parse_f32(&input.bytes)
            .map_err(|err| anyhow!("{}", matrix_npy_refusal(path, &err)))?;
        if array.shape.len() != 2 {
            bail!(
                "{} has shape {}; a matmul input is a matrix, with two dimensions",
                path.display(),
                shape_text(&array.shape)
            );
        }
        input.format = Format::Npy {
            dtype: "<f4",
            shape: array.shape,
            header: input.bytes.len() - array.data.len(),
        };
        Ok(input)
    }

    /// A kernel input: a .npy file (by its name or its magic string) is checked (dtype float32,
    /// int32 or uint32, C order) and only its data kept; anything else is raw bytes.
    pub fn kernel(name: &str, path: &Path) -> Result<Self> {
        let mut input = Input::read(name, path)?;
        if !crate::client::is_npy_path(path) && !relay_npy::is_npy(&input.bytes) {
            return Ok(input);
        }
        let (dtype, shape, header) = match relay_npy::parse(&input.bytes, relay_npy::KERNEL_DTYPES)
        {
            Ok(array) => (
                array.dtype,
                array.shape,
                input.bytes.len() - array.data.len(),
            ),
            Err(err) => bail!("{}", npy_refusal(path, &err)),
        };
        // Only the data goes up; but data that itself begins with the magic string would look
        // like a .npy file to the relay, so then the whole file goes and the relay reads it.
        let keep_header = relay_npy::is_npy(&input.bytes[header..]);
        if !keep_header {
            input.bytes.drain(..header);
        }
        input.format = Format::Npy {
            dtype,
            shape,
            header: if keep_header { header } else { 0 },
        };
        Ok(input)
    }

    /// Whether the file is a .npy file (by its magic string, whatever the file is called).
    pub fn is_npy(&self) -> bool {
        matches!(self.format, Format::Npy { .. }) || self.bytes.starts_with(crate::npy::MAGIC)
    }

    /// Bytes of array data (without a .npy header).
    pub fn data_bytes(&self) -> u64 {
        match self.format {
            Format::Npy { header, .. } => (self.bytes.len() - header) as u64,
            Format::Raw => self.bytes.len() as u64,
        }
    }

    /// "x.npy: float32 (1024,), 4.0 KiB" or "y.bin: raw bytes, 4.0 KiB", for the progress line.
    pub fn describe(&self) -> String {
        let size = crate::show::bytes(self.data_bytes());
        match &self.format {
            Format::Npy { dtype, shape, .. } => format!(
                "{}: {} {}, {size}",
                self.path.display(),
                relay_npy::dtype_name(dtype),
                shape_text(shape)
            ),
            Format::Raw => format!("{}: raw bytes, {size}", self.path.display()),
        }
    }
}

/// Why a kernel's .npy input cannot be sent, in the requester's terms.
fn npy_refusal(path: &Path, err: &NpyError) -> String {
    let file = path.display();
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .filter(|stem| !stem.is_empty() && stem.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .unwrap_or_else(|| "x".to_string());
    match err {
        NpyError::Dtype { got, .. } => format!(
            "{file} has dtype {}; kernel inputs are float32, int32 or uint32, little-endian. \
             Convert it in NumPy with np.save('{file}', {stem}.astype(np.float32)) (or np.int32, \
             np.uint32), or give raw bytes in a file not named .npy",
            relay_npy::dtype_name(got)
        ),
        NpyError::FortranOrder => format!(
            "{file} is in Fortran (column-major) order; kernel inputs are sent in C order. Save \
             it with np.save('{file}', np.ascontiguousarray({stem}))"
        ),
        NpyError::NotNpy => format!(
            "{file} is named .npy but is not a .npy file (it does not start with \\x93NUMPY); \
             to send raw bytes, give a file not named .npy"
        ),
        other => format!("{file} is not a .npy file the relay can read: {other}"),
    }
}

/// Why a matmul's .npy input cannot be sent, in the requester's terms.
fn matrix_npy_refusal(path: &Path, err: &NpyError) -> String {
    let file = path.display();
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .filter(|stem| !stem.is_empty() && stem.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .unwrap_or_else(|| "a".to_string());
    match err {
        NpyError::NotF32(got) | NpyError::Dtype { got, .. } => format!(
            "{file} has dtype {}; matmul inputs are float32, little-endian. Convert it in NumPy \
             with np.save('{file}', {stem}.astype(np.float32))",
            relay_npy::dtype_name(got)
        ),
        NpyError::FortranOrder => format!(
            "{file} is in Fortran (column-major) order; matmul inputs are sent in C order. Save \
             it with np.save('{file}', np.ascontiguousarray({stem}))"
        ),
        NpyError::NotNpy => format!(
            "{file} is named .npy but is not a .npy file (it does not start with \\x93NUMPY); \
             raw little-endian f32 goes in a file not named .npy, with --m, --k and --n"
        ),
        other => format!("{file} is not a .npy file the relay can read: {other}"),
    }
}

/// Largest side of a matrix the relay accepts in a matmul job (its `MAX_MATRIX_SIDE`).
pub const MAX_MATRIX_SIDE: u64 = 16_384;

/// The relay's default `max_upload_bytes` (256 MiB): a relay left at its default refuses a larger
/// upload with 413 `upload_too_large`. The CLI cannot know another relay's setting, so it warns.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 256 << 20;

/// Checks that A (m x k) and B (k x n) agree with each other, with a declared `shape` and with
/// the relay's largest side, before anything is sent. The error names the files.
fn check_matmul_shapes(a: &Input, b: &Input, shape: Option<MatmulShape>) -> Result<()> {
    let dims = |input: &Input, declared: Option<(u32, u32)>| -> Result<(u64, u64)> {
        match (&input.format, declared) {
            (Format::Npy { shape, .. }, declared) => {
                let dims = (shape[0] as u64, shape[1] as u64);
                if let Some((rows, cols)) = declared
                    && (u64::from(rows), u64::from(cols)) != dims
                {
                    bail!(
                        "{} is {}, but --m, --k and --n make it ({rows}, {cols})",
                        input.path.display(),
                        shape_text(shape)
                    );
                }
                Ok(dims)
            }
            (Format::Raw, Some((rows, cols))) => {
                let (rows, cols) = (u64::from(rows), u64::from(cols));
                let expected = 4 * rows * cols;
                let got = input.bytes.len() as u64;
                if got != expected {
                    bail!(
                        "{} is {got} bytes of raw f32, but ({rows}, {cols}) needs {expected}",
                        input.path.display()
                    );
                }
                Ok((rows, cols))
            }
            // Refused before: raw inputs need a shape.
            (Format::Raw, None) => bail!("{} needs --m, --k and --n", input.path.display()),
        }
    };
    let (m, k) = dims(a, shape.map(|s| (s.m, s.k)))?;
    let (k_b, n) = dims(b, shape.map(|s| (s.k, s.n)))?;
    if k != k_b {
        bail!(
            "{} is ({m}, {k}) and {} is ({k_b}, {n}): A's columns must equal B's rows (A is \
             m x k, B is k x n)",
            a.path.display(),
            b.path.display()
        );
    }
    for (input, (rows, cols)) in [(a, (m, k)), (b, (k_b, n))] {
        if rows == 0 || cols == 0 || rows > MAX_MATRIX_SIDE || cols > MAX_MATRIX_SIDE {
            bail!(
                "{} is ({rows}, {cols}); the relay takes each side from 1 to {MAX_MATRIX_SIDE}",
                input.path.display()
            );
        }
    }
    Ok(())
}

impl Upload {
    /// A warning when the inputs are more than a relay with the default `max_upload_bytes`
    /// (256 MiB) accepts; `None` when they fit.
    pub fn size_warning(&self) -> Option<String> {
        let total = self.input_bytes();
        if total <= DEFAULT_MAX_UPLOAD_BYTES {
            return None;
        }
        let files: Vec<_> = self
            .inputs
            .iter()
            .map(|input| input.path.display().to_string())
            .collect();
        Some(format!(
            "warning: {} {} {:.1} MiB, over the 256 MiB a relay accepts by default \
             (max_upload_bytes); unless this relay's limit was raised it will refuse the upload \
             (413 upload_too_large): split the job into smaller ones, or ask the relay's operator \
             to raise max_upload_bytes (GLOWWORM_MAX_UPLOAD_BYTES)",
            files.join(" and "),
            if files.len() == 1 { "is" } else { "are" },
            total as f64 / f64::from(1u32 << 20)
        ))
    }

    /// The multipart form of `POST /v1/jobs`. Each file part carries its file's name, so the
    /// relay's error messages can name it.
    pub fn into_form(self) -> Result<Form> {
        let spec = serde_json::to_string(&self.spec).context("encoding the job spec")?;
        let mut form = Form::new().part("job", Part::text(spec).mime_str("application/json")?);
        for input in self.inputs {
            let file_name = input
                .path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| input.name.clone());
            let part = Part::bytes(input.bytes)
                .file_name(file_name)
                .mime_str("application/octet-stream")?;
            form = form.part(input.name, part);
        }
        Ok(form)
    }

    /// Total bytes of the input files.
    pub fn input_bytes(&self) -> u64 {
        self.inputs
            .iter()
            .map(|input| input.bytes.len() as u64)
            .sum()
    }
}

/// A matmul job C = A * B. `shape` is required when A or B is raw f32 rather than .npy.
pub fn matmul(a: &Path, b: &Path, shape: Option<MatmulShape>) -> Result<Upload> {
    let a = Input::matrix("a", a)?;
    let b = Input::matrix("b", b)?;
    if shape.is_none() {
        for input in [&a, &b] {
            if !input.is_npy() {
                bail!(
                    "{} is not a .npy file: give the shape of raw f32 inputs with --m, --k and --n \
                     (A is m x k, B is k x n)",
                    input.path.display()
                );
            }
        }
    }
    check_matmul_shapes(&a, &b, shape)?;
    Ok(Upload {
        spec: JobSpec::Matmul(MatmulSpec { shape }),
        inputs: vec![a, b],
    })
}

/// A custom-kernel job from a spec file (a `KernelSpec`, with or without `"kind": "kernel"`) and
/// one file per input, given as `(name, path)`.
pub fn kernel(spec_path: &Path, inputs: &[(String, PathBuf)]) -> Result<Upload> {
    let text = std::fs::read_to_string(spec_path)
        .with_context(|| format!("cannot read {}", spec_path.display()))?;
    let spec = parse_kernel_spec(&text, spec_path.parent())
        .with_context(|| format!("{} is not a kernel spec", spec_path.display()))?;

    for (name, _) in inputs {
        if !spec.inputs.iter().any(|input| &input.name == name) {
            let known: Vec<_> = spec
                .inputs
                .iter()
                .map(|input| input.name.as_str())
                .collect();
            bail!(
                "--input {name}=...: the spec has no input named {name:?} (its inputs: {})",
                known.join(", ")
            );
        }
        if inputs.iter().filter(|(other, _)| other == name).count() > 1 {
            bail!("--input {name}=... is given more than once");
        }
    }
    for input in &spec.inputs {
        if !inputs.iter().any(|(name, _)| name == &input.name) {
            bail!(
                "the spec's input {:?} has no file: add --input {}=PATH",
                input.name,
                input.name
            );
        }
    }
    let files = inputs
        .iter()
        .map(|(name, path)| Input::kernel(name, path))
        .collect::<Result<Vec<_>>>()?;
    check_sizes(&spec, &files)?;
    Ok(Upload {
        spec: JobSpec::Kernel(spec),
        inputs: files,
    })
}

/// Checks each input's size against the spec before anything is uploaded: a split input divides
/// into `units` equal shares of whole 4-byte words, and each unit's share is at least what the
/// shader reads at its binding and within the relay's limit. A spec that does not validate is
/// left to the relay, whose message names the problem.
fn check_sizes(spec: &KernelSpec, files: &[Input]) -> Result<()> {
    let Ok(validated) = custom::validate(spec) else {
        return Ok(());
    };
    for (index, declared) in spec.inputs.iter().enumerate() {
        let Some(input) = files.iter().find(|input| input.name == declared.name) else {
            continue;
        };
        let bytes = input.data_bytes();
        let units = u64::from(spec.units.max(1));
        let per_unit = if declared.shared {
            bytes
        } else {
            if !bytes.is_multiple_of(4 * units) {
                bail!(
                    "{}: input {:?} is {bytes} bytes; split between {units} units it must be a \
                     multiple of {} bytes (4 per unit)",
                    input.describe(),
                    declared.name,
                    4 * units
                );
            }
            bytes / units
        };
        validated
            .check_input(index, &declared.name, per_unit)
            .map_err(|err| anyhow!("{}: {err}", input.describe()))?;
    }
    Ok(())
}

/// Parses a `KernelSpec` from JSON, accepting an optional `"kind": "kernel"`.
///
/// The kernel's WGSL is either inline (`"wgsl"`) or in a file (`"wgsl_file"`, a path relative to
/// `spec_dir`, the spec's own directory), so a kernel can be written and checked as a `.wgsl`
/// file of its own (see examples/saxpy/).
pub fn parse_kernel_spec(text: &str, spec_dir: Option<&Path>) -> Result<KernelSpec> {
    let mut value: serde_json::Value = serde_json::from_str(text)?;
    let Some(object) = value.as_object_mut() else {
        bail!("expected a JSON object");
    };
    if let Some(kind) = object.remove("kind") {
        if kind != "kernel" {
            bail!("\"kind\" is {kind}, expected \"kernel\" (or no \"kind\" at all)");
        }
    }
    if let Some(file) = object.remove("wgsl_file") {
        if object.contains_key("wgsl") {
            bail!("give the kernel's WGSL as \"wgsl\" or as \"wgsl_file\", not both");
        }
        let Some(file) = file.as_str() else {
            bail!("\"wgsl_file\" is {file}, expected a path (relative to the spec)");
        };
        let path = spec_dir.unwrap_or(Path::new("")).join(file);
        let wgsl = std::fs::read_to_string(&path)
            .with_context(|| format!("\"wgsl_file\": cannot read {}", path.display()))?;
        object.insert("wgsl".into(), wgsl.into());
    }
    Ok(serde_json::from_value(value)?)
}

/// Parses `NAME=PATH` for `--input`.
pub fn parse_input_arg(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=PATH, got {arg:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAXPY: &str = r#"{
        "wgsl": "@compute @workgroup_size(64) fn main() {}",
        "inputs": [{"name": "x", "binding": 0}, {"name": "y", "binding": 1}],
        "output": {"binding": 2, "bytes": 256},
        "workgroups": [1, 1, 1]
    }"#;

    #[test]
    fn kernel_specs_parse_with_or_without_kind() {
        let plain = parse_kernel_spec(SAXPY, None).unwrap();
        assert_eq!(plain.entry_point, "main");
        assert_eq!(plain.replicas, 2);
        assert_eq!(plain.units, 1);
        let tagged = SAXPY.replacen('{', r#"{"kind": "kernel","#, 1);
        assert_eq!(parse_kernel_spec(&tagged, None).unwrap(), plain);
    }

    #[test]
    fn kernel_specs_with_another_kind_or_unknown_fields_are_refused() {
        let matmul = SAXPY.replacen('{', r#"{"kind": "matmul","#, 1);
        let message = parse_kernel_spec(&matmul, None).unwrap_err().to_string();
        assert!(message.contains("\"matmul\""), "{message}");
        let typo = SAXPY.replacen('{', r#"{"replica": 3,"#, 1);
        let message = parse_kernel_spec(&typo, None).unwrap_err().to_string();
        assert!(message.contains("replica"), "{message}");
        assert!(parse_kernel_spec("[1]", None).is_err());
    }

    #[test]
    fn input_args_are_name_equals_path() {
        assert_eq!(
            parse_input_arg("x=data/x.bin").unwrap(),
            ("x".to_string(), PathBuf::from("data/x.bin"))
        );
        assert_eq!(
            parse_input_arg("x=a=b").unwrap(),
            ("x".to_string(), PathBuf::from("a=b"))
        );
        assert!(parse_input_arg("x").is_err());
        assert!(parse_input_arg("=x.bin").is_err());
        assert!(parse_input_arg("x=").is_err());
    }

    #[test]
    fn kernel_inputs_must_match_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("spec.json");
        std::fs::write(&spec, SAXPY).unwrap();
        let x = dir.path().join("x.bin");
        std::fs::write(&x, [0u8; 256]).unwrap();
        let y = dir.path().join("y.bin");
        std::fs::write(&y, [0u8; 256]).unwrap();
        let arg = |name: &str, path: &Path| (name.to_string(), path.to_path_buf());

        let upload = kernel(&spec, &[arg("x", &x), arg("y", &y)]).unwrap();
        assert_eq!(upload.inputs.len(), 2);
        assert_eq!(upload.input_bytes(), 512);

        let missing = kernel(&spec, &[arg("x", &x)]).unwrap_err().to_string();
        assert!(missing.contains("--input y=PATH"), "{missing}");
        let unknown = kernel(&spec, &[arg("x", &x), arg("y", &y), arg("z", &y)])
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("no input named \"z\""), "{unknown}");
        let twice = kernel(&spec, &[arg("x", &x), arg("x", &y), arg("y", &y)])
            .unwrap_err()
            .to_string();
        assert!(twice.contains("more than once"), "{twice}");
        let gone = dir.path().join("gone.bin");
        let unreadable = kernel(&spec, &[arg("x", &x), arg("y", &gone)]).unwrap_err();
        assert!(unreadable.to_string().contains("gone.bin"), "{unreadable}");
        let no_spec = kernel(&dir.path().join("nope.json"), &[]).unwrap_err();
        assert!(no_spec.to_string().contains("nope.json"), "{no_spec}");
    }

    #[test]
    fn raw_matmul_inputs_need_a_shape() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        std::fs::write(&a, [0u8; 16]).unwrap();
        let npy = dir.path().join("b.npy");
        std::fs::write(&npy, relay_npy::write_f32(&[2, 2], &[0u8; 16])).unwrap();
        let cut = dir.path().join("cut.npy");
        std::fs::write(&cut, b"\x93NUMPY\x01\x00").unwrap();
        let message = matmul(&cut, &npy, None).unwrap_err().to_string();
        assert!(
            message.contains("cut.npy") && message.contains("cut short"),
            "{message}"
        );

        let message = matmul(&a, &npy, None).unwrap_err().to_string();
        assert!(
            message.contains("a.bin") && message.contains("--m"),
            "{message}"
        );
        let shape = MatmulShape { m: 2, n: 2, k: 2 };
        let upload = matmul(&a, &a, Some(shape)).unwrap();
        assert_eq!(
            upload.spec,
            JobSpec::Matmul(MatmulSpec { shape: Some(shape) })
        );
        assert!(matmul(&npy, &npy, None).is_ok());

        let missing = matmul(&dir.path().join("missing.npy"), &npy, None).unwrap_err();
        assert!(
            format!("{missing:#}").contains("missing.npy"),
            "{missing:#}"
        );
    }

    #[test]
    fn uploads_over_the_default_limit_are_warned_about() {
        let input = |name: &str, len: usize| Input {
            name: name.to_string(),
            path: PathBuf::from(format!("{name}.npy")),
            bytes: vec![0; len],
            format: Format::Raw,
        };
        let small = Upload {
            spec: JobSpec::Matmul(MatmulSpec { shape: None }),
            inputs: vec![input("a", 1 << 20), input("b", 1 << 20)],
        };
        assert_eq!(small.size_warning(), None);
        let large = Upload {
            spec: JobSpec::Matmul(MatmulSpec { shape: None }),
            inputs: vec![input("a", 128 << 20), input("b", (128 << 20) + 1)],
        };
        let warning = large.size_warning().unwrap();
        for needle in [
            "a.npy and b.npy",
            "256.0 MiB",
            "256 MiB",
            "split the job",
            "max_upload_bytes",
        ] {
            assert!(warning.contains(needle), "{needle}: {warning}");
        }
    }

    /// A .npy file of `data` as NumPy writes it.
    fn npy_file(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut file = crate::npy::MAGIC.to_vec();
        file.extend([1, 0]);
        file.extend((header.len() as u16).to_le_bytes());
        file.extend(header.as_bytes());
        file.extend(data);
        file
    }

    #[test]
    fn kernel_inputs_in_npy_files_send_only_their_data() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let data: Vec<u8> = (0..32).collect();
        for dtype in ["<f4", "<i4", "<u4"] {
            let input =
                Input::kernel("x", &write("x.npy", &npy_file(dtype, "(2, 4)", &data))).unwrap();
            assert_eq!(input.bytes, data, "{dtype}");
            assert_eq!(input.data_bytes(), 32);
            assert!(input.describe().contains("(2, 4)"), "{}", input.describe());
        }
        // Recognized by its magic string whatever it is called.
        let misnamed = Input::kernel("x", &write("x.bin", &npy_file("<f4", "(8,)", &data)));
        assert_eq!(misnamed.unwrap().bytes, data);
        // Raw bytes are sent as they are.
        let raw = Input::kernel("x", &write("x.f32", &data)).unwrap();
        assert_eq!((raw.bytes, raw.format), (data.clone(), Format::Raw));
        // Data that itself starts with the magic string: the whole file goes, for the relay to
        // read, so that it is not mistaken for a header there.
        let mut magic_data = crate::npy::MAGIC.to_vec();
        magic_data.extend([0; 2]);
        let file = npy_file("<u4", "(2,)", &magic_data);
        let whole = Input::kernel("x", &write("m.npy", &file)).unwrap();
        assert_eq!(whole.bytes, file);
        assert_eq!(whole.data_bytes(), 8);

        let int64 = Input::kernel("x", &write("i.npy", &npy_file("<i8", "(4,)", &data)));
        let message = int64.unwrap_err().to_string();
        assert!(
            message.contains("int64 ('<i8')") && message.contains("i.astype(np.float32)"),
            "{message}"
        );
    }
}
