//! Terminal progress bars for the library's [`Progress`] reports.

use cryosplat_train::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;

/// An `indicatif` bar per stage, hidden when stderr is not a terminal and with `-q`.
pub struct Bar {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bar {
    pub fn new() -> Self {
        Bar { bar: Mutex::new(None) }
    }
}

impl Progress for Bar {
    fn start(&self, stage: &str, total: u64) {
        let pb = if crate::quiet() { ProgressBar::hidden() } else { ProgressBar::new(total) };
        pb.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        pb.set_prefix(stage.to_string());
        if let Some(old) = self.bar.lock().expect("progress lock").replace(pb) {
            old.finish_and_clear();
        }
    }
    fn inc(&self, n: u64) {
        if let Some(pb) = self.bar.lock().expect("progress lock").as_ref() {
            pb.inc(n);
        }
    }
    fn message(&self, msg: &str) {
        if let Some(pb) = self.bar.lock().expect("progress lock").as_ref() {
            pb.set_message(msg.to_string());
        }
    }
    fn finish(&self) {
        if let Some(pb) = self.bar.lock().expect("progress lock").take() {
            pb.finish();
        }
    }
}
