//! Real-fault scenarios: a cluster of real daemons (the [`crate::cluster`]
//! harness) with a `cpg-verify` client on every node sending throughout,
//! faults injected and healed, and the verifiers' logs checked at the end
//! ([`crate::verify::check`]). Shared by the `cluster_faults` tests (one
//! short scenario each) and the `chaos` binary (random sequences).
//!
//! Every scenario starts from a whole cluster, injects one fault, waits
//! until the fault is visible where it can be (the others form a ring
//! without the node), holds it, heals it, and then requires the whole
//! cluster to re-form within [`Timing::reform_bound`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::{self, Cluster, Transport};
use crate::verify::{self, NodeLog, Report};

/// Overrides the verifier binary ([`verifier_binary`]).
pub const VERIFY_BIN_ENV: &str = "CORO_VERIFY_BIN";
/// The CPG group the verifiers use.
pub const GROUP: &str = "chaos-verify";

/// Every kind of fault a scenario injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// kill -9 one daemon, later start it again (same state dir).
    Kill9Restart,
    /// SIGSTOP one daemon for longer than the token timeout, then SIGCONT.
    StopCont,
    /// Two groups that cannot reach each other, then healed.
    Partition,
    /// Frames from one node to another dropped, the other way not.
    OneWay,
    /// 10% random loss (nftables `numgen random`) on one or every node.
    Loss10,
    /// 30% random loss on one node.
    Loss30,
    /// One node's interface set down, then up.
    LinkDownUp,
    /// A client on one node stops dispatching while the group is busy:
    /// the daemon must disconnect it, its memory staying bounded.
    SlowClient,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill9Restart,
        FaultKind::StopCont,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Loss10,
        FaultKind::Loss30,
        FaultKind::LinkDownUp,
        FaultKind::SlowClient,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill9Restart => "kill9-restart",
            FaultKind::StopCont => "sigstop-sigcont",
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
            FaultKind::Loss10 => "loss10",
            FaultKind::Loss30 => "loss30",
            FaultKind::LinkDownUp => "link-down-up",
            FaultKind::SlowClient => "slow-client",
        }
    }
}

/// Totem's timing for a cluster, as the configuration reader derives it.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// `token` + 650 ms per node above two (Corosync's token_coefficient).
    pub token: Duration,
    /// 1.2 × token.
    pub consensus: Duration,
}

/// Slack for a machine with few cores shared by every daemon and client
/// of the cluster (and whatever else runs there).
const SLACK: Duration = Duration::from_millis(3000);
/// Totem's join and merge-detect intervals (defaults).
const JOIN_MERGE: Duration = Duration::from_millis(50 + 200);

impl Timing {
    pub fn new(token_ms: u32, nodes: usize) -> Timing {
        let token = u64::from(token_ms) + 650 * nodes.saturating_sub(2) as u64;
        Timing {
            token: Duration::from_millis(token),
            consensus: Duration::from_millis(token * 12 / 10),
        }
    }

    /// How long a whole cluster may take to re-form after a fault is
    /// healed: a merge-detect round and a join, then at worst two full
    /// rounds of (token loss + consensus) — one for the attempt the heal
    /// interrupted, one for the ring that forms — plus [`SLACK`].
    pub fn reform_bound(&self) -> Duration {
        JOIN_MERGE + (self.token + self.consensus) * 2 + SLACK
    }

    /// How long a fault must last to be noticed by Totem at all.
    pub fn noticed(&self) -> Duration {
        self.token + self.consensus
    }
}

/// Options of one run (one cluster).
#[derive(Clone, Debug)]
pub struct Params {
    pub nodes: usize,
    pub token_ms: u32,
    /// Messages per second per verifier.
    pub rate: u32,
    /// How long a fault is held once it took effect.
    pub hold: Duration,
    /// Where the verifiers' logs go (kept on failure).
    pub log_dir: PathBuf,
}

/// What one scenario did.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub kind: FaultKind,
    pub detail: String,
    /// Fault actions (a loss on three nodes counts three).
    pub faults: u64,
    /// From heal to the whole cluster in one ring again.
    pub reform: Option<Duration>,
    pub bound: Duration,
}

/// The daemon memory seen around a slow client, on its node and on
/// another node (the control: what Totem's lazily filled stores and the
/// load alone add meanwhile).
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub before_kib: u64,
    pub peak_kib: u64,
    pub after_kib: u64,
    pub control_before_kib: u64,
    pub control_after_kib: u64,
}

/// The daemon's bounds for one client that stops reading (its
/// configuration, crates/daemon/src/setup.rs): the event ring the client
/// library asks for (4 MiB) and the overflow queue behind it (64 MiB at
/// most, 16384 frames).
pub const SLOW_RING_KIB: u64 = 4 << 10;
pub const SLOW_OVERFLOW_KIB: u64 = 64 << 10;
/// Room for everything else that grows meanwhile (Totem's stores fill
/// lazily up to their configured size, the allocator keeps freed pages).
pub const SLOW_SLACK_KIB: u64 = 32 << 10;
/// Most the slow client's daemon may have grown more than the control
/// once the client is gone: its ring is unmapped, but the allocator may
/// keep the pages of the freed overflow queue (glibc does not trim a
/// fragmented heap), never more.
pub const SLOW_AFTER_EXCESS_KIB: u64 = SLOW_OVERFLOW_KIB;

impl Memory {
    /// Err when the daemon's memory was not bounded as stated.
    pub fn check(&self) -> Result<(), String> {
        let peak_bound = self.before_kib + SLOW_RING_KIB + SLOW_OVERFLOW_KIB + SLOW_SLACK_KIB;
        if self.peak_kib > peak_bound {
            return Err(format!(
                "daemon VmRSS peaked at {} KiB > {peak_bound} KiB: {self:?}",
                self.peak_kib
            ));
        }
        let grew = self.after_kib.saturating_sub(self.before_kib);
        let control = self
            .control_after_kib
            .saturating_sub(self.control_before_kib);
        if grew > control + SLOW_AFTER_EXCESS_KIB {
            return Err(format!(
                "daemon kept {grew} KiB after the slow client left (control node: {control} KiB): {self:?}"
            ));
        }
        Ok(())
    }
}

/// The `cpg-verify` binary: `$CORO_VERIFY_BIN`, else beside the daemon
/// binary in the cargo profile dir.
pub fn verifier_binary() -> PathBuf {
    match std::env::var_os(VERIFY_BIN_ENV).filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => Cluster::daemon_binary().with_file_name("cpg-verify"),
    }
}

/// Why this host cannot run the fault scenarios, if it cannot.
pub fn unsupported_reason() -> Option<String> {
    if !transport::os::is_root() {
        return Some("needs root (network namespaces and nftables)".into());
    }
    if !cluster::net::have_program("ip", "-V") {
        return Some("needs iproute2's `ip`".into());
    }
    if !cluster::net::have_program("nft", "--version") {
        return Some("needs nftables' `nft` (apt-get install nftables)".into());
    }
    let daemon = Cluster::daemon_binary();
    if !daemon.is_file() {
        return Some(format!(
            "daemon binary {} missing (cargo build --release -p daemon)",
            daemon.display()
        ));
    }
    let verifier = verifier_binary();
    if !verifier.is_file() {
        return Some(format!(
            "verifier binary {} missing (cargo build --release -p tests --bin cpg-verify)",
            verifier.display()
        ));
    }
    None
}

/// One running `cpg-verify`.
struct Verifier {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    exit: Option<std::process::ExitStatus>,
}

impl Verifier {
    fn start(
        c: &Cluster,
        node: usize,
        name: &str,
        dir: &Path,
        args: &[String],
    ) -> Result<Verifier, String> {
        let log = dir.join(format!("{name}.log"));
        let err = File::create(dir.join(format!("{name}.stderr"))).map_err(|e| e.to_string())?;
        let mut child = c
            .command_in(node, verifier_binary())
            .arg("--log")
            .arg(&log)
            .arg("--group")
            .arg(GROUP)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{name}: spawning cpg-verify: {e}"))?;
        let stdin = child.stdin.take();
        Ok(Verifier {
            name: name.to_owned(),
            child,
            stdin,
            log,
            exit: None,
        })
    }

    fn say(&mut self, what: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{what}");
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit.is_some()
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sleeps `d`, in steps, returning early (false) when `stop` says so.
pub fn pause(d: Duration, stop: &dyn Fn() -> bool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop() {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
    true
}

/// The daemon's resident memory (VmRSS, KiB).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A cluster with a verifier on every node.
pub struct Run {
    pub cluster: Cluster,
    pub params: Params,
    pub timing: Timing,
    verifiers: Vec<Verifier>,
    slow_count: usize,
    /// Slow-client memory figures, one per slow-client scenario.
    pub memory: Vec<Memory>,
}

/// How long a cluster may take to form at start, loaded machine included.
const FORM: Duration = Duration::from_secs(30);
/// How long the verifiers may take to drain at the end.
const DRAIN: Duration = Duration::from_secs(30);

impl Run {
    /// Starts the cluster, waits for one ring, starts the verifiers and
    /// waits until each delivers.
    pub fn start(params: Params) -> Result<Run, String> {
        std::fs::create_dir_all(&params.log_dir).map_err(|e| e.to_string())?;
        let cluster = Cluster::builder()
            .nodes(params.nodes)
            .transport(Transport::Udpu)
            .token(params.token_ms)
            .start()
            .map_err(|e| e.to_string())?;
        let all: Vec<usize> = (0..params.nodes).collect();
        cluster
            .wait_membership(&all, FORM)
            .map_err(|e| e.to_string())?;
        for &i in &all {
            cluster.wait_ready(i, FORM).map_err(|e| e.to_string())?;
        }
        let timing = Timing::new(params.token_ms, params.nodes);
        let mut run = Run {
            cluster,
            params,
            timing,
            verifiers: Vec::new(),
            slow_count: 0,
            memory: Vec::new(),
        };
        for i in all {
            let args = vec![
                "--rate".into(),
                run.params.rate.to_string(),
                "--seed".into(),
                i.to_string(),
            ];
            let v = Verifier::start(
                &run.cluster,
                i,
                &format!("n{i}"),
                &run.params.log_dir,
                &args,
            )?;
            run.verifiers.push(v);
        }
        let t0 = Instant::now();
        while !run
            .verifiers
            .iter()
            .all(|v| v.text().lines().any(|l| l.starts_with("D ")))
        {
            if t0.elapsed() > FORM {
                return Err("verifiers delivered nothing within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(run)
    }

    fn all(&self) -> Vec<usize> {
        (0..self.params.nodes).collect()
    }

    fn others(&self, i: usize) -> Vec<usize> {
        self.all().into_iter().filter(|&j| j != i).collect()
    }

    fn wait(&self, nodes: &[usize], what: &str) -> Result<(), String> {
        self.cluster
            .wait_membership(nodes, self.timing.reform_bound())
            .map_err(|e| format!("{what}: {e}"))
    }

    /// After the heal: the whole cluster in one ring within the bound.
    fn reformed(&self, healed: Instant) -> Result<Duration, String> {
        let bound = self.timing.reform_bound();
        self.cluster
            .wait_membership(&self.all(), bound)
            .map_err(|e| format!("not re-formed within {bound:?} after the heal: {e}"))?;
        Ok(healed.elapsed())
    }

    /// Injects one fault of `kind` (nodes and details from `rng`), heals
    /// it and waits for the cluster to re-form. Err: the cluster did not
    /// (a liveness violation) or the harness failed.
    pub fn scenario(
        &mut self,
        kind: FaultKind,
        rng: &mut impl Rng,
        stop: &dyn Fn() -> bool,
    ) -> Result<Outcome, String> {
        let n = self.params.nodes;
        let i = rng.gen_range(0..n);
        let hold = self.params.hold;
        let mut out = Outcome {
            kind,
            detail: String::new(),
            faults: 1,
            reform: None,
            bound: self.timing.reform_bound(),
        };
        let c = &self.cluster;
        let e = |e: cluster::Error| e.to_string();
        match kind {
            FaultKind::Kill9Restart => {
                out.detail = format!("node {i}");
                c.kill9(i).map_err(e)?;
                self.wait(&self.others(i), "survivors after kill -9")?;
                pause(hold, stop);
                c.restart(i).map_err(e)?;
                out.reform = Some(self.reformed(Instant::now())?);
            }
            FaultKind::StopCont => {
                out.detail = format!("node {i}");
                c.sigstop(i).map_err(e)?;
                let t0 = Instant::now();
                let waited = self.wait(&self.others(i), "survivors while stopped");
                // Always continue the node, even when the wait failed.
                let left = (self.timing.token + hold).saturating_sub(t0.elapsed());
                pause(left, stop);
                c.sigcont(i).map_err(e)?;
                waited?;
                out.reform = Some(self.reformed(Instant::now())?);
            }
            FaultKind::Partition => {
                let mut order = self.all();
                order.shuffle(rng);
                let k = rng.gen_range(1..n);
                let (a, b) = order.split_at(k);
                out.detail = format!("{a:?} | {b:?}");
                c.partition(&[a, b]).map_err(e)?;
                self.wait(a, "first side")?;
                self.wait(b, "second side")?;
                pause(hold, stop);
                c.heal().map_err(e)?;
                out.reform = Some(self.reformed(Instant::now())?);
            }
            FaultKind::OneWay => {
                let j = (i + rng.gen_range(1..n)) % n;
                out.detail = format!("{i} -> {j} dropped");
                c.block(i, j).map_err(e)?;
                pause(self.timing.noticed() + hold, stop);
                c.heal().map_err(e)?;
                out.reform = Some(self.reformed(Instant::now())?);
            }
            FaultKind::Loss10 | FaultKind::Loss30 => {
                let pct = if kind == FaultKind::Loss10 { 10 } else { 30 };
                let every = kind == FaultKind::Loss10 && rng.gen_bool(0.3);
                let targets = if every { self.all() } else { vec![i] };
                out.detail = format!("{pct}% on {targets:?}");
                out.faults = targets.len() as u64;
                for &t in &targets {
                    c.loss(t, pct).map_err(e)?;
                }
                pause(self.timing.noticed() + hold, stop);
                c.heal().map_err(e)?;
                out.reform = Some(self.reformed(Instant::now())?);
            }
            FaultKind::LinkDownUp => {
                out.detail = format!("node {i}");
                c.link_down(i).map_err(e)?;
                let waited = self.wait(&self.others(i), "others while the link is down");
                pause(hold, stop);
                c.link_up(i).map_err(e)?;
                waited?;
                out.reform = Some(self.reformed(Instant::now())?);
            }
            FaultKind::SlowClient => {
                let m = self.slow_client(i, stop)?;
                out.detail = format!(
                    "node {i}: disconnected; daemon VmRSS {} KiB before, {} KiB peak, {} KiB after \
                     (control node {} -> {} KiB)",
                    m.before_kib, m.peak_kib, m.after_kib, m.control_before_kib, m.control_after_kib
                );
                self.memory.push(m);
            }
        }
        Ok(out)
    }

    /// A verifier on node `i` that stops dispatching (and floods the group
    /// so its rings fill quickly): the daemon must disconnect it, and its
    /// memory must stay bounded.
    fn slow_client(&mut self, i: usize, stop: &dyn Fn() -> bool) -> Result<Memory, String> {
        let j = (i + 1) % self.params.nodes;
        let pid = self.cluster.pid(i).ok_or("daemon not running")?;
        let control = self.cluster.pid(j).ok_or("daemon not running")?;
        let before = vm_rss_kib(pid).ok_or("no VmRSS")?;
        let control_before = vm_rss_kib(control).ok_or("no VmRSS")?;
        self.slow_count += 1;
        let name = format!("n{i}-slow{}", self.slow_count);
        let args: Vec<String> = [
            "--rate",
            "2000",
            "--min-size",
            "800",
            "--max-size",
            "1200",
            "--big-permille",
            "0",
            "--slow-after-ms",
            "300",
            "--seed",
            "99",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut v = Verifier::start(&self.cluster, i, &name, &self.params.log_dir, &args)?;
        let limit = Duration::from_secs(90);
        let t0 = Instant::now();
        let mut peak = before;
        while !v.exited() {
            if let Some(k) = vm_rss_kib(pid) {
                peak = peak.max(k);
            }
            if t0.elapsed() > limit || stop() {
                self.verifiers.push(v);
                return Err(format!(
                    "{name}: a client that stopped dispatching was not disconnected within {limit:?} \
                     (daemon VmRSS {before} KiB before, {peak} KiB peak)"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let disconnected = v.text().lines().any(|l| l.starts_with("E "));
        self.verifiers.push(v);
        if !disconnected {
            return Err(format!("{name}: exited without being disconnected"));
        }
        pause(Duration::from_millis(1000), stop);
        let m = Memory {
            before_kib: before,
            peak_kib: peak,
            after_kib: vm_rss_kib(pid).ok_or("no VmRSS")?,
            control_before_kib: control_before,
            control_after_kib: vm_rss_kib(control).ok_or("no VmRSS")?,
        };
        m.check()?;
        Ok(m)
    }

    /// Stops the senders, waits until every verifier delivered every FIN,
    /// stops them and checks their logs. The report counts as violations
    /// a verifier that did not drain or exited with an error.
    pub fn finish(&mut self) -> Report {
        let mut extra = Vec::new();
        for v in self.verifiers.iter_mut().filter(|v| v.stdin.is_some()) {
            v.say("stop");
        }
        let t0 = Instant::now();
        for v in self.verifiers.iter_mut() {
            if v.exited() {
                continue;
            }
            while !v.text().lines().any(|l| l == "Z") {
                if t0.elapsed() > DRAIN || v.exited() {
                    extra.push(format!(
                        "{}: not drained within {DRAIN:?} (a FIN missing)",
                        v.name
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !extra.is_empty() {
            self.save_stats();
        }
        for v in self.verifiers.iter_mut() {
            v.say("quit");
            v.stdin = None;
        }
        let t1 = Instant::now();
        for v in self.verifiers.iter_mut() {
            while !v.exited() && t1.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            match v.exit {
                Some(s) if s.success() => {}
                Some(s) => extra.push(format!("{}: cpg-verify exited with {s}", v.name)),
                None => extra.push(format!("{}: cpg-verify did not quit", v.name)),
            }
        }
        let logs: Vec<NodeLog> = self
            .verifiers
            .iter()
            .map(|v| NodeLog::parse(&v.name, &v.text()))
            .collect();
        let mut report = verify::check(&logs);
        for x in extra {
            report.violations += 1;
            report.listed.push(x);
        }
        report
    }

    /// Saves every node's `corosync-cmapctl` output (Totem and IPC
    /// statistics: a stuck ring or a client that stopped reading) next to
    /// the verifiers' logs.
    pub fn save_stats(&self) {
        let tool = Cluster::daemon_binary().with_file_name("corosync-cmapctl");
        let tool = tool.to_string_lossy();
        for i in 0..self.params.nodes {
            let mut text = String::new();
            for argv in [&[&*tool][..], &[&*tool, "-m", "stats"][..]] {
                match self.cluster.exec_in(i, argv) {
                    Ok(o) => {
                        text.push_str(&String::from_utf8_lossy(&o.stdout));
                        text.push_str(&String::from_utf8_lossy(&o.stderr));
                    }
                    Err(e) => text.push_str(&e.to_string()),
                }
            }
            let _ = std::fs::write(self.params.log_dir.join(format!("cmap-n{i}.txt")), text);
        }
    }

    /// Copies every daemon's log next to the verifiers' logs.
    pub fn save_daemon_logs(&self) {
        for i in 0..self.params.nodes {
            let p = self.params.log_dir.join(format!("corosync-n{i}.log"));
            let _ = std::fs::write(p, self.cluster.log(i));
        }
    }
}
