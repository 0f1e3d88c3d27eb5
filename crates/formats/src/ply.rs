//! PLY point clouds of Gaussian models.
//!
//! [`write_gaussians`] writes binary little-endian PLY, one `vertex` per Gaussian, with the
//! float32 properties, in this order:
//!
//! | property | meaning |
//! |---|---|
//! | `x y z` | centre in Å, in the frame of the map written beside it (MRC origin 0, so the box centre is at `D/2·apix`) |
//! | `scale_0 scale_1 scale_2` | standard deviations in Å along the Gaussian's own axes (linear, not logarithmic) |
//! | `rot_0 rot_1 rot_2 rot_3` | unit quaternion `w, x, y, z` rotating the Gaussian's axes into the map frame |
//! | `amplitude` | the Gaussian's mass in the model's own units: `cryosplat reconstruct` writes each model's box-unit amplitude in the normalised units it trains in, so values compare Gaussians of one file but are not map units |
//!
//! The names follow the common Gaussian-splatting layout, but the values do not: scales are
//! in Å (not log-scales) and there is no opacity or colour. Standard PLY readers (plyfile,
//! Open3D, MeshLab) read these files. Writes are atomic; NaN or infinite values are refused.
//!
//! [`read_gaussians`] reads binary PLY files (either byte order) whose `vertex` element has
//! these eleven properties in any order and any numeric type, ignoring other properties; the
//! vertex count is checked against the file length before anything is allocated.

use crate::atomic::write_atomic;
use crate::error::{FormatError, Result};
use std::io::Write;
use std::path::Path;

/// One Gaussian as written to PLY.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlyGaussian {
    /// Centre in Å.
    pub pos_a: [f32; 3],
    /// Standard deviations in Å along the Gaussian's axes.
    pub scale_a: [f32; 3],
    /// Unit quaternion `w, x, y, z`.
    pub quat: [f32; 4],
    /// Integrated mass.
    pub amplitude: f32,
}

impl PlyGaussian {
    fn values(&self) -> [f32; 11] {
        let [x, y, z] = self.pos_a;
        let [s0, s1, s2] = self.scale_a;
        let [w, qx, qy, qz] = self.quat;
        [x, y, z, s0, s1, s2, w, qx, qy, qz, self.amplitude]
    }
    fn from_values(v: [f32; 11]) -> Self {
        PlyGaussian { pos_a: [v[0], v[1], v[2]], scale_a: [v[3], v[4], v[5]], quat: [v[6], v[7], v[8], v[9]], amplitude: v[10] }
    }
}

/// The vertex properties, in the order written.
pub const PROPERTIES: [&str; 11] = ["x", "y", "z", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3", "amplitude"];

/// Write Gaussians as a binary little-endian PLY file, atomically.
pub fn write_gaussians(path: &Path, gs: &[PlyGaussian]) -> Result<()> {
    for (i, g) in gs.iter().enumerate() {
        if !g.values().iter().all(|v| v.is_finite()) {
            return Err(FormatError::invalid(path, format!("Gaussian {i} (0-based) holds a NaN or infinite value")));
        }
    }
    write_atomic(path, |w| {
        write!(
            w,
            "ply\nformat binary_little_endian 1.0\ncomment cryosplat Gaussian model: x y z and scales in Angstrom, \
             rot = unit quaternion w x y z, amplitude = integrated mass\nelement vertex {}\n",
            gs.len()
        )?;
        for p in PROPERTIES {
            writeln!(w, "property float {p}")?;
        }
        w.write_all(b"end_header\n")?;
        let mut buf = [0u8; 44];
        for g in gs {
            for (k, v) in g.values().iter().enumerate() {
                buf[4 * k..4 * k + 4].copy_from_slice(&v.to_le_bytes());
            }
            w.write_all(&buf)?;
        }
        Ok(())
    })
}

/// A scalar property type: its size in bytes and how to read it as f64.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Scalar {
    fn parse(name: &str) -> Option<Scalar> {
        Some(match name {
            "char" | "int8" => Scalar::I8,
            "uchar" | "uint8" => Scalar::U8,
            "short" | "int16" => Scalar::I16,
            "ushort" | "uint16" => Scalar::U16,
            "int" | "int32" => Scalar::I32,
            "uint" | "uint32" => Scalar::U32,
            "float" | "float32" => Scalar::F32,
            "double" | "float64" => Scalar::F64,
            _ => return None,
        })
    }
    fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::F64 => 8,
        }
    }
    fn read(self, b: &[u8], big: bool) -> f64 {
        macro_rules! get {
            ($t:ty, $n:expr) => {{
                let mut a = [0u8; $n];
                a.copy_from_slice(&b[..$n]);
                if big {
                    <$t>::from_be_bytes(a) as f64
                } else {
                    <$t>::from_le_bytes(a) as f64
                }
            }};
        }
        match self {
            Scalar::I8 => b[0] as i8 as f64,
            Scalar::U8 => b[0] as f64,
            Scalar::I16 => get!(i16, 2),
            Scalar::U16 => get!(u16, 2),
            Scalar::I32 => get!(i32, 4),
            Scalar::U32 => get!(u32, 4),
            Scalar::F32 => get!(f32, 4),
            Scalar::F64 => get!(f64, 8),
        }
    }
}

/// One element of a PLY header: name, count, scalar properties, and its header line.
struct Element {
    name: String,
    count: usize,
    props: Vec<(String, Scalar)>,
    line: usize,
}

/// Read the Gaussians of a binary PLY file (see the module docs for what is accepted).
pub fn read_gaussians(path: &Path) -> Result<Vec<PlyGaussian>> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    parse_gaussians(&bytes, path)
}

/// Parse the bytes of a binary PLY file (`path` is only used in messages).
pub fn parse_gaussians(bytes: &[u8], path: &Path) -> Result<Vec<PlyGaussian>> {
    if !bytes.starts_with(b"ply\n") && !bytes.starts_with(b"ply\r\n") {
        return Err(FormatError::text(path, 1, "expected the magic line 'ply': not a PLY file"));
    }
    let end = bytes
        .windows(11)
        .position(|w| w == b"end_header\n")
        .map(|p| p + 11)
        .or_else(|| bytes.windows(12).position(|w| w == b"end_header\r\n").map(|p| p + 12))
        .ok_or_else(|| FormatError::invalid(path, "no end_header line"))?;
    let header = std::str::from_utf8(&bytes[..end]).map_err(|_| FormatError::invalid(path, "the header is not text"))?;
    let mut big = None;
    let mut elements: Vec<Element> = Vec::new();
    for (k, line) in header.lines().enumerate() {
        let no = k + 1;
        let t: Vec<&str> = line.split_whitespace().collect();
        match t.as_slice() {
            ["format", "binary_little_endian", _] => big = Some(false),
            ["format", "binary_big_endian", _] => big = Some(true),
            ["format", f, ..] => {
                return Err(FormatError::text(path, no, format!("format {f} is not supported (binary PLY only)")));
            }
            ["element", name, count] => {
                let n =
                    count.parse::<usize>().map_err(|_| FormatError::text(path, no, format!("element count {count:?} is not a number")))?;
                elements.push(Element { name: name.to_string(), count: n, props: Vec::new(), line: no });
            }
            ["property", "list", ..] => {
                let Some(e) = elements.last() else {
                    return Err(FormatError::text(path, no, "property before any element"));
                };
                if e.name == "vertex" || elements.iter().all(|e| e.name != "vertex") {
                    return Err(FormatError::text(path, no, "list properties in or before the vertex element are not supported"));
                }
            }
            ["property", ty, name] => {
                let s = Scalar::parse(ty).ok_or_else(|| FormatError::text(path, no, format!("unknown property type {ty:?}")))?;
                let Some(e) = elements.last_mut() else {
                    return Err(FormatError::text(path, no, "property before any element"));
                };
                e.props.push((name.to_string(), s));
            }
            _ => {}
        }
    }
    let big = big.ok_or_else(|| FormatError::invalid(path, "no format line"))?;
    let mut offset = end as u64;
    for Element { name, count: n, props, line: no } in &elements {
        let stride: usize = props.iter().map(|p| p.1.size()).sum();
        if name != "vertex" {
            // Elements before the vertices are skipped; those after them are ignored.
            offset = (*n as u64).checked_mul(stride as u64).and_then(|b| b.checked_add(offset)).unwrap_or(u64::MAX);
            continue;
        }
        let mut at = [0usize; 11];
        let mut ty = [Scalar::F32; 11];
        for (k, want) in PROPERTIES.iter().enumerate() {
            let mut o = 0;
            let mut found = false;
            for (pname, s) in props {
                if pname == want {
                    at[k] = o;
                    ty[k] = *s;
                    found = true;
                    break;
                }
                o += s.size();
            }
            if !found {
                return Err(FormatError::text(path, *no, format!("the vertex element has no property {want}")));
            }
        }
        let need = (*n as u128) * stride as u128;
        if offset > bytes.len() as u64 {
            return Err(FormatError::binary(
                path,
                bytes.len() as u64,
                format!("the elements before the vertices need {offset} bytes, more than the file holds"),
            ));
        }
        let available = (bytes.len() as u64 - offset) as u128;
        if need > available {
            return Err(FormatError::binary(
                path,
                offset,
                format!("{n} vertices of {stride} bytes need {need} bytes, the file holds {available}"),
            ));
        }
        let data = &bytes[offset as usize..offset as usize + need as usize];
        return Ok(data
            .chunks_exact(stride.max(1))
            .take(*n)
            .map(|c| {
                let mut v = [0.0f32; 11];
                for k in 0..11 {
                    v[k] = ty[k].read(&c[at[k]..], big) as f32;
                }
                PlyGaussian::from_values(v)
            })
            .collect());
    }
    Err(FormatError::invalid(path, "no vertex element"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_before_the_vertices_past_the_end() {
        // Found by fuzzing: skipping a leading element moved the vertex data past the end of the
        // file, and an empty vertex element was then sliced out of range.
        let b = b"ply\nformat binary_little_endian 1.0\nelement camera 100\nproperty double t\n\
element vertex 0\nproperty float x\nproperty float y\nproperty float z\nproperty float scale_0\n\
property float scale_1\nproperty float scale_2\nproperty float rot_0\nproperty float rot_1\n\
property float rot_2\nproperty float rot_3\nproperty float amplitude\nend_header\n";
        let e = parse_gaussians(b, Path::new("c.ply")).unwrap_err().to_string();
        assert!(e.contains("c.ply") && e.contains("before the vertices need"), "{e}");
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.ply");
        let gs = vec![
            PlyGaussian { pos_a: [1.0, -2.0, 3.5], scale_a: [0.5, 0.6, 0.7], quat: [1.0, 0.0, 0.0, 0.0], amplitude: 2.0 },
            PlyGaussian { pos_a: [0.0; 3], scale_a: [1.0; 3], quat: [0.5; 4], amplitude: 0.1 },
        ];
        write_gaussians(&p, &gs).unwrap();
        assert_eq!(read_gaussians(&p).unwrap(), gs);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        assert!(read_gaussians(&p).unwrap_err().to_string().contains("need"));
    }
}
