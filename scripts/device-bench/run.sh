#!/bin/bash
# run.sh - the many-node comparison, on the device machine, from the
# repository root, after prepare.sh filled .devbundle here and it was carried
# there. For each N in NODES: Corosync 3.1.7 (knet and udpu), then ours,
# through the same devrun.sh harness and the same client source, so that
# both are measured in the same run on the same machine. OUT must name an
# empty folder; it gets compare.md (the side-by-side tables and a summary
# line), run.log, and raw.tgz (each devrun's results.md, raw.txt,
# progress.log and diag.txt).
#
# Knobs: NODES ["3 6 12"], HARD_COROSYNC [120] and HARD_OURS [70] seconds per
# devrun (per N), MCAST ["3 12"] and SWEEP ["12:mm200:max_messages: 200"]
# (below; both only for N in NODES), QUICK=1 (1 s points: a smoke test), and
# devrun.sh's own.
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
D=$REPO/.devbundle
OUT=${OUT:?OUT must name the results folder}
NODES=${NODES:-"3 6 12"}
W=$OUT/work
mkdir -p "$W"
[ -s "$D/root/GLIBC_MIN" ] && [ -x "$D/ours/corosync" ] ||
    { echo "run.sh: $D is incomplete: run scripts/device-bench/prepare.sh first" >&2; exit 2; }
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/run.log"; }
log "run.sh: $(nproc) CPUs, kernel $(uname -r), NODES='$NODES'"
# Our low-latency profile (README: The Totem core), besides token/coefficient
OURS_FO='    token_retransmits_before_loss_const: 1\n    consensus: 24\n    join: 10\n    merge: 50'
for n in $NODES; do
    log "N=$n corosync (knet, udpu)"
    OUT=$W/corosync-$n NODES=$n TRANSPORTS="knet udpu" HARD=${HARD_COROSYNC:-120} \
        bash "$D/devrun.sh" > "$W/corosync-$n.log" 2>&1
    log "N=$n corosync: rc=$? $(grep -c '^| ' "$W/corosync-$n/results.md" 2>/dev/null) table rows"
    log "N=$n ours"
    OUT=$W/ours-$n NODES=$n TRANSPORTS=udpu HARD=${HARD_OURS:-70} ENGINE_DIR=$D/ours \
        FO_TOKEN=20 FO_COEF=0 FO_EXTRA_TOTEM="$OURS_FO" KEEP_WORK=1 \
        bash "$D/devrun.sh" > "$W/ours-$n.log" 2>&1
    log "N=$n ours: rc=$? $(grep -c '^| ' "$W/ours-$n/results.md" 2>/dev/null) table rows"
    # which transport engine ours ran with (the failover cluster's node1 log)
    log "N=$n ours $(grep -h -m1 'transport: ' /tmp/corobench-dev/cluster/node1/log/corosync.log 2>/dev/null | sed 's/.*transport: /transport: /')"
    rm -rf /tmp/corobench-dev
done
# MCAST: node counts (of NODES) at which ours runs again on multicast
# (`transport: udp`, one send a frame instead of one per member; 9 nodes on
# the 2-CPU VM: token sends half as long, +10% at 64 B and +16% at 64 KiB).
# Throughput and latency only; compare.py lists it as the sweep item `mcast`.
for n in ${MCAST-3 12}; do
    case " $NODES " in *" $n "*) ;; *) continue ;; esac
    [ -x "$D/ours-mcast/corosync" ] || { log "MCAST: no $D/ours-mcast (prepare.sh)"; break; }
    log "N=$n ours on multicast"
    OUT=$W/sweep-mcast-$n NODES=$n TRANSPORTS=udpu HARD=${HARD_OURS:-70} ENGINE_DIR=$D/ours-mcast \
        FO=0 bash "$D/devrun.sh" > "$W/sweep-mcast-$n.log" 2>&1
    log "N=$n ours on multicast: rc=$? $(grep -c '^| ' "$W/sweep-mcast-$n/results.md" 2>/dev/null) table rows"
done
# SWEEP: ours again with other settings, ';'-separated N:LABEL:LINES items,
# LINES added inside totem { } with \n between lines (a line "}" followed by
# a section opens another section: "}\ncorosync_rs {\n spin_us: 100").
# Throughput and latency only; compare.py sets each beside ours' default.
# Unset, it measures a visit of 200 frames a member at 12 nodes, where the
# rotation, not the CPU, limits ours (daemons at 50-58% of a CPU in the last
# run) and a written max_messages above 100 has not been measured yet;
# SWEEP= (empty) measures nothing more.
IFS=';' read -r -a SW <<< "${SWEEP-12:mm200:max_messages: 200}"
for item in "${SW[@]}"; do
    [ -n "$item" ] || continue
    n=${item%%:*}; rest=${item#*:}; label=${rest%%:*}; lines=${rest#*:}
    case " $NODES " in *" $n "*) ;; *) log "sweep N=$n $label: skipped, $n is not in NODES"; continue ;; esac
    log "sweep N=$n $label"
    OUT=$W/sweep-$label-$n NODES=$n TRANSPORTS=udpu HARD=${HARD_OURS:-70} ENGINE_DIR=$D/ours \
        FO=0 EXTRA_TOTEM="$lines" bash "$D/devrun.sh" > "$W/sweep-$label-$n.log" 2>&1
    log "sweep N=$n $label: rc=$? $(grep -c '^| ' "$W/sweep-$label-$n/results.md" 2>/dev/null) table rows"
done
python3 "$REPO/scripts/device-bench/compare.py" "$W" "$NODES" > "$OUT/compare.md" 2>> "$OUT/run.log"
log "compare.py rc=$?"
tar -C "$W" -czf "$OUT/raw.tgz" . && rm -rf "$W"
cat "$OUT/compare.md"
