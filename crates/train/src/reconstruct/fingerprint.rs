//! What a checkpoint must match to be resumed: the settings that change the result, a hash of
//! the data and the thread count.
//!
//! `--epochs` (and `--min-steps`) are not part of it, so a finished run can be extended by
//! resuming it with a larger `--epochs` (the learning-rate schedule then spans the new total;
//! see [`super`]).

use super::ReconstructConfig;
use crate::dataset::{fnv1a, ParticleSet, FNV1A_START};

/// A run's identity for resuming.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint {
    /// Every setting that changes the result, as JSON (not `epochs` and `min_steps`, which
    /// may change on resume, nor `threads`, `checkpoint_every`, `cache_gib` and `max_steps`;
    /// `sym`, `init`, `coarse_to_fine` and `grow` only when they differ from C1, the random
    /// start, off and off, the behaviour before they existed), and the training box.
    pub settings: serde_json::Value,
    /// Hash of the box, pixel size, contrast and every particle's image reference, pose and
    /// CTF (not the folder the data live in, so a moved data set still resumes).
    pub data: String,
    pub threads: usize,
}

/// The fingerprint of a run of `set` with `cfg` at training box `d` on `threads` threads.
pub fn fingerprint(set: &ParticleSet, cfg: &ReconstructConfig, d: usize, threads: usize) -> Fingerprint {
    let settings = settings(cfg, d);
    let mut hd = FNV1A_START;
    fnv1a(&mut hd, format!("{}|{}|{}|{}", set.len(), set.box_px, set.apix, set.invert).as_bytes());
    for (i, p) in set.particles.iter().enumerate() {
        fnv1a(&mut hd, format!("{}|{:?}|{:?}|{:?}", set.image_id(i), p.pose, p.ctf, p.random_subset).as_bytes());
    }
    Fingerprint { settings, data: format!("{hd:016x}"), threads }
}

/// The settings part of a fingerprint (see [`Fingerprint::settings`]). `--average-tail` enters
/// as the fraction used at box `d`, so that leaving it out and giving its default value are the
/// same run.
fn settings(cfg: &ReconstructConfig, d: usize) -> serde_json::Value {
    let mut settings = serde_json::to_value(cfg).expect("config serialises");
    if let Some(m) = settings.as_object_mut() {
        for k in ["epochs", "min_steps", "threads", "checkpoint_every", "cache_gib", "max_steps"] {
            m.remove(k);
        }
        m.insert("training_box_px".into(), d.into());
        m.insert("average_tail".into(), cfg.average_tail_for(d).into());
        // Settings added later are left out at their old behaviour, so that checkpoints written
        // before they existed still resume.
        for (k, old) in [("sym", "C1"), ("init", "random")] {
            if m.get(k).and_then(|v| v.as_str()) == Some(old) {
                m.remove(k);
            }
        }
        if m.get("refine").is_some_and(|v| v.is_null()) {
            m.remove("refine");
        }
        for (k, old) in [("coarse_to_fine", "off"), ("grow", "off")] {
            if m.get(k).and_then(|v| v.as_str()) == Some(old) {
                m.remove(k);
            }
        }
    }
    settings
}

/// What differs between the checkpoint's fingerprint `then` and this run's `now`, in words
/// naming the options; empty when nothing does.
pub fn difference(then: &Fingerprint, now: &Fingerprint) -> String {
    let mut what: Vec<String> = Vec::new();
    let empty = serde_json::Map::new();
    let (a, b) = (then.settings.as_object().unwrap_or(&empty), now.settings.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (va, vb) = (a.get(k.as_str()), b.get(k.as_str()));
        if va != vb {
            // A setting left out at its old behaviour (see `fingerprint`) is named by that value.
            let absent = match k.as_str() {
                "sym" => "\"C1\"",
                "init" => "\"random\"",
                "coarse_to_fine" | "grow" => "\"off\"",
                "refine" => "null",
                _ => "unset",
            };
            let show = |v: Option<&serde_json::Value>| v.map(|v| v.to_string()).unwrap_or_else(|| absent.into());
            let name = if k == "density" { "density control options".to_string() } else { format!("--{}", k.replace('_', "-")) };
            what.push(format!("{name} ({} then, {} now)", show(va), show(vb)));
        }
    }
    if then.data != now.data {
        what.push("particles (images, poses or CTF)".into());
    }
    if then.threads != now.threads {
        what.push(format!("--threads ({} then, {} now)", then.threads, now.threads));
    }
    what.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_difference() {
        let fp = |s: serde_json::Value, data: &str, threads| Fingerprint { settings: s, data: data.into(), threads };
        let a = fp(serde_json::json!({"gaussians": 600, "lr": 0.001, "density": {"x": 1}}), "d1", 2);
        assert_eq!(difference(&a, &a), "");
        let b = fp(serde_json::json!({"gaussians": 601, "lr": 0.001, "density": {"x": 2}}), "d2", 1);
        assert_eq!(
            difference(&a, &b),
            "density control options ({\"x\":1} then, {\"x\":2} now) and --gaussians (600 then, 601 now) and particles (images, poses or CTF) and --threads (2 then, 1 now)"
        );
        let c = fp(serde_json::json!({"gaussians": 600, "lr": 0.001, "density": {"x": 1}, "lr_decay": 0.5}), "d1", 2);
        assert_eq!(difference(&a, &c), "--lr-decay (unset then, 0.5 now)");
        // Settings left out at their old behaviour are named by it: a checkpoint of the random
        // start against a run whose `--init auto` chose the backprojection.
        let d = fp(serde_json::json!({"gaussians": 600, "lr": 0.001, "density": {"x": 1}, "init": "backprojection"}), "d1", 2);
        assert_eq!(difference(&a, &d), "--init (\"random\" then, \"backprojection\" now)");
    }

    #[test]
    fn the_tail_average_enters_as_the_fraction_used() {
        let with = |f: Option<f64>, d| settings(&ReconstructConfig { average_tail: f, ..Default::default() }, d);
        // Left out, it is the default of the box: a run may resume with it given or not.
        assert_eq!(with(None, 64), with(Some(0.0), 64));
        assert_eq!(with(None, 128), with(Some(0.2), 128));
        // A checkpoint of a run without the average above 64 px (older builds' default) is
        // another run than today's default there, and says why.
        let fp = |s| Fingerprint { settings: s, data: "d".into(), threads: 2 };
        assert_eq!(difference(&fp(with(Some(0.0), 128)), &fp(with(None, 128))), "--average-tail (0.0 then, 0.2 now)");
    }
}
