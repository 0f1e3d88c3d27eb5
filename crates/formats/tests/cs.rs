//! numpy `.npy` and cryoSPARC `.cs` reading: the three real `.cs` files in tests/data, numpy
//! files written by numpy itself (embedded below), and malformed or hostile headers.
//!
//! Expected numbers come from numpy 2.4 (`np.load`) and, for poses, scipy 1.17
//! (`Rotation.from_rotvec(pose).as_matrix().T`), run independently of this crate.

mod common;

use common::{data, expect_err, hex};
use cryosplat_formats::cs::{is_csdat, CsFile};
use cryosplat_formats::npy::{self, Scalar};
use std::path::Path;

/// Rodrigues' formula, transposed: RELION's `A` from a cryoSPARC rotation vector (written
/// here independently of the core crate).
fn a_from_rotvec(v: [f64; 3]) -> [[f64; 3]; 3] {
    let t = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    let k = [v[0] / t, v[1] / t, v[2] / t];
    let (s, c) = t.sin_cos();
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let kk = [[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]];
            let k2: f64 = (0..3).map(|m| kk[i][m] * kk[m][j]).sum();
            r[j][i] = if i == j { 1.0 } else { 0.0 } + s * kk[i][j] + (1.0 - c) * k2;
        }
    }
    r
}

#[test]
fn empiar_10076_particles() {
    let cs = CsFile::read(&data("cryodrgn/empiar_10076_7.cs")).unwrap();
    assert_eq!((cs.len(), cs.field_names().len(), cs.array.record_size), (7, 24, 208));
    assert_eq!(cs.blob_paths().unwrap(), vec!["empiar_10076_7.mrc"; 7]);
    assert_eq!(cs.index_column("blob/idx").unwrap(), (0..7).collect::<Vec<u64>>());
    assert_eq!(cs.index_column("uid").unwrap()[6], 15794596182751007962);
    assert_eq!(cs.vec_column_opt::<2>("blob/shape").unwrap().unwrap()[0], [320.0, 320.0]);
    assert_eq!(cs.f64_column_opt("blob/psize_A").unwrap().unwrap()[0], 1.3099979162216187);
    assert_eq!(cs.f64_column_opt("blob/sign").unwrap().unwrap(), vec![-1.0; 7]);
    let df1 = cs.f64_column_opt("ctf/df1_A").unwrap().unwrap();
    assert_eq!(df1[0], 15301.099609375);
    assert_eq!(df1.iter().sum::<f64>(), 106785.900390625);
    assert_eq!(cs.f64_column_opt("ctf/df_angle_rad").unwrap().unwrap()[0], 0.0921533852815628);
    assert_eq!(cs.f64_column_opt("ctf/cs_mm").unwrap().unwrap()[0], 2.700000047683716);
    assert_eq!(cs.vec_column_opt::<4>("ctf/tetra_A").unwrap().unwrap()[3], [0.0; 4]);
    assert!(!cs.has("alignments3D/pose"));
    assert_eq!(cs.vec_column_opt::<3>("alignments3D/pose").unwrap(), None);
    assert_eq!(cs.array.text(cs.array.field("ctf/type").unwrap(), 0).unwrap(), "imported");
}

#[test]
fn refinement_poses_match_scipy() {
    let cs = CsFile::read(&data("cryodrgn/cryosparc_P12_J24_001_particles.cs")).unwrap();
    assert_eq!((cs.len(), cs.field_names().len(), cs.array.record_size), (2019, 34, 246));
    let pose = cs.vec_column_opt::<3>("alignments3D/pose").unwrap().unwrap();
    assert_eq!(pose[0], [2.338663339614868, -0.25595566630363464, -1.2236783504486084]);
    assert!((pose.iter().flatten().sum::<f64>() - 50.00952698662877).abs() < 1e-9);
    let shift = cs.vec_column_opt::<2>("alignments3D/shift").unwrap().unwrap();
    assert_eq!(shift[0], [11.334375381469727, -1.828125]);
    assert_eq!(shift[2018], [-3.628124952316284, 8.296875]);
    let split = cs.index_column("alignments3D/split").unwrap();
    assert_eq!(split.iter().filter(|&&s| s == 0).count(), 1010);
    assert_eq!(cs.index_column("blob/idx").unwrap().iter().sum::<u64>(), 61991);
    let df1 = cs.f64_column_opt("ctf/df1_A").unwrap().unwrap();
    assert!((df1.iter().sum::<f64>() - 49556653.28515625).abs() < 1e-6);
    let paths = cs.blob_paths().unwrap();
    assert_eq!(paths[2018], "J19/extract/20150917_05265_DNA-TET-25k-DE20_raw.region_000.sum-all_003-072_particles.mrc");
    // scipy: Rotation.from_rotvec(pose[0]).as_matrix().T and the same for the last record.
    let want0 = [
        [0.5816298557386015, -0.37730439582642494, -0.7206581046540378],
        [0.05683143902304974, -0.8649114776924016, 0.49869662450683977],
        [-0.8114658948175598, -0.3310128829003533, -0.4816155862323541],
    ];
    let want_last = [
        [-0.827983282335397, 0.46190748626060785, 0.3179389222940605],
        [0.03979423283867947, 0.6139573339985718, -0.7883354686059401],
        [-0.5593389877398885, -0.640076453375511, -0.5267276626762107],
    ];
    for (got, want) in [(a_from_rotvec(pose[0]), want0), (a_from_rotvec(pose[2018]), want_last)] {
        for i in 0..3 {
            for j in 0..3 {
                assert!((got[i][j] - want[i][j]).abs() < 1e-12, "{got:?}");
            }
        }
    }
    // A 3-vector is not a 2-vector.
    expect_err(cs.vec_column_opt::<2>("alignments3D/pose"), &["alignments3D/pose", "3 numbers per record, expected 2"]);
    expect_err(cs.f64_column_opt("blob/path"), &["blob/path holds text"]);
}

#[test]
fn exported_paths_lose_their_marker() {
    let cs = CsFile::read(&data("cryodrgn/cryosparc_J2_particles_exported.cs")).unwrap();
    assert_eq!((cs.len(), cs.field_names().len(), cs.array.record_size), (22, 42, 282));
    let p = cs.blob_paths().unwrap();
    assert_eq!(p[21], "J1/imported/000090334788266266069_18jam15b_0345_ali_DW.mrcs");
    assert!(p.iter().all(|s| !s.starts_with('>')));
    let raw = cs.array.bytes(cs.array.field("blob/path").unwrap(), 0).unwrap();
    assert!(raw.starts_with(b">J1/"));
    assert_eq!(cs.f64_column_opt("alignments2D/pose").unwrap().unwrap().len(), 22);
    assert_eq!(cs.f64_column_opt("blob/psize_A").unwrap().unwrap()[0], 1.345000147819519);
    assert_eq!(cs.index_column("blob/idx").unwrap().iter().sum::<u64>(), 231);
}

/// `np.save` of a 2-record array with every supported kind of field (numpy 2.4.6):
/// `[('uid','<u8'), ('blob/path','|S10'), ('blob/idx','<u4'), ('alignments3D/pose','>f4',(3,)),
/// ('flag','|b1'), ('v','<i8'), ('m','<f8',(2,2)), ('b','|u1'), ('x','>i4'), ('u','>u8'), ('h','<f2')]`.
const NUMPY_RECORDS: &str = "934e554d5059010036017b276465736372273a205b2827756964272c20273c753827292c202827626c6f622f70617468272c20277c53313027292c202827626c6f622f696478272c20273c753427292c202827616c69676e6d656e747333442f706f7365272c20273e6634272c2028332c29292c202827666c6167272c20277c623127292c20282776272c20273c693827292c2028276d272c20273c6638272c2028322c203229292c20282762272c20277c753127292c20282778272c20273e693427292c20282775272c20273e753827292c20282768272c20273c663227295d2c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200affffffffffffffff3e4a312f612e6d726373000000003f000000bfa000004040000001fbffffffffffffff000000000000f03f000000000000004000000000000008400000000000001040fffffffffe00000000000000010038874b6b5d54dc2b00622e6d72630000000000290000003dcccccd3e4ccccd3e99999a000100000000002000000000000000144000000000000018400000000000001c40000000000000204007000186a0000001000000000380c0";

#[test]
fn numpy_written_records_of_every_type() {
    let bytes = hex(NUMPY_RECORDS);
    let cs = CsFile::parse(&bytes, Path::new("t.cs")).unwrap();
    let a = &cs.array;
    assert_eq!((a.len(), a.record_size, a.fields.len()), (2, 90, 11));
    assert_eq!(cs.index_column("uid").unwrap(), [18446744073709551615, 12345678901234567]);
    assert_eq!(cs.blob_paths().unwrap(), ["J1/a.mrcs", "b.mrc"]);
    assert_eq!(cs.index_column("blob/idx").unwrap(), [0, 41]);
    let pose = cs.vec_column_opt::<3>("alignments3D/pose").unwrap().unwrap();
    assert_eq!(pose[0], [0.5, -1.25, 3.0]);
    assert_eq!(pose[1], [0.1f32 as f64, 0.2f32 as f64, 0.3f32 as f64]);
    assert_eq!(cs.f64_column_opt("flag").unwrap().unwrap(), [1.0, 0.0]);
    let v = a.field("v").unwrap();
    assert_eq!((a.integer(v, 0, 0), a.integer(v, 1, 0)), (Some(-5), Some(9007199254740993)));
    let m = a.field("m").unwrap();
    assert_eq!((m.shape.clone(), m.count), (vec![2, 2], 4));
    assert_eq!(cs.vec_column_opt::<4>("m").unwrap().unwrap()[1], [5.0, 6.0, 7.0, 8.0]);
    assert_eq!(cs.f64_column_opt("b").unwrap().unwrap(), [255.0, 7.0]);
    assert_eq!(cs.f64_column_opt("x").unwrap().unwrap(), [-2.0, 100000.0]);
    assert_eq!(cs.index_column("u").unwrap(), [1, (1u64 << 40) + 3]);
    assert_eq!(cs.f64_column_opt("h").unwrap().unwrap(), [0.5, -2.25]);
    assert_eq!(a.field("blob/path").unwrap().scalar, Scalar::Bytes(10));
    expect_err(cs.index_column("x"), &["t.cs", "record 0: x is -2"]);
    expect_err(cs.index_column("alignments3D/pose"), &["3 values per record"]);
    // The same file re-framed as format versions 2 and 3 (4-byte header length).
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as u32;
    for v in [2u8, 3] {
        let mut b = b"\x93NUMPY".to_vec();
        b.extend([v, 0]);
        b.extend(hlen.to_le_bytes());
        b.extend(&bytes[10..]);
        let c = CsFile::parse(&b, Path::new("v.cs")).unwrap();
        assert_eq!(c.index_column("uid").unwrap(), cs.index_column("uid").unwrap());
        assert_eq!(c.array.data(), a.data());
    }
}

#[test]
fn header_text_encodings() {
    // Version 1 stores names in Latin-1 ('ü/x'), version 3 in UTF-8 ('λ/x'); numpy 2.4.6.
    let v1 = hex("934e554d5059010076007b276465736372273a205b2827fc2f78272c20273c663427295d2c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a0000c03f00002040");
    let a = npy::parse(&v1, Path::new("l.npy")).unwrap();
    assert_eq!(a.fields[0].name, "ü/x");
    assert_eq!(a.column_f64("ü/x").unwrap(), [1.5, 2.5]);
    let v3 = hex("934e554d50590300740000007b276465736372273a205b2827cebb2f78272c20273c663427295d2c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028322c292c207d202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020200a0000c03f00002040");
    let a = npy::parse(&v3, Path::new("u.npy")).unwrap();
    assert_eq!(a.column_f64("λ/x").unwrap(), [1.5, 2.5]);
}

/// A version-1 file with this header text and data.
fn npy_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

fn cs_err(bytes: &[u8]) -> String {
    CsFile::parse(bytes, Path::new("bad.cs")).unwrap_err().to_string()
}

#[test]
fn compressed_csdat_is_refused_with_conversion_advice() {
    let mut b = b"\x95CSDAT".to_vec();
    b.extend([0u8; 32]);
    assert!(is_csdat(&b));
    let e = cs_err(&b);
    assert!(e.contains("bad.cs") && e.contains("CSDAT") && e.contains("export the job") && e.contains("format=1"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("new.cs");
    std::fs::write(&p, &b).unwrap();
    assert!(CsFile::read(&p).unwrap_err().to_string().contains("cryosparc-tools"));
}

#[test]
fn malformed_headers_are_errors_without_allocation() {
    let rec = "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (%N,), }\n";
    let ok = npy_file(&rec.replace("%N", "2"), &[0u8; 16]);
    assert_eq!(CsFile::parse(&ok, Path::new("ok.cs")).unwrap().len(), 2);
    // Claims beyond the data: one more record than present, and an absurd count.
    let e = cs_err(&npy_file(&rec.replace("%N", "3"), &[0u8; 16]));
    assert!(e.contains("bad.cs") && e.contains("claims 3 records of 8 bytes (24 bytes)") && e.contains("16 bytes"), "{e}");
    let e = cs_err(&npy_file(&rec.replace("%N", "2305843009213693951"), &[0u8; 16]));
    assert!(e.contains("claims"), "{e}");
    let e = cs_err(&npy_file(&rec.replace("%N", "99999999999999999999999"), &[0u8; 16]));
    assert!(e.contains("shape"), "{e}");
    let e = cs_err(&npy_file("{'descr': [('a', '<f8', (4611686018427387904, 8))], 'fortran_order': False, 'shape': (1,), }", &[]));
    assert!(e.contains("too large"), "{e}");
    // Header length past the end.
    let mut b = ok.clone();
    b[8] = 0xff;
    b[9] = 0xff;
    let e = cs_err(&b);
    assert!(e.contains("header length 65535 runs past the end"), "{e}");
    // Unsupported things, each named.
    let cases: [(&str, &str); 9] = [
        ("{'descr': [('blob/path', '|O')], 'fortran_order': False, 'shape': (1,), }", "\"blob/path\" has type \"|O\""),
        ("{'descr': [('a', [('b', '<f4')])], 'fortran_order': False, 'shape': (1,), }", "nested record"),
        ("{'descr': [('a', '<c8')], 'fortran_order': False, 'shape': (1,), }", "\"<c8\""),
        ("{'descr': [('a', '<f4'), ('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", "appears twice"),
        ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 2), }", "1-D record array"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", "no named fields"),
        ("{'descr': [('a', '<f4')], 'fortran_order': Maybe, 'shape': (1,), }", "fortran_order"),
        ("{'descr': [('a', '<f4')], 'fortran_order': False, }", "no 'shape'"),
        ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), 'extra': 1}", "unexpected key"),
    ];
    for (h, what) in cases {
        let e = cs_err(&npy_file(h, &[0u8; 64]));
        assert!(e.contains("bad.cs") && e.contains(what), "{h}: {e}");
    }
    // Found by fuzzing: a type whose kind letter is not ASCII (Latin-1 'ÿ').
    let mut b = npy_file("{'descr': [('a', '<_f4')], 'fortran_order': False, 'shape': (1,), }", &[0u8; 4]);
    let at = b.iter().position(|&c| c == b'_').unwrap();
    b[at] = 0xff;
    let e = cs_err(&b);
    assert!(e.contains("field \"a\" has type \"<ÿf4\"") && e.contains("not supported"), "{e}");
    // Found by fuzzing: an empty sub-array of strings, ('p', '|S1', 0).
    let b = npy_file("{'descr': [('p', '|S1', 0), ('i', '<u4')], 'fortran_order': False, 'shape': (2,), }", &[7u8; 8]);
    let cs = CsFile::parse(&b, Path::new("z.cs")).unwrap();
    let f = cs.array.field("p").unwrap();
    assert_eq!((f.count, cs.array.text(f, 1), cs.array.bytes(f, 1)), (0, None, None));
    assert!(cs.blob_paths().is_err() && cs.array.column_text("p").is_err());
    assert_eq!(cs.index_column("i").unwrap(), [0x07070707, 0x07070707]);
    let e = cs_err(b"\x93NUMPY\x04\x00\x10\x00{}");
    assert!(e.contains("version 4"), "{e}");
    let e = cs_err(b"PK\x03\x04 a zip file, not npy");
    assert!(e.contains("magic"), "{e}");
    let e = cs_err(b"\x93NUMPY\x02\x00\x10");
    assert!(e.contains("truncated") || e.contains("magic"), "{e}");
    let e = cs_err(&npy_file("{'descr': [('a', '|S0')], 'fortran_order': False, 'shape': (1000000000000,), }", &[]));
    assert!(e.contains("0 bytes"), "{e}");
    expect_err(CsFile::read(Path::new("/nonexistent/p.cs")), &["/nonexistent/p.cs"]);
}

/// A copy of chosen records keeps every byte of every field except the floats that were set,
/// in the order asked for; the header is padded to 64 bytes and reads back with the same
/// fields.
#[test]
fn written_records_keep_every_other_field() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["cryodrgn/empiar_10076_7.cs", "cryodrgn/cryosparc_P12_J24_001_particles.cs", "cryodrgn/cryosparc_J2_particles_exported.cs"]
    {
        let src = CsFile::read(&data(name)).unwrap();
        let n = src.len();
        let rows: Vec<usize> = (0..n).rev().step_by(2).collect();
        let mut cs = src.clone();
        let float_field = ["ctf/df1_A", "alignments3D/shift", "blob/psize_A"].into_iter().find(|f| cs.has(f)).unwrap();
        cs.set_float(float_field, rows[0], 0, 12345.5).unwrap();
        let e = cs.set_float("blob/idx", 0, 0, 1.0).unwrap_err().to_string();
        assert!(e.contains("blob/idx") && e.contains("not floating-point"), "{e}");
        assert!(cs.set_float("no/such", 0, 0, 1.0).unwrap_err().to_string().contains("no/such"));
        let out = dir.path().join("out.cs");
        cs.write_records(&rows, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let header_len = bytes.len() - rows.len() * src.array.record_size;
        assert_eq!(header_len % 64, 0, "{name}: header of {header_len} bytes");
        let back = CsFile::read(&out).unwrap();
        assert_eq!(back.array.fields, src.array.fields, "{name}");
        assert_eq!(back.len(), rows.len());
        let size = src.array.record_size;
        for (j, &r) in rows.iter().enumerate() {
            let got = &back.array.data()[j * size..(j + 1) * size];
            let want = &src.array.data()[r * size..(r + 1) * size];
            let f = src.array.field(float_field).unwrap();
            let differ: Vec<usize> = (0..size).filter(|&b| got[b] != want[b]).collect();
            if j == 0 {
                assert!(differ.iter().all(|&b| b >= f.offset && b < f.offset + f.scalar.size()), "{name}: {differ:?}");
                assert_eq!(back.array.number(f, 0, 0).unwrap(), 12345.5);
            } else {
                assert!(differ.is_empty(), "{name}: record {j} differs at {differ:?}");
            }
        }
    }
}

/// Floats are written in the field's own precision and byte order.
#[test]
fn set_float_follows_the_field_type() {
    let header = "{'descr': [('h', '<f2'), ('b', '>f4'), ('d', '>f8')], 'fortran_order': False, 'shape': (1,), }\n";
    let mut cs = CsFile::parse(&npy_file(header, &[0u8; 14]), Path::new("t.cs")).unwrap();
    for (f, v) in [("h", 0.5), ("b", -3.25), ("d", 1.0 / 3.0)] {
        cs.set_float(f, 0, 0, v).unwrap();
    }
    let a = &cs.array;
    assert_eq!(&a.data()[..2], &0x3800u16.to_le_bytes());
    assert_eq!(&a.data()[2..6], &(-3.25f32).to_be_bytes());
    assert_eq!(a.number(a.field("d").unwrap(), 0, 0).unwrap(), 1.0 / 3.0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.cs");
    cs.write_records(&[0, 0], &out).unwrap();
    let back = CsFile::read(&out).unwrap();
    assert_eq!(back.array.data(), [a.data(), a.data()].concat().as_slice());
}
