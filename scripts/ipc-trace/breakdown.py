#!/usr/bin/env python3
"""Per-step medians of the wake-ups in a trace written by run.sh.

For every `write` of the client that wakes the server (sched_waking of the
server by the client), the steps are:
  enter->waking    the client's write syscall up to the wake-up call (for an
                   eventfd in an epoll set, the epoll callback is in here)
  waking->wakeup   until the server's CPU enqueues it (IPI, idle exit)
  wakeup->return   until the server returns from its wait syscall (for
                   epoll_wait, collecting the ready list)
Rows are (fd the client wrote, syscall the server waited in): the doorbell
wakes epoll_wait (232) or epoll_pwait (281); the baseline's eventfd wakes a
blocking read (0), and in ipc-bench's third block (the same eventfd) an
epoll_wait (232): that row is the multiplexed wait without our rings.
"""
import re
import statistics
import sys
from collections import Counter

LINE = re.compile(r'^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+(\d+): (\w+): (.*)$')


def events(path):
    for line in open(path):
        m = LINE.match(line)
        if m:
            yield int(m.group(2)), int(m.group(4)), m.group(5), m.group(6)


def tsc_per_ns(path):
    marks = [(ts, int(rest.split('calib ')[1])) for _, ts, ev, rest in events(path)
             if ev in ('print', 'tracing_mark_write') and 'calib ' in rest]
    if len(marks) < 2:
        sys.exit('breakdown.py: no calibration markers in the trace')
    (t0, n0), (t1, n1) = marks[0], marks[1]
    return (t1 - t0) / (n1 - n0)


def main(path):
    rate = tsc_per_ns(path)
    # The server is the traced process that is woken most; the client the
    # one that wakes it most.
    pairs = Counter()
    for pid, _, ev, rest in events(path):
        if ev == 'sched_waking':
            m = re.search(r' pid=(\d+) ', rest)
            if m:
                pairs[(pid, int(m.group(1)))] += 1
    (client, server), _ = pairs.most_common(1)[0]
    if pairs[(server, client)] > pairs[(client, server)]:
        client, server = server, client
    rows = {}
    cur = None
    for pid, ts, ev, rest in events(path):
        t = ts / rate
        if ev == 'sys_enter' and pid == client and rest.startswith('NR 1 ('):
            cur = {'fd': int(rest.split('(')[1].split(',')[0], 16), 'enter': t}
        elif cur is None:
            continue
        elif ev == 'sched_waking' and pid == client and f' pid={server} ' in f' {rest}' and 'waking' not in cur:
            cur['waking'] = t
        elif ev == 'sched_wakeup' and f' pid={server} ' in f' {rest}' and 'waking' in cur and 'wakeup' not in cur:
            cur['wakeup'] = t
        elif ev == 'sys_exit' and pid == server and 'wakeup' in cur:
            nr = int(rest.split()[1])
            if t - cur['enter'] < 100_000:
                rows.setdefault((cur['fd'], nr), []).append(
                    (cur['waking'] - cur['enter'], cur['wakeup'] - cur['waking'],
                     t - cur['wakeup'], t - cur['enter']))
            cur = None
    print(f'server pid {server}, client pid {client}, {rate:.4f} TSC ticks per ns')
    print('client fd  server syscall  wake-ups  enter->waking  waking->wakeup  wakeup->return  total (ns, medians)')
    for (fd, nr), v in sorted(rows.items(), key=lambda kv: -len(kv[1])):
        if len(v) < 100:
            continue
        med = [statistics.median(x[i] for x in v) for i in range(4)]
        print(f'{fd:9d}  {nr:14d}  {len(v):8d}  {med[0]:13.0f}  {med[1]:14.0f}  {med[2]:14.0f}  {med[3]:5.0f}')


if __name__ == '__main__':
    main(sys.argv[1])
