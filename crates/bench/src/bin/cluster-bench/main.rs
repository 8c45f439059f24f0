//! cluster-bench: corosync-rs and Corosync side by side, N nodes in network
//! namespaces on one bridge, one C client (c/cpgbench.c) built against each
//! engine's libcpg. See `--help`; the last line of a run is the summary.

mod engine;
mod measure;
mod report;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use engine::{ClientBuild, Timing, Variant};
use measure::{interrupted, num, run_clients};
use tests::cluster::Cluster;

pub const SIZES: [usize; 5] = [64, 1024, 16 * 1024, 64 * 1024, 1024 * 1024];

#[derive(Debug, Clone)]
struct Options {
    engines: Vec<String>,
    nodes: usize,
    quick: bool,
    out: PathBuf,
}

/// How long and how often: `--quick` or full.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub tput_secs: f64,
    pub reps: usize,
    pub lat_secs: f64,
    pub failover_reps: usize,
    /// One-sender points at every size (else at 64 B only).
    pub one_sender_all_sizes: bool,
    /// The 1000 msgs/s latency point also with every other node sending
    /// (Totem's representative, node 1, is where an idle token rests).
    pub lat_every_sender: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TputPoint {
    pub all_senders: bool,
    pub size: usize,
    /// Slowest member's delivered msgs/s and MB/s (mean over reps).
    pub msgs: f64,
    pub mbps: f64,
    /// Lowest slowest-member msgs/s over the reps.
    pub min_msgs: f64,
    pub cpu: Vec<f64>,
    pub tryagain: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LatPoint {
    pub rate: f64,
    pub size: usize,
    /// The sending node (index from 0).
    pub sender: usize,
    /// p50, p99, p99.9 in µs: the worst remote member; the sender's own.
    pub remote: [f64; 3],
    pub own: [f64; 3],
    /// The sender's measured self-deliveries (after the warm-up).
    pub samples: f64,
    /// The rate the sender reached: `samples` over the measured seconds.
    pub achieved: f64,
    pub cdf_remote: Vec<f64>,
    pub cpu: Vec<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FailoverResult {
    /// kill → CPG confchg with the victim in left_list, slowest survivor, per rep.
    pub cpg_ms: Vec<f64>,
    pub totem_ms: Vec<f64>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct VariantResult {
    pub v: Variant,
    pub error: Option<String>,
    pub tput: Vec<TputPoint>,
    pub lat: Vec<LatPoint>,
    pub failover: FailoverResult,
    pub engine: Option<String>,
    pub engine_line: Option<String>,
    /// Corosync's `corosync -v` first line (None for ours).
    pub version: Option<String>,
    /// Membership changes while nothing failed: per point the most any
    /// member saw (every member sees the same ring change), summed over
    /// the points; in failover, those before the kill.
    pub false_confchg: u64,
}

impl VariantResult {
    pub(crate) fn new(v: Variant) -> Self {
        VariantResult {
            v,
            error: None,
            tput: Vec::new(),
            lat: Vec::new(),
            failover: FailoverResult::default(),
            engine: None,
            engine_line: None,
            version: None,
            false_confchg: 0,
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: cluster-bench [--engines ours,corosync] [--nodes N] [--quick] [--out DIR]\n\
         \n\
         Runs corosync-rs (its defaults as `ours`, and for throughput the Accelerated\n\
         Ring written on and off as `ours+accel` and `ours-accel`) and Corosync 3 (udpu\n\
         and knet, installed with apt-get when missing) side by side in network namespaces\n\
         (needs root). Build first: cargo build --release -p daemon -p client -p bench.\n\
         --quick takes 1 to 2 minutes here (at most 3), a full run about 10 (it also\n\
         measures 1000 msgs/s latency from every node and every one-sender size).\n\
         CLUSTER_BENCH_OURS_TOTEM='key: value;key: value' adds totem lines to ours'\n\
         configuration (tuning experiments; the summary then is not the default's);\n\
         CLUSTER_BENCH_OURS_CONF='...' appends whole sections to it (such as\n\
         'corosync_rs {{ ipc_membarrier: no }}', for the ours variant, which has none).\n\
         CLUSTER_BENCH_LAT_SENDER=K has node K send in the latency points (default 1)."
    );
    std::process::exit(2)
}

fn parse_args() -> Options {
    let mut o = Options {
        engines: vec!["ours".into(), "corosync".into()],
        nodes: 3,
        quick: false,
        out: PathBuf::from("cluster-bench-results"),
    };
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string().unwrap_or_else(|a| {
                eprintln!(
                    "cluster-bench: argument {} is not valid UTF-8",
                    a.to_string_lossy()
                );
                std::process::exit(2)
            })
        })
        .collect();
    let mut args = argv.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--engines" => {
                let v = args.next().unwrap_or_else(|| usage());
                o.engines = v.split(',').map(|s| s.trim().to_owned()).collect();
            }
            "--nodes" => {
                o.nodes = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| (2..=9).contains(n))
                    .unwrap_or_else(|| usage());
            }
            "--quick" => o.quick = true,
            "--out" => o.out = PathBuf::from(args.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    for e in &o.engines {
        if e != "ours" && e != "corosync" {
            eprintln!("cluster-bench: unknown engine {e:?} (ours, corosync)");
            usage();
        }
    }
    o
}

extern "C" fn on_signal(_: libc::c_int) {
    measure::INTERRUPTED.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// Progress on stderr with the time since start.
struct Progress(Instant);
impl Progress {
    fn say(&self, msg: &str) {
        eprintln!("[{:6.1}s] {msg}", self.0.elapsed().as_secs_f64());
    }
}

fn main() {
    let o = parse_args();
    install_signal_handlers();
    let plan = if o.quick {
        Plan {
            tput_secs: 1.0,
            reps: 1,
            lat_secs: 2.0,
            failover_reps: 1,
            one_sender_all_sizes: false,
            lat_every_sender: false,
        }
    } else {
        Plan {
            tput_secs: 4.0,
            reps: 2,
            lat_secs: 6.0,
            failover_reps: 3,
            one_sender_all_sizes: true,
            lat_every_sender: true,
        }
    };
    let p = Progress(Instant::now());
    if let Err(e) = std::fs::create_dir_all(o.out.join("work")) {
        eprintln!("cluster-bench: {}: {e}", o.out.display());
        std::process::exit(1);
    }
    let busy_before = measure::machine_busy_pct(Duration::from_secs(1));
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    p.say(&format!(
        "machine before the run: {busy_before:.0}% of the CPUs busy, loadavg {}",
        load_before.trim()
    ));

    let mut variants = Vec::new();
    if o.engines.iter().any(|e| e == "ours") {
        variants.push(Variant::Ours { accel: None });
        variants.push(Variant::Ours { accel: Some(true) });
        variants.push(Variant::Ours { accel: Some(false) });
    }
    if o.engines.iter().any(|e| e == "corosync") {
        variants.push(Variant::Corosync { knet: false });
        variants.push(Variant::Corosync { knet: true });
    }

    let ours_daemon = Cluster::daemon_binary();
    let ours_client = if o.engines.iter().any(|e| e == "ours") {
        p.say("ours: installing into a prefix and compiling cpgbench.c against it");
        engine::prepare_ours(&o.out, &ours_daemon)
    } else {
        Err("not selected".into())
    };
    let cs_client = if o.engines.iter().any(|e| e == "corosync") {
        p.say("corosync: checking the package, compiling cpgbench.c against the system libcpg");
        engine::ensure_corosync()
            .and_then(|()| engine::build_client(&o.out.join("cpgbench-corosync"), None::<&Path>))
    } else {
        Err("not selected".into())
    };
    let cs_version = match &cs_client {
        Ok(_) => {
            Some(engine::corosync_version().unwrap_or_else(|e| format!("version unknown: {e}")))
        }
        Err(_) => None,
    };
    let wrapper = engine::write_corosync_wrapper(&o.out).map_err(|e| e.to_string());

    let mut results = Vec::new();
    for v in variants {
        if interrupted() {
            break;
        }
        let mut r = VariantResult::new(v);
        if !v.is_ours() {
            r.version = cs_version.clone();
        }
        let setup = if v.is_ours() {
            ours_client.clone().map(|c| (c, ours_daemon.clone()))
        } else {
            cs_client
                .clone()
                .and_then(|c| wrapper.clone().map(|w| (c, w)))
        };
        match setup {
            Err(e) => {
                p.say(&format!("{}: missing: {e}", v.name()));
                r.error = Some(e);
            }
            Ok((client, daemon)) => run_variant(&o, plan, &p, &mut r, &client, &daemon),
        }
        results.push(r);
    }
    let busy_after = measure::machine_busy_pct(Duration::from_secs(1));
    let note = format!(
        "{} run, {} nodes, {:.0} s; machine (2 CPUs, shared) busy {busy_before:.0}% before and \
         {busy_after:.0}% after the run with nothing of ours running; loadavg before: {}{}",
        if o.quick { "quick" } else { "full" },
        o.nodes,
        p.0.elapsed().as_secs_f64(),
        load_before.trim(),
        if interrupted() {
            "; INTERRUPTED: partial results"
        } else {
            ""
        }
    );
    report::write_all(&o.out, &note, o.nodes, &results);
    if interrupted() {
        std::process::exit(130);
    }
}

fn run_variant(
    o: &Options,
    plan: Plan,
    p: &Progress,
    r: &mut VariantResult,
    client: &ClientBuild,
    daemon: &Path,
) {
    let v = r.v;
    let n = o.nodes;
    let work = o.out.join("work").join(v.name());
    let _ = std::fs::create_dir_all(&work);
    p.say(&format!("{}: starting {n} nodes", v.name()));
    let c = match engine::start_cluster(v, Timing::Default, n, daemon, client) {
        Ok(c) => c,
        Err(e) => {
            p.say(&format!("{}: FAILED to start: {e}", v.name()));
            r.error = Some(first_line(&e));
            return;
        }
    };
    if v.is_ours() {
        if let Some((short, line)) = engine::our_engine(&c) {
            r.engine = Some(short);
            r.engine_line = Some(line);
        }
    }
    let mut pids: Vec<u32> = (0..n).filter_map(|i| c.pid(i)).collect();
    let alive = run_tput_points(&c, o, plan, p, r, client, &work)
        && (!v.full_suite() || run_lat_points(&c, o, plan, p, r, client, &work));
    drop(c);
    if !v.is_ours() {
        engine::clean_qb_shm(&pids);
    }
    if alive && v.full_suite() {
        run_failover(o, plan, p, r, client, daemon, &work, &mut pids);
    }
}

/// After a point that failed: when a daemon of `c` is gone, records
/// "daemon on node N died during <point>" (N the node id) as the variant's
/// error and returns false, so that the variant's remaining points are
/// skipped instead of each waiting out its client timeout.
fn daemons_alive(
    c: &Cluster,
    v: Variant,
    point: &str,
    p: &Progress,
    r: &mut VariantResult,
) -> bool {
    let Some(dead) = (0..c.len()).find(|&i| !c.is_running(i)) else {
        return true;
    };
    let e = format!("daemon on node {} died during {point}", c.node_id(dead));
    p.say(&format!(
        "{}: {e}; skipping its remaining points. Its log:\n{}",
        v.name(),
        engine::daemon_log_tail(v, c, dead)
    ));
    r.error = Some(e);
    false
}

/// Throughput at every size, all senders then one sender; false when a
/// daemon died.
fn run_tput_points(
    c: &Cluster,
    o: &Options,
    plan: Plan,
    p: &Progress,
    r: &mut VariantResult,
    client: &ClientBuild,
    work: &Path,
) -> bool {
    let (v, n) = (r.v, o.nodes);
    let mut points: Vec<(bool, usize)> = SIZES.iter().map(|&s| (true, s)).collect();
    for &s in &SIZES {
        if plan.one_sender_all_sizes || s == 64 {
            points.push((false, s));
        }
    }
    for (k, &(all, size)) in points.iter().enumerate() {
        if interrupted() {
            break;
        }
        let pt = tput_point(c, client, work, plan, n, all, size, k, &mut r.false_confchg);
        p.say(&format!(
            "{}: tput {} sender(s) {:>7} B: {:>9.0} msgs/s {:>8.1} MB/s  cpu {}{}",
            v.name(),
            if all { n.to_string() } else { "1".into() },
            size,
            pt.msgs,
            pt.mbps,
            fmt_cpu(&pt.cpu),
            pt.error
                .as_ref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        ));
        let failed = pt.error.is_some();
        r.tput.push(pt);
        let point = format!(
            "tput {} {}",
            if all { "all" } else { "1" },
            report::label(size)
        );
        if failed && !daemons_alive(c, v, &point, p, r) {
            return false;
        }
    }
    true
}

/// Latency at 1000 msgs/s, then near saturation: 80% of this variant's
/// own one-sender 64 B rate (both engines get the same fraction of
/// theirs), both from node 1 (or `CLUSTER_BENCH_LAT_SENDER`); in a full
/// run then 1000 msgs/s from each other node. False when a daemon died.
fn run_lat_points(
    c: &Cluster,
    o: &Options,
    plan: Plan,
    p: &Progress,
    r: &mut VariantResult,
    client: &ClientBuild,
    work: &Path,
) -> bool {
    let (v, n) = (r.v, o.nodes);
    let sat = r
        .tput
        .iter()
        .find(|t| !t.all_senders && t.size == 64)
        .map(|t| t.msgs)
        .filter(|m| m.is_finite() && *m > 2000.0)
        .unwrap_or(10_000.0);
    let sat = (sat * 0.8).round();
    let first = lat_sender(n);
    let mut points = vec![(1000.0, first), (sat, first)];
    if plan.lat_every_sender {
        points.extend((0..n).filter(|&s| s != first).map(|s| (1000.0, s)));
    }
    for (k, (rate, sender)) in points.into_iter().enumerate() {
        if interrupted() {
            break;
        }
        let lp = lat_point(
            c,
            client,
            work,
            plan,
            n,
            (rate, sender),
            64,
            k,
            &mut r.false_confchg,
        );
        p.say(&format!(
            "{}: latency 64 B at {rate:.0}/s from node {} ({:.0}/s achieved): remote \
             p50/p99/p99.9 {:.0}/{:.0}/{:.0} µs, self {:.0}/{:.0}/{:.0} µs{}",
            v.name(),
            c.node_id(sender),
            lp.achieved,
            lp.remote[0],
            lp.remote[1],
            lp.remote[2],
            lp.own[0],
            lp.own[1],
            lp.own[2],
            lp.error
                .as_ref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        ));
        let failed = lp.error.is_some();
        r.lat.push(lp);
        if failed && !daemons_alive(c, v, &format!("latency @{rate:.0}/s"), p, r) {
            return false;
        }
    }
    true
}

/// Failover: a fresh cluster per repetition.
#[allow(clippy::too_many_arguments)]
fn run_failover(
    o: &Options,
    plan: Plan,
    p: &Progress,
    r: &mut VariantResult,
    client: &ClientBuild,
    daemon: &Path,
    work: &Path,
    pids: &mut Vec<u32>,
) {
    let (v, n) = (r.v, o.nodes);
    for rep in 0..plan.failover_reps {
        if interrupted() {
            break;
        }
        let c = match engine::start_cluster(v, Timing::Failover, n, daemon, client) {
            Ok(c) => c,
            Err(e) => {
                r.failover.errors.push(first_line(&e));
                p.say(&format!("{}: failover cluster FAILED: {e}", v.name()));
                continue;
            }
        };
        pids.extend((0..n).filter_map(|i| c.pid(i)));
        failover_rep(&c, client, work, n, rep, r);
        p.say(&format!(
            "{}: failover rep {}: cpg {:.1} ms, totem {:.1} ms{}",
            v.name(),
            rep + 1,
            r.failover.cpg_ms.last().copied().unwrap_or(f64::NAN),
            r.failover.totem_ms.last().copied().unwrap_or(f64::NAN),
            r.failover
                .errors
                .last()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        ));
        drop(c);
        if !v.is_ours() {
            engine::clean_qb_shm(pids);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn tput_point(
    c: &Cluster,
    client: &ClientBuild,
    work: &Path,
    plan: Plan,
    n: usize,
    all: bool,
    size: usize,
    k: usize,
    false_confchg: &mut u64,
) -> TputPoint {
    let mut pt = TputPoint {
        all_senders: all,
        size,
        ..TputPoint::default()
    };
    let nodes: Vec<usize> = (0..n).collect();
    let senders = if all { n } else { 1 };
    let (mut sum_msgs, mut sum_mb, mut got) = (0.0, 0.0, 0);
    pt.min_msgs = f64::INFINITY;
    for rep in 0..plan.reps {
        if interrupted() {
            break;
        }
        let group = format!("t{k}r{rep}");
        let limit = Duration::from_secs_f64(plan.tput_secs + 45.0);
        let out = run_clients(c, client, &nodes, work, limit, |i| {
            let mut a: Vec<String> = [
                "tput",
                "--size",
                &size.to_string(),
                "--time",
                &plan.tput_secs.to_string(),
                "--senders",
                &senders.to_string(),
                "--members",
                &n.to_string(),
                "--group",
                &group,
                "--timeout",
                "30",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if all || i == 0 {
                a.push("--send".into());
            }
            a
        });
        let mut slowest: Option<(f64, f64)> = None;
        *false_confchg += most_ring_changes(&out.results, "ring_changes");
        for f in out.results.iter().flatten() {
            pt.tryagain += num(f, "tryagain").max(0.0);
            let m = num(f, "msgs_per_s");
            if slowest.is_none_or(|(s, _)| m < s) {
                slowest = Some((m, num(f, "MBps")));
            }
        }
        if out.results.iter().any(Option::is_none) || !out.errors.is_empty() {
            pt.error = Some(out.errors.join("; "));
            slowest = None;
        }
        if let Some((m, mb)) = slowest {
            sum_msgs += m;
            sum_mb += mb;
            got += 1;
            pt.min_msgs = pt.min_msgs.min(m);
        }
        pt.cpu = out.cpu;
    }
    if got > 0 {
        pt.msgs = sum_msgs / got as f64;
        pt.mbps = sum_mb / got as f64;
    } else {
        pt.msgs = f64::NAN;
        pt.mbps = f64::NAN;
        pt.min_msgs = f64::NAN;
    }
    pt
}

#[allow(clippy::too_many_arguments)]
fn lat_point(
    c: &Cluster,
    client: &ClientBuild,
    work: &Path,
    plan: Plan,
    n: usize,
    (rate, sender): (f64, usize),
    size: usize,
    k: usize,
    false_confchg: &mut u64,
) -> LatPoint {
    let mut lp = LatPoint {
        rate,
        size,
        sender,
        remote: [f64::NAN; 3],
        own: [f64::NAN; 3],
        ..LatPoint::default()
    };
    let nodes: Vec<usize> = (0..n).collect();
    let group = format!("l{k}");
    let limit = Duration::from_secs_f64(plan.lat_secs + 45.0);
    let cdf = |i: usize| work.join(format!("cdf-l{k}-n{i}.txt"));
    let out = run_clients(c, client, &nodes, work, limit, |i| {
        let mut a: Vec<String> = [
            "lat",
            "--size",
            &size.to_string(),
            "--rate",
            &rate.to_string(),
            "--time",
            &plan.lat_secs.to_string(),
            "--warmup",
            "0.5",
            "--members",
            &n.to_string(),
            "--group",
            &group,
            "--timeout",
            "30",
            "--cdf",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(cdf(i).display().to_string());
        if i == sender {
            a.push("--send".into());
        }
        a
    });
    lp.cpu = out.cpu;
    if !out.errors.is_empty() {
        lp.error = Some(out.errors.join("; "));
    }
    *false_confchg += most_ring_changes(&out.results, "ring_changes");
    let q = |f: &measure::Fields| [num(f, "p50_us"), num(f, "p99_us"), num(f, "p999_us")];
    if let Some(Some(f)) = out.results.get(sender) {
        lp.own = q(f);
        // cpgbench counts only the measured (post-warm-up) messages, sent
        // over exactly `lat_secs`.
        lp.samples = num(f, "samples");
        lp.achieved = lp.samples / plan.lat_secs;
    } else {
        lp.achieved = f64::NAN;
    }
    // A receiver without a result leaves no remote figure: the worst
    // remote member may be the one missing.
    let missing: Vec<usize> = (0..n)
        .filter(|&i| i != sender && out.results.get(i).is_none_or(Option::is_none))
        .collect();
    if !missing.is_empty() {
        let e = format!("no latency result from node(s) {missing:?}");
        lp.error = Some(match lp.error.take() {
            Some(prev) => format!("{e}; {prev}"),
            None => e,
        });
        return lp;
    }
    let mut worst_remote: Option<usize> = None;
    for (i, f) in out.results.iter().enumerate() {
        let Some(f) = f else { continue };
        if i != sender {
            let qs = q(f);
            for (worst, q) in lp.remote.iter_mut().zip(qs) {
                if worst.is_nan() || q > *worst {
                    *worst = q;
                }
            }
            if worst_remote.is_none_or(|w| {
                out.results[w]
                    .as_ref()
                    .is_none_or(|g| num(g, "p50_us") < qs[0])
            }) {
                worst_remote = Some(i);
            }
        }
    }
    if let Some(w) = worst_remote {
        lp.cdf_remote = std::fs::read_to_string(cdf(w))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
    }
    lp
}

/// The latency points' sender (index from 0): node 1, the ring's
/// representative, unless `CLUSTER_BENCH_LAT_SENDER` names another (1..=n).
fn lat_sender(n: usize) -> usize {
    std::env::var("CLUSTER_BENCH_LAT_SENDER")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|s| (1..=n).contains(s))
        .map_or(0, |s| s - 1)
}

fn failover_rep(
    c: &Cluster,
    client: &ClientBuild,
    work: &Path,
    n: usize,
    rep: usize,
    r: &mut VariantResult,
) {
    let victim = n - 1;
    let Some(victim_pid) = c.pid(victim) else {
        r.failover.errors.push("victim not running".into());
        return;
    };
    let victim_id = c.node_id(victim);
    let nodes: Vec<usize> = (0..n).collect();
    let group = format!("f{rep}");
    let out = run_clients(c, client, &nodes, work, Duration::from_secs(40), |i| {
        let mut a: Vec<String> = [
            "failover",
            "--victim",
            &victim_id.to_string(),
            "--members",
            &n.to_string(),
            "--group",
            &group,
            "--size",
            "1024",
            "--rate",
            "2000",
            "--settle",
            "2",
            "--timeout",
            "20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if i == 0 {
            a.push("--kill".into());
            a.push(victim_pid.to_string());
        }
        a
    });
    let t_kill = out.results[0]
        .as_ref()
        .map(|f| num(f, "t_kill"))
        .unwrap_or(f64::NAN);
    let (mut cpg, mut totem) = (f64::NAN, f64::NAN);
    r.false_confchg += most_ring_changes(&out.results[..victim], "changes_before");
    for f in out.results[..victim].iter() {
        let Some(f) = f else {
            cpg = f64::NAN;
            break;
        };
        let (tc, tt) = (num(f, "t_cpg"), num(f, "t_totem"));
        let dc = if tc > 0.0 {
            (tc - t_kill) / 1e6
        } else {
            f64::NAN
        };
        let dt = if tt > 0.0 {
            (tt - t_kill) / 1e6
        } else {
            f64::NAN
        };
        cpg = if cpg.is_nan() { dc } else { cpg.max(dc) };
        totem = if totem.is_nan() { dt } else { totem.max(dt) };
    }
    let survivors_failed = out
        .errors
        .iter()
        .any(|e| !e.starts_with(&format!("node {victim}:")));
    if survivors_failed || cpg.is_nan() {
        r.failover
            .errors
            .push(format!("rep {}: {}", rep + 1, out.errors.join("; ")));
    }
    r.failover.cpg_ms.push(cpg);
    r.failover.totem_ms.push(totem);
}

/// The most ring changes (`key`) any member of one point reported: a
/// false membership change is one ring change, seen by every member.
fn most_ring_changes(results: &[Option<measure::Fields>], key: &str) -> u64 {
    results
        .iter()
        .flatten()
        .map(|f| num(f, key).max(0.0) as u64)
        .max()
        .unwrap_or(0)
}

fn fmt_cpu(v: &[f64]) -> String {
    v.iter()
        .map(|c| format!("{c:.0}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_owned()
}

// Not `tests`: that name is the cluster harness crate here.
#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn one_ring_change_seen_by_every_member_counts_once() {
        let member = |n: u32| measure::parse_result(&format!("RESULT mode=lat ring_changes={n}"));
        let point = [member(1), member(1), member(1)];
        assert_eq!(most_ring_changes(&point, "ring_changes"), 1);
        // A member that saw more (it also saw a change the others merged
        // into one) sets the count; a member without a result adds none.
        let point = [member(2), None, member(1)];
        assert_eq!(most_ring_changes(&point, "ring_changes"), 2);
        assert_eq!(most_ring_changes(&[None, None], "ring_changes"), 0);
    }
}
