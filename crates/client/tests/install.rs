//! `scripts/install.sh` into a temporary prefix, then a C program built
//! the way users build (pkg-config, or -I/-L with -lcpg -levs) that runs
//! from the prefix with LD_LIBRARY_PATH and, with no daemon, gets
//! CS_ERR_LIBRARY. The script installs the artifacts of this test's own
//! build (COROSYNC_RS_SKIP_BUILD=1), so no nested cargo runs.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn install(prefix: &Path) {
    let script = crate_dir().join("../../scripts/install.sh");
    run_ok(
        Command::new("sh")
            .arg(&script)
            .arg(prefix)
            .env("COROSYNC_RS_SKIP_BUILD", "1")
            .env("COROSYNC_RS_ARTIFACTS", profile_dir()),
    );
}

fn check_run(exe: &Path, prefix: &Path) {
    let out = run_ok(
        Command::new(exe)
            .env("LD_LIBRARY_PATH", prefix.join("lib"))
            .env("COROSYNC_IPC_ENDPOINT", unused_endpoint("install")),
    );
    assert_values(
        &key_values(&out.stdout),
        &[
            ("cpg_initialize", "2"),
            ("evs_initialize", "2"),
            ("strerror", "CS_ERR_LIBRARY"),
        ],
    );
}

#[test]
fn install_layout_and_linking() {
    let dir = scratch("install");
    let prefix = dir.join("prefix");
    install(&prefix);

    for f in [
        "include/corosync/corotypes.h",
        "include/corosync/cpg.h",
        "include/corosync/evs.h",
        "include/corosync/hdb.h",
        "lib/libcorosync_rs.so",
        "lib/libcorosync_rs.a",
        "lib/libcpg.so",
        "lib/libcpg.so.4",
        "lib/libcpg.a",
        "lib/libevs.so",
        "lib/libevs.so.4",
        "lib/libevs.a",
        "lib/pkgconfig/libcpg.pc",
        "lib/pkgconfig/libevs.pc",
        "lib/pkgconfig/corosync-rs.pc",
    ] {
        assert!(prefix.join(f).exists(), "{f} not installed");
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/libcpg.pc")).unwrap();
    assert!(pc.contains(&format!("prefix={}", prefix.display())), "{pc}");

    let src = crate_dir().join("tests/c/install_check.c");

    // -I/-L with -lcpg -levs.
    let exe = dir.join("plain");
    run_ok(
        Command::new("cc")
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .arg(format!("-I{}", prefix.join("include").display()))
            .arg(format!("-L{}", prefix.join("lib").display()))
            .args(["-lcpg", "-levs"]),
    );
    check_run(&exe, &prefix);

    // The recorded dependency is the SONAME, found in PREFIX/lib.
    if let Ok(out) = Command::new("readelf").arg("-d").arg(&exe).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("[libcorosync_rs.so]"), "{text}");
    }

    // pkg-config, when the machine has it.
    let pkg = Command::new("pkg-config")
        .args(["--cflags", "--libs", "libcpg", "libevs"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output();
    if let Some(out) = pkg.ok().filter(|o| o.status.success()) {
        let flags = String::from_utf8(out.stdout).unwrap();
        let exe = dir.join("pkgconfig");
        run_ok(
            Command::new("cc")
                .arg("-o")
                .arg(&exe)
                .arg(&src)
                .args(flags.split_whitespace()),
        );
        check_run(&exe, &prefix);
    } else {
        eprintln!("pkg-config not available: skipped that build");
    }
}
