//! NumPy `.npy` files: reading requesters' uploads and writing results.
//!
//! Matrices are little-endian f32 (`<f4`, [`parse_f32`]); a kernel's inputs may also be int32
//! or uint32 (`<i4`, `<u4`: [`parse`] with [`KERNEL_DTYPES`]), since its buffers are 4-byte words
//! whatever the shader reads them as. The `glowworm` CLI reads its users' files with the same
//! parser, so the two agree on what a .npy is.
//!
//! Hand-written rather than a library: the relay accepts a few 4-byte dtypes in C order, and
//! NumPy's header is a short Python dict literal (`{'descr': '<f4', 'fortran_order': False,
//! 'shape': (512, 384), }`) that a few lines read; the crates that read any .npy bring a Python
//! literal parser with them. Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.

/// The first bytes of every .npy file.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// Why an upload is not an f32 .npy array the relay can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NpyError {
    #[error("not a .npy file (it does not start with \\x93NUMPY)")]
    NotNpy,
    #[error("the .npy header is cut short")]
    TruncatedHeader,
    #[error("unsupported .npy format version {0}.{1}")]
    Version(u8, u8),
    #[error("the .npy header is malformed: {0}")]
    BadHeader(String),
    #[error(
        "the array's dtype is {0}, not little-endian float32 ('<f4'); convert it with a.astype('<f4')"
    )]
    NotF32(String),
    #[error(
        "the array's dtype is {}; expected {}: convert it with a.astype(np.float32) (or np.int32, \
         np.uint32) and save it again",
        dtype_name(got),
        allowed.iter().map(|d| dtype_name(d)).collect::<Vec<_>>().join(", ")
    )]
    Dtype {
        got: String,
        allowed: &'static [&'static str],
    },
    #[error("the array is in Fortran order; save np.ascontiguousarray(a) instead")]
    FortranOrder,
    #[error("the array data is {got} bytes, but its shape {shape:?} needs {expected}")]
    WrongLength {
        shape: Vec<usize>,
        expected: u64,
        got: u64,
    },
}

/// An f32 array read from a .npy file: its shape and its data (little-endian f32 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct F32Array<'a> {
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// An array of 4-byte elements read from a .npy file: its dtype, shape and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Array<'a> {
    /// NumPy's `descr`, one of the dtypes asked for: `<f4`, `<i4` or `<u4`.
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    /// The array's elements, little-endian, in C order; the header is not part of it.
    pub data: &'a [u8],
}

/// The dtypes a kernel input may have: float32, int32, uint32, little-endian (a shader's
/// storage buffer holds 4-byte words).
pub const KERNEL_DTYPES: &[&str] = &["<f4", "<i4", "<u4"];

/// "float32 ('<f4')" for people; other dtypes as NumPy names them.
pub fn dtype_name(descr: &str) -> String {
    let kind = match descr.get(1..) {
        Some("f2") => "float16",
        Some("f4") => "float32",
        Some("f8") => "float64",
        Some("i1") => "int8",
        Some("i2") => "int16",
        Some("i4") => "int32",
        Some("i8") => "int64",
        Some("u1") => "uint8",
        Some("u2") => "uint16",
        Some("u4") => "uint32",
        Some("u8") => "uint64",
        Some("b1") => "bool",
        _ => return format!("'{descr}'"),
    };
    let order = match descr.as_bytes().first() {
        Some(b'>') if !descr.ends_with('1') => " big-endian",
        _ => "",
    };
    format!("{kind}{order} ('{descr}')")
}

/// Whether `bytes` look like a .npy file rather than raw data.
pub fn is_npy(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Reads a little-endian f32 C-order array of any number of dimensions.
pub fn parse_f32(bytes: &[u8]) -> Result<F32Array<'_>, NpyError> {
    match parse(bytes, &["<f4"]) {
        Ok(Array { shape, data, .. }) => Ok(F32Array { shape, data }),
        Err(NpyError::Dtype { got, .. }) => Err(NpyError::NotF32(got)),
        Err(other) => Err(other),
    }
}

/// Reads a C-order array whose dtype is one of `dtypes` (each of 4-byte elements, as
/// [`KERNEL_DTYPES`]), of any number of dimensions.
pub fn parse<'a>(bytes: &'a [u8], dtypes: &'static [&'static str]) -> Result<Array<'a>, NpyError> {
    if !is_npy(bytes) {
        return Err(NpyError::NotNpy);
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err(NpyError::TruncatedHeader),
    };
    let (header_start, header_len) = match major {
        1 => {
            let len = bytes.get(8..10).ok_or(NpyError::TruncatedHeader)?;
            (10usize, u16::from_le_bytes([len[0], len[1]]) as usize)
        }
        2 | 3 => {
            let len = bytes.get(8..12).ok_or(NpyError::TruncatedHeader)?;
            (
                12,
                u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize,
            )
        }
        _ => return Err(NpyError::Version(major, minor)),
    };
    let header_end = header_start
        .checked_add(header_len)
        .ok_or(NpyError::TruncatedHeader)?;
    let header = bytes
        .get(header_start..header_end)
        .ok_or(NpyError::TruncatedHeader)?;
    let header = std::str::from_utf8(header)
        .map_err(|_| NpyError::BadHeader("the header is not text".into()))?;
    let descr = string_value(header, "descr")?;
    let Some(&dtype) = dtypes.iter().find(|&&d| d == descr) else {
        return Err(NpyError::Dtype {
            got: descr,
            allowed: dtypes,
        });
    };
    match bare_value(header, "fortran_order")? {
        "False" => {}
        "True" => return Err(NpyError::FortranOrder),
        other => {
            return Err(NpyError::BadHeader(format!(
                "fortran_order is {other}, not True or False"
            )));
        }
    }
    let shape = shape_value(header)?;
    let data = &bytes[header_end..];
    // Every dtype asked for has 4-byte elements.
    let expected = shape
        .iter()
        .try_fold(4u64, |n, &d| n.checked_mul(d as u64))
        .ok_or_else(|| NpyError::BadHeader("the shape is too large".into()))?;
    if data.len() as u64 != expected {
        return Err(NpyError::WrongLength {
            shape,
            expected,
            got: data.len() as u64,
        });
    }
    Ok(Array { dtype, shape, data })
}

/// The text after `'key':` in the header dict, trimmed.
fn value_after<'h>(header: &'h str, key: &str) -> Result<&'h str, NpyError> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let at = quoted
        .iter()
        .find_map(|q| header.find(q.as_str()).map(|i| i + q.len()))
        .ok_or_else(|| NpyError::BadHeader(format!("no '{key}' in the header")))?;
    header[at..]
        .trim_start()
        .strip_prefix(':')
        .map(str::trim_start)
        .ok_or_else(|| NpyError::BadHeader(format!("no ':' after '{key}'")))
}

/// A quoted string value.
fn string_value(header: &str, key: &str) -> Result<String, NpyError> {
    let rest = value_after(header, key)?;
    let quote = rest
        .chars()
        .next()
        .filter(|c| *c == '\'' || *c == '"')
        .ok_or_else(|| NpyError::BadHeader(format!("'{key}' is not a string")))?;
    let end = rest[1..]
        .find(quote)
        .ok_or_else(|| NpyError::BadHeader(format!("'{key}' is not a closed string")))?;
    Ok(rest[1..1 + end].to_string())
}

/// A value up to the next ',' or '}'.
fn bare_value<'h>(header: &'h str, key: &str) -> Result<&'h str, NpyError> {
    let rest = value_after(header, key)?;
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Ok(rest[..end].trim())
}

/// The 'shape' tuple: "()", "(5,)", "(512, 384)".
fn shape_value(header: &str) -> Result<Vec<usize>, NpyError> {
    let rest = value_after(header, "shape")?;
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.find(')').map(|end| &r[..end]))
        .ok_or_else(|| NpyError::BadHeader("'shape' is not a tuple".into()))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| NpyError::BadHeader(format!("shape entry {part:?} is not a size")))
        })
        .collect()
}

/// A version 1.0 .npy file of little-endian f32 `data` (bytes) with `shape`.
pub fn write_f32(shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic, version and length take 10 bytes; the header ends in '\n' at a multiple of 64.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn round_trips_what_it_writes() {
        let data: Vec<u8> = (0..24u8).collect();
        let file = write_f32(&[2, 3], &data);
        assert_eq!((file.len() - data.len()) % 64, 0);
        let array = parse_f32(&file).unwrap();
        assert_eq!(array.shape, vec![2, 3]);
        assert_eq!(array.data, &data[..]);
        let one = write_f32(&[6], &data);
        assert_eq!(parse_f32(&one).unwrap().shape, vec![6]);
    }

    #[test]
    fn reads_numpys_own_header() {
        // As np.save writes it (NumPy 1.26), for np.zeros((2, 1), dtype='<f4').
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }          \n";
        let file = with_header(header, &[0; 8]);
        assert_eq!(parse_f32(&file).unwrap().shape, vec![2, 1]);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let f8 = with_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n",
            &[0; 8],
        );
        assert_eq!(parse_f32(&f8), Err(NpyError::NotF32("<f8".into())));
        let fortran = with_header(
            "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }\n",
            &[0; 4],
        );
        assert_eq!(parse_f32(&fortran), Err(NpyError::FortranOrder));
        let short = with_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n",
            &[0; 12],
        );
        assert!(matches!(
            parse_f32(&short),
            Err(NpyError::WrongLength {
                expected: 16,
                got: 12,
                ..
            })
        ));
        assert_eq!(parse_f32(b"plain bytes"), Err(NpyError::NotNpy));
        assert_eq!(parse_f32(MAGIC), Err(NpyError::TruncatedHeader));
        let mut cut = write_f32(&[1], &[0; 4]);
        cut.truncate(20);
        assert_eq!(parse_f32(&cut), Err(NpyError::TruncatedHeader));
        let no_shape = with_header("{'descr': '<f4', 'fortran_order': False}\n", &[]);
        assert!(matches!(parse_f32(&no_shape), Err(NpyError::BadHeader(_))));
    }

    #[test]
    fn kernel_inputs_may_be_int32_or_uint32_but_not_float64() {
        for dtype in KERNEL_DTYPES {
            let file = with_header(
                &format!("{{'descr': '{dtype}', 'fortran_order': False, 'shape': (2, 3), }}\n"),
                &[7; 24],
            );
            let array = parse(&file, KERNEL_DTYPES).unwrap();
            assert_eq!((array.dtype, array.shape.as_slice()), (*dtype, &[2, 3][..]));
            assert_eq!(array.data, &[7; 24][..]);
        }
        let f8 = with_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }\n",
            &[0; 8],
        );
        let err = parse(&f8, KERNEL_DTYPES).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("float64 ('<f8')")
                && message.contains("float32 ('<f4')")
                && message.contains("astype(np.float32)"),
            "{message}"
        );
        let big = with_header(
            "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n",
            &[0; 4],
        );
        let message = parse(&big, KERNEL_DTYPES).unwrap_err().to_string();
        assert!(message.contains("float32 big-endian ('>f4')"), "{message}");
        let fortran = with_header(
            "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 2), }\n",
            &[0; 16],
        );
        assert_eq!(parse(&fortran, KERNEL_DTYPES), Err(NpyError::FortranOrder));
    }
}
