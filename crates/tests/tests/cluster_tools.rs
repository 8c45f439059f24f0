//! The operator tools and the cmap/cfg APIs against a real three-node
//! cluster: corosync-keygen's key runs the cluster, cfgtool -s/-n/-a/-R/-k/-H,
//! cmapctl dump/get/set/delete/track and the stats map (-m stats) with
//! numbers that grow, cpgtool listing a group a C client joined, and a C
//! program written for Corosync's libcmap/libcfg compiled against the
//! installed headers.
//!
//! The tool binaries come from `cargo build --release -p daemon --bins`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tests::cluster::cprog::{self, artifacts};
use tests::cluster::{Cluster, Transport};

const FORM: Duration = Duration::from_secs(30);
const TOKEN: u32 = 1000;

fn tool(name: &str) -> String {
    let p = artifacts().join(name);
    assert!(
        p.exists(),
        "{} missing: cargo build --release -p daemon --bins",
        p.display()
    );
    p.display().to_string()
}

/// Three nodes over udpu, formed and synced; `extra` is appended to each
/// node's configuration.
fn cluster_with(key: Option<&[u8]>, extra: &str) -> Cluster {
    let mut b = Cluster::builder()
        .nodes(3)
        .transport(Transport::Udpu)
        .token(TOKEN);
    if !extra.is_empty() {
        b = b.config_extra(extra);
    }
    if let Some(k) = key {
        b = b.authkey(k);
    }
    let c = b.start().expect("cluster start");
    c.wait_membership(&[0, 1, 2], FORM)
        .expect("three nodes form one ring");
    for i in 0..3 {
        c.wait_ready(i, FORM).expect("sync completes");
    }
    c
}

fn run(c: &Cluster, i: usize, argv: &[&str]) -> Output {
    let t = tool(argv[0]);
    let mut v = vec![t.as_str()];
    v.extend_from_slice(&argv[1..]);
    c.exec_in(i, &v).expect("exec tool")
}

fn ok(c: &Cluster, i: usize, argv: &[&str]) -> String {
    let out = run(c, i, argv);
    assert!(
        out.status.success(),
        "{argv:?} on node {i} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stat(c: &Cluster, i: usize, key: &str) -> u64 {
    let out = ok(c, i, &["corosync-cmapctl", "-m", "stats", "-g", key]);
    out.trim()
        .rsplit(" = ")
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in {out:?}"))
}

#[test]
fn keygen_key_runs_a_cluster_and_cfgtool_shows_links_and_nodes() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("keygen");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let keyfile = dir.join("authkey");
    let out = Command::new(tool("corosync-keygen"))
        .args(["-l", "-k"])
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Gathering 2048 bits"));
    let key = std::fs::read(&keyfile).unwrap();
    assert_eq!(key.len(), 256);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&keyfile).unwrap().permissions().mode() & 0o777,
        0o400
    );
    let bad = Command::new(tool("corosync-keygen"))
        .args(["-s", "5", "-k"])
        .arg(dir.join("x"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);

    let c = cluster_with(Some(&key), "");
    let ids = c.node_ids();
    let s = ok(&c, 0, &["corosync-cfgtool", "-s"]);
    assert!(
        s.starts_with(&format!("Local node ID {}, transport udpu", ids[0])),
        "{s}"
    );
    assert!(s.contains("LINK ID 0"), "{s}");
    assert!(
        s.contains("localhost") && s.matches("\tconnected").count() == 2,
        "{s}"
    );
    let b = ok(&c, 0, &["corosync-cfgtool", "-s", "-b"]);
    assert!(b.contains("status\t= n33"), "{b}");
    let n = ok(&c, 1, &["corosync-cfgtool", "-n"]);
    assert!(n.contains(&format!("nodeid: {} reachable", ids[0])), "{n}");
    assert!(n.contains("enabled connected"), "{n}");
    let a = ok(&c, 0, &["corosync-cfgtool", "-a", &ids[2].to_string()]);
    assert_eq!(a.trim(), c.addr(2).to_string());
    let bad = run(&c, 0, &["corosync-cfgtool", "-a", "9999"]);
    assert!(!bad.status.success());
    // Traffic is authenticated with the generated key: no auth failures.
    assert_eq!(stat(&c, 0, "stats.transport.dropped.auth_failed"), 0);
}

#[test]
fn cmapctl_dump_get_set_delete_track_and_stats() {
    let c = cluster_with(None, "");
    let dump = ok(&c, 0, &["corosync-cmapctl"]);
    assert!(
        dump.contains(&format!("totem.token (u32) = {TOKEN}")),
        "{dump}"
    );
    assert!(
        dump.contains("nodelist.node.0.ring0_addr (str) = "),
        "{dump}"
    );
    assert!(
        dump.contains(&format!(
            "runtime.members.{}.status (str) = joined",
            c.node_id(2)
        )),
        "{dump}"
    );
    let pre = ok(&c, 0, &["corosync-cmapctl", "nodelist."]);
    assert!(
        pre.lines().all(|l| l.starts_with("nodelist.")) && pre.lines().count() >= 6,
        "{pre}"
    );

    // Track on node 0 while node 0's map changes (cmap writes are local).
    let t = tool("corosync-cmapctl");
    let mut tracker = c
        .command_in(0, &t)
        .args(["-T", "app."])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tracker.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "Type \"q\" to finish");
    ok(&c, 0, &["corosync-cmapctl", "-s", "app.x", "u32", "5"]);
    assert_eq!(
        ok(&c, 0, &["corosync-cmapctl", "-g", "app.x"]).trim(),
        "app.x (u32) = 5"
    );
    ok(
        &c,
        0,
        &["corosync-cmapctl", "-s", "app.x", "str", "hello world"],
    );
    ok(&c, 0, &["corosync-cmapctl", "-d", "app.x"]);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(lines.next().unwrap().unwrap());
    }
    assert_eq!(
        seen,
        vec![
            "create> app.x (u32) = 5",
            "modify> app.x (str) = hello world",
            "delete> app.x (str) = hello world"
        ]
    );
    writeln!(tracker.stdin.as_mut().unwrap(), "q").unwrap();
    assert!(tracker.wait().unwrap().success());
    // Local: node 1 never saw app.x.
    let miss = run(&c, 1, &["corosync-cmapctl", "-g", "app.x"]);
    assert!(!miss.status.success());
    let err = String::from_utf8_lossy(&miss.stderr);
    assert_eq!(err.trim(), "Can't get key app.x. Error CS_ERR_NOT_EXIST");

    // Bad input: one line, non-zero exit.
    for argv in [
        vec!["corosync-cmapctl", "-s", "app.y", "u8", "300"],
        vec!["corosync-cmapctl", "-s", "app.y", "nosuch", "1"],
        vec!["corosync-cmapctl", "-s", "ab", "u8", "1"],
        vec![
            "corosync-cmapctl",
            "-m",
            "stats",
            "-s",
            "stats.srp.mcast_tx",
            "u64",
            "1",
        ],
        vec!["corosync-cmapctl", "-d", "no.such.key"],
    ] {
        let out = run(&c, 0, &argv);
        assert!(!out.status.success(), "{argv:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{argv:?}"
        );
    }

    // The stats map: real numbers that grow.
    let stats = ok(&c, 0, &["corosync-cmapctl", "-m", "stats"]);
    for k in [
        "stats.srp.orf_token_rx (u64) = ",
        "stats.srp.mcast_tx (u64) = ",
        "stats.srp.mtt_rx_token (u64) = ",
        "stats.srp.membership_changes (u64) = ",
        "stats.transport.engine (str) = ",
        "stats.transport.bytes_tx (u64) = ",
        "stats.transport.dropped.auth_failed (u64) = ",
        "stats.ipcs.global.active (u64) = ",
        ".pid (u32) = ",
        ".flow_control (u32) = ",
    ] {
        assert!(stats.contains(k), "{k} missing from\n{stats}");
    }
    let t1 = stat(&c, 0, "stats.srp.orf_token_rx");
    let b1 = stat(&c, 0, "stats.transport.bytes_rx");
    std::thread::sleep(Duration::from_millis(1500));
    let t2 = stat(&c, 0, "stats.srp.orf_token_rx");
    let b2 = stat(&c, 0, "stats.transport.bytes_rx");
    assert!(t1 > 0 && t2 > t1, "tokens {t1} → {t2}");
    assert!(b2 > b1, "bytes {b1} → {b2}");
    // Where the token's time in the daemon goes: the visits timed are
    // tokens this node received and sent on, and each took some time
    // from its turn's first datagram to its send, and in the send.
    let timed = stat(&c, 0, "stats.srp.token_timed");
    let tokens = stat(&c, 0, "stats.srp.orf_token_rx");
    assert!(
        timed > 0 && timed <= tokens,
        "{timed} visits timed of {tokens}"
    );
    for k in ["stats.srp.token_held_ns", "stats.srp.token_send_ns"] {
        let ns = stat(&c, 0, k);
        assert!(ns > 0, "{k} = {ns} after {timed} visits");
    }
    // (Read behind other datagrams: zero when the token came alone.)
    stat(&c, 0, "stats.srp.token_queued_ns");

    // -q: the value alone.
    let q = ok(&c, 0, &["corosync-cmapctl", "-q", "-g", "totem.token"]);
    assert_eq!(q.trim(), TOKEN.to_string());
    // -C: counters start again from zero (the Totem ones; the transport's
    // are left alone), and a clear option Corosync does not know is refused.
    let accepted = stat(&c, 0, "stats.ipcs.global.accepted");
    ok(&c, 0, &["corosync-cmapctl", "-C", "totem"]);
    let t3 = stat(&c, 0, "stats.srp.orf_token_rx");
    let b3 = stat(&c, 0, "stats.transport.bytes_rx");
    assert!(t3 < t2, "tokens after clear: {t3} (before: {t2})");
    assert!(b3 >= b2, "transport bytes untouched: {b2} → {b3}");
    ok(&c, 0, &["corosync-cmapctl", "-C", "all"]);
    let accepted_after = stat(&c, 0, "stats.ipcs.global.accepted");
    assert!(
        accepted_after < accepted,
        "ipc counters cleared by all: {accepted} → {accepted_after}"
    );
    let bad = run(&c, 0, &["corosync-cmapctl", "-C", "disk"]);
    assert!(!bad.status.success());
}

/// The C probe (-lcmap -lcfg -lcpg), compiled once against the installed
/// headers; the install must carry the cmap and cfg names.
fn c_probe() -> &'static PathBuf {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let prefix = cprog::install_prefix();
        assert!(
            prefix.join("lib/libcmap.so.4").exists()
                && prefix.join("lib/pkgconfig/libcfg.pc").exists()
        );
        cprog::compile("cmap_cfg_probe.c", &["-lcmap", "-lcfg", "-lcpg"]).0
    })
}

#[test]
fn c_program_and_cpgtool_and_reload() {
    let probe = c_probe();
    let c = cluster_with(None, "");
    for i in 0..3 {
        let out = c
            .exec_in(i, &[probe.to_str().unwrap(), &c.node_id(i).to_string()])
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.ends_with("done\n"),
            "node {i}:\n{text}"
        );
    }

    // A C client holds a CPG group; cpgtool on another node lists it.
    let mut holder = c
        .command_in(1, probe)
        .args([&c.node_id(1).to_string(), "toolgroup"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    loop {
        let l = lines.next().expect("probe output").unwrap();
        assert!(!l.starts_with("FAIL"), "{l}");
        if l == "ok cpg_join" {
            break;
        }
    }
    let pid = holder.id();
    let end = Instant::now() + Duration::from_secs(10);
    let listing = loop {
        let out = ok(&c, 0, &["corosync-cpgtool"]);
        if out.contains("toolgroup") || Instant::now() > end {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        listing.starts_with("Group Name\t       PID\t   Node ID\n"),
        "{listing}"
    );
    assert!(
        listing.contains(&format!(
            "toolgroup\n\t\t{pid:>10}\t{:>10} ({})",
            c.node_id(1),
            c.addr(1)
        )),
        "{listing}"
    );
    let names = ok(&c, 2, &["corosync-cpgtool", "-n"]);
    assert!(names.lines().any(|l| l == "toolgroup"), "{names}");
    let delim = ok(&c, 2, &["corosync-cpgtool", "-d", ";"]);
    assert!(
        delim.contains(&format!("toolgroup;{pid};{}", c.node_id(1))),
        "{delim}"
    );
    drop(holder.stdin.take());
    let _ = holder.wait();

    // Reload: node 2's file changes; -R on node 0 makes every node re-read.
    let path = c.config_path(2).to_path_buf();
    let text = std::fs::read_to_string(&path).unwrap();
    // Logging targets change at runtime too: a log file is added.
    let logfile = path.with_file_name("reloaded.log");
    let logging = format!(
        "logging {{\n    fileline: on\n    to_logfile: yes\n    logfile: {}",
        logfile.display()
    );
    let edited = if text.contains("logging {") {
        text.replacen("logging {", &logging, 1)
    } else {
        format!("{text}\n{logging}\n}}\n")
    };
    // A Totem timing too (Corosync lets token change at runtime): 1000 ms
    // + 650 ms coefficient for 3 nodes → 1200 + 650.
    assert!(edited.contains("\ttoken: 1000\n"), "{edited}");
    let edited = edited.replacen("\ttoken: 1000\n", "\ttoken: 1200\n", 1);
    std::fs::write(&path, edited).unwrap();
    assert_eq!(
        ok(&c, 2, &["corosync-cmapctl", "-g", "logging.fileline"]).trim(),
        "logging.fileline (str) = no"
    );
    assert_eq!(
        ok(
            &c,
            2,
            &["corosync-cmapctl", "-g", "runtime.config.totem.token"]
        )
        .trim(),
        "runtime.config.totem.token (u32) = 1650"
    );
    let r = ok(&c, 0, &["corosync-cfgtool", "-R"]);
    assert!(r.contains("Reloading corosync.conf...\nDone"), "{r}");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let v = ok(&c, 2, &["corosync-cmapctl", "-g", "logging.fileline"]);
        if v.trim() == "logging.fileline (str) = yes" {
            break;
        }
        assert!(Instant::now() < end, "reload not applied on node 2: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let v0 = ok(&c, 0, &["corosync-cmapctl", "-g", "logging.fileline"]);
    assert_eq!(v0.trim(), "logging.fileline (str) = no");
    assert_eq!(
        ok(
            &c,
            2,
            &["corosync-cmapctl", "-g", "runtime.config.totem.token"]
        )
        .trim(),
        "runtime.config.totem.token (u32) = 1850"
    );
    // Totem itself took it, not only the key.
    c.wait_log(
        2,
        "totem timings now: token 1850 ms",
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(
        !c.log(2).contains("take effect at the next restart"),
        "{}",
        c.log(2)
    );
    let file_log = std::fs::read_to_string(&logfile).unwrap_or_default();
    assert!(
        file_log.contains("totem timings now: token 1850 ms"),
        "{file_log}"
    );
    // -L reopens it (logrotate moved it away).
    let rotated = logfile.with_extension("log.1");
    std::fs::rename(&logfile, &rotated).unwrap();
    ok(&c, 2, &["corosync-cfgtool", "-L"]);
    let end = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&logfile)
        .unwrap_or_default()
        .contains("log files reopened")
    {
        assert!(Instant::now() < end, "{} not reopened", logfile.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cfgtool_kill_and_shutdown() {
    let c = cluster_with(None, "");
    let victim = c.node_id(2);
    let out = ok(&c, 0, &["corosync-cfgtool", "-k", &victim.to_string()]);
    assert_eq!(out.trim(), format!("Killing node {victim}"));
    let st = c
        .wait_exit(2, Duration::from_secs(10))
        .expect("killed node exits");
    assert!(st.success(), "{st:?}");
    c.wait_membership(&[0, 1], FORM).expect("survivors reform");
    assert!(c.log(2).contains("killed by node"), "{}", c.log_tail(2, 20));

    let out = ok(&c, 1, &["corosync-cfgtool", "-H"]);
    assert_eq!(out.trim(), "Shutting down corosync");
    let st = c
        .wait_exit(1, Duration::from_secs(10))
        .expect("shut down node exits");
    assert!(st.success(), "{st:?}");
    c.wait_membership(&[0], FORM).expect("last node alone");
    let bad = run(&c, 0, &["corosync-cfgtool", "-k", "abc"]);
    assert!(!bad.status.success());
    assert_eq!(String::from_utf8_lossy(&bad.stderr).lines().count(), 1);
}

/// `corosync_rs { sqpoll_ms }` runs the transport's io_uring with a
/// submission-queue polling thread: the ring forms and tokens keep coming
/// through it, and the stats map says so (0 where io_uring is not used).
#[test]
fn a_ring_forms_and_runs_with_io_uring_sqpoll() {
    let c = cluster_with(None, "corosync_rs {\n sqpoll_ms: 2\n}");
    let uring = ok(
        &c,
        0,
        &[
            "corosync-cmapctl",
            "-m",
            "stats",
            "-g",
            "stats.transport.engine",
        ],
    );
    for i in 0..3 {
        let on = stat(&c, i, "stats.transport.sqpoll");
        assert_eq!(
            on,
            u64::from(uring.contains("io_uring")),
            "node {i}: {uring}"
        );
    }
    let t1 = stat(&c, 1, "stats.srp.orf_token_rx");
    std::thread::sleep(Duration::from_millis(500));
    let t2 = stat(&c, 1, "stats.srp.orf_token_rx");
    assert!(t2 > t1, "tokens {t1} → {t2}");
}
