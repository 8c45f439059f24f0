//! CPG end to end: a C program written for Corosync's libcpg, compiled with
//! the system `cc` against the installed headers and `-lcpg`, joins a group
//! on every node of a real cluster and multicasts; every node sees the
//! same sequence. A killed daemon gives NODEDOWN at the survivors within
//! token + consensus; a killed client gives PROCDOWN.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tests::cluster::cprog;
use tests::cluster::{Cluster, Transport};

const FORM: Duration = Duration::from_secs(30);
const TOKEN: u32 = 1000;
const COUNT: usize = 50;

/// The probe, compiled once per test process against the installed
/// headers and `-lcpg`.
fn probe() -> &'static (PathBuf, PathBuf) {
    static PROBE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PROBE.get_or_init(|| cprog::compile("cpg_probe.c", &["-lcpg"]))
}

/// One running probe and the lines it printed so far.
struct Probe {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    fn start(c: &Cluster, node: usize, group: &str, members: usize) -> Probe {
        Probe::start_with(c, node, group, members, COUNT, &[])
    }

    fn start_with(
        c: &Cluster,
        node: usize,
        group: &str,
        members: usize,
        count: usize,
        extra: &[&str],
    ) -> Probe {
        let (bin, lib) = probe();
        let mut child = c
            .command_in(node, bin)
            .args([group, &members.to_string(), &count.to_string()])
            .args(extra)
            .env("LD_LIBRARY_PATH", lib)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start cpg_probe");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        Probe { child, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool, limit: Duration) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.lines().iter().any(|l| pred(l)) {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "no {what} within {limit:?}; output:\n{}",
            self.lines().join("\n")
        );
    }

    fn local(&self) -> (u32, u32) {
        self.wait_line("LOCAL", |l| l.starts_with("LOCAL "), FORM);
        let l = self
            .lines()
            .into_iter()
            .find(|l| l.starts_with("LOCAL "))
            .unwrap();
        let v: Vec<u32> = l[6..].split(' ').map(|x| x.parse().unwrap()).collect();
        (v[0], v[1])
    }

    fn deliveries(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with("DELIVER "))
            .collect()
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster() -> Cluster {
    let c = Cluster::builder()
        .nodes(3)
        .transport(Transport::Udpu)
        .token(TOKEN)
        .start()
        .expect("cluster start");
    c.wait_membership(&[0, 1, 2], FORM).expect("ring of three");
    c
}

/// Starts a probe on every node and waits until each saw every message.
fn all_probes(c: &Cluster, group: &str) -> Vec<Probe> {
    let probes: Vec<Probe> = (0..3).map(|i| Probe::start(c, i, group, 3)).collect();
    for p in &probes {
        p.wait_line("DONE", |l| l == "DONE", FORM);
    }
    probes
}

#[test]
fn c_program_on_every_node_sees_the_same_sequence() {
    let c = cluster();
    let probes = all_probes(&c, "probe-order");
    let seqs: Vec<Vec<String>> = probes.iter().map(Probe::deliveries).collect();
    assert_eq!(seqs[0].len(), 3 * COUNT, "{:?}", seqs[0]);
    for (i, s) in seqs.iter().enumerate() {
        assert_eq!(s, &seqs[0], "node {i} saw another order");
    }
    // Each sender's messages in the order sent (agreed order is FIFO per
    // sender), and self-delivery included.
    for p in &probes {
        let (nodeid, pid) = p.local();
        let mine: Vec<String> = seqs[0]
            .iter()
            .filter(|l| l.starts_with(&format!("DELIVER {nodeid} {pid} ")))
            .cloned()
            .collect();
        let want: Vec<String> = (0..COUNT)
            .map(|k| format!("DELIVER {nodeid} {pid} {nodeid}:{k}"))
            .collect();
        assert_eq!(mine, want);
    }
    for p in probes {
        p.stop();
    }
}

/// What cpg_probe prints for a message longer than 64 bytes: the header,
/// the length and an FNV-1a checksum of the whole message.
fn expected_big(nodeid: u32, k: usize, size: usize) -> String {
    let head = format!("{nodeid}:{k}");
    let mut msg = head.clone().into_bytes();
    msg.push(0);
    for i in msg.len()..size {
        msg.push((i * 31 + k) as u8);
    }
    let mut h: u64 = 1469598103934665603;
    for b in &msg {
        h = (h ^ u64::from(*b)).wrapping_mul(1099511628211);
    }
    format!("{head} {size} {h:016x}")
}

/// Every probe sends `n` messages of `size` bytes with `guarantee`; every
/// node sees every message whole (FNV-checked), in one order, and each
/// sender's in the order sent.
fn big_messages_arrive_whole_everywhere(group: &str, size: usize, n: usize, guarantee: &str) {
    let c = cluster();
    let size_arg = size.to_string();
    let probes: Vec<Probe> = (0..3)
        .map(|i| Probe::start_with(&c, i, group, 3, n, &[&size_arg, guarantee]))
        .collect();
    for p in &probes {
        p.wait_line("DONE", |l| l == "DONE", Duration::from_secs(60));
    }
    let seqs: Vec<Vec<String>> = probes.iter().map(Probe::deliveries).collect();
    assert_eq!(seqs[0].len(), 3 * n);
    for s in &seqs[1..] {
        assert_eq!(s, &seqs[0], "same order and content everywhere");
    }
    for p in &probes {
        let (nodeid, pid) = p.local();
        let mine: Vec<&String> = seqs[0]
            .iter()
            .filter(|l| l.starts_with(&format!("DELIVER {nodeid} {pid} ")))
            .collect();
        assert_eq!(mine.len(), n);
        for (k, line) in mine.iter().enumerate() {
            assert_eq!(
                **line,
                format!("DELIVER {nodeid} {pid} {}", expected_big(nodeid, k, size))
            );
        }
    }
    for p in probes {
        p.stop();
    }
}

#[test]
fn one_mebibyte_safe_messages_reach_every_node_intact_and_in_order() {
    big_messages_arrive_whole_everywhere("probe-big", 1 << 20, 4, "safe");
}

/// Messages longer than `cpg_max_atomic_msgsize_get` (1 MiB) from a C
/// program: sent in pieces by the library, put together at every node's
/// library, delivered whole in one order everywhere.
#[test]
fn messages_past_the_atomic_limit_arrive_whole_everywhere() {
    big_messages_arrive_whole_everywhere("probe-pieces", (3 << 20) + 17, 2, "agreed");
}

#[test]
fn killed_daemon_gives_nodedown_within_token_plus_consensus() {
    let c = cluster();
    let probes = all_probes(&c, "probe-nodedown");
    let (dead_node, dead_pid) = probes[2].local();
    let gone = format!("{dead_node}:{dead_pid}:3");
    let t0 = Instant::now();
    c.kill9(2).unwrap();
    for p in &probes[..2] {
        p.wait_line(
            "NODEDOWN",
            |l| l.starts_with("CONFCHG 2 LEFT ") && l.contains(&gone),
            FORM,
        );
    }
    let took = t0.elapsed();
    // Token (1000 ms plus token_coefficient's 650 for the third node) and
    // consensus (1.2 × token), then the new ring's install, the CPG sync
    // and the probe's wake-up: measured 3.629-3.632 s against the 3.630 s
    // of the two timeouts (three runs, 2026-11-28); the margin is for
    // scheduling on a loaded 2-CPU machine, not for protocol time.
    let token = u64::from(TOKEN) + 650;
    let bound = Duration::from_millis(token + token * 12 / 10 + 400);
    eprintln!("NODEDOWN reported {took:?} after kill -9 (bound {bound:?})");
    assert!(took < bound, "took {took:?}");
}

#[test]
fn killed_client_gives_procdown() {
    let c = cluster();
    let mut probes = all_probes(&c, "probe-procdown");
    let (node, pid) = probes[2].local();
    probes[2].child.kill().unwrap();
    let gone = format!("{node}:{pid}:5");
    for p in &probes[..2] {
        p.wait_line(
            "PROCDOWN",
            |l| l.starts_with("CONFCHG 2 LEFT ") && l.contains(&gone),
            FORM,
        );
    }
    // The survivors keep working: a new member joins and is reported.
    let late = Probe::start(&c, 2, "probe-procdown", 3);
    let (n, p) = late.local();
    let joined = format!("JOINED {n}:{p}:1");
    probes[0].wait_line("JOIN", |l| l.contains(&joined), FORM);
    if let Some(mut stdin) = probes[0].child.stdin.take() {
        let _ = stdin.write_all(b"\n");
    }
}

/// A partition that heals: the processes cut off leave with reason NODEDOWN
/// and come back with NODEUP (the join lists exchanged at the merge), on
/// both sides.
#[test]
fn healed_partition_gives_nodeup_on_both_sides() {
    if let Some(why) = tests::chaos::unsupported_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let c = cluster();
    let probes = all_probes(&c, "probe-nodeup");
    let locals: Vec<(u32, u32)> = probes.iter().map(Probe::local).collect();
    let entry = |(n, p): (u32, u32), reason: u32| format!("{n}:{p}:{reason}");
    c.partition(&[&[0, 1], &[2]]).unwrap();
    for p in &probes[..2] {
        let down = entry(locals[2], 3);
        p.wait_line(
            "NODEDOWN",
            |l| l.contains(" LEFT ") && l.contains(&down),
            FORM,
        );
    }
    for &other in &locals[..2] {
        let down = entry(other, 3);
        probes[2].wait_line(
            "NODEDOWN",
            |l| l.contains(" LEFT ") && l.contains(&down),
            FORM,
        );
    }
    c.heal().unwrap();
    let joined_with = |l: &str, e: &str| {
        l.split_once(" JOINED ")
            .is_some_and(|(_, list)| list.split(',').any(|x| x == e))
    };
    for p in &probes[..2] {
        let up = entry(locals[2], 4);
        p.wait_line("NODEUP", |l| joined_with(l, &up), FORM);
    }
    for &other in &locals[..2] {
        let up = entry(other, 4);
        probes[2].wait_line("NODEUP", |l| joined_with(l, &up), FORM);
    }
    for p in probes {
        p.stop();
    }
}
