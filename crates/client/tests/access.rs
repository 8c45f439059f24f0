//! Who may connect to the real daemon, as Corosync decides it: root
//! always; another user only when a `uidgid { }` section of the
//! configuration (cmap `uidgid.config.uid.N` / `.gid.N`, read-only) or a
//! key set at run time (`uidgid.uid.N` / `uidgid.gid.N` = 1, with
//! `corosync-cmapctl`) names its uid or gid. The clients here are the real
//! tools run under other uids; this needs root (to change uid), as the
//! daemon tests run in CI.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::daemon::Daemon;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A tool of this build run against `d`, as `uid`:`gid` (None: as root).
fn tool(d: &Daemon, name: &str, args: &[&str], as_user: Option<(u32, u32)>) -> Output {
    let mut cmd = Command::new(common::profile_dir().join(name));
    cmd.args(args).env("COROSYNC_IPC_ENDPOINT", &d.endpoint);
    if let Some((uid, gid)) = as_user {
        cmd.uid(uid).gid(gid);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("{name}: {e} (build the tools: cargo build --release)"))
}

/// Whether `uid`:`gid` may read a key (a whole connection: init, get,
/// finalize).
fn may_connect(d: &Daemon, uid: u32, gid: u32) -> bool {
    let out = tool(
        d,
        "corosync-cmapctl",
        &["-g", "totem.version"],
        Some((uid, gid)),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // Refused: an explicit error naming it, not a hang or a crash.
        assert!(
            stderr.contains("Failed to initialize") && stderr.contains("CS_ERR_ACCESS"),
            "uid {uid}: refused without CS_ERR_ACCESS: {stderr}"
        );
    }
    out.status.success()
}

/// As root: `corosync-cmapctl ARGS` must succeed.
fn cmapctl_ok(d: &Daemon, args: &[&str]) -> String {
    let out = tool(d, "corosync-cmapctl", args, None);
    assert!(
        out.status.success(),
        "corosync-cmapctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (a reload is applied by the daemon after the tool returns) until
/// `uid`:`gid`'s access is `want`.
fn wait_access(d: &Daemon, uid: u32, gid: u32, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while may_connect(d, uid, gid) != want {
        assert!(
            Instant::now() < deadline,
            "uid {uid} gid {gid}: access still {} after 10 s; log:\n{}",
            !want,
            common::daemon::tail(&d.log_path(), 30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn uidgid_sections_and_runtime_keys_decide_who_may_connect() {
    if !is_root() {
        eprintln!("skipped: changing uid needs root");
        return;
    }
    // Ids without a passwd entry are fine: the daemon checks numbers.
    let d = Daemon::start_with_sections(&[], "uidgid {\n    uid: 61001\n}\n");

    // The configuration's entry is a read-only key, and lets that uid in.
    let v = cmapctl_ok(&d, &["-g", "uidgid.config.uid.61001"]);
    assert!(v.trim_end().ends_with("= 1"), "{v}");
    assert!(may_connect(&d, 61001, 61001));
    assert!(!may_connect(&d, 61002, 61002));
    let out = tool(
        &d,
        "corosync-cmapctl",
        &["-s", "uidgid.config.uid.61002", "u8", "1"],
        None,
    );
    assert!(
        !out.status.success(),
        "uidgid.config.* must be read-only to clients"
    );
    assert!(!may_connect(&d, 61002, 61002));
    // gid 0 is root's group: let in, as Corosync does.
    assert!(may_connect(&d, 61003, 0));

    // Run-time keys: a uid, then a gid; deleting the key refuses again.
    cmapctl_ok(&d, &["-s", "uidgid.uid.61002", "u8", "1"]);
    assert!(may_connect(&d, 61002, 61002));
    cmapctl_ok(&d, &["-s", "uidgid.gid.62000", "u8", "1"]);
    assert!(may_connect(&d, 61004, 62000));
    cmapctl_ok(&d, &["-d", "uidgid.uid.61002"]);
    assert!(!may_connect(&d, 61002, 61002));
    // Only the value 1 allows (Corosync's check).
    cmapctl_ok(&d, &["-s", "uidgid.uid.61005", "u8", "2"]);
    assert!(!may_connect(&d, 61005, 61005));

    // A reload replaces the file's entries and keeps the run-time keys.
    let conf = std::fs::read_to_string(d.config_path()).unwrap();
    let conf = conf.replace("uid: 61001", "uid: 61006");
    std::fs::write(d.config_path(), conf).unwrap();
    let out = tool(&d, "corosync-cfgtool", &["-R"], None);
    assert!(
        out.status.success(),
        "corosync-cfgtool -R: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_access(&d, 61006, 61006, true);
    assert!(!may_connect(&d, 61001, 61001), "removed from the file");
    assert!(may_connect(&d, 61004, 62000), "run-time gid key kept");
    let keys = cmapctl_ok(&d, &["uidgid."]);
    assert!(
        !keys.contains("uidgid.config.uid.61001") && keys.contains("uidgid.config.uid.61006"),
        "{keys}"
    );

    // Every refusal was logged with the peer's ids (the log is written
    // behind the daemon's work: wait for it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("uid 61002 gid 61002") {
        assert!(
            Instant::now() < deadline,
            "refusals are logged; log:\n{}",
            common::daemon::tail(&d.log_path(), 30)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
