//! PLY point clouds of Gaussian models: binary little-endian, one vertex per Gaussian with
//! float properties `x y z` (Å, in the frame of the map written beside it: MRC origin 0,
//! so the box centre is at `D/2·apix`), `scale_0..2` (standard deviations in Å),
//! `rot_0..3` (unit quaternion w, x, y, z) and `amplitude` (integrated mass). Standard PLY
//! readers (plyfile, Open3D, MeshLab) read it.

use crate::atomic::write_atomic;
use crate::error::{FormatError, Result};
use std::io::Write;
use std::path::Path;

/// One Gaussian as written to PLY.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlyGaussian {
    pub pos_a: [f32; 3],
    pub scale_a: [f32; 3],
    pub quat: [f32; 4],
    pub amplitude: f32,
}

const PROPS: [&str; 11] = ["x", "y", "z", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3", "amplitude"];

/// Write Gaussians as a binary PLY file, atomically.
pub fn write_gaussians(path: &Path, gs: &[PlyGaussian]) -> Result<()> {
    write_atomic(path, |w| {
        write!(w, "ply\nformat binary_little_endian 1.0\ncomment cryosplat Gaussian model (positions and scales in Angstrom)\nelement vertex {}\n", gs.len())?;
        for p in PROPS {
            writeln!(w, "property float {p}")?;
        }
        w.write_all(b"end_header\n")?;
        for g in gs {
            for v in g.pos_a.iter().chain(&g.scale_a).chain(&g.quat).chain(std::iter::once(&g.amplitude)) {
                w.write_all(&v.to_le_bytes())?;
            }
        }
        Ok(())
    })
}

/// Read a PLY file written by [`write_gaussians`] (the same property list, binary little-endian).
pub fn read_gaussians(path: &Path) -> Result<Vec<PlyGaussian>> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    let end = bytes.windows(11).position(|w| w == b"end_header\n").ok_or_else(|| FormatError::invalid(path, "no end_header: not a PLY file"))?;
    let header = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = header.lines();
    if lines.next() != Some("ply") {
        return Err(FormatError::text(path, 1, "expected 'ply'"));
    }
    let mut n = None;
    let mut props = Vec::new();
    for (k, l) in header.lines().enumerate() {
        let t: Vec<&str> = l.split_whitespace().collect();
        match t.as_slice() {
            ["format", f, _] if *f != "binary_little_endian" => return Err(FormatError::text(path, k + 1, format!("format {f} is not supported"))),
            ["element", "vertex", c] => n = Some(c.parse::<usize>().map_err(|_| FormatError::text(path, k + 1, "bad vertex count"))?),
            ["property", "float", name] => props.push(name.to_string()),
            _ => {}
        }
    }
    if props != PROPS {
        return Err(FormatError::invalid(path, format!("properties {props:?}, expected {PROPS:?}")));
    }
    let n = n.ok_or_else(|| FormatError::invalid(path, "no vertex element"))?;
    let data = &bytes[end + 11..];
    if data.len() != n * 44 {
        return Err(FormatError::binary(path, (end + 11) as u64, format!("{n} vertices need {} bytes, the file holds {}", n * 44, data.len())));
    }
    Ok(data
        .chunks_exact(44)
        .map(|c| {
            let f = |k: usize| f32::from_le_bytes([c[4 * k], c[4 * k + 1], c[4 * k + 2], c[4 * k + 3]]);
            PlyGaussian { pos_a: [f(0), f(1), f(2)], scale_a: [f(3), f(4), f(5)], quat: [f(6), f(7), f(8), f(9)], amplitude: f(10) }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
