//! `corosync`: the cluster engine executive.
//!
//! ```text
//! corosync [-f] [-c FILE] [-t] [-v] [-p | -r | -P [PRIORITY]]
//! ```
//!
//! Corosync's flags: `-f` stays in the foreground, `-c` names the
//! configuration file, `-t` tests the configuration and exits, `-v` prints
//! the version, `-p` runs without realtime scheduling, `-r` with it
//! (Corosync's flag; the same as `-P max`), `-P` with it (optionally at
//! PRIORITY: `max`, `min` or a number). Without a configuration file it
//! runs a one-node cluster on loopback.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use daemon::config::{config_path_with, Config, ConfigSource};
use daemon::setup::{self, Realtime};

/// Corosync's exit code for a configuration that cannot be read
/// (`COROSYNC_DONE_MAINCONFIGREAD`).
const EXIT_CONFIG: u8 = 8;
/// Exit code when the runtime fails to start or fails later.
const EXIT_RUNTIME: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "corosync",
    disable_version_flag = true,
    about = "Corosync Cluster Engine (corosync-rs)"
)]
struct Args {
    /// Stay in the foreground (do not detach).
    #[arg(short = 'f')]
    foreground: bool,
    /// Configuration file (default /etc/corosync/corosync.conf, or
    /// $COROSYNC_MAIN_CONFIG_FILE).
    #[arg(short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Test the configuration and exit.
    #[arg(short = 't')]
    test: bool,
    /// Print the version and exit.
    #[arg(short = 'v')]
    version: bool,
    /// Do not use realtime scheduling.
    #[arg(short = 'p', conflicts_with = "realtime")]
    no_realtime: bool,
    /// Use realtime scheduling (SCHED_RR), at PRIORITY: max, min or a number.
    #[arg(short = 'P', value_name = "PRIORITY", num_args = 0..=1, default_missing_value = "max")]
    realtime: Option<String>,
    /// Use realtime scheduling (SCHED_RR) at the highest priority (as -P max).
    #[arg(short = 'r', conflicts_with = "no_realtime")]
    round_robin: bool,
}

/// What `-p`, `-r` and `-P` ask for (`-P PRIORITY` wins over `-r`).
fn realtime(args: &Args) -> Result<Realtime, String> {
    match (&args.realtime, args.no_realtime, args.round_robin) {
        (_, true, _) => Ok(Realtime::Off),
        (Some(p), false, _) => setup::parse_rt_priority(p).map_err(|e| format!("-P {p}: {e}")),
        (None, false, true) => setup::parse_rt_priority("max"),
        (None, false, false) => Ok(Realtime::FromConfig),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn source(args: &Args) -> Result<ConfigSource, String> {
    if let Some(path) = &args.config {
        if !path.exists() {
            return Err(format!("{}: no such configuration file", path.display()));
        }
    }
    config_path_with(args.config.as_deref(), env, |p: &Path| p.exists()).map_err(|e| e.to_string())
}

/// The signals the run loop handles (through its signalfd).
const SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn main() -> ExitCode {
    // Before any thread exists: every thread inherits the mask, so the
    // signals wait for the run loop.
    transport::block_signals(&SIGNALS);
    let args = Args::parse();
    if args.version {
        println!(
            "Corosync Cluster Engine (corosync-rs), version '{}'",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let realtime = match realtime(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("corosync: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let src = match source(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("corosync: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (cfg, warnings) = match Config::load_source(&src) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("corosync: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let plan = match setup::plan(&cfg, &src, realtime) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("corosync: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if args.test {
        // Which file was read (or that none was) and the like.
        for note in &src.notes {
            println!("note: {note}");
        }
        for w in &warnings {
            println!("warning: {w}");
        }
        println!("Configuration is valid.");
        return ExitCode::SUCCESS;
    }
    if !args.foreground {
        return match setup::detach() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("corosync: cannot start in the background: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        };
    }
    let _log = match daemon::logging::init(&plan.logging) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("corosync: logging: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    tracing::info!(
        "Corosync Cluster Engine (corosync-rs) {} starting",
        env!("CARGO_PKG_VERSION")
    );
    for w in &warnings {
        tracing::warn!("{w}");
    }
    for note in &plan.notes {
        tracing::info!("{note}");
    }
    match daemon::runtime::run(plan.runtime, |_| {}) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("corosync: {e}");
            eprintln!("corosync: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realtime_of(flags: &[&str]) -> Result<Realtime, String> {
        let args = Args::try_parse_from(std::iter::once("corosync").chain(flags.iter().copied()))
            .map_err(|e| e.kind().to_string())?;
        realtime(&args)
    }

    #[test]
    fn realtime_flags() {
        assert_eq!(realtime_of(&[]), Ok(Realtime::FromConfig));
        assert_eq!(realtime_of(&["-f"]), Ok(Realtime::FromConfig));
        assert_eq!(realtime_of(&["-p"]), Ok(Realtime::Off));
        assert_eq!(realtime_of(&["-f", "-p"]), Ok(Realtime::Off));
        assert_eq!(realtime_of(&["-P"]), Ok(Realtime::On(99)));
        assert_eq!(realtime_of(&["-P", "-f"]), Ok(Realtime::On(99)));
        assert_eq!(realtime_of(&["-P", "max"]), Ok(Realtime::On(99)));
        assert_eq!(realtime_of(&["-P", "min"]), Ok(Realtime::On(1)));
        assert_eq!(realtime_of(&["-P", "10"]), Ok(Realtime::On(10)));
        assert_eq!(realtime_of(&["-r"]), Ok(Realtime::On(99)));
        assert_eq!(realtime_of(&["-r", "-f"]), Ok(Realtime::On(99)));
        assert_eq!(realtime_of(&["-r", "-P", "min"]), Ok(Realtime::On(1)));
        assert!(realtime_of(&["-P", "250"])
            .unwrap_err()
            .starts_with("-P 250: "));
        assert!(realtime_of(&["-p", "-P"]).is_err(), "-p and -P conflict");
        assert!(realtime_of(&["-p", "-r"]).is_err(), "-p and -r conflict");
    }
}
