//! What a checkpoint must match to be resumed: a hash of the settings, a hash of the data and
//! the thread count.

use super::ReconstructConfig;
use crate::dataset::ParticleSet;

/// FNV-1a, 64 bit: a stable hash (unlike `std`'s, which may change between releases).
fn fnv1a(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
}

/// `settings=<hash>;data=<hash>;threads=<n>`. The settings hash covers every option that
/// changes the result (not `threads`, which is its own part, nor `checkpoint_every`,
/// `cache_gib` and `max_steps`, which do not change it) and the training box `d`; the data
/// hash covers the box, pixel size, contrast and every particle's image reference, pose and
/// CTF (not the folder the data live in, so a moved data set still resumes).
pub fn fingerprint(set: &ParticleSet, cfg: &ReconstructConfig, d: usize, threads: usize) -> String {
    let neutral = ReconstructConfig { threads: 0, checkpoint_every: 0, cache_gib: 0.0, max_steps: None, ..cfg.clone() };
    let mut hs = 0xcbf2_9ce4_8422_2325u64;
    fnv1a(&mut hs, serde_json::to_string(&neutral).expect("config serialises").as_bytes());
    fnv1a(&mut hs, &(d as u64).to_le_bytes());
    let mut hd = 0xcbf2_9ce4_8422_2325u64;
    fnv1a(&mut hd, format!("{}|{}|{}|{}", set.len(), set.box_px, set.apix, set.invert).as_bytes());
    for (i, p) in set.particles.iter().enumerate() {
        let (stack, index) = set.image_ref(i);
        let stack = stack.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        fnv1a(&mut hd, format!("{stack}@{index}|{:?}|{:?}|{:?}", p.pose, p.ctf, p.random_subset).as_bytes());
    }
    format!("settings={hs:016x};data={hd:016x};threads={threads}")
}

/// Which parts of two fingerprints differ, in words.
pub fn difference(a: &str, b: &str) -> String {
    let parts = |s: &str| s.split(';').map(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect::<Vec<_>>();
    let (pa, pb) = (parts(a), parts(b));
    let mut what: Vec<String> = Vec::new();
    for (x, y) in pa.iter().zip(&pb) {
        match (x, y) {
            (Some((k, va)), Some((_, vb))) if va != vb => what.push(match k.as_str() {
                "threads" => format!("--threads ({va} then, {vb} now)"),
                "data" => "particles (images, poses or CTF)".into(),
                _ => "settings".into(),
            }),
            (None, _) | (_, None) => what.push("settings".into()),
            _ => {}
        }
    }
    if what.is_empty() || pa.len() != pb.len() {
        what.push("settings".into());
        what.dedup();
    }
    what.join(" and ")
}
