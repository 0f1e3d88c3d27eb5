//! The subset of Python pickles that cryoDRGN pose and CTF files use: numpy arrays (as
//! numpy pickles them, through `numpy.core.multiarray._reconstruct` or `numpy._core…`) and
//! tuples of them, protocols 2 to 5 with in-band data.
//!
//! This is a safe, minimal reader: it executes nothing. Only the numpy globals needed to
//! rebuild arrays are accepted; any other global, or an opcode outside the subset, is an error
//! naming the opcode and its byte offset.
//!
//! * Pose pickle: `(rot[N,3,3], trans[N,2])` or `rot[N,3,3]` alone; `rot` is RELION's `A` and
//!   `trans·D` is `+origin` in pixels.
//! * CTF pickle: `(N, 9)`: `D, apix, dfU, dfV, dfang (°), kV, Cs (mm), Q0, phase shift (°)`.

use crate::error::{FormatError, Result};
use std::path::Path;

/// A numpy array read from a pickle, as f64 values in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// A value on the unpickler's stack.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Global(String, String),
    /// `dtype(kind)` with the byte order set by BUILD.
    Dtype { kind: String, big_endian: bool },
    /// An array created by `_reconstruct`, not yet filled by BUILD.
    EmptyArray,
    Array(Array),
    Mark,
}

const ALLOWED: [(&str, &str); 5] = [
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
];

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn err(&self, msg: impl Into<String>) -> FormatError {
        FormatError::binary(self.path, self.i as u64, msg.into())
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() - self.i < n {
            return Err(self.err(format!("truncated pickle: {n} more bytes expected")));
        }
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<usize> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]) as usize)
    }
    fn u32(&mut self) -> Result<usize> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    }
    fn u64(&mut self) -> Result<usize> {
        let s = self.take(8)?;
        let v = u64::from_le_bytes(s.try_into().expect("8 bytes"));
        usize::try_from(v).map_err(|_| self.err("length too large"))
    }
    fn line(&mut self) -> Result<String> {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i] != b'\n' {
            self.i += 1;
        }
        if self.i >= self.b.len() {
            return Err(self.err("truncated pickle: unterminated line"));
        }
        let s = String::from_utf8_lossy(&self.b[start..self.i]).into_owned();
        self.i += 1;
        Ok(s)
    }
}

fn decode_array(shape: &[usize], kind: &str, big: bool, raw: &[u8], r: &Reader) -> Result<Array> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| r.err("array shape too large"))?;
    let size = match kind {
        "f4" | "i4" | "u4" => 4,
        "f8" | "i8" | "u8" => 8,
        "i2" | "u2" => 2,
        "i1" | "u1" | "b1" => 1,
        k => return Err(r.err(format!("array dtype {k:?} is not supported"))),
    };
    if raw.len() != n.checked_mul(size).ok_or_else(|| r.err("array too large"))? {
        return Err(r.err(format!("array of shape {shape:?} and dtype {kind} needs {} bytes, the pickle holds {}", n * size, raw.len())));
    }
    let data = raw
        .chunks_exact(size)
        .map(|c| {
            let mut a = [0u8; 8];
            a[..size].copy_from_slice(c);
            if big {
                a[..size].reverse();
            }
            match kind {
                "f4" => f32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                "f8" => f64::from_le_bytes(a),
                "i4" => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                "u4" => u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                "i8" => i64::from_le_bytes(a) as f64,
                "u8" => u64::from_le_bytes(a) as f64,
                "i2" => i16::from_le_bytes([a[0], a[1]]) as f64,
                "u2" => u16::from_le_bytes([a[0], a[1]]) as f64,
                "i1" => a[0] as i8 as f64,
                _ => a[0] as f64,
            }
        })
        .collect();
    Ok(Array { shape: shape.to_vec(), data })
}

/// Unpickle `bytes` (the whole file). `path` names it in messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Value> {
    let mut r = Reader { b: bytes, i: 0, path };
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: Vec<Option<Value>> = Vec::new();
    let pop = |stack: &mut Vec<Value>, r: &Reader| stack.pop().ok_or_else(|| r.err("pickle stack underflow"));
    let pop_mark = |stack: &mut Vec<Value>, r: &Reader| -> Result<Vec<Value>> {
        let m = stack.iter().rposition(|v| *v == Value::Mark).ok_or_else(|| r.err("no MARK on the pickle stack"))?;
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items)
    };
    let memo_put = |memo: &mut Vec<Option<Value>>, idx: usize, v: Value, r: &Reader| -> Result<()> {
        if idx > 1_000_000 {
            return Err(r.err("memo index too large"));
        }
        if memo.len() <= idx {
            memo.resize(idx + 1, None);
        }
        memo[idx] = Some(v);
        Ok(())
    };
    loop {
        let at = r.i;
        let op = r.u8()?;
        match op {
            0x80 => {
                let v = r.u8()?;
                if v > 5 {
                    return Err(FormatError::binary(path, at as u64, format!("pickle protocol {v} is not supported")));
                }
            }
            0x95 => {
                r.take(8)?;
            } // FRAME
            b'.' => break,
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => {
                let s = r.take(4)?;
                stack.push(Value::Int(i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as i64));
            }
            b'K' => {
                let v = r.u8()?;
                stack.push(Value::Int(v as i64));
            }
            b'M' => {
                let v = r.u16()?;
                stack.push(Value::Int(v as i64));
            }
            0x8a => {
                // LONG1
                let n = r.u8()? as usize;
                let s = r.take(n)?;
                if n > 8 {
                    return Err(r.err("integer too large"));
                }
                let mut a = [if s.last().is_some_and(|&b| b & 0x80 != 0) { 0xff } else { 0 }; 8];
                a[..n].copy_from_slice(s);
                stack.push(Value::Int(i64::from_le_bytes(a)));
            }
            b'G' => {
                let s = r.take(8)?;
                stack.push(Value::Float(f64::from_be_bytes(s.try_into().expect("8 bytes"))));
            }
            0x8c | b'X' | 0x8d => {
                let n = match op {
                    0x8c => r.u8()? as usize,
                    b'X' => r.u32()?,
                    _ => r.u64()?,
                };
                let s = r.take(n)?;
                stack.push(Value::Str(String::from_utf8_lossy(s).into_owned()));
            }
            b'C' | b'B' | 0x8e | 0x96 => {
                let n = match op {
                    b'C' => r.u8()? as usize,
                    b'B' => r.u32()?,
                    _ => r.u64()?,
                };
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b')' => stack.push(Value::Tuple(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack, &r)?;
                stack.push(Value::Tuple(items));
            }
            b'l' => {
                let items = pop_mark(&mut stack, &r)?;
                stack.push(Value::List(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(r.err("pickle stack underflow"));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'a' => {
                let v = pop(&mut stack, &r)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    _ => return Err(r.err("APPEND to something that is not a list")),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack, &r)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return Err(r.err("APPENDS to something that is not a list")),
                }
            }
            b'q' => {
                let idx = r.u8()? as usize;
                let v = stack.last().cloned().ok_or_else(|| r.err("pickle stack underflow"))?;
                memo_put(&mut memo, idx, v, &r)?;
            }
            b'r' => {
                let idx = r.u32()?;
                let v = stack.last().cloned().ok_or_else(|| r.err("pickle stack underflow"))?;
                memo_put(&mut memo, idx, v, &r)?;
            }
            0x94 => {
                let idx = memo.len();
                let v = stack.last().cloned().ok_or_else(|| r.err("pickle stack underflow"))?;
                memo_put(&mut memo, idx, v, &r)?;
            }
            b'h' | b'j' => {
                let idx = if op == b'h' { r.u8()? as usize } else { r.u32()? };
                let v = memo.get(idx).cloned().flatten().ok_or_else(|| r.err(format!("memo entry {idx} is not set")))?;
                stack.push(v);
            }
            b'c' | 0x93 => {
                let (module, name) = if op == b'c' {
                    (r.line()?, r.line()?)
                } else {
                    let name = pop(&mut stack, &r)?;
                    let module = pop(&mut stack, &r)?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => (m, n),
                        _ => return Err(r.err("STACK_GLOBAL needs two strings")),
                    }
                };
                if !ALLOWED.iter().any(|(m, n)| *m == module && *n == name) {
                    return Err(FormatError::binary(
                        path,
                        at as u64,
                        format!("the pickle refers to {module}.{name}, which is not part of a numpy array; refusing to load it"),
                    ));
                }
                stack.push(Value::Global(module, name));
            }
            b'R' => {
                let args = pop(&mut stack, &r)?;
                let f = pop(&mut stack, &r)?;
                let v = match (&f, &args) {
                    (Value::Global(_, n), Value::Tuple(_)) if n == "_reconstruct" => Value::EmptyArray,
                    (Value::Global(_, n), Value::Tuple(a)) if n == "dtype" => match a.first() {
                        Some(Value::Str(k)) => Value::Dtype { kind: k.clone(), big_endian: false },
                        _ => return Err(r.err("numpy.dtype called without a type string")),
                    },
                    _ => return Err(FormatError::binary(path, at as u64, format!("unsupported call in pickle: {f:?}"))),
                };
                stack.push(v);
            }
            b'b' => {
                let state = pop(&mut stack, &r)?;
                let target = pop(&mut stack, &r)?;
                let v = match (target, state) {
                    (Value::Dtype { kind, .. }, Value::Tuple(s)) => {
                        let big = matches!(s.get(1), Some(Value::Str(o)) if o == ">");
                        Value::Dtype { kind, big_endian: big }
                    }
                    (Value::EmptyArray, Value::Tuple(s)) if s.len() >= 5 => {
                        let shape = match &s[1] {
                            Value::Tuple(t) => t
                                .iter()
                                .map(|v| match v {
                                    Value::Int(i) if *i >= 0 => Ok(*i as usize),
                                    _ => Err(r.err("array shape is not a tuple of sizes")),
                                })
                                .collect::<Result<Vec<_>>>()?,
                            _ => return Err(r.err("array shape is not a tuple")),
                        };
                        let (kind, big) = match &s[2] {
                            Value::Dtype { kind, big_endian } => (kind.clone(), *big_endian),
                            _ => return Err(r.err("array without a dtype")),
                        };
                        if s[3] == Value::Bool(true) {
                            return Err(r.err("Fortran-order arrays are not supported"));
                        }
                        let raw = match &s[4] {
                            Value::Bytes(b) => b.clone(),
                            _ => return Err(r.err("array data are not raw bytes (object arrays are not supported)")),
                        };
                        Value::Array(decode_array(&shape, &kind, big, &raw, &r)?)
                    }
                    _ => return Err(FormatError::binary(path, at as u64, "unsupported BUILD in pickle")),
                };
                stack.push(v);
            }
            other => {
                return Err(FormatError::binary(path, at as u64, format!("pickle opcode 0x{other:02x} is not supported by this reader")));
            }
        }
    }
    stack.pop().ok_or_else(|| FormatError::binary(path, r.i as u64, "empty pickle"))
}

fn read_value(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    parse(&bytes, path)
}

/// Read a cryoDRGN pose pickle: rotation matrices (RELION's `A`) and, when present, the
/// translations in fractions of the box.
#[allow(clippy::type_complexity)]
pub fn read_poses(path: &Path) -> Result<(Vec<[[f64; 3]; 3]>, Option<Vec<[f64; 2]>>)> {
    let v = read_value(path)?;
    let (rot, trans) = match v {
        Value::Array(a) => (a, None),
        Value::Tuple(t) if t.len() == 2 => match (&t[0], &t[1]) {
            (Value::Array(a), Value::Array(b)) => (a.clone(), Some(b.clone())),
            _ => return Err(FormatError::invalid(path, "expected a tuple (rotations, translations) of numpy arrays")),
        },
        _ => return Err(FormatError::invalid(path, "expected a numpy array of rotations or a tuple (rotations, translations)")),
    };
    if rot.shape.len() != 3 || rot.shape[1] != 3 || rot.shape[2] != 3 {
        return Err(FormatError::invalid(path, format!("rotations have shape {:?}, expected (N, 3, 3)", rot.shape)));
    }
    let n = rot.shape[0];
    let rots = (0..n)
        .map(|i| {
            let mut m = [[0.0; 3]; 3];
            for (r, row) in m.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = rot.data[i * 9 + r * 3 + c];
                }
            }
            m
        })
        .collect();
    let trans = match trans {
        Some(t) => {
            if t.shape != [n, 2] {
                return Err(FormatError::invalid(path, format!("translations have shape {:?}, expected ({n}, 2)", t.shape)));
            }
            Some((0..n).map(|i| [t.data[2 * i], t.data[2 * i + 1]]).collect())
        }
        None => None,
    };
    Ok((rots, trans))
}

/// Read a cryoDRGN CTF pickle: one row of 9 values per particle.
pub fn read_ctf(path: &Path) -> Result<Vec<[f64; 9]>> {
    let v = read_value(path)?;
    let Value::Array(a) = v else {
        return Err(FormatError::invalid(path, "expected a numpy array of shape (N, 9)"));
    };
    if a.shape.len() != 2 || a.shape[1] != 9 {
        return Err(FormatError::invalid(path, format!("CTF array has shape {:?}, expected (N, 9)", a.shape)));
    }
    Ok(a.data.chunks_exact(9).map(|c| c.try_into().expect("9 values")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_globals() {
        // protocol 2: GLOBAL os.system, then STOP.
        let b = b"\x80\x02cos\nsystem\n.";
        let e = parse(b, Path::new("evil.pkl")).unwrap_err().to_string();
        assert!(e.contains("evil.pkl") && e.contains("os.system") && e.contains("refusing"), "{e}");
    }

    #[test]
    fn truncated_and_unknown() {
        assert!(parse(b"\x80\x04\x95", Path::new("t.pkl")).unwrap_err().to_string().contains("truncated"));
        assert!(parse(b"\x80\x02\x00", Path::new("t.pkl")).unwrap_err().to_string().contains("opcode 0x00"));
        assert!(parse(b"", Path::new("t.pkl")).is_err());
    }
}
