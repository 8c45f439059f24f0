#!/usr/bin/env bash
# Instructions per delivered message per node of the Totem core, counted by
# callgrind over the in-memory ring (deterministic: the same binary and
# arguments give the same count on any load).
#
# Two runs of `ring-work` with the same set-up: A = form + warm-up only,
# B = form + warm-up + K messages. Start-up, ring formation, warm-up and exit
# cost the same in both, so B − A is the cost of the K steady-state messages
# alone — every message is sent once and delivered on each of the N nodes, so
#
#     instr_per_msg_per_node = (total_B − total_A) / (K × N)
#
# It covers everything done for those messages: the N cores (packing,
# ordering, token handling, delivery) and the in-memory driver (copying each
# datagram once into a pooled buffer, queueing, counting deliveries); the
# share spent inside totem_ring:: functions is printed as well.
#
# Usage: crates/bench/callgrind-ring.sh   (env: NODES=3 WARM=20000 K=50000 SIZE=64)
# The last line is `instr_per_msg_per_node=<decimal>`.
set -euo pipefail

NODES=${NODES:-3}
WARM=${WARM:-20000}
K=${K:-50000}
SIZE=${SIZE:-64}

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release -p bench --bin ring-work
bin="$root/target/release/ring-work"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # name messages
    valgrind --tool=callgrind --callgrind-out-file="$out/$1.out" \
        "$bin" --nodes "$NODES" --warm "$WARM" --size "$SIZE" --messages "$2" \
        >"$out/$1.stdout" 2>"$out/$1.valgrind"
    tail -n 1 "$out/$1.stdout" >&2
}
total() { # callgrind out file -> total instructions
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}
self_in_core() { # instructions spent in totem_ring:: functions (self cost)
    # Rows are `count (pct) file:function [object]`; inlined code is listed
    # under the file it came from but still names the function it is in.
    callgrind_annotate --inclusive=no --threshold=100 --auto=no "$1" 2>/dev/null \
        | awk '/%\) +[^ ]*:<?totem_ring::/ { gsub(",", "", $1); s += $1 } END { printf "%d\n", s }'
}

run warm 0
run full "$K"
a=$(total "$out/warm.out")
b=$(total "$out/full.out")
ca=$(self_in_core "$out/warm.out")
cb=$(self_in_core "$out/full.out")
echo "instructions: warm-up only $a, with $K messages $b, difference $((b - a))"
awk -v d=$((b - a)) -v c=$((cb - ca)) 'BEGIN {
    if (d > 0) printf "share in totem_ring:: functions (self cost): %.1f%%\n", 100 * c / d }'
awk -v d=$((b - a)) -v k="$K" -v n="$NODES" 'BEGIN { printf "instr_per_msg_per_node=%.1f\n", d / (k * n) }'
