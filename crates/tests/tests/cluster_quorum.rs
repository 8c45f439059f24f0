//! Quorum and votequorum on real clusters: a three-node cluster loses
//! quorum when it is cut down to one node and regains it when nodes come
//! back; two_node, wait_for_all and last_man_standing behave as Corosync's;
//! `corosync-quorumtool -s/-l/-e` output and exit codes; and a C program
//! written for libquorum/libvotequorum (compiled with `cc` against the
//! installed headers, `-lquorum -lvotequorum`) sees loss and regain.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tests::cluster::cprog::{self, artifacts};
use tests::cluster::{Cluster, Transport};

const FORM: Duration = Duration::from_secs(30);
const TOKEN: u32 = 1000;
const QUORUM: &str = "quorum {\n\tprovider: corosync_votequorum\n}";

fn quorumtool_bin() -> PathBuf {
    let p = artifacts().join("corosync-quorumtool");
    assert!(
        p.exists(),
        "{} missing: cargo build --release -p daemon",
        p.display()
    );
    p
}

/// Runs corosync-quorumtool on node `i`: (exit code, stdout, stderr).
fn quorumtool(c: &Cluster, i: usize, args: &[&str]) -> (i32, String, String) {
    let out = c
        .command_in(i, quorumtool_bin())
        .args(args)
        .output()
        .expect("run corosync-quorumtool");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `quorumtool -s` on node `i` until `pred(code, stdout)`.
fn wait_status(c: &Cluster, i: usize, what: &str, pred: impl Fn(i32, &str) -> bool) -> String {
    let t0 = Instant::now();
    let mut last = (0, String::new(), String::new());
    while t0.elapsed() < FORM {
        last = quorumtool(c, i, &["-s"]);
        if pred(last.0, &last.1) {
            return last.1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "node {i}: no {what} within {FORM:?}; last exit {}:\n{}\n{}",
        last.0, last.1, last.2
    );
}

fn quorate(code: i32, out: &str) -> bool {
    code == 0 && out.contains("Quorate:          Yes")
}

fn not_quorate(code: i32, out: &str) -> bool {
    code == 2 && out.contains("Quorate:          No") && out.contains("Activity blocked")
}

fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn cluster(n: usize, quorum: &str) -> Cluster {
    let c = Cluster::builder()
        .nodes(n)
        .transport(Transport::Udpu)
        .token(TOKEN)
        .config_extra(quorum)
        .start()
        .expect("cluster start");
    let all: Vec<usize> = (0..n).collect();
    c.wait_membership(&all, FORM).expect("one ring");
    for i in 0..n {
        c.wait_ready(i, FORM).expect("sync completes");
    }
    c
}

/// The C probe, compiled once against the installed headers.
fn probe_bin() -> &'static (PathBuf, PathBuf) {
    static PROBE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PROBE.get_or_init(|| cprog::compile("quorum_probe.c", &["-lquorum", "-lvotequorum"]))
}

struct Probe {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    fn start(c: &Cluster, node: usize) -> Probe {
        let (bin, lib) = probe_bin();
        let mut child = c
            .command_in(node, bin)
            .env("LD_LIBRARY_PATH", lib)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start quorum_probe");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        let p = Probe { child, lines };
        p.wait("READY", |l| l == "READY");
        p
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        while t0.elapsed() < FORM {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no {what}; output:\n{}", self.lines().join("\n"));
    }

    fn stop(mut self) -> Vec<String> {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
        self.lines()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn three_nodes_lose_quorum_at_one_and_regain_it() {
    let c = cluster(3, QUORUM);
    let ids = c.node_ids();
    for (i, id) in ids.iter().enumerate() {
        let out = wait_status(&c, i, "quorum", quorate);
        assert!(
            out.starts_with("Quorum information\n------------------\nDate:"),
            "{out}"
        );
        assert_eq!(field(&out, "Quorum provider:"), "corosync_votequorum");
        assert_eq!(field(&out, "Nodes:"), "3");
        assert_eq!(field(&out, "Node ID:"), id.to_string());
        assert_eq!(field(&out, "Expected votes:"), "3");
        assert_eq!(field(&out, "Highest expected:"), "3");
        assert_eq!(field(&out, "Total votes:"), "3");
        assert_eq!(field(&out, "Quorum:"), "2");
        assert_eq!(field(&out, "Flags:"), "Quorate");
        assert!(out.contains("\nVotequorum information\n----------------------\n"));
        assert!(out.contains("\nMembership information\n----------------------\n"));
        assert!(out.contains("    Nodeid      Votes Name\n"), "{out}");
        let local = format!("{:>10} {:>10} ", id, 1);
        assert!(
            out.lines()
                .any(|l| l.starts_with(&local) && l.ends_with(" (local)")),
            "{out}"
        );
    }
    // -l: the membership block only, one line per node.
    let (code, out, _) = quorumtool(&c, 1, &["-l", "-o", "i"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("\nMembership information\n"), "{out}");
    let rows: Vec<&str> = out.lines().skip(4).collect();
    assert_eq!(rows.len(), 3, "{out}");
    for (row, id) in rows.iter().zip(&ids) {
        assert!(row.starts_with(&format!("{id:>10}          1 ")), "{out}");
    }
    let (code, out, _) = quorumtool(&c, 1, &["-l", "-H"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("0x{:08x} ", ids[0])), "{out}");

    let probe = Probe::start(&c, 0);
    let first = probe.lines();
    assert_eq!(first[0], "TYPE 1");
    assert_eq!(first[1], "QUORATE 1");
    assert_eq!(first[2], format!("INFO {} 3 3 2 2", ids[0]));

    // Partition one node off: 2 of 3 keep quorum, the lone node loses it.
    c.partition(&[&[0, 1], &[2]]).unwrap();
    let out = wait_status(&c, 2, "quorum loss", not_quorate);
    assert_eq!(field(&out, "Total votes:"), "1");
    assert_eq!(field(&out, "Nodes:"), "1");
    for i in 0..2 {
        let out = wait_status(&c, i, "two nodes", |code, out| {
            quorate(code, out) && field(out, "Total votes:") == "2"
        });
        assert_eq!(field(&out, "Quorum:"), "2");
    }
    c.heal().unwrap();
    for i in 0..3 {
        wait_status(&c, i, "three nodes again", |code, out| {
            quorate(code, out) && field(out, "Nodes:") == "3"
        });
    }

    // Bad input: one-line reason, non-zero exit.
    let (code, _, err) = quorumtool(&c, 0, &["-e", "10"]);
    assert_eq!(code, 1);
    assert_eq!(err, "Unable to set expected votes: CS_ERR_INVALID_PARAM\n");
    let (code, _, err) = quorumtool(&c, 0, &["-e", "0"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "New expected votes value was not valid, try a positive number\n"
    );
    let (code, _, err) = quorumtool(&c, 0, &["-v", "1", "-n", "999"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Unable to set votes 1 for nodeid: 999:"),
        "{err}"
    );
    // -e 4 on three votes: quorum 3, still quorate; then back to 3.
    assert_eq!(quorumtool(&c, 0, &["-e", "4"]).0, 0);
    let out = wait_status(&c, 2, "expected 4", |code, out| {
        quorate(code, out) && field(out, "Expected votes:") == "4"
    });
    assert_eq!(field(&out, "Quorum:"), "3");
    assert_eq!(quorumtool(&c, 1, &["-e", "3"]).0, 0);
    wait_status(&c, 0, "expected 3", |code, out| {
        quorate(code, out) && field(out, "Expected votes:") == "3"
    });
    probe.wait("EXPECTED 7 4", |l| l == "EXPECTED 7 4");

    // Kill two daemons: the survivor and its C client see the loss …
    c.kill9(1).unwrap();
    c.kill9(2).unwrap();
    wait_status(&c, 0, "quorum loss", not_quorate);
    probe.wait("QUORUM 0", |l| l.starts_with("QUORUM 0 "));
    probe.wait("NODELIST", |l| {
        l.starts_with(&format!("NODELIST {} JOINED LEFT", ids[0]))
    });
    probe.wait("VQ loss", |l| l.starts_with("VQ 7 0 "));
    // … and the regain when one returns.
    c.restart(1).unwrap();
    wait_status(&c, 0, "quorum regained", |code, out| {
        quorate(code, out) && field(out, "Total votes:") == "2"
    });
    let l = probe.wait("QUORUM 1", |l| {
        l.starts_with("QUORUM 1 ") && l.split(' ').count() == 6
    });
    assert!(l.ends_with(&format!(" {} {}", ids[0], ids[1])), "{l}");
    probe.wait("VQ regain", |l| l.starts_with("VQ 7 1 "));
    let lines = probe.stop();
    assert_eq!(lines.last().map(String::as_str), Some("BYE"));
}

#[test]
fn two_node_keeps_quorum_with_one() {
    let c = cluster(
        2,
        "quorum {\n\tprovider: corosync_votequorum\n\ttwo_node: 1\n}",
    );
    for i in 0..2 {
        let out = wait_status(&c, i, "quorum", quorate);
        assert_eq!(field(&out, "Flags:"), "2Node Quorate WaitForAll");
        assert_eq!(field(&out, "Quorum:"), "1");
    }
    c.kill9(1).unwrap();
    let out = wait_status(&c, 0, "one node", |code, out| {
        quorate(code, out) && field(out, "Nodes:") == "1"
    });
    assert_eq!(field(&out, "Total votes:"), "1");
    // A restarted lone node waits for all before granting quorum.
    c.kill9(0).unwrap();
    c.restart(0).unwrap();
    c.wait_ready(0, FORM).ok();
    wait_status(&c, 0, "waiting for all", not_quorate);
    c.restart(1).unwrap();
    for i in 0..2 {
        wait_status(&c, i, "both back", |code, out| {
            quorate(code, out) && field(out, "Nodes:") == "2"
        });
    }
}

#[test]
fn wait_for_all_needs_every_node_once() {
    let c = Cluster::builder()
        .nodes(3)
        .transport(Transport::Udpu)
        .token(TOKEN)
        .config_extra("quorum {\n\tprovider: corosync_votequorum\n\twait_for_all: 1\n}")
        .autostart(false)
        .start()
        .expect("cluster start");
    c.start_node(0).unwrap();
    c.start_node(1).unwrap();
    c.wait_membership(&[0, 1], FORM).expect("two nodes");
    let out = wait_status(&c, 0, "waiting", |code, out| {
        not_quorate(code, out) && field(out, "Nodes:") == "2"
    });
    assert_eq!(field(&out, "Flags:"), "WaitForAll");
    c.start_node(2).unwrap();
    for i in 0..3 {
        wait_status(&c, i, "all seen", |code, out| {
            quorate(code, out) && field(out, "Flags:") == "Quorate WaitForAll"
        });
    }
    // Once seen, losing one of three keeps quorum.
    c.kill9(2).unwrap();
    wait_status(&c, 0, "two of three", |code, out| {
        quorate(code, out) && field(out, "Nodes:") == "2"
    });
}

#[test]
fn last_man_standing_lowers_expected_votes() {
    let c = cluster(
        3,
        "quorum {\n\tprovider: corosync_votequorum\n\twait_for_all: 1\n\tlast_man_standing: 1\n\tlast_man_standing_window: 1000\n\tauto_tie_breaker: 1\n}",
    );
    let out = wait_status(&c, 0, "quorum", quorate);
    assert_eq!(
        field(&out, "Flags:"),
        "Quorate WaitForAll LastManStanding AutoTieBreaker"
    );
    c.kill9(2).unwrap();
    wait_status(&c, 0, "expected votes 2", |code, out| {
        quorate(code, out) && field(out, "Expected votes:") == "2"
    });
    // Down to the node with the lowest id, through the tie breaker.
    c.kill9(1).unwrap();
    let out = wait_status(&c, 0, "last man", |code, out| {
        quorate(code, out) && field(out, "Nodes:") == "1"
    });
    assert_eq!(field(&out, "Total votes:"), "1");
    wait_status(&c, 0, "expected votes 1", |code, out| {
        quorate(code, out) && field(out, "Expected votes:") == "1"
    });
    c.restart(1).unwrap();
    c.restart(2).unwrap();
    for i in 0..3 {
        wait_status(&c, i, "all back", |code, out| {
            quorate(code, out) && field(out, "Expected votes:") == "3"
        });
    }
}

/// A cluster-wide reload (`corosync-cfgtool -R`) changes expected votes on
/// every member, as Corosync's does: 7 expected votes need 4 present, so
/// the three nodes lose quorum; back to the nodelist's 3 they regain it.
#[test]
fn reload_changes_expected_votes_cluster_wide() {
    let c = cluster(3, QUORUM);
    for i in 0..3 {
        wait_status(&c, i, "quorum", quorate);
    }
    let cfgtool = artifacts().join("corosync-cfgtool");
    let originals: Vec<String> = (0..3)
        .map(|i| std::fs::read_to_string(c.config_path(i)).unwrap())
        .collect();
    let reload = |files: &dyn Fn(usize) -> String| {
        for i in 0..3 {
            std::fs::write(c.config_path(i), files(i)).unwrap();
        }
        let out = c
            .command_in(0, &cfgtool)
            .arg("-R")
            .output()
            .expect("run corosync-cfgtool -R");
        assert!(out.status.success(), "{out:?}");
    };
    reload(&|i| {
        let t = &originals[i];
        assert!(t.contains(QUORUM), "{t}");
        t.replacen(
            QUORUM,
            "quorum {\n\tprovider: corosync_votequorum\n\texpected_votes: 7\n}",
            1,
        )
    });
    for i in 0..3 {
        let out = wait_status(&c, i, "quorum lost to expected votes 7", not_quorate);
        assert_eq!(field(&out, "Expected votes:"), "7");
        assert_eq!(field(&out, "Quorum:"), "4 Activity blocked");
    }
    reload(&|i| originals[i].clone());
    for i in 0..3 {
        let out = wait_status(&c, i, "quorum back at 3 expected votes", quorate);
        assert_eq!(field(&out, "Expected votes:"), "3");
    }
}

/// `two_node` is one of the quorum options Corosync re-reads at runtime:
/// a survivor of two without it has no quorum; given it by a reload, it
/// has; the options read only at start (wait_for_all here) stay as they
/// were, and the log says they need a restart.
#[test]
fn reload_turns_two_node_on_for_a_lone_survivor() {
    let c = cluster(2, QUORUM);
    for i in 0..2 {
        wait_status(&c, i, "quorum", quorate);
    }
    c.kill9(1).unwrap();
    let out = wait_status(&c, 0, "quorum lost with one of two", |code, out| {
        not_quorate(code, out) && field(out, "Nodes:") == "1"
    });
    assert_eq!(field(&out, "Quorum:"), "2 Activity blocked");
    let text = std::fs::read_to_string(c.config_path(0)).unwrap();
    std::fs::write(
        c.config_path(0),
        text.replacen(
            QUORUM,
            "quorum {\n\tprovider: corosync_votequorum\n\ttwo_node: 1\n\twait_for_all: 1\n}",
            1,
        ),
    )
    .unwrap();
    let out = c
        .command_in(0, artifacts().join("corosync-cfgtool"))
        .arg("-R")
        .output()
        .expect("run corosync-cfgtool -R");
    assert!(out.status.success(), "{out:?}");
    let out = wait_status(&c, 0, "two_node from the reload", quorate);
    assert_eq!(field(&out, "Quorum:"), "1");
    assert_eq!(field(&out, "Flags:"), "2Node Quorate");
    c.wait_log(
        0,
        "take effect at the next restart: quorum.wait_for_all",
        FORM,
    )
    .expect("wait_for_all is a start-up option");
}
