//! Particle sets from every real metadata file in tests/data. Expected numbers were read
//! independently with Python (`starfile`, `numpy`, `pickle`, and scipy's
//! `Rotation.from_rotvec(pose).as_matrix().T` for cryoSPARC poses).

use cryosplat_core::pose::Mat3;
use cryosplat_core::rotation::{cryosparc_rotvec_to_matrix, euler_to_matrix};
use cryosplat_formats::cs::CsFile;
use cryosplat_formats::mrc::MrcFile;
use cryosplat_train::dataset::{LoadOptions, ParticleSet};
use std::path::{Path, PathBuf};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(rel)
}

fn close(a: &Mat3, b: &Mat3, tol: f64) -> bool {
    (0..3).all(|i| (0..3).all(|j| (a[i][j] - b[i][j]).abs() < tol))
}

#[test]
fn relion30_with_magnification_origins_in_pixels_and_subsets() {
    let s = ParticleSet::load(&data("aspire/sample_particles_relion30.star"), &LoadOptions::default()).unwrap();
    assert_eq!(s.len(), 17);
    assert_eq!(s.box_px, 200);
    let apix = 1e4 * 5.0 / 37369.207031;
    assert!((s.apix - apix).abs() < 1e-9, "{}", s.apix);
    let p = &s.particles[0];
    assert!(close(&p.pose.rot, &euler_to_matrix(109.18664, 122.200343, 71.118492), 1e-12));
    assert!((p.pose.origin_a[0] - 0.1996 * apix).abs() < 1e-9);
    assert!((p.ctf.defocus_u_a - 21186.804688).abs() < 1e-6);
    assert_eq!(p.ctf.voltage_kv, 300.0);
    assert_eq!(p.random_subset, Some(2));
    assert!(s.has_poses && s.has_ctf && s.has_random_subsets());
    let (a, b) = s.half_split(1);
    assert_eq!(a.len() + b.len(), 17);
    assert!(a.iter().all(|&i| s.particles[i].random_subset == Some(1)));
    // The MRC header has no pixel size: not a conflict; stats come from the stack.
    let mut img = vec![0.0f32; 200 * 200];
    s.read_image(0, &mut img).unwrap();
    assert_eq!(img[0], -2.0562593936920166);
}

#[test]
fn relion31_optics_groups_subtilts() {
    let s = ParticleSet::load(&data("cryodrgn/sta_testing_bin8.optics31.DERIVED.star"), &LoadOptions::default()).unwrap();
    assert_eq!(s.len(), 219);
    assert_eq!((s.box_px, s.apix), (64, 14.56));
    let p = &s.particles[0];
    assert!(close(&p.pose.rot, &euler_to_matrix(113.1491, 88.02, -95.35435), 1e-12));
    assert_eq!(p.ctf.defocus_u_a, 20061.7);
    assert_eq!(p.ctf.bfactor_a2, -13.0);
    assert_eq!((p.ctf.voltage_kv, p.ctf.cs_mm, p.ctf.amp_contrast), (300.0, 2.7, 0.07));
    assert_eq!(s.optics_groups.len(), 1);
    // The header's 1 Å/px disagrees with the metadata: reported, metadata used.
    assert!(s.warnings.iter().any(|w| w.contains("metadata's 14.56")), "{:?}", s.warnings);
    // Two optics groups parse (the second at 200 kV).
    let t = cryosplat_formats::star::read(&data("aspire/sample_particles_relion31.star")).unwrap();
    assert_eq!(t.block("optics").unwrap().table().unwrap().len(), 2);
}

#[test]
fn toy_set_without_ctf_and_pickled_rotations() {
    let s = ParticleSet::load(&data("cryodrgn-toy/toy_projections.DERIVED.star"), &LoadOptions::default()).unwrap();
    assert_eq!(s.len(), 1000);
    assert!(s.has_poses && !s.has_ctf);
    assert!(s.require_ctf().unwrap_err().to_string().contains("no CTF parameters"));
    // The same poses from the pickle (float32 matrices; the STAR angles have 6 decimals).
    let opts = LoadOptions { poses: Some(data("cryodrgn-toy/toy_angles.pkl")), apix: Some(1.0), ..Default::default() };
    let m = ParticleSet::load(&data("cryodrgn-toy/toy_projections.mrcs"), &opts).unwrap();
    assert_eq!(m.len(), 1000);
    let want: Mat3 = [
        [0.9569709897041321, -0.2334621250629425, -0.1723419725894928],
        [-0.20802336931228638, -0.966005265712738, 0.1534930020570755],
        [-0.20231804251670837, -0.11103720963001251, -0.9730046391487122],
    ];
    assert!(close(&m.particles[999].pose.rot, &want, 1e-12));
    for i in [0, 500, 999] {
        assert!(close(&m.particles[i].pose.rot, &s.particles[i].pose.rot, 1e-6));
    }
}

#[test]
fn cryodrgn_pickles_count_mismatch_and_binned_pixel_size() {
    // 220 images in the stack, 219 poses: a count mismatch.
    let opts = LoadOptions {
        poses: Some(data("cryodrgn/sta_pose.pkl")),
        ctf: Some(data("cryodrgn/sta_ctf.pkl")),
        ..Default::default()
    };
    let e = ParticleSet::load(&data("cryodrgn/ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs"), &opts).unwrap_err().to_string();
    assert!(e.contains("sta_ctf.pkl") && e.contains("219 CTF rows for 220 particles"), "{e}");
    let (rots, trans) = cryosplat_formats::pickle::read_poses(&data("cryodrgn/sta_pose.pkl")).unwrap();
    assert_eq!(rots.len(), 219);
    assert_eq!(rots[0][0], [0.9167403628691108, 0.3884453608168932, 0.0932593627816792]);
    assert_eq!(trans.unwrap().len(), 219);
    let ctf = cryosplat_formats::pickle::read_ctf(&data("cryodrgn/sta_ctf.pkl")).unwrap();
    assert_eq!(ctf[0][0], 512.0);
    assert_eq!(ctf[0][2] as f32, 20061.69921875);
}

#[test]
fn cryosparc_dark_particles_are_inverted_and_poses_match_scipy() {
    let s = ParticleSet::load(&data("cryodrgn/empiar_10076_7.cs"), &LoadOptions::default()).unwrap();
    assert_eq!(s.len(), 7);
    assert_eq!(s.box_px, 320);
    assert!((s.apix - 1.3099979).abs() < 1e-6);
    assert!(s.invert && s.warnings.iter().any(|w| w.contains("inverted automatically")));
    let p = &s.particles[0];
    assert!((p.ctf.defocus_u_a - 15301.1).abs() < 1e-2);
    assert!((p.ctf.defocus_angle_deg - 0.092153385f64.to_degrees()).abs() < 1e-5);
    assert!(!s.has_poses);
    let mut img = vec![0.0f32; 320 * 320];
    s.read_image(0, &mut img).unwrap();
    assert_eq!(img[0], -0.6822134256362915);
    // A refinement's poses (no images): A = R(rotvec)ᵀ, equal to scipy's.
    let cs = CsFile::read(&data("cryodrgn/cryosparc_P12_J24_001_particles.cs")).unwrap();
    assert_eq!(cs.len(), 2019);
    let pose = cs.vec_column_opt::<3>("alignments3D/pose").unwrap().unwrap();
    let a = cryosparc_rotvec_to_matrix([pose[0][0], pose[0][1], pose[0][2]]);
    let want: Mat3 = [
        [0.5816298557386015, -0.37730439582642494, -0.7206581046540378],
        [0.05683143902304974, -0.8649114776924016, 0.49869662450683977],
        [-0.8114658948175598, -0.3310128829003533, -0.4816155862323541],
    ];
    assert!(close(&a, &want, 1e-12));
    assert_eq!(cs.blob_paths().unwrap()[0], "J19/extract/20150917_05196_DNA-TET-25k-DE20_raw.region_000.sum-all_003-072_particles.mrc");
    // The exported form strips cryoSPARC's '>' marker.
    let j2 = CsFile::read(&data("cryodrgn/cryosparc_J2_particles_exported.cs")).unwrap();
    assert_eq!(j2.blob_paths().unwrap()[0], "J1/imported/000090334788266266069_18jam15b_0345_ali_DW.mrcs");
    // Loading it needs the micrographs, which are not here: a clear error naming the stack.
    let e = ParticleSet::load(&data("cryodrgn/cryosparc_P12_J24_001_particles.cs"), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("DNA-TET-25k-DE20") && e.contains("No such file"), "{e}");
}

#[test]
fn relion30_without_angles_needs_poses() {
    let s = ParticleSet::load(&data("cryodrgn/empiar_10076_7.star"), &LoadOptions::default()).unwrap();
    assert_eq!(s.len(), 7);
    assert!((s.apix - 1e4 * 5.0 / 38168.0).abs() < 1e-9);
    assert!(!s.has_poses);
    assert!(s.require_poses().unwrap_err().to_string().contains("no particle poses"));
    assert!(s.warnings.iter().any(|w| w.contains("rlnCtfBfactor is missing")), "{:?}", s.warnings);
}

#[test]
fn write_star_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = ParticleSet::load(&data("aspire/sample_particles_relion30.star"), &LoadOptions::default()).unwrap();
    let out = dir.path().join("out.star");
    s.write_star(&out).unwrap();
    let r = ParticleSet::load(&out, &LoadOptions::default()).unwrap();
    assert_eq!(r.len(), s.len());
    assert!((r.apix - s.apix).abs() < 1e-6);
    for (a, b) in r.particles.iter().zip(&s.particles) {
        assert!(close(&a.pose.rot, &b.pose.rot, 1e-6));
        assert!((a.pose.origin_a[0] - b.pose.origin_a[0]).abs() < 1e-5);
        assert!((a.ctf.defocus_v_a - b.ctf.defocus_v_a).abs() < 1e-5);
        assert_eq!(a.random_subset, b.random_subset);
        assert_eq!(r.stacks[a.stack].canonicalize().unwrap(), s.stacks[b.stack].canonicalize().unwrap());
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(data("cryodrgn-toy/toy_projections.mrcs"), d.join("toy.mrcs")).unwrap();
    let head = "data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n_rlnVoltage\n1 1.0 300\ndata_particles\nloop_\n_rlnImageName\n_rlnDefocusU\n_rlnOpticsGroup\n";
    // Non-numeric value.
    let p = write(d, "nan.star", &format!("{head}000001@toy.mrcs abc 1\n"));
    let e = ParticleSet::load(&p, &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("nan.star: line 12") && e.contains("rlnDefocusU") && e.contains("abc"), "{e}");
    // Index out of range.
    let p = write(d, "range.star", &format!("{head}001001@toy.mrcs 10000 1\n"));
    let e = ParticleSet::load(&p, &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("image 1001") && e.contains("holds 1000 images"), "{e}");
    // Missing stack.
    let p = write(d, "missing.star", &format!("{head}000001@absent.mrcs 10000 1\n"));
    let e = ParticleSet::load(&p, &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("absent.mrcs"), "{e}");
    // Missing required column.
    let p = write(d, "nocol.star", "data_particles\nloop_\n_rlnDefocusU\n10000\n");
    let e = ParticleSet::load(&p, &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("nocol.star") && e.contains("rlnImageName"), "{e}");
    // Impossible CTF value.
    let p = write(d, "ctf.star", "data_particles\nloop_\n_rlnImageName\n_rlnDefocusU\n_rlnAmplitudeContrast\n000001@toy.mrcs 10000 1.5\n");
    let e = ParticleSet::load(&p, &LoadOptions { apix: Some(1.0), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("ctf.star: line 6") && e.contains("amplitude contrast"), "{e}");
    // Unknown file type.
    let e = ParticleSet::load(&d.join("x.txt"), &LoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("x.txt") && e.contains("unknown particle file type"), "{e}");
    // NaN pixels in a stack.
    let mut bytes = std::fs::read(d.join("toy.mrcs")).unwrap();
    let o = 1024 + 4 * (900 * 3 + 5);
    bytes[o..o + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(d.join("toy.mrcs"), &bytes).unwrap();
    let p = write(d, "ok.star", &format!("{head}000004@toy.mrcs 10000 1\n"));
    let s = ParticleSet::load(&p, &LoadOptions::default()).unwrap();
    let mut img = vec![0.0f32; 900];
    let e = s.read_image(0, &mut img).unwrap_err().to_string();
    assert!(e.contains("toy.mrcs") && e.contains("image 3") && e.contains("1 NaN"), "{e}");
    let _ = MrcFile::open(d.join("toy.mrcs")).unwrap();
}
