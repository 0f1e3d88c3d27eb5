//! The subset of Python pickles that cryoDRGN pose, CTF and index files use: numpy arrays
//! and tuples of them, pickle protocols 2 to 5.
//!
//! numpy pickles an array in one of two ways, both understood here:
//! * `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`, then BUILD with the state
//!   `(version, shape, dtype, is_fortran, raw bytes)` (protocols 2–4, and 5 for non-contiguous
//!   arrays; protocol 2 wraps bytes as `_codecs.encode(text, 'latin1')`);
//! * `numpy.core.numeric._frombuffer(buffer, dtype, shape, order)` with the buffer in-band
//!   (protocol 5, `BYTEARRAY8`). Out-of-band buffers are not in the file and are refused.
//!
//! numpy 2 spells the modules `numpy._core…`; both spellings are accepted. A dtype is
//! `numpy.dtype(kind, False, True)` followed by BUILD with a state whose second item is the
//! byte order.
//!
//! This is a safe, minimal reader: it executes nothing. Only the globals needed to rebuild
//! arrays are accepted; any other global, or an opcode outside the subset, is an error naming
//! the opcode and its byte offset. Values are reference-counted, so a memo entry fetched many
//! times costs nothing, and nesting deeper than [`MAX_DEPTH`] is refused, so no input can
//! exhaust the stack.
//!
//! * Pose pickle: `(rot[N,3,3], trans[N,2])` or `rot[N,3,3]` alone; `rot` is RELION's `A` and
//!   `trans·D` is `+origin` in pixels.
//! * CTF pickle: `(N, 9)`: `D, apix, dfU, dfV, dfang (°), kV, Cs (mm), Q0, phase shift (°)`.
//! * Index pickle: a 1-D integer array of 0-based particle indices.

use crate::error::{FormatError, Result};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

/// Deepest nesting of tuples and lists accepted.
pub const MAX_DEPTH: u16 = 64;

/// A numpy array read from a pickle, as f64 values in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    /// The numpy type it had (`f4`, `f8`, `i8`…).
    pub dtype: String,
    pub data: Vec<f64>,
}

/// A value on the unpickler's stack.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Rc<Vec<Value>>),
    /// An accepted global (`module`, `name`).
    Global(Rc<str>, Rc<str>),
    /// A numpy dtype: kind (`f4`…) and byte order (`<`, `>`, `|`, `=`).
    Dtype(Rc<str>, char),
    /// An array created by `_reconstruct`, not yet filled by BUILD.
    EmptyArray,
    Array(Rc<Array>),
}

impl Value {
    /// A short description for messages (never the content of large values).
    fn kind(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Int(_) => "an int".into(),
            Value::Float(_) => "a float".into(),
            Value::Str(_) => "a str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(t) => format!("a tuple of {}", t.len()),
            Value::List(l) => format!("a list of {}", l.len()),
            Value::Global(m, n) => format!("{m}.{n}"),
            Value::Dtype(k, _) => format!("dtype {k}"),
            Value::EmptyArray => "an unfilled array".into(),
            Value::Array(a) => format!("an array of shape {:?}", a.shape),
        }
    }
    fn text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(&**s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

const ALLOWED: [(&str, &str); 10] = [
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    // Python 2 spelling of the same encoder.
    ("codecs", "encode"),
];

/// One stack entry: a value and its nesting depth, or a MARK.
#[derive(Clone)]
enum Slot {
    Mark,
    Val(Value, u16),
}

struct Unpickler<'a> {
    b: &'a [u8],
    i: usize,
    path: &'a Path,
    stack: Vec<Slot>,
    memo: HashMap<u32, (Value, u16)>,
    /// Offset of the opcode being executed.
    at: usize,
    op: u8,
}

fn op_name(op: u8) -> &'static str {
    match op {
        0x80 => "PROTO",
        0x95 => "FRAME",
        b'.' => "STOP",
        b'(' => "MARK",
        b'N' => "NONE",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'M' => "BININT2",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'G' => "BINFLOAT",
        0x8c => "SHORT_BINUNICODE",
        b'X' => "BINUNICODE",
        0x8d => "BINUNICODE8",
        b'C' => "SHORT_BINBYTES",
        b'B' => "BINBYTES",
        0x8e => "BINBYTES8",
        0x96 => "BYTEARRAY8",
        b'U' => "SHORT_BINSTRING",
        b'T' => "BINSTRING",
        b')' => "EMPTY_TUPLE",
        b']' => "EMPTY_LIST",
        b't' => "TUPLE",
        b'l' => "LIST",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        b'a' => "APPEND",
        b'e' => "APPENDS",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        0x94 => "MEMOIZE",
        b'h' => "BINGET",
        b'j' => "LONG_BINGET",
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        b'b' => "BUILD",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        b'}' => "EMPTY_DICT",
        b'd' => "DICT",
        b's' => "SETITEM",
        b'u' => "SETITEMS",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        b'i' => "INST",
        b'o' => "OBJ",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        0x82..=0x84 => "EXT",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        b'I' | b'L' | b'F' | b'S' | b'V' | b'p' | b'g' => "a protocol-0 text opcode",
        _ => "an unknown opcode",
    }
}

impl<'a> Unpickler<'a> {
    /// An error at the current opcode.
    fn err(&self, msg: impl std::fmt::Display) -> FormatError {
        FormatError::binary(self.path, self.at as u64, format!("pickle opcode {} (0x{:02x}): {msg}", op_name(self.op), self.op))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() - self.i < n {
            return Err(self.err(format!("truncated pickle: {n} more bytes expected, {} left", self.b.len() - self.i)));
        }
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn len_u32(&mut self) -> Result<usize> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")) as usize)
    }
    fn len_u64(&mut self) -> Result<usize> {
        let s = self.take(8)?;
        let v = u64::from_le_bytes(s.try_into().expect("8 bytes"));
        usize::try_from(v).map_err(|_| self.err(format!("length {v} is too large")))
    }
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.b[self.i..];
        let n = rest.iter().position(|&c| c == b'\n').ok_or_else(|| self.err("truncated pickle: unterminated line"))?;
        self.i += n + 1;
        std::str::from_utf8(&rest[..n]).map_err(|_| self.err("the line is not text"))
    }
    fn push(&mut self, v: Value) {
        self.stack.push(Slot::Val(v, 0));
    }
    fn push_depth(&mut self, v: Value, depth: u16) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("values nested deeper than {MAX_DEPTH} levels")));
        }
        self.stack.push(Slot::Val(v, depth));
        Ok(())
    }
    fn pop(&mut self) -> Result<(Value, u16)> {
        match self.stack.pop() {
            Some(Slot::Val(v, d)) => Ok((v, d)),
            Some(Slot::Mark) => Err(self.err("a MARK where a value was expected")),
            None => Err(self.err("the pickle stack is empty")),
        }
    }
    fn pop_mark(&mut self) -> Result<(Vec<Value>, u16)> {
        let m = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)).ok_or_else(|| self.err("no MARK on the stack"))?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        let mut depth = 0;
        let values = items
            .into_iter()
            .map(|s| match s {
                Slot::Val(v, d) => {
                    depth = depth.max(d);
                    v
                }
                Slot::Mark => unreachable!("the last MARK was found above"),
            })
            .collect();
        Ok((values, depth))
    }
    fn top(&self) -> Result<(Value, u16)> {
        match self.stack.last() {
            Some(Slot::Val(v, d)) => Ok((v.clone(), *d)),
            _ => Err(self.err("no value on top of the stack")),
        }
    }
    fn memo_put(&mut self, idx: u32) -> Result<()> {
        let v = self.top()?;
        self.memo.insert(idx, v);
        Ok(())
    }
}

fn decode_array(shape: &[usize], kind: &str, order: char, fortran: bool, raw: &[u8], u: &Unpickler) -> Result<Array> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| u.err(format!("array shape {shape:?} is too large")))?;
    let size = match kind {
        "f2" | "i2" | "u2" => 2,
        "f4" | "i4" | "u4" => 4,
        "f8" | "i8" | "u8" => 8,
        "i1" | "u1" | "b1" => 1,
        k => return Err(u.err(format!("array dtype {k:?} is not supported (numbers only)"))),
    };
    let need = n.checked_mul(size).ok_or_else(|| u.err(format!("array shape {shape:?} is too large")))?;
    if raw.len() != need {
        return Err(u.err(format!("an array of shape {shape:?} and dtype {kind} needs {need} bytes, the pickle holds {}", raw.len())));
    }
    let big = order == '>';
    let mut data: Vec<f64> = raw
        .chunks_exact(size)
        .map(|c| {
            let mut a = [0u8; 8];
            a[..size].copy_from_slice(c);
            if big {
                a[..size].reverse();
            }
            match kind {
                "f2" => half::f16::from_bits(u16::from_le_bytes([a[0], a[1]])).to_f64(),
                "f4" => f32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                "f8" => f64::from_le_bytes(a),
                "i2" => i16::from_le_bytes([a[0], a[1]]) as f64,
                "u2" => u16::from_le_bytes([a[0], a[1]]) as f64,
                "i4" => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                "u4" => u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                "i8" => i64::from_le_bytes(a) as f64,
                "u8" => u64::from_le_bytes(a) as f64,
                "i1" => a[0] as i8 as f64,
                "b1" => (a[0] != 0) as u8 as f64,
                _ => a[0] as f64,
            }
        })
        .collect();
    if fortran && shape.len() > 1 {
        data = fortran_to_c(&data, shape);
    }
    Ok(Array { shape: shape.to_vec(), dtype: kind.to_string(), data })
}

/// Reorder column-major values into row-major order.
fn fortran_to_c(f: &[f64], shape: &[usize]) -> Vec<f64> {
    let nd = shape.len();
    // Fortran strides: the first axis is the fastest.
    let mut fstride = vec![1usize; nd];
    for k in 1..nd {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut idx = vec![0usize; nd];
    let mut out = Vec::with_capacity(f.len());
    for _ in 0..f.len() {
        out.push(f[idx.iter().zip(&fstride).map(|(i, s)| i * s).sum::<usize>()]);
        // Advance the C-order index (last axis fastest).
        for k in (0..nd).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

fn shape_of(v: &Value, u: &Unpickler) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(t) => t
            .iter()
            .map(|d| match d {
                Value::Int(i) if *i >= 0 => Ok(*i as usize),
                _ => Err(u.err("the array shape is not a tuple of sizes")),
            })
            .collect(),
        Value::Int(i) if *i >= 0 => Ok(vec![*i as usize]),
        _ => Err(u.err(format!("the array shape is {}, expected a tuple", v.kind()))),
    }
}

/// Unpickle `bytes` (the whole file). `path` names it in messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<Value> {
    let mut u = Unpickler { b: bytes, i: 0, path, stack: Vec::new(), memo: HashMap::new(), at: 0, op: 0 };
    loop {
        u.at = u.i;
        if u.i >= bytes.len() {
            return Err(FormatError::binary(path, u.i as u64, "truncated pickle: no STOP opcode"));
        }
        u.op = u.u8()?;
        match u.op {
            0x80 => {
                let v = u.u8()?;
                if !(2..=5).contains(&v) {
                    return Err(u.err(format!("pickle protocol {v} is not supported (2 to 5 are)")));
                }
            }
            0x95 => {
                u.take(8)?;
            }
            b'.' => break,
            b'(' => u.stack.push(Slot::Mark),
            b'N' => u.push(Value::None),
            0x88 => u.push(Value::Bool(true)),
            0x89 => u.push(Value::Bool(false)),
            b'J' => {
                let s = u.take(4)?;
                u.push(Value::Int(i32::from_le_bytes(s.try_into().expect("4 bytes")) as i64));
            }
            b'K' => {
                let v = u.u8()?;
                u.push(Value::Int(v as i64));
            }
            b'M' => {
                let s = u.take(2)?;
                u.push(Value::Int(u16::from_le_bytes([s[0], s[1]]) as i64));
            }
            0x8a | 0x8b => {
                let n = if u.op == 0x8a { u.u8()? as usize } else { u.len_u32()? };
                let s = u.take(n)?;
                if n > 8 {
                    return Err(u.err("integer too large"));
                }
                let mut a = [if s.last().is_some_and(|&b| b & 0x80 != 0) { 0xff } else { 0 }; 8];
                a[..n].copy_from_slice(s);
                u.push(Value::Int(i64::from_le_bytes(a)));
            }
            b'G' => {
                let s = u.take(8)?;
                u.push(Value::Float(f64::from_be_bytes(s.try_into().expect("8 bytes"))));
            }
            0x8c | b'X' | 0x8d => {
                let n = match u.op {
                    0x8c => u.u8()? as usize,
                    b'X' => u.len_u32()?,
                    _ => u.len_u64()?,
                };
                let s = u.take(n)?;
                let t = std::str::from_utf8(s).map_err(|_| u.err("a string that is not UTF-8"))?;
                u.push(Value::Str(t.into()));
            }
            b'C' | b'B' | 0x8e | 0x96 | b'U' | b'T' => {
                let n = match u.op {
                    b'C' | b'U' => u.u8()? as usize,
                    b'B' | b'T' => u.len_u32()?,
                    _ => u.len_u64()?,
                };
                let s = u.take(n)?;
                u.push(Value::Bytes(s.into()));
            }
            0x97 => {
                return Err(
                    u.err("the array data are in an out-of-band buffer, which is not in the file; pickle it again without buffer_callback")
                )
            }
            0x98 => {
                u.top()?;
            }
            b')' => u.push(Value::Tuple(Rc::from(Vec::new()))),
            b']' => u.push(Value::List(Rc::new(Vec::new()))),
            b't' | b'l' => {
                let (items, d) = u.pop_mark()?;
                let v = if u.op == b't' { Value::Tuple(items.into()) } else { Value::List(Rc::new(items)) };
                u.push_depth(v, d + 1)?;
            }
            0x85..=0x87 => {
                let n = (u.op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                let mut depth = 0;
                for _ in 0..n {
                    let (v, d) = u.pop()?;
                    depth = depth.max(d);
                    items.push(v);
                }
                items.reverse();
                u.push_depth(Value::Tuple(items.into()), depth + 1)?;
            }
            b'a' | b'e' => {
                let (items, d) = if u.op == b'a' {
                    let (v, d) = u.pop()?;
                    (vec![v], d)
                } else {
                    u.pop_mark()?
                };
                let (list, ld) = u.pop()?;
                let Value::List(mut l) = list else {
                    return Err(u.err(format!("appending to {}, not a list", list.kind())));
                };
                Rc::make_mut(&mut l).extend(items);
                u.push_depth(Value::List(l), ld.max(d + 1))?;
            }
            b'0' => {
                u.stack.pop().ok_or_else(|| u.err("the pickle stack is empty"))?;
            }
            b'1' => {
                u.pop_mark()?;
            }
            b'2' => {
                let (v, d) = u.top()?;
                u.push_depth(v, d)?;
            }
            b'q' => {
                let idx = u.u8()? as u32;
                u.memo_put(idx)?;
            }
            b'r' => {
                let idx = u.len_u32()? as u32;
                u.memo_put(idx)?;
            }
            0x94 => {
                let idx = u32::try_from(u.memo.len()).map_err(|_| u.err("too many memo entries"))?;
                u.memo_put(idx)?;
            }
            b'h' | b'j' => {
                let idx = if u.op == b'h' { u.u8()? as u32 } else { u.len_u32()? as u32 };
                let (v, d) = u.memo.get(&idx).cloned().ok_or_else(|| u.err(format!("memo entry {idx} is not set")))?;
                u.push_depth(v, d)?;
            }
            b'c' | 0x93 => {
                let (module, name): (Rc<str>, Rc<str>) = if u.op == b'c' {
                    let m = u.line()?;
                    let n = u.line()?;
                    (m.into(), n.into())
                } else {
                    let (name, _) = u.pop()?;
                    let (module, _) = u.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => (m, n),
                        _ => return Err(u.err("STACK_GLOBAL needs two strings")),
                    }
                };
                if !ALLOWED.iter().any(|(m, n)| **m == *module && **n == *name) {
                    return Err(u.err(format!(
                        "the pickle refers to {module}.{name}, which is not part of a numpy array; refusing to load it \
                         (only numpy arrays and tuples of them are read)"
                    )));
                }
                u.push(Value::Global(module, name));
            }
            b'R' => {
                let (args, _) = u.pop()?;
                let (f, _) = u.pop()?;
                let v = reduce(&f, &args, &u)?;
                u.push(v);
            }
            b'b' => {
                let (state, _) = u.pop()?;
                let (target, _) = u.pop()?;
                let v = build(target, &state, &u)?;
                u.push(v);
            }
            _ => return Err(u.err("not supported by this reader (it reads numpy arrays and tuples of them)")),
        }
    }
    let (v, _) = u.pop()?;
    if let Value::EmptyArray = v {
        return Err(u.err("the array was never filled"));
    }
    Ok(v)
}

/// Calls of accepted globals.
fn reduce(f: &Value, args: &Value, u: &Unpickler) -> Result<Value> {
    let Value::Global(_, name) = f else {
        return Err(u.err(format!("calling {}, which is not a function", f.kind())));
    };
    let Value::Tuple(a) = args else {
        return Err(u.err(format!("{name} called with {}, not a tuple", args.kind())));
    };
    match &**name {
        "_reconstruct" => Ok(Value::EmptyArray),
        "dtype" => match a.first().and_then(Value::text) {
            Some(k) => Ok(Value::Dtype(k.into(), '=')),
            None => Err(u.err("numpy.dtype called without a type string")),
        },
        "encode" => match (a.first(), a.get(1).and_then(Value::text)) {
            (Some(Value::Str(s)), Some("latin1" | "latin-1")) => {
                let bytes: Option<Vec<u8>> = s.chars().map(|c| u8::try_from(c as u32).ok()).collect();
                bytes.map(|b| Value::Bytes(b.into())).ok_or_else(|| u.err("text that is not Latin-1"))
            }
            _ => Err(u.err("_codecs.encode is only accepted for (text, 'latin1')")),
        },
        "_frombuffer" => {
            // (buffer, dtype, shape, order)
            let (Some(Value::Bytes(buf)), Some(Value::Dtype(kind, order)), Some(shape), order_flag) =
                (a.first(), a.get(1), a.get(2), a.get(3))
            else {
                return Err(u.err("_frombuffer expects (buffer, dtype, shape, order)"));
            };
            let shape = shape_of(shape, u)?;
            let fortran = order_flag.and_then(Value::text) == Some("F");
            Ok(Value::Array(Rc::new(decode_array(&shape, kind, *order, fortran, buf, u)?)))
        }
        "scalar" => {
            let (Some(Value::Dtype(kind, order)), Some(Value::Bytes(b))) = (a.first(), a.get(1)) else {
                return Err(u.err("numpy scalar expects (dtype, bytes)"));
            };
            let arr = decode_array(&[], kind, *order, false, b, u)?;
            Ok(if kind.starts_with('f') { Value::Float(arr.data[0]) } else { Value::Int(arr.data[0] as i64) })
        }
        other => Err(u.err(format!("{other} cannot be called"))),
    }
}

/// BUILD: the byte order of a dtype, or the content of an array made by `_reconstruct`.
fn build(target: Value, state: &Value, u: &Unpickler) -> Result<Value> {
    let Value::Tuple(s) = state else {
        return Err(u.err(format!("BUILD with {}, not a tuple", state.kind())));
    };
    match target {
        Value::Dtype(kind, _) => {
            let order = match s.get(1).and_then(Value::text) {
                Some(o) if o.len() == 1 && "<>|=".contains(o) => o.chars().next().expect("one char"),
                _ => return Err(u.err("a dtype state without a byte order")),
            };
            if s.get(2).is_some_and(|v| *v != Value::None) {
                return Err(u.err(format!("structured dtype ({kind} with fields) is not supported")));
            }
            Ok(Value::Dtype(kind, order))
        }
        Value::EmptyArray if s.len() == 5 => {
            let shape = shape_of(&s[1], u)?;
            let Value::Dtype(kind, order) = &s[2] else {
                return Err(u.err(format!("the array dtype is {}", s[2].kind())));
            };
            let fortran = s[3] == Value::Bool(true) || s[3] == Value::Int(1);
            let raw = match &s[4] {
                Value::Bytes(b) => b.clone(),
                Value::Str(t) => {
                    // Python 2 pickles raw data as a byte string read as text.
                    let b: Option<Vec<u8>> = t.chars().map(|c| u8::try_from(c as u32).ok()).collect();
                    b.ok_or_else(|| u.err("array data are not bytes"))?.into()
                }
                other => return Err(u.err(format!("array data are {}, not raw bytes (object arrays are not supported)", other.kind()))),
            };
            Ok(Value::Array(Rc::new(decode_array(&shape, kind, *order, fortran, &raw, u)?)))
        }
        other => Err(u.err(format!("BUILD of {} is not supported", other.kind()))),
    }
}

fn read_value(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    parse(&bytes, path)
}

/// Interpret a value as cryoDRGN poses: `(rot[N,3,3], trans[N,2])` or `rot[N,3,3]` alone.
/// Returns the rotation matrices and the translations (fractions of the box) when present.
#[allow(clippy::type_complexity)]
pub fn poses_from(v: &Value, path: &Path) -> Result<(Vec<[[f64; 3]; 3]>, Option<Vec<[f64; 2]>>)> {
    let (rot, trans) = match v {
        Value::Array(a) => (a.clone(), None),
        Value::Tuple(t) if t.len() == 2 => match (&t[0], &t[1]) {
            (Value::Array(a), Value::Array(b)) => (a.clone(), Some(b.clone())),
            (a, b) => {
                return Err(FormatError::invalid(
                    path,
                    format!("expected a tuple (rotations, translations) of numpy arrays, got ({}, {})", a.kind(), b.kind()),
                ))
            }
        },
        other => {
            return Err(FormatError::invalid(
                path,
                format!("expected a numpy array of rotations or a tuple (rotations, translations), got {}", other.kind()),
            ))
        }
    };
    if rot.shape.len() != 3 || rot.shape[1] != 3 || rot.shape[2] != 3 {
        return Err(FormatError::invalid(path, format!("rotations have shape {:?}, expected (N, 3, 3)", rot.shape)));
    }
    let n = rot.shape[0];
    let rots = rot.data.chunks_exact(9).map(|c| [[c[0], c[1], c[2]], [c[3], c[4], c[5]], [c[6], c[7], c[8]]]).collect();
    let trans = match trans {
        Some(t) => {
            if t.shape != [n, 2] {
                return Err(FormatError::invalid(path, format!("translations have shape {:?}, expected ({n}, 2)", t.shape)));
            }
            Some(t.data.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
        }
        None => None,
    };
    Ok((rots, trans))
}

/// Read a cryoDRGN pose pickle: rotation matrices (RELION's `A`) and, when present, the
/// translations in fractions of the box.
#[allow(clippy::type_complexity)]
pub fn read_poses(path: &Path) -> Result<(Vec<[[f64; 3]; 3]>, Option<Vec<[f64; 2]>>)> {
    poses_from(&read_value(path)?, path)
}

/// Interpret a value as a cryoDRGN CTF array: one row of 9 values per particle.
pub fn ctf_from(v: &Value, path: &Path) -> Result<Vec<[f64; 9]>> {
    let Value::Array(a) = v else {
        return Err(FormatError::invalid(path, format!("expected a numpy array of shape (N, 9), got {}", v.kind())));
    };
    if a.shape.len() != 2 || a.shape[1] != 9 {
        return Err(FormatError::invalid(path, format!("the CTF array has shape {:?}, expected (N, 9)", a.shape)));
    }
    Ok(a.data.chunks_exact(9).map(|c| c.try_into().expect("9 values")).collect())
}

/// Read a cryoDRGN CTF pickle: one row of 9 values per particle
/// (`D, apix, dfU, dfV, dfang (°), kV, Cs (mm), Q0, phase shift (°)`).
pub fn read_ctf(path: &Path) -> Result<Vec<[f64; 9]>> {
    ctf_from(&read_value(path)?, path)
}

/// Interpret a value as 0-based indices: a 1-D integer array, or a list/tuple of ints.
pub fn indices_from(v: &Value, path: &Path) -> Result<Vec<usize>> {
    let bad = |what: String| FormatError::invalid(path, format!("expected 0-based particle indices, got {what}"));
    match v {
        Value::Array(a) => {
            if a.shape.len() != 1 || a.dtype.starts_with('f') {
                return Err(bad(format!("a {} array of shape {:?}", a.dtype, a.shape)));
            }
            a.data.iter().map(|&x| if x >= 0.0 { Ok(x as usize) } else { Err(bad(format!("the negative index {x}"))) }).collect()
        }
        Value::List(items) => ints(items, &bad),
        Value::Tuple(items) => ints(items, &bad),
        other => Err(bad(other.kind())),
    }
}

fn ints(items: &[Value], bad: &dyn Fn(String) -> FormatError) -> Result<Vec<usize>> {
    items
        .iter()
        .map(|v| match v {
            Value::Int(i) if *i >= 0 => Ok(*i as usize),
            other => Err(bad(format!("a list holding {}", other.kind()))),
        })
        .collect()
}

/// Read a cryoDRGN index pickle (`--ind`): 0-based particle indices.
pub fn read_indices(path: &Path) -> Result<Vec<usize>> {
    indices_from(&read_value(path)?, path)
}

/// Read a pickle holding one numpy array.
pub fn read_array(path: &Path) -> Result<Array> {
    match read_value(path)? {
        Value::Array(a) => Ok(Rc::unwrap_or_clone(a)),
        other => Err(FormatError::invalid(path, format!("expected a numpy array, got {}", other.kind()))),
    }
}

/// A pickle (protocol 3) of float64 numpy arrays, each given as `(shape, values in C order)`:
/// the array itself when there is one, a tuple of them otherwise. Each array is pickled as
/// numpy does it (`numpy.core.multiarray._reconstruct`, then BUILD with the state
/// `(1, shape, dtype('<f8'), False, raw bytes)`); numpy 1 and 2 both load this spelling.
/// Panics when a shape does not match its values (a bug in the caller).
pub fn encode_f64_arrays(arrays: &[(&[usize], &[f64])]) -> Vec<u8> {
    fn global(out: &mut Vec<u8>, module: &str, name: &str) {
        out.push(b'c');
        out.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn int(out: &mut Vec<u8>, v: i32) {
        out.push(b'J');
        out.extend_from_slice(&v.to_le_bytes());
    }
    fn text(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = vec![0x80, 3];
    for (shape, values) in arrays {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "shape {shape:?} for {} values", values.len());
        global(&mut out, "numpy.core.multiarray", "_reconstruct");
        global(&mut out, "numpy", "ndarray");
        int(&mut out, 0);
        out.push(0x85); // TUPLE1
        out.extend_from_slice(&[b'C', 1, b'b']);
        out.push(0x87); // TUPLE3
        out.push(b'R');
        out.push(b'(');
        int(&mut out, 1);
        out.push(b'(');
        for &d in *shape {
            int(&mut out, i32::try_from(d).expect("array dimension fits in 32 bits"));
        }
        out.push(b't');
        global(&mut out, "numpy", "dtype");
        text(&mut out, "f8");
        out.extend_from_slice(&[0x89, 0x88, 0x87, b'R']); // (…, False, True), REDUCE
        out.push(b'(');
        int(&mut out, 3);
        text(&mut out, "<");
        out.extend_from_slice(b"NNN");
        int(&mut out, -1);
        int(&mut out, -1);
        int(&mut out, 0);
        out.extend_from_slice(b"tb"); // TUPLE, BUILD: the dtype's state
        out.push(0x89); // not Fortran order
        out.push(b'B');
        out.extend_from_slice(&u32::try_from(values.len() * 8).expect("array under 4 GiB").to_le_bytes());
        for v in *values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(b"tb"); // TUPLE, BUILD: the array's state
    }
    match arrays.len() {
        1 => {}
        2 => out.push(0x86),
        3 => out.push(0x87),
        _ => unreachable!("one to three arrays"),
    }
    out.push(b'.');
    out
}

/// Write a cryoDRGN pose pickle `(rot[N,3,3], trans[N,2])` to `dest`, atomically: `rot` is
/// RELION's `A` and `trans` the origins in fractions of the box (`trans·D = +origin` in pixels).
pub fn write_poses(dest: &Path, rots: &[[[f64; 3]; 3]], trans: &[[f64; 2]]) -> Result<()> {
    assert_eq!(rots.len(), trans.len(), "one translation per rotation");
    let r: Vec<f64> = rots.iter().flatten().flatten().copied().collect();
    let t: Vec<f64> = trans.iter().flatten().copied().collect();
    let bytes = encode_f64_arrays(&[(&[rots.len(), 3, 3], &r), (&[trans.len(), 2], &t)]);
    crate::atomic::write_bytes_atomic(dest, &bytes)
}

/// Write a cryoDRGN CTF pickle, one row of 9 values per particle
/// (`D, apix, dfU, dfV, dfang (°), kV, Cs (mm), Q0, phase shift (°)`), to `dest`, atomically.
pub fn write_ctf(dest: &Path, rows: &[[f64; 9]]) -> Result<()> {
    let v: Vec<f64> = rows.iter().flatten().copied().collect();
    crate::atomic::write_bytes_atomic(dest, &encode_f64_arrays(&[(&[rows.len(), 9], &v)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_globals() {
        // protocol 2: GLOBAL os.system, then STOP.
        let b = b"\x80\x02cos\nsystem\n.";
        let e = parse(b, Path::new("evil.pkl")).unwrap_err().to_string();
        assert!(e.contains("evil.pkl: at byte 2") && e.contains("GLOBAL") && e.contains("os.system") && e.contains("refusing"), "{e}");
    }

    #[test]
    fn truncated_and_unknown() {
        assert!(parse(b"\x80\x04\x95", Path::new("t.pkl")).unwrap_err().to_string().contains("truncated"));
        let e = parse(b"\x80\x02\x00", Path::new("t.pkl")).unwrap_err().to_string();
        assert!(e.contains("at byte 2") && e.contains("0x00"), "{e}");
        assert!(parse(b"", Path::new("t.pkl")).is_err());
    }

    #[test]
    fn fortran_reorder() {
        // shape (2, 3): column-major 0..6 holds [[0, 2, 4], [1, 3, 5]].
        let f: Vec<f64> = (0..6).map(|x| x as f64).collect();
        assert_eq!(fortran_to_c(&f, &[2, 3]), [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
    }
}
