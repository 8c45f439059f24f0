#!/usr/bin/env bash
# run.sh - alternates two ipc-bench builds, N rounds, and prints per build
# the median of msgs_per_s_64B / socket_msgs_per_s_64B and of the two
# latency ratios. This VM's vCPU placement moves the 64 B rate by ±30% for
# seconds at a time, so the first few pairs of any A/B mislead: take 10-20.
#
# Usage: scripts/ipc-bench-ab/run.sh N A_BINARY B_BINARY [ipc-bench args]
#   e.g. cp target/release/ipc-bench /tmp/ipc-bench-old   (before a change)
#        scripts/ipc-bench-ab/run.sh 10 /tmp/ipc-bench-old target/release/ipc-bench --quick
# (--quick --throughput-only takes about 4 s a run, --quick about 7.)
set -euo pipefail
n=$1 a=$2 b=$3
shift 3
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--quick)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$n"); do
    for bin in "$a" "$b"; do
        line=$("$bin" "${args[@]}" 2>&1 | tail -1)
        echo "$bin $line" | tee -a "$out" | cut -c1-200 >&2
    done
done
awk '
function median(arr, k,    i, j, t) {
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
        if (arr[i] > arr[j]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    return k % 2 ? arr[(k + 1) / 2] : (arr[k / 2] + arr[k / 2 + 1]) / 2
}
{
    bin = $1; delete kv
    for (f = 2; f <= NF; f++) { split($f, p, "="); kv[p[1]] = p[2] }
    if (!(bin in count)) order[++nb] = bin
    c = ++count[bin]
    e[bin, c] = kv["msgs_per_s_64B"] / (kv["socket_msgs_per_s_64B"] > 0 ? kv["socket_msgs_per_s_64B"] : 1)
    r[bin, c] = kv["msgs_per_s_64B"] / 1e6
    if (kv["socket_busy_one_way_p50_ns"] > 0) {
        lat[bin] = 1
        ab[bin, c] = kv["busy_one_way_p50_ns"] / kv["socket_busy_one_way_p50_ns"]
        cd[bin, c] = kv["parked_one_way_p50_ns"] / kv["eventfd_parked_p50_ns"]
    }
}
END {
    for (x = 1; x <= nb; x++) {
        bin = order[x]; k = count[bin]; met = 0
        for (i = 1; i <= k; i++) { t1[i] = e[bin, i]; t2[i] = r[bin, i]; t3[i] = ab[bin, i]; t4[i] = cd[bin, i]; if (e[bin, i] >= 20) met++ }
        printf "%s: runs=%d msgs/socket_msgs median %.1f (>= 20 in %d), 64B %.1f M msgs/s", bin, k, median(t1, k), met, median(t2, k)
        if (bin in lat) printf ", busy/socket %.2f, parked/eventfd %.2f", median(t3, k), median(t4, k)
        printf "\n"
    }
}' "$out"
