//! The safe unpickler: the real cryoDRGN pickles in tests/data, pickles written by Python 3.11
//! and numpy 2.4.6 for every way numpy stores an array (embedded below as hex, each with the
//! Python expression that made it), and hostile or unsupported pickles.
//!
//! Expected numbers come from `pickle.load` in Python, run independently of this crate.

mod common;

use common::{data, expect_err, hex};
use cryosplat_formats::pickle::{self, Value};
use std::path::Path;

fn parse(h: &str) -> Result<Value, String> {
    pickle::parse(&hex(h), Path::new("t.pkl")).map_err(|e| e.to_string())
}

fn array(h: &str) -> pickle::Array {
    match parse(h).unwrap() {
        Value::Array(a) => (*a).clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cryodrgn_pose_pickle() {
    // Protocol 4, numpy.core._reconstruct, a tuple of two float64 arrays (the data README
    // calls them float32; numpy says float64).
    let (rot, trans) = pickle::read_poses(&data("cryodrgn/sta_pose.pkl")).unwrap();
    let trans = trans.unwrap();
    assert_eq!((rot.len(), trans.len()), (219, 219));
    assert_eq!(
        rot[0],
        [
            [0.9167403628691108, 0.3884453608168932, 0.0932593627816792],
            [0.07227834605776433, 0.06831468551480217, -0.9950421822386063],
            [-0.3928905035474454, 0.9189359637117526, 0.0345506413744724]
        ]
    );
    assert_eq!(rot[218][1], [-0.7040460298862079, 0.47826616844763015, 0.5249577696537999]);
    assert_eq!(trans[218], [0.0010126534902734712, 0.0013515095284649375]);
    assert!((rot.iter().flatten().flatten().sum::<f64>() - 280.7195254463176).abs() < 1e-10);
    assert!((trans.iter().flatten().sum::<f64>() - 0.08509405068982193).abs() < 1e-15);
    let Value::Tuple(t) = pickle::parse(&std::fs::read(data("cryodrgn/sta_pose.pkl")).unwrap(), Path::new("p")).unwrap() else { panic!() };
    let Value::Array(a) = &t[0] else { panic!() };
    assert_eq!((a.dtype.as_str(), a.shape.as_slice()), ("f8", &[219usize, 3, 3][..]));
}

#[test]
fn cryodrgn_ctf_pickle() {
    let ctf = pickle::read_ctf(&data("cryodrgn/sta_ctf.pkl")).unwrap();
    assert_eq!(ctf.len(), 219);
    // float32 values widened exactly: [D, Apix, dfU, dfV, dfAng°, kV, Cs mm, Q0, phase°].
    assert_eq!(
        ctf[0],
        [512.0, 1.8200000524520874, 20061.69921875, 19560.80078125, 12.300000190734863, 300.0, 2.700000047683716, 0.07000000029802322, 0.0]
    );
    assert_eq!(ctf[218][2..5], [21336.0, 20843.599609375, -5.800000190734863]);
    assert!((ctf.iter().flatten().sum::<f64>() - 9267503.109639429).abs() < 1e-6);
    let a = pickle::read_array(&data("cryodrgn/sta_ctf.pkl")).unwrap();
    assert_eq!((a.dtype.as_str(), a.shape.as_slice()), ("f4", &[219usize, 9][..]));
}

#[test]
fn toy_rotations_alone() {
    // Protocol 3 with GLOBAL opcodes and a bare array (no translations).
    let (rot, trans) = pickle::read_poses(&data("cryodrgn-toy/toy_angles.pkl")).unwrap();
    assert!(trans.is_none());
    assert_eq!(rot.len(), 1000);
    assert_eq!(rot[0][0], [0.6103606224060059, 0.7738708257675171, 0.16906750202178955]);
    assert_eq!(rot[999][2], [-0.20231804251670837, -0.11103720963001251, -0.9730046391487122]);
    assert!((rot.iter().flatten().flatten().sum::<f64>() - -103.83264439972118).abs() < 1e-9);
    // A pose pickle is not a CTF pickle.
    let e = pickle::read_ctf(&data("cryodrgn-toy/toy_angles.pkl")).unwrap_err().to_string();
    assert!(e.contains("toy_angles.pkl") && e.contains("(N, 9)") && e.contains("[1000, 3, 3]"), "{e}");
}

// `a = np.arange(6, dtype='<f4').reshape(2, 3) / 4` → [[0, .25, .5], [.75, 1, 1.25]].
/// `pickle.dumps(a, protocol=2)`: GLOBAL, BINPUT/BINGET, bytes as `_codecs.encode(text, 'latin1')`.
const P2_F4: &str = "8002636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e6461727261790a71014b00857102635f636f646563730a656e636f64650a7103580100000062710458060000006c6174696e317105867106527107877108527109284b014b024b0386710a636e756d70790a64747970650a710b58020000006634710c898887710d52710e284b0358010000003c710f4e4e4e4affffffff4affffffff4b0074711062896803581b000000000000000000c2803e0000003f0000403f0000c2803f0000c2a03f71116805867112527113747114622e";
/// `pickle.dumps(a, protocol=5)`: `numpy._core.numeric._frombuffer` with an in-band BYTEARRAY8.
const P5_F4: &str = "8005958e000000000000008c136e756d70792e5f636f72652e6e756d65726963948c0b5f66726f6d62756666657294939428961800000000000000000000000000803e0000003f0000403f0000803f0000a03f948c056e756d7079948c0564747970659493948c02663494898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494624b024b0386948c014394749452942e";
/// `pickle.dumps(np.asfortranarray(a.astype('>f8')), protocol=4)`: big-endian, column-major.
const P4_FORTRAN_BE_F8: &str = "800495bb000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b024b03869468038c0564747970659493948c02663894898887945294284b038c013e944e4e4e4affffffff4affffffff4b0074946288433000000000000000003fe80000000000003fd00000000000003ff00000000000003fe00000000000003ff4000000000000947494622e";
/// `pickle.dumps(np.asfortranarray(a.astype('<f8')), protocol=5)`: `_frombuffer` with order 'F'.
const P5_FORTRAN_F8: &str = "800595a6000000000000008c136e756d70792e5f636f72652e6e756d65726963948c0b5f66726f6d627566666572949394289630000000000000000000000000000000000000000000e83f000000000000d03f000000000000f03f000000000000e03f000000000000f43f948c056e756d7079948c0564747970659493948c02663894898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494624b024b0386948c014694749452942e";
/// `pickle.dumps(np.float32(2.5), protocol=4)`: a numpy scalar.
const P4_SCALAR: &str = "80049566000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c067363616c61729493948c056e756d7079948c0564747970659493948c02663494898887945294284b038c013c944e4e4e4affffffff4affffffff4b0074946243040000204094869452942e";
/// `pickle.dumps(np.array([4, 0, 2], dtype=np.int64), protocol=4)`: a cryoDRGN index file.
const P4_INDEX_I8: &str = "800495a1000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b03859468038c0564747970659493948c02693894898887945294284b038c013c944e4e4e4affffffff4affffffff4b00749462894318040000000000000000000000000000000200000000000000947494622e";
/// `pickle.dumps((np.eye(3, dtype=np.float32)[None], np.array([[0.25, -0.5]], dtype=np.float32)), protocol=2)`.
const P2_TUPLE: &str = "8002636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e6461727261790a71014b00857102635f636f646563730a656e636f64650a7103580100000062710458060000006c6174696e317105867106527107877108527109284b014b014b034b0387710a636e756d70790a64747970650a710b58020000006634710c898887710d52710e284b0358010000003c710f4e4e4e4affffffff4affffffff4b007471106289680358270000000000c2803f0000000000000000000000000000c2803f0000000000000000000000000000c2803f7111680586711252711374711462680068014b008571156807877116527117284b014b014b02867118680e896803580a0000000000c2803e000000c2bf7119680586711a52711b74711c6286711d2e";
/// `pickle.dumps([3, 1, 2], protocol=4)`.
const P4_LIST: &str = "8004950b000000000000005d94284b034b014b02652e";
/// `pickle.dumps(np.zeros(1, dtype=[('a', '<f4')]), protocol=4)`: a structured array.
const P4_STRUCT: &str = "800495ba000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b01859468038c0564747970659493948c02563494898887945294284b038c017c944e8c01619485947d946811680c8c02663494898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494624b008694734b044b014b1074946289430400000000947494622e";
/// `pickle.dumps(np.array(['x', None], dtype=object), protocol=4)`.
const P4_OBJECT: &str = "8004958f000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b02859468038c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f749462895d94288c0178944e657494622e";
/// `pickle.dumps(np.zeros(1, dtype=np.complex64), protocol=4)`.
const P4_COMPLEX: &str = "80049591000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e7374727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b01859468038c0564747970659493948c02633894898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494628943080000000000000000947494622e";
/// `pickle.dumps({'a': 1}, protocol=4)`.
const P4_DICT: &str = "8004950a000000000000007d948c0161944b01732e";
/// `pickle.dumps([1], protocol=0)`.
const P0_LIST: &str = "286c70300a49310a612e";

const A: [f64; 6] = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25];

#[test]
fn every_way_numpy_stores_an_array() {
    for (name, h, dtype) in [
        ("protocol 2", P2_F4, "f4"),
        ("protocol 5", P5_F4, "f4"),
        ("Fortran >f8", P4_FORTRAN_BE_F8, "f8"),
        ("Fortran, protocol 5", P5_FORTRAN_F8, "f8"),
    ] {
        let a = array(h);
        assert_eq!(a.shape, [2, 3], "{name}");
        assert_eq!(a.data, A, "{name}");
        assert_eq!(a.dtype, dtype, "{name}");
    }
    assert_eq!(parse(P4_SCALAR).unwrap(), Value::Float(2.5));
    let idx = pickle::indices_from(&parse(P4_INDEX_I8).unwrap(), Path::new("i.pkl")).unwrap();
    assert_eq!(idx, [4, 0, 2]);
    assert_eq!(pickle::indices_from(&parse(P4_LIST).unwrap(), Path::new("l.pkl")).unwrap(), [3, 1, 2]);
    expect_err(pickle::indices_from(&parse(P5_F4).unwrap(), Path::new("f.pkl")), &["f.pkl", "f4 array of shape [2, 3]"]);
    // A pose tuple through protocol 2.
    let (rot, trans) = pickle::poses_from(&parse(P2_TUPLE).unwrap(), Path::new("p.pkl")).unwrap();
    assert_eq!(rot, [[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]);
    assert_eq!(trans.unwrap(), [[0.25, -0.5]]);
    let e = pickle::poses_from(&parse(P5_F4).unwrap(), Path::new("p.pkl")).unwrap_err().to_string();
    assert!(e.contains("p.pkl") && e.contains("[2, 3], expected (N, 3, 3)"), "{e}");
}

#[test]
fn unsupported_content_is_named() {
    let cases: [(&str, &str); 5] = [
        (P4_STRUCT, "EMPTY_DICT"),
        (P4_OBJECT, "object arrays are not supported"),
        (P4_COMPLEX, "dtype \"c8\" is not supported"),
        (P4_DICT, "EMPTY_DICT"),
        (P0_LIST, "protocol-0 text opcode"),
    ];
    for (h, what) in cases {
        let e = parse(h).unwrap_err();
        assert!(e.starts_with("t.pkl: at byte ") && e.contains(what), "{what}: {e}");
    }
    // Protocol 0 fails on its first text opcode (PUT), named with its offset.
    let e = parse(P0_LIST).unwrap_err();
    assert!(e.contains("at byte 2") && e.contains("0x70"), "{e}");
}

fn perr(b: &[u8]) -> String {
    pickle::parse(b, Path::new("evil.pkl")).unwrap_err().to_string()
}

#[test]
fn hostile_pickles_are_refused() {
    // Globals outside the whitelist, through GLOBAL and STACK_GLOBAL; nothing runs.
    let e = perr(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.");
    assert!(e.contains("evil.pkl: at byte 2") && e.contains("GLOBAL") && e.contains("os.system") && e.contains("refusing"), "{e}");
    let e = perr(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.");
    assert!(e.contains("at byte 18") && e.contains("STACK_GLOBAL") && e.contains("builtins.eval"), "{e}");
    let e = perr(b"\x80\x04\x8c\x05numpy\x8c\x04load\x93.");
    assert!(e.contains("numpy.load"), "{e}");
    // Calling a whitelisted name that is not callable in this subset.
    let e = perr(b"\x80\x04\x8c\x05numpy\x8c\x07ndarray\x93)R.");
    assert!(e.contains("REDUCE") && e.contains("ndarray cannot be called"), "{e}");
    // Object construction, persistent ids, extensions.
    for (b, op) in [(&b"\x80\x04)\x81."[..], "NEWOBJ"), (b"\x80\x04K\x01Q.", "BINPERSID"), (b"\x80\x04\x82\x01.", "EXT")] {
        let e = perr(b);
        assert!(e.contains(op) && e.contains("not supported"), "{op}: {e}");
    }
    // Out-of-band buffers are not in the file.
    let e = perr(b"\x80\x05\x97.");
    assert!(e.contains("NEXT_BUFFER") && e.contains("out-of-band"), "{e}");
    // Deep nesting is refused instead of exhausting the stack.
    let mut b = b"\x80\x04N".to_vec();
    b.extend(std::iter::repeat_n(0x85u8, 100_000));
    b.push(b'.');
    let e = perr(&b);
    assert!(e.contains("nested deeper than 64"), "{e}");
    // A memoised list fetched a million times stays cheap (values are shared, not copied).
    let mut b = b"\x80\x04](".to_vec();
    for _ in 0..1000 {
        b.extend(b"K\x07");
    }
    b.extend(b"e\x94");
    for _ in 0..1_000_000 {
        b.extend(b"h\x000");
    }
    b.push(b'.');
    let Value::List(l) = pickle::parse(&b, Path::new("m.pkl")).unwrap() else { panic!() };
    assert_eq!(l.len(), 1000);
}

#[test]
fn malformed_pickles_name_opcode_and_offset() {
    let cases: [(&[u8], &str); 12] = [
        (b"", "no STOP"),
        (b"\x80\x04", "no STOP"),
        (b"\x80\x04\x95\x01", "FRAME"),
        (b"\x80\x04B\xff\xff\xff\x7fabc.", "truncated pickle: 2147483647 more bytes expected"),
        (b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff.", "BINBYTES8"),
        (b"\x80\x09.", "protocol 9"),
        (b"\x80\x04.", "stack is empty"),
        (b"\x80\x04h\x05.", "memo entry 5 is not set"),
        (b"\x80\x04t.", "no MARK"),
        (b"\x80\x04K\x01K\x02a.", "appending to an int"),
        (b"\x80\x04(.", "a MARK where a value was expected"),
        (b"\x80\x04\x8c\x02\xff\xfe.", "not UTF-8"),
    ];
    for (b, what) in cases {
        let e = perr(b);
        assert!(e.starts_with("evil.pkl: at byte ") && e.contains(what), "{what}: {e}");
    }
    // The array claims more data than the pickle holds: the shape of P5_F4 raised to (2, 4).
    let mut b = hex(P5_F4);
    let at = b.windows(6).position(|w| w == b"K\x02K\x03\x86\x94").unwrap();
    b[at + 3] = 4;
    let e = perr(&b);
    assert!(e.contains("shape [2, 4]") && e.contains("needs 32 bytes, the pickle holds 24"), "{e}");
    // An absurd shape is an error, not an allocation.
    let mut b = hex(P5_F4);
    b.splice(at..at + 4, b"J\xff\xff\xff\x7fJ\xff\xff\xff\x7f".iter().copied());
    let e = perr(&b);
    assert!(e.contains("needs") && e.contains("holds 24"), "{e}");
    expect_err(pickle::read_poses(Path::new("/nonexistent/p.pkl")), &["/nonexistent/p.pkl"]);
}

/// Pose and CTF pickles written here read back exactly (float64, C order, the tuple layout
/// cryoDRGN writes), and a bare array is not wrapped in a tuple.
#[test]
fn written_pickles_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let rots: Vec<[[f64; 3]; 3]> = (0..5)
        .map(|i| {
            let (s, c) = (0.3 * i as f64).sin_cos();
            [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        })
        .collect();
    let trans: Vec<[f64; 2]> = (0..5).map(|i| [0.01 * i as f64, -1.0 / (i as f64 + 3.0)]).collect();
    let p = dir.path().join("poses.pkl");
    pickle::write_poses(&p, &rots, &trans).unwrap();
    let (r, t) = pickle::read_poses(&p).unwrap();
    assert_eq!((r, t.unwrap()), (rots.clone(), trans.clone()));
    let rows: Vec<[f64; 9]> = (0..4).map(|i| [64.0, 2.2, 15000.0 + i as f64 * 0.125, 14000.5, 33.3, 300.0, 2.7, 0.1, 0.0]).collect();
    let c = dir.path().join("ctf.pkl");
    pickle::write_ctf(&c, &rows).unwrap();
    assert_eq!(pickle::read_ctf(&c).unwrap(), rows);
    let single = pickle::encode_f64_arrays(&[(&[3], &[1.0, 2.0, 3.0])]);
    match pickle::parse(&single, Path::new("one.pkl")).unwrap() {
        pickle::Value::Array(a) => assert_eq!((a.shape.clone(), a.data.clone()), (vec![3], vec![1.0, 2.0, 3.0])),
        v => panic!("expected an array, got {v:?}"),
    }
}
