//! Samples, percentiles and the printed comparison table.

use std::time::Duration;

/// Latency samples of one phase.
#[derive(Default, Clone)]
pub(crate) struct Samples {
    sorted: Vec<Duration>,
}

impl Samples {
    pub(crate) fn new(mut v: Vec<Duration>) -> Samples {
        v.sort();
        Samples { sorted: v }
    }

    /// Sum of all samples (the busy time of a sequential run).
    pub(crate) fn total(&self) -> Duration {
        self.sorted.iter().sum()
    }

    pub(crate) fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Nearest-rank percentile (`p` in 0..=100); zero when empty.
    pub(crate) fn pct(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    /// The samples of several runs of one phase as one set.
    pub(crate) fn merged<'a>(runs: impl IntoIterator<Item = &'a Samples>) -> Samples {
        Samples::new(
            runs.into_iter()
                .flat_map(|s| s.sorted.iter().copied())
                .collect(),
        )
    }

    pub(crate) fn p50_ms(&self) -> f64 {
        ms(self.pct(50.0))
    }

    pub(crate) fn p99_ms(&self) -> f64 {
        ms(self.pct(99.0))
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

#[derive(Clone, Copy)]
pub(crate) enum Unit {
    PerSec,
    Ms,
    Secs,
    MiB,
    /// Throughput in megabytes (10^6 bytes) per second.
    MBPerSec,
    /// A plain count.
    Count,
}

impl Unit {
    fn fmt(self, v: f64) -> String {
        match self {
            Unit::PerSec => format!("{v:.0}/s"),
            Unit::Ms => {
                if v < 10.0 {
                    format!("{v:.2} ms")
                } else {
                    format!("{v:.1} ms")
                }
            }
            Unit::Secs => format!("{v:.3} s"),
            Unit::MiB => format!("{v:.1} MiB"),
            Unit::MBPerSec => format!("{v:.1} MB/s"),
            Unit::Count => format!("{v:.0}"),
        }
    }

    /// Throughput: more is better; everything else: less is better.
    fn higher_is_better(self) -> bool {
        matches!(self, Unit::PerSec | Unit::MBPerSec)
    }
}

/// What the issue asks of a figure.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    /// The ratio (>1 = kybern better) must be at least this.
    Ratio(f64),
    /// kybern's own value must be below this (in the row's unit).
    Below(f64),
    /// kybern's own value must be at least this (in the row's unit).
    AtLeast(f64),
}

pub(crate) struct Row {
    pub figure: String,
    pub ours: f64,
    pub upstream: Option<f64>,
    pub unit: Unit,
    pub target: Option<Target>,
}

impl Row {
    pub(crate) fn new(
        figure: impl Into<String>,
        ours: f64,
        upstream: Option<f64>,
        unit: Unit,
    ) -> Row {
        Row {
            figure: figure.into(),
            ours,
            upstream,
            unit,
            target: None,
        }
    }

    pub(crate) fn target(mut self, t: Target) -> Row {
        self.target = Some(t);
        self
    }

    /// >1 means kybern is better.
    pub(crate) fn ratio(&self) -> Option<f64> {
        let up = self.upstream?;
        if self.unit.higher_is_better() {
            (up > 0.0).then(|| self.ours / up)
        } else if self.ours > 0.0 {
            Some(up / self.ours)
        } else {
            // Zero time (below the clock's resolution, or a watch event that
            // arrived before the PUT response): better than any upstream figure.
            Some(f64::INFINITY)
        }
    }
}

/// All figures of one backend.
pub(crate) struct Report {
    pub title: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
    /// What the two value columns hold: kybern's figure and the one it is compared with.
    pub columns: [String; 2],
}

impl Report {
    pub(crate) fn new(title: impl Into<String>) -> Report {
        Report::versus(title, "kybern", "upstream")
    }

    /// A table comparing two kybern runs: `ours` (the row's own figure) against `theirs`
    /// (its `upstream` figure).
    pub(crate) fn versus(title: impl Into<String>, ours: &str, theirs: &str) -> Report {
        Report {
            title: title.into(),
            rows: Vec::new(),
            notes: Vec::new(),
            columns: [ours.to_string(), theirs.to_string()],
        }
    }

    pub(crate) fn row(&mut self, r: Row) {
        self.rows.push(r);
    }

    pub(crate) fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub(crate) fn print(&self) {
        let ratio_header = format!("ratio (>1 = {} better)", self.columns[0]);
        let header = [
            "figure",
            self.columns[0].as_str(),
            self.columns[1].as_str(),
            ratio_header.as_str(),
            "target",
        ];
        let mut cells: Vec<[String; 5]> = Vec::new();
        for r in &self.rows {
            let ours = r.unit.fmt(r.ours);
            let up = r
                .upstream
                .map(|u| r.unit.fmt(u))
                .unwrap_or_else(|| "-".into());
            let ratio = match r.ratio() {
                Some(x) => {
                    let verdict = if x >= 1.05 {
                        "better"
                    } else if x > 0.95 {
                        "same"
                    } else {
                        "worse"
                    };
                    if x.is_finite() {
                        format!("{x:.2}x {verdict}")
                    } else {
                        format!("(ours is 0) {verdict}")
                    }
                }
                None => "-".into(),
            };
            let target = match r.target {
                None => String::new(),
                Some(Target::Ratio(t)) => {
                    let met = r.ratio().is_some_and(|x| x >= t);
                    format!("ratio >= {t}: {}", if met { "met" } else { "MISSED" })
                }
                Some(Target::Below(t)) => {
                    let met = r.ours < t;
                    format!(
                        "< {}: {}",
                        r.unit.fmt(t),
                        if met { "met" } else { "MISSED" }
                    )
                }
                Some(Target::AtLeast(t)) => {
                    let met = r.ours >= t;
                    format!(
                        ">= {}: {}",
                        r.unit.fmt(t),
                        if met { "met" } else { "MISSED" }
                    )
                }
            };
            cells.push([r.figure.clone(), ours, up, ratio, target]);
        }
        let mut width = header.map(str::len);
        for c in &cells {
            for (w, s) in width.iter_mut().zip(c.iter()) {
                *w = (*w).max(s.chars().count());
            }
        }
        let line = |c: &[String; 5]| {
            let parts: Vec<String> = c
                .iter()
                .zip(width.iter())
                .map(|(s, w)| format!("{s:<w$}", w = *w))
                .collect();
            format!("| {} |", parts.join(" | "))
        };
        println!();
        println!("## {}", self.title);
        println!();
        println!("{}", line(&header.map(String::from)));
        let sep: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", sep.join("-|-"));
        for c in &cells {
            println!("{}", line(c));
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("- {n}");
            }
        }
    }
}
