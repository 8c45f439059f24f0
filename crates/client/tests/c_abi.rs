//! The C ABI against the headers, with the system C compiler: constants,
//! struct sizes and printf macros as Corosync's, every declared function
//! present in both the shared and the static library, and the answers
//! without a daemon (CS_ERR_LIBRARY), for garbage handles
//! (CS_ERR_BAD_HANDLE) and for NULL arguments (CS_ERR_INVALID_PARAM).

mod common;

use std::process::Command;

use common::*;

const EXPECTED: &[(&str, &str)] = &[
    ("functions", "34"),
    ("CS_OK", "1"),
    ("CS_ERR_LIBRARY", "2"),
    ("CS_ERR_TRY_AGAIN", "6"),
    ("CS_ERR_INVALID_PARAM", "7"),
    ("CS_ERR_BAD_HANDLE", "9"),
    ("CS_ERR_NOT_SUPPORTED", "19"),
    ("CS_ERR_TOO_BIG", "26"),
    ("CS_ERR_NO_SECTIONS", "27"),
    ("CS_ERR_TOO_MANY_GROUPS", "30"),
    ("CS_ERR_SECURITY", "100"),
    ("CS_DISPATCH_ONE", "1"),
    ("CS_DISPATCH_ALL", "2"),
    ("CS_DISPATCH_BLOCKING", "3"),
    ("CS_DISPATCH_ONE_NONBLOCKING", "4"),
    ("CS_TRUE", "1"),
    ("CPG_TYPE_AGREED", "2"),
    ("CPG_TYPE_SAFE", "3"),
    ("CPG_FLOW_CONTROL_ENABLED", "1"),
    ("CPG_REASON_PROCDOWN", "5"),
    ("CPG_ITERATION_ALL", "3"),
    ("CPG_MODEL_V1", "1"),
    ("EVS_TYPE_SAFE", "3"),
    ("sizeof_cs_error_t", "4"),
    ("CS_PRI_NODE_ID", "4294967295"),
    ("CS_PRI_NODE_ID_PADDED", "[         7]"),
    ("CS_PRI_RING_ID", "1.5a"),
    ("CS_PRI_RING_ID_SEQ", "abc"),
    ("strerror_ok", "success"),
    ("strerror_library", "CS_ERR_LIBRARY"),
    ("strerror_security", "CS_ERR_SECURITY"),
    ("strerror_unknown", "unknown error"),
    ("qb_eagain", "6"),
    ("hdb_ebadf", "9"),
    ("cpg_initialize", "2"),
    ("cpg_initialize_null_callbacks", "2"),
    ("cpg_model_initialize", "2"),
    ("evs_initialize", "2"),
    ("cpg_initialize_null", "7"),
    ("cpg_model_initialize_bad_model", "7"),
    ("cpg_model_initialize_bad_flags", "7"),
    ("evs_initialize_null", "7"),
    ("cpg_finalize_garbage", "9"),
    ("cpg_finalize_zero", "9"),
    ("cpg_join_garbage", "9"),
    ("cpg_leave_garbage", "9"),
    ("cpg_fd_get_garbage", "9"),
    ("cpg_dispatch_garbage", "9"),
    ("cpg_mcast_joined_garbage", "9"),
    ("cpg_local_get_garbage", "9"),
    ("cpg_context_set_garbage", "9"),
    ("cpg_iteration_next_garbage", "9"),
    ("cpg_iteration_next_null", "7"),
    ("cpg_iteration_initialize_group_with_all", "7"),
    ("cpg_iteration_initialize_one_group_without", "7"),
    ("cpg_iteration_initialize_bad_type", "7"),
    ("cpg_iteration_initialize_long_name", "13"),
    ("cpg_iteration_initialize_garbage", "9"),
    ("cpg_iteration_finalize_garbage", "9"),
    ("evs_finalize_garbage", "9"),
    ("evs_join_garbage", "9"),
    ("evs_fd_get_garbage", "9"),
    ("evs_dispatch_garbage", "9"),
];

fn compile(out: &std::path::Path, link: &[&str]) {
    let src = crate_dir().join("tests/c/abi_check.c");
    let include = crate_dir().join("include");
    let mut cc = Command::new("cc");
    cc.args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(out)
        .arg(&src)
        .arg("-I")
        .arg(&include)
        .args(link);
    run_ok(&mut cc);
}

fn run(exe: &std::path::Path, tag: &str) -> Vec<(String, String)> {
    let out = run_ok(
        Command::new(exe)
            .env("LD_LIBRARY_PATH", profile_dir())
            .env("COROSYNC_IPC_ENDPOINT", unused_endpoint(tag)),
    );
    key_values(&out.stdout)
}

#[test]
fn c_program_against_the_shared_library() {
    let dir = scratch("abi-shared");
    let exe = dir.join("abi_check");
    let lib = library("so");
    compile(
        &exe,
        &[
            "-L",
            lib.parent().unwrap().to_str().unwrap(),
            "-lcorosync_rs",
        ],
    );
    assert_values(&run(&exe, "shared"), EXPECTED);
}

#[test]
fn c_program_against_the_static_library() {
    let dir = scratch("abi-static");
    let exe = dir.join("abi_check_static");
    let lib = library("a");
    let lib = lib.to_str().unwrap();
    compile(&exe, &[lib, "-lpthread", "-ldl", "-lm", "-lrt", "-lutil"]);
    assert_values(&run(&exe, "static"), EXPECTED);
}

/// Every header compiles on its own in strict ISO C (no GNU extensions,
/// nothing from <unistd.h> included before it) and as C++, as Corosync's
/// do: a program built with `-std=c99 -pedantic` against Corosync's
/// headers must build against ours. The enum values only Corosync's
/// headers name (CPG_REASON_UNDEFINED) are checked at compile time.
#[test]
fn every_header_compiles_alone_in_strict_modes() {
    let dir = scratch("abi-strict");
    let include = crate_dir().join("include");
    let headers = [
        "corotypes.h",
        "cpg.h",
        "evs.h",
        "cmap.h",
        "cfg.h",
        "quorum.h",
        "votequorum.h",
        "corodefs.h",
        "swab.h",
    ];
    let modes: [(&str, &[&str]); 4] = [
        ("c99", &["-x", "c", "-std=c99", "-pedantic"]),
        ("c11", &["-x", "c", "-std=c11", "-pedantic"]),
        // With <unistd.h> first, _POSIX_MONOTONIC_CLOCK picks clock_gettime.
        (
            "c99-posix",
            &[
                "-x",
                "c",
                "-std=c99",
                "-pedantic",
                "-D_POSIX_C_SOURCE=200809L",
                "-include",
                "unistd.h",
            ],
        ),
        ("c++", &["-x", "c++", "-std=c++11", "-pedantic"]),
    ];
    for header in headers {
        let mut src = format!("#include <corosync/{header}>\n");
        if header == "cpg.h" {
            src.push_str(
                "typedef char undefined_is_zero[(CPG_REASON_UNDEFINED == 0) ? 1 : -1];\n\
                 typedef char procdown_is_five[(CPG_REASON_PROCDOWN == 5) ? 1 : -1];\n",
            );
        }
        match header {
            // Checked at compile time (a negative array size fails).
            "corodefs.h" => src.push_str(
                "typedef char ids[(CPG_SERVICE == 2 && VOTEQUORUM_SERVICE == 5 \
                 && PROCESSOR_COUNT_MAX == 384 && TOTEMIP_ADDRLEN == 16) ? 1 : -1];\n\
                 int main(void) { return 0; }\n",
            ),
            "swab.h" => src.push_str(
                "typedef char swabs[(swab16(0x1234) == 0x3412 \
                 && swab32(0x12345678UL) == 0x78563412UL \
                 && swab64(0x0102030405060708ULL) == 0x0807060504030201ULL) ? 1 : -1];\n\
                 int main(void) { return 0; }\n",
            ),
            // Corosync 3.1's tagged struct (programs name it so).
            "quorum.h" => src.push_str(
                "int main(void) { struct quorum_ring_id r = { 1, 2 }; \
                 return (int)(cs_timestamp_get() == r.seq); }\n",
            ),
            _ => src.push_str("int main(void) { return (int)(cs_timestamp_get() == 0); }\n"),
        }
        let file = dir.join(format!("strict_{}.src", header.replace('.', "_")));
        std::fs::write(&file, &src).unwrap();
        for (mode, flags) in modes {
            let status = Command::new("cc")
                .args(flags)
                .args(["-Wall", "-Werror", "-fsyntax-only", "-I"])
                .arg(&include)
                .arg(&file)
                .status()
                .expect("run cc");
            assert!(
                status.success(),
                "<corosync/{header}> does not compile as {mode}"
            );
        }
    }
}
