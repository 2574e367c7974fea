//! Figures and the table they are printed in: quantiles of a sample of
//! durations, and one Markdown row per measure.

use std::time::Duration;

pub struct Stats {
    pub median: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        median: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// The median of rates (calls per second) from repeated rounds.
pub fn median_rate(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

pub fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

/// A table row: measure, median, p90, p99 (or max), baseline, ratio.
pub fn row(cells: [&str; 6]) {
    println!("| {} |", cells.join(" | "));
}

/// A row with a measure and nothing else.
pub fn note(measure: &str) {
    row([measure, "", "", "", "", ""]);
}
