//! A C program using the whole C API against the real daemon
//! (`common::daemon`): callbacks run from `cpg_dispatch`, the fd polls,
//! every query, iteration, zero-copy buffers, finalize works from inside a
//! callback and from another thread, EVS.

mod common;

use std::process::Command;

use common::daemon::Daemon;
use common::*;

#[test]
fn c_program_against_the_daemon() {
    let daemon = Daemon::start();
    let exe = compile_c("dispatch_check.c", &scratch("c-dispatch"));
    let out = run_ok(
        Command::new(&exe)
            .env("LD_LIBRARY_PATH", profile_dir())
            .env("COROSYNC_IPC_ENDPOINT", &daemon.endpoint),
    );
    let got = key_values(&out.stdout);
    assert_values(
        &got,
        &[
            ("init", "1"),
            ("context_set", "1"),
            ("context_get", "1"),
            ("context_ok", "1"),
            ("fd_get", "1"),
            ("join", "1"),
            ("join_null", "7"),
            ("poll_confchg", "1"),
            ("dispatch_one", "1"),
            ("confchgs", "1"),
            ("joined", "1"),
            ("confchg_members", "1"),
            ("confchg_group", "grp1"),
            ("mcast", "1"),
            ("mcast_null_iov", "7"),
            ("mcast_bad_guarantee", "7"),
            ("poll_deliver", "1"),
            ("dispatch_all", "1"),
            ("delivered", "1"),
            ("msg", "hello world"),
            ("pid_ok", "1"),
            ("dispatch_nonblocking_empty", "6"),
            ("dispatch_bad_flags", "7"),
            ("membership_get", "1"),
            ("membership_entries", "1"),
            ("membership_pid_ok", "1"),
            ("membership_null", "7"),
            ("local_get", "1"),
            ("nodeid", "1"),
            ("max_atomic", "1"),
            ("max_atomic_size", "1048576"),
            ("flow_control", "1"),
            ("flow_control_state", "0"),
            ("iteration_initialize", "1"),
            ("iteration_next", "1"),
            ("iteration_group", "grp1"),
            ("iteration_end", "27"),
            ("iteration_finalize", "1"),
            ("iteration_finalize_again", "9"),
            ("iteration_one_group_null", "7"),
            ("zcb_alloc", "1"),
            ("zcb_mcast", "1"),
            ("zcb_mcast_foreign", "7"),
            ("zcb_free", "1"),
            ("zcb_free_again", "7"),
            ("finalize_in_callback", "1"),
            ("dispatch_finalized_in_callback", "9"),
            ("msg2", "zero-copy"),
            ("finalize_after", "9"),
            ("join_after", "9"),
            ("init2", "1"),
            ("finalize_other_thread", "1"),
            ("blocking_dispatch_after_finalize", "9"),
            ("evs_init", "1"),
            ("evs_join", "1"),
            ("evs_mcast_joined", "1"),
            ("evs_mcast_groups", "1"),
            ("evs_fd_get", "1"),
            ("evs_got", "2"),
            ("evs_msg", "world"),
            ("evs_membership", "1"),
            ("evs_local", "1"),
            ("evs_members", "1"),
            ("evs_context_set", "1"),
            ("evs_context_get", "1"),
            ("evs_leave", "1"),
            ("evs_finalize", "1"),
            ("evs_finalize_again", "9"),
        ],
    );
}
