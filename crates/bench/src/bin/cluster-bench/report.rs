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

fn label(size: usize) -> String {
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
                            format!(" @{:.0}/s", l.rate)
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

pub fn write_all(out: &Path, note: &str, results: &[VariantResult]) {
    let rows = rows(results);
    let mut md = String::new();
    let _ = writeln!(md, "# cluster-bench\n\n{note}\n");
    for r in results {
        let status = match (&r.error, &r.engine_line) {
            (Some(e), _) => format!("MISSING/FAILED: {e}"),
            (None, Some(l)) => format!("ran; transport: {l}"),
            (None, None) => "ran".into(),
        };
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
                let _ = writeln!(md, "  - latency @{:.0}/s: {e}", l.rate);
            }
        }
    }
    let _ = writeln!(
        md,
        "\n| row | {} | ours/corosync | ours+accel/corosync | ours-accel/corosync |",
        ALL.map(|v| v.name()).join(" | ")
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let mut csv = String::from(
        "row,ours,ours+accel,ours-accel,corosync-udpu,corosync-knet,ratio,ratio_accel,ratio_no_accel\n",
    );
    for row in &rows {
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
    // CPU per daemon.
    let _ = writeln!(
        md,
        "\nDaemon CPU% per node (100 = one core) over each throughput point:\n\n| point | {} |\n|---|---|---|---|---|---|",
        ALL.map(|v| v.name()).join(" | ")
    );
    let mut points_csv = String::from(
        "variant,kind,senders,size,rate,msgs_per_s,MBps,min_msgs_per_s,tryagain,p50_us,p99_us,p999_us,self_p50_us,self_p99_us,self_p999_us,cpu_per_daemon,error\n",
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
    for r in results {
        for t in &r.tput {
            let _ = writeln!(
                points_csv,
                "{},tput,{},{},,{},{},{},{},,,,,,,\"{}\",\"{}\"",
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
                points_csv,
                "{},lat,1,{},{},,,,,{},{},{},{},{},{},\"{}\",\"{}\"",
                r.v.name(),
                l.size,
                l.rate,
                fmt_plain(l.remote[0]),
                fmt_plain(l.remote[1]),
                fmt_plain(l.remote[2]),
                fmt_plain(l.own[0]),
                fmt_plain(l.own[1]),
                fmt_plain(l.own[2]),
                crate::fmt_cpu(&l.cpu),
                l.error.clone().unwrap_or_default().replace('"', "'")
            );
        }
    }
    let summary = summary_line(&rows, results);
    let _ = writeln!(md, "\n{summary}");
    let _ = std::fs::write(out.join("results.md"), &md);
    let _ = std::fs::write(out.join("table.csv"), csv);
    let _ = std::fs::write(out.join("points.csv"), points_csv);
    if let Err(e) = plot_throughput(&out.join("throughput.svg"), results) {
        eprintln!("cluster-bench: throughput plot: {e}");
    }
    if let Err(e) = plot_cdf(&out.join("latency_cdf.svg"), results) {
        eprintln!("cluster-bench: latency plot: {e}");
    }
    println!("{md}");
    println!(
        "files: {}/{{results.md,table.csv,points.csv,throughput.svg,latency_cdf.svg}}",
        out.display()
    );
    println!("{summary}");
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
