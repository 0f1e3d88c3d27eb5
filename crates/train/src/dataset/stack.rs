//! A bare MRC stack: every image a particle, poses and CTF to come from cryoDRGN pickles.

use super::{Particle, ParticleSet, Result, SourceKind};
use cryosplat_core::ctf::CtfParams;
use cryosplat_core::pose::Pose;
use cryosplat_formats::mrc::MrcFile;
use std::path::Path;
use std::sync::OnceLock;

/// An MRC stack on its own (poses and CTF come from pickles).
pub(super) fn read(path: &Path) -> Result<ParticleSet> {
    let f = MrcFile::open(path)?;
    let mut set = ParticleSet::empty(path, SourceKind::Stack);
    let n = f.len();
    set.loading.meta_box = Some(f.header().nx);
    set.stacks.push(path.to_path_buf());
    set.handles.push(OnceLock::new());
    let _ = set.handles[0].set(Ok(f));
    set.particles = (0..n)
        .map(|i| Particle {
            stack: 0,
            index: i,
            pose: Pose::default(),
            ctf: CtfParams { amp_contrast: 0.0, voltage_kv: 200.0, ..CtfParams::flat() },
            optics_group: 1,
            random_subset: None,
            source_row: None,
            position: i,
        })
        .collect();
    Ok(set)
}
