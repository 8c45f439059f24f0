//! Helpers shared by the tests: where the built library and daemon are,
//! running the system C compiler, and the real daemon ([`daemon`]).

#![allow(dead_code)]

pub mod daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/<profile>`: the test executable is `target/<profile>/deps/<test>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// `target/<profile>/libcorosync_rs.so` (and `.a` next to it).
pub fn library(ext: &str) -> PathBuf {
    let p = profile_dir().join(format!("libcorosync_rs.{ext}"));
    assert!(
        p.exists(),
        "{} is missing: build it first with `cargo build --release -p client` \
         (the README's test command does)",
        p.display()
    );
    p
}

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory for this test's outputs (`name` is unique per call
/// site); the next run replaces it, so runs leave no trail of directories.
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("client-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An abstract socket name nobody listens on.
pub fn unused_endpoint(tag: &str) -> String {
    format!("corosync-rs-test-{tag}-{}-{}", std::process::id(), line!())
}

/// Runs a command, failing the test with its output when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `KEY=VALUE` lines of a program's output.
pub fn key_values(stdout: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Compares every expected key with the program's value.
pub fn assert_values(got: &[(String, String)], expected: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (k, v) in expected {
        match got.iter().find(|(gk, _)| gk == k) {
            Some((_, gv)) if gv == v => {}
            Some((_, gv)) => wrong.push(format!("{k}: expected {v}, got {gv}")),
            None => wrong.push(format!("{k}: missing")),
        }
    }
    assert!(
        wrong.is_empty(),
        "C program disagrees:\n{}",
        wrong.join("\n")
    );
}

/// Compiles one of `tests/c/*.c` against `libcorosync_rs.so` into `dir`.
pub fn compile_c(source: &str, dir: &Path) -> PathBuf {
    let exe = dir.join(source.trim_end_matches(".c"));
    let lib = library("so");
    run_ok(
        Command::new("cc")
            .args([
                "-std=gnu11",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pthread",
                "-o",
            ])
            .arg(&exe)
            .arg(crate_dir().join("tests/c").join(source))
            .arg("-I")
            .arg(crate_dir().join("include"))
            .arg("-L")
            .arg(lib.parent().unwrap())
            .arg("-lcorosync_rs"),
    );
    exe
}
