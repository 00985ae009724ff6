//! Loss curves as a self-contained SVG: training and validation loss against steps or
//! training time, one colour per run, training loss thin and dashed, validation loss solid
//! with a point per validation whose tooltip gives the step, the training time and both
//! losses. Against steps with one run, the top axis gives the training time. No scripts,
//! fonts or other files are needed.

use crate::io::metrics::Record;
use std::fmt::Write;

/// What the horizontal axis measures. Steps compare runs of one configuration; runs whose
/// steps differ in size or speed (another batch, another width, another program) compare
/// fairly only by the time they took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum XAxis {
    #[default]
    Steps,
    Time,
}

/// One run's records, labelled (by its directory, say).
#[derive(Debug, Clone)]
pub struct Run {
    pub label: String,
    pub records: Vec<Record>,
}

const W: f64 = 900.0;
const H: f64 = 520.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

/// The SVG document for `runs`, titled `title`, with `axis` along the bottom.
pub fn svg(runs: &[Run], title: &str, axis: XAxis) -> String {
    let at = |r: &Record| match axis {
        XAxis::Steps => r.step as f64,
        XAxis::Time => r.seconds,
    };
    let points = runs.iter().flat_map(|r| &r.records);
    let max_x = points.clone().map(at).fold(0.0, f64::max);
    let max_x = if max_x > 0.0 { max_x } else { 1.0 };
    // The first steps' losses (about ln V) would flatten the rest of the curve: the y range
    // covers the values after the first 3% of the axis, and everything is clipped to it.
    let late: Vec<f64> = points
        .clone()
        .filter(|r| at(r) >= 0.03 * max_x)
        .flat_map(|r| std::iter::once(r.train_loss).chain(r.val_loss))
        .filter(|v| v.is_finite())
        .collect();
    let all: Vec<f64> = points
        .clone()
        .flat_map(|r| std::iter::once(r.train_loss).chain(r.val_loss))
        .filter(|v| v.is_finite())
        .collect();
    let source = if late.is_empty() { &all } else { &late };
    let lo = source.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = source.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    } else if lo.is_finite() {
        (lo - 0.5, lo + 0.5)
    } else {
        (0.0, 1.0)
    };
    let x = |v: f64| LEFT + v / max_x * (W - LEFT - RIGHT);
    let y = |v: f64| {
        let v = v.clamp(lo, hi);
        H - BOTTOM - (v - lo) / (hi - lo) * (H - TOP - BOTTOM)
    };

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="16">{}</text>
"#,
        W / 2.0,
        escape(title)
    );
    // Grid, ticks and labels.
    for v in nice_ticks(lo, hi, 6) {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{v:.2}</text>"##,
            W - RIGHT,
            LEFT - 8.0,
            yy + 4.0
        );
    }
    let bottom = match axis {
        XAxis::Steps => nice_ticks(0.0, max_x, 8),
        XAxis::Time => time_ticks(max_x, 8),
    };
    for v in bottom {
        let xx = x(v);
        let label = match axis {
            XAxis::Steps => thousands(v),
            XAxis::Time => clock(v),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{}" stroke="#f0f0f0"/><text x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 18.0,
            label
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">loss (nats per character)</text>"##,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM,
        (LEFT + W - RIGHT) / 2.0,
        H - 16.0,
        match axis {
            XAxis::Steps => "optimizer steps",
            XAxis::Time => "training time (validation excluded)",
        },
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0
    );
    // Against steps with one run, its training time on the top axis.
    if let ([run], XAxis::Steps) = (runs, axis) {
        let timed: Vec<(f64, f64)> = run
            .records
            .iter()
            .map(|r| (r.step as f64, r.seconds))
            .collect();
        if let Some(&(_, total)) = timed.last().filter(|(_, t)| *t > 0.0) {
            for t in time_ticks(total, 6) {
                if let Some(step) = step_at(&timed, t) {
                    let xx = x(step);
                    let _ = writeln!(
                        s,
                        r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{}" stroke="#444"/><text x="{xx:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
                        TOP - 5.0,
                        TOP - 9.0,
                        clock(t)
                    );
                }
            }
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="end" fill="#555">training time</text>"##,
                W - RIGHT,
                TOP - 26.0
            );
        }
    }
    // Curves.
    for (i, run) in runs.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        // The training curve from one kind of record: a `val` record's training loss is
        // the mean since the previous validation, a longer average than a `train` record's,
        // and joining both draws a saw-tooth. `val` records only where there is nothing else
        // (a run plotted from its checkpoint's history).
        let has_train = run.records.iter().any(|r| r.kind == "train");
        let train: Vec<String> = run
            .records
            .iter()
            .filter(|r| !has_train || r.kind == "train")
            .filter(|r| r.train_loss.is_finite())
            .map(|r| format!("{:.1},{:.1}", x(at(r)), y(r.train_loss)))
            .collect();
        let val: Vec<&Record> = run
            .records
            .iter()
            .filter(|r| r.val_loss.is_some_and(f64::is_finite))
            .collect();
        if !train.is_empty() {
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="1.2" stroke-dasharray="5 3" opacity="0.75" points="{}"/>"#,
                train.join(" ")
            );
        }
        if !val.is_empty() {
            let pts: Vec<String> = val
                .iter()
                .map(|r| format!("{:.1},{:.1}", x(at(r)), y(r.val_loss.unwrap())))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2.2" points="{}"/>"#,
                pts.join(" ")
            );
            for r in &val {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"><title>{}: step {}, {} of training, validation {:.4}, training {:.4}</title></circle>"#,
                    x(at(r)),
                    y(r.val_loss.unwrap()),
                    escape(&run.label),
                    r.step,
                    clock(r.seconds),
                    r.val_loss.unwrap(),
                    r.train_loss
                );
            }
        }
    }
    // Legend: one row per run and split.
    let mut ly = TOP + 18.0;
    // Wide enough for the longest label (about 7 px per character at 13 px).
    let longest = runs
        .iter()
        .map(|r| r.label.chars().count() + " validation".len())
        .max()
        .unwrap_or(0);
    let lx = (W - RIGHT - 12.0 - 36.0 - 7.2 * longest as f64).max(LEFT + 12.0);
    for (i, run) in runs.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        for (dash, width, what) in [("", 2.2, "validation"), ("5 3", 1.2, "training")] {
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="{width}" stroke-dasharray="{dash}"/><text x="{}" y="{}">{} {what}</text>"#,
                lx + 28.0,
                lx + 36.0,
                ly + 4.0,
                escape(&run.label)
            );
            ly += 18.0;
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Labels for runs read from `dirs`: each the shortest end of its path (`ck`,
/// `a/checkpoints`) that no other path ends with, so that `plot a/checkpoints
/// b/checkpoints` does not label both `checkpoints`. Paths are resolved first (`.` is the
/// directory's name); one directory given twice is labelled `ck (2)` the second time.
pub fn labels(dirs: &[std::path::PathBuf]) -> Vec<String> {
    let parts: Vec<Vec<String>> = dirs
        .iter()
        .map(|d| {
            let p = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
            p.components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let suffix = |v: &Vec<String>, k: usize| v[v.len().saturating_sub(k)..].join("/");
    let mut out: Vec<String> = Vec::new();
    for (i, mine) in parts.iter().enumerate() {
        let distinct = |k: usize| {
            parts
                .iter()
                .enumerate()
                .all(|(j, other)| j == i || other == mine || suffix(other, k) != suffix(mine, k))
        };
        let k = (1..=mine.len())
            .find(|&k| distinct(k))
            .unwrap_or(mine.len());
        let mut label = suffix(mine, k);
        if label.is_empty() {
            label = dirs[i].display().to_string();
        }
        let seen = out
            .iter()
            .filter(|l| l.split(" (").next() == Some(&label))
            .count();
        if seen > 0 {
            label = format!("{label} ({})", seen + 1);
        }
        out.push(label);
    }
    out
}

/// The step at which training time reached `t` seconds, by linear interpolation.
fn step_at(timed: &[(f64, f64)], t: f64) -> Option<f64> {
    let mut prev = (0.0, 0.0);
    for &(step, secs) in timed {
        if secs >= t {
            let f = if secs > prev.1 {
                (t - prev.1) / (secs - prev.1)
            } else {
                1.0
            };
            return Some(prev.0 + f * (step - prev.0));
        }
        prev = (step, secs);
    }
    None
}

/// About `n` round numbers covering [lo, hi].
fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    (0..=n * 2 + 2)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v <= hi + 1e-9 * step)
        .collect()
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    if n >= 10_000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// `45s`, `12m`, `1h20m`.
/// Ticks from 0 to `hi` seconds at a step a clock reads well (10 s, 1 min, 5 min, 1 h, …),
/// at most `max` + 1 of them.
fn time_ticks(hi: f64, max: usize) -> Vec<f64> {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21600.0, 86400.0,
    ];
    let step = STEPS
        .into_iter()
        .find(|s| hi / s <= max as f64)
        .unwrap_or_else(|| (hi / max as f64 / 86400.0).ceil() * 86400.0);
    (0..=max)
        .map(|i| i as f64 * step)
        .take_while(|t| *t <= hi + 1e-9 * step)
        .collect()
}

fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", (s + 30) / 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: u64, val: Option<f64>) -> Record {
        Record {
            kind: if val.is_some() { "val" } else { "train" }.into(),
            step,
            epoch: step as f64 / 100.0,
            seconds: step as f64 * 0.5,
            train_loss: 3.0 / (1.0 + step as f64 / 50.0),
            val_loss: val,
            lr: 2e-3,
            chars_per_s: 1e5,
            run: None,
        }
    }

    #[test]
    fn labels_are_the_shortest_distinct_ends_of_the_paths() {
        let p = |v: &[&str]| v.iter().map(std::path::PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            labels(&p(&["/x/a/checkpoints", "/x/b/checkpoints"])),
            ["a/checkpoints", "b/checkpoints"]
        );
        assert_eq!(
            labels(&p(&["/r/run1", "/x/a/ck", "/y/a/ck", "/z/ck2"])),
            ["run1", "x/a/ck", "y/a/ck", "ck2"]
        );
        assert_eq!(labels(&p(&["/r/ck", "/r/ck"])), ["ck", "ck (2)"]);
        assert_eq!(labels(&p(&["/a/ck", "/a/b/c/ck"])), ["a/ck", "c/ck"]);
    }

    /// The training curve is drawn from `train` records alone when there are any: the
    /// `val` records' longer averages do not make a saw-tooth of it.
    #[test]
    fn the_training_curve_uses_one_kind_of_record() {
        let mut records: Vec<Record> = (1..=20).map(|i| record(i * 10, None)).collect();
        for i in 1..=4 {
            let mut v = record(i * 50, Some(1.5));
            v.train_loss = 9.0;
            records.push(v);
        }
        records.sort_by_key(|r| r.step);
        let s = svg(
            &[Run {
                label: "r".into(),
                records: records.clone(),
            }],
            "t",
            XAxis::Steps,
        );
        let dashed = s
            .lines()
            .find(|l| l.contains("stroke-dasharray=\"5 3\" opacity"))
            .unwrap();
        assert_eq!(dashed.matches(',').count(), 20, "{dashed}");
        // Validation records only (a checkpoint's history): those are the curve.
        let vals: Vec<Record> = records.into_iter().filter(|r| r.kind == "val").collect();
        let s = svg(
            &[Run {
                label: "r".into(),
                records: vals,
            }],
            "t",
            XAxis::Steps,
        );
        let dashed = s
            .lines()
            .find(|l| l.contains("stroke-dasharray=\"5 3\" opacity"))
            .unwrap();
        assert_eq!(dashed.matches(',').count(), 4, "{dashed}");
    }

    #[test]
    fn the_plot_has_axes_a_legend_and_a_curve_per_run_and_split() {
        let runs: Vec<Run> = ["a<b", "second"]
            .iter()
            .map(|l| Run {
                label: l.to_string(),
                records: (1..=40)
                    .map(|i| record(i * 25, (i % 5 == 0).then_some(1.5)))
                    .collect(),
            })
            .collect();
        let s = svg(&runs, "two runs", XAxis::Steps);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 4);
        assert!(s.contains("a&lt;b validation") && s.contains("second training"));
        assert!(s.contains("optimizer steps") && s.contains("loss (nats per character)"));
        assert!(
            !s.contains("href") && !s.contains("<script"),
            "self-contained"
        );
        // One run: the time axis.
        let s = svg(&runs[..1], "one", XAxis::Steps);
        assert!(s.contains("training time"));
        // Against time, a run twice as slow per step ends twice as far to the right.
        let mut slow = runs[1].clone();
        for r in &mut slow.records {
            r.seconds *= 2.0;
        }
        let s = svg(&[runs[0].clone(), slow], "time", XAxis::Time);
        assert!(
            s.contains("training time (validation excluded)") && !s.contains("optimizer steps")
        );
        let ends: Vec<f64> = s
            .lines()
            .filter(|l| l.contains("stroke-width=\"2.2\" points="))
            .map(|l| {
                let last = l.rsplit(' ').next().unwrap().trim_end_matches("\"/>");
                last.split(',').next().unwrap().parse().unwrap()
            })
            .collect();
        assert_eq!(ends.len(), 2);
        let (a, b) = (ends[0] - LEFT, ends[1] - LEFT);
        assert!((b / a - 2.0).abs() < 0.01, "{ends:?}");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 1000.0, 5),
            vec![0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]
        );
        let t = nice_ticks(1.23, 1.91, 6);
        assert!(t.first().unwrap() >= &1.23 && t.last().unwrap() <= &1.91 && t.len() >= 3);
        assert_eq!(step_at(&[(10.0, 5.0), (20.0, 10.0)], 7.5), Some(15.0));
        // Time: whole minutes for a 20-minute run, and labels that say so.
        let t = time_ticks(1200.0, 8);
        assert_eq!(t, (0..=4).map(|i| i as f64 * 300.0).collect::<Vec<_>>());
        assert_eq!(
            t.iter().map(|&v| clock(v)).collect::<Vec<_>>()[1..3],
            ["5m", "10m"]
        );
        assert_eq!(time_ticks(50.0, 6), vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert!(time_ticks(1e7, 8).len() <= 9);
    }
}
