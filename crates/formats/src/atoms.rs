//! Pseudo-atom models: Gaussians written as atoms so that ChimeraX and PyMOL show them over a
//! map. One atom per Gaussian (element C, residue `GAU`, chain `A`), at the Gaussian's centre
//! in Å in the map's frame (MRC origin 0, so the box centre is at `D/2·apix`), with the
//! Gaussian's amplitude normalised to `[0, 1]` in the occupancy column and its mean standard
//! deviation as the equivalent B-factor `8π²σ²` (Å²). Written as mmCIF, which has no limit on
//! the number of atoms.

use crate::atomic::write_atomic;
use crate::error::Result;
use std::io::Write;
use std::path::Path;

/// One pseudo-atom.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PseudoAtom {
    pub pos_a: [f64; 3],
    /// Occupancy column (e.g. normalised amplitude).
    pub occupancy: f64,
    /// B-factor column (Å²).
    pub b_factor_a2: f64,
}

/// Write pseudo-atoms as an mmCIF `_atom_site` table, atomically.
pub fn write_pseudo_atoms_cif(path: &Path, name: &str, atoms: &[PseudoAtom]) -> Result<()> {
    write_atomic(path, |w| {
        writeln!(w, "data_{name}\n#\n_entry.id {name}\n#\nloop_")?;
        for c in [
            "group_PDB", "id", "type_symbol", "label_atom_id", "label_comp_id", "label_asym_id", "label_entity_id", "label_seq_id",
            "Cartn_x", "Cartn_y", "Cartn_z", "occupancy", "B_iso_or_equiv", "auth_seq_id", "auth_asym_id", "pdbx_PDB_model_num",
        ] {
            writeln!(w, "_atom_site.{c}")?;
        }
        for (i, a) in atoms.iter().enumerate() {
            writeln!(
                w,
                "HETATM {} C C GAU A 1 {} {:.3} {:.3} {:.3} {:.4} {:.2} {} A 1",
                i + 1,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.cif");
        write_pseudo_atoms_cif(&p, "test", &[PseudoAtom { pos_a: [1.0, 2.0, 3.0], occupancy: 0.5, b_factor_a2: 20.0 }]).unwrap();
        let t = std::fs::read_to_string(&p).unwrap();
        assert!(t.contains("HETATM 1 C C GAU A 1 1 1.000 2.000 3.000 0.5000 20.00 1 A 1"), "{t}");
    }
}
