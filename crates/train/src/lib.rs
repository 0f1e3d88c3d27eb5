//! Training and pipelines for cryosplat: particle sets, dataset assembly, the optimiser and
//! its schedule, half sets, checkpoints, and the `reconstruct`, `backproject` and `simulate`
//! pipelines that the command-line tool drives.
//!
//! This crate does the work; the binary only parses arguments, shows progress and reports
//! errors. Progress is reported through the [`progress::Progress`] trait so that no terminal
//! code lives here.

pub mod adam;
pub mod backproject;
pub mod bench;
pub mod checkpoint;
pub mod dataset;
pub mod images;
pub mod output;
pub mod progress;
pub mod reconstruct;
pub mod simulate;
pub mod streams;
