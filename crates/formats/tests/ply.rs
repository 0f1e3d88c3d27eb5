//! PLY Gaussian models: write-then-read round trips, files laid out differently from ours
//! (other byte order, property order and types, extra properties and elements), and errors.
//! That standard readers accept the written files is checked outside the test suite with the
//! Python `plyfile` package (see the module docs of `ply`).

mod common;

use common::expect_err;
use cryosplat_formats::ply::{self, PlyGaussian};
use std::path::Path;

fn gaussians(n: usize) -> Vec<PlyGaussian> {
    (0..n)
        .map(|i| {
            let t = i as f32;
            let (s, c) = (0.1 * t).sin_cos();
            PlyGaussian {
                pos_a: [t * 0.37 - 20.0, 5.0 - t * 0.11, t.sqrt()],
                scale_a: [1.0 + 0.01 * t, 2.0, 0.5],
                quat: [c, s, 0.0, 0.0],
                amplitude: 1e-3 * t,
            }
        })
        .collect()
}

#[test]
fn round_trip_is_exact_and_header_is_standard() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.ply");
    let gs = gaussians(1000);
    ply::write_gaussians(&p, &gs).unwrap();
    assert_eq!(ply::read_gaussians(&p).unwrap(), gs);
    let bytes = std::fs::read(&p).unwrap();
    let text = String::from_utf8_lossy(&bytes[..600]);
    assert!(text.starts_with("ply\nformat binary_little_endian 1.0\n"), "{text}");
    assert!(text.contains("element vertex 1000\nproperty float x\nproperty float y\nproperty float z\nproperty float scale_0\n"));
    assert!(text.contains("property float rot_3\nproperty float amplitude\nend_header\n"));
    let header_len = text.find("end_header\n").unwrap() + 11;
    assert_eq!(bytes.len(), header_len + 1000 * 11 * 4);
    // Vertex 1 starts right after the first 44 bytes: x = 0.37 − 20 in little-endian f32.
    let x1 = f32::from_le_bytes(bytes[header_len + 44..header_len + 48].try_into().unwrap());
    assert_eq!(x1, gs[1].pos_a[0]);
    // An empty model is a valid file.
    ply::write_gaussians(&p, &[]).unwrap();
    assert!(ply::read_gaussians(&p).unwrap().is_empty());
}

#[test]
fn reads_other_layouts() {
    // Big-endian, a fixed-size element before the vertices, properties shuffled and of mixed
    // types, an extra colour property, and a face element with a list after the vertices.
    let mut b = b"ply\nformat binary_big_endian 1.0\ncomment hand made\nelement camera 1\nproperty int id\n\
element vertex 2\nproperty double z\nproperty uchar red\nproperty float x\nproperty float y\nproperty float amplitude\n\
property float rot_0\nproperty float rot_1\nproperty float rot_2\nproperty float rot_3\nproperty short scale_0\n\
property float scale_1\nproperty float scale_2\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
        .to_vec();
    b.extend_from_slice(&7i32.to_be_bytes());
    for k in 0..2 {
        let f = k as f32;
        b.extend_from_slice(&(3.25f64 + k as f64).to_be_bytes());
        b.push(200);
        for v in [1.5 + f, -2.5 - f, 0.75, 1.0, 0.0, 0.0, 0.0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&(3i16 + k as i16).to_be_bytes());
        for v in [0.5f32, 0.25] {
            b.extend_from_slice(&v.to_be_bytes());
        }
    }
    b.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
    let g = ply::parse_gaussians(&b, Path::new("other.ply")).unwrap();
    assert_eq!(
        g,
        vec![
            PlyGaussian { pos_a: [1.5, -2.5, 3.25], scale_a: [3.0, 0.5, 0.25], quat: [1.0, 0.0, 0.0, 0.0], amplitude: 0.75 },
            PlyGaussian { pos_a: [2.5, -3.5, 4.25], scale_a: [4.0, 0.5, 0.25], quat: [1.0, 0.0, 0.0, 0.0], amplitude: 0.75 },
        ]
    );
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.ply");
    ply::write_gaussians(&p, &gaussians(3)).unwrap();
    let good = std::fs::read(&p).unwrap();
    let check = |bytes: &[u8], want: &[&str]| {
        expect_err(ply::parse_gaussians(bytes, Path::new("x.ply")), &[&["x.ply"], want].concat());
    };
    check(b"PLY\n", &["not a PLY file"]);
    check(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n", &["line 2", "format ascii is not supported"]);
    check(&good[..good.len() - 1], &["3 vertices of 44 bytes need 132 bytes", "holds 131"]);
    let text = String::from_utf8_lossy(&good).replace("element vertex 3", "element vertex 99999999999999");
    check(text.as_bytes(), &["99999999999999 vertices"]);
    let text = String::from_utf8_lossy(&good).replace("property float rot_2\n", "property float rot_9\n");
    check(text.as_bytes(), &["line 4", "no property rot_2"]);
    check(b"ply\nformat binary_little_endian 1.0\n", &["no end_header"]);
    check(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty half x\nend_header\n", &["line 4", "unknown property type"]);
    expect_err(ply::read_gaussians(&dir.path().join("absent.ply")), &["absent.ply"]);
    let mut bad = gaussians(2);
    bad[1].scale_a[2] = f32::NAN;
    expect_err(ply::write_gaussians(&dir.path().join("nan.ply"), &bad), &["nan.ply", "Gaussian 1"]);
    assert!(!dir.path().join("nan.ply").exists());
    expect_err(ply::write_gaussians(Path::new("/nonexistent-dir/g.ply"), &gaussians(1)), &["/nonexistent-dir/g.ply"]);
}
