#!/bin/bash
# profile.sh - where a daemon's and its client's time goes on the device
# machine, 3 nodes all sending (issue 7, item 5). From the repository root
# there, after `PROFILE=1 scripts/device-bench/prepare.sh` here and a run
# that carries .devbundle. OUT must name an empty folder; it gets
# perf-SIZE.data and reports.tgz (per size: perf report by pid and symbol,
# by pid and object, perf record's output). Flat profiles: the release
# build has no frame pointers.
#
# Knobs: SIZES ["64 1024 65536"], NODES [3], T [8] s per throughput point,
# F [1999] Hz.
set -u
D=$(cd "$(dirname "$0")/../.." && pwd)/.devbundle
OUT=${OUT:?OUT must name the results folder}
[ -x "$D/perf/perf" ] && [ -x "$D/ours-prof/corosync" ] ||
    { echo "profile.sh: run PROFILE=1 scripts/device-bench/prepare.sh first" >&2; exit 2; }
P() { LD_LIBRARY_PATH=$D/perf/lib "$D/perf/perf" "$@"; }
mkdir -p "$OUT/t"
P --version
# Waits for the throughput point's clients, then records node 1's daemon
# and one client for 3 s (T must leave them running that long: on the
# device a point of T=8 s ran 8 s; here on 2 vCPUs the clients of a
# 64 B point were seen for about 1 s of T=4).
record() {
    local s=$1 pid c i
    local pids=/tmp/corobench-dev/cluster/pids
    for i in $(seq 1 600); do
        [ -s "$pids" ] && pgrep -f "cpgbench_own tput" > /dev/null && break
        sleep 0.1
    done
    sleep 1
    pid=$(awk 'NR==1 {print $3}' "$pids")
    c=$(pgrep -x cpgbench_own | head -1)
    echo "size $s: daemon $pid, client $c"
    P record -F "${F:-1999}" -p "$pid,$c" -o "$OUT/perf-$s.data" -- sleep 3 > "$OUT/t/rec-$s.txt" 2>&1
    P report -i "$OUT/perf-$s.data" --sort pid,dso,sym --stdio --percent-limit 0.5 > "$OUT/t/report-$s.txt" 2>&1
    P report -i "$OUT/perf-$s.data" --sort pid,dso --stdio > "$OUT/t/dso-$s.txt" 2>&1
}
for s in ${SIZES:-64 1024 65536}; do
    record "$s" &
    OUT=$OUT/w$s NODES=${NODES:-3} TRANSPORTS=udpu FO=0 SIZES=$s T=${T:-8} LAT_T=1 HARD=60 \
        ENGINE_DIR=$D/ours-prof bash "$D/devrun.sh" > /dev/null 2>&1
    wait
    grep "^| udpu" "$OUT/w$s/results.md"
    rm -rf "$OUT/w$s"
done
for s in ${SIZES:-64 1024 65536}; do
    echo "== $s"; grep '%' "$OUT/t/dso-$s.txt"; grep '%' "$OUT/t/report-$s.txt" | head -30
done
tar -C "$OUT/t" -czf "$OUT/reports.tgz" . && rm -rf "$OUT/t"
