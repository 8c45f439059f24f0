#!/bin/bash
# Where a parked IPC wake-up spends its time, against a bare eventfd wake-up
# between the same two processes: runs `ipc-bench --quick` under the kernel's
# scheduler and syscall tracepoints (tracefs, root) and prints, for each kind
# of wake-up, the median of each step from the client's `write` to the
# server's return from its wait (see breakdown.py).
#
#   cargo build --release -p ipc-shm && sudo scripts/ipc-trace/run.sh
#
# The tracing itself adds to every step; compare the two rows, not the
# absolute figures with ipc-bench's. Tracefs settings are restored on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bench=${IPC_BENCH:-$repo/target/release/ipc-bench}
[ -x "$bench" ] || { echo "run.sh: $bench missing: cargo build --release -p ipc-shm" >&2; exit 1; }
T=/sys/kernel/tracing
[ -e $T/trace ] || mount -t tracefs nodev $T
grep -qw x86-tsc $T/trace_clock || { echo "run.sh: needs the x86-tsc trace clock" >&2; exit 1; }
out=$(mktemp -d)
old_clock=$(sed 's/.*\[\(.*\)\].*/\1/' $T/trace_clock)
old_buf=$(cat $T/buffer_size_kb)
old_on=$(cat $T/tracing_on)
restore() {
    echo 0 > $T/tracing_on
    echo > $T/set_event; echo > $T/set_event_pid; echo > $T/trace
    echo "$old_clock" > $T/trace_clock; echo "$old_buf" > $T/buffer_size_kb
    echo 1 > $T/options/overwrite; echo 0 > $T/options/event-fork
    echo "$old_on" > $T/tracing_on
    rm -rf "$out"
}
trap restore EXIT
echo 0 > $T/tracing_on
echo > $T/trace
echo x86-tsc > $T/trace_clock
echo 65536 > $T/buffer_size_kb
echo 0 > $T/options/overwrite   # keep the start (the parked phase) if the buffer fills
echo 1 > $T/options/event-fork
echo > $T/set_event
for e in sched:sched_waking sched:sched_wakeup raw_syscalls:sys_enter raw_syscalls:sys_exit; do
    echo "$e" >> $T/set_event
done
# Two markers a second apart, each with the wall clock in ns, give the TSC
# rate (the trace's timestamps are TSC ticks: nanosecond resolution).
mark() { echo "calib $(date +%s%N)" > $T/trace_marker; }
(
    echo $BASHPID > $T/set_event_pid
    echo 1 > $T/tracing_on
    mark; sleep 1; mark
    exec "$bench" --quick
) > "$out/bench.txt"
echo 0 > $T/tracing_on
cat $T/trace > "$out/trace.txt"
tail -1 "$out/bench.txt"
python3 "$here/breakdown.py" "$out/trace.txt"
