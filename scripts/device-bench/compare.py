#!/usr/bin/env python3
"""compare.py WORK "3 6 12" - side-by-side tables from run.sh's devrun results.

Reads WORK/corosync-N/results.md and WORK/ours-N/results.md (devrun.sh's
tables) and prints markdown: throughput at the slowest member (all N nodes
sending), self-delivery latency, failover, ours against Corosync's better
transport per row, how each engine keeps its 3-node rate at N nodes, and a
last line of plain decimals. A missing or failed cell prints as its text."""
import glob
import sys


def num(s):
    try:
        return float(s.split()[0])
    except (ValueError, IndexError):
        return None


def tables(path):
    """{section: [cells...]} for the three sections of one results.md."""
    out = {"tp": [], "lat": [], "fo": []}
    sec = None
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        print(f"compare.py: {path}: {e}", file=sys.stderr)
        return out
    for ln in lines:
        if ln.startswith("## Throughput"):
            sec = "tp"
        elif ln.startswith("## Self-delivery"):
            sec = "lat"
        elif ln.startswith("## Failover"):
            sec = "fo"
        elif ln.startswith("## "):
            sec = None
        elif sec and ln.startswith("| ") and not ln.startswith("| transport"):
            out[sec].append([c.strip() for c in ln.strip().strip("|").split("|")])
    return out


def by_transport(res, n, sec, min_cells, cells):
    """{(engine, transport): cells(row)} for N nodes' rows of one section."""
    return {
        (e, r[0]): cells(r)
        for e in ("c", "o")
        for r in res[(e, n)][sec]
        if len(r) >= min_cells
    }


def hop_rows(path):
    """{(transport, n, size): [per-node dicts]} from the HOP lines of one raw.txt."""
    rows = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return rows
    for ln in lines:
        f = ln.split()
        if len(f) < 3 or f[0] != "HOP":
            continue
        kv = dict(x.split("=", 1) for x in f[2:] if "=" in x)
        try:
            key = (f[1], int(kv["N"]), kv["size"])
            rows.setdefault(key, []).append({k: float(v) for k, v in kv.items() if k not in ("size",)})
        except (KeyError, ValueError):
            continue
    return rows


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def ratio(a, b):
    return f"{a / b:.3f}" if a is not None and b else "-"


def fmt(v, d=0):
    return "-" if v is None else f"{v:.{d}f}"


def main():
    work, nodes = sys.argv[1], [int(n) for n in sys.argv[2].split()]
    res = {}
    for n in nodes:
        res[("c", n)] = tables(f"{work}/corosync-{n}/results.md")
        res[("o", n)] = tables(f"{work}/ours-{n}/results.md")

    # throughput: (engine, n, transport, size) -> min msgs/s, and MB/s
    tp = {}
    for (e, n), t in res.items():
        for r in t["tp"]:
            if len(r) < 7:
                continue
            tp[(e, n, r[0], r[3])] = (num(r[6]), num(r[5]), r[4], r[8] if len(r) > 8 else "")
    sizes = []
    for k in tp:
        if k[3] not in sizes and k[3].isdigit():
            sizes.append(k[3])
    sizes.sort(key=int)
    summary = {}
    print("## Throughput, all N nodes sending (msgs/s at the slowest member)\n")
    print("| nodes | size B | corosync knet | corosync udpu | ours | ours MB/s | ours ÷ better corosync | corosync CPU% mean/max/sum | ours CPU% mean/max/sum |")
    print("|---|---|---|---|---|---|---|---|---|")
    best = {}
    for n in nodes:
        for s in sizes:
            k = tp.get(("c", n, "knet", s))
            u = tp.get(("c", n, "udpu", s))
            o = tp.get(("o", n, "udpu", s))
            cands = [x for x in (k, u) if x and x[0] is not None]
            cb = max(cands, key=lambda x: x[0]) if cands else None
            ov = o[0] if o else None
            best[(n, s)] = (cb[0] if cb else None, ov)
            r = ratio(ov, cb[0] if cb else None)
            summary[f"ratio_{s}B_{n}n"] = r
            print(f"| {n} | {s} | {fmt(k[0]) if k and k[0] is not None else (k[2] if k else '-')} "
                  f"| {fmt(u[0]) if u and u[0] is not None else (u[2] if u else '-')} "
                  f"| {fmt(ov) if ov is not None else (o[2] if o else '-')} | {fmt(o[1], 1) if o else '-'} | {r} "
                  f"| {cb[3] if cb else '-'} | {o[3] if o else '-'} |")
    if len(nodes) > 1:
        n0 = nodes[0]
        print(f"\n## Scaling: rate at N nodes ÷ rate at {n0} nodes (same engine, same size)\n")
        print("| nodes | size B | corosync (better transport) | ours |")
        print("|---|---|---|---|")
        for n in nodes[1:]:
            for s in sizes:
                c0, o0 = best.get((n0, s), (None, None))
                c1, o1 = best.get((n, s), (None, None))
                rc, ro = ratio(c1, c0), ratio(o1, o0)
                summary[f"ours_{n}n_over_{n0}n_{s}B"] = ro
                summary[f"corosync_{n}n_over_{n0}n_{s}B"] = rc
                print(f"| {n} | {s} | {rc} | {ro} |")

    print("\n## Self-delivery latency, 64 B at 1000 msgs/s (µs)\n")
    print("| nodes | corosync knet p50 / p99 | corosync udpu p50 / p99 | ours p50 / p99 | p50 ratio | p99 ratio |")
    print("|---|---|---|---|---|---|")
    for n in nodes:
        row = by_transport(res, n, "lat", 7, lambda r: (num(r[5]), num(r[6]), r[4]))
        def cell(x):
            if not x:
                return "-"
            return f"{fmt(x[0], 1)} / {fmt(x[1], 1)}" if x[0] is not None else x[2]
        cs = [row.get(("c", "knet")), row.get(("c", "udpu"))]
        o = row.get(("o", "udpu"))
        p50 = min([x[0] for x in cs if x and x[0] is not None], default=None)
        p99 = min([x[1] for x in cs if x and x[1] is not None], default=None)
        r50, r99 = ratio(o[0] if o else None, p50), ratio(o[1] if o else None, p99)
        summary[f"ratio_p50_{n}n"], summary[f"ratio_p99_{n}n"] = r50, r99
        print(f"| {n} | {cell(cs[0])} | {cell(cs[1])} | {cell(o)} | {r50} | {r99} |")

    print("\n## Failover: kill -9 of node N to node1's CPG confchg (ms); Corosync token 200 + coefficient 0, ours the low-latency profile\n")
    print("| nodes | corosync knet | corosync udpu | ours | ours ÷ better corosync | membership changes before the kill (corosync knet, udpu / ours) |")
    print("|---|---|---|---|---|---|")
    for n in nodes:
        row = by_transport(res, n, "fo", 5, lambda r: (
            num(r[4]),
            r[4] or r[3],
            r[6].split("/")[1].strip() if len(r) > 6 and r[6].count("/") >= 2 else "-",
        ))
        k, u, o = row.get(("c", "knet")), row.get(("c", "udpu")), row.get(("o", "udpu"))
        cb = min([x[0] for x in (k, u) if x and x[0] is not None and x[0] >= 0], default=None)
        ov = o[0] if o and o[0] is not None and o[0] >= 0 else None
        r = ratio(ov, cb)
        summary[f"ratio_failover_{n}n"] = r
        c = lambda x: "-" if not x else (fmt(x[0], 1) if x[0] is not None else x[1])
        print(f"| {n} | {c(k)} | {c(u)} | {c(o)} | {r} | {k[2] if k else '-'}, {u[2] if u else '-'} / {o[2] if o else '-'} |")
    hops = []
    for e in ("corosync", "ours"):
        for n in nodes:
            rows = hop_rows(f"{work}/{e}-{n}/raw.txt").items()
            for (t, hn, size), per in sorted(rows, key=lambda r: (r[0][0], r[0][1], int(r[0][2]))):
                hops.append((e, t, hn, size, per))
    if hops:
        print("\n## Token visits during the throughput points (median over the nodes; scripts/device-bench/hop-stats.sh)\n")
        print("hop = 1 / (visits a second × N); queued, held and send are a visit's time in our daemon: "
              "from the first datagram of the turn that read the token to its handling, to its send, and the send\n")
        print("| engine | transport | nodes | size B | visits/s | hop µs | frames a visit | queued µs | held µs | send µs |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for e, t, n, size, per in hops:
            v = median([p.get("visits_per_s", 0) for p in per])
            hop = 1e6 / (v * n) if v else None
            cols = [median([p.get(k, 0) for p in per]) for k in ("frames_per_visit", "queued_us", "held_us", "send_us")]
            times = [fmt(c, 1) for c in cols[1:]] if e == "ours" else ["-", "-", "-"]
            print(f"| {e} | {t} | {n} | {size} | {fmt(v)} | {fmt(hop, 1)} | {fmt(cols[0], 1)} | {' | '.join(times)} |")
    sweeps = sorted(glob.glob(f"{work}/sweep-*/results.md"))
    if sweeps:
        print("\n## Ours with other settings (SWEEP), beside ours' default in the same run\n")
        print("(÷ itself: the setting's rate at this N over its rate at the smallest N it ran at, "
              "the many-node goal's measure)\n")
        print("| setting | nodes | size B | msgs/s (slowest member) | ÷ ours default | ÷ itself | latency p50 / p99 µs |")
        print("|---|---|---|---|---|---|---|")
        items = []
        for path in sweeps:
            name = path.split("/")[-2][len("sweep-"):]
            label, n = name.rsplit("-", 1)
            items.append((label, int(n), tables(path)))
        items.sort(key=lambda x: (x[0], x[1]))
        own = {}
        for label, n, t in items:
            for r in t["tp"]:
                if len(r) >= 7 and num(r[6]) is not None:
                    own.setdefault((label, r[3]), (n, num(r[6])))
        for label, n, t in items:
            lat = next((r for r in t["lat"] if len(r) >= 7), None)
            latc = f"{lat[5]} / {lat[6]}" if lat else "-"
            for r in t["tp"]:
                if len(r) < 7:
                    continue
                v = num(r[6])
                base = best.get((n, r[3]), (None, None))[1]
                first_n, first_v = own.get((label, r[3]), (None, None))
                keep = ratio(v, first_v) if first_n is not None and first_n != n else "-"
                summary[f"sweep_{label}_{n}n_{r[3]}B"] = ratio(v, base)
                if keep != "-":
                    summary[f"sweep_{label}_keeps_{n}n_{r[3]}B"] = keep
                print(f"| {label} | {n} | {r[3]} | {fmt(v) if v is not None else r[4]} | {ratio(v, base)} | {keep} | {latc} |")
                latc = ""
    print()
    print(" ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
