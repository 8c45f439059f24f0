#!/usr/bin/env bash
# run.sh - one node, one `cpgbench tput` client streaming SIZE-byte messages
# to itself, alternating two builds of the C client library (each an
# install prefix from scripts/install.sh) against the same daemon, N rounds;
# prints each round and then per prefix the median of messages per second.
# What it compares is the client side (libcpg and the request/event rings);
# the daemon is this tree's target/release/corosync for both.
#
# Usage: scripts/libcpg-ab/run.sh N A_PREFIX B_PREFIX
#   e.g. COROSYNC_RS_SKIP_BUILD=1 sh scripts/install.sh /tmp/old   (before a change)
#        cargo build --release && COROSYNC_RS_SKIP_BUILD=1 sh scripts/install.sh /tmp/new
#        scripts/libcpg-ab/run.sh 10 /tmp/old /tmp/new
# env: SIZE (64), TIME (3 seconds a round). Needs root (a network namespace) and gcc.
set -euo pipefail
n=$1 a=$2 b=$3
SIZE=${SIZE:-64}
TIME=${TIME:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
ns=lab$$
dpid=
cleanup() {
    if [ -n "$dpid" ]; then kill -TERM "$dpid" 2>/dev/null || true; wait "$dpid" 2>/dev/null || true; fi
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for p in "$a" "$b"; do
    [ -f "$p/lib/libcpg.so" ] || { echo "libcpg-ab: no $p/lib/libcpg.so" >&2; exit 2; }
done
gcc -O2 -o "$out/cpgbench-a" "$root/crates/bench/c/cpgbench.c" -I"$a/include" \
    -L"$a/lib" -Wl,-rpath,"$a/lib" -lcpg -lm
gcc -O2 -o "$out/cpgbench-b" "$root/crates/bench/c/cpgbench.c" -I"$b/include" \
    -L"$b/lib" -Wl,-rpath,"$b/lib" -lcpg -lm
ip netns add "$ns"
ip -n "$ns" link set lo up
mkdir -p "$out/state"
sh "$root/crates/bench/one-node-conf.sh" lab "$out/state" > "$out/corosync.conf"
ip netns exec "$ns" "$root/target/release/corosync" -f -c "$out/corosync.conf" >"$out/daemon.log" 2>&1 &
dpid=$!
one() { # binary -> messages per second
    local r=""
    for _ in $(seq 1 100); do
        r=$(ip netns exec "$ns" "$1" tput --size "$SIZE" --time "$TIME" --send --senders 1 \
            --members 1 --group lab --timeout 60 2>/dev/null | grep RESULT) && break
        sleep 0.2
    done
    [ -n "$r" ] || { echo "libcpg-ab: no client run (see the daemon's log)" >&2; tail "$out/daemon.log" >&2; exit 1; }
    echo "$r" | grep -o 'rx_msgs=[0-9]*' | cut -d= -f2 | awk -v t="$TIME" '{ printf "%.0f\n", $1 / t }'
}
for i in $(seq "$n"); do
    ra=$(one "$out/cpgbench-a")
    rb=$(one "$out/cpgbench-b")
    echo "round $i: A $ra B $rb msgs/s" >&2
    echo "$ra $rb" >>"$out/rates"
done
awk -v a="$a" -v b="$b" '
function median(arr, k,    i, j, t) {
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
        if (arr[i] > arr[j]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    return k % 2 ? arr[(k + 1) / 2] : (arr[k / 2] + arr[k / 2 + 1]) / 2
}
{ k++; x[k] = $1; y[k] = $2; if ($2 > $1) w++ }
END {
    ma = median(x, k); mb = median(y, k)
    printf "A %s median %.0f msgs/s\nB %s median %.0f msgs/s\n", a, ma, b, mb
    printf "b_over_a=%.3f b_faster_rounds=%d rounds=%d\n", mb / ma, w, k
}' "$out/rates"
