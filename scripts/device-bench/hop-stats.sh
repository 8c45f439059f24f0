# hop-stats.sh - sourced by the bundle's devrun.sh (prepare.sh's third
# addition): around every throughput point it reads each node's
# `stats.srp.*` and adds one HOP line per node to raw.txt, so that a run
# says where a token rotation's time goes without a trace.
#
#   HOP <transport> N=<n> size=<s> node=<i> secs=<wall> visits=<k>
#       visits_per_s=<v> frames_per_visit=<f> queued_us=<q> held_us=<h>
#       send_us=<d>
#
# visits: tokens the node received between the two reads (`orf_token_rx`;
# both engines have it), over the clients' whole run (secs: joining and
# draining too); visits_per_s divides them by the T seconds the clients
# sent, the part of the run where the token circulates fastest, so a hop is
# about 1/(visits_per_s × N) (an idle token comes to rest: the visits of the
# join and the drain are few). frames_per_visit:
# `mcast_tx` over those tokens. The three times are ours only (0 for
# Corosync), each an average over the visits timed (`token_timed`): from
# the first datagram of the run-loop turn that read the token to its
# handling (what was read and delivered ahead of it), to its datagrams being
# handed to the kernel, and that send's own duration. What a hop has beyond
# held + send is the token's wait in the socket while its daemon was busy,
# the wake-up, and the wire.
#
# Uses devrun.sh's IP, NS_PREFIX, CMAPCTL, T and RAW.

hop_read() { # N FILE: "node key value" lines for every node's stats.srp.* keys
    local n=$1 f=$2 i
    : > "$f"
    for i in $(seq 1 "$n"); do
        timeout 5 "$IP" netns exec "${NS_PREFIX}host$i" "$CMAPCTL" -m stats stats.srp. 2>/dev/null |
            awk -v i="$i" '{ print i, $1, $NF }' >> "$f"
    done
    date +%s%N > "$f.time"
}

hop_lines() { # TRANSPORT N SIZE BEFORE AFTER: appends the HOP lines to $RAW
    local secs
    secs=$(awk 'NR == 1 { a = $1 } NR == 2 { printf "%.3f", ($1 - a) / 1e9 }' "$4.time" "$5.time")
    awk -v t="$1" -v n="$2" -v s="$3" -v secs="$secs" -v T="$T" '
        FNR == NR { a[$1 " " $2] = $3; next }
        { b[$1 " " $2] = $3 }
        function d(i, k) { return b[i " stats.srp." k] - a[i " stats.srp." k] }
        END {
            for (i = 1; i <= n; i++) {
                tok = d(i, "orf_token_rx"); timed = d(i, "token_timed")
                per = (timed > 0 ? timed : 1)
                printf "HOP %s N=%d size=%s node=%d secs=%s visits=%d visits_per_s=%.0f frames_per_visit=%.1f queued_us=%.1f held_us=%.1f send_us=%.1f\n",
                    t, n, s, i, secs, tok, (T > 0 ? tok / T : 0), (tok > 0 ? d(i, "mcast_tx") / tok : 0),
                    d(i, "token_queued_ns") / per / 1e3, d(i, "token_held_ns") / per / 1e3,
                    d(i, "token_send_ns") / per / 1e3
            }
        }' "$4" "$5" >> "$RAW"
    rm -f "$4" "$5" "$4.time" "$5.time"
}
