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

/// Reads a `.npy` file of float or integer values (as f64).
pub fn read(path: &Path) -> Result<Array, InputError> {
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::new(format!("cannot read {}: {e}", path.display())))?;
    parse(&bytes).map_err(|e| InputError::new(format!("{}: {e}", path.display())))
}

/// Parses the bytes of a `.npy` file (format versions 1.0–3.0 through `npyz`): floats of 4 or
/// 8 bytes and integers of 1–8 bytes, either byte order, C order, as f64.
pub fn parse(bytes: &[u8]) -> Result<Array, InputError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err("not a .npy file: it is gzip-compressed (decompress it first)".into());
    }
    if !bytes.starts_with(MAGIC) {
        return Err("not a .npy file (bad magic bytes)".into());
    }
    let mut reader = std::io::Cursor::new(bytes);
    let header = npyz::NpyHeader::from_reader(&mut reader)
        .map_err(|e| InputError::new(format!("bad .npy header: {e}")))?;
    let body = &bytes[reader.position() as usize..];
    let npy = npyz::NpyFile::with_header(header, body);
    if npy.order() != npyz::Order::C {
        return Err(
            "Fortran-order arrays are not supported (save with np.ascontiguousarray)".into(),
        );
    }
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| InputError::new(format!("shape {:?} is too large", npy.shape())))?;
    let dtype = npy.dtype();
    let unsupported = || {
        InputError::new(format!(
            "dtype {} is not supported (expected floats of 4 or 8 bytes or integers, either \
             byte order)",
            dtype.descr()
        ))
    };
    let npyz::DType::Plain(ts) = &dtype else {
        return Err(unsupported());
    };
    let width = ts.num_bytes().ok_or_else(unsupported)?;
    let bytes_needed = shape
        .iter()
        .try_fold(width, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| InputError::new(format!("shape {shape:?} is too large")))?;
    if body.len() != bytes_needed {
        return Err(format!(
            "truncated or padded data: shape {shape:?} needs {bytes_needed} bytes, the file has {}",
            body.len()
        )
        .into());
    }
    use npyz::TypeChar::{Float, Int, Uint};
    let data: std::io::Result<Vec<f64>> = match (ts.type_char(), width) {
        (Float, 8) => npy.into_vec::<f64>(),
        (Float, 4) => widen(npy.into_vec::<f32>()),
        (Int, 8) => widen(npy.into_vec::<i64>()),
        (Int, 4) => widen(npy.into_vec::<i32>()),
        (Int, 2) => widen(npy.into_vec::<i16>()),
        (Int, 1) => widen(npy.into_vec::<i8>()),
        (Uint, 8) => widen(npy.into_vec::<u64>()),
        (Uint, 4) => widen(npy.into_vec::<u32>()),
        (Uint, 2) => widen(npy.into_vec::<u16>()),
        (Uint, 1) => widen(npy.into_vec::<u8>()),
        _ => return Err(unsupported()),
    };
    let data = data.map_err(|e| InputError::new(format!("bad .npy data: {e}")))?;
    Ok(Array { shape, data })
}

/// The values as f64 (exact for floats and for integers up to 2⁵³).
fn widen<T: Copy + ToF64>(values: std::io::Result<Vec<T>>) -> std::io::Result<Vec<f64>> {
    values.map(|v| v.into_iter().map(ToF64::to_f64).collect())
}

trait ToF64 {
    fn to_f64(self) -> f64;
}

macro_rules! to_f64 {
    ($($t:ty),*) => {$(impl ToF64 for $t { fn to_f64(self) -> f64 { self as f64 } })*};
}
to_f64!(f32, i64, i32, i16, i8, u64, u32, u16, u8);

/// The `.npy` magic string.
const MAGIC: &[u8] = b"\x93NUMPY";

/// Encodes float64 values as a version-1.0 `.npy` file, laid out as NumPy writes it (the
/// header padded so the data starts on a 64-byte boundary, which `npyz`'s writer does not do).
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
        let mut complex = good.clone();
        let at = complex.windows(3).position(|w| w == b"<f8").unwrap();
        complex[at + 1] = b'c';
        assert!(
            parse(&complex)
                .unwrap_err()
                .contains("'<c8' is not supported"),
            "{}",
            parse(&complex).unwrap_err()
        );
        let mut fortran = good.clone();
        let at = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran[at..at + 5].copy_from_slice(b"True ");
        assert!(parse(&fortran).unwrap_err().contains("Fortran-order"));
    }

    #[test]
    fn big_endian_arrays_read_as_their_values() {
        // np.save(f, np.array([1.5, -2.0], dtype='>f8')), and the same as '>i4'.
        let mut f8 = encode(&Array {
            shape: vec![2],
            data: vec![0.0, 0.0],
        });
        let at = f8.windows(3).position(|w| w == b"<f8").unwrap();
        f8[at] = b'>';
        let body = f8.len() - 16;
        f8[body..body + 8].copy_from_slice(&1.5f64.to_be_bytes());
        f8[body + 8..].copy_from_slice(&(-2.0f64).to_be_bytes());
        assert_eq!(parse(&f8).unwrap().data, [1.5, -2.0]);
        let mut i4 = f8[..body].to_vec();
        i4[at..at + 3].copy_from_slice(b">i4");
        i4.extend(7i32.to_be_bytes());
        i4.extend((-3i32).to_be_bytes());
        assert_eq!(parse(&i4).unwrap().data, [7.0, -3.0]);
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
