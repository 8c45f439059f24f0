#!/usr/bin/env bash
# CPU time the daemons and the clients spend per delivered CPG message,
# measured rather than counted: NODES nodes (default 3) in network
# namespaces started by the anchor's own setup.sh, every node running
# crates/bench/c/cpgbench.c against the build's libcpg, all sending
# SIZE-byte messages for TIME seconds. Per run: the daemons' CPU time
# (utime + stime from /proc) and the clients' (getrusage, through
# /usr/bin/time), each over the messages delivered at all members.
#
# Why both this and callgrind-daemon.sh: instruction counts are exact but
# not time. Fat LTO with one codegen unit cut the daemon's instructions per
# 64 B message by 7.7% and the client's by 5.5%, and moved neither's CPU
# time here (2026-11-27, README). A change is real when it shows in both.
#
# A/B: PREFIXES="DIR_A DIR_B" (trees installed by scripts/install.sh, each
# with its own daemon and libcpg) run alternately, ROUNDS times each, one
# fresh cluster per run; without PREFIXES the current tree is built and
# installed. An entry DIR@udp runs DIR's daemon on multicast (`transport:
# udp`) where setup.sh writes udpu. An entry `corosync` (or `corosync-knet`) is the system's
# Corosync and libcpg (/usr/sbin/corosync, the Debian package) on udpu (or
# knet). Every daemon runs at SCHED_OTHER (`--sched-rr no`), unless
# SCHED_RR=yes, which leaves `system.sched_rr` to its default (yes: Corosync's
# and ours, priority 99). The VM's noise is about ±7% a run: compare medians
# of 3 or more.
# Needs root (network namespaces), gcc and GNU time.
#
# Usage: crates/bench/cpu-per-msg.sh   (env: SIZE=64 TIME=4 NODES=3 ROUNDS=3 PREFIXES=... SCHED_RR=no)
# Last line: per prefix, in order, `daemon_ns_per_msg_K=<median> client_ns_per_msg_K=<median>
# msgs_per_s_K=<median> tokens_per_s_K=<median>` (K = 1, 2, ...; tokens_per_s: token visits a
# second at node 1, stats.srp.orf_token_rx: how many messages a visit carried, since the
# messages a second are known). Each run's line also gives, for ours, a token visit's average
# time at node 1 from the first datagram of the turn that read the token to its handling, to its
# send, and in the send (`token_queued/held/send_us`, from stats.srp.token_*_ns; see the README).
set -euo pipefail

SIZE=${SIZE:-64}
TIME=${TIME:-4}
NODES=${NODES:-3}
ROUNDS=${ROUNDS:-3}
sched=(--sched-rr no)
[ "${SCHED_RR:-no}" = yes ] && sched=()
root=$(cd "$(dirname "$0")/../.." && pwd)
anchor="$root/../shared/anchors/corosync"
[ -x /usr/bin/time ] || { echo "cpu-per-msg: needs GNU time (/usr/bin/time)" >&2; exit 1; }
[ -f "$anchor/setup.sh" ] || { echo "cpu-per-msg: no $anchor/setup.sh" >&2; exit 1; }
work=$(mktemp -d)
prefix_ns=cpm$$
cleanup() {
    bash "$anchor/teardown.sh" --base "$work/cluster" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${PREFIXES:-}" ]; then
    (cd "$root" && cargo build --release -p daemon -p client >&2)
    (cd "$root" && COROSYNC_RS_SKIP_BUILD=1 sh scripts/install.sh "$work/prefix" >/dev/null)
    PREFIXES="$work/prefix"
fi

daemon_of() { # entry -> daemon binary
    case "$1" in
    corosync | corosync-knet) echo /usr/sbin/corosync ;;
    *@udp) echo "$work/udp-$(echo "$1" | cksum | cut -d' ' -f1)/corosync" ;;
    *) echo "$1/sbin/corosync" ;;
    esac
}
cmapctl_of() { # entry -> its corosync-cmapctl
    case "$1" in corosync | corosync-knet) echo /usr/sbin/corosync-cmapctl ;; *) echo "${1%@udp}/sbin/corosync-cmapctl" ;; esac
}
udp_wrapper() { # entry DIR@udp -> writes the corosync daemon_of names
    # setup.sh writes udpu; this corosync rewrites its file into the
    # multicast form and runs the tree's own (same pid, same name).
    local w
    w=$(dirname "$(daemon_of "$1")")
    mkdir -p "$w"
    {
        echo '#!/bin/sh'
        echo 'prev=; cfg='
        echo 'for a in "$@"; do [ "$prev" = -c ] && cfg=$a; prev=$a; done'
        echo '[ -n "$cfg" ] && sed -i '"'"'s/^    transport: udpu$/    transport: udp\n    interface {\n        linknumber: 0\n        mcastaddr: 239.192.77.1\n        mcastport: 5405\n    }/'"'"' "$cfg"'
        printf 'exec %s "$@"\n' "'${1%@udp}/sbin/corosync'"
    } >"$w/corosync"
    chmod 0755 "$w/corosync"
}
stat_at_node1() { # entry key -> the value of stats.srp.KEY at node 1 (0 where there is none)
    ip netns exec "${prefix_ns}host1" "$(cmapctl_of "$1")" -m stats -g "stats.srp.$2" 2>/dev/null |
        awk '{ print $NF }' | grep . || echo 0
}
token_stats() { # entry -> "tokens timed queued_ns held_ns send_ns" at node 1 (ours' keys; 0 for Corosync)
    local k out=""
    for k in orf_token_rx token_timed token_queued_ns token_held_ns token_send_ns; do
        out+="$(stat_at_node1 "$1" "$k") "
    done
    echo "$out"
}
transport_of() { # entry -> the transport setup.sh writes
    case "$1" in corosync-knet) echo knet ;; *) echo udpu ;; esac
}

k=0
for p in $PREFIXES; do
    k=$((k + 1))
    case "$p" in *@udp) udp_wrapper "$p" ;; esac
    [ -x "$(daemon_of "$p")" ] || { echo "cpu-per-msg: no $(daemon_of "$p")" >&2; exit 1; }
    case "$p" in
    corosync | corosync-knet)
        gcc -O2 -o "$work/cpgbench$k" "$root/crates/bench/c/cpgbench.c" -lcpg -lm ;;
    *)
        gcc -O2 -o "$work/cpgbench$k" "$root/crates/bench/c/cpgbench.c" -I"${p%@udp}/include" \
            -L"${p%@udp}/lib" -Wl,-rpath,"${p%@udp}/lib" -lcpg -lm ;;
    esac
done

daemon_ticks() { # sum of utime + stime of the cluster's daemons, in clock ticks
    local t=0 pid
    for pid in $(awk '{print $3}' "$work/cluster/pids"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$t"
}

one_run() { # k prefix -> "daemon_ns client_ns msgs_per_s tokens_per_s"
    local k=$1 p=$2 i pids="" d0 d1 t0 t1 rx=0 cpu=0 rate
    NS_PREFIX=$prefix_ns COROSYNC_BIN="$(daemon_of "$p")" CPGBENCH="$work/cpgbench$k" \
        bash "$anchor/setup.sh" "$NODES" "$(transport_of "$p")" "${sched[@]}" \
        --base "$work/cluster" >"$work/setup.log" 2>&1 ||
        { cat "$work/setup.log" >&2; return 1; }
    t0=$(token_stats "$p")
    d0=$(daemon_ticks)
    for i in $(seq 1 "$NODES"); do
        ip netns exec "${prefix_ns}host$i" /usr/bin/time -f "%U %S" -o "$work/time$i" \
            "$work/cpgbench$k" tput --size "$SIZE" --time "$TIME" --send --senders "$NODES" \
            --members "$NODES" --group cpm --timeout 30 >"$work/out$i" 2>&1 &
        pids="$pids $!"
    done
    # shellcheck disable=SC2086
    wait $pids || { cat "$work"/out* >&2; return 1; }
    d1=$(daemon_ticks)
    t1=$(token_stats "$p")
    bash "$anchor/teardown.sh" --base "$work/cluster" >/dev/null 2>&1
    for i in $(seq 1 "$NODES"); do
        rx=$((rx + $(grep -o 'rx_msgs=[0-9]*' "$work/out$i" | cut -d= -f2)))
        cpu=$(awk -v c="$cpu" '{ print c + $1 + $2 }' "$work/time$i")
    done
    rate=$(grep -o 'msgs_per_s=[0-9]*' "$work/out1" | cut -d= -f2)
    awk -v d=$((d1 - d0)) -v hz="$(getconf CLK_TCK)" -v c="$cpu" -v m="$rx" -v r="$rate" \
        -v a="$t0" -v b="$t1" -v s="$TIME" \
        'BEGIN { split(a, x, " "); split(b, y, " "); n = y[2] - x[2]; if (n < 1) n = 1
                 printf "%.0f %.0f %s %.0f %.1f/%.1f/%.1f\n", d / hz * 1e9 / m, c * 1e9 / m, r,
                     (y[1] - x[1]) / s, (y[3] - x[3]) / n / 1e3, (y[4] - x[4]) / n / 1e3,
                     (y[5] - x[5]) / n / 1e3 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for r in $(seq 1 "$ROUNDS"); do
    k=0
    for p in $PREFIXES; do
        k=$((k + 1))
        res=$(one_run "$k" "$p")
        echo "$res" >>"$work/res$k"
        read -r dn cn mr tk tu <<<"$res"
        echo "run $r, $p: daemon_ns_per_msg=$dn client_ns_per_msg=$cn msgs_per_s=$mr tokens_per_s=$tk token_queued/held/send_us=$tu (${NODES} nodes, ${SIZE} B)" >&2
    done
done

line=""
k=0
for p in $PREFIXES; do
    k=$((k + 1))
    line+="daemon_ns_per_msg_$k=$(awk '{print $1}' "$work/res$k" | median) "
    line+="client_ns_per_msg_$k=$(awk '{print $2}' "$work/res$k" | median) "
    line+="msgs_per_s_$k=$(awk '{print $3}' "$work/res$k" | median) "
    line+="tokens_per_s_$k=$(awk '{print $4}' "$work/res$k" | median) "
done
echo "${line% }"
