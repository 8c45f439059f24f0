//! `cluster-bench` interrupted (SIGINT, as Ctrl-C) in the middle of a run
//! stops, writes what it has, exits 130 and leaves nothing behind: no
//! network namespace of its run, no daemon, no client. Needs root (the
//! benchmark's namespaces), as CI runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Names of the network namespaces that exist now.
fn namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn sigint_mid_run_cleans_up_everything_and_exits_130() {
    if !is_root() {
        eprintln!("skipped: cluster-bench needs root for its network namespaces");
        return;
    }
    let daemon = tests::cluster::Cluster::daemon_binary();
    assert!(
        daemon.is_file(),
        "{} is missing: cargo build --release first",
        daemon.display()
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-bench-interrupt");
    let _ = std::fs::remove_dir_all(&out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cluster-bench"))
        .args(["--engines", "ours", "--quick", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cluster-bench");
    let pid = child.id();
    // Every name of the child's runs starts `crh<its pid in base 36>-`.
    let prefix = format!(
        "{}{}-",
        tests::cluster::names::MARK,
        tests::cluster::names::base36(u64::from(pid), 1)
    );
    // Whatever happens below, the child does not outlive the test.
    struct Reap(u32);
    impl Drop for Reap {
        fn drop(&mut self) {
            // SAFETY: kill(2) with a pid of ours; harmless if it exited.
            unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGINT) };
        }
    }
    let reap = Reap(pid);
    // Interrupt once the first measurement is under way (its cluster's
    // daemons and clients are running).
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ours: tput") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("cluster-bench never reached its first point");
    assert!(
        namespaces().iter().any(|n| n.starts_with(&prefix)),
        "the run's namespaces ({prefix}*) do not exist: the test would prove nothing"
    );
    // SAFETY: kill(2) on our own child, which has not been waited for.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "cluster-bench still running 120 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Waited for: its pid may be reused now, so no signal any more.
    std::mem::forget(reap);
    let log = reader.join().expect("stderr reader");
    assert_eq!(status.code(), Some(130), "{log}");
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}\n{log}");
    // Daemons name their run's directory (the prefix), clients the
    // output directory.
    let mut procs = processes_with(&prefix);
    procs.extend(processes_with(&out.display().to_string()));
    assert!(procs.is_empty(), "processes left: {procs:?}");
    // What was measured before the interrupt is written, and says so.
    let md = std::fs::read_to_string(out.join("results.md")).expect("results.md");
    assert!(md.contains("INTERRUPTED"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
}
