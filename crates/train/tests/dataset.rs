//! Particle sets from every real metadata file in tests/data, and from crafted bad inputs.
//!
//! Expected numbers were computed independently in Python (numpy 2.4, scipy 1.17, starfile
//! 0.5.13, mrcfile 1.5.4): RELION's `A = Rz(ψ)·Ry(θ)·Rz(φ)` written out with numpy,
//! `Rotation.from_rotvec(pose).as_matrix().T` for cryoSPARC, `pickle.load` for cryoDRGN, and
//! `mrcfile` for pixel values.

mod common;

use common::{close, data};
use cryosplat_core::pose::Mat3;
use cryosplat_formats::mrc::{write_stack, MrcFile, WriteOptions};
use cryosplat_train::dataset::{LoadOptions, ParticleSet, SourceKind};
use std::path::{Path, PathBuf};

fn load(rel: &str) -> ParticleSet {
    ParticleSet::load(&data(rel), &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn has_warning(s: &ParticleSet, what: &str) -> bool {
    s.warnings.iter().any(|w| w.contains(what))
}

#[test]
fn relion30_magnification_pixel_origins_and_subsets() {
    let s = load("aspire/sample_particles_relion30.star");
    assert_eq!(s.kind, SourceKind::Relion30);
    assert_eq!((s.len(), s.box_px), (17, 200));
    let apix = 1.3380000265598893; // 1e4 · 5 / 37369.207031
    assert!((s.apix - apix).abs() < 1e-12, "{}", s.apix);
    let p = &s.particles[0];
    let a0 = [
        [-0.8369578375631803, -0.4738298465240669, -0.2738372777481989],
        [-0.47134219075098965, 0.3698458034355376, 0.8006563687994865],
        [-0.2780973163473944, 0.7991866854647298, -0.5328813417790834],
    ];
    assert!(close(&p.pose.rot, &a0, 1e-12));
    // rlnOriginX/Y are pixels in RELION 3.0.
    assert!((p.pose.origin_a[0] - 0.1996 * apix).abs() < 1e-12);
    assert!((s.particles[16].pose.origin_a[1] - -0.0504 * apix).abs() < 1e-12);
    assert_eq!((p.ctf.defocus_u_a, p.ctf.defocus_v_a, p.ctf.defocus_angle_deg), (21186.804688, 21363.109375, 7.476096));
    assert_eq!((p.ctf.voltage_kv, p.ctf.cs_mm, p.ctf.amp_contrast), (300.0, 2.7, 0.1));
    // ASPIRE's edit gives the last particle 200 kV: kept per particle, and reported.
    assert_eq!(s.particles[16].ctf.voltage_kv, 200.0);
    assert!(has_warning(&s, "differ in voltage"), "{:?}", s.warnings);
    // rlnRandomSubset: 10 in half 1, 7 in half 2 (starfile).
    assert!(s.has_poses && s.has_ctf && s.has_random_subsets());
    let (a, b) = s.half_split(1);
    assert_eq!((a.len(), b.len()), (10, 7));
    assert!(a.iter().all(|&i| s.particles[i].random_subset == Some(1)));
    assert_eq!(s.half_sizes(), [a.len(), b.len()]);
    assert_eq!(s.half_split(99), (a, b), "file halves do not depend on the seed");
    // The MRC header has no pixel size: not a conflict. Pixels as mrcfile reads them.
    assert!(!has_warning(&s, "MRC header"), "{:?}", s.warnings);
    let mut img = vec![0.0f32; 200 * 200];
    s.read_image(0, &mut img).unwrap();
    assert_eq!(img[0] as f64, -2.0562593936920166);
    s.read_image(2, &mut img).unwrap();
    assert!((img.iter().map(|&v| v as f64).sum::<f64>() - 1075.230986768809).abs() < 1e-6);
}

#[test]
fn relion31_optics_table_and_angstrom_origins() {
    let s = load("cryodrgn/relion31.star");
    assert_eq!(s.kind, SourceKind::Relion31);
    assert_eq!((s.len(), s.box_px, s.apix), (5, 256, 2.806));
    let p = &s.particles[0];
    let a0 = [
        [0.8194180608709448, -0.10080703507814986, 0.5642623354409305],
        [-0.5328807483769291, 0.2286894569904352, 0.8147019333907731],
        [-0.21116853346970138, -0.968266014037554, 0.1336741430946279],
    ];
    assert!(close(&p.pose.rot, &a0, 1e-12));
    assert_eq!(p.pose.origin_a, [0.019324, -0.64686]);
    assert_eq!((p.ctf.defocus_u_a, p.ctf.defocus_angle_deg), (13108.082418, -160.39));
    // From the optics group: Cs 0.01, Q0 0.1, 300 kV.
    assert_eq!((p.ctf.voltage_kv, p.ctf.cs_mm, p.ctf.amp_contrast), (300.0, 0.01, 0.1));
    assert_eq!(s.optics_groups.len(), 1);
    assert_eq!((s.optics_groups[0].name.as_str(), s.optics_groups[0].particles), ("opticsGroup1", 5));
    // Every particle is in half 1: not usable, so a seeded random split of 3 + 2.
    assert!(!s.has_random_subsets());
    assert!(has_warning(&s, "same half set"), "{:?}", s.warnings);
    let (a, b) = s.half_split(7);
    assert_eq!((a.len(), b.len()), (2, 3));
    assert_eq!(s.half_sizes(), [2, 3]);
    // The stack's non-compliant header (no MAP tag, stamp 0) is reported, once.
    assert!(s.warnings.iter().filter(|w| w.contains("relion31.mrcs")).count() >= 1, "{:?}", s.warnings);
    let mut img = vec![0.0f32; 256 * 256];
    s.read_image(2, &mut img).unwrap();
    assert!((img.iter().map(|&v| v as f64).sum::<f64>() - 1027.4241580216103).abs() < 1e-6);
    s.read_image(4, &mut img).unwrap();
    assert_eq!(img[256 * 256 - 1] as f64, -0.8011943101882935);
}

#[test]
fn two_optics_groups_and_box_from_the_stack() {
    // ASPIRE's 3.1 edit: groups 1 (300 kV, 8 particles) and 2 (200 kV, 9), 1.4 Å, no rlnImageSize.
    let s = load("aspire/sample_particles_relion31.star");
    assert_eq!((s.len(), s.box_px, s.apix), (17, 200, 1.4));
    let g: Vec<_> = s.optics_groups.iter().map(|g| (g.id, g.voltage_kv, g.particles)).collect();
    assert_eq!(g, [(1, 300.0, 8), (2, 200.0, 9)]);
    assert_eq!(s.particles[16].optics_group, 2);
    assert_eq!(s.particles[16].ctf.voltage_kv, 200.0);
    assert_eq!(s.particles[0].ctf.voltage_kv, 300.0);
    assert_eq!(s.particles[0].pose.origin_a, [0.1996, 0.1996]);
    // The file has B-factors, scales and phase shifts: no defaults, no warnings about them.
    assert!(!has_warning(&s, "default"), "{:?}", s.warnings);
}

#[test]
fn subtilts_31_match_the_pose_pickle() {
    let s = load("cryodrgn/sta_testing_bin8.optics31.DERIVED.star");
    assert_eq!((s.len(), s.box_px, s.apix), (219, 64, 14.56));
    let p = &s.particles[0];
    let a0 = [
        [0.9167403628691108, 0.3884453608168932, 0.0932593627816792],
        [0.07227834605776433, 0.06831468551480217, -0.9950421822386063],
        [-0.3928905035474454, 0.9189359637117526, 0.0345506413744724],
    ];
    assert!(close(&p.pose.rot, &a0, 1e-12));
    assert_eq!((p.ctf.defocus_u_a, p.ctf.defocus_v_a, p.ctf.bfactor_a2, p.ctf.scale), (20061.7, 19560.8, -13.0, 1.0));
    assert_eq!(s.particles[218].ctf.scale, 0.809);
    assert_eq!((p.ctf.voltage_kv, p.ctf.cs_mm, p.ctf.amp_contrast), (300.0, 2.7, 0.07));
    // The header's 1 Å/px disagrees with the metadata: reported, the metadata win.
    assert!(has_warning(&s, "metadata's 14.56"), "{:?}", s.warnings);
    // Python: the pose pickle's matrices equal the STAR angles' A to 1.1e-16.
    let (rots, _) = cryosplat_formats::pickle::read_poses(&data("cryodrgn/sta_pose.pkl")).unwrap();
    for (i, r) in rots.iter().enumerate() {
        assert!(close(r, &s.particles[i].pose.rot, 1e-12), "particle {i}");
    }
}

#[test]
fn relion30_with_a_wrong_magnification_and_an_override() {
    // Mag 10000 and DetectorPixelSize 1.96 give 1.96 Å/px, wrong for these binned images.
    let s = load("cryodrgn/sta_testing_bin8.star");
    assert!((s.apix - 1.96).abs() < 1e-12);
    assert!(has_warning(&s, "the MRC header says 1 Å/px"), "{:?}", s.warnings);
    let (a, b) = s.half_split(0);
    assert_eq!((a.len(), b.len()), (39, 180));
    let o = ParticleSet::load(&data("cryodrgn/sta_testing_bin8.star"), &LoadOptions { apix: Some(14.56), ..Default::default() }).unwrap();
    assert_eq!(o.apix, 14.56);
    assert!(has_warning(&o, "14.56 Å given explicitly overrides the metadata's 1.96"), "{:?}", o.warnings);
    // Same particles as the derived 3.1 file.
    let d = load("cryodrgn/sta_testing_bin8.optics31.DERIVED.star");
    for i in [0, 100, 218] {
        assert!(close(&o.particles[i].pose.rot, &d.particles[i].pose.rot, 1e-12));
        assert_eq!(o.particles[i].ctf, d.particles[i].ctf);
    }
}

#[test]
fn toy_set_without_ctf_and_its_rotation_pickle() {
    let s = load("cryodrgn-toy/toy_projections.DERIVED.star");
    assert_eq!((s.len(), s.box_px, s.apix), (1000, 30, 1.0));
    assert!(s.has_poses && !s.has_ctf);
    assert!(s.require_ctf().unwrap_err().to_string().contains("no CTF parameters"));
    assert!(has_warning(&s, "no CTF parameters"));
    // The pickle alone with the stack: rotations, no translations, pixel size from the header.
    let opts = LoadOptions { poses: Some(data("cryodrgn-toy/toy_angles.pkl")), ..Default::default() };
    let m = ParticleSet::load(&data("cryodrgn-toy/toy_projections.mrcs"), &opts).unwrap();
    assert_eq!((m.kind, m.len(), m.box_px, m.apix), (SourceKind::Stack, 1000, 30, 1.0));
    assert!(has_warning(&m, "taken from the MRC header"), "{:?}", m.warnings);
    assert!(m.has_poses && !m.has_ctf);
    let want: Mat3 = [
        [0.9569709897041321, -0.2334621250629425, -0.1723419725894928],
        [-0.20802336931228638, -0.966005265712738, 0.1534930020570755],
        [-0.20231804251670837, -0.11103720963001251, -0.9730046391487122],
    ];
    assert!(close(&m.particles[999].pose.rot, &want, 1e-15));
    assert!(m.particles.iter().all(|p| p.pose.origin_a == [0.0, 0.0]));
    // Python: STAR angles (6 decimals) rebuild the pickle's matrices to 2.09e-7.
    let worst = (0..1000)
        .flat_map(|i| (0..9).map(move |k| (i, k)))
        .map(|(i, k)| (m.particles[i].pose.rot[k / 3][k % 3] - s.particles[i].pose.rot[k / 3][k % 3]).abs())
        .fold(0.0, f64::max);
    assert!(worst < 2.2e-7 && worst > 1e-8, "{worst}");
    let mut a = vec![0.0f32; 900];
    let mut b = vec![0.0f32; 900];
    m.read_image(2, &mut a).unwrap();
    s.read_image(2, &mut b).unwrap();
    assert_eq!(a, b);
    assert!((a.iter().map(|&v| v as f64).sum::<f64>() - 179.99572836025436).abs() < 1e-6);
}

/// The first 219 sub-tilts as their own stack (the upstream stack has one more image).
fn subtilt_stack_219(dir: &Path) -> PathBuf {
    let f = MrcFile::open(data("cryodrgn/ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs")).unwrap();
    let mut all = vec![0.0f32; 219 * 64 * 64];
    for (i, chunk) in all.chunks_exact_mut(64 * 64).enumerate() {
        f.read_image(i, chunk).unwrap();
    }
    let p = dir.join("sta219.mrcs");
    write_stack(&p, &all, 64, 64, 219, 1.0, &WriteOptions::default()).unwrap();
    p
}

#[test]
fn cryodrgn_pickles_with_a_stack() {
    let opts = LoadOptions { poses: Some(data("cryodrgn/sta_pose.pkl")), ctf: Some(data("cryodrgn/sta_ctf.pkl")), ..Default::default() };
    // 220 images in the upstream stack, 219 rows in the pickles.
    let e = ParticleSet::load(&data("cryodrgn/ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs"), &opts).unwrap_err().to_string();
    assert!(e.contains("sta_ctf.pkl") && e.contains("219 CTF rows for 220 particles"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let stack = subtilt_stack_219(dir.path());
    let s = ParticleSet::load(&stack, &opts).unwrap();
    // D = 512 at 1.82 Å in the pickle; the images are 64 px: 1.82 · 512 / 64 = 14.56 Å.
    assert_eq!(s.box_px, 64);
    assert!((s.apix - 1.82f32 as f64 * 8.0).abs() < 1e-12, "{}", s.apix);
    assert!(has_warning(&s, "describes 512 px images"), "{:?}", s.warnings);
    assert!(has_warning(&s, "the MRC header says 1 Å/px"), "{:?}", s.warnings);
    assert!(s.has_poses && s.has_ctf);
    let d = load("cryodrgn/sta_testing_bin8.optics31.DERIVED.star");
    for i in [0, 218] {
        assert!(close(&s.particles[i].pose.rot, &d.particles[i].pose.rot, 1e-12));
        let (c, e) = (&s.particles[i].ctf, &d.particles[i].ctf);
        assert!((c.defocus_u_a - e.defocus_u_a).abs() < 2e-3 && (c.defocus_angle_deg - e.defocus_angle_deg).abs() < 1e-5);
        assert_eq!((c.voltage_kv, c.cs_mm as f32, c.amp_contrast as f32), (300.0, 2.7, 0.07));
    }
    // Translations: trans · D pixels (Python: trans[218] = [0.0010126534902734712, 0.0013515095284649375]).
    let o = s.particles[218].pose.origin_a;
    let want = [0.0010126534902734712 * 64.0 * s.apix, 0.0013515095284649375 * 64.0 * s.apix];
    assert!((o[0] - want[0]).abs() < 1e-12 && (o[1] - want[1]).abs() < 1e-12, "{o:?}");
    let mut a = vec![0.0f32; 64 * 64];
    s.read_image(2, &mut a).unwrap();
    assert!((a.iter().map(|&v| v as f64).sum::<f64>() - -6171.676794549334).abs() < 1e-3);
}

#[test]
fn cryosparc_dark_particles_are_inverted() {
    let s = load("cryodrgn/empiar_10076_7.cs");
    assert_eq!((s.kind, s.len(), s.box_px), (SourceKind::CryoSparc, 7, 320));
    assert_eq!(s.apix, 1.3099979162216187);
    assert!(s.invert && has_warning(&s, "inverted automatically"));
    assert!(!s.has_poses && s.has_ctf);
    let p = &s.particles[0];
    assert_eq!((p.ctf.defocus_u_a, p.ctf.defocus_v_a), (15301.099609375, 14916.400390625));
    assert!((p.ctf.defocus_angle_deg - 5.280000044476548).abs() < 1e-12);
    assert_eq!((p.ctf.voltage_kv, p.ctf.cs_mm as f32, p.ctf.amp_contrast as f32), (300.0, 2.7, 0.07));
    assert_eq!(s.optics_groups.len(), 1);
    assert_eq!(s.optics_groups[0].id, 23);
    // mrcfile reads +0.6822134256362915: inverted.
    let mut img = vec![0.0f32; 320 * 320];
    s.read_image(0, &mut img).unwrap();
    assert_eq!(img[0] as f64, -0.6822134256362915);
    // Asking for inversion on top cancels it, with a warning.
    let u = ParticleSet::load(&data("cryodrgn/empiar_10076_7.cs"), &LoadOptions { invert: true, ..Default::default() }).unwrap();
    assert!(!u.invert && has_warning(&u, "cancels the automatic inversion"));
    u.read_image(0, &mut img).unwrap();
    assert_eq!(img[0] as f64, 0.6822134256362915);
    // The RELION 3.0 file of the same particles: same defocus (to float32), same angle.
    let r = load("cryodrgn/empiar_10076_7.star");
    assert_eq!(r.len(), 7);
    assert!((r.apix - 1.3099979040033536).abs() < 1e-12);
    assert!(!r.invert && !r.has_poses);
    assert!(r.require_poses().unwrap_err().to_string().contains("no particle poses"));
    for w in ["rlnCtfBfactor is missing", "rlnCtfScalefactor is missing", "rlnPhaseShift is missing"] {
        assert!(has_warning(&r, w), "{w}: {:?}", r.warnings);
    }
    for (a, b) in r.particles.iter().zip(&s.particles) {
        assert_eq!(a.ctf.defocus_u_a as f32 as f64, b.ctf.defocus_u_a);
        assert!((a.ctf.defocus_angle_deg - b.ctf.defocus_angle_deg).abs() < 1e-5);
    }
}

#[test]
fn cryosparc_refinement_metadata_without_images() {
    let path = data("cryodrgn/cryosparc_P12_J24_001_particles.cs");
    // The micrographs are not here: a clear error naming the stack and the fix.
    let e = ParticleSet::load(&path, &LoadOptions::default()).unwrap_err().to_string();
    assert!(
        e.contains("J19/extract/20150917_05196_DNA-TET-25k-DE20")
            && e.contains("not found beside the metadata")
            && e.contains("(50 of 50 stacks are missing)")
            && e.contains("--datadir"),
        "{e}"
    );
    let s = ParticleSet::load_metadata(&path, &LoadOptions::default()).unwrap();
    assert_eq!((s.len(), s.box_px), (2019, 180));
    assert_eq!(s.apix, 2.950000047683716);
    assert!(s.has_poses && s.has_ctf && s.invert);
    // scipy: Rotation.from_rotvec(pose[0]).as_matrix().T
    let want: Mat3 = [
        [0.5816298557386015, -0.37730439582642494, -0.7206581046540378],
        [0.05683143902304974, -0.8649114776924016, 0.49869662450683977],
        [-0.8114658948175598, -0.3310128829003533, -0.4816155862323541],
    ];
    assert!(close(&s.particles[0].pose.rot, &want, 1e-12));
    let last: Mat3 = [
        [-0.827983282335397, 0.46190748626060785, 0.3179389222940605],
        [0.03979423283867947, 0.6139573339985718, -0.7883354686059401],
        [-0.5593389877398885, -0.640076453375511, -0.5267276626762107],
    ];
    assert!(close(&s.particles[2018].pose.rot, &last, 1e-12));
    // Shifts in pixels of alignments3D/psize_A, same sign as rlnOrigin.
    let o = s.particles[0].pose.origin_a;
    assert!((o[0] - 11.334375381469727 * 2.950000047683716).abs() < 1e-9 && (o[1] - -1.828125 * 2.950000047683716).abs() < 1e-9);
    let c = &s.particles[0].ctf;
    assert_eq!((c.defocus_u_a, c.defocus_v_a, c.voltage_kv, c.cs_mm), (45591.37109375, 45309.79296875, 200.0, 2.0));
    assert!((c.defocus_angle_deg - (-1.3636448383331299f64).to_degrees()).abs() < 1e-12);
    // alignments3D/split: 1010 in half 0, 1009 in half 1.
    assert!(s.has_random_subsets());
    let (a, b) = s.half_split(3);
    assert_eq!((a.len(), b.len()), (1010, 1009));
    assert_eq!(s.half_sizes(), [1010, 1009]);
    // numpy: 50 distinct blob/path values, one exposure group (0).
    assert_eq!(s.stacks.len(), 50);
    assert_eq!((s.optics_groups.len(), s.optics_groups[0].id, s.optics_groups[0].particles), (1, 0, 2019));
    // The exported job: 2D alignments only.
    let j = ParticleSet::load_metadata(&data("cryodrgn/cryosparc_J2_particles_exported.cs"), &LoadOptions::default()).unwrap();
    assert_eq!((j.len(), j.box_px), (22, 300));
    assert!(!j.has_poses && has_warning(&j, "2D alignments only"));
    assert!(j.stacks[0].ends_with("J1/imported/000090334788266266069_18jam15b_0345_ali_DW.mrcs"));
}

#[test]
fn image_paths_resolved_from_parent_folders_or_datadir() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    std::fs::create_dir_all(project.join("Extract/job007")).unwrap();
    std::fs::create_dir_all(project.join("Refine3D/job010")).unwrap();
    std::fs::copy(data("cryodrgn/relion31.mrcs"), project.join("Extract/job007/a.mrcs")).unwrap();
    let text = std::fs::read_to_string(data("cryodrgn/relion31.star")).unwrap().replace("@relion31.mrcs", "@Extract/job007/a.mrcs");
    let star = project.join("Refine3D/job010/run_data.star");
    std::fs::write(&star, &text).unwrap();
    // RELION project layout: paths are relative to the project folder, two levels up.
    let s = ParticleSet::load(&star, &LoadOptions::default()).unwrap();
    assert_eq!(s.stacks.len(), 1);
    assert_eq!(s.stacks[0].canonicalize().unwrap(), project.join("Extract/job007/a.mrcs").canonicalize().unwrap());
    assert!(has_warning(&s, "resolved against"), "{:?}", s.warnings);
    // --datadir: the file name alone in that folder also counts.
    let flat = project.join("flat");
    std::fs::create_dir(&flat).unwrap();
    std::fs::copy(data("cryodrgn/relion31.mrcs"), flat.join("a.mrcs")).unwrap();
    let s = ParticleSet::load(&star, &LoadOptions { datadir: Some(flat.clone()), ..Default::default() }).unwrap();
    assert_eq!(s.stacks[0], flat.join("a.mrcs"));
    let e =
        ParticleSet::load(&star, &LoadOptions { datadir: Some(project.join("nowhere")), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("Extract/job007/a.mrcs") && e.contains("nowhere"), "{e}");
}

#[test]
fn subsets_first_n_index_files_and_halves() {
    let mut s = load("cryodrgn-toy/toy_projections.DERIVED.star");
    let dir = tempfile::tempdir().unwrap();
    // A text index file and a cryoDRGN index pickle (numpy int64 [4, 0, 2], protocol 4).
    let txt = dir.path().join("ind.txt");
    std::fs::write(&txt, "# kept\n4\n\n0  # first\n2\n").unwrap();
    assert_eq!(ParticleSet::read_index_file(&txt).unwrap(), [4, 0, 2]);
    let pkl = dir.path().join("ind.pkl");
    let h = "800495a1000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b03859468038c0564747970659493948c02693894898887945294284b038c013c944e4e4e4affffffff4affffffff4b00749462894318040000000000000000000000000000000200000000000000947494622e";
    let bytes: Vec<u8> = (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect();
    std::fs::write(&pkl, bytes).unwrap();
    assert_eq!(ParticleSet::read_index_file(&pkl).unwrap(), [4, 0, 2]);
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "1\nx2\n").unwrap();
    let e = ParticleSet::read_index_file(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.txt: line 2") && e.contains("\"x2\""), "{e}");
    // Halves: balanced, seeded, disjoint.
    let (a, b) = s.half_split(5);
    assert_eq!((a.len(), b.len()), (500, 500));
    assert_eq!(s.half_sizes(), [a.len(), b.len()]);
    assert_eq!(s.half_split(5), (a.clone(), b.clone()));
    assert_ne!(s.half_split(6).0, a);
    assert!(a.iter().all(|i| b.binary_search(i).is_err()));
    // Subsets keep order and images.
    let mut want = vec![0.0f32; 900];
    s.read_image(4, &mut want).unwrap();
    let rot4 = s.particles[4].pose.rot;
    s.retain_indices(&[4, 0, 2]).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s.particles[0].pose.rot, rot4);
    let mut got = vec![0.0f32; 900];
    s.read_image(0, &mut got).unwrap();
    assert_eq!(got, want);
    let e = s.retain_indices(&[0, 3]).unwrap_err().to_string();
    assert!(e.contains("subset index 3 is out of range") && e.contains("3 particles"), "{e}");
    let e = s.retain_indices(&[1, 1]).unwrap_err().to_string();
    assert!(e.contains("given twice"), "{e}");
    s.retain_first(2).unwrap();
    assert_eq!(s.len(), 2);
    let mut t = load("cryodrgn-toy/toy_projections.DERIVED.star");
    t.retain_first(5000).unwrap();
    assert_eq!(t.len(), 1000);
}

#[test]
fn write_star_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    for (src, inside) in [
        ("aspire/sample_particles_relion30.star", false),
        ("aspire/sample_particles_relion31.star", false),
        ("cryodrgn/empiar_10076_7.cs", false),
        ("cryodrgn/relion31.star", true),
    ] {
        let mut s = load(src);
        // Either beside the images (relative names) or elsewhere (absolute names).
        let out = if inside {
            let d = dir.path().join("in");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(data("cryodrgn/relion31.mrcs"), d.join("relion31.mrcs")).unwrap();
            s.stacks = vec![d.join("relion31.mrcs")];
            s.write_star(&d.join("out.star")).unwrap();
            let text = std::fs::read_to_string(d.join("out.star")).unwrap();
            assert!(text.contains("000001@relion31.mrcs"), "{text}");
            d.join("out.star")
        } else {
            let o = dir.path().join("out.star");
            s.write_star(&o).unwrap();
            o
        };
        let r = ParticleSet::load(&out, &LoadOptions::default()).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!((r.kind, r.len(), r.box_px, r.has_poses, r.has_ctf), (SourceKind::Relion31, s.len(), s.box_px, s.has_poses, s.has_ctf));
        assert!((r.apix - s.apix).abs() < 1e-6, "{src}");
        assert_eq!(r.has_random_subsets(), s.has_random_subsets(), "{src}");
        for (a, b) in r.particles.iter().zip(&s.particles) {
            assert!(close(&a.pose.rot, &b.pose.rot, 1e-6), "{src}");
            assert!((a.pose.origin_a[0] - b.pose.origin_a[0]).abs() < 1e-6 && (a.pose.origin_a[1] - b.pose.origin_a[1]).abs() < 1e-6);
            let (x, y) = (&a.ctf, &b.ctf);
            for (u, v) in [
                (x.defocus_u_a, y.defocus_u_a),
                (x.defocus_v_a, y.defocus_v_a),
                (x.defocus_angle_deg, y.defocus_angle_deg),
                (x.voltage_kv, y.voltage_kv),
                (x.cs_mm, y.cs_mm),
                (x.amp_contrast, y.amp_contrast),
                (x.bfactor_a2, y.bfactor_a2),
                (x.scale, y.scale),
                (x.phase_shift_deg, y.phase_shift_deg),
            ] {
                assert!((u - v).abs() < 1e-6, "{src}: {u} vs {v}");
            }
            assert_eq!(a.random_subset, b.random_subset);
            assert_eq!(r.stacks[a.stack].canonicalize().unwrap(), s.stacks[b.stack].canonicalize().unwrap());
        }
        // Mixed voltages become separate optics groups.
        if src.contains("relion30") {
            assert_eq!(r.optics_groups.len(), 2);
        }
    }
}

/// A temporary folder holding the cryoDRGN toy stack as `toy.mrcs` (30×30 images).
fn toy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(data("cryodrgn-toy/toy_projections.mrcs"), dir.path().join("toy.mrcs")).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn err(p: &Path, opts: &LoadOptions) -> String {
    ParticleSet::load(p, opts).unwrap_err().to_string()
}

#[test]
fn bad_star_inputs_give_clear_errors() {
    let dir = toy_dir();
    let d = dir.path();
    let no = LoadOptions::default();
    let head = "data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n_rlnVoltage\n1 1.0 300\ndata_particles\nloop_\n_rlnImageName\n_rlnDefocusU\n_rlnOpticsGroup\n";
    let cases: [(&str, String, &str); 11] = [
        ("nan.star", format!("{head}000001@toy.mrcs abc 1\n"), "line 12: column rlnDefocusU holds \"abc\""),
        (
            "range.star",
            format!("{head}000001@toy.mrcs 1e4 1\n001001@toy.mrcs 1e4 1\n"),
            "particle 1 (0-based) refers to image 1001 (1-based)",
        ),
        ("missing.star", format!("{head}000001@absent.mrcs 10000 1\n"), "absent.mrcs not found"),
        ("nocol.star", "data_particles\nloop_\n_rlnDefocusU\n10000\n".into(), "no table with an rlnImageName"),
        (
            "ctf.star",
            format!("{head}000001@toy.mrcs -1 1\n").replace("_rlnVoltage\n1 1.0 300", "_rlnVoltage\n1 1.0 -300"),
            "line 12: impossible CTF parameter: voltage is -300",
        ),
        ("group.star", format!("{head}000001@toy.mrcs 1e4 2\n"), "line 12: optics group 2 is not in data_optics"),
        ("zero.star", format!("{head}000000@toy.mrcs 1e4 1\n"), "line 12: image number in \"000000@toy.mrcs\" is 0"),
        ("num.star", format!("{head}x1@toy.mrcs 1e4 1\n"), "not a whole number"),
        ("empty.star", head.to_string(), "lists no particles"),
        (
            "box.star",
            format!("{head}000001@toy.mrcs 1e4 1\n").replace("_rlnVoltage\n1 1.0 300", "_rlnVoltage\n_rlnImageSize\n1 1.0 300 64"),
            "the metadata say the images are 64 px but",
        ),
        (
            "dim.star",
            format!("{head}000001@toy.mrcs 1e4 1\n").replace("_rlnVoltage\n1 1.0 300", "_rlnVoltage\n_rlnImageDimensionality\n1 1.0 300 3"),
            "3D particles",
        ),
    ];
    for (name, text, what) in cases {
        let p = write(d, name, &text);
        let e = err(&p, &no);
        assert!(e.contains(name) && e.contains(what), "{name}: {e}");
    }
    // Optics groups with different pixel sizes.
    let p = write(d, "two.star", "data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 1.0\n2 1.5\ndata_particles\nloop_\n_rlnImageName\n_rlnOpticsGroup\n1@toy.mrcs 1\n2@toy.mrcs 2\n");
    let e = err(&p, &no);
    assert!(e.contains("two.star") && e.contains("different pixel sizes (1 and 1.5 Å)"), "{e}");
    // No pixel size anywhere: a 3.0 file over a stack whose header says nothing.
    std::fs::copy(data("cryodrgn/empiar_10076_7.mrc"), d.join("e.mrc")).unwrap();
    let p = write(d, "noapix.star", "data_\nloop_\n_rlnImageName\n1@e.mrc\n");
    let e = err(&p, &no);
    assert!(e.contains("noapix.star") && e.contains("give one with --apix"), "{e}");
    let s = ParticleSet::load(&p, &LoadOptions { apix: Some(1.31), ..Default::default() }).unwrap();
    assert_eq!((s.apix, s.box_px), (1.31, 320));
    let e = err(&p, &LoadOptions { apix: Some(-1.0), ..Default::default() });
    assert!(e.contains("-1 Å is not a positive number"), "{e}");
    // Unknown file type, unreadable file.
    let e = err(&d.join("x.txt"), &no);
    assert!(e.contains("x.txt") && e.contains("unknown particle file type"), "{e}");
    let e = err(&d.join("absent.star"), &no);
    assert!(e.contains("absent.star"), "{e}");
    // Non-square images.
    write_stack(&d.join("rect.mrcs"), &[0.5f32; 2 * 30 * 20], 30, 20, 2, 1.0, &WriteOptions::default()).unwrap();
    let p = write(d, "rect.star", "data_\nloop_\n_rlnImageName\n1@rect.mrcs\n");
    let e = err(&p, &no);
    assert!(e.contains("rect.mrcs") && e.contains("30×20") && e.contains("square"), "{e}");
    // Stacks of different sizes in one set.
    write_stack(&d.join("big.mrcs"), &[0.5f32; 32 * 32], 32, 32, 1, 1.0, &WriteOptions::default()).unwrap();
    let p = write(d, "mixed.star", "data_\nloop_\n_rlnImageName\n1@toy.mrcs\n1@big.mrcs\n");
    let e = err(&p, &no);
    assert!(e.contains("big.mrcs") && e.contains("32×32") && e.contains("30×30"), "{e}");
    // NaN pixels: found when the image is read.
    let mut bytes = std::fs::read(d.join("toy.mrcs")).unwrap();
    let o = 1024 + 4 * (900 * 3 + 5);
    bytes[o..o + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    bytes[o + 4..o + 8].copy_from_slice(&f32::INFINITY.to_le_bytes());
    std::fs::write(d.join("toy.mrcs"), &bytes).unwrap();
    let p = write(d, "ok.star", &format!("{head}000004@toy.mrcs 10000 1\n"));
    let s = ParticleSet::load(&p, &no).unwrap();
    let mut img = vec![0.0f32; 900];
    let e = s.read_image(0, &mut img).unwrap_err().to_string();
    assert!(e.contains("toy.mrcs") && e.contains("image 3") && e.contains("2 NaN or infinite"), "{e}");
    // The pipelines' image cache (train::images) refuses it as well.
    let mut cached = cryosplat_train::images::Images::new(&s, 30);
    let e = cached.fill_cache(&cryosplat_train::progress::NoProgress).unwrap_err().to_string();
    assert!(e.contains("2 NaN or infinite"), "{e}");
}

#[test]
fn pixel_size_conflicts_and_overrides() {
    let dir = toy_dir();
    let d = dir.path();
    // 3.1: 2 Å in the metadata, 1 Å in the header, origins in Å.
    let text = "data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 2.0\ndata_particles\nloop_\n_rlnImageName\n_rlnOriginXAngst\n_rlnOriginYAngst\n_rlnOpticsGroup\n1@toy.mrcs 3.0 -1.0 1\n";
    let p = write(d, "a.star", text);
    let s = ParticleSet::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(s.apix, 2.0);
    assert!(has_warning(&s, "the MRC header says 1 Å/px; the metadata's 2 Å/px is used"), "{:?}", s.warnings);
    assert_eq!(s.particles[0].pose.origin_a, [3.0, -1.0]);
    // An override wins; shifts keep their pixels (1.5 px, -0.5 px): origins become 4.5, -1.5 Å.
    let o = ParticleSet::load(&p, &LoadOptions { apix: Some(3.0), ..Default::default() }).unwrap();
    assert_eq!(o.apix, 3.0);
    assert_eq!(o.particles[0].pose.origin_a, [4.5, -1.5]);
    assert!(has_warning(&o, "overrides the metadata's 2 Å (shifts keep their value in pixels"), "{:?}", o.warnings);
    // 3.0 pixel origins with an override: pixels times the override.
    let p = write(
        d,
        "b.star",
        "data_\nloop_\n_rlnImageName\n_rlnOriginX\n_rlnOriginY\n_rlnMagnification\n_rlnDetectorPixelSize\n1@toy.mrcs 2 -4 10000 5\n",
    );
    let s = ParticleSet::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!((s.apix, s.particles[0].pose.origin_a), (5.0, [10.0, -20.0]));
    let s = ParticleSet::load(&p, &LoadOptions { apix: Some(1.5), ..Default::default() }).unwrap();
    assert_eq!((s.apix, s.particles[0].pose.origin_a), (1.5, [3.0, -6.0]));
    // 3.0 rows that disagree on the pixel size.
    let p = write(
        d,
        "c.star",
        "data_\nloop_\n_rlnImageName\n_rlnMagnification\n_rlnDetectorPixelSize\n1@toy.mrcs 10000 5\n2@toy.mrcs 20000 5\n",
    );
    let e = err(&p, &LoadOptions::default());
    assert!(e.contains("different pixel sizes (2.5000 to 5.0000 Å"), "{e}");
    // Metadata-only loads need no stack and may not know the box.
    let p = write(d, "m.star", "data_\nloop_\n_rlnImageName\n_rlnDefocusU\n1@nothere.mrcs 1e4\n");
    let s = ParticleSet::load_metadata(&p, &LoadOptions::default()).unwrap();
    assert_eq!((s.len(), s.box_px, s.apix), (1, 0, 0.0));
    assert!(has_warning(&s, "rlnVoltage is missing; RELION's default 200 kV is used"));
    assert!(has_warning(&s, "rlnDefocusV is missing"));
    assert_eq!(s.particles[0].ctf.defocus_v_a, 1e4);
}

#[test]
fn bad_pickles_and_cs_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stack = data("cryodrgn-toy/toy_projections.mrcs");
    // A CTF pickle given as poses, and a pose pickle given as CTF.
    let e = err(&stack, &LoadOptions { poses: Some(data("cryodrgn/sta_ctf.pkl")), ..Default::default() });
    assert!(e.contains("sta_ctf.pkl") && e.contains("expected (N, 3, 3)"), "{e}");
    let e = err(&stack, &LoadOptions { ctf: Some(data("cryodrgn-toy/toy_angles.pkl")), ..Default::default() });
    assert!(e.contains("toy_angles.pkl") && e.contains("(N, 9)"), "{e}");
    let e = err(&stack, &LoadOptions { poses: Some(data("cryodrgn/sta_pose.pkl")), ..Default::default() });
    assert!(e.contains("219 poses for 1000 particles"), "{e}");
    // A compressed CSDAT file.
    let p = d.join("new.cs");
    std::fs::write(&p, b"\x95CSDAT\x10\x00\x00\x00").unwrap();
    let e = err(&p, &LoadOptions::default());
    assert!(e.contains("new.cs") && e.contains("CSDAT") && e.contains("export the job"), "{e}");
    // A .cs without blob/path.
    let p = d.join("nopath.cs");
    std::fs::write(&p, npy("[('blob/idx', '<u4')]", 1, &0u32.to_le_bytes())).unwrap();
    let e = err(&p, &LoadOptions::default());
    assert!(e.contains("nopath.cs") && e.contains("blob/path is missing"), "{e}");
    // Mixed blob/sign.
    let mut rec = Vec::new();
    for (i, sign) in [(0u32, 1.0f32), (1, -1.0)] {
        rec.extend(b"toy.mrcs\0\0");
        rec.extend(i.to_le_bytes());
        rec.extend(sign.to_le_bytes());
    }
    std::fs::copy(&stack, d.join("toy.mrcs")).unwrap();
    let p = d.join("sign.cs");
    std::fs::write(&p, npy("[('blob/path', '|S10'), ('blob/idx', '<u4'), ('blob/sign', '<f4')]", 2, &rec)).unwrap();
    let e = err(&p, &LoadOptions::default());
    assert!(e.contains("sign.cs") && e.contains("-1 for 1 of 2 particles"), "{e}");
}

#[test]
fn cryosparc_shifts_at_a_different_alignment_pixel_size() {
    let dir = toy_dir();
    let p = one_particle_cs(dir.path());
    let s = ParticleSet::load(&p, &LoadOptions::default()).unwrap();
    assert_eq!((s.len(), s.box_px, s.apix), (1, 30, 1.0));
    assert_eq!(s.particles[0].index, 7);
    assert_eq!(s.particles[0].random_subset, Some(2));
    assert_eq!(s.particles[0].pose.origin_a, [6.0, -2.0]);
    let r = s.particles[0].pose.rot;
    assert!(close(&r, &[[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], 1e-7), "{r:?}");
    assert!(!s.has_ctf && has_warning(&s, "no CTF parameters"));
    assert!(s.stacks[0].ends_with("toy.mrcs"));
}

/// `one.cs` in `dir` (beside the toy stack): one particle, images at 1 Å/px aligned at 2 Å/px
/// (binned refinement), shift (3, -1) px of the alignment, pose = 90° about z, half set 2. Its
/// origin is (6, -2) Å and `A = Rz(90°)ᵀ`.
fn one_particle_cs(dir: &Path) -> PathBuf {
    let mut rec = Vec::new();
    rec.extend(b">toy.mrcs\0");
    rec.extend(7u32.to_le_bytes());
    rec.extend(1.0f32.to_le_bytes());
    rec.extend([0.0f32, 0.0, std::f32::consts::FRAC_PI_2].iter().flat_map(|v| v.to_le_bytes()));
    rec.extend([3.0f32, -1.0].iter().flat_map(|v| v.to_le_bytes()));
    rec.extend(2.0f32.to_le_bytes());
    rec.extend(1u32.to_le_bytes());
    let p = dir.join("one.cs");
    let descr = "[('blob/path', '|S10'), ('blob/idx', '<u4'), ('blob/psize_A', '<f4'), ('alignments3D/pose', '<f4', (3,)), ('alignments3D/shift', '<f4', (2,)), ('alignments3D/psize_A', '<f4'), ('alignments3D/split', '<u4')]";
    std::fs::write(&p, npy(descr, 1, &rec)).unwrap();
    p
}

/// A version-1 `.npy` file of `n` records of the structured type `descr`: magic, version,
/// header length, then the header dictionary padded with spaces and a newline so that the
/// data start at a multiple of 64 bytes.
fn npy(descr: &str, n: usize, data: &[u8]) -> Vec<u8> {
    let dict = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': ({n},), }}");
    let header_len = (10 + dict.len() + 1).next_multiple_of(64) - 10;
    let header = format!("{dict:<width$}\n", width = header_len - 1);
    [&b"\x93NUMPY\x01\x00"[..], &(header_len as u16).to_le_bytes(), header.as_bytes(), data].concat()
}

#[test]
fn meaningless_angles_are_refused_and_overfocus_is_told() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(data("cryodrgn-toy/toy_projections.mrcs"), dir.path().join("toy.mrcs")).unwrap();
    let star = |rows: &str| {
        let p = dir.path().join("p.star");
        std::fs::write(
            &p,
            format!(
                "data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\n1 1.0 300 2.7 0.1\n\
                 data_particles\nloop_\n_rlnImageName\n_rlnOpticsGroup\n_rlnAngleRot\n_rlnAngleTilt\n_rlnAnglePsi\n_rlnDefocusU\n_rlnDefocusV\n_rlnDefocusAngle\n{rows}"
            ),
        )
        .unwrap();
        p
    };
    let ok = ParticleSet::load(&star("000001@toy.mrcs 1 10 20 30 15000 14000 5\n"), &LoadOptions::default()).unwrap();
    assert!(!has_warning(&ok, "defocus of 0 or less"));
    let e = ParticleSet::load(
        &star("000001@toy.mrcs 1 10 20 30 15000 14000 5\n000002@toy.mrcs 1 1e30 20 30 15000 14000 5\n"),
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("p.star") && e.contains("line 20") && e.contains("rlnAngleRot is 1000000000000000000000000000000"), "{e}");
    let neg =
        ParticleSet::load(&star("000001@toy.mrcs 1 10 20 30 -500 -400 5\n000002@toy.mrcs 1 10 20 30 0 100 5\n"), &LoadOptions::default())
            .unwrap();
    assert!(has_warning(&neg, "2 particle(s) have a defocus of 0 or less"), "{:?}", neg.warnings);
}

#[test]
fn write_star_updated_keeps_every_other_column_and_block() {
    use cryosplat_core::pose::mat_mul;
    use cryosplat_core::rotation::euler_to_matrix;
    let dir = tempfile::tempdir().unwrap();
    for (src, origin_label, origin_per_a) in
        [("aspire/sample_particles_relion31.star", "rlnOriginXAngst", 1.0), ("aspire/sample_particles_relion30.star", "rlnOriginX", 0.0)]
    {
        let s = load(src);
        let per_a = if origin_per_a == 0.0 { 1.0 / s.apix } else { origin_per_a };
        // A subset in another order, with changed angles, origins and defoci.
        let mut changed: Vec<_> = [5usize, 2, 11].iter().map(|&i| s.particles[i].clone()).collect();
        for (k, p) in changed.iter_mut().enumerate() {
            p.pose.rot = mat_mul(&euler_to_matrix(1.0 + k as f64, 2.0, -0.5), &p.pose.rot);
            p.pose.origin_a = [p.pose.origin_a[0] + 0.75, p.pose.origin_a[1] - 1.25 * k as f64];
            p.ctf.defocus_u_a += 120.0;
            p.ctf.defocus_v_a += 120.0;
        }
        let out = dir.path().join(format!("refined-{}.star", s.kind as u8));
        s.write_star_updated(&out, &changed).unwrap();
        let r = ParticleSet::load(&out, &LoadOptions::default()).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!((r.kind, r.len(), r.box_px), (s.kind, 3, s.box_px), "{src}");
        assert!((r.apix - s.apix).abs() < 1e-9, "{src}");
        for (a, b) in r.particles.iter().zip(&changed) {
            assert!(close(&a.pose.rot, &b.pose.rot, 1e-5), "{src}");
            for k in 0..2 {
                assert!((a.pose.origin_a[k] - b.pose.origin_a[k]).abs() < 1e-5, "{src}: {:?} {:?}", a.pose.origin_a, b.pose.origin_a);
            }
            assert!((a.ctf.defocus_u_a - b.ctf.defocus_u_a).abs() < 1e-5 && (a.ctf.defocus_v_a - b.ctf.defocus_v_a).abs() < 1e-5);
            assert_eq!((a.ctf.voltage_kv, a.ctf.cs_mm, a.ctf.defocus_angle_deg), (b.ctf.voltage_kv, b.ctf.cs_mm, b.ctf.defocus_angle_deg));
            assert_eq!(r.stacks[a.stack].canonicalize().unwrap(), s.stacks[b.stack].canonicalize().unwrap());
            assert_eq!(a.index, b.index, "{src}");
        }
        // The other columns of each row are those of its source row; other blocks are kept.
        let (orig, new) = (cryosplat_formats::star::read(&data(src)).unwrap(), cryosplat_formats::star::read(&out).unwrap());
        let (_, ot) = orig.table_with("rlnImageName").unwrap();
        let (_, nt) = new.table_with("rlnImageName").unwrap();
        assert_eq!(nt.labels, ot.labels, "{src}: no column added or lost");
        let replaced = [
            "rlnImageName",
            "rlnAngleRot",
            "rlnAngleTilt",
            "rlnAnglePsi",
            origin_label,
            &origin_label.replace('X', "Y"),
            "rlnDefocusU",
            "rlnDefocusV",
        ];
        for (row, &i) in [5usize, 2, 11].iter().enumerate() {
            for (c, label) in ot.labels.iter().enumerate() {
                if !replaced.contains(&label.as_str()) {
                    assert_eq!(nt.rows[row][c], ot.rows[i][c], "{src}: {label} of row {i}");
                }
            }
            let oc = ot.column(origin_label).unwrap();
            let want = changed[row].pose.origin_a[0] * per_a;
            assert!((nt.rows[row][oc].parse::<f64>().unwrap() - want).abs() < 1e-5, "{src}: {} vs {want}", nt.rows[row][oc]);
        }
        assert_eq!(new.blocks.len(), orig.blocks.len(), "{src}");
        if let Some(o) = orig.block("optics") {
            let (n, o) = (&new.block("optics").unwrap().tables[0], &o.tables[0]);
            assert_eq!((&n.labels, &n.rows), (&o.labels, &o.rows), "{src}: the optics table is kept");
        }
    }
    // A bare stack has no columns to keep: written as write_star writes a set.
    let toy = toy_dir();
    let stack = toy.path().join("toy.mrcs");
    let s = ParticleSet::load(&stack, &LoadOptions::default()).unwrap();
    let out = dir.path().join("stack.star");
    s.write_star_updated(&out, &s.particles[..4]).unwrap();
    let r = ParticleSet::load(&out, &LoadOptions::default()).unwrap();
    assert_eq!((r.kind, r.len()), (SourceKind::Relion31, 4));
    // Particles without a source row cannot take a STAR file's columns.
    let mut orphan = load("aspire/sample_particles_relion31.star").particles[0].clone();
    orphan.source_row = None;
    let e =
        load("aspire/sample_particles_relion31.star").write_star_updated(&dir.path().join("x.star"), &[orphan]).unwrap_err().to_string();
    assert!(e.contains("has no row in"), "{e}");
    assert!(load("aspire/sample_particles_relion31.star").write_star_updated(&dir.path().join("y.star"), &[]).is_err());
}

/// Particles `idx` of `s` in that order, each turned by a few degrees about a different axis,
/// its origin moved and its defoci raised: what a refinement hands back.
fn perturbed(s: &ParticleSet, idx: &[usize]) -> Vec<cryosplat_train::dataset::Particle> {
    use cryosplat_core::rotation::rotate_by_rotvec;
    idx.iter()
        .enumerate()
        .map(|(j, &i)| {
            let mut p = s.particles[i].clone();
            let w = [0.03 * (j as f64 + 1.0), -0.02, 0.01 * j as f64];
            p.pose.rot = rotate_by_rotvec(w, &p.pose.rot);
            p.pose.origin_a = [p.pose.origin_a[0] + 1.5 - j as f64, p.pose.origin_a[1] - 2.25];
            p.ctf.defocus_u_a += 120.0 + 10.0 * j as f64;
            p.ctf.defocus_v_a -= 80.0;
            p
        })
        .collect()
}

/// The refined values written as a `.cs` read back as the particles that were written (to
/// float32 precision), in their order, with every other field of each record as read; with
/// an alignment pixel size other than the images' too.
#[test]
fn write_cs_updated_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    // A refinement's metadata (poses, shifts, CTF; the stacks are not here).
    let src = data("cryodrgn/cryosparc_P12_J24_001_particles.cs");
    let s = ParticleSet::load_metadata(&src, &LoadOptions::default()).unwrap();
    let changed = perturbed(&s, &[2018, 0, 977]);
    let out = dir.path().join("particles_refined.cs");
    s.write_cs_updated(&out, &changed).unwrap();
    let back = ParticleSet::load_metadata(&out, &LoadOptions::default()).unwrap();
    assert_eq!((back.len(), back.box_px, back.apix), (3, s.box_px, s.apix));
    for (b, c) in back.particles.iter().zip(&changed) {
        assert_eq!((b.index, b.random_subset), (c.index, c.random_subset));
        assert!(close(&b.pose.rot, &c.pose.rot, 2e-6), "{:?} {:?}", b.pose.rot, c.pose.rot);
        for k in 0..2 {
            assert!((b.pose.origin_a[k] - c.pose.origin_a[k]).abs() < 1e-5, "{:?} {:?}", b.pose.origin_a, c.pose.origin_a);
        }
        assert!((b.ctf.defocus_u_a - c.ctf.defocus_u_a).abs() < 5e-3 && (b.ctf.defocus_v_a - c.ctf.defocus_v_a).abs() < 5e-3);
        assert_eq!(b.ctf.defocus_angle_deg, c.ctf.defocus_angle_deg);
    }
    let (a, w) = (cryosplat_formats::cs::CsFile::read(&src).unwrap(), cryosplat_formats::cs::CsFile::read(&out).unwrap());
    assert_eq!(a.field_names(), w.field_names());
    assert_eq!(w.index_column("uid").unwrap(), [2018, 0, 977].map(|r| a.index_column("uid").unwrap()[r]));
    let e = load("aspire/sample_particles_relion31.star").write_cs_updated(&dir.path().join("x.cs"), &changed).unwrap_err().to_string();
    assert!(e.contains("x.cs") && e.contains("only a set read from a .cs file"), "{e}");

    // Shifts in pixels of a 2 Å/px alignment of 1 Å/px images (the file of the test above).
    let d = toy_dir();
    let p = one_particle_cs(d.path());
    let s = ParticleSet::load(&p, &LoadOptions::default()).unwrap();
    let mut moved = s.particles.clone();
    moved[0].pose.origin_a = [5.0, 1.0];
    let out = d.path().join("refined.cs");
    s.write_cs_updated(&out, &moved).unwrap();
    let w = cryosplat_formats::cs::CsFile::read(&out).unwrap();
    assert_eq!(w.vec_column_opt::<2>("alignments3D/shift").unwrap().unwrap()[0], [2.5, 0.5]);
    assert_eq!(ParticleSet::load(&out, &LoadOptions::default()).unwrap().particles[0].pose.origin_a, [5.0, 1.0]);
    // A particle with no record in the file cannot be written with its fields.
    let mut orphan = s.particles.clone();
    orphan[0].source_row = None;
    let e = s.write_cs_updated(&d.path().join("orphan.cs"), &orphan).unwrap_err().to_string();
    assert!(e.contains("orphan.cs") && e.contains("particle 0 (0-based) has no record in") && e.contains("one.cs"), "{e}");
    // Translations need the box, which only the stack tells here.
    let meta = ParticleSet::load_metadata(&p, &LoadOptions::default()).unwrap();
    assert_eq!(meta.box_px, 0);
    let e = meta.write_pose_pickle(&d.path().join("poses.pkl"), &meta.particles).unwrap_err().to_string();
    assert!(e.contains("poses.pkl") && e.contains("box and pixel size are not known"), "{e}");
}

/// Refined poses and defoci written as cryoDRGN pickles read back with the same stack as the
/// particles written, in their order; the CTF rows keep the input pickle's other values (its
/// D of 512 px and 1.82 Å/px, for 64 px images).
#[test]
fn write_pickles_round_trip() {
    let opts = LoadOptions { poses: Some(data("cryodrgn/sta_pose.pkl")), ctf: Some(data("cryodrgn/sta_ctf.pkl")), ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let stack = subtilt_stack_219(dir.path());
    let s = ParticleSet::load(&stack, &opts).unwrap();
    assert_eq!(s.pose_pickle.as_deref(), Some(data("cryodrgn/sta_pose.pkl").as_path()));
    let idx: Vec<usize> = (0..219).rev().collect();
    let changed = perturbed(&s, &idx);
    let (poses, ctf) = (dir.path().join("poses_refined.pkl"), dir.path().join("ctf_refined.pkl"));
    s.write_pose_pickle(&poses, &changed).unwrap();
    s.write_ctf_pickle(&ctf, &changed).unwrap();
    let rows = cryosplat_formats::pickle::read_ctf(&ctf).unwrap();
    let src_rows = cryosplat_formats::pickle::read_ctf(&data("cryodrgn/sta_ctf.pkl")).unwrap();
    assert_eq!((rows[0][0], rows[0][1], rows[0][4]), (src_rows[218][0], src_rows[218][1], src_rows[218][4]));
    // A stack in the same order as the rows: the images reversed.
    let f = MrcFile::open(&stack).unwrap();
    let mut all = vec![0.0f32; 219 * 64 * 64];
    for (j, chunk) in all.chunks_exact_mut(64 * 64).enumerate() {
        f.read_image(idx[j], chunk).unwrap();
    }
    let rev = dir.path().join("rev.mrcs");
    write_stack(&rev, &all, 64, 64, 219, 1.0, &WriteOptions::default()).unwrap();
    let back = ParticleSet::load(&rev, &LoadOptions { poses: Some(poses), ctf: Some(ctf), ..Default::default() }).unwrap();
    assert_eq!((back.box_px, back.apix), (s.box_px, s.apix));
    for (b, c) in back.particles.iter().zip(&changed) {
        assert!(close(&b.pose.rot, &c.pose.rot, 1e-12));
        for k in 0..2 {
            assert!((b.pose.origin_a[k] - c.pose.origin_a[k]).abs() < 1e-9, "{:?} {:?}", b.pose.origin_a, c.pose.origin_a);
        }
        assert_eq!(b.ctf, c.ctf);
    }
    // A particle beyond the input pickle's rows cannot take its row.
    let mut stray = changed[..1].to_vec();
    stray[0].position = 219;
    let e = s.write_ctf_pickle(&dir.path().join("stray.pkl"), &stray).unwrap_err().to_string();
    assert!(e.contains("stray.pkl") && e.contains("particle 0 (0-based) has no row in the CTF pickle"), "{e}");
    // Without a CTF pickle the rows are made from the set.
    let star = load("aspire/sample_particles_relion31.star");
    let p = dir.path().join("ctf_made.pkl");
    star.write_ctf_pickle(&p, &star.particles[..2]).unwrap();
    let r = cryosplat_formats::pickle::read_ctf(&p).unwrap();
    let c = &star.particles[1].ctf;
    assert_eq!(
        r[1],
        [
            star.box_px as f64,
            star.apix,
            c.defocus_u_a,
            c.defocus_v_a,
            c.defocus_angle_deg,
            c.voltage_kv,
            c.cs_mm,
            c.amp_contrast,
            c.phase_shift_deg
        ]
    );
}

/// `run.json`'s record of the halves: the same for the same split (whatever the seed where the
/// file's half sets decide, and wherever the data live), different for another split, for the
/// halves swapped, or for another selection of particles.
#[test]
fn the_half_split_record_tells_splits_apart() {
    let s = load("cryodrgn/sta_testing_bin8.optics31.DERIVED.star");
    assert!(!s.has_random_subsets());
    let record = |set: &ParticleSet, seed| {
        let (a, b) = set.half_split(seed);
        set.half_split_record([&a, &b])
    };
    let r0 = record(&s, 0);
    assert_eq!(r0.particles, [109, 110]);
    assert_eq!(r0, record(&s, 0));
    assert_ne!(r0, record(&s, 1), "another seed, another split");
    let (a, b) = s.half_split(0);
    let swapped = s.half_split_record([&b, &a]);
    assert_eq!((swapped.particles, &swapped.images), ([110, 109], &[r0.images[1].clone(), r0.images[0].clone()]));
    assert_ne!(r0.images[0], r0.images[1]);
    // Fewer particles: another record.
    let mut fewer = load("cryodrgn/sta_testing_bin8.optics31.DERIVED.star");
    fewer.retain_first(200).unwrap();
    assert_ne!(record(&fewer, 0).images, r0.images);
    // A file with half sets: the seed does not matter.
    let t = load("cryodrgn/sta_testing_bin8.star");
    assert!(t.has_random_subsets());
    assert_eq!(record(&t, 0), record(&t, 7));
}
