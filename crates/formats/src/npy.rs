//! numpy `.npy` arrays (format versions 1, 2 and 3), including structured (record) dtypes:
//! the container of cryoSPARC `.cs` files.
//!
//! Supported field types: `f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1` in either byte order, byte
//! strings `S<n>`, and fixed sub-arrays such as `('<f4', (3,))`. Object arrays (`|O`) and
//! Fortran order are refused. The header's claims are checked against the data length before
//! anything of that size is touched.

use crate::error::{FormatError, Result};
use std::path::Path;

/// The scalar type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    F4,
    F8,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
    Bool,
    /// Byte string of this many bytes.
    Bytes(usize),
}

impl Scalar {
    pub fn size(self) -> usize {
        match self {
            Scalar::I1 | Scalar::U1 | Scalar::Bool => 1,
            Scalar::I2 | Scalar::U2 => 2,
            Scalar::F4 | Scalar::I4 | Scalar::U4 => 4,
            Scalar::F8 | Scalar::I8 | Scalar::U8 => 8,
            Scalar::Bytes(n) => n,
        }
    }
}

/// One field of a record.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub scalar: Scalar,
    pub big_endian: bool,
    /// Elements per record (product of the sub-array shape; 1 for a scalar field).
    pub count: usize,
    /// Byte offset within a record.
    pub offset: usize,
}

/// A parsed `.npy` array: fields (one unnamed field for a plain array), the shape, and the raw data.
#[derive(Clone, Debug)]
pub struct NpyArray {
    pub fields: Vec<Field>,
    pub shape: Vec<usize>,
    pub record_size: usize,
    pub data: Vec<u8>,
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && (self.s[self.i] as char).is_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn string(&mut self) -> Option<String> {
        let q = self.peek()?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != q {
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return None;
        }
        let out = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Some(out)
    }
    fn int(&mut self) -> Option<usize> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok()
    }
    /// `(a, b, ...)` of integers, allowing a trailing comma and `()`.
    fn int_tuple(&mut self) -> Option<Vec<usize>> {
        if !self.eat(b'(') {
            return None;
        }
        let mut v = Vec::new();
        loop {
            if self.eat(b')') {
                return Some(v);
            }
            v.push(self.int()?);
            self.eat(b',');
        }
    }
    fn word(&mut self) -> String {
        self.ws();
        let start = self.i;
        while self.i < self.s.len() && (self.s[self.i] as char).is_ascii_alphabetic() {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
}

fn parse_type(t: &str) -> Option<(Scalar, bool)> {
    let (order, rest) = match t.as_bytes().first()? {
        b'<' | b'|' | b'=' => (false, &t[1..]),
        b'>' => (true, &t[1..]),
        _ => (false, t),
    };
    let s = match rest {
        "f4" => Scalar::F4,
        "f8" => Scalar::F8,
        "i1" => Scalar::I1,
        "i2" => Scalar::I2,
        "i4" => Scalar::I4,
        "i8" => Scalar::I8,
        "u1" => Scalar::U1,
        "u2" => Scalar::U2,
        "u4" => Scalar::U4,
        "u8" => Scalar::U8,
        "b1" => Scalar::Bool,
        _ => {
            let n = rest.strip_prefix('S')?.parse().ok()?;
            Scalar::Bytes(n)
        }
    };
    Some((s, order))
}

/// Parse a whole `.npy` file held in `bytes`. `path` names it in messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(FormatError::binary(path, 0, "not a numpy .npy file (no \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(FormatError::binary(path, 8, "truncated .npy header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(FormatError::binary(path, 6, format!(".npy format version {v} is not supported (1, 2 or 3)"))),
    };
    let hend = hstart.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or_else(|| {
        FormatError::binary(path, 8, format!("header length {hlen} runs past the end of the {}-byte file", bytes.len()))
    })?;
    let header = &bytes[hstart..hend];
    let bad = |msg: &str| FormatError::binary(path, hstart as u64, format!("unreadable .npy header: {msg}"));
    let mut c = Cursor { s: header, i: 0 };
    if !c.eat(b'{') {
        return Err(bad("expected a dictionary"));
    }
    let mut fields: Option<Vec<Field>> = None;
    let mut shape: Option<Vec<usize>> = None;
    let mut fortran = false;
    loop {
        if c.eat(b'}') {
            break;
        }
        let key = c.string().ok_or_else(|| bad("expected a key"))?;
        if !c.eat(b':') {
            return Err(bad("expected ':'"));
        }
        match key.as_str() {
            "descr" => {
                let mut fs = Vec::new();
                let mut offset = 0usize;
                if c.eat(b'[') {
                    loop {
                        if c.eat(b']') {
                            break;
                        }
                        if !c.eat(b'(') {
                            return Err(bad("expected a field tuple"));
                        }
                        let name = c.string().ok_or_else(|| bad("expected a field name"))?;
                        c.eat(b',');
                        let t = c.string().ok_or_else(|| bad("expected a field type"))?;
                        let (scalar, big) = parse_type(&t).ok_or_else(|| {
                            FormatError::binary(path, hstart as u64, format!("field {name:?} has type {t:?}, which is not supported (numbers, bools and byte strings)"))
                        })?;
                        c.eat(b',');
                        let count = if c.peek() == Some(b'(') {
                            let dims = c.int_tuple().ok_or_else(|| bad("expected a sub-array shape"))?;
                            dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("sub-array too large"))?
                        } else {
                            1
                        };
                        if !c.eat(b')') {
                            return Err(bad("expected ')' after a field"));
                        }
                        c.eat(b',');
                        let size = scalar.size().checked_mul(count).ok_or_else(|| bad("field too large"))?;
                        fs.push(Field { name, scalar, big_endian: big, count, offset });
                        offset = offset.checked_add(size).ok_or_else(|| bad("record too large"))?;
                    }
                } else {
                    let t = c.string().ok_or_else(|| bad("expected a dtype"))?;
                    let (scalar, big) = parse_type(&t)
                        .ok_or_else(|| FormatError::binary(path, hstart as u64, format!("dtype {t:?} is not supported")))?;
                    fs.push(Field { name: String::new(), scalar, big_endian: big, count: 1, offset: 0 });
                }
                fields = Some(fs);
            }
            "fortran_order" => fortran = c.word() == "True",
            "shape" => shape = Some(c.int_tuple().ok_or_else(|| bad("expected a shape tuple"))?),
            _ => return Err(bad(&format!("unexpected key {key:?}"))),
        }
        c.eat(b',');
    }
    if fortran {
        return Err(FormatError::binary(path, hstart as u64, "Fortran-order arrays are not supported"));
    }
    let fields = fields.ok_or_else(|| bad("no descr"))?;
    let shape = shape.ok_or_else(|| bad("no shape"))?;
    let record_size: usize = fields.last().map(|f| f.offset + f.scalar.size() * f.count).unwrap_or(0);
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape too large"))?;
    let need = n.checked_mul(record_size).ok_or_else(|| bad("shape too large"))?;
    let avail = bytes.len() - hend;
    if need > avail {
        return Err(FormatError::binary(
            path,
            hend as u64,
            format!("header claims {n} records of {record_size} bytes ({need} bytes) but the file holds {avail} bytes of data"),
        ));
    }
    Ok(NpyArray { fields, shape, record_size, data: bytes[hend..hend + need].to_vec() })
}

impl NpyArray {
    /// Number of records (the product of the shape).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Element `k` of field `f` in record `r`, as f64 (byte strings are not numbers: `None`).
    pub fn number(&self, f: &Field, r: usize, k: usize) -> Option<f64> {
        let size = f.scalar.size();
        let o = r * self.record_size + f.offset + k * size;
        let b = &self.data[o..o + size];
        macro_rules! num {
            ($t:ty, $n:expr) => {{
                let mut a = [0u8; $n];
                a.copy_from_slice(b);
                if f.big_endian {
                    <$t>::from_be_bytes(a) as f64
                } else {
                    <$t>::from_le_bytes(a) as f64
                }
            }};
        }
        Some(match f.scalar {
            Scalar::F4 => num!(f32, 4),
            Scalar::F8 => num!(f64, 8),
            Scalar::I1 => b[0] as i8 as f64,
            Scalar::U1 => b[0] as f64,
            Scalar::Bool => (b[0] != 0) as u8 as f64,
            Scalar::I2 => num!(i16, 2),
            Scalar::U2 => num!(u16, 2),
            Scalar::I4 => num!(i32, 4),
            Scalar::U4 => num!(u32, 4),
            Scalar::I8 => num!(i64, 8),
            Scalar::U8 => num!(u64, 8),
            Scalar::Bytes(_) => return None,
        })
    }

    /// A byte-string field of record `r`, trailing NULs removed.
    pub fn bytes(&self, f: &Field, r: usize) -> Option<&[u8]> {
        let Scalar::Bytes(n) = f.scalar else { return None };
        let o = r * self.record_size + f.offset;
        let b = &self.data[o..o + n * f.count];
        let end = b.iter().rposition(|&c| c != 0).map(|p| p + 1).unwrap_or(0);
        Some(&b[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn structured_records() {
        let mut data = Vec::new();
        for r in 0..2u32 {
            data.extend((r + 7).to_le_bytes());
            data.extend(b"ab\0\0");
            for k in 0..3 {
                data.extend((r as f32 * 10.0 + k as f32).to_be_bytes());
            }
        }
        let b = npy("{'descr': [('idx', '<u4'), ('p', '|S4'), ('v', '>f4', (3,))], 'fortran_order': False, 'shape': (2,), }", &data);
        let a = parse(&b, Path::new("x.npy")).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.record_size, 20);
        let v = a.field("v").unwrap().clone();
        assert_eq!(a.number(&v, 1, 2), Some(12.0));
        assert_eq!(a.number(a.field("idx").unwrap(), 1, 0), Some(8.0));
        assert_eq!(a.bytes(a.field("p").unwrap(), 0), Some(&b"ab"[..]));
    }

    #[test]
    fn bad_headers() {
        let e = parse(b"hello", Path::new("x.cs")).unwrap_err().to_string();
        assert!(e.contains("x.cs") && e.contains("magic"), "{e}");
        let b = npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000,), }", &[0u8; 16]);
        let e = parse(&b, Path::new("big.npy")).unwrap_err().to_string();
        assert!(e.contains("claims"), "{e}");
        let b = npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", &[0u8; 8]);
        assert!(parse(&b, Path::new("o.npy")).unwrap_err().to_string().contains("not supported"));
    }
}
