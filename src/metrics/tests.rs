//! The metrics' counting and their text, without a server (the format is checked by a
//! real parser in `tests/metrics.rs`).

use super::*;

fn stats() -> Stats {
    Stats {
        accepted: 7,
        served: 5,
        active: 1,
        queued: 2,
        idle: 3,
        watched: 4,
        shed: 6,
        timeouts: 0,
        open: 9,
        forced: 8,
        log_dropped: 10,
        reclaimed: 11,
        zero_copy: (12, 13),
    }
}

/// The value of the one line that starts with `series` and a space.
fn value(text: &str, series: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .collect();
    assert_eq!(lines.len(), 1, "{series} in\n{text}");
    lines[0].to_string()
}

#[test]
fn responses_count_by_method_class_bytes_and_duration_bucket() {
    let m = Metrics::default();
    let ms = Duration::from_millis;
    for (method, status, bytes, took) in [
        (Some(Method::Get), 200, 100, Duration::from_micros(1_000)),
        (Some(Method::Get), 206, 50, Duration::from_micros(1_001)),
        (Some(Method::Get), 304, 0, ms(30)),
        (Some(Method::Head), 200, 0, Duration::ZERO),
        (Some(Method::Options), 204, 0, ms(3)),
        (Some(Method::Put), 201, 0, ms(600)),
        (Some(Method::Delete), 404, 9, ms(100)),
        (Some(Method::Post), 405, 7, ms(2)),
        (Some(Method::Other("BREW".into())), 405, 7, ms(2)),
        (None, 400, 11, Duration::from_secs(3600)),
        (Some(Method::Get), 503, 19, ms(10_000)),
        (Some(Method::Get), 101, 0, ms(1)),
    ] {
        m.response(method_index(method.as_ref()), status, bytes, took);
    }
    let text = render(&m, &stats(), 4);
    for (series, want) in [
        ("poolserve_requests_total{method=\"GET\",code=\"2xx\"}", "2"),
        ("poolserve_requests_total{method=\"GET\",code=\"3xx\"}", "1"),
        ("poolserve_requests_total{method=\"GET\",code=\"5xx\"}", "1"),
        ("poolserve_requests_total{method=\"GET\",code=\"1xx\"}", "1"),
        (
            "poolserve_requests_total{method=\"HEAD\",code=\"2xx\"}",
            "1",
        ),
        (
            "poolserve_requests_total{method=\"OPTIONS\",code=\"2xx\"}",
            "1",
        ),
        ("poolserve_requests_total{method=\"PUT\",code=\"2xx\"}", "1"),
        (
            "poolserve_requests_total{method=\"DELETE\",code=\"4xx\"}",
            "1",
        ),
        (
            "poolserve_requests_total{method=\"other\",code=\"4xx\"}",
            "3",
        ),
        ("poolserve_requests_total{method=\"GET\",code=\"4xx\"}", "0"),
        ("poolserve_response_body_bytes_total", "203"),
        // Bucket bounds are inclusive (`le`), and cumulative.
        (
            "poolserve_request_duration_seconds_bucket{le=\"0.001\"}",
            "3",
        ),
        (
            "poolserve_request_duration_seconds_bucket{le=\"0.005\"}",
            "7",
        ),
        (
            "poolserve_request_duration_seconds_bucket{le=\"0.025\"}",
            "7",
        ),
        ("poolserve_request_duration_seconds_bucket{le=\"0.1\"}", "9"),
        ("poolserve_request_duration_seconds_bucket{le=\"0.5\"}", "9"),
        (
            "poolserve_request_duration_seconds_bucket{le=\"2.5\"}",
            "10",
        ),
        ("poolserve_request_duration_seconds_bucket{le=\"10\"}", "11"),
        (
            "poolserve_request_duration_seconds_bucket{le=\"+Inf\"}",
            "12",
        ),
        ("poolserve_request_duration_seconds_count", "12"),
        ("poolserve_request_duration_seconds_sum", "3610.740001"),
    ] {
        assert_eq!(value(&text, series), want, "{series}");
    }
    assert_eq!(text.matches("poolserve_requests_total{").count(), 30);
}

#[test]
fn the_figures_of_the_stats_line_and_the_timeouts_by_kind_are_there() {
    let m = Metrics::default();
    for kind in [
        Timeout::Head,
        Timeout::Head,
        Timeout::Silent,
        Timeout::Write,
        Timeout::Body,
    ] {
        m.timeout(kind);
    }
    m.timeout(Timeout::Idle);
    assert_eq!(m.timeouts(), 6);
    let text = render(&m, &stats(), 4);
    for (series, want) in [
        ("poolserve_timeouts_total{kind=\"head\"}", "2"),
        ("poolserve_timeouts_total{kind=\"silent\"}", "1"),
        ("poolserve_timeouts_total{kind=\"idle\"}", "1"),
        ("poolserve_timeouts_total{kind=\"body\"}", "1"),
        ("poolserve_timeouts_total{kind=\"write\"}", "1"),
        ("poolserve_connections_accepted_total", "7"),
        ("poolserve_connections_shed_total", "6"),
        ("poolserve_connections_reclaimed_total", "11"),
        ("poolserve_connections_forced_total", "8"),
        ("poolserve_log_lines_dropped_total", "10"),
        ("poolserve_connections_open", "9"),
        ("poolserve_connections_parked", "3"),
        ("poolserve_connections_queued", "2"),
        ("poolserve_workers_busy", "1"),
        ("poolserve_workers", "4"),
        ("poolserve_zero_copy_bytes", "12"),
        ("poolserve_zero_copy_files", "13"),
    ] {
        assert_eq!(value(&text, series), want, "{series}");
    }
    // Every family has its HELP and TYPE, once, right before its samples.
    let mut families = 0;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("# TYPE poolserve_") {
            families += 1;
            let name = rest.split(' ').next().unwrap();
            assert!(lines[i - 1].starts_with(&format!("# HELP poolserve_{name} ")));
            assert!(
                lines[i + 1].starts_with(&format!("poolserve_{name}")),
                "{name}"
            );
        }
    }
    assert_eq!(families, 1 + 6 + 1 + 7 + 1);
    assert!(text.ends_with('\n'));
}
