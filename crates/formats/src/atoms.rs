//! Atomic models: reading PDB and mmCIF coordinates, writing Gaussians as pseudo-atoms.
//!
//! # Reading
//!
//! [`read_atoms`] reads a PDB file ([`parse_pdb`]) or an mmCIF file ([`parse_mmcif`]) into a
//! list of [`Atom`]s: element symbol (upper case, e.g. `C`, `FE`, `SE`), position in Å in the
//! file's own frame, isotropic B-factor in Å² and occupancy, exactly as stored.
//!
//! - Only the first model is kept (PDB: records up to the first `ENDMDL`; mmCIF: rows whose
//!   `pdbx_PDB_model_num` equals the first row's).
//! - Alternative conformations: for each atom (chain, residue number, insertion code, atom
//!   name) only the first alternative location met in the file is kept, with its occupancy as
//!   stored (often 0.5).
//! - PDB records are read from their fixed columns: name 13–16, altloc 17, chain 22, residue
//!   number 23–26, insertion code 27, x/y/z 31–54, occupancy 55–60 (1 when blank), B-factor
//!   61–66 (0 when blank), element 77–78. When the element columns are blank, the element
//!   comes from the atom name (a two-letter symbol from columns 13–14 for metal and halogen
//!   names such as `FE`, `ZN`, `SE`, `CL` — except hydrogen names in `ATOM` records — and
//!   otherwise the first letter of the name after column 13's digit or blank).
//! - mmCIF: the `_atom_site` category (a loop, or single key–value pairs) with columns found
//!   by name: `Cartn_x/y/z` (required), `type_symbol` (or the atom name when absent),
//!   `occupancy` (1 when absent or `?`), `B_iso_or_equiv` (0 when absent or `?`),
//!   `label_alt_id`, `pdbx_PDB_model_num`. Quoted values and `;` text fields are understood.
//!
//! Every malformed value is an error naming the file and the line.
//!
//! # Writing pseudo-atoms
//!
//! One atom per Gaussian so that ChimeraX and PyMOL show a model over a map: a `HETATM`
//! record, element `C`, atom name `C`, residue `GAU` numbered like the atom, chain `A`, at the
//! Gaussian's centre in Å in the map's frame (MRC origin 0: the box centre is at `D/2·apix`),
//! with the caller's value columns (typically the amplitude normalised to `[0, 1]` as
//! occupancy, and `8π²σ²` as B-factor). [`write_pseudo_atoms_cif`] writes mmCIF and has no
//! limit on the number of atoms; [`write_pdb_pseudo_atoms`] writes PDB, with serial numbers
//! in hybrid-36 beyond 99,999 atoms (up to 87,440,031) and residue numbers beyond 9,999.

use crate::atomic::write_atomic;
use crate::error::{FormatError, Result};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

/// One atom of a model, as read from a file and as the potential of `cryosplat-core` takes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Atom {
    /// Element symbol; the readers store it in upper case (`C`, `N`, `FE`…). The potential
    /// matches it case-insensitively and ignores a charge suffix (`Zn2+`).
    pub element: String,
    /// Position in Å.
    pub pos_a: [f64; 3],
    /// Isotropic B-factor in Å² (`8π²⟨u²⟩`).
    pub b_factor_a2: f64,
    /// Occupancy, 0–1.
    pub occupancy: f64,
}

/// Read a PDB or mmCIF file: mmCIF for the extensions `.cif` and `.mmcif`, PDB for `.pdb`
/// and `.ent`, otherwise mmCIF when the text holds an `_atom_site.` tag.
pub fn read_atoms(path: &Path) -> Result<Vec<Atom>> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        FormatError::text(path, line, "the file is not text (invalid UTF-8)")
    })?;
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "cif" | "mmcif" => parse_mmcif(text, path),
        "pdb" | "ent" => parse_pdb(text, path),
        _ if text.contains("_atom_site.") => parse_mmcif(text, path),
        _ => parse_pdb(text, path),
    }
}

/// Read a PDB file.
pub fn read_pdb(path: &Path) -> Result<Vec<Atom>> {
    let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
    parse_pdb(&text, path)
}

/// Read an mmCIF file.
pub fn read_mmcif(path: &Path) -> Result<Vec<Atom>> {
    let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
    parse_mmcif(&text, path)
}

/// The element symbol in upper case from a type symbol such as `Fe`, `FE2+` or `se`.
fn normalise_element(s: &str) -> Option<String> {
    let sym: String = s.chars().filter(|c| c.is_ascii_alphabetic()).take(2).collect();
    (!sym.is_empty()).then(|| sym.to_ascii_uppercase())
}

/// Two-letter elements whose names start in column 13 of a PDB atom name.
const TWO_LETTER: &[&str] = &[
    "FE", "ZN", "MG", "MN", "CA", "CL", "BR", "NA", "CU", "CO", "NI", "SE", "CD", "HG", "LI", "AL", "SI", "AR", "CR", "GA", "AS", "KR",
    "RB", "SR", "AG", "SN", "SB", "XE", "CS", "BA", "PT", "AU", "PB", "TL", "YB", "GD", "EU", "TB", "LU", "IR", "OS", "RU", "RH", "PD",
    "MO", "BE", "SM",
];

/// Element from a PDB atom name (columns 13–16) when columns 77–78 are blank.
fn element_from_pdb_name(name: &[u8], hetatm: bool) -> Option<String> {
    let c13 = *name.first()?;
    if c13.is_ascii_alphabetic() && name.len() >= 2 && name[1].is_ascii_alphabetic() {
        let pair = [c13.to_ascii_uppercase(), name[1].to_ascii_uppercase()];
        let pair = std::str::from_utf8(&pair).ok()?;
        if TWO_LETTER.contains(&pair) && (hetatm || !c13.eq_ignore_ascii_case(&b'H')) {
            return Some(pair.to_string());
        }
    }
    let first = if c13.is_ascii_alphabetic() { Some(c13) } else { name[1..].iter().copied().find(u8::is_ascii_alphabetic) };
    first.map(|c| (c.to_ascii_uppercase() as char).to_string())
}

/// Columns `a..=b` (1-based) of a line, if the line reaches column `a`.
fn cols(line: &[u8], a: usize, b: usize) -> Option<&[u8]> {
    if line.len() < a {
        return None;
    }
    Some(&line[a - 1..b.min(line.len())])
}

fn cols_str<'a>(line: &'a [u8], a: usize, b: usize, path: &Path, no: usize) -> Result<Option<&'a str>> {
    match cols(line, a, b) {
        None => Ok(None),
        Some(s) => std::str::from_utf8(s)
            .map(|s| Some(s.trim()))
            .map_err(|_| FormatError::text(path, no, format!("columns {a}-{b} are not ASCII text"))),
    }
}

fn pdb_number(line: &[u8], a: usize, b: usize, what: &str, path: &Path, no: usize) -> Result<Option<f64>> {
    match cols_str(line, a, b, path, no)? {
        None | Some("") => Ok(None),
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(FormatError::text(path, no, format!("{what} in columns {a}-{b} is {s:?}, not a finite number"))),
        },
    }
}

/// Parse the text of a PDB file (`path` is only used in messages).
pub fn parse_pdb(text: &str, path: &Path) -> Result<Vec<Atom>> {
    let mut atoms = Vec::new();
    let mut seen_alt: HashSet<Vec<u8>> = HashSet::new();
    for (k, line) in text.lines().enumerate() {
        let no = k + 1;
        let line = line.trim_end_matches('\r').as_bytes();
        if line.starts_with(b"ENDMDL") {
            break;
        }
        let hetatm = line.starts_with(b"HETATM");
        if !(hetatm || line.starts_with(b"ATOM  ") || line == b"ATOM") {
            continue;
        }
        if line.len() < 54 {
            return Err(FormatError::text(
                path,
                no,
                format!("ATOM/HETATM record of {} characters; coordinates need columns 31-54", line.len()),
            ));
        }
        let alt = line[16];
        if alt != b' ' {
            // Chain, residue number, insertion code and atom name identify the atom.
            let mut key = line[21..27].to_vec();
            key.extend_from_slice(&line[12..16]);
            if !seen_alt.insert(key) {
                continue;
            }
        }
        let mut pos_a = [0.0; 3];
        for (d, (a, b)) in [(31, 38), (39, 46), (47, 54)].into_iter().enumerate() {
            pos_a[d] = pdb_number(line, a, b, ["x", "y", "z"][d], path, no)?
                .ok_or_else(|| FormatError::text(path, no, format!("{} coordinate (columns {a}-{b}) is blank", ["x", "y", "z"][d])))?;
        }
        let occupancy = pdb_number(line, 55, 60, "occupancy", path, no)?.unwrap_or(1.0);
        let b_factor_a2 = pdb_number(line, 61, 66, "B-factor", path, no)?.unwrap_or(0.0);
        let element = match cols_str(line, 77, 78, path, no)?.and_then(normalise_element) {
            Some(e) => e,
            None => element_from_pdb_name(&line[12..16], hetatm)
                .ok_or_else(|| FormatError::text(path, no, "no element in columns 77-78 and none can be told from the atom name"))?,
        };
        atoms.push(Atom { element, pos_a, b_factor_a2, occupancy });
    }
    if atoms.is_empty() {
        return Err(FormatError::invalid(path, "no ATOM or HETATM records"));
    }
    Ok(atoms)
}

/// One CIF token: its text, the line where it starts (1-based), and whether it was quoted
/// (a quoted `?` or `.` is a value, not the unknown/inapplicable marker).
#[derive(Clone, Copy, Debug)]
struct Tok<'a> {
    text: &'a str,
    line: usize,
    quoted: bool,
}

impl Tok<'_> {
    fn is_tag(&self) -> bool {
        !self.quoted && self.text.starts_with('_')
    }
    /// `loop_`, `data_…`, `save_…`, `global_`, `stop_`: a value can never be one of these.
    fn is_reserved(&self) -> bool {
        if self.quoted {
            return false;
        }
        let t = self.text.as_bytes();
        let starts = |p: &[u8]| t.len() >= p.len() && t[..p.len()].eq_ignore_ascii_case(p);
        starts(b"loop_") || starts(b"data_") || starts(b"save_") || starts(b"global_") || starts(b"stop_")
    }
    fn is_null(&self) -> bool {
        !self.quoted && (self.text == "?" || self.text == ".")
    }
}

/// Splits CIF text into tokens, streaming (nothing is stored but the look-ahead).
struct Tokenizer<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    path: &'a Path,
    peeked: Option<Tok<'a>>,
}

impl<'a> Tokenizer<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        Tokenizer { text, pos: 0, line: 1, path, peeked: None }
    }

    fn peek(&mut self) -> Result<Option<Tok<'a>>> {
        if self.peeked.is_none() {
            self.peeked = self.scan()?;
        }
        Ok(self.peeked)
    }

    fn next_tok(&mut self) -> Result<Option<Tok<'a>>> {
        match self.peeked.take() {
            Some(t) => Ok(Some(t)),
            None => self.scan(),
        }
    }

    fn scan(&mut self) -> Result<Option<Tok<'a>>> {
        let b = self.text.as_bytes();
        loop {
            let Some(&c) = b.get(self.pos) else { return Ok(None) };
            let at_line_start = self.pos == 0 || b[self.pos - 1] == b'\n';
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                // Every ASCII whitespace byte separates tokens (a token is never empty).
                // Every ASCII whitespace byte separates tokens (a token is never empty).
                c if c.is_ascii_whitespace() => self.pos += 1,
                b'#' => {
                    while self.pos < b.len() && b[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b';' if at_line_start => {
                    let start_line = self.line;
                    let start = self.pos + 1;
                    let Some(end) = self.text[start..].find("\n;").map(|i| start + i) else {
                        return Err(FormatError::text(self.path, start_line, "text field (;) is never closed"));
                    };
                    self.line += self.text[start..end + 1].bytes().filter(|&x| x == b'\n').count();
                    self.pos = end + 2;
                    return Ok(Some(Tok { text: &self.text[start..end], line: start_line, quoted: true }));
                }
                b'\'' | b'"' => {
                    let start = self.pos + 1;
                    let mut i = start;
                    loop {
                        match b.get(i) {
                            None | Some(b'\n') => {
                                return Err(FormatError::text(self.path, self.line, "quoted value is never closed"));
                            }
                            Some(&q) if q == c && b.get(i + 1).is_none_or(|n| n.is_ascii_whitespace()) => break,
                            _ => i += 1,
                        }
                    }
                    self.pos = i + 1;
                    return Ok(Some(Tok { text: &self.text[start..i], line: self.line, quoted: true }));
                }
                _ => {
                    let start = self.pos;
                    while self.pos < b.len() && !b[self.pos].is_ascii_whitespace() {
                        self.pos += 1;
                    }
                    return Ok(Some(Tok { text: &self.text[start..self.pos], line: self.line, quoted: false }));
                }
            }
        }
    }
}

/// Column positions of the `_atom_site` items used here.
#[derive(Default)]
struct AtomSiteCols {
    xyz: [Option<usize>; 3],
    type_symbol: Option<usize>,
    atom_name: Option<usize>,
    occupancy: Option<usize>,
    b_iso: Option<usize>,
    alt_id: Option<usize>,
    model: Option<usize>,
    /// Chain, residue number and insertion code (label or author versions).
    residue: Vec<usize>,
}

impl AtomSiteCols {
    fn from_tags(tags: &[&str]) -> Self {
        let find = |names: &[&str]| names.iter().find_map(|n| tags.iter().position(|t| t.eq_ignore_ascii_case(&format!("_atom_site.{n}"))));
        let mut residue = Vec::new();
        for names in [&["label_asym_id", "auth_asym_id"][..], &["label_seq_id", "auth_seq_id"], &["pdbx_PDB_ins_code"]] {
            residue.extend(find(names));
        }
        AtomSiteCols {
            xyz: [find(&["Cartn_x"]), find(&["Cartn_y"]), find(&["Cartn_z"])],
            type_symbol: find(&["type_symbol"]),
            atom_name: find(&["label_atom_id", "auth_atom_id"]),
            occupancy: find(&["occupancy"]),
            b_iso: find(&["B_iso_or_equiv"]),
            alt_id: find(&["label_alt_id", "auth_alt_id"]),
            model: find(&["pdbx_PDB_model_num"]),
            residue,
        }
    }
}

/// Turns `_atom_site` rows into atoms, keeping the first model and the first altloc.
struct AtomSiteReader<'p> {
    path: &'p Path,
    cols: AtomSiteCols,
    first_model: Option<String>,
    seen_alt: HashSet<String>,
    atoms: Vec<Atom>,
}

impl<'p> AtomSiteReader<'p> {
    fn new(path: &'p Path, tags: &[&str], line: usize) -> Result<Self> {
        let cols = AtomSiteCols::from_tags(tags);
        for (d, c) in cols.xyz.iter().enumerate() {
            if c.is_none() {
                return Err(FormatError::text(
                    path,
                    line,
                    format!("the _atom_site category has no _atom_site.Cartn_{} item", ["x", "y", "z"][d]),
                ));
            }
        }
        Ok(AtomSiteReader { path, cols, first_model: None, seen_alt: HashSet::new(), atoms: Vec::new() })
    }

    fn number(&self, t: &Tok, what: &str) -> Result<Option<f64>> {
        if t.is_null() {
            return Ok(None);
        }
        match t.text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(FormatError::text(self.path, t.line, format!("{what} is {:?}, not a finite number", t.text))),
        }
    }

    fn row(&mut self, row: &[Tok]) -> Result<()> {
        let c = &self.cols;
        if let Some(m) = c.model {
            let model = row[m].text;
            match &self.first_model {
                None => self.first_model = Some(model.to_string()),
                Some(first) if first != model => return Ok(()),
                Some(_) => {}
            }
        }
        if let Some(a) = c.alt_id {
            if !row[a].is_null() {
                let mut key = String::new();
                for &k in c.residue.iter().chain(&c.atom_name) {
                    key.push_str(row[k].text);
                    key.push('\u{1}');
                }
                if !self.seen_alt.insert(key) {
                    return Ok(());
                }
            }
        }
        let mut pos_a = [0.0; 3];
        for d in 0..3 {
            let t = &row[c.xyz[d].unwrap_or_default()];
            let what = format!("_atom_site.Cartn_{}", ["x", "y", "z"][d]);
            pos_a[d] =
                self.number(t, &what)?.ok_or_else(|| FormatError::text(self.path, t.line, format!("{what} is unknown ({})", t.text)))?;
        }
        let occupancy = match c.occupancy {
            Some(k) => self.number(&row[k], "_atom_site.occupancy")?.unwrap_or(1.0),
            None => 1.0,
        };
        let b_factor_a2 = match c.b_iso {
            Some(k) => self.number(&row[k], "_atom_site.B_iso_or_equiv")?.unwrap_or(0.0),
            None => 0.0,
        };
        let from = |k: Option<usize>| k.map(|k| &row[k]).filter(|t| !t.is_null()).and_then(|t| normalise_element(t.text));
        let element = match from(c.type_symbol) {
            Some(e) => e,
            None => from(c.atom_name).map(|e| e[..1].to_string()).ok_or_else(|| {
                FormatError::text(self.path, row[0].line, "no _atom_site.type_symbol and no atom name to tell the element")
            })?,
        };
        self.atoms.push(Atom { element, pos_a, b_factor_a2, occupancy });
        Ok(())
    }
}

fn is_atom_site_tag(t: &Tok) -> bool {
    t.is_tag() && t.text.len() > 11 && t.text.as_bytes()[..11].eq_ignore_ascii_case(b"_atom_site.")
}

/// Parse the text of an mmCIF file (`path` is only used in messages).
pub fn parse_mmcif(text: &str, path: &Path) -> Result<Vec<Atom>> {
    let mut tok = Tokenizer::new(text, path);
    // `_atom_site.item value` pairs outside a loop describe a single atom.
    let mut pair_tags: Vec<&str> = Vec::new();
    let mut pair_vals: Vec<Tok> = Vec::new();
    let mut found: Option<AtomSiteReader> = None;
    while let Some(t) = tok.next_tok()? {
        if t.is_reserved() && t.text.eq_ignore_ascii_case("loop_") {
            let mut tags = Vec::new();
            while let Some(n) = tok.peek()? {
                if !n.is_tag() {
                    break;
                }
                tags.push(n.text);
                tok.next_tok()?;
            }
            let is_atom_site = tags.first().is_some_and(|t| is_atom_site_tag(&Tok { text: t, line: 0, quoted: false }));
            if !is_atom_site || found.is_some() {
                continue; // values of other loops are skipped as they come
            }
            let mut reader = AtomSiteReader::new(path, &tags, t.line)?;
            let mut row: Vec<Tok> = Vec::with_capacity(tags.len());
            while let Some(n) = tok.peek()? {
                if n.is_tag() || n.is_reserved() {
                    break;
                }
                row.push(n);
                tok.next_tok()?;
                if row.len() == tags.len() {
                    reader.row(&row)?;
                    row.clear();
                }
            }
            if !row.is_empty() {
                let line = row.last().map_or(t.line, |r| r.line);
                return Err(FormatError::text(
                    path,
                    line,
                    format!("the _atom_site loop ends with an incomplete row: {} of {} values", row.len(), tags.len()),
                ));
            }
            found = Some(reader);
        } else if is_atom_site_tag(&t) {
            let v = tok
                .next_tok()?
                .filter(|v| !v.is_tag() && !v.is_reserved())
                .ok_or_else(|| FormatError::text(path, t.line, format!("{} has no value", t.text)))?;
            pair_tags.push(t.text);
            pair_vals.push(v);
        } else if t.is_reserved() && t.text.len() > 5 && t.text.as_bytes()[..5].eq_ignore_ascii_case(b"data_") && found.is_some() {
            break; // only the first data block with atoms is read
        }
    }
    let atoms = match found {
        Some(r) => r.atoms,
        None if !pair_tags.is_empty() => {
            let mut r = AtomSiteReader::new(path, &pair_tags, pair_vals[0].line)?;
            r.row(&pair_vals)?;
            r.atoms
        }
        None => return Err(FormatError::invalid(path, "no _atom_site category: not an mmCIF coordinate file")),
    };
    if atoms.is_empty() {
        return Err(FormatError::invalid(path, "the _atom_site category holds no atoms"));
    }
    Ok(atoms)
}

/// One pseudo-atom.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PseudoAtom {
    pub pos_a: [f64; 3],
    /// Occupancy column (e.g. normalised amplitude).
    pub occupancy: f64,
    /// B-factor column (Å²).
    pub b_factor_a2: f64,
}

fn check_pseudo_atoms(path: &Path, atoms: &[PseudoAtom]) -> Result<()> {
    for (i, a) in atoms.iter().enumerate() {
        if !(a.pos_a.iter().all(|v| v.is_finite()) && a.occupancy.is_finite() && a.b_factor_a2.is_finite()) {
            return Err(FormatError::invalid(path, format!("pseudo-atom {i} (0-based) holds a NaN or infinite value")));
        }
    }
    Ok(())
}

/// Write pseudo-atoms as an mmCIF `_atom_site` table, atomically. `name` becomes the data
/// block name and entry id (spaces are replaced by `_`).
pub fn write_pseudo_atoms_cif(path: &Path, name: &str, atoms: &[PseudoAtom]) -> Result<()> {
    check_pseudo_atoms(path, atoms)?;
    let name: String = name.chars().map(|c| if c.is_whitespace() { '_' } else { c }).collect();
    let name = if name.is_empty() { "pseudo_atoms".to_string() } else { name };
    write_atomic(path, |w| {
        writeln!(w, "data_{name}\n#\n_entry.id {name}\n#\nloop_")?;
        // gemmi needs label_alt_id; a non-polymer has no label_seq_id ('.'), so each atom is
        // its own residue through auth_seq_id.
        for c in [
            "group_PDB",
            "id",
            "type_symbol",
            "label_atom_id",
            "label_alt_id",
            "label_comp_id",
            "label_asym_id",
            "label_entity_id",
            "label_seq_id",
            "pdbx_PDB_ins_code",
            "Cartn_x",
            "Cartn_y",
            "Cartn_z",
            "occupancy",
            "B_iso_or_equiv",
            "auth_seq_id",
            "auth_comp_id",
            "auth_asym_id",
            "auth_atom_id",
            "pdbx_PDB_model_num",
        ] {
            writeln!(w, "_atom_site.{c}")?;
        }
        for (i, a) in atoms.iter().enumerate() {
            writeln!(
                w,
                "HETATM {} C C . GAU A 1 . ? {:.3} {:.3} {:.3} {:.4} {:.2} {} GAU A C 1",
                i + 1,
                a.pos_a[0],
                a.pos_a[1],
                a.pos_a[2],
                a.occupancy,
                a.b_factor_a2,
                i + 1
            )?;
        }
        writeln!(w, "#")?;
        Ok(())
    })
}

/// `n` in hybrid-36 with `width` characters: decimal below `10^width`, then upper-case
/// base-36 starting at `A000…`, then lower-case base-36 starting at `a000…`.
/// Widths outside 1–8 give `None`.
pub fn hybrid36(n: u64, width: u32) -> Option<String> {
    if !(1..=8).contains(&width) {
        return None;
    }
    let dec = 10u64.pow(width);
    if n < dec {
        return Some(format!("{n:>w$}", w = width as usize));
    }
    let block = 26 * 36u64.pow(width - 1);
    let offset = 10 * 36u64.pow(width - 1);
    let (mut v, digits): (u64, &[u8]) = if n - dec < block {
        (n - dec + offset, b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    } else if n - dec - block < block {
        (n - dec - block + offset, b"0123456789abcdefghijklmnopqrstuvwxyz")
    } else {
        return None;
    };
    let mut out = vec![b'0'; width as usize];
    for slot in out.iter_mut().rev() {
        *slot = digits[(v % 36) as usize];
        v /= 36;
    }
    String::from_utf8(out).ok()
}

/// `v` in at most `width` characters with at most `max_dec` decimals (fewer when needed).
fn fixed(v: f64, width: usize, max_dec: usize) -> Option<String> {
    (0..=max_dec).rev().map(|d| format!("{v:>width$.d$}")).find(|s| s.len() <= width)
}

/// Write pseudo-atoms as a PDB file, atomically: `HETATM` records (serial numbers in
/// hybrid-36 beyond 99,999, residue numbers beyond 9,999), then `END`. Coordinates must fit
/// the 8-character columns (−999.999 to 9999.999 Å); occupancy and B-factor keep as many
/// decimals (up to 2) as their 6 columns allow.
pub fn write_pdb_pseudo_atoms(path: &Path, atoms: &[PseudoAtom]) -> Result<()> {
    check_pseudo_atoms(path, atoms)?;
    let mut lines = String::with_capacity(81 * (atoms.len() + 3));
    lines.push_str("REMARK   1 CRYOSPLAT GAUSSIANS: ONE HETATM PER GAUSSIAN, RESIDUE GAU\n");
    for (i, a) in atoms.iter().enumerate() {
        let serial = hybrid36(i as u64 + 1, 5);
        let resseq = hybrid36(i as u64 + 1, 4);
        let (Some(serial), Some(resseq)) = (serial, resseq) else {
            return Err(FormatError::invalid(
                path,
                format!("{} pseudo-atoms exceed the PDB format's numbering; write mmCIF instead", atoms.len()),
            ));
        };
        let mut xyz = String::with_capacity(24);
        for &v in &a.pos_a {
            let s = format!("{v:>8.3}");
            if s.len() > 8 {
                return Err(FormatError::invalid(
                    path,
                    format!("pseudo-atom {i} (0-based): coordinate {v} Å does not fit the PDB columns; write mmCIF instead"),
                ));
            }
            xyz.push_str(&s);
        }
        let occ = fixed(a.occupancy, 6, 2);
        let b = fixed(a.b_factor_a2, 6, 2);
        let (Some(occ), Some(b)) = (occ, b) else {
            return Err(FormatError::invalid(
                path,
                format!("pseudo-atom {i} (0-based): occupancy {} or B-factor {} does not fit the PDB columns", a.occupancy, a.b_factor_a2),
            ));
        };
        lines.push_str(&format!("HETATM{serial} C    GAU A{resseq}    {xyz}{occ}{b}           C  \n"));
    }
    lines.push_str("END\n");
    write_atomic(path, |w| w.write_all(lines.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid36_numbers() {
        assert_eq!(hybrid36(1, 5).unwrap(), "    1");
        assert_eq!(hybrid36(99_999, 5).unwrap(), "99999");
        assert_eq!(hybrid36(100_000, 5).unwrap(), "A0000");
        assert_eq!(hybrid36(100_001, 5).unwrap(), "A0001");
        assert_eq!(hybrid36(100_035, 5).unwrap(), "A000Z");
        assert_eq!(hybrid36(100_036, 5).unwrap(), "A0010");
        // 26·36⁴ = 43,670,016 upper-case numbers, then lower case.
        assert_eq!(hybrid36(100_000 + 43_670_015, 5).unwrap(), "ZZZZZ");
        assert_eq!(hybrid36(100_000 + 43_670_016, 5).unwrap(), "a0000");
        assert_eq!(hybrid36(87_440_031, 5).unwrap(), "zzzzz");
        assert_eq!(hybrid36(87_440_032, 5), None);
        assert_eq!(hybrid36(9_999, 4).unwrap(), "9999");
        assert_eq!(hybrid36(10_000, 4).unwrap(), "A000");
        assert_eq!(hybrid36(2_436_111, 4).unwrap(), "zzzz");
        assert_eq!(hybrid36(2_436_112, 4), None);
        assert_eq!((hybrid36(5, 0), hybrid36(5, 9)), (None, None));
    }

    #[test]
    fn elements_from_names() {
        let e = |n: &str, het: bool| element_from_pdb_name(n.as_bytes(), het).unwrap();
        assert_eq!(e(" CA ", false), "C");
        assert_eq!(e("CA  ", true), "CA");
        assert_eq!(e("FE  ", true), "FE");
        assert_eq!(e("SE  ", true), "SE");
        assert_eq!(e("HG11", false), "H");
        assert_eq!(e("1HG1", false), "H");
        assert_eq!(e(" OXT", false), "O");
        assert_eq!(normalise_element("Fe2+").unwrap(), "FE");
        assert_eq!(normalise_element(" c").unwrap(), "C");
        assert_eq!(normalise_element("  "), None);
    }

    #[test]
    fn non_ascii_tags_do_not_split_characters() {
        // Byte 11 of "_atom_siteé" falls inside the two-byte "é".
        let e = parse_mmcif("data_x\n_atom_siteé 1\nloop_\n_atom_siteé.x\n1\n", Path::new("u.cif")).unwrap_err().to_string();
        assert!(e.contains("no _atom_site"), "{e}");
    }

    #[test]
    fn form_feed_separates_tokens() {
        // A form feed is ASCII whitespace: it once ended an unquoted token before its first
        // byte, giving empty tokens without end, so that parsing never finished (found by
        // fuzzing).
        let text = "data_x\n_cell.length_a\x0c10\nloop_\n_atom_site.type_symbol\n\
                    _atom_site.Cartn_x\n_atom_site.Cartn_y\n_atom_site.Cartn_z\nC 1 2\x0c3\n";
        let a = parse_mmcif(text, Path::new("ff.cif")).unwrap();
        assert_eq!(a[0].pos_a, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn cif_tokens() {
        let text = "data_x\n_a 'it''s ok' # comment\n_b \"q\"x\"\n;line one\nline two\n;\nloop_ _c ?\n";
        let mut t = Tokenizer::new(text, Path::new("t.cif"));
        let mut got = Vec::new();
        while let Some(k) = t.next_tok().unwrap() {
            got.push((k.text, k.line, k.quoted));
        }
        assert_eq!(
            got,
            vec![
                ("data_x", 1, false),
                ("_a", 2, false),
                ("it''s ok", 2, true),
                ("_b", 3, false),
                ("q\"x", 3, true),
                ("line one\nline two", 4, true),
                ("loop_", 7, false),
                ("_c", 7, false),
                ("?", 7, false),
            ]
        );
        let mut t = Tokenizer::new("_a\n_b 'open\n", Path::new("t.cif"));
        t.next_tok().unwrap();
        t.next_tok().unwrap();
        let e = t.next_tok();
        assert!(e.unwrap_err().to_string().contains("line 2: quoted value is never closed"));
    }
}
