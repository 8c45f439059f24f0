#!/bin/bash
# Where a token rotation goes at 1000 msgs/s, ours against Corosync: starts
# 3 nodes (udpu) in network namespaces with the anchor's setup.sh, has node 1
# send 64-byte CPG messages at 1000/s for 6 s (cluster-bench's client, the
# others receive), and prints for node 2: tokens received a second (from its
# stats map, `stats.srp.orf_token_rx`), so the rotation time; the remote
# latency its client measured; and, from `perf sched record` over 1 s, the
# median time from a daemon getting a CPU to waking the next daemon (the
# token leaving: the veth path wakes the receiver inside the sender's send)
# and from there to its sleep.
#
#   cargo build --release && scripts/install.sh /tmp/op
#   sudo scripts/token-trace/run.sh ours /tmp/op     # or: corosync
#
# Needs root, perf, gcc, ../shared/anchors/corosync/ and, for corosync, the
# Debian package with libcpg-dev. Alternate the engines: this VM's noise is
# larger than most differences between two runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
anchor=${ANCHOR:-$repo/../shared/anchors/corosync}
engine=${1:?usage: run.sh ours PREFIX | run.sh corosync}
work=$(mktemp -d)
cleanup() { bash "$anchor/teardown.sh" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
bash "$anchor/teardown.sh" >/dev/null 2>&1 || true
if [ "$engine" = ours ]; then
    prefix=${2:?run.sh ours PREFIX (scripts/install.sh PREFIX first)}
    flags=(-I"$prefix/include" -L"$prefix/lib" -Wl,-rpath,"$prefix/lib")
    cmapctl=$prefix/sbin/corosync-cmapctl
    export COROSYNC_BIN=$prefix/sbin/corosync
    export CPG_CFLAGS="-I$prefix/include" CPG_LDFLAGS="-L$prefix/lib -Wl,-rpath,$prefix/lib"
else
    flags=()
    cmapctl=corosync-cmapctl
    export CPG_CFLAGS= CPG_LDFLAGS=
fi
gcc -O2 -o "$work/cpgbench" "$repo/crates/bench/c/cpgbench.c" "${flags[@]}" -lcpg -lm
CPGBENCH=$work/cpgbench_own bash "$anchor/setup.sh" 3 udpu >/dev/null
tokens() {
    ip netns exec host2 "$cmapctl" -m stats 2>/dev/null |
        awk -F'= ' '/stats.srp.orf_token_rx /{print $2}'
}
for i in 1 2 3; do
    args=(lat --size 64 --rate 1000 --time 6 --warmup 0.5 --members 3 --group tt --timeout 30)
    [ "$i" = 1 ] && args+=(--send)
    ip netns exec "host$i" "$work/cpgbench" "${args[@]}" > "$work/lat.$i" 2>&1 &
done
sleep 2
t0=$(tokens); s0=$(date +%s.%N)
# The daemons run at SCHED_RR 99: perf must too, or it sees nothing.
chrt -r 99 perf sched record -o "$work/sched.data" -- sleep 1 >/dev/null 2>&1
sleep 1
t1=$(tokens); s1=$(date +%s.%N)
wait
awk '{print $2, $3}' /tmp/corobench/cluster/pids > "$work/pids"
perf script -i "$work/sched.data" 2>/dev/null > "$work/sched.txt"
python3 "$here/visits.py" "$work/sched.txt" "$work/pids" |
    while read -r line; do echo "$engine $line"; done
awk -v e="$engine" -v a="$t0" -v b="$t1" -v s="$s0" -v t="$s1" 'BEGIN {
    r = (b - a) / (t - s); printf "%s tokens_per_s=%.0f rotation_us=%.1f\n", e, r, 1e6 / r }'
grep -o 'p50_us=[0-9.]* p99_us=[0-9.]*' "$work/lat.2" | sed "s/^/$engine node2 remote /"
