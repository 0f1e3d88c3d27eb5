//! Atomic models: the real PDB and mmCIF files in tests/data/models, small hand-written
//! files for models, alternative locations and errors, and the pseudo-atom writers.
//! Expected numbers come from gemmi 0.7 (`read_structure`, `remove_alternative_conformations`,
//! first model), computed outside this project; the B-factor and occupancy sums were summed
//! exactly in decimal from the file columns.

mod common;

use common::{data, expect_err};
use cryosplat_formats::atoms::{self, Atom, PseudoAtom};
use std::collections::BTreeMap;
use std::path::Path;

struct Expect {
    file: &'static str,
    count: usize,
    first: ([f64; 3], f64),
    last: ([f64; 3], f64, &'static str),
    sum_b: f64,
    sum_occ: f64,
    elements: &'static [(&'static str, usize)],
}

const CASES: &[Expect] = &[
    Expect {
        file: "models/1A8O.pdb",
        count: 644,
        first: ([19.594, 32.367, 28.012], 18.03),
        last: ([16.743, 33.111, 28.517], 47.11, "O"),
        sum_b: 14542.82,
        sum_occ: 641.0,
        elements: &[("C", 346), ("N", 96), ("O", 196), ("S", 2), ("SE", 4)],
    },
    // 6,468 ATOM/HETATM records, of which 7 are second alternative locations (His 228).
    Expect {
        file: "models/7DDO.pdb",
        count: 6461,
        first: ([102.78, 48.284, 75.094], 71.91),
        last: ([100.438, 73.624, 33.636], 98.46, "O"),
        sum_b: 392583.48,
        sum_occ: 6457.5,
        elements: &[("C", 4128), ("N", 1065), ("O", 1230), ("S", 37), ("ZN", 1)],
    },
    Expect {
        file: "models/8zpm.cif",
        count: 3222,
        first: ([117.691, 148.969, 115.148], 79.14),
        // The last row of the file (gemmi lists atoms by chain, so its last atom differs).
        last: ([134.486, 148.252, 149.459], 71.75, "O"),
        sum_b: 203783.39,
        sum_occ: 3222.0,
        elements: &[("C", 2136), ("N", 524), ("O", 547), ("S", 15)],
    },
];

fn element_counts(atoms: &[Atom]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for a in atoms {
        *m.entry(a.element.clone()).or_insert(0) += 1;
    }
    m
}

#[test]
fn real_models() {
    for c in CASES {
        let atoms = atoms::read_atoms(&data(c.file)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(atoms.len(), c.count, "{}", c.file);
        assert_eq!((atoms[0].pos_a, atoms[0].b_factor_a2, atoms[0].occupancy), (c.first.0, c.first.1, 1.0), "{}", c.file);
        let l = atoms.last().unwrap();
        assert_eq!((l.pos_a, l.b_factor_a2, l.element.as_str()), c.last, "{}", c.file);
        let sum_b: f64 = atoms.iter().map(|a| a.b_factor_a2).sum();
        let sum_occ: f64 = atoms.iter().map(|a| a.occupancy).sum();
        assert!((sum_b - c.sum_b).abs() < 1e-6, "{}: {sum_b}", c.file);
        assert!((sum_occ - c.sum_occ).abs() < 1e-9, "{}: {sum_occ}", c.file);
        let want: BTreeMap<String, usize> = c.elements.iter().map(|&(e, n)| (e.to_string(), n)).collect();
        assert_eq!(element_counts(&atoms), want, "{}", c.file);
    }
}

#[test]
fn pdb_elements_from_atom_names_when_columns_77_78_are_blank() {
    let text = std::fs::read_to_string(data("models/1A8O.pdb")).unwrap();
    let blanked: String =
        text.lines()
            .map(|l| {
                if (l.starts_with("ATOM") || l.starts_with("HETATM")) && l.len() >= 78 {
                    format!("{}\n", &l[..76])
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
    let p = Path::new("1A8O-no-elements.pdb");
    let from_names = atoms::parse_pdb(&blanked, p).unwrap();
    let real = atoms::read_atoms(&data("models/1A8O.pdb")).unwrap();
    assert_eq!(from_names, real);
}

const PDB_MODELS: &str = "\
HEADER    TEST
MODEL        1
ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  0.00           N
ATOM      2  CA AALA A   1      11.639   6.071  -5.147  0.60 10.00           C
ATOM      3  CA BALA A   1      11.700   6.000  -5.100  0.40 12.00           C
ATOM      4 HG11 VAL A   2       1.000   2.000   3.000
HETATM    5 FE   HEM A   3      -1.500  -2.500  99.000  1.00 30.00
ENDMDL
MODEL        2
ATOM      1  N   ALA A   1      21.104   6.134  -6.504  1.00  0.00           N
ENDMDL
";

#[test]
fn pdb_first_model_first_altloc_and_defaults() {
    let a = atoms::parse_pdb(PDB_MODELS, Path::new("m.pdb")).unwrap();
    let got: Vec<(&str, [f64; 3], f64, f64)> = a.iter().map(|a| (a.element.as_str(), a.pos_a, a.occupancy, a.b_factor_a2)).collect();
    assert_eq!(
        got,
        vec![
            ("N", [11.104, 6.134, -6.504], 1.0, 0.0),
            ("C", [11.639, 6.071, -5.147], 0.6, 10.0),
            ("H", [1.0, 2.0, 3.0], 1.0, 0.0),
            ("FE", [-1.5, -2.5, 99.0], 1.0, 30.0),
        ]
    );
}

#[test]
fn pdb_errors_name_file_and_line() {
    let bad_x = "REMARK\nATOM      1  N   ALA A   1      11.1x4   6.134  -6.504  1.00  0.00           N\n";
    expect_err(atoms::parse_pdb(bad_x, Path::new("bad.pdb")), &["bad.pdb: line 2", "x in columns 31-38"]);
    let short = "ATOM      1  N   ALA A   1      11.104   6.134\n";
    expect_err(atoms::parse_pdb(short, Path::new("short.pdb")), &["short.pdb: line 1", "columns 31-54"]);
    let bad_b = "ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  nan            N\n";
    expect_err(atoms::parse_pdb(bad_b, Path::new("b.pdb")), &["line 1", "B-factor"]);
    expect_err(atoms::parse_pdb("HEADER\nEND\n", Path::new("empty.pdb")), &["empty.pdb", "no ATOM"]);
    expect_err(atoms::read_atoms(Path::new("/nonexistent-dir/x.pdb")), &["/nonexistent-dir/x.pdb"]);
}

const CIF_MODELS: &str = "\
data_test
#
_cell.length_a 10.0
loop_
_struct_conn.id
_struct_conn.details
c1 'a value with loop_ inside'
c2
;a text field
with _atom_site.Cartn_x inside
;
#
loop_
_atom_site.group_PDB
_atom_site.id
_atom_site.type_symbol
_atom_site.label_atom_id
_atom_site.label_alt_id
_atom_site.label_comp_id
_atom_site.label_asym_id
_atom_site.label_seq_id
_atom_site.Cartn_x
_atom_site.Cartn_y
_atom_site.Cartn_z
_atom_site.occupancy
_atom_site.B_iso_or_equiv
_atom_site.pdbx_PDB_model_num
ATOM 1 N N . ALA A 1 1.0 2.0 3.0 1.00 5.0 1
ATOM 2 C CA A ALA A 1 1.5 2.5 3.5 0.70 6.0 1
ATOM 3 C CA B ALA A 1 1.6 2.6 3.6 0.30 7.0 1
HETATM 4 Fe FE . HEM B . -4.0 -5.0 -6.0 ? ? 1
ATOM 5 \"O\" 'O 1' . ALA A 1 7.0 8.0 9.0 1 1 1
ATOM 6 N N . ALA A 1 10.0 20.0 30.0 1.00 5.0 2
#
";

#[test]
fn mmcif_first_model_first_altloc_quotes_and_unknowns() {
    let a = atoms::parse_mmcif(CIF_MODELS, Path::new("m.cif")).unwrap();
    let got: Vec<(&str, [f64; 3], f64, f64)> = a.iter().map(|a| (a.element.as_str(), a.pos_a, a.occupancy, a.b_factor_a2)).collect();
    assert_eq!(
        got,
        vec![
            ("N", [1.0, 2.0, 3.0], 1.0, 5.0),
            ("C", [1.5, 2.5, 3.5], 0.7, 6.0),
            ("FE", [-4.0, -5.0, -6.0], 1.0, 0.0),
            ("O", [7.0, 8.0, 9.0], 1.0, 1.0),
        ]
    );
}

#[test]
fn mmcif_single_atom_pairs_and_missing_type_symbol() {
    let text =
        "data_one\n_atom_site.id 1\n_atom_site.label_atom_id CA\n_atom_site.Cartn_x 1.0\n_atom_site.Cartn_y 2.0\n_atom_site.Cartn_z 3.0\n";
    let a = atoms::parse_mmcif(text, Path::new("one.cif")).unwrap();
    assert_eq!(a, vec![Atom { element: "C".into(), pos_a: [1.0, 2.0, 3.0], b_factor_a2: 0.0, occupancy: 1.0 }]);
}

#[test]
fn mmcif_errors_name_file_and_line() {
    let missing_z = "data_x\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n_atom_site.Cartn_y\n1 1.0 2.0\n";
    expect_err(atoms::parse_mmcif(missing_z, Path::new("z.cif")), &["z.cif: line 2", "Cartn_z"]);
    let bad = "data_x\nloop_\n_atom_site.type_symbol\n_atom_site.Cartn_x\n_atom_site.Cartn_y\n_atom_site.Cartn_z\nC 1 2 3\nC 1 two 3\n";
    expect_err(atoms::parse_mmcif(bad, Path::new("bad.cif")), &["bad.cif: line 8", "Cartn_y is \"two\""]);
    let ragged = "data_x\nloop_\n_atom_site.type_symbol\n_atom_site.Cartn_x\n_atom_site.Cartn_y\n_atom_site.Cartn_z\nC 1 2 3\nC 1 2\n";
    expect_err(atoms::parse_mmcif(ragged, Path::new("r.cif")), &["r.cif: line 8", "incomplete row: 3 of 4"]);
    expect_err(atoms::parse_mmcif("data_x\n_cell.length_a 1\n", Path::new("n.cif")), &["n.cif", "no _atom_site"]);
    expect_err(atoms::parse_mmcif("data_x\n;never closed\n", Path::new("t.cif")), &["t.cif: line 2", "never closed"]);
}

fn pseudo_atoms(n: usize) -> Vec<PseudoAtom> {
    (0..n)
        .map(|i| PseudoAtom {
            pos_a: [i as f64 * 0.001 - 50.0, (i % 97) as f64 * 1.25, -((i % 13) as f64) * 3.5],
            occupancy: (i % 101) as f64 / 100.0,
            b_factor_a2: 10.0 + (i % 7) as f64,
        })
        .collect()
}

fn check_round_trip(read: &[Atom], written: &[PseudoAtom]) {
    assert_eq!(read.len(), written.len());
    for (r, w) in read.iter().zip(written) {
        assert_eq!(r.element, "C");
        for d in 0..3 {
            assert!((r.pos_a[d] - w.pos_a[d]).abs() <= 5e-4, "{:?} {:?}", r.pos_a, w.pos_a);
        }
        assert!((r.occupancy - w.occupancy).abs() <= 5e-3 && (r.b_factor_a2 - w.b_factor_a2).abs() <= 5e-3);
    }
}

#[test]
fn pseudo_atoms_round_trip_through_pdb_and_mmcif() {
    let dir = tempfile::tempdir().unwrap();
    let small = pseudo_atoms(50);
    let p = dir.path().join("g.pdb");
    atoms::write_pdb_pseudo_atoms(&p, &small).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let first = text.lines().find(|l| l.starts_with("HETATM")).unwrap();
    assert_eq!(first, "HETATM    1 C    GAU A   1     -50.000   0.000  -0.000  0.00 10.00           C  ");
    assert!(text.lines().all(|l| l.len() <= 80));
    check_round_trip(&atoms::read_atoms(&p).unwrap(), &small);
    let p = dir.path().join("g.cif");
    atoms::write_pseudo_atoms_cif(&p, "test model", &small).unwrap();
    check_round_trip(&atoms::read_atoms(&p).unwrap(), &small);
}

#[test]
fn pdb_pseudo_atoms_beyond_99999_use_hybrid36() {
    let dir = tempfile::tempdir().unwrap();
    let many = pseudo_atoms(100_002);
    let p = dir.path().join("many.pdb");
    atoms::write_pdb_pseudo_atoms(&p, &many).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let het: Vec<&str> = text.lines().filter(|l| l.starts_with("HETATM")).collect();
    assert_eq!(het.len(), 100_002);
    assert_eq!(&het[99_998][6..11], "99999");
    assert_eq!(&het[99_999][6..11], "A0000");
    assert_eq!(&het[100_001][6..11], "A0002");
    assert_eq!(&het[100_001][22..26], "BXG2"); // residue 100,002 in 4-character hybrid-36
    check_round_trip(&atoms::read_atoms(&p).unwrap(), &many);
}

#[test]
fn pseudo_atom_writers_refuse_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = pseudo_atoms(3);
    a[1].b_factor_a2 = f64::NAN;
    expect_err(atoms::write_pdb_pseudo_atoms(&dir.path().join("n.pdb"), &a), &["n.pdb", "pseudo-atom 1"]);
    expect_err(atoms::write_pseudo_atoms_cif(&dir.path().join("n.cif"), "x", &a), &["n.cif", "NaN"]);
    let far = [PseudoAtom { pos_a: [12345.0, 0.0, 0.0], occupancy: 1.0, b_factor_a2: 1.0 }];
    expect_err(atoms::write_pdb_pseudo_atoms(&dir.path().join("far.pdb"), &far), &["12345", "mmCIF"]);
    // Large B-factors lose decimals, not columns.
    let wide = [PseudoAtom { pos_a: [0.0; 3], occupancy: 1.0, b_factor_a2: 1263.4 }];
    let p = dir.path().join("wide.pdb");
    atoms::write_pdb_pseudo_atoms(&p, &wide).unwrap();
    assert_eq!(atoms::read_atoms(&p).unwrap()[0].b_factor_a2, 1263.4);
    expect_err(atoms::write_pdb_pseudo_atoms(Path::new("/nonexistent-dir/g.pdb"), &wide), &["/nonexistent-dir/g.pdb"]);
}
