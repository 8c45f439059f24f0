"""Per-visit timing of the daemons from `perf script` output of
`perf sched record`: for every time a daemon gets a CPU, how long until it
wakes another daemon (its first datagram to a sleeping peer, normally the
token), and from that wake until it sleeps again. Medians and quartiles.

usage: visits.py SCHED_SCRIPT_TXT PIDS   (PIDS: lines "node pid")
"""
import re
import sys

EVENT = re.compile(r"^\s*(\S+)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)$")


def quartiles(v):
    v = sorted(v)
    if not v:
        return "n=0"
    return "n=%d p25=%.1f p50=%.1f p75=%.1f" % (
        len(v), v[len(v) // 4], v[len(v) // 2], v[3 * len(v) // 4])


def main():
    text, pid_file = sys.argv[1], sys.argv[2]
    daemons = {line.split()[1] for line in open(pid_file) if line.strip()}
    got_cpu = {}   # daemon -> time it was switched in
    woke_at = {}   # daemon -> time of its first wake of a peer this visit
    to_wake, to_sleep = [], []
    for line in open(text):
        m = EVENT.match(line)
        if not m:
            continue
        _, pid, _, t, name, rest = m.groups()
        t = float(t) * 1e6
        if name == "sched_waking":
            wakee = re.search(r" pid=(\d+)", rest).group(1)
            if pid in daemons and wakee in daemons and wakee != pid:
                if pid in got_cpu and pid not in woke_at:
                    woke_at[pid] = t
                    to_wake.append(t - got_cpu[pid])
        elif name == "sched_switch":
            prev = re.search(r"prev_pid=(\d+)", rest).group(1)
            nxt = re.search(r"next_pid=(\d+)", rest).group(1)
            if prev in daemons:
                if prev in woke_at:
                    to_sleep.append(t - woke_at[prev])
                got_cpu.pop(prev, None)
                woke_at.pop(prev, None)
            if nxt in daemons:
                got_cpu[nxt] = t
    print("cpu_to_peer_wake_us", quartiles(to_wake))
    print("peer_wake_to_sleep_us", quartiles(to_sleep))


if __name__ == "__main__":
    main()
