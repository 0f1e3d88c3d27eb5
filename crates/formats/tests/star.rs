//! The STAR parser on every real STAR file in tests/data, write-then-read round trips, and
//! malformed input. Expected numbers were read independently with the Python `starfile`
//! package (0.5.13): block names and shapes, first-row values and column sums.

mod common;

use common::{data, expect_err};
use cryosplat_formats::star::{self, StarFile, Table};
use std::path::Path;

fn sum(f: &StarFile, block: &str, label: &str) -> f64 {
    let t = f.block(block).unwrap().table().unwrap();
    t.f64_column(&f.path, label).unwrap().unwrap().iter().sum()
}

fn shape(f: &StarFile, block: &str) -> (usize, usize) {
    let t = f.block(block).unwrap().table().unwrap();
    (t.len(), t.labels.len())
}

fn first(f: &StarFile, block: &str, label: &str) -> String {
    let t = f.block(block).unwrap().table().unwrap();
    t.get(0, t.column(label).unwrap_or_else(|| panic!("no {label}"))).to_string()
}

#[test]
fn real_files_match_starfile() {
    // (file, block, rows, columns, sum of rlnDefocusU or NaN, sum of rlnAngleRot or NaN)
    let cases: [(&str, &str, usize, usize, f64, f64); 11] = [
        ("aspire/sample_particles_relion30.star", "model_class_1", 17, 29, 360175.679696, 1530.9886079999999),
        ("aspire/sample_particles_relion31.star", "optics", 2, 8, f64::NAN, f64::NAN),
        ("aspire/sample_particles_relion31.star", "particles", 17, 26, 360175.679696, 1514.9696150000002),
        ("cryodrgn-toy/toy_projections.DERIVED.star", "optics", 1, 8, f64::NAN, f64::NAN),
        ("cryodrgn-toy/toy_projections.DERIVED.star", "particles", 1000, 7, f64::NAN, -413.1958689999992),
        ("cryodrgn/empiar_10076_7.star", "", 7, 10, 106785.9, f64::NAN),
        ("cryodrgn/relion31.star", "optics", 1, 9, f64::NAN, f64::NAN),
        ("cryodrgn/relion31.star", "particles", 5, 26, 63976.50971, 20.827572999999973),
        ("cryodrgn/sta_testing_bin8.optics31.DERIVED.star", "optics", 1, 8, f64::NAN, f64::NAN),
        ("cryodrgn/sta_testing_bin8.optics31.DERIVED.star", "particles", 219, 10, 4606016.100000001, 1723.7596),
        ("cryodrgn/sta_testing_bin8.star", "", 219, 20, 4606016.100000001, 1723.7596),
    ];
    for (file, block, rows, cols, du, rot) in cases {
        let f = star::read(&data(file)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shape(&f, block), (rows, cols), "{file} {block}");
        if !du.is_nan() {
            assert!((sum(&f, block, "rlnDefocusU") - du).abs() < 1e-6 * du.abs(), "{file}");
        }
        if !rot.is_nan() {
            assert!((sum(&f, block, "rlnAngleRot") - rot).abs() < 1e-9, "{file}");
        }
    }
}

#[test]
fn first_rows_and_quirks() {
    // RELION 3.1: two blocks, each preceded by "# version 30001"; "loop_ " and labels carry
    // trailing spaces; the numbers are right-aligned with leading spaces.
    let f = star::read(&data("cryodrgn/relion31.star")).unwrap();
    assert_eq!(f.blocks.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["optics", "particles"]);
    assert_eq!(first(&f, "optics", "rlnImagePixelSize"), "2.806000");
    assert_eq!(first(&f, "optics", "rlnOpticsGroupName"), "opticsGroup1");
    assert_eq!(first(&f, "particles", "rlnImageName"), "000001@relion31.mrcs");
    assert_eq!(first(&f, "particles", "rlnAngleRot").parse::<f64>().unwrap(), -102.30296);
    assert_eq!(first(&f, "particles", "rlnOriginYAngst").parse::<f64>().unwrap(), -0.64686);
    assert_eq!(first(&f, "particles", "rlnDefocusU").parse::<f64>().unwrap(), 13108.082418);
    // ASPIRE's 3.1 edit: tabs, a label followed by a description in brackets, two groups.
    let f = star::read(&data("aspire/sample_particles_relion31.star")).unwrap();
    let o = f.block("optics").unwrap().table().unwrap();
    assert_eq!(o.labels[2], "rlnMtfFileName");
    assert_eq!(o.f64_column(&f.path, "rlnVoltage").unwrap().unwrap(), [300.0, 200.0]);
    assert_eq!(o.get(1, 0), "opticsGroup2");
    // RELION 3.0 with an empty block name and "1@file" image names.
    let f = star::read(&data("cryodrgn/empiar_10076_7.star")).unwrap();
    assert_eq!(f.blocks[0].name, "");
    assert_eq!(first(&f, "", "rlnImageName"), "1@empiar_10076_7.mrc");
    assert_eq!(first(&f, "", "rlnMagnification"), "38168");
    let (_, t) = f.table_with("rlnImageName").unwrap();
    assert_eq!(t.len(), 7);
    // Tabs between values, a header comment from another writer.
    let f = star::read(&data("cryodrgn/sta_testing_bin8.optics31.DERIVED.star")).unwrap();
    let t = f.block("particles").unwrap().table().unwrap();
    assert_eq!(t.f64_opt(&f.path, 218, "rlnCtfScalefactor").unwrap(), Some(0.809));
    assert_eq!(t.row_lines[0], 31);
}

#[test]
fn crlf_and_wrapped_rows_parse_the_same() {
    let text = std::fs::read_to_string(data("cryodrgn/relion31.star")).unwrap();
    let unix = star::parse_str(&text, Path::new("a.star")).unwrap();
    let dos = star::parse_str(&text.replace('\n', "\r\n"), Path::new("a.star")).unwrap();
    assert_eq!(unix, dos);
    // A row may continue on the next line; the row's line is where it starts.
    let f = star::parse_str("data_x\nloop_\n_a\n_b\n_c\n1 2\n  3\n4 5 6\n", Path::new("w.star")).unwrap();
    let t = f.block("x").unwrap().table().unwrap();
    assert_eq!(t.rows, [["1", "2", "3"], ["4", "5", "6"]]);
    assert_eq!(t.row_lines, [6, 8]);
}

#[test]
fn pairs_quotes_and_comments() {
    let text = "data_general\n_rlnFinalResolution 3.2 # Å\n_rlnName 'a b'\n_rlnPath \"it's here\"\n_rlnOdd it's\n#loop_\n\ndata_t\nloop_\n_rlnX #1\n_rlnY#2\n'#not a comment' \"\"\n";
    let f = star::parse_str(text, Path::new("p.star")).unwrap();
    let g = f.block("general").unwrap();
    assert_eq!(g.pair("rlnFinalResolution"), Some("3.2"));
    assert_eq!(g.pair("rlnName"), Some("a b"));
    assert_eq!(g.pair("rlnPath"), Some("it's here"));
    assert_eq!(g.pair("rlnOdd"), Some("it's"));
    assert!(g.tables.is_empty());
    let t = f.block("t").unwrap().table().unwrap();
    assert_eq!(t.labels, ["rlnX", "rlnY"]);
    assert_eq!(t.rows, [["#not a comment", ""]]);
}

#[test]
fn write_then_read_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    // Every real file, whole (pairs and loops), through the general writer.
    for file in [
        "cryodrgn/relion31.star",
        "aspire/sample_particles_relion31.star",
        "aspire/sample_particles_relion30.star",
        "cryodrgn/sta_testing_bin8.star",
    ] {
        let f = star::read(&data(file)).unwrap();
        let out = dir.path().join("rt.star");
        star::write_file(&out, &f).unwrap();
        let g = star::read(&out).unwrap();
        assert_eq!(g.blocks.len(), f.blocks.len(), "{file}");
        for (a, b) in f.blocks.iter().zip(&g.blocks) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.tables.len(), b.tables.len());
            for (ta, tb) in a.tables.iter().zip(&b.tables) {
                assert_eq!(ta.labels, tb.labels, "{file}");
                assert_eq!(ta.rows, tb.rows, "{file}");
            }
        }
    }
    // Awkward values through the RELION 3.1 writer, and the RELION 3.1 header.
    let mut t = Table::new(&["rlnImageName", "rlnMicrographName", "rlnDefocusU"]);
    t.push_row(vec!["000001@with space.mrcs".into(), "".into(), "1.5e4".into()]);
    t.push_row(vec!["000002@x.mrcs".into(), "_underscore".into(), "-0".into()]);
    t.push_row(vec!["000003@x.mrcs".into(), "say \"hi\" now".into(), "7".into()]);
    let out = dir.path().join("w.star");
    star::write(&out, &[("optics", &Table::new(&["rlnOpticsGroup"])), ("particles", &t)]).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("# version 30001") && text.contains("data_optics") && text.contains("data_particles"));
    let g = star::read(&out).unwrap();
    assert_eq!(g.block("particles").unwrap().table().unwrap().rows, t.rows);
    assert!(g.block("optics").unwrap().table().unwrap().is_empty());
    // A value STAR cannot hold is refused, and nothing is left behind.
    let mut bad = Table::new(&["a"]);
    bad.push_row(vec!["line\nbreak".into()]);
    expect_err(star::write(&dir.path().join("bad.star"), &[("x", &bad)]), &["bad.star", "column a"]);
    assert!(!dir.path().join("bad.star").exists());
    // The reader ends a quoted value at a quote followed by any whitespace, the vertical tab
    // included; a value with `" ` and `'` + vertical tab fits in neither quote kind and is
    // refused rather than written so that it reads back different (found by fuzzing).
    let mut vt = Table::new(&["a"]);
    vt.push_row(vec!["a\" b'\u{b}c".into()]);
    expect_err(star::write(&dir.path().join("vt.star"), &[("x", &vt)]), &["vt.star", "both quote kinds"]);
    // With only the single quote before the vertical tab, double quotes hold it.
    vt.rows[0][0] = "it's\u{b}fine".into();
    star::write(&dir.path().join("vt.star"), &[("x", &vt)]).unwrap();
    assert_eq!(star::read(&dir.path().join("vt.star")).unwrap().block("x").unwrap().table().unwrap().rows, vt.rows);
}

fn err(text: &str) -> String {
    star::parse_str(text, Path::new("bad.star")).unwrap_err().to_string()
}

#[test]
fn malformed_input_names_file_and_line() {
    let cases: [(&str, &str, &str); 12] = [
        ("data_\nloop_\n_a 1\n", "line 3", "after the loop label _a"),
        ("data_\nloop_\n_a\n_b\n1 2 3\n", "line 5", "3 values but the loop declares 2"),
        ("data_\nloop_\n_a\n_b\n1\n2 3\n", "line 6", "starting on line 5 has 3 values"),
        ("data_\nloop_\n_a\n_b\n1 2\n3\n", "line 6", "incomplete loop row"),
        ("data_\nloop_\n_a\n_b\n1 2\n3\ndata_y\n", "line 6", "incomplete loop row"),
        ("data_\n_a 'open\n", "line 2", "unterminated quote"),
        ("data_\nloop_\n_a\n_a\n", "line 4", "declared twice"),
        ("data_\nloop_\n1 2\n", "line 3", "no labels"),
        ("_rlnA 1\n", "line 1", "before any data_ block"),
        ("data_\n1 2\n", "line 2", "outside a loop"),
        ("data_\n_rlnA\n", "line 2", "has no value"),
        ("data_ x\n", "line 1", "after data_"),
    ];
    for (text, line, what) in cases {
        let e = err(text);
        assert!(e.starts_with("bad.star: ") && e.contains(line) && e.contains(what), "{text:?}: {e}");
    }
    // An empty loop may be followed by another loop.
    let f = star::parse_str("data_\nloop_\n_a\nloop_\n_b\n1\n", Path::new("e.star")).unwrap();
    assert_eq!(f.blocks[0].tables.len(), 2);
    assert!(f.blocks[0].tables[0].is_empty());
    let e = err("");
    assert!(e.contains("bad.star") && e.contains("no data_ block"), "{e}");
    let e = err("# only a comment\n\n");
    assert!(e.contains("no data_ block"), "{e}");
    expect_err(star::parse_bytes(b"data_\n_a 1\n_b \xff\n", Path::new("bin.star")), &["bin.star: line 3", "not UTF-8"]);
    expect_err(star::read(Path::new("/nonexistent/x.star")), &["/nonexistent/x.star"]);
}

#[test]
fn numbers_are_checked_with_column_and_value() {
    let text = "data_particles\nloop_\n_rlnImageName\n_rlnDefocusU\n_rlnAngleRot\n1@a.mrcs 10000 5\n2@a.mrcs 1.2e4x 6\n3@a.mrcs nan 7\n4@a.mrcs 1e4 inf\n";
    let f = star::parse_str(text, Path::new("n.star")).unwrap();
    let t = f.block("particles").unwrap().table().unwrap();
    assert_eq!(t.f64(&f.path, 0, 1).unwrap(), 10000.0);
    expect_err(t.f64_column(&f.path, "rlnDefocusU"), &["n.star: line 7", "rlnDefocusU", "\"1.2e4x\""]);
    expect_err(t.f64(&f.path, 2, 1), &["line 8", "\"nan\"", "finite"]);
    expect_err(t.f64_opt(&f.path, 3, "rlnAngleRot"), &["line 9", "rlnAngleRot", "\"inf\""]);
    assert_eq!(t.f64_opt(&f.path, 0, "rlnAbsent").unwrap(), None);
    assert_eq!(t.f64_column(&f.path, "rlnAbsent").unwrap(), None);
}
