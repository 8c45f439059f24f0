//! One measurement point: the client on every node, their RESULT lines,
//! and the daemons' CPU over the point.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tests::cluster::Cluster;

use crate::engine::{client_command, ClientBuild};

/// Set by SIGINT/SIGTERM: stop at the next check, clean up, report.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// One client's `RESULT key=value …` line.
pub type Fields = HashMap<String, String>;

pub fn num(f: &Fields, k: &str) -> f64 {
    f.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// What every node's client printed, and the daemons' CPU% over the run.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per node, None when it printed no RESULT.
    pub results: Vec<Option<Fields>>,
    pub cpu: Vec<f64>,
    pub errors: Vec<String>,
}

/// Runs `args(i)` for every node in `nodes` at once and waits (at most
/// `limit`) for them all. Clients that overrun are killed.
pub fn run_clients(
    c: &Cluster,
    client: &ClientBuild,
    nodes: &[usize],
    work: &Path,
    limit: Duration,
    args: impl Fn(usize) -> Vec<String>,
) -> Outcome {
    let cpu0 = cpu_ticks(c);
    let t0 = Instant::now();
    let mut kids: Vec<(usize, Option<Child>, PathBuf, PathBuf)> = Vec::new();
    let mut out = Outcome {
        results: vec![None; c.len()],
        ..Outcome::default()
    };
    for &i in nodes {
        let so = work.join(format!("client{i}.out"));
        let se = work.join(format!("client{i}.err"));
        let child = (|| {
            let mut cmd = client_command(c, i, client);
            cmd.args(args(i))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&so)?)
                .stderr(std::fs::File::create(&se)?);
            cmd.spawn()
        })();
        match child {
            Ok(ch) => kids.push((i, Some(ch), so, se)),
            Err(e) => out.errors.push(format!("node {i}: spawn client: {e}")),
        }
    }
    let end = t0 + limit;
    loop {
        let mut running = 0;
        for (_, ch, _, _) in kids.iter_mut() {
            if let Some(child) = ch {
                match child.try_wait() {
                    Ok(None) => running += 1,
                    _ => *ch = None,
                }
            }
        }
        if running == 0 {
            break;
        }
        if Instant::now() >= end || interrupted() {
            for (i, ch, _, _) in kids.iter_mut() {
                if let Some(child) = ch {
                    let _ = child.kill();
                    let _ = child.wait();
                    out.errors
                        .push(format!("node {i}: client killed after {limit:?}"));
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks(c);
    let hz = clock_ticks_per_sec();
    out.cpu = cpu0
        .iter()
        .zip(&cpu1)
        .map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) if wall > 0.0 => (b.saturating_sub(*a)) as f64 / hz / wall * 100.0,
            _ => f64::NAN,
        })
        .collect();
    for (i, _, so, se) in kids {
        let text = std::fs::read_to_string(&so).unwrap_or_default();
        match text.lines().find_map(parse_result) {
            Some(f) => out.results[i] = Some(f),
            None => {
                let err = std::fs::read_to_string(&se).unwrap_or_default();
                let last = err.lines().last().unwrap_or("no output").to_owned();
                out.errors.push(format!("node {i}: {last}"));
            }
        }
    }
    out
}

pub fn parse_result(line: &str) -> Option<Fields> {
    let rest = line.strip_prefix("RESULT ")?;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

/// utime + stime (all threads) of each node's daemon, from /proc.
fn cpu_ticks(c: &Cluster) -> Vec<Option<u64>> {
    (0..c.len())
        .map(|i| {
            let pid = c.pid(i)?;
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            // Fields 14 and 15 of stat(5); `after` starts at field 3.
            let ut: u64 = f.get(11)?.parse().ok()?;
            let st: u64 = f.get(12)?.parse().ok()?;
            Some(ut + st)
        })
        .collect()
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Percent of both CPUs other processes (not the benchmark's daemons and
/// clients) used over a short look now, from /proc/stat minus ours; a
/// note for the report only.
pub fn machine_busy_pct(sample: Duration) -> f64 {
    fn read() -> Option<(u64, u64)> {
        let s = std::fs::read_to_string("/proc/stat").ok()?;
        let l = s.lines().next()?;
        let v: Vec<u64> = l
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let idle = v.get(3)? + v.get(4).unwrap_or(&0);
        Some((v.iter().sum(), idle))
    }
    let (Some(a), _) = (read(), std::thread::sleep(sample)) else {
        return f64::NAN;
    };
    let Some(b) = read() else { return f64::NAN };
    let total = b.0.saturating_sub(a.0) as f64;
    if total <= 0.0 {
        return f64::NAN;
    }
    100.0 * (1.0 - b.1.saturating_sub(a.1) as f64 / total)
}
