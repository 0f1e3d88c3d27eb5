//! The `cryosplat` command-line tool: a thin layer that parses arguments, shows progress and
//! reports errors. Each subcommand lives in its own file under `cmd/`.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once from `-q` before any command runs.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether `-q` asked for warnings and errors only: no progress bars and none of the lines that
/// say what a command did (its files hold the results).
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// `println!` of a line that says what a command did or where it stands, left out with `-q`.
/// What a command exists to print (`info`, `fsc`, `bench`, any `--json`) uses `println!`.
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::quiet() {
            println!($($arg)*)
        }
    };
}

mod cmd;
mod figures;
mod gaussian_halves;
mod input;
mod progress;
mod report;

use clap::{Parser, Subcommand};

/// Gaussian-splatting reconstruction for single-particle cryo-EM.
#[derive(Parser)]
#[command(name = "cryosplat", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors: no progress bars and no lines saying what a command did (its
    /// output files hold the results); `info`, `fsc`, `bench` and `--json` still print what
    /// they exist to print.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise particle, map and metadata files (MRC, STAR, .cs, cryoDRGN pickles).
    Info(cmd::info::Args),
    /// Simulate a particle set from an atomic model or a map.
    Simulate(cmd::simulate::Args),
    /// Measure full training steps per second on a fixed workload.
    Bench(cmd::bench::Args),
    /// Reconstruct a map by Gaussian splatting, with gold-standard half maps.
    Reconstruct(cmd::reconstruct::Args),
    /// Reconstruct a map by direct Fourier inversion (the baseline).
    Backproject(cmd::backproject::Args),
    /// Fourier shell correlation between two maps.
    Fsc(cmd::fsc::Args),
    /// Simulate a data set from a bundled atomic model and reconstruct it both ways.
    Demo(cmd::demo::Args),
    /// Sharpen a pair of half maps: FSC weighting, automatic B-factor, low-pass at the resolution.
    Postprocess(cmd::postprocess::Args),
    /// Make a soft mask from a map (threshold, extension, soft edge).
    Mask(cmd::mask::Args),
    /// Local resolution from windowed half-map FSC, with a ChimeraX file to colour the map.
    Locres(cmd::locres::Args),
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`cryosplat fsc … | head -1`) would
/// panic. Restore the default action: the process ends quietly, like other Unix tools.
#[cfg(unix)]
fn default_sigpipe() {
    // SAFETY: called once at start-up before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> std::process::ExitCode {
    #[cfg(unix)]
    default_sigpipe();
    let cli = Cli::parse();
    QUIET.store(cli.quiet, Ordering::Relaxed);
    let level = if cli.quiet {
        "warn"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRYOSPLAT_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();

    if matches!(cli.command, Command::Bench(_) | Command::Reconstruct(_) | Command::Demo(_)) {
        if let Some(w) = build_warning() {
            tracing::warn!("{w}");
        }
    }
    let result = match cli.command {
        Command::Info(a) => cmd::info::run(a),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Reconstruct(a) => cmd::reconstruct::run(a),
        Command::Backproject(a) => cmd::backproject::run(a),
        Command::Fsc(a) => cmd::fsc::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Postprocess(a) => cmd::postprocess::run(a),
        Command::Mask(a) => cmd::mask::run(a),
        Command::Locres(a) => cmd::locres::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The vector instructions the processor has and this build does not use (AVX2, FMA on
/// x86-64), as a warning for the commands that train; `None` when it uses all of them. Cargo
/// reads `.cargo/config.toml` (`target-cpu=native`) only when run inside the repository; built
/// from elsewhere, training runs about half as fast (BENCHMARKS.md, "A build without FMA").
fn build_warning() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        let missing: Vec<&str> = [
            ("AVX2", cfg!(target_feature = "avx2"), std::arch::is_x86_feature_detected!("avx2")),
            ("FMA", cfg!(target_feature = "fma"), std::arch::is_x86_feature_detected!("fma")),
        ]
        .into_iter()
        .filter(|&(_, built, cpu)| cpu && !built)
        .map(|(name, _, _)| name)
        .collect();
        if !missing.is_empty() {
            return Some(format!(
                "this build does not use the processor's {}: training runs about half as fast; build inside the repository (cargo build --release there reads .cargo/config.toml, which targets this processor)",
                missing.join(" and ")
            ));
        }
    }
    None
}

/// An error and its causes on one line, each cause said once: errors that name their cause in
/// their own text (a file error naming the OS error) are not followed by it again.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn each_cause_is_said_once() {
        let os = std::io::Error::from(std::io::ErrorKind::NotFound);
        let named = format!("/x/y.star: {os}");
        let e = anyhow::Error::new(os).context(named.clone()).context("loading the particles");
        assert_eq!(error_text(&e), format!("loading the particles: {named}"));
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&plain), "outer: inner");
    }

    /// Built by cargo inside the repository, `.cargo/config.toml` targets this processor: the
    /// tests' build uses every vector instruction it has, and the commands that train warn of
    /// nothing. Fails where that file is lost or no longer read.
    #[test]
    fn the_repository_build_uses_the_processors_vector_instructions() {
        assert_eq!(super::build_warning(), None);
    }
}
