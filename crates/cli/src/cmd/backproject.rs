//! `cryosplat backproject` (not yet implemented).

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`cryosplat backproject` is not implemented yet")
}
