//! One file per subcommand: each defines `Args` (clap) and `run(Args) -> anyhow::Result<()>`.

pub mod backproject;
pub mod bench;
pub mod demo;
pub mod fsc;
pub mod info;
pub mod locres;
pub mod mask;
pub mod postprocess;
pub mod reconstruct;
pub mod simulate;
