//! The `corosync` binary's flags and its handling of bad configurations:
//! a broken file stops it before it touches the network, naming file, line
//! and reason (exit code 8, Corosync's code for an unreadable configuration).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corosync() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_corosync"));
    // Never let the host's files or environment decide.
    for v in [
        "COROSYNC_MAIN_CONFIG_FILE",
        "COROSYNC_TOTEM_AUTHKEY_FILE",
        "COROSYNC_DEFAULT_CONFIG_IFACE",
    ] {
        c.env_remove(v);
    }
    c
}

fn conf(name: &str, text: &str) -> PathBuf {
    // Cargo's scratch directory for integration tests (inside target/):
    // nothing left behind in /tmp, one fixed place to reuse per run.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Waits (at most 20 s) until the daemon logging to `logfile` says it
/// provides service; fails with the log so far.
fn wait_until_ready(logfile: &Path) {
    let t0 = std::time::Instant::now();
    let read = || std::fs::read_to_string(logfile).unwrap_or_default();
    while !read().contains("ready to provide service") {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "{}",
            read()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

const GOOD: &str = "\
totem {
    version: 2
    cluster_name: cli
    transport: udpu
    interface {
        linknumber: 0
        mcastport: 25405
    }
}
nodelist {
    node {
        nodeid: 1
        ring0_addr: 127.0.0.1
    }
}
";

#[test]
fn version_flag() {
    let o = corosync().arg("-v").output().unwrap();
    assert!(o.status.success());
    assert!(text(&o).contains("Corosync Cluster Engine"), "{}", text(&o));
}

#[test]
fn test_flag_accepts_a_good_file_and_prints_warnings() {
    let p = conf(
        "good.conf",
        &format!("{GOOD}\nfrobnicate {{\n    x: 1\n}}\n"),
    );
    let o = corosync().args(["-t", "-c"]).arg(&p).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("Configuration is valid."), "{t}");
    assert!(
        t.contains(&format!("{}:17:", p.display())),
        "the unknown section is warned about with its line: {t}"
    );
}

#[test]
fn knet_runs_as_udpu_with_a_warning() {
    let p = conf("knet.conf", &GOOD.replace("udpu", "knet"));
    let o = corosync().args(["-t", "-c"]).arg(&p).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("knet"), "{t}");
}

#[test]
fn bad_value_names_file_line_and_reason_and_stops_before_the_network() {
    let p = conf(
        "bad.conf",
        &GOOD.replace("mcastport: 25405", "mcastport: lots"),
    );
    for args in [&["-t"][..], &["-f"][..]] {
        let o = corosync().args(args).arg("-c").arg(&p).output().unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(8), "{args:?}: {t}");
        assert!(t.contains(&format!("{}:7:", p.display())), "{t}");
        assert!(t.contains("mcastport"), "{t}");
        assert!(!t.contains("transport"), "no socket was opened: {t}");
    }
}

#[test]
fn syntax_error_names_its_line() {
    let p = conf("syntax.conf", "totem {\n    version: 2\n");
    let o = corosync().args(["-t", "-c"]).arg(&p).output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(8), "{t}");
    assert!(t.contains(&format!("{}:", p.display())), "{t}");
}

#[test]
fn no_local_node_in_the_nodelist_is_an_error() {
    let p = conf("foreign.conf", &GOOD.replace("127.0.0.1", "192.0.2.77"));
    let o = corosync().args(["-t", "-c"]).arg(&p).output().unwrap();
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
}

#[test]
fn missing_file_and_unknown_reader_are_errors() {
    let o = corosync()
        .args(["-t", "-c", "/nonexistent/corosync.conf"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(8));
    assert!(
        text(&o).contains("/nonexistent/corosync.conf"),
        "{}",
        text(&o)
    );

    let o = corosync()
        .arg("-t")
        .env("COROSYNC_DEFAULT_CONFIG_IFACE", "nosuchparser")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(8));
    assert!(text(&o).contains("nosuchparser"), "{}", text(&o));

    let p = conf("env.conf", GOOD);
    let o = corosync()
        .arg("-t")
        .env("COROSYNC_MAIN_CONFIG_FILE", &p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bad_priority_is_refused() {
    let o = corosync().args(["-t", "-P", "250"]).output().unwrap();
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
}

#[test]
fn logs_to_the_configured_file_with_timestamps_and_leaves_on_sigterm() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-log");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let logfile = dir.join("corosync.log");
    let text = GOOD.replace("25405", "25407")
        + &format!(
            "logging {{\n    to_stderr: no\n    to_syslog: no\n    to_logfile: yes\n    logfile: {}\n    timestamp: on\n}}\nsystem {{\n    state_dir: {}\n    sched_rr: no\n}}\n",
            logfile.display(),
            dir.join("state").display()
        );
    let p = conf("logfile.conf", &text);
    let mut child = corosync()
        .args(["-f", "-c"])
        .arg(&p)
        .env(
            "COROSYNC_IPC_ENDPOINT",
            format!("corosync-rs-cli-log-{}", std::process::id()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until_ready(&logfile);
    let read = || std::fs::read_to_string(&logfile).unwrap_or_default();
    // Ask it to leave, as an init system would.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let log = read();
    assert!(log.contains("Members[1]: 1"), "{log}");
    assert!(log.contains("SIGTERM: leaving the ring"), "{log}");
    // Every line starts with an RFC 3339 timestamp (2026-11-26T…Z).
    for line in log.lines() {
        let b = line.as_bytes();
        assert!(
            b.len() > 20 && b[4] == b'-' && b[10] == b'T',
            "no timestamp: {line}"
        );
    }
    assert!(
        std::fs::metadata(dir.join("state/ringid_1")).is_ok(),
        "the ring seq was stored in state_dir"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without a configuration file `corosync` runs the built-in one-node
/// configuration and says so in one line (`-t` prints it as a note). The
/// host's files are hidden in a mount namespace of the test's own; where
/// the host has them and no such namespace may be made, this is skipped.
#[test]
fn without_a_file_it_says_once_that_it_runs_the_built_in_default() {
    use daemon::config::{BUILT_IN_NOTE, DEFAULT_CONFIG_FILE, OPENAIS_CONFIG_FILE};
    let host_has_one = [DEFAULT_CONFIG_FILE, OPENAIS_CONFIG_FILE]
        .iter()
        .any(|f| Path::new(f).exists());
    let o = if host_has_one {
        // Exit 99: a directory could not be hidden; unshare itself exits 1.
        let hide = "for d in /etc/corosync /etc/ais; do \
                    if [ -d $d ]; then mount -t tmpfs none $d || exit 99; fi; done; \
                    exec \"$0\" -t";
        let c = corosync();
        let program = c.get_program().to_owned();
        let o = Command::new("unshare")
            .args(["-rm", "sh", "-c", hide])
            .arg(program)
            .envs(c.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .env_remove("COROSYNC_MAIN_CONFIG_FILE")
            .env_remove("COROSYNC_TOTEM_AUTHKEY_FILE")
            .env_remove("COROSYNC_DEFAULT_CONFIG_IFACE")
            .output();
        match o {
            Ok(o) if ![Some(1), Some(99)].contains(&o.status.code()) => o,
            other => {
                eprintln!("skipped: cannot hide the host's configuration: {other:?}");
                return;
            }
        }
    } else {
        corosync().arg("-t").output().unwrap()
    };
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(t.matches(BUILT_IN_NOTE).count(), 1, "{t}");
    assert_eq!(t.matches("without a cluster key").count(), 1, "{t}");
}

/// Starts the daemon on `port` with `corosync_rs_body` in its
/// `corosync_rs { }` section, logging to `dir/<port>.log`, the ipc endpoint
/// variable removed from its environment unless `env` gives one; waits
/// until it is ready. Returns the child and its log file.
fn start_with_extensions(
    dir: &Path,
    port: u16,
    corosync_rs_body: &str,
    env: Option<&str>,
) -> (std::process::Child, std::path::PathBuf) {
    let logfile = dir.join(format!("{port}.log"));
    let conf_text = GOOD.replace("25405", &port.to_string())
        + &format!(
            "logging {{\n    to_stderr: no\n    to_syslog: no\n    to_logfile: yes\n    \
             logfile: {}\n}}\nsystem {{\n    state_dir: {}\n    sched_rr: no\n}}\n\
             corosync_rs {{\n{corosync_rs_body}}}\n",
            logfile.display(),
            dir.join("state").display()
        );
    let p = conf(&format!("extensions-{port}.conf"), &conf_text);
    let mut cmd = corosync();
    cmd.args(["-f", "-c"])
        .arg(&p)
        .env_remove("COROSYNC_IPC_ENDPOINT");
    if let Some(e) = env {
        cmd.env("COROSYNC_IPC_ENDPOINT", e);
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until_ready(&logfile);
    (child, logfile)
}

/// `corosync_rs { ipc_membarrier }`: clients publish requests with plain
/// stores paired with the daemon's membarrier (the default, where the
/// kernel has it) or with a locked instruction each (`no`); the log says
/// which, and clients are served either way.
#[test]
fn ipc_membarrier_chooses_the_request_path_and_both_serve_clients() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-ipc-membarrier");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let pid = std::process::id();
    for (port, setting) in [(25413u16, "yes"), (25415, "no")] {
        let ep = format!("cli-membarrier-{pid}-{port}");
        let body = format!("    ipc_socket: {ep}\n    ipc_membarrier: {setting}\n");
        let (mut child, logfile) = start_with_extensions(&dir, port, &body, None);
        let log = std::fs::read_to_string(&logfile).unwrap();
        let plain = log.contains("clients publish requests with plain stores");
        let locked = log.contains("clients publish requests with a locked instruction each");
        assert!(plain != locked, "{log}");
        if setting == "no" {
            assert!(locked, "{log}");
        }
        for _ in 0..3 {
            let o = Command::new(env!("CARGO_BIN_EXE_corosync-cmapctl"))
                .args(["-g", "totem.version"])
                .env("COROSYNC_IPC_ENDPOINT", &ep)
                .output()
                .unwrap();
            assert!(o.status.success(), "{setting}: {}\n{log}", text(&o));
            assert!(text(&o).contains("= 2"), "{}", text(&o));
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(child.wait().unwrap().success());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `corosync_rs { ipc_socket }` names where clients connect (an abstract
/// name, or a path); `COROSYNC_IPC_ENDPOINT` in the daemon's environment
/// overrides it. Shown with the real `corosync-cmapctl`, which finds the
/// daemon through that variable.
#[test]
fn ipc_socket_key_names_the_endpoint_and_the_environment_overrides_it() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-ipc-socket");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let pid = std::process::id();
    let path_ep = dir.join("corosync.sock").display().to_string();
    let run = |port: u16, key: &str, env: Option<&str>, reachable: &[&str], not: &[&str]| {
        let body = format!("    ipc_socket: {key}\n");
        let (mut child, logfile) = start_with_extensions(&dir, port, &body, env);
        let read = || std::fs::read_to_string(&logfile).unwrap_or_default();
        let cmapctl = |ep: &str| {
            Command::new(env!("CARGO_BIN_EXE_corosync-cmapctl"))
                .args(["-g", "totem.version"])
                .env("COROSYNC_IPC_ENDPOINT", ep)
                .output()
                .unwrap()
        };
        for ep in reachable {
            let o = cmapctl(ep);
            assert!(o.status.success(), "{ep}: {}\n{}", text(&o), read());
        }
        for ep in not {
            let o = cmapctl(ep);
            assert!(!o.status.success(), "{ep} answered: {}", text(&o));
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(child.wait().unwrap().success());
    };
    // The key alone: a filesystem path.
    run(25409, &path_ep, None, &[&path_ep], &[]);
    // The variable wins over the key.
    let (key, var) = (format!("cli-key-{pid}"), format!("cli-env-{pid}"));
    run(25411, &key, Some(&var), &[&var], &[&key]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An argument that is not UTF-8 (Latin-1 `café`) is an error that says
/// which argument in every tool, and no panic in the daemon either.
#[test]
fn arguments_that_are_not_utf8_are_errors_not_panics() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let latin1 = OsStr::from_bytes(b"caf\xe9");
    let tools: [(&str, Vec<&OsStr>, usize); 5] = [
        (
            env!("CARGO_BIN_EXE_corosync-cmapctl"),
            vec![OsStr::new("-g"), latin1],
            2,
        ),
        (env!("CARGO_BIN_EXE_corosync-cfgtool"), vec![latin1], 1),
        (env!("CARGO_BIN_EXE_corosync-cpgtool"), vec![latin1], 1),
        (env!("CARGO_BIN_EXE_corosync-quorumtool"), vec![latin1], 1),
        (
            env!("CARGO_BIN_EXE_corosync-keygen"),
            vec![OsStr::new("-k"), latin1],
            2,
        ),
    ];
    for (bin, args, which) in tools {
        let o = Command::new(bin).args(&args).output().unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{bin}: {t}");
        assert!(!t.contains("panicked"), "{bin} panicked: {t}");
        let why = format!("argument {which} is not valid UTF-8");
        assert!(t.contains(&why), "{bin} does not say why: {t}");
    }
    // The daemon takes a file name as it is (no such file here) and
    // refuses a stray argument, both without a panic.
    for args in [
        vec![OsStr::new("-t"), OsStr::new("-c"), latin1],
        vec![latin1],
    ] {
        let o = corosync().args(&args).output().unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(!t.contains("panicked"), "corosync panicked: {t}");
    }
}
