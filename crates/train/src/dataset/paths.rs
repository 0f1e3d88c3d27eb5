//! Where the image stacks named by the metadata are: the search order of the module docs.

use super::{LoadOptions, ParticleSet};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where relative image paths are looked for.
pub(super) struct Base {
    datadir: Option<PathBuf>,
    meta_dir: PathBuf,
}

impl Base {
    pub(super) fn new(metadata: &Path, opts: &LoadOptions) -> Base {
        let meta_dir = metadata.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Base { datadir: opts.datadir.clone(), meta_dir }
    }

    /// Where [`Base::candidates`] looks, in words.
    fn describe(&self) -> String {
        match &self.datadir {
            Some(d) => format!("in {} (with its folders, or by file name alone)", d.display()),
            None => format!(
                "beside the metadata (in {}), in its parent folders up to three levels, or in the current folder",
                self.meta_dir.display()
            ),
        }
    }

    /// Candidate locations of `rel`, in order of preference (see the module docs).
    fn candidates(&self, rel: &Path) -> Vec<PathBuf> {
        let file_name = rel.file_name().map(PathBuf::from);
        let mut out = Vec::new();
        if let Some(d) = &self.datadir {
            out.push(d.join(rel));
            if let Some(f) = &file_name {
                out.push(d.join(f));
            }
        } else if rel.is_absolute() {
            out.push(rel.to_path_buf());
        } else {
            out.push(self.meta_dir.join(rel));
            let mut up = self.meta_dir.clone();
            for _ in 0..3 {
                up = up.join("..");
                out.push(up.join(rel));
            }
            out.push(rel.to_path_buf());
            if let Some(f) = &file_name {
                out.push(self.meta_dir.join(f));
            }
        }
        out.dedup();
        out
    }
}

impl ParticleSet {
    /// Add a stack (deduplicated by the name in the metadata) and return its index.
    pub(super) fn stack_id(&mut self, rel: &str, base: &Base, names: &mut HashMap<String, usize>) -> usize {
        if let Some(&i) = names.get(rel) {
            return i;
        }
        let cands = base.candidates(Path::new(rel));
        let found = cands.iter().position(|c| c.is_file());
        let chosen = match found {
            Some(k) => {
                if k > 0 {
                    let dir = cands[k].parent().map(|d| d.display().to_string()).unwrap_or_default();
                    self.warn(format!("image paths are resolved against {dir} (e.g. {rel} was not found beside the metadata file)"));
                }
                cands[k].clone()
            }
            None => {
                self.loading.missing.push(rel.to_string());
                self.loading.searched = base.describe();
                cands[0].clone()
            }
        };
        self.stacks.push(chosen);
        self.handles.push(OnceLock::new());
        let i = self.stacks.len() - 1;
        names.insert(rel.to_string(), i);
        i
    }
}
