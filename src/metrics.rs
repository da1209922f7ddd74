//! The server's figures in the Prometheus text exposition format (`--metrics-path`, off by
//! default): the counters a worker or the keeper bumps as things happen (requests by method
//! and status class, body bytes, timeouts by kind, a request-duration histogram), and
//! [`render`], which writes them with the figures of the SIGUSR1 line ([`Stats`]: the same
//! atomics, read once each). Everything here is a relaxed atomic add or load: recording
//! costs a few nanoseconds, a scrape a few microseconds, and neither takes a lock, so a
//! scrape never holds up a worker and the keeper may record its timeouts.
//!
//! Format: <https://prometheus.io/docs/instrumenting/exposition_formats/> (text 0.0.4):
//! `# HELP` and `# TYPE` before each family, counters named `_total`, a histogram as
//! cumulative `_bucket{le=...}` lines ending in `+Inf`, then `_sum` and `_count`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::request::Method;
use crate::state::Stats;

/// The content type of the text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Methods counted apart, in the label's spelling; the last, `other`, takes every other
/// method and the requests that could not be parsed (no method to name).
pub const METHODS: [&str; 6] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "other"];

/// The status classes, as the `code` label says them.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Why a connection was ended by a deadline, as the `kind` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Accepted, and not one byte before the head timeout.
    Silent = 0,
    /// Idle between keep-alive requests past the keep-alive timeout.
    Idle,
    /// A partial head past the head timeout (answered 408).
    Head,
    /// An upload's body stalled past the head timeout (answered 408).
    Body,
    /// A response the client stopped taking, past the write timeout.
    Write,
}

const TIMEOUT_KINDS: [&str; 5] = ["silent", "idle", "head", "body", "write"];

/// Upper bounds of the request-duration buckets, in microseconds: from a cached small file
/// (tens of µs) to a large download to a slow client. A handful, as the issue asks: each is
/// one more series per scrape.
const BUCKETS_US: [u64; 7] = [
    1_000, 5_000, 25_000, 100_000, 500_000, 2_500_000, 10_000_000,
];

/// The counters only this module keeps (the rest are [`Stats`]).
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; 5]; 6],
    body_bytes: AtomicU64,
    timeouts: [AtomicU64; 5],
    /// Requests per bucket (not cumulative: [`render`] adds them up), the last for those
    /// above every bound: their total is the histogram's count.
    durations: [AtomicU64; BUCKETS_US.len() + 1],
    duration_sum_us: AtomicU64,
}

/// The [`METHODS`] index of a request's method (`None`: a request we could not parse).
pub fn method_index(method: Option<&Method>) -> usize {
    match method {
        Some(Method::Get) => 0,
        Some(Method::Head) => 1,
        Some(Method::Options) => 2,
        Some(Method::Put) => 3,
        Some(Method::Delete) => 4,
        _ => 5,
    }
}

impl Metrics {
    /// A response finished (or given up on): its method ([`method_index`]), status, the body
    /// bytes that went out, and how long it took from its head to its end.
    pub fn response(&self, method: usize, status: u16, body_bytes: u64, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[method.min(METHODS.len() - 1)][class].fetch_add(1, Ordering::Relaxed);
        self.body_bytes.fetch_add(body_bytes, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS_US
            .iter()
            .position(|&le| us <= le)
            .unwrap_or(BUCKETS_US.len());
        self.durations[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// A connection ended by a deadline.
    pub fn timeout(&self, kind: Timeout) {
        self.timeouts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections ended by a deadline, every kind (the SIGUSR1 line's `timeouts`).
    pub fn timeouts(&self) -> u64 {
        self.timeouts
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .sum()
    }
}

/// The text a scrape gets: `metrics`, and `stats` read at the same moment, with `workers`
/// (the pool's size).
pub fn render(metrics: &Metrics, stats: &Stats, workers: usize) -> String {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "requests_total",
        "counter",
        "Responses finished, by method and status class.",
    );
    for (m, method) in METHODS.iter().enumerate() {
        for (c, class) in CLASSES.iter().enumerate() {
            let n = get(&metrics.requests[m][c]);
            let _ = writeln!(
                out,
                "poolserve_requests_total{{method=\"{method}\",code=\"{class}\"}} {n}"
            );
        }
    }
    let counters: [(&str, &str, u64); 6] = [
        (
            "response_body_bytes_total",
            "Body bytes sent in responses.",
            get(&metrics.body_bytes),
        ),
        (
            "connections_accepted_total",
            "Connections accepted.",
            stats.accepted,
        ),
        (
            "connections_shed_total",
            "Connections answered 503 at once because the server was full.",
            stats.shed,
        ),
        (
            "connections_reclaimed_total",
            "Idle or silent connections closed at the connection cap to seat new ones.",
            stats.reclaimed,
        ),
        (
            "connections_forced_total",
            "Connections still open when a drain hit the shutdown timeout.",
            stats.forced,
        ),
        (
            "log_lines_dropped_total",
            "Access-log lines dropped because stdout did not keep up.",
            stats.log_dropped,
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "poolserve_{name} {value}");
    }
    family(
        &mut out,
        "timeouts_total",
        "counter",
        "Connections ended by a deadline, by kind.",
    );
    for (kind, t) in TIMEOUT_KINDS.iter().zip(&metrics.timeouts) {
        let _ = writeln!(
            out,
            "poolserve_timeouts_total{{kind=\"{kind}\"}} {}",
            get(t)
        );
    }
    let gauges: [(&str, &str, u64); 7] = [
        (
            "connections_open",
            "Connections open: queued, served, parked or closing.",
            stats.open as u64,
        ),
        (
            "connections_parked",
            "Connections parked with the keeper (idle, silent, partial heads).",
            stats.idle as u64,
        ),
        (
            "connections_queued",
            "Connections waiting in the accept queue.",
            stats.queued as u64,
        ),
        (
            "workers_busy",
            "Workers serving a connection.",
            stats.active as u64,
        ),
        ("workers", "Worker threads.", workers as u64),
        (
            "zero_copy_bytes",
            "Bytes held in sealed copies of large files (outside the RSS).",
            stats.zero_copy.0,
        ),
        (
            "zero_copy_files",
            "Sealed copies of large files alive.",
            stats.zero_copy.1 as u64,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "poolserve_{name} {value}");
    }
    family(
        &mut out,
        "request_duration_seconds",
        "histogram",
        "Time from a request's head to the end of its response.",
    );
    // One read per bucket, the count their total: the buckets stay cumulative and `+Inf`
    // equals `_count` whatever is recorded meanwhile.
    let mut cumulative = 0;
    let bounds = BUCKETS_US.iter().map(|us| format!("{}", *us as f64 / 1e6));
    for (le, n) in bounds.chain(["+Inf".to_string()]).zip(&metrics.durations) {
        cumulative += get(n);
        let _ = writeln!(
            out,
            "poolserve_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let sum = get(&metrics.duration_sum_us) as f64 / 1e6;
    let _ = writeln!(out, "poolserve_request_duration_seconds_sum {sum}");
    let _ = writeln!(out, "poolserve_request_duration_seconds_count {cumulative}");
    out
}

/// The `# HELP` and `# TYPE` lines of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP poolserve_{name} {help}\n# TYPE poolserve_{name} {kind}"
    );
}

#[cfg(test)]
mod tests;
