//! C programs for the cluster tests: install the project with
//! `scripts/install.sh` into a private prefix (once per test process) and
//! compile a C source from `crates/tests/c/` against it with the system
//! `cc`, as a user of Corosync's libraries would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `target/<profile>`, from the test executable (`target/<profile>/deps/x`).
pub fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The install prefix (headers, libraries, pkg-config files), made once
/// per process from the already built artifacts, inside the target
/// directory (`target/<profile>/c-install/<test binary>`): replaced by the
/// next run of the same test binary, never left behind in /tmp.
pub fn install_prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let name = exe
            .file_name()
            .map_or_else(|| "tests".into(), |n| n.to_string_lossy().into_owned());
        let prefix = artifacts().join("c-install").join(name);
        let _ = std::fs::remove_dir_all(&prefix);
        let st = Command::new("sh")
            .arg(repo_root().join("scripts/install.sh"))
            .arg(&prefix)
            .env("COROSYNC_RS_SKIP_BUILD", "1")
            .env("COROSYNC_RS_ARTIFACTS", artifacts())
            .status()
            .expect("run install.sh");
        assert!(
            st.success(),
            "install.sh failed (build first: cargo build --release)"
        );
        prefix
    })
}

/// Compiles `crates/tests/c/<source>` with `-Wall -Werror` against the
/// installed headers, linking `libs` (e.g. `["-lcpg"]`); returns the
/// program and the library directory (for `LD_LIBRARY_PATH`).
pub fn compile(source: &str, libs: &[&str]) -> (PathBuf, PathBuf) {
    let prefix = install_prefix();
    let lib = prefix.join("lib");
    let bin = prefix.join(source.trim_end_matches(".c"));
    let out = Command::new("cc")
        .args(["-Wall", "-Werror", "-o"])
        .arg(&bin)
        .arg(repo_root().join("crates/tests/c").join(source))
        .arg(format!("-I{}", prefix.join("include").display()))
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(libs)
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc {source} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (bin, lib)
}
