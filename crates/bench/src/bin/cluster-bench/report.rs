//! The table (stdout and results.md), CSV, SVG plots and the summary line.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::engine::Variant;
use crate::{VariantResult, SIZES};

const OURS: Variant = Variant::Ours { accel: None };
const OURS_ACCEL: Variant = Variant::Ours { accel: Some(true) };
const OURS_NO_ACCEL: Variant = Variant::Ours { accel: Some(false) };
const ALL: [Variant; 5] = [
    OURS,
    OURS_ACCEL,
    OURS_NO_ACCEL,
    Variant::Corosync { knet: false },
    Variant::Corosync { knet: true },
];

#[derive(Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
}

/// One row: a value per variant (NaN = not measured), shown with `fmt`.
struct Row {
    name: String,
    better: Better,
    vals: Vec<f64>,
    /// Extra text per variant (MB/s beside msgs/s).
    extra: Vec<String>,
}

impl Row {
    fn val(&self, v: Variant) -> f64 {
        ALL.iter()
            .position(|&x| x == v)
            .map_or(f64::NAN, |i| self.vals[i])
    }
    /// Corosync's better transport for this row.
    fn corosync_best(&self) -> f64 {
        let a = self.val(Variant::Corosync { knet: false });
        let b = self.val(Variant::Corosync { knet: true });
        match (a.is_finite(), b.is_finite(), self.better) {
            (true, true, Better::Higher) => a.max(b),
            (true, true, Better::Lower) => a.min(b),
            (true, false, _) => a,
            (false, true, _) => b,
            _ => f64::NAN,
        }
    }
    fn ratio(&self, v: Variant) -> f64 {
        let cs = self.corosync_best();
        let ours = self.val(v);
        if cs > 0.0 && ours.is_finite() {
            ours / cs
        } else {
            f64::NAN
        }
    }
}

pub(crate) fn label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}MiB", s >> 20),
        s if s >= 1024 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

fn get(results: &[VariantResult], v: Variant) -> Option<&VariantResult> {
    results.iter().find(|r| r.v == v)
}

fn median(v: &[f64]) -> f64 {
    let mut x: Vec<f64> = v.iter().copied().filter(|f| f.is_finite()).collect();
    if x.is_empty() {
        return f64::NAN;
    }
    x.sort_by(f64::total_cmp);
    x[x.len() / 2]
}

fn rows(results: &[VariantResult]) -> Vec<Row> {
    let mut rows = Vec::new();
    let per = |f: &dyn Fn(&VariantResult) -> (f64, String)| -> (Vec<f64>, Vec<String>) {
        ALL.iter()
            .map(|&v| get(results, v).map_or((f64::NAN, String::new()), f))
            .unzip()
    };
    for all in [true, false] {
        for &size in &SIZES {
            let (vals, extra) = per(&|r: &VariantResult| {
                r.tput
                    .iter()
                    .find(|t| t.all_senders == all && t.size == size)
                    .map_or((f64::NAN, String::new()), |t| {
                        (t.msgs, format!(" ({:.1} MB/s)", t.mbps))
                    })
            });
            if vals.iter().all(|v| v.is_nan()) {
                continue;
            }
            rows.push(Row {
                name: format!(
                    "msgs/s {} {}",
                    if all { "all senders" } else { "1 sender" },
                    label(size)
                ),
                better: Better::Higher,
                vals,
                extra,
            });
        }
    }
    for (k, what) in [(0usize, "1000/s"), (1, "near saturation")] {
        for (q, qn) in [(0usize, "p50"), (1, "p99"), (2, "p99.9")] {
            for remote in [true, false] {
                let (vals, extra) = per(&|r: &VariantResult| {
                    r.lat.get(k).map_or((f64::NAN, String::new()), |l| {
                        let x = if remote { l.remote[q] } else { l.own[q] };
                        let e = if k == 1 && q == 0 {
                            format!(
                                " @{:.0}/s offered, {}/s achieved",
                                l.rate,
                                fmt_val(l.achieved)
                            )
                        } else {
                            String::new()
                        };
                        (x, e)
                    })
                });
                if vals.iter().all(|v| v.is_nan()) {
                    continue;
                }
                rows.push(Row {
                    name: format!(
                        "latency µs 64B {what} {} {qn}",
                        if remote { "remote" } else { "self" }
                    ),
                    better: Better::Lower,
                    vals,
                    extra,
                });
            }
        }
    }
    // 1000 msgs/s from the other nodes (full runs), then the worst sender.
    let mut others: Vec<usize> = results
        .iter()
        .flat_map(|r| r.lat.iter().skip(2).map(|l| l.sender))
        .collect();
    others.sort_unstable();
    others.dedup();
    if !others.is_empty() {
        for &s in &others {
            for (q, qn) in [(0usize, "p50"), (1, "p99")] {
                let (vals, extra) = per(&|r: &VariantResult| {
                    let x = r.lat.iter().skip(2).find(|l| l.sender == s);
                    (x.map_or(f64::NAN, |l| l.remote[q]), String::new())
                });
                rows.push(Row {
                    name: format!("latency µs 64B 1000/s remote {qn}, node {} sending", s + 1),
                    better: Better::Lower,
                    vals,
                    extra,
                });
            }
        }
        for (q, qn) in [(0usize, "p50"), (1, "p99")] {
            let (vals, extra) = per(&|r: &VariantResult| {
                // Every 1000 msgs/s point: the first, and those past the
                // near-saturation one.
                let worst = r
                    .lat
                    .iter()
                    .enumerate()
                    .filter(|&(k, l)| k != 1 && l.rate == 1000.0)
                    .map(|(_, l)| (l.remote[q], l.sender))
                    .filter(|(x, _)| x.is_finite())
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                worst.map_or((f64::NAN, String::new()), |(x, s)| {
                    (x, format!(" (node {})", s + 1))
                })
            });
            rows.push(Row {
                name: format!("latency µs 64B 1000/s remote {qn}, worst sender"),
                better: Better::Lower,
                vals,
                extra,
            });
        }
    }
    let (vals, extra) = per(&|r: &VariantResult| {
        (
            median(&r.failover.cpg_ms),
            if r.failover.cpg_ms.len() > 1 {
                format!(
                    " [{}]",
                    r.failover
                        .cpg_ms
                        .iter()
                        .map(|x| format!("{x:.0}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            } else {
                String::new()
            },
        )
    });
    rows.push(Row {
        name: "failover ms (kill -9 → CPG confchg)".into(),
        better: Better::Lower,
        vals,
        extra,
    });
    let (vals, extra) = per(&|r: &VariantResult| (median(&r.failover.totem_ms), String::new()));
    rows.push(Row {
        name: "failover ms (kill -9 → totem confchg)".into(),
        better: Better::Lower,
        vals,
        extra,
    });
    let (vals, extra) = per(&|r: &VariantResult| {
        let measured = !r.tput.is_empty() || !r.failover.cpg_ms.is_empty();
        (
            if measured {
                r.false_confchg as f64
            } else {
                f64::NAN
            },
            String::new(),
        )
    });
    rows.push(Row {
        name: "false membership changes".into(),
        better: Better::Lower,
        vals,
        extra,
    });
    rows
}

fn fmt_val(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn fmt_ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "–".into()
    }
}

fn fmt_plain(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "nan".into()
    }
}

/// Everything a run writes, as text: tests build it without files.
pub(crate) struct Rendered {
    pub md: String,
    pub table_csv: String,
    pub points_csv: String,
    /// The anchor check in one line, for stderr.
    pub anchor_line: String,
    pub summary: String,
}

pub(crate) fn render(note: &str, nodes: usize, results: &[VariantResult]) -> Rendered {
    let rows = rows(results);
    let mut md = String::new();
    let _ = writeln!(md, "# cluster-bench\n\n{note}\n");
    variant_list(&mut md, results);
    let table_csv = main_table(&mut md, &rows, results);
    cpu_table(&mut md, results);
    let anchor = anchor_checks(results, nodes);
    anchor_section(&mut md, nodes, anchor.as_deref());
    let summary = summary_line(&rows, results);
    let _ = writeln!(md, "\n{summary}");
    Rendered {
        md,
        table_csv,
        points_csv: points_csv(results),
        anchor_line: anchor_line(nodes, anchor.as_deref()),
        summary,
    }
}

pub fn write_all(out: &Path, note: &str, nodes: usize, results: &[VariantResult]) {
    let r = render(note, nodes, results);
    eprintln!("cluster-bench: {}", r.anchor_line);
    for (name, text) in [
        ("results.md", &r.md),
        ("table.csv", &r.table_csv),
        ("points.csv", &r.points_csv),
    ] {
        let path = out.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("cluster-bench: writing {}: {e}", path.display());
        }
    }
    if let Err(e) = plot_throughput(&out.join("throughput.svg"), results) {
        eprintln!("cluster-bench: throughput plot: {e}");
    }
    if let Err(e) = plot_cdf(&out.join("latency_cdf.svg"), results) {
        eprintln!("cluster-bench: latency plot: {e}");
    }
    println!("{}", r.md);
    println!(
        "files: {}/{{results.md,table.csv,points.csv,throughput.svg,latency_cdf.svg}}",
        out.display()
    );
    println!("{}", r.summary);
}

/// The variant list: how each ran, and every point's error.
fn variant_list(md: &mut String, results: &[VariantResult]) {
    for r in results {
        let mut status = match (&r.error, &r.engine_line) {
            (Some(e), _) => format!("MISSING/FAILED: {e}"),
            (None, Some(l)) => format!("ran; transport: {l}"),
            (None, None) => "ran".into(),
        };
        if let Some(v) = &r.version {
            let _ = write!(status, " ({v})");
        }
        let _ = writeln!(md, "- {}: {status}", r.v.name());
        for e in &r.failover.errors {
            let _ = writeln!(md, "  - failover: {e}");
        }
        for t in &r.tput {
            if let Some(e) = &t.error {
                let _ = writeln!(
                    md,
                    "  - tput {} {}: {e}",
                    if t.all_senders { "all" } else { "1" },
                    label(t.size)
                );
            }
        }
        for l in &r.lat {
            if let Some(e) = &l.error {
                let _ = writeln!(
                    md,
                    "  - latency @{:.0}/s from node {}: {e}",
                    l.rate,
                    l.sender + 1
                );
            }
            if l.achieved < ACHIEVED_FLOOR * l.rate {
                let _ = writeln!(
                    md,
                    "  - latency @{:.0}/s: sender reached only {:.0}/s",
                    l.rate, l.achieved
                );
            }
        }
    }
}

/// A latency point whose sender reached less than this fraction of the
/// offered rate is named in the variant's error list.
const ACHIEVED_FLOOR: f64 = 0.9;

/// "ran" or "FAILED: <first line of the error>"; "–" when not selected.
fn status_cell(results: &[VariantResult], v: Variant) -> String {
    match get(results, v) {
        None => "–".into(),
        Some(r) => match &r.error {
            None => "ran".into(),
            Some(e) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
        },
    }
}

/// The table (markdown into `md`) and its CSV, returned.
fn main_table(md: &mut String, rows: &[Row], results: &[VariantResult]) -> String {
    let _ = writeln!(
        md,
        "\n| row | {} | ours/corosync | ours+accel/corosync | ours-accel/corosync |",
        ALL.map(|v| v.name()).join(" | ")
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let mut csv = String::from(
        "row,ours,ours+accel,ours-accel,corosync-udpu,corosync-knet,ratio,ratio_accel,ratio_no_accel\n",
    );
    let status: Vec<String> = ALL.iter().map(|&v| status_cell(results, v)).collect();
    let _ = writeln!(
        md,
        "| status | {} | – | – | – |",
        status
            .iter()
            .map(|s| s.replace('|', "\\|"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(
        csv,
        "\"status\",{},–,–,–",
        status
            .iter()
            .map(|s| format!("\"{}\"", s.replace('"', "'")))
            .collect::<Vec<_>>()
            .join(",")
    );
    for row in rows {
        let cells: Vec<String> = (0..ALL.len())
            .map(|i| {
                let v = row.vals[i];
                if v.is_finite() {
                    format!("{}{}", fmt_val(v), row.extra[i])
                } else {
                    "–".into()
                }
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            row.name,
            cells.join(" | "),
            fmt_ratio(row.ratio(OURS)),
            fmt_ratio(row.ratio(OURS_ACCEL)),
            fmt_ratio(row.ratio(OURS_NO_ACCEL))
        );
        let _ = writeln!(
            csv,
            "\"{}\",{},{},{},{}",
            row.name,
            row.vals
                .iter()
                .map(|v| fmt_plain(*v))
                .collect::<Vec<_>>()
                .join(","),
            fmt_plain(row.ratio(OURS)),
            fmt_plain(row.ratio(OURS_ACCEL)),
            fmt_plain(row.ratio(OURS_NO_ACCEL))
        );
    }
    csv
}

/// Daemon CPU% per node over each throughput point.
fn cpu_table(md: &mut String, results: &[VariantResult]) {
    let _ = writeln!(
        md,
        "\nDaemon CPU% per node (100 = one core) over each throughput point:\n\n| point | {} |\n|---|---|---|---|---|---|",
        ALL.map(|v| v.name()).join(" | ")
    );
    for all in [true, false] {
        for &size in &SIZES {
            let cells: Vec<String> = ALL
                .iter()
                .map(|&v| {
                    get(results, v)
                        .and_then(|r| {
                            r.tput
                                .iter()
                                .find(|t| t.all_senders == all && t.size == size)
                        })
                        .map_or("–".into(), |t| crate::fmt_cpu(&t.cpu))
                })
                .collect();
            if cells.iter().all(|c| c == "–") {
                continue;
            }
            let _ = writeln!(
                md,
                "| {} {} | {} |",
                if all { "all senders" } else { "1 sender" },
                label(size),
                cells.join(" | ")
            );
        }
    }
}

/// Every measured point, one a line.
fn points_csv(results: &[VariantResult]) -> String {
    let mut csv = String::from(
        "variant,kind,senders,size,rate,achieved_rate,msgs_per_s,MBps,min_msgs_per_s,tryagain,p50_us,p99_us,p999_us,self_p50_us,self_p99_us,self_p999_us,cpu_per_daemon,error,sender_node\n",
    );
    for r in results {
        for t in &r.tput {
            let _ = writeln!(
                csv,
                "{},tput,{},{},,,{},{},{},{},,,,,,,\"{}\",\"{}\",",
                r.v.name(),
                if t.all_senders { "all" } else { "1" },
                t.size,
                fmt_plain(t.msgs),
                fmt_plain(t.mbps),
                fmt_plain(t.min_msgs),
                t.tryagain,
                crate::fmt_cpu(&t.cpu),
                t.error.clone().unwrap_or_default().replace('"', "'")
            );
        }
        for l in &r.lat {
            let _ = writeln!(
                csv,
                "{},lat,1,{},{},{},,,,,{},{},{},{},{},{},\"{}\",\"{}\",{}",
                r.v.name(),
                l.size,
                l.rate,
                fmt_plain(l.achieved),
                fmt_plain(l.remote[0]),
                fmt_plain(l.remote[1]),
                fmt_plain(l.remote[2]),
                fmt_plain(l.own[0]),
                fmt_plain(l.own[1]),
                fmt_plain(l.own[2]),
                crate::fmt_cpu(&l.cpu),
                l.error.clone().unwrap_or_default().replace('"', "'"),
                l.sender + 1
            );
        }
    }
    csv
}

fn summary_line(rows: &[Row], results: &[VariantResult]) -> String {
    let ratio = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map_or(f64::NAN, |r| r.ratio(OURS))
    };
    let cs64 = rows
        .iter()
        .find(|r| r.name == "msgs/s all senders 64B")
        .map_or(f64::NAN, Row::corosync_best);
    let ours = get(results, OURS);
    let false_confchg = ours
        .filter(|r| r.error.is_none())
        .map_or(f64::NAN, |r| r.false_confchg as f64);
    let engine = ours
        .and_then(|r| r.engine.clone())
        .unwrap_or_else(|| "unknown".into());
    format!(
        "ratio_64B={} ratio_1KiB={} ratio_MBps_64KiB={} ratio_MBps_1MiB={} ratio_p50={} \
         ratio_p99={} ratio_failover={} corosync_msgs_64B={} false_confchg={} engine={engine}",
        fmt_plain(ratio("msgs/s all senders 64B")),
        fmt_plain(ratio("msgs/s all senders 1KiB")),
        fmt_plain(ratio("msgs/s all senders 64KiB")),
        fmt_plain(ratio("msgs/s all senders 1MiB")),
        fmt_plain(ratio("latency µs 64B 1000/s remote p50")),
        fmt_plain(ratio("latency µs 64B 1000/s remote p99")),
        fmt_plain(ratio("failover ms (kill -9 → CPG confchg)")),
        if cs64.is_finite() {
            format!("{cs64:.0}")
        } else {
            "nan".into()
        },
        if false_confchg.is_finite() {
            format!("{false_confchg:.0}")
        } else {
            "nan".into()
        },
    )
}

/// A figure of Corosync's that the anchor also measured.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Figure {
    /// Delivered msgs/s at the slowest member, all nodes sending, size B.
    Msgs(usize),
    /// The same point in MB/s.
    Mbps(usize),
    /// kill -9 → CPG confchg at the slowest survivor, median of the reps.
    FailoverMs,
}

impl Figure {
    fn name(self) -> String {
        match self {
            Figure::Msgs(s) => format!("msgs/s all senders {}", label(s)),
            Figure::Mbps(s) => format!("MB/s all senders {}", label(s)),
            Figure::FailoverMs => "failover ms (kill -9 → CPG confchg)".into(),
        }
    }
    fn better(self) -> Better {
        match self {
            Figure::FailoverMs => Better::Lower,
            _ => Better::Higher,
        }
    }
    fn of(self, r: &VariantResult) -> f64 {
        let tput = |s: usize| r.tput.iter().find(|t| t.all_senders && t.size == s);
        match self {
            Figure::Msgs(s) => tput(s).map_or(f64::NAN, |t| t.msgs),
            Figure::Mbps(s) => tput(s).map_or(f64::NAN, |t| t.mbps),
            Figure::FailoverMs => median(&r.failover.cpg_ms),
        }
    }
}

/// One row of the anchor: Corosync 3.1.7 on the anchor's machine.
struct Anchor {
    figure: Figure,
    udpu: f64,
    knet: f64,
}

/// Corosync 3.1.7, 3 nodes, from ../shared/anchors/corosync/results.md:
/// the throughput table's rows with nodes 3 and senders 3 (mean of 2
/// runs), and the failover table's "token: 200, token_coefficient: 0"
/// rows, cpg ms, median of the 3 repetitions (knet 424.5 at best).
const ANCHOR: [Anchor; 5] = [
    Anchor {
        figure: Figure::Msgs(64),
        udpu: 91_545.0,
        knet: 50_437.0,
    },
    Anchor {
        figure: Figure::Msgs(1024),
        udpu: 37_309.0,
        knet: 43_332.0,
    },
    Anchor {
        figure: Figure::Mbps(64 * 1024),
        udpu: 6.2,
        knet: 84.3,
    },
    Anchor {
        figure: Figure::Mbps(1024 * 1024),
        udpu: 98.8,
        knet: 214.5,
    },
    Anchor {
        figure: Figure::FailoverMs,
        udpu: 428.3,
        knet: 424.7,
    },
];

/// A row is flagged below this fraction of the anchor (failover: above
/// its inverse). This VM's packet path is 3–4× slower than the anchor's
/// machine, so a healthy Corosync lands near 0.25–0.35 here.
const ANCHOR_FLOOR: f64 = 0.25;

const ANCHOR_FLAG: &str = "FAR BELOW THE ANCHOR: this row's comparison may be broken";

/// Corosync's better transport in this run against the anchor's better
/// transport, for one row.
#[derive(Debug)]
pub(crate) struct AnchorCheck {
    name: String,
    /// This run's better Corosync figure and its transport (NaN, "–" when
    /// neither transport measured it).
    run: f64,
    run_transport: &'static str,
    anchor: f64,
    anchor_transport: &'static str,
    /// run ÷ anchor.
    fraction: f64,
    flagged: bool,
}

/// The better of two figures by `better`, NaN-aware, with its name.
fn better_of(
    better: Better,
    a: (f64, &'static str),
    b: (f64, &'static str),
) -> (f64, &'static str) {
    match (a.0.is_finite(), b.0.is_finite()) {
        (true, true) => {
            let a_wins = match better {
                Better::Higher => a.0 >= b.0,
                Better::Lower => a.0 <= b.0,
            };
            if a_wins {
                a
            } else {
                b
            }
        }
        (true, false) => a,
        (false, true) => b,
        (false, false) => (f64::NAN, "–"),
    }
}

/// The anchor check per row; None when `nodes` is not the anchor's 3.
fn anchor_checks(results: &[VariantResult], nodes: usize) -> Option<Vec<AnchorCheck>> {
    if nodes != 3 {
        return None;
    }
    let udpu = get(results, Variant::Corosync { knet: false });
    let knet = get(results, Variant::Corosync { knet: true });
    let checks = ANCHOR
        .iter()
        .map(|a| {
            let f = a.figure;
            let value = |r: Option<&VariantResult>| r.map_or(f64::NAN, |r| f.of(r));
            let (run, run_transport) =
                better_of(f.better(), (value(udpu), "udpu"), (value(knet), "knet"));
            let (anchor, anchor_transport) =
                better_of(f.better(), (a.udpu, "udpu"), (a.knet, "knet"));
            let fraction = run / anchor;
            let flagged = match f.better() {
                Better::Higher => fraction < ANCHOR_FLOOR,
                Better::Lower => fraction > 1.0 / ANCHOR_FLOOR,
            };
            AnchorCheck {
                name: f.name(),
                run,
                run_transport,
                anchor,
                anchor_transport,
                fraction,
                flagged,
            }
        })
        .collect();
    Some(checks)
}

fn anchor_section(md: &mut String, nodes: usize, checks: Option<&[AnchorCheck]>) {
    let _ = writeln!(md, "\n## Corosync against the anchor\n");
    let Some(checks) = checks else {
        let _ = writeln!(md, "{}", anchor_skipped(nodes));
        return;
    };
    let _ = writeln!(
        md,
        "Corosync's better transport in this run against the better transport of Corosync \
         3.1.7 on the anchor's machine (../shared/anchors/corosync/results.md: 3 nodes, all \
         sending; failover at token 200, token_coefficient 0). This VM's packet path is about \
         3–4× slower than the anchor's machine (README.md, Benchmarks: the anchor's own harness \
         measured about 28k msgs/s at 64 B here, 92k there), so a row is flagged only below \
         {ANCHOR_FLOOR} of the anchor (failover: above {}× its time). A flagged row's ratio \
         compares ours against a broken Corosync, not a fast ours.\n",
        1.0 / ANCHOR_FLOOR
    );
    let _ = writeln!(
        md,
        "| row | Corosync this run | anchor | fraction | check |\n|---|---|---|---|---|"
    );
    for c in checks {
        let run = if c.run.is_finite() {
            format!("{} ({})", fmt_val(c.run), c.run_transport)
        } else {
            "–".into()
        };
        let _ = writeln!(
            md,
            "| {} | {run} | {} ({}) | {} | {} |",
            c.name,
            fmt_val(c.anchor),
            c.anchor_transport,
            fmt_ratio(c.fraction),
            anchor_verdict(c)
        );
    }
}

fn anchor_verdict(c: &AnchorCheck) -> &'static str {
    if c.flagged {
        ANCHOR_FLAG
    } else if c.fraction.is_finite() {
        "ok"
    } else {
        "not measured"
    }
}

fn anchor_skipped(nodes: usize) -> String {
    format!("Skipped: the anchor is 3 nodes and this run has {nodes}.")
}

fn anchor_line(nodes: usize, checks: Option<&[AnchorCheck]>) -> String {
    let Some(checks) = checks else {
        return format!("Corosync against the anchor: {}", anchor_skipped(nodes));
    };
    let rows: Vec<String> = checks
        .iter()
        .map(|c| {
            if c.fraction.is_finite() {
                format!(
                    "{} {} of the anchor: {}",
                    c.name,
                    fmt_ratio(c.fraction),
                    anchor_verdict(c)
                )
            } else {
                format!("{}: {}", c.name, anchor_verdict(c))
            }
        })
        .collect();
    format!("Corosync against the anchor: {}", rows.join("; "))
}

const COLORS: [RGBColor; 5] = [
    RGBColor(200, 30, 30),
    RGBColor(230, 140, 20),
    RGBColor(140, 60, 160),
    RGBColor(30, 90, 200),
    RGBColor(30, 150, 60),
];

type PlotResult = Result<(), Box<dyn std::error::Error>>;

fn plot_throughput(path: &Path, results: &[VariantResult]) -> PlotResult {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let series: Vec<(Variant, Vec<(f64, f64)>)> = results
        .iter()
        .map(|r| {
            let pts = r
                .tput
                .iter()
                .filter(|t| t.all_senders && t.mbps.is_finite() && t.mbps > 0.0)
                .map(|t| (t.size as f64, t.mbps))
                .collect();
            (r.v, pts)
        })
        .collect();
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(1.0f64, f64::max)
        * 2.0;
    let ymin = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(ymax, f64::min)
        .max(0.01)
        / 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "CPG throughput, all nodes sending (slowest member)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((48f64..1.5e6f64).log_scale(), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("message size (bytes)")
        .y_desc("MB/s")
        .draw()?;
    for (k, (v, pts)) in series.into_iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let color = COLORS[ALL.iter().position(|&x| x == v).unwrap_or(k) % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(v.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plot_cdf(path: &Path, results: &[VariantResult]) -> PlotResult {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let series: Vec<(Variant, Vec<(f64, f64)>)> = results
        .iter()
        .filter_map(|r| {
            let l = r.lat.first()?;
            let n = l.cdf_remote.len();
            (n > 1).then(|| {
                let pts = l
                    .cdf_remote
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x > 0.0)
                    .map(|(i, &x)| (x, i as f64 / (n - 1) as f64))
                    .collect();
                (r.v, pts)
            })
        })
        .collect();
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.0))
        .fold(10.0f64, f64::max)
        * 1.5;
    let xmin = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.0))
        .fold(xmax, f64::min)
        .max(0.1)
        / 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Remote-delivery latency CDF, 64 B at 1000 msgs/s",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("latency (µs), send call → delivery at a remote member")
        .y_desc("fraction")
        .draw()?;
    for (k, (v, pts)) in series.into_iter().enumerate() {
        let color = COLORS[ALL.iter().position(|&x| x == v).unwrap_or(k) % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(v.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LatPoint, TputPoint};

    const UDPU: Variant = Variant::Corosync { knet: false };
    const KNET: Variant = Variant::Corosync { knet: true };

    fn tput(size: usize, msgs: f64) -> TputPoint {
        TputPoint {
            all_senders: true,
            size,
            msgs,
            mbps: msgs * size as f64 / 1e6,
            min_msgs: msgs,
            ..TputPoint::default()
        }
    }

    fn lat(rate: f64, p50: f64, achieved: f64) -> LatPoint {
        LatPoint {
            rate,
            size: 64,
            remote: [p50, 2.0 * p50, 3.0 * p50],
            own: [p50, 2.0 * p50, 3.0 * p50],
            samples: achieved * 6.0,
            achieved,
            ..LatPoint::default()
        }
    }

    /// A variant that ran: 64 B all senders at `msgs`, latency p50 at
    /// 1000/s `p50` µs, failover `failover_ms`.
    fn ran(v: Variant, msgs: f64, p50: f64, failover_ms: f64) -> VariantResult {
        let mut r = VariantResult::new(v);
        r.tput.push(tput(64, msgs));
        r.lat.push(lat(1000.0, p50, 1000.0));
        r.failover.cpg_ms.push(failover_ms);
        r
    }

    #[test]
    fn every_sender_gets_its_rows_and_the_worst_sender_is_compared() {
        // Points in run order: 1000/s from node 1, near saturation, then
        // 1000/s from nodes 2 and 3.
        let with_senders = |v: Variant, p50s: [f64; 3]| {
            let mut r = ran(v, 100.0, p50s[0], 40.0);
            r.lat.push(lat(50_000.0, 5000.0, 50_000.0));
            for (s, p50) in [(1, p50s[1]), (2, p50s[2])] {
                r.lat.push(LatPoint {
                    sender: s,
                    ..lat(1000.0, p50, 1000.0)
                });
            }
            r
        };
        let results = [
            with_senders(OURS, [100.0, 150.0, 120.0]),
            with_senders(UDPU, [200.0, 190.0, 300.0]),
        ];
        let out = render("note", 3, &results);
        let row = |name: &str| {
            out.md
                .lines()
                .find(|l| l.starts_with(&format!("| {name} |")))
                .unwrap_or_else(|| panic!("no row {name}:\n{}", out.md))
                .to_owned()
        };
        assert!(row("latency µs 64B 1000/s remote p50, node 2 sending").contains("| 150 |"));
        assert!(row("latency µs 64B 1000/s remote p50, node 3 sending").contains("| 120 |"));
        // The near-saturation point (5000 µs) is not a 1000/s sender.
        let worst = row("latency µs 64B 1000/s remote p50, worst sender");
        assert!(worst.contains("150 (node 2)"), "{worst}");
        assert!(worst.contains("300 (node 3)"), "{worst}");
        assert!(
            worst.contains("| 0.50 |"),
            "ours 150 against Corosync's 300: {worst}"
        );
    }

    fn summary_fields(s: &str) -> Vec<(String, String)> {
        s.split_whitespace()
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("key=value");
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn summary_keys_in_order_and_ratios_against_corosyncs_better_transport() {
        let mut ours = ran(OURS, 1000.0, 100.0, 40.0);
        ours.engine = Some("IoUring+gso+gro".into());
        let results = [
            ours,
            ran(UDPU, 100.0, 200.0, 400.0),
            ran(KNET, 50.0, 400.0, 800.0),
        ];
        let out = render("note", 3, &results);
        let fields = summary_fields(&out.summary);
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ratio_64B",
                "ratio_1KiB",
                "ratio_MBps_64KiB",
                "ratio_MBps_1MiB",
                "ratio_p50",
                "ratio_p99",
                "ratio_failover",
                "corosync_msgs_64B",
                "false_confchg",
                "engine"
            ]
        );
        let val = |k: &str| fields.iter().find(|(f, _)| f == k).unwrap().1.clone();
        // Throughput: higher is better, so udpu (100) is Corosync's figure.
        assert_eq!(val("ratio_64B"), "10.000");
        // Latency and failover: lower is better, so udpu (200 µs, 400 ms).
        assert_eq!(val("ratio_p50"), "0.500");
        assert_eq!(val("ratio_p99"), "0.500");
        assert_eq!(val("ratio_failover"), "0.100");
        assert_eq!(val("corosync_msgs_64B"), "100");
        assert_eq!(val("false_confchg"), "0");
        assert_eq!(val("engine"), "IoUring+gso+gro");
        // Not measured: nan, not a number made up.
        assert_eq!(val("ratio_1KiB"), "nan");
        assert!(out.md.ends_with(&format!("{}\n", out.summary)));
    }

    #[test]
    fn missing_corosync_gives_nan_ratios_and_a_failed_status_row() {
        let err = "apt-get install -y corosync failed (exit status: 100): E: Unable to locate \
                   package corosync\nsecond line";
        let mut udpu = VariantResult::new(UDPU);
        udpu.error = Some(err.into());
        let mut knet = VariantResult::new(KNET);
        knet.error = Some(err.into());
        let results = [ran(OURS, 1000.0, 100.0, 40.0), udpu, knet];
        let out = render("note", 3, &results);
        for (k, v) in summary_fields(&out.summary) {
            if k.starts_with("ratio_") || k == "corosync_msgs_64B" {
                assert_eq!(v, "nan", "{k}");
            }
        }
        let failed = "FAILED: apt-get install -y corosync failed (exit status: 100): E: Unable \
                      to locate package corosync";
        let status_md = out
            .md
            .lines()
            .find(|l| l.starts_with("| status |"))
            .expect("status row in results.md");
        assert_eq!(
            status_md,
            format!("| status | ran | – | – | {failed} | {failed} | – | – | – |")
        );
        let status_csv = out
            .table_csv
            .lines()
            .nth(1)
            .expect("status row in table.csv");
        assert_eq!(
            status_csv,
            format!("\"status\",\"ran\",\"–\",\"–\",\"{failed}\",\"{failed}\",–,–,–")
        );
        // The status row comes first, before every measured row.
        let first_row = out
            .md
            .lines()
            .skip_while(|l| !l.starts_with("|---"))
            .nth(1)
            .unwrap();
        assert!(first_row.starts_with("| status |"), "{first_row}");
    }

    #[test]
    fn anchor_check_flags_a_row_at_a_fifth_of_the_anchor_only() {
        // The anchor's better transports: 64 B udpu 91545, 1 KiB knet 43332.
        let mut udpu = ran(UDPU, 0.2 * 91_545.0, 200.0, 430.0);
        udpu.tput.push(tput(1024, 0.5 * 43_332.0));
        let knet = ran(KNET, 0.1 * 91_545.0, 300.0, 5.0 * 424.7);
        let results = [ran(OURS, 1e6, 100.0, 40.0), udpu, knet];
        let checks = anchor_checks(&results, 3).expect("3 nodes: checked");
        let find = |name: &str| checks.iter().find(|c| c.name == name).unwrap();
        let c64 = find("msgs/s all senders 64B");
        assert_eq!(c64.run_transport, "udpu");
        assert_eq!(c64.anchor_transport, "udpu");
        assert!((c64.fraction - 0.2).abs() < 1e-9);
        assert!(c64.flagged);
        let c1k = find("msgs/s all senders 1KiB");
        assert_eq!(c1k.anchor_transport, "knet");
        assert!((c1k.fraction - 0.5).abs() < 1e-9);
        assert!(!c1k.flagged);
        // Failover: lower is better; udpu's 430 ms is the run's figure.
        let fo = find("failover ms (kill -9 → CPG confchg)");
        assert_eq!(fo.run_transport, "udpu");
        assert!(!fo.flagged);
        // Not measured (64 KiB): neither flagged nor ok.
        let c64k = find("MB/s all senders 64KiB");
        assert!(!c64k.flagged && c64k.run.is_nan());

        let out = render("note", 3, &results);
        let section = &out.md[out.md.find("## Corosync against the anchor").unwrap()..];
        let line = |name: &str| {
            section
                .lines()
                .find(|l| l.starts_with(&format!("| {name} | ")))
                .unwrap_or_else(|| panic!("anchor row {name}"))
        };
        assert!(line("msgs/s all senders 64B").ends_with(&format!("| {ANCHOR_FLAG} |")));
        assert!(line("msgs/s all senders 1KiB").ends_with("| ok |"));
        assert!(out.anchor_line.contains(ANCHOR_FLAG));
        // The summary line is untouched by the check.
        assert!(!out.summary.contains("anchor"));
    }

    #[test]
    fn anchor_check_flags_failover_more_than_four_times_the_anchors() {
        let results = [
            ran(OURS, 1e6, 100.0, 40.0),
            ran(UDPU, 91_545.0, 200.0, 5.0 * 424.7),
        ];
        let checks = anchor_checks(&results, 3).unwrap();
        let fo = checks
            .iter()
            .find(|c| c.name == "failover ms (kill -9 → CPG confchg)")
            .expect("failover row");
        assert!((fo.fraction - 5.0).abs() < 1e-9);
        assert!(fo.flagged);
    }

    #[test]
    fn anchor_check_is_skipped_for_other_node_counts() {
        let results = [ran(UDPU, 1.0, 200.0, 430.0)];
        assert!(anchor_checks(&results, 5).is_none());
        let out = render("note", 5, &results);
        assert!(out.md.contains(
            "## Corosync against the anchor\n\nSkipped: the anchor is 3 nodes and this run has 5."
        ));
        assert!(out.anchor_line.contains("Skipped"));
        assert!(!out.md.contains(ANCHOR_FLAG));
    }

    #[test]
    fn a_sender_below_the_offered_rate_is_named_in_the_error_list() {
        let mut ours = ran(OURS, 1e6, 100.0, 40.0);
        ours.lat.push(lat(800_000.0, 300.0, 612_000.0));
        let out = render("note", 3, &[ours]);
        assert!(out
            .md
            .contains("  - latency @800000/s: sender reached only 612000/s\n"));
        // 1000/s was reached: no note for it.
        assert!(!out.md.contains("latency @1000/s"));
        assert!(out.md.contains(" @800000/s offered, 612000/s achieved"));
        let csv_line = out
            .points_csv
            .lines()
            .find(|l| l.starts_with("ours,lat,1,64,800000,"))
            .expect("latency point in points.csv");
        assert!(
            csv_line.starts_with("ours,lat,1,64,800000,612000.000,"),
            "{csv_line}"
        );
        let header = out.points_csv.lines().next().unwrap();
        assert!(header.starts_with("variant,kind,senders,size,rate,achieved_rate,"));
    }
}
