#!/usr/bin/env bash
# Instructions the daemon spends per delivered CPG message, counted by
# callgrind: one node on loopback inside a network namespace of its own,
# one client (crates/bench/c/cpgbench.c against our libcpg) multicasting
# SIZE-byte messages to itself as fast as the daemon takes them.
#
# User-space instructions only (callgrind does not see the kernel): the
# request ring, the CPG service, Totem, the run loop and the event ring.
# Two runs, A with the client sending for a moment and B for TIME seconds;
# start-up, ring formation, the client's join and shutdown cost the same in
# both, so
#
#     instr_per_msg = (total_B − total_A) / (delivered_B − delivered_A)
#
# The count moves a little from run to run (how many messages a token visit
# finds queued depends on timing), far less than a timed figure on this
# shared VM. Needs root (a network namespace), valgrind and gcc.
#
# Usage: crates/bench/callgrind-daemon.sh   (env: SIZE=64 TIME=6; KEEP=FILE keeps
# the long run's callgrind output for callgrind_annotate; CLIENT=1 counts the
# client instead: cpgbench and our libcpg, sending and receiving each message)
# The last line is `daemon_instr_per_msg=<decimal>`.
set -euo pipefail

SIZE=${SIZE:-64}
TIME=${TIME:-6}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -p daemon -p client >&2
out=$(mktemp -d)
ns=cgd$$
cleanup() {
    if [ -n "${dpid:-}" ]; then kill -TERM "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true; fi
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT
COROSYNC_RS_SKIP_BUILD=1 sh scripts/install.sh "$out/prefix" >/dev/null
gcc -O2 -o "$out/cpgbench" crates/bench/c/cpgbench.c -I"$out/prefix/include" \
    -L"$out/prefix/lib" -Wl,-rpath,"$out/prefix/lib" -lcpg -lm
ip netns add "$ns"
ip -n "$ns" link set lo up
mkdir -p "$out/state"
sh "$root/crates/bench/one-node-conf.sh" cgd "$out/state" > "$out/corosync.conf"

run() { # name seconds -> prints the messages delivered; leaves $out/name.cg
    local vg=(valgrind --tool=callgrind --callgrind-out-file="$out/$1.cg") dvg=() cvg=()
    if [ -n "${CLIENT:-}" ]; then cvg=("${vg[@]}"); else dvg=("${vg[@]}"); fi
    ip netns exec "$ns" "${dvg[@]}" "$root/target/release/corosync" -f -c "$out/corosync.conf" \
        >"$out/$1.log" 2>&1 &
    dpid=$!
    local r=""
    for _ in $(seq 1 300); do
        r=$(ip netns exec "$ns" "${cvg[@]}" "$out/cpgbench" tput --size "$SIZE" --time "$2" \
            --send --senders 1 --members 1 --group cgd --timeout 60 2>/dev/null |
            grep RESULT) && break
        sleep 0.2
    done
    [ -n "$r" ] || { echo "callgrind-daemon: no client run (see $out/$1.log)" >&2; tail "$out/$1.log" >&2; exit 1; }
    kill -TERM "$dpid"
    wait "$dpid" || true
    dpid=
    echo "$r" | grep -o 'rx_msgs=[0-9]*' | cut -d= -f2
}
total() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

ma=$(run short 0.05)
mb=$(run long "$TIME")
a=$(total "$out/short.cg")
b=$(total "$out/long.cg")
echo "instructions: $a with $ma messages, $b with $mb (size $SIZE)" >&2
if [ -n "${KEEP:-}" ]; then cp "$out/long.cg" "$KEEP"; fi
callgrind_annotate --inclusive=no --auto=no "$out/long.cg" 2>/dev/null | sed -n '/^Ir/,$p' | sed -n 1,25p >&2 || true
who=daemon
[ -n "${CLIENT:-}" ] && who=client
awk -v d=$((b - a)) -v m=$((mb - ma)) -v who="$who" 'BEGIN {
    if (m <= 0) { print "callgrind-daemon: no messages" > "/dev/stderr"; exit 1 }
    printf "%s_instr_per_msg=%.1f\n", who, d / m }'
