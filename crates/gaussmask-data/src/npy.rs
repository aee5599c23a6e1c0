//! NumPy `.npy` files (format versions 1.0–3.0, little-endian floats and integers, C order) and
//! safetensors files, for checking numbers against a user's own NumPy code.

use gaussmask_core::InputError;
use std::path::Path;

/// A dense float array read from or written to a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Values in C (row-major) order.
    pub data: Vec<f64>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a `.npy` file of float or integer values (as f64).
pub fn read(path: &Path) -> Result<Array, InputError> {
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::new(format!("cannot read {}: {e}", path.display())))?;
    parse(&bytes).map_err(|e| InputError::new(format!("{}: {e}", path.display())))
}

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Array, InputError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err("not a .npy file: it is gzip-compressed (decompress it first)".into());
    }
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic bytes)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy format version {v}").into()),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let shape = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    if fortran.trim() != "False" {
        return Err(
            "Fortran-order arrays are not supported (save with np.ascontiguousarray)".into(),
        );
    }
    // Integer arrays are read too: class labels are saved as integers.
    type Decode = fn(&[u8]) -> f64;
    let (width, decode): (usize, Decode) =
        match descr.trim().trim_matches(|c| c == '\'' || c == '"') {
            "<f8" => (8, |c| f64::from_le_bytes(c.try_into().expect("8 bytes"))),
            "<f4" => (4, |c| {
                f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64
            }),
            "<i8" => (8, |c| {
                i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64
            }),
            "<i4" => (4, |c| {
                i32::from_le_bytes(c.try_into().expect("4 bytes")) as f64
            }),
            "<i2" => (2, |c| {
                i16::from_le_bytes(c.try_into().expect("2 bytes")) as f64
            }),
            "|i1" => (1, |c| c[0] as i8 as f64),
            "<u8" => (8, |c| {
                u64::from_le_bytes(c.try_into().expect("8 bytes")) as f64
            }),
            "<u4" => (4, |c| {
                u32::from_le_bytes(c.try_into().expect("4 bytes")) as f64
            }),
            "<u2" => (2, |c| {
                u16::from_le_bytes(c.try_into().expect("2 bytes")) as f64
            }),
            "|u1" => (1, |c| c[0] as f64),
            other => {
                return Err(format!(
                    "dtype '{other}' is not supported (expected float64 '<f8', float32 '<f4' \
                     or a little-endian integer type)"
                )
                .into());
            }
        };
    let shape: Vec<usize> = shape
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry '{s}'"))
        })
        .collect::<Result<_, _>>()?;
    let bytes_needed = shape
        .iter()
        .try_fold(width, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let body = &bytes[start + header_len..];
    if body.len() != bytes_needed {
        return Err(format!(
            "truncated or padded data: shape {shape:?} needs {bytes_needed} bytes, the file has {}",
            body.len()
        )
        .into());
    }
    let data = body.chunks_exact(width).map(decode).collect();
    Ok(Array { shape, data })
}

/// The text of `key`'s value in the header's Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(&rest[..end])
}

/// Encodes float64 values as a version-1.0 `.npy` file.
pub fn encode(array: &Array) -> Vec<u8> {
    let shape = match array.shape.len() {
        1 => format!("({},)", array.shape[0]),
        _ => format!(
            "({})",
            array
                .shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so that the data starts on a 64-byte boundary, ending in a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 8 * array.data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &array.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Encodes named float64 tensors as one safetensors file.
pub fn encode_safetensors(tensors: &[(String, Array)]) -> Vec<u8> {
    let mut offset = 0usize;
    let mut entries = Vec::new();
    for (name, array) in tensors {
        let size = 8 * array.data.len();
        let shape = array
            .shape
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        entries.push(format!(
            "\"{name}\":{{\"dtype\":\"F64\",\"shape\":[{shape}],\"data_offsets\":[{offset},{}]}}",
            offset + size
        ));
        offset += size;
    }
    let mut header = format!("{{{}}}", entries.join(","));
    // The data starts on an 8-byte boundary.
    header.push_str(&" ".repeat((8 - header.len() % 8) % 8));
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for (_, array) in tensors {
        for v in &array.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_numpy_header() {
        let a = Array {
            shape: vec![2, 3],
            data: vec![1.0, -2.5, 3.25, 0.0, 1e-300, 7.0],
        };
        let bytes = encode(&a);
        // NumPy's own layout: magic, version 1.0, header padded to a multiple of 64 bytes.
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(
            (10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64,
            0
        );
        assert_eq!(parse(&bytes).unwrap(), a);
        let v = Array {
            shape: vec![4],
            data: vec![1.0, 2.0, 3.0, 4.0],
        };
        assert_eq!(parse(&encode(&v)).unwrap(), v);
    }

    #[test]
    fn reads_what_numpy_writes_in_float32() {
        // np.save(f, np.array([[1.5, -2.0]], dtype=np.float32)) writes exactly this header.
        let mut bytes = b"\x93NUMPY\x01\x00v\x00".to_vec();
        let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }".to_string();
        header.push_str(&" ".repeat(118 - header.len() - 1));
        header.push('\n');
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        bytes.extend_from_slice(&(-2.0f32).to_le_bytes());
        let a = parse(&bytes).unwrap();
        assert_eq!(a.shape, vec![1, 2]);
        assert_eq!(a.data, vec![1.5, -2.0]);
    }

    #[test]
    fn bad_files_are_named_errors() {
        assert!(parse(b"PK\x03\x04 not npy").unwrap_err().contains("magic"));
        let good = encode(&Array {
            shape: vec![3],
            data: vec![1.0, 2.0, 3.0],
        });
        assert!(
            parse(&good[..good.len() - 3])
                .unwrap_err()
                .contains("truncated")
        );
        let mut big_endian = good.clone();
        let at = big_endian.windows(3).position(|w| w == b"<f8").unwrap();
        big_endian[at] = b'>';
        assert!(
            parse(&big_endian)
                .unwrap_err()
                .contains("'>f8' is not supported")
        );
    }

    #[test]
    fn integer_arrays_read_as_numbers() {
        // np.save(f, np.array([3, -1], dtype=np.int64)), then as uint8.
        let mut i64s = encode(&Array {
            shape: vec![2],
            data: vec![0.0, 0.0],
        });
        let at = i64s.windows(3).position(|w| w == b"<f8").unwrap();
        i64s[at + 1] = b'i';
        let body = i64s.len() - 16;
        i64s[body..body + 8].copy_from_slice(&3i64.to_le_bytes());
        i64s[body + 8..].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(parse(&i64s).unwrap().data, [3.0, -1.0]);
        let mut u8s = i64s[..body].to_vec();
        u8s[at..at + 3].copy_from_slice(b"|u1");
        u8s.extend([7, 255]);
        assert_eq!(parse(&u8s).unwrap().data, [7.0, 255.0]);
    }

    #[test]
    fn safetensors_header_describes_the_data() {
        let t = vec![
            (
                "W".to_string(),
                Array {
                    shape: vec![2, 2],
                    data: vec![1.0, 2.0, 3.0, 4.0],
                },
            ),
            (
                "a".to_string(),
                Array {
                    shape: vec![2],
                    data: vec![-1.0, 1.0],
                },
            ),
        ];
        let bytes = encode_safetensors(&t);
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        assert!(
            header.contains("\"W\":{\"dtype\":\"F64\",\"shape\":[2,2],\"data_offsets\":[0,32]}")
        );
        assert!(
            header.contains("\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[32,48]}")
        );
        assert_eq!(bytes.len(), 8 + n + 48);
        assert_eq!(
            f64::from_le_bytes(bytes[8 + n + 32..8 + n + 40].try_into().unwrap()),
            -1.0
        );
    }
}
