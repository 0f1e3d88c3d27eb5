//! Progress reporting from long computations, without terminal code.

/// Receives progress from a long computation. Implementations must be cheap and thread-safe:
/// `inc` is called from worker threads.
pub trait Progress: Sync {
    /// A new stage begins with `total` units of work.
    fn start(&self, stage: &str, total: u64);
    /// `n` more units are done.
    fn inc(&self, n: u64);
    /// A short status (loss, rate) for the current stage.
    fn message(&self, msg: &str);
    /// The current stage is finished.
    fn finish(&self);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _stage: &str, _total: u64) {}
    fn inc(&self, _n: u64) {}
    fn message(&self, _msg: &str) {}
    fn finish(&self) {}
}
