//! STAR files as RELION writes and reads them.
//!
//! A file holds `data_NAME` blocks; a block holds `_label value` pairs and `loop_` tables (a
//! list of `_label` lines, then rows of whitespace-separated values). The reader accepts:
//!
//! * any number of blocks, pairs and loops, in any order, and any column order;
//! * labels with a `#n` column-number suffix or trailing text (both ignored);
//! * values quoted with `'` or `"` (a quote closes only when followed by whitespace or the end
//!   of the line, as in STAR 1.1, so `'it's'` is the value `it's`);
//! * `#` comments (a `#` starts a comment at the beginning of a token, outside quotes);
//! * CRLF line ends, blank lines inside loops, and a loop row spread over several lines.
//!
//! Everything is kept as text; [`Table::f64`] and [`Table::f64_column`] convert on demand, and
//! a value that is not a finite number is an error naming the file, the line, the column
//! label and the value. Every error names the file and the 1-based line.
//!
//! [`write()`] produces RELION 3.1 form (`# version 30001`, one loop per block), which RELION 5,
//! `starfile` and `gemmi` read; [`write_file`] writes any [`StarFile`] (pairs and loops). Both
//! write atomically.

use crate::atomic::write_atomic;
use crate::error::{FormatError, Result};
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A `loop_` table: labels (without the leading `_` and any `#n`), and rows of raw strings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub labels: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// The 1-based line where every row starts, for messages (0 for rows built in memory).
    pub row_lines: Vec<usize>,
}

/// One `data_` block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Block {
    /// The block name, without `data_` (RELION 3.0 particle files use the empty name).
    pub name: String,
    /// `_label value` pairs outside loops, with their lines.
    pub pairs: Vec<(String, String, usize)>,
    pub tables: Vec<Table>,
    /// The line of the `data_` statement.
    pub line: usize,
}

/// A parsed STAR file.
#[derive(Clone, Debug, PartialEq)]
pub struct StarFile {
    pub path: PathBuf,
    pub blocks: Vec<Block>,
}

impl StarFile {
    /// The first block called `name` (without `data_`).
    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// The first table anywhere in the file that has a column `label`, with its block.
    pub fn table_with(&self, label: &str) -> Option<(&Block, &Table)> {
        self.blocks.iter().find_map(|b| b.tables.iter().find(|t| t.column(label).is_some()).map(|t| (b, t)))
    }
}

impl Block {
    /// The first table of the block.
    pub fn table(&self) -> Option<&Table> {
        self.tables.first()
    }
    /// The value of a `_label value` pair.
    pub fn pair(&self, label: &str) -> Option<&str> {
        self.pairs.iter().find(|(l, _, _)| l == label).map(|(_, v, _)| v.as_str())
    }
}

impl Table {
    /// An empty table with these labels.
    pub fn new<S: AsRef<str>>(labels: &[S]) -> Table {
        Table { labels: labels.iter().map(|l| l.as_ref().to_string()).collect(), ..Default::default() }
    }

    /// Column index of `label`.
    pub fn column(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Raw value at (row, column). Panics when out of range (a bug in the caller).
    pub fn get(&self, row: usize, col: usize) -> &str {
        &self.rows[row][col]
    }

    /// The line of `row` (0 for rows built in memory).
    pub fn line(&self, row: usize) -> usize {
        self.row_lines.get(row).copied().unwrap_or(0)
    }

    /// Numeric value at (row, column); a value that is not a finite number is an error naming
    /// the file, the line, the column and the value.
    pub fn f64(&self, path: &Path, row: usize, col: usize) -> Result<f64> {
        let v = &self.rows[row][col];
        match parse_number(v) {
            Some(x) => Ok(x),
            None => {
                Err(FormatError::text(path, self.line(row), format!("column {} holds {v:?}, expected a finite number", self.labels[col])))
            }
        }
    }

    /// Numeric value of `label` at `row`, or `None` when the column is absent.
    pub fn f64_opt(&self, path: &Path, row: usize, label: &str) -> Result<Option<f64>> {
        match self.column(label) {
            Some(c) => self.f64(path, row, c).map(Some),
            None => Ok(None),
        }
    }

    /// A whole numeric column, or `None` when the column is absent. The first value that is
    /// not a finite number is an error naming the file, line, column and value.
    pub fn f64_column(&self, path: &Path, label: &str) -> Result<Option<Vec<f64>>> {
        let Some(c) = self.column(label) else { return Ok(None) };
        (0..self.rows.len()).map(|r| self.f64(path, r, c)).collect::<Result<Vec<_>>>().map(Some)
    }

    /// Append a row. Panics when the number of values differs from the number of labels (a
    /// bug in the caller).
    pub fn push_row(&mut self, values: Vec<String>) {
        assert_eq!(values.len(), self.labels.len(), "a STAR row needs one value per label");
        self.row_lines.push(0);
        self.rows.push(values);
    }
}

/// A number as RELION writes them (`12`, `-3.5`, `1.2e+04`); `nan` and `inf` are refused.
fn parse_number(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// STAR whitespace (ASCII only, so that byte positions are always character boundaries).
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c')
}

/// Split one line into tokens: whitespace-separated, quotes group, `#` at a token start ends
/// the line. The tokens go to `out`; returns whether the first token was quoted (a quoted
/// token is always a value, never a keyword or a label).
fn tokens<'a>(line: &'a str, path: &Path, lineno: usize, out: &mut Vec<&'a str>) -> Result<bool> {
    out.clear();
    let mut first_quoted = false;
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_ws(c) {
            i += 1;
            continue;
        }
        if c == b'#' {
            break;
        }
        if c == b'\'' || c == b'"' {
            let start = i + 1;
            let mut j = start;
            loop {
                if j >= b.len() {
                    return Err(FormatError::text(
                        path,
                        lineno,
                        format!("unterminated quote {} (a closing quote must be followed by a space or the line end)", c as char),
                    ));
                }
                if b[j] == c && (j + 1 == b.len() || is_ws(b[j + 1])) {
                    break;
                }
                j += 1;
            }
            if out.is_empty() {
                first_quoted = true;
            }
            out.push(&line[start..j]);
            i = j + 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_ws(b[i]) {
            i += 1;
        }
        out.push(&line[start..i]);
    }
    Ok(first_quoted)
}

/// A label token without the leading `_` and any `#n` suffix glued to it.
fn clean_label(tok: &str) -> &str {
    let t = &tok[1..];
    match t.find('#') {
        Some(p) => &t[..p],
        None => t,
    }
}

/// Parse STAR text. `path` names the file in messages.
pub fn parse_str(text: &str, path: &Path) -> Result<StarFile> {
    #[derive(PartialEq, Clone, Copy)]
    enum State {
        Top,
        Labels,
        Rows,
    }
    let mut blocks: Vec<Block> = Vec::new();
    let mut state = State::Top;
    // A row being assembled across lines: its values and its first line.
    let mut pending: Vec<String> = Vec::new();
    let mut pending_line = 0usize;
    let mut toks: Vec<&str> = Vec::new();

    // The current loop ends here: a partial row is an error.
    fn end_loop(pending: &[String], pending_line: usize, ncols: usize, path: &Path) -> Result<()> {
        if pending.is_empty() {
            Ok(())
        } else {
            Err(FormatError::text(
                path,
                pending_line,
                format!("incomplete loop row: {} values, but the loop declares {ncols} columns", pending.len()),
            ))
        }
    }
    let ncols = |blocks: &[Block]| blocks.last().and_then(|b| b.tables.last()).map_or(0, |t| t.labels.len());

    for (k, line) in text.split('\n').enumerate() {
        let lineno = k + 1;
        let first_quoted = tokens(line, path, lineno, &mut toks)?;
        let Some(&first) = toks.first() else {
            // Blank or comment: a blank line does not end a loop in RELION's reader.
            continue;
        };
        let keyword = !first_quoted;
        if keyword && first.starts_with("data_") {
            if state == State::Rows || state == State::Labels {
                end_loop(&pending, pending_line, ncols(&blocks), path)?;
            }
            if toks.len() > 1 {
                return Err(FormatError::text(path, lineno, format!("unexpected {:?} after {first}", toks[1])));
            }
            blocks.push(Block { name: first[5..].to_string(), line: lineno, ..Default::default() });
            state = State::Top;
            continue;
        }
        let Some(block) = blocks.last_mut() else {
            return Err(FormatError::text(path, lineno, format!("{first:?} before any data_ block: not a STAR file")));
        };
        if keyword && first == "loop_" {
            if state == State::Rows || state == State::Labels {
                end_loop(&pending, pending_line, ncols(&blocks), path)?;
            }
            let block = blocks.last_mut().expect("checked above");
            if toks.len() > 1 {
                return Err(FormatError::text(path, lineno, format!("unexpected {:?} after loop_", toks[1])));
            }
            block.tables.push(Table::default());
            state = State::Labels;
            continue;
        }
        if keyword && first.starts_with('_') {
            let label = clean_label(first);
            if label.is_empty() {
                return Err(FormatError::text(path, lineno, format!("{first:?} is not a label")));
            }
            if state == State::Labels {
                let t = block.tables.last_mut().expect("loop_ pushed a table");
                if t.labels.iter().any(|l| l == label) {
                    return Err(FormatError::text(path, lineno, format!("column {label} is declared twice in this loop")));
                }
                if let Some(extra) = toks.get(1) {
                    // RELION writes "_label #n" (a comment); anything else would be lost.
                    return Err(FormatError::text(
                        path,
                        lineno,
                        format!("unexpected {extra:?} after the loop label {first} (one label per line)"),
                    ));
                }
                t.labels.push(label.to_string());
                continue;
            }
            // A key-value pair (ends any loop).
            if state == State::Rows {
                let n = block.tables.last().map_or(0, |t| t.labels.len());
                end_loop(&pending, pending_line, n, path)?;
            }
            state = State::Top;
            // Like RELION, anything after the value is ignored.
            let value = match toks.get(1) {
                Some(v) => v.to_string(),
                None => return Err(FormatError::text(path, lineno, format!("{first} has no value"))),
            };
            block.pairs.push((label.to_string(), value, lineno));
            continue;
        }
        match state {
            State::Top => {
                return Err(FormatError::text(
                    path,
                    lineno,
                    format!("unexpected {first:?} outside a loop (expected data_, loop_ or a _label)"),
                ))
            }
            State::Labels | State::Rows => {
                let t = block.tables.last_mut().expect("loop_ pushed a table");
                if t.labels.is_empty() {
                    return Err(FormatError::text(path, lineno, format!("loop_ has no labels before the value {first:?}")));
                }
                state = State::Rows;
                let n = t.labels.len();
                if pending.is_empty() && toks.len() == n {
                    t.rows.push(toks.iter().map(|s| s.to_string()).collect());
                    t.row_lines.push(lineno);
                    continue;
                }
                if pending.is_empty() {
                    pending_line = lineno;
                }
                pending.extend(toks.iter().map(|s| s.to_string()));
                if pending.len() == n {
                    t.rows.push(std::mem::take(&mut pending));
                    t.row_lines.push(pending_line);
                } else if pending.len() > n {
                    let msg = if pending_line == lineno {
                        format!("row has {} values but the loop declares {n} columns", pending.len())
                    } else {
                        format!("the row starting on line {pending_line} has {} values but the loop declares {n} columns", pending.len())
                    };
                    return Err(FormatError::text(path, lineno, msg));
                }
            }
        }
    }
    if state == State::Rows || state == State::Labels {
        end_loop(&pending, pending_line, ncols(&blocks), path)?;
    }
    if blocks.is_empty() {
        return Err(FormatError::invalid(path, "no data_ block: not a STAR file"));
    }
    Ok(StarFile { path: path.to_path_buf(), blocks })
}

/// Read and parse a STAR file.
pub fn read(path: &Path) -> Result<StarFile> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    parse_bytes(&bytes, path)
}

/// Parse STAR content held in `bytes` (it must be UTF-8 text).
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<StarFile> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        FormatError::text(path, line, format!("byte {at} is not UTF-8 text: not a STAR file"))
    })?;
    parse_str(text, path)
}

/// How a value must be written: bare, or inside `'` or `"`. `None` when STAR cannot hold it
/// on one line (a line break, or whitespace with both quote characters).
fn quoted(v: &str) -> Option<String> {
    if v.contains(['\n', '\r']) {
        return None;
    }
    let special = v.is_empty()
        || v.bytes().any(is_ws)
        || v.starts_with(['#', '\'', '"', '_', '$', ';', '[', ']'])
        || v.starts_with("data_")
        || v.starts_with("save_")
        || v.eq_ignore_ascii_case("loop_")
        || v.eq_ignore_ascii_case("stop_")
        || v.eq_ignore_ascii_case("global_");
    if !special {
        return Some(v.to_string());
    }
    // A quote inside the value is harmless unless followed by whitespace, as the reader
    // defines it (`is_ws`, which includes the vertical tab).
    let closes = |q: char| {
        let q = q as u8;
        v.as_bytes().windows(2).any(|w| w[0] == q && is_ws(w[1]))
    };
    if !v.contains('"') || !closes('"') && !v.ends_with('"') {
        return Some(format!("\"{v}\""));
    }
    if !closes('\'') && !v.ends_with('\'') {
        return Some(format!("'{v}'"));
    }
    None
}

fn format_value(out: &mut String, v: &str, what: impl Fn() -> String) -> std::result::Result<(), String> {
    match quoted(v) {
        Some(q) => {
            out.push_str(&q);
            Ok(())
        }
        None => Err(format!("{}: the value {v:?} cannot be written to a STAR file (line break or both quote kinds)", what())),
    }
}

/// The text of a STAR file holding every block of `file` (pairs first, then loops), in
/// RELION 3.1 form. Values that STAR cannot hold are an error naming the block and label.
pub fn format_file(file: &StarFile) -> Result<String> {
    let mut s = String::from("\n# version 30001\n\n");
    let err = |m: String| FormatError::invalid(&file.path, m);
    for b in &file.blocks {
        let _ = write!(s, "data_{}\n\n", b.name);
        for (l, v, _) in &b.pairs {
            let _ = write!(s, "_{l} ");
            format_value(&mut s, v, || format!("data_{}, _{l}", b.name)).map_err(err)?;
            s.push('\n');
        }
        if !b.pairs.is_empty() {
            s.push('\n');
        }
        for t in &b.tables {
            format_table(&mut s, &b.name, t).map_err(err)?;
        }
    }
    Ok(s)
}

fn format_table(s: &mut String, block: &str, t: &Table) -> std::result::Result<(), String> {
    s.push_str("loop_\n");
    for (i, l) in t.labels.iter().enumerate() {
        let _ = writeln!(s, "_{l} #{}", i + 1);
    }
    for row in &t.rows {
        if row.len() != t.labels.len() {
            return Err(format!("data_{block}: a row has {} values for {} labels", row.len(), t.labels.len()));
        }
        for (k, v) in row.iter().enumerate() {
            if k > 0 {
                s.push(' ');
            }
            format_value(s, v, || format!("data_{block}, column {}", t.labels[k]))?;
        }
        s.push('\n');
    }
    s.push('\n');
    Ok(())
}

/// Write blocks (each `(name, table)`) as a RELION 3.1 STAR file, atomically.
pub fn write(path: &Path, blocks: &[(&str, &Table)]) -> Result<()> {
    let mut s = String::from("\n# version 30001\n\n");
    for (name, t) in blocks {
        let _ = write!(s, "data_{name}\n\n");
        format_table(&mut s, name, t).map_err(|m| FormatError::invalid(path, m))?;
    }
    write_atomic(path, |w| w.write_all(s.as_bytes()))
}

/// Write a whole [`StarFile`] (pairs and loops) to `path`, atomically.
pub fn write_file(path: &Path, file: &StarFile) -> Result<()> {
    let s = format_file(file).map_err(|e| match e {
        FormatError::Invalid { msg, .. } => FormatError::invalid(path, msg),
        other => other,
    })?;
    write_atomic(path, |w| w.write_all(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_blocks_loops_pairs_quotes_comments() {
        let text = "# a comment\r\ndata_optics\r\nloop_\r\n_rlnOpticsGroup #1\r\n_rlnOpticsGroupName #2\r\n1 'group one'\r\n\r\ndata_general\n_rlnFoo 3.5 # trailing\n\ndata_particles\nloop_\n_rlnB\n_rlnA\n\"x y\" 2\nz 3\n";
        let s = parse_str(text, Path::new("t.star")).unwrap();
        assert_eq!(s.blocks.len(), 3);
        let o = s.block("optics").unwrap().table().unwrap();
        assert_eq!(o.labels, vec!["rlnOpticsGroup", "rlnOpticsGroupName"]);
        assert_eq!(o.rows[0], vec!["1", "group one"]);
        assert_eq!(s.block("general").unwrap().pair("rlnFoo"), Some("3.5"));
        let p = s.block("particles").unwrap().table().unwrap();
        assert_eq!(p.rows, vec![vec!["x y".to_string(), "2".into()], vec!["z".into(), "3".into()]]);
        assert_eq!(p.row_lines, vec![15, 16]);
        assert_eq!(p.f64(Path::new("t.star"), 1, 1).unwrap(), 3.0);
        let e = p.f64(Path::new("t.star"), 0, 0).unwrap_err().to_string();
        assert!(e.contains("t.star: line 15") && e.contains("rlnB") && e.contains("\"x y\""), "{e}");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_str("data_\nloop_\n_a\n_b\n1 2 3\n", Path::new("bad.star")).unwrap_err().to_string();
        assert!(e.contains("bad.star: line 5") && e.contains("3 values"), "{e}");
        let e = parse_str("data_\n_a 'open\n", Path::new("q.star")).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("unterminated"), "{e}");
        let e = parse_str("hello\n", Path::new("n.star")).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(parse_str("", Path::new("e.star")).is_err());
    }

    #[test]
    fn quoting_rules() {
        for v in ["plain", "a b", "", "it's", "say \"hi\"", "'lead", "\"lead", "_x", "data_x", "loop_", "#c", "both ' \" x"] {
            let q = quoted(v);
            if v == "both ' \" x" {
                assert!(q.is_none());
                continue;
            }
            let q = q.unwrap();
            let text = format!("data_\n_k {q}\n");
            let s = parse_str(&text, Path::new("q.star")).unwrap_or_else(|e| panic!("{v:?} → {q:?}: {e}"));
            assert_eq!(s.blocks[0].pair("k"), Some(v), "{q}");
        }
        assert!(quoted("a\nb").is_none());
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.star");
        let mut t = Table::new(&["rlnImageName", "rlnDefocusU"]);
        t.push_row(vec!["000001@a b.mrcs".into(), "12000.5".into()]);
        t.push_row(vec!["000002@a b.mrcs".into(), "-3".into()]);
        write(&p, &[("particles", &t)]).unwrap();
        let s = read(&p).unwrap();
        let r = s.block("particles").unwrap().table().unwrap();
        assert_eq!(r.labels, t.labels);
        assert_eq!(r.rows, t.rows);
    }
}
