//! STAR files as RELION writes and reads them.
//!
//! A file holds `data_NAME` blocks; a block holds `_label value` pairs and `loop_` tables
//! (a list of `_label` lines, then rows of whitespace-separated values). Labels may carry a
//! `#n` column-number suffix (ignored), values may be quoted with `'` or `"`, `#` starts a
//! comment outside quotes, and CRLF line ends are accepted. Column order is free.
//!
//! [`write`] produces RELION 3.1 form (`# version 30001`, one loop per block), which RELION 5,
//! `starfile` and `gemmi` read.

use crate::atomic::write_atomic;
use crate::error::{FormatError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A `loop_` table: labels (without the leading `_` and any `#n`), and rows of raw strings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub labels: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// The 1-based line of every row, for messages.
    pub row_lines: Vec<usize>,
}

/// One `data_` block.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Block {
    pub name: String,
    /// `_label value` pairs outside loops, with their lines.
    pub pairs: Vec<(String, String, usize)>,
    pub tables: Vec<Table>,
}

/// A parsed STAR file.
#[derive(Clone, Debug, PartialEq)]
pub struct StarFile {
    pub path: PathBuf,
    pub blocks: Vec<Block>,
}

impl StarFile {
    /// The block called `name` (without `data_`).
    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
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

    /// Raw value at (row, column).
    pub fn get(&self, row: usize, col: usize) -> &str {
        &self.rows[row][col]
    }

    /// Numeric value at (row, column); a value that is not a number is an error naming the
    /// file, the line, the column and the value.
    pub fn f64(&self, path: &Path, row: usize, col: usize) -> Result<f64> {
        let v = &self.rows[row][col];
        v.parse::<f64>().map_err(|_| {
            FormatError::text(path, self.row_lines[row], format!("column {} holds {v:?}, expected a number", self.labels[col]))
        })
    }

    /// Numeric value of `label` at `row`, or `None` when the column is absent.
    pub fn f64_opt(&self, path: &Path, row: usize, label: &str) -> Result<Option<f64>> {
        match self.column(label) {
            Some(c) => self.f64(path, row, c).map(Some),
            None => Ok(None),
        }
    }

    /// Append a column (all rows get `value`).
    pub fn push_row(&mut self, values: Vec<String>) {
        debug_assert_eq!(values.len(), self.labels.len());
        self.row_lines.push(0);
        self.rows.push(values);
    }
}

/// Split one line into tokens: whitespace-separated, quotes group, `#` outside quotes ends it.
fn tokens(line: &str, path: &Path, lineno: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' {
            break;
        }
        if c == '\'' || c == '"' {
            chars.next();
            let start = i + 1;
            let mut end = None;
            while let Some((j, d)) = chars.next() {
                // A closing quote must be followed by whitespace or the end of the line.
                if d == c && chars.peek().is_none_or(|&(_, n)| n.is_whitespace()) {
                    end = Some(j);
                    break;
                }
            }
            let end = end.ok_or_else(|| FormatError::text(path, lineno, format!("unterminated quote {c}")))?;
            out.push(line[start..end].to_string());
            continue;
        }
        let start = i;
        let mut end = line.len();
        while let Some(&(j, d)) = chars.peek() {
            if d.is_whitespace() {
                end = j;
                break;
            }
            chars.next();
        }
        out.push(line[start..end].to_string());
    }
    Ok(out)
}

fn clean_label(tok: &str) -> String {
    let t = tok.trim_start_matches('_');
    match t.find('#') {
        Some(p) => t[..p].to_string(),
        None => t.to_string(),
    }
}

/// Parse STAR text. `path` names the file in messages.
pub fn parse_str(text: &str, path: &Path) -> Result<StarFile> {
    #[derive(PartialEq)]
    enum State {
        Top,
        Labels,
        Rows,
    }
    let mut blocks: Vec<Block> = Vec::new();
    let mut state = State::Top;
    for (k, raw) in text.lines().enumerate() {
        let lineno = k + 1;
        let line = raw.trim_end_matches('\r');
        let toks = tokens(line, path, lineno)?;
        let Some(first) = toks.first() else {
            // Blank or comment: a blank line does not end a loop in RELION's reader.
            continue;
        };
        if let Some(name) = first.strip_prefix("data_") {
            blocks.push(Block { name: name.to_string(), ..Default::default() });
            state = State::Top;
            continue;
        }
        let block = blocks.last_mut().ok_or_else(|| FormatError::text(path, lineno, format!("{first:?} before any data_ block")))?;
        if first == "loop_" {
            block.tables.push(Table::default());
            state = State::Labels;
            continue;
        }
        if first.starts_with('_') {
            if state == State::Labels {
                block.tables.last_mut().expect("loop_ pushed a table").labels.push(clean_label(first));
                continue;
            }
            // A key-value pair (ends any loop).
            state = State::Top;
            let value = toks.get(1).cloned().ok_or_else(|| FormatError::text(path, lineno, format!("{first} has no value")))?;
            block.pairs.push((clean_label(first), value, lineno));
            continue;
        }
        match state {
            State::Top => return Err(FormatError::text(path, lineno, format!("unexpected {first:?} outside a loop"))),
            State::Labels | State::Rows => {
                state = State::Rows;
                let t = block.tables.last_mut().expect("loop_ pushed a table");
                if toks.len() != t.labels.len() {
                    return Err(FormatError::text(
                        path,
                        lineno,
                        format!("row has {} values but the loop declares {} columns", toks.len(), t.labels.len()),
                    ));
                }
                t.rows.push(toks);
                t.row_lines.push(lineno);
            }
        }
    }
    if blocks.is_empty() {
        return Err(FormatError::invalid(path, "no data_ block: not a STAR file"));
    }
    Ok(StarFile { path: path.to_path_buf(), blocks })
}

/// Read and parse a STAR file.
pub fn read(path: &Path) -> Result<StarFile> {
    let bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        FormatError::binary(path, e.utf8_error().valid_up_to() as u64, "not UTF-8 text: not a STAR file")
    })?;
    parse_str(&text, path)
}

fn needs_quotes(v: &str) -> bool {
    v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '#' || c == '\'' || c == '"') || v.starts_with('_') || v.starts_with("data_") || v == "loop_"
}

/// Write blocks (each `(name, table)`) as a RELION 3.1 STAR file, atomically.
pub fn write(path: &Path, blocks: &[(&str, &Table)]) -> Result<()> {
    write_atomic(path, |w| {
        writeln!(w, "\n# version 30001\n")?;
        for (name, t) in blocks {
            writeln!(w, "data_{name}\n\nloop_")?;
            for (i, l) in t.labels.iter().enumerate() {
                writeln!(w, "_{l} #{}", i + 1)?;
            }
            for row in &t.rows {
                let mut first = true;
                for v in row {
                    if !first {
                        w.write_all(b" ")?;
                    }
                    first = false;
                    if needs_quotes(v) {
                        write!(w, "\"{v}\"")?;
                    } else {
                        w.write_all(v.as_bytes())?;
                    }
                }
                w.write_all(b"\n")?;
            }
            writeln!(w)?;
        }
        Ok(())
    })
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
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.star");
        let mut t = Table { labels: vec!["rlnImageName".into(), "rlnDefocusU".into()], ..Default::default() };
        t.push_row(vec!["000001@a b.mrcs".into(), "12000.5".into()]);
        t.push_row(vec!["000002@a b.mrcs".into(), "-3".into()]);
        write(&p, &[("particles", &t)]).unwrap();
        let s = read(&p).unwrap();
        let r = s.block("particles").unwrap().table().unwrap();
        assert_eq!(r.labels, t.labels);
        assert_eq!(r.rows, t.rows);
    }
}
