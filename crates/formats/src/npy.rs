//! numpy `.npy` arrays (format versions 1, 2 and 3), including structured (record) dtypes:
//! the container of cryoSPARC `.cs` files.
//!
//! Layout of a file: the magic `\x93NUMPY`, the major and minor version, the header length
//! (2 bytes little-endian in version 1, 4 bytes in versions 2 and 3), then a Python dictionary
//! literal `{'descr': …, 'fortran_order': …, 'shape': (…), }`, then the raw data.
//!
//! Supported field types, in either byte order: `f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1`, byte
//! strings `S<n>`, unicode strings `U<n>`, padding `V<n>`, and fixed sub-arrays of any of them
//! such as `('<f4', (3,))` or `('<u4', (2,))`. Field names are free text (cryoSPARC uses `/`).
//! Object arrays (`|O`), nested records and Fortran-ordered multi-dimensional arrays are
//! refused with a message naming the field. The header's size claims are checked against the
//! data actually present before anything of that size is touched, so a lying header costs
//! nothing.

use crate::error::{FormatError, Result};
use std::path::{Path, PathBuf};

/// The scalar type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    F2,
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
    /// Byte string of this many bytes (`S<n>`), NUL-padded.
    Bytes(usize),
    /// Unicode string of this many characters (`U<n>`, UTF-32), NUL-padded.
    Unicode(usize),
    /// Raw bytes (`V<n>`), e.g. alignment padding.
    Void(usize),
}

impl Scalar {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Scalar::I1 | Scalar::U1 | Scalar::Bool => 1,
            Scalar::F2 | Scalar::I2 | Scalar::U2 => 2,
            Scalar::F4 | Scalar::I4 | Scalar::U4 => 4,
            Scalar::F8 | Scalar::I8 | Scalar::U8 => 8,
            Scalar::Bytes(n) | Scalar::Void(n) => n,
            Scalar::Unicode(n) => n.saturating_mul(4),
        }
    }
    /// Whether the type holds numbers (integers, floats, booleans).
    pub fn is_numeric(self) -> bool {
        !matches!(self, Scalar::Bytes(_) | Scalar::Unicode(_) | Scalar::Void(_))
    }
}

/// One field of a record.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub scalar: Scalar,
    pub big_endian: bool,
    /// Sub-array shape (`[]` for a scalar field, `[3]` for `('<f4', (3,))`).
    pub shape: Vec<usize>,
    /// Elements per record (the product of `shape`).
    pub count: usize,
    /// Byte offset within a record.
    pub offset: usize,
}

/// A parsed `.npy` array: fields (one unnamed field for a plain array), the shape, and the raw
/// data.
#[derive(Clone, Debug)]
pub struct NpyArray {
    /// The file, for messages.
    pub path: PathBuf,
    pub fields: Vec<Field>,
    pub shape: Vec<usize>,
    pub record_size: usize,
    /// The whole file; the records start at `data_start`.
    buf: Vec<u8>,
    data_start: usize,
    records: usize,
    /// The header's `descr` value as written in the file, so that a copy keeps the record
    /// layout byte for byte; and the format's major version (its text encoding).
    descr_raw: Vec<u8>,
    major: u8,
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
    /// Versions 1 and 2 store the header in Latin-1, version 3 in UTF-8.
    latin1: bool,
}

impl Cursor<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
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
    /// A Python string literal in `'…'` or `"…"` (no escapes: numpy writes none in the
    /// names it produces; a backslash is kept as is).
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
        let raw = &self.s[start..self.i];
        let out = if self.latin1 { raw.iter().map(|&b| b as char).collect() } else { String::from_utf8_lossy(raw).into_owned() };
        self.i += 1;
        Some(out)
    }
    fn int(&mut self) -> Option<usize> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        let v = std::str::from_utf8(&self.s[start..self.i]).ok()?.parse().ok();
        // Python 2 long literals: `3L`.
        if v.is_some() && self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        v
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
            if v.len() > 32 {
                return None;
            }
            v.push(self.int()?);
            if !self.eat(b',') && self.peek() != Some(b')') {
                return None;
            }
        }
    }
    fn word(&mut self) -> String {
        self.ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_alphabetic() {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
}

/// A numpy type string such as `<f4`, `|S63`, `>u8`; `(scalar, big-endian)`.
fn parse_type(t: &str) -> Option<(Scalar, bool)> {
    let (big, rest) = match t.as_bytes().first()? {
        b'<' | b'|' | b'=' => (false, &t[1..]),
        b'>' => (true, &t[1..]),
        _ => (false, t),
    };
    let s = match rest {
        "f2" | "e" => Scalar::F2,
        "f4" | "f" => Scalar::F4,
        "f8" | "d" => Scalar::F8,
        "i1" | "b" => Scalar::I1,
        "i2" | "h" => Scalar::I2,
        "i4" | "i" => Scalar::I4,
        "i8" | "q" => Scalar::I8,
        "u1" | "B" => Scalar::U1,
        "u2" | "H" => Scalar::U2,
        "u4" | "I" => Scalar::U4,
        "u8" | "Q" => Scalar::U8,
        "b1" | "?" => Scalar::Bool,
        _ => {
            // The kind letter is ASCII in every numpy type; anything else is not a type.
            let (kind, n) = rest.split_at_checked(1)?;
            let n: usize = n.parse().ok()?;
            match kind {
                "S" | "a" => Scalar::Bytes(n),
                "U" => Scalar::Unicode(n),
                "V" => Scalar::Void(n),
                _ => return None,
            }
        }
    };
    Some((s, big))
}

fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Parse a whole `.npy` file held in `bytes` (copied). `path` names it in messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<NpyArray> {
    parse_header_then(bytes.len(), bytes, path).map(|(mut a, start, need)| {
        a.buf = bytes[start..start + need].to_vec();
        a.data_start = 0;
        a
    })
}

/// Parse a whole `.npy` file, keeping `bytes` as the storage (no copy).
pub fn parse_vec(bytes: Vec<u8>, path: &Path) -> Result<NpyArray> {
    let (mut a, start, _) = parse_header_then(bytes.len(), &bytes, path)?;
    a.buf = bytes;
    a.data_start = start;
    Ok(a)
}

/// Read and parse a `.npy` file.
pub fn read(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    parse_vec(bytes, path)
}

/// The header: an array without data, where the data start, and how many bytes they take.
fn parse_header_then(len: usize, bytes: &[u8], path: &Path) -> Result<(NpyArray, usize, usize)> {
    if !bytes.starts_with(b"\x93NUMPY") {
        return Err(FormatError::binary(path, 0, "not a numpy .npy file (no \\x93NUMPY magic)"));
    }
    if len < 10 {
        return Err(FormatError::binary(path, len as u64, "truncated .npy header"));
    }
    let major = bytes[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if len < 12 {
                return Err(FormatError::binary(path, 8, "truncated .npy header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(FormatError::binary(path, 6, format!(".npy format version {v} is not supported (1, 2 or 3)"))),
    };
    let hend = hstart
        .checked_add(hlen)
        .filter(|&e| e <= len)
        .ok_or_else(|| FormatError::binary(path, 8, format!("header length {hlen} runs past the end of the {len}-byte file")))?;
    let header = &bytes[hstart..hend];
    let mut c = Cursor { s: header, i: 0, latin1: major < 3 };
    let at = |c: &Cursor| (hstart + c.i) as u64;
    let bad = |c: &Cursor, msg: &str| FormatError::binary(path, at(c), format!("unreadable .npy header: {msg}"));
    if !c.eat(b'{') {
        return Err(bad(&c, "expected a dictionary"));
    }
    let mut fields: Option<Vec<Field>> = None;
    let mut shape: Option<Vec<usize>> = None;
    let mut fortran = false;
    let mut descr_raw = Vec::new();
    loop {
        if c.eat(b'}') {
            break;
        }
        let key = c.string().ok_or_else(|| bad(&c, "expected a key"))?;
        if !c.eat(b':') {
            return Err(bad(&c, "expected ':'"));
        }
        match key.as_str() {
            "descr" => {
                c.ws();
                let start = c.i;
                fields = Some(parse_descr(&mut c, path, hstart)?);
                descr_raw = header[start..c.i].to_vec();
            }
            "fortran_order" => {
                fortran = match c.word().as_str() {
                    "True" => true,
                    "False" => false,
                    w => return Err(bad(&c, &format!("fortran_order is {w:?}, expected True or False"))),
                }
            }
            "shape" => shape = Some(c.int_tuple().ok_or_else(|| bad(&c, "expected a shape tuple of sizes"))?),
            _ => return Err(bad(&c, &format!("unexpected key {key:?}"))),
        }
        if !c.eat(b',') && c.peek() != Some(b'}') {
            return Err(bad(&c, "expected ',' or '}'"));
        }
    }
    let fields = fields.ok_or_else(|| bad(&c, "no 'descr' key"))?;
    let shape = shape.ok_or_else(|| bad(&c, "no 'shape' key"))?;
    if fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(FormatError::binary(path, hstart as u64, "Fortran-order multi-dimensional arrays are not supported"));
    }
    let record_size = fields.iter().map(|f| f.offset + f.scalar.size() * f.count).max().unwrap_or(0);
    let too_big = || FormatError::binary(path, hstart as u64, format!("the shape {shape:?} is too large"));
    let records = product(&shape).ok_or_else(too_big)?;
    let need = records.checked_mul(record_size).ok_or_else(too_big)?;
    if record_size == 0 && records > 0 {
        return Err(FormatError::binary(path, hstart as u64, format!("the header describes {records} records of 0 bytes")));
    }
    let avail = len - hend;
    if need > avail {
        return Err(FormatError::binary(
            path,
            hend as u64,
            format!("the header claims {records} records of {record_size} bytes ({need} bytes) but the file holds {avail} bytes of data"),
        ));
    }
    let a = NpyArray { path: path.to_path_buf(), fields, shape, record_size, buf: Vec::new(), data_start: 0, records, descr_raw, major };
    Ok((a, hend, need))
}

/// The `descr` value: a type string, or a list of `(name, type[, shape])` tuples.
fn parse_descr(c: &mut Cursor, path: &Path, hstart: usize) -> Result<Vec<Field>> {
    let err = |c: &Cursor, msg: String| FormatError::binary(path, (hstart + c.i) as u64, msg);
    let unsupported = |c: &Cursor, name: &str, t: &str| {
        let why = if t.ends_with('O') { " (Python objects cannot be read outside Python)" } else { "" };
        err(c, format!("field {name:?} has type {t:?}, which is not supported{why}; numbers, booleans and strings are"))
    };
    if c.peek() != Some(b'[') {
        let t = c.string().ok_or_else(|| err(c, "unreadable .npy header: expected a dtype".into()))?;
        let (scalar, big) = parse_type(&t).ok_or_else(|| unsupported(c, "", &t))?;
        return Ok(vec![Field { name: String::new(), scalar, big_endian: big, shape: vec![], count: 1, offset: 0 }]);
    }
    c.eat(b'[');
    let mut fs: Vec<Field> = Vec::new();
    let mut offset = 0usize;
    loop {
        if c.eat(b']') {
            return Ok(fs);
        }
        if !c.eat(b'(') {
            return Err(err(c, "unreadable .npy header: expected a field tuple".into()));
        }
        if c.peek() == Some(b'(') {
            return Err(err(c, "fields with titles are not supported".into()));
        }
        let name = c.string().ok_or_else(|| err(c, "unreadable .npy header: expected a field name".into()))?;
        if !c.eat(b',') {
            return Err(err(c, format!("unreadable .npy header: expected ',' after field {name:?}")));
        }
        if c.peek() == Some(b'[') {
            return Err(err(c, format!("field {name:?} is a nested record, which is not supported")));
        }
        let t = c.string().ok_or_else(|| err(c, format!("unreadable .npy header: expected the type of field {name:?}")))?;
        let (scalar, big) = parse_type(&t).ok_or_else(|| unsupported(c, &name, &t))?;
        let mut shape = Vec::new();
        if c.eat(b',') && c.peek() == Some(b'(') {
            shape = c.int_tuple().ok_or_else(|| err(c, format!("unreadable .npy header: bad sub-array shape of field {name:?}")))?;
        } else if c.peek() != Some(b')') && c.peek() != Some(b'(') {
            // A bare integer sub-array size: ('<f4', 3).
            if let Some(n) = c.int() {
                shape = vec![n];
            }
        }
        if !c.eat(b')') {
            return Err(err(c, format!("unreadable .npy header: expected ')' after field {name:?}")));
        }
        c.eat(b',');
        if fs.iter().any(|f| f.name == name && !name.is_empty()) {
            return Err(err(c, format!("field {name:?} appears twice")));
        }
        let count = product(&shape).ok_or_else(|| err(c, format!("field {name:?} is too large")))?;
        let size = scalar.size().checked_mul(count).ok_or_else(|| err(c, format!("field {name:?} is too large")))?;
        fs.push(Field { name, scalar, big_endian: big, shape, count, offset });
        offset = offset.checked_add(size).ok_or_else(|| err(c, "record too large".into()))?;
    }
}

impl NpyArray {
    /// Number of records (the product of the shape).
    pub fn len(&self) -> usize {
        self.records
    }
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
    /// The raw records.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.data_start..self.data_start + self.records * self.record_size]
    }
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    fn element(&self, f: &Field, r: usize, k: usize) -> &[u8] {
        assert!(r < self.records && k < f.count, "record {r} element {k} out of range");
        let size = f.scalar.size();
        let o = self.data_start + r * self.record_size + f.offset + k * size;
        &self.buf[o..o + size]
    }

    /// Set element `k` of the floating-point field `name` in record `r` to `v` (rounded to the
    /// field's precision, in its byte order). An error when the field does not exist or does
    /// not hold floats; panics when `r` or `k` is out of range (a bug in the caller).
    pub fn set_float(&mut self, name: &str, r: usize, k: usize, v: f64) -> Result<()> {
        let f = self.field(name).ok_or_else(|| FormatError::invalid(&self.path, format!("no field {name:?} to write")))?;
        assert!(r < self.records && k < f.count, "record {r} element {k} out of range");
        let (scalar, big) = (f.scalar, f.big_endian);
        let o = self.data_start + r * self.record_size + f.offset + k * scalar.size();
        let bytes: Vec<u8> = match (scalar, big) {
            (Scalar::F2, false) => half::f16::from_f64(v).to_le_bytes().to_vec(),
            (Scalar::F2, true) => half::f16::from_f64(v).to_be_bytes().to_vec(),
            (Scalar::F4, false) => (v as f32).to_le_bytes().to_vec(),
            (Scalar::F4, true) => (v as f32).to_be_bytes().to_vec(),
            (Scalar::F8, false) => v.to_le_bytes().to_vec(),
            (Scalar::F8, true) => v.to_be_bytes().to_vec(),
            _ => return Err(FormatError::invalid(&self.path, format!("field {name:?} holds {scalar:?}, not floating-point numbers"))),
        };
        self.buf[o..o + bytes.len()].copy_from_slice(&bytes);
        Ok(())
    }

    /// The `.npy` file of a 1-D array holding records `rows` of this array, in that order, with
    /// the same record layout (the header's `descr` as read, so every field keeps its name,
    /// type and byte order). The header is padded to a multiple of 64 bytes, as numpy writes
    /// it; version 1 when it fits, else 2, or 3 when the source was version 3 (UTF-8 names).
    /// Panics when a row is out of range (a bug in the caller).
    pub fn records_file(&self, rows: &[usize]) -> Vec<u8> {
        let mut dict = b"{'descr': ".to_vec();
        dict.extend_from_slice(&self.descr_raw);
        dict.extend_from_slice(format!(", 'fortran_order': False, 'shape': ({},), }}", rows.len()).as_bytes());
        let major = if self.major == 3 {
            3
        } else if dict.len() + 1 + 10 <= 65535 {
            1
        } else {
            2
        };
        let prefix = if major == 1 { 10 } else { 12 };
        let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
        let hlen = total - prefix;
        let mut out = Vec::with_capacity(total + rows.len() * self.record_size);
        out.extend_from_slice(b"\x93NUMPY");
        out.extend_from_slice(&[major, 0]);
        if major == 1 {
            out.extend_from_slice(&(hlen as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(hlen as u32).to_le_bytes());
        }
        out.extend_from_slice(&dict);
        out.resize(total - 1, b' ');
        out.push(b'\n');
        for &r in rows {
            assert!(r < self.records, "record {r} out of range");
            let o = self.data_start + r * self.record_size;
            out.extend_from_slice(&self.buf[o..o + self.record_size]);
        }
        out
    }

    /// Element `k` of field `f` in record `r`, as f64 (`None` for strings and padding).
    /// Panics when `r` or `k` is out of range (a bug in the caller).
    pub fn number(&self, f: &Field, r: usize, k: usize) -> Option<f64> {
        let b = self.element(f, r, k);
        macro_rules! num {
            ($t:ty, $n:expr) => {{
                let a: [u8; $n] = b.try_into().expect("element size");
                if f.big_endian {
                    <$t>::from_be_bytes(a) as f64
                } else {
                    <$t>::from_le_bytes(a) as f64
                }
            }};
        }
        Some(match f.scalar {
            Scalar::F2 => {
                let a: [u8; 2] = b.try_into().expect("element size");
                let bits = if f.big_endian { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) };
                half::f16::from_bits(bits).to_f64()
            }
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
            Scalar::Bytes(_) | Scalar::Unicode(_) | Scalar::Void(_) => return None,
        })
    }

    /// Element `k` of an integer or boolean field as an exact integer (`None` for floats and
    /// strings).
    pub fn integer(&self, f: &Field, r: usize, k: usize) -> Option<i128> {
        let b = self.element(f, r, k);
        let mut a = [0u8; 8];
        let n = b.len().min(8);
        a[..n].copy_from_slice(&b[..n]);
        if f.big_endian {
            a[..n].reverse();
        }
        let u = u64::from_le_bytes(a);
        let signed = |bits: u32| -> i128 { ((u << (64 - bits)) as i64 >> (64 - bits)) as i128 };
        Some(match f.scalar {
            Scalar::U1 | Scalar::U2 | Scalar::U4 | Scalar::U8 | Scalar::Bool => u as i128,
            Scalar::I1 => signed(8),
            Scalar::I2 => signed(16),
            Scalar::I4 => signed(32),
            Scalar::I8 => signed(64),
            _ => return None,
        })
    }

    /// A string field of record `r` (its first element for a sub-array), as text with trailing
    /// NULs removed (`None` for numbers and empty sub-arrays). Panics when `r` is out of range.
    pub fn text(&self, f: &Field, r: usize) -> Option<String> {
        if f.count == 0 {
            return None;
        }
        match f.scalar {
            Scalar::Bytes(_) => self.bytes(f, r).map(|b| String::from_utf8_lossy(b).into_owned()),
            Scalar::Unicode(n) => {
                let b = self.element(f, r, 0);
                let mut s = String::with_capacity(n);
                for ch in b.chunks_exact(4) {
                    let a: [u8; 4] = ch.try_into().expect("4 bytes");
                    let cp = if f.big_endian { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) };
                    if cp == 0 {
                        break;
                    }
                    s.push(char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                Some(s)
            }
            _ => None,
        }
    }

    /// A byte-string field of record `r` (its first element for a sub-array), trailing NULs
    /// removed (`None` for other types and empty sub-arrays). Panics when `r` is out of range.
    pub fn bytes(&self, f: &Field, r: usize) -> Option<&[u8]> {
        let Scalar::Bytes(_) = f.scalar else { return None };
        if f.count == 0 {
            return None;
        }
        let b = self.element(f, r, 0);
        let end = b.iter().rposition(|&c| c != 0).map(|p| p + 1).unwrap_or(0);
        Some(&b[..end])
    }

    fn named(&self, name: &str) -> Result<&Field> {
        self.field(name).ok_or_else(|| FormatError::invalid(&self.path, format!("field {name} is missing")))
    }

    /// A numeric column of one value per record (element 0 of a sub-array field is refused:
    /// the field must be scalar). Errors name the file and the field.
    pub fn column_f64(&self, name: &str) -> Result<Vec<f64>> {
        self.column_f64_n::<1>(name).map(|v| v.into_iter().map(|[x]| x).collect())
    }

    /// A numeric column of exactly `N` values per record (e.g. `alignments3D/pose`, 3).
    pub fn column_f64_n<const N: usize>(&self, name: &str) -> Result<Vec<[f64; N]>> {
        let f = self.named(name)?;
        if !f.scalar.is_numeric() || f.count != N {
            let what = if f.scalar.is_numeric() { format!("{} numbers", f.count) } else { "text".to_string() };
            return Err(FormatError::invalid(&self.path, format!("field {name} holds {what} per record, expected {N} numbers")));
        }
        Ok((0..self.records).map(|r| std::array::from_fn(|k| self.number(f, r, k).expect("numeric field"))).collect())
    }

    /// A text column (`S<n>` or `U<n>`).
    pub fn column_text(&self, name: &str) -> Result<Vec<String>> {
        let f = self.named(name)?;
        if !matches!(f.scalar, Scalar::Bytes(_) | Scalar::Unicode(_)) || f.count != 1 {
            return Err(FormatError::invalid(&self.path, format!("field {name} does not hold text")));
        }
        Ok((0..self.records).map(|r| self.text(f, r).expect("text field")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
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
        assert_eq!(v.shape, [3]);
        assert_eq!(a.number(&v, 1, 2), Some(12.0));
        assert_eq!(a.number(a.field("idx").unwrap(), 1, 0), Some(8.0));
        assert_eq!(a.integer(a.field("idx").unwrap(), 1, 0), Some(8));
        assert_eq!(a.bytes(a.field("p").unwrap(), 0), Some(&b"ab"[..]));
        assert_eq!(a.column_f64_n::<3>("v").unwrap()[1], [10.0, 11.0, 12.0]);
        assert!(a.column_f64("v").unwrap_err().to_string().contains("3 numbers per record, expected 1"));
        let b2 = parse_vec(b.clone(), Path::new("x.npy")).unwrap();
        assert_eq!(b2.data(), a.data());
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
