//! `--metrics-path` through the real server: the Prometheus text format as a real parser
//! reads it (the Python `prometheus_client` parser, Debian's python3-prometheus-client;
//! `promtool check metrics` too where it is installed), figures that move with traffic
//! (requests by method and class, body bytes, timeouts by kind, the duration histogram),
//! off by default, and never in the access log (the binary, with its access log on).

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{config, first_line, Response, TestDir, TestServer};

/// The samples of a scrape as `name{labels} value` lines, parsed by prometheus_client
/// (each line `NAME<TAB>LABELS-AS-JSON<TAB>VALUE`), or `None` when the parser is missing.
fn parse(text: &str) -> Option<Vec<(String, String, f64)>> {
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        for family in parse(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       print(s.name, json.dumps(s.labels, sort_keys=True), repr(s.value), sep='\\t')\n";
    for python in ["/usr/bin/python3", "python3"] {
        let Ok(mut child) = Command::new(python)
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            continue;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named") {
            continue;
        }
        assert!(
            out.status.success(),
            "the parser refused the text: {err}\n{text}"
        );
        let samples = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let mut f = l.split('\t');
                let (name, labels, value) =
                    (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
                (name.to_string(), labels.to_string(), value.parse().unwrap())
            })
            .collect();
        return Some(samples);
    }
    None
}

/// One sample's value: `name` with exactly the labels in `labels` (JSON, sorted keys).
fn sample(samples: &[(String, String, f64)], name: &str, labels: &str) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| n == name && l == labels)
        .map(|s| s.2)
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels}");
    found[0]
}

fn scrape(srv: &TestServer) -> Response {
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200);
    r
}

#[test]
fn the_text_format_parses_and_the_figures_move_with_traffic() {
    let d = TestDir::new();
    d.file("a.txt", "0123456789");
    let mut c = config(&d.path);
    c.metrics_path = Some("/metrics".into());
    c.limits.head_timeout = Duration::from_millis(300);
    let srv = TestServer::with_config(c);
    let first = scrape(&srv);
    assert_eq!(
        first.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(first.header("Cache-Control"), Some("no-store"));
    let Some(before) = parse(&first.text()) else {
        println!(
            "skipped: the prometheus_client parser is not installed (python3-prometheus-client)"
        );
        return;
    };
    if let Ok(out) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut p| {
            p.stdin.take().unwrap().write_all(&first.body)?;
            p.wait_with_output()
        })
    {
        let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "promtool: {said}");
    }

    // Traffic: three 200s of 10 bytes, a 404, a HEAD, an OPTIONS, a 405, a head that times
    // out (408), a silent connection that times out.
    for _ in 0..3 {
        assert_eq!(srv.get("/a.txt").status, 200);
    }
    assert_eq!(srv.get("/missing").status, 404);
    let head = srv.request("HEAD /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    let options = srv.request("OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(options.status, 204);
    let post = srv.request(
        "POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    let mut partial = srv.connect();
    partial.write_all(b"GET /a.txt HTTP/1.1\r\nHo").unwrap();
    let mut silent = srv.connect();
    let mut answer = Vec::new();
    partial.read_to_end(&mut answer).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let mut nothing = Vec::new();
    let _ = silent.read_to_end(&mut nothing);

    let second = scrape(&srv);
    let after = parse(&second.text()).unwrap();
    let delta =
        |name: &str, labels: &str| sample(&after, name, labels) - sample(&before, name, labels);
    let req = |method: &str, code: &str| {
        delta(
            "poolserve_requests_total",
            &format!("{{\"code\": \"{code}\", \"method\": \"{method}\"}}"),
        )
    };
    // The first scrape itself is a GET 2xx finished before the second began.
    assert_eq!(req("GET", "2xx"), 4.0);
    assert_eq!(req("GET", "4xx"), 1.0);
    assert_eq!(req("HEAD", "2xx"), 1.0);
    assert_eq!(req("OPTIONS", "2xx"), 1.0);
    assert_eq!(req("other", "4xx"), 2.0, "the POST's 405 and the 408");
    let not_found_len = srv.get("/missing").body.len() as f64;
    let bytes = delta("poolserve_response_body_bytes_total", "{}");
    let the_408_len = answer.len() as f64
        - answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() as f64
        - 4.0;
    let post_len = post.body.len() as f64;
    assert_eq!(
        bytes,
        first.body.len() as f64 + 30.0 + not_found_len + post_len + the_408_len
    );
    assert_eq!(
        delta("poolserve_timeouts_total", "{\"kind\": \"head\"}"),
        1.0
    );
    assert_eq!(
        delta("poolserve_timeouts_total", "{\"kind\": \"silent\"}"),
        1.0
    );
    assert_eq!(delta("poolserve_connections_accepted_total", "{}"), 10.0);
    // Every response but the second scrape's own (not finished yet): no response for the
    // silent connection.
    assert_eq!(delta("poolserve_request_duration_seconds_count", "{}"), 9.0);
    assert_eq!(
        delta(
            "poolserve_request_duration_seconds_bucket",
            "{\"le\": \"+Inf\"}"
        ),
        9.0
    );
    // Gauges: this scrape's own connection is open and its worker busy.
    assert!(sample(&after, "poolserve_connections_open", "{}") >= 1.0);
    assert!(sample(&after, "poolserve_workers_busy", "{}") >= 1.0);
    assert_eq!(sample(&after, "poolserve_workers", "{}"), 4.0);
    // Buckets are cumulative.
    let buckets: Vec<f64> = after
        .iter()
        .filter(|(n, _, _)| n == "poolserve_request_duration_seconds_bucket")
        .map(|s| s.2)
        .collect();
    assert_eq!(buckets.len(), 8);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
}

#[test]
fn metrics_are_off_by_default_and_only_get_and_head_are_scrapes() {
    let d = TestDir::new();
    let off = TestServer::with_config(config(&d.path));
    assert_eq!(off.get("/metrics").status, 404);
    drop(off);
    let mut c = config(&d.path);
    c.metrics_path = Some("/-/metrics".into());
    let srv = TestServer::with_config(c);
    assert_eq!(srv.get("/-/metrics").status, 200);
    let head = srv.request("HEAD /-/metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.header("Content-Length").is_some_and(|l| l != "0"));
    let post = srv.request(
        "POST /-/metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(srv.get("/metrics").status, 404);
}

#[test]
fn scrapes_stay_out_of_the_access_log() {
    let d = TestDir::new();
    d.file("a.txt", "a");
    let mut child = Command::new(env!("CARGO_BIN_EXE_poolserve"))
        .args(["-p", "0", "--metrics-path", "/metrics"])
        .arg(&d.path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut out, _, addr) = first_line(&mut child);
    for path in ["/metrics", "/a.txt", "/metrics"] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut sink = Vec::new();
        s.read_to_end(&mut sink).unwrap();
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let _ = child.wait();
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 1, "{rest}");
    assert!(lines[0].contains("\"GET /a.txt HTTP/1.1\" 200"), "{rest}");
}

/// A partial head whose deadline passes while it waits for a worker (more bytes arrived, so
/// the keeper handed it on instead of expiring it) is answered 408 by the worker: counted as
/// a head timeout like the keeper's 408.
#[test]
fn a_408_from_a_worker_counts_as_a_head_timeout() {
    let d = TestDir::new();
    d.file("held.txt", "held\n");
    d.file("a.txt", "aaa\n");
    let gate = poolserve::HoldGate::new("/held.txt");
    let mut c = config(&d.path);
    c.workers = 1;
    c.hold = Some(gate.clone());
    c.metrics_path = Some("/metrics".into());
    c.limits.head_timeout = Duration::from_millis(300);
    let srv = TestServer::with_config(c);
    let mut slow = srv.connect();
    slow.write_all(b"GET /a.txt HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut held = srv.connect();
    held.write_all(b"GET /held.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    support::wait_until_held(&gate, 1);
    // Before the deadline: the keeper hands the connection on, to the busy worker's queue.
    std::thread::sleep(Duration::from_millis(100));
    slow.write_all(b"s").unwrap();
    // The deadline passes in the queue.
    std::thread::sleep(Duration::from_millis(400));
    gate.release();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let _ = held.read_to_end(&mut Vec::new());
    let text = scrape(&srv).text();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        line("poolserve_timeouts_total{kind=\"head\"}"),
        "poolserve_timeouts_total{kind=\"head\"} 1"
    );
    assert_eq!(
        line("poolserve_requests_total{method=\"other\",code=\"4xx\"}"),
        "poolserve_requests_total{method=\"other\",code=\"4xx\"} 1"
    );
}

/// An upload whose body stalls is a PUT answered 408: counted under PUT (its method was
/// parsed), as a body timeout, and timed from its head like any response.
#[test]
fn a_stalled_upload_is_a_put_answered_408() {
    let d = TestDir::new();
    let mut c = config(&d.path);
    c.metrics_path = Some("/metrics".into());
    c.allow_write = true;
    c.limits.head_timeout = Duration::from_millis(300);
    let srv = TestServer::with_config(c);
    let mut s = srv.connect();
    s.write_all(b"PUT /u.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let text = scrape(&srv).text();
    let value = |key: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(key)).expect(key);
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("poolserve_timeouts_total{kind=\"body\"}"), 1.0);
    assert_eq!(
        value("poolserve_requests_total{method=\"PUT\",code=\"4xx\"}"),
        1.0
    );
    assert_eq!(
        value("poolserve_requests_total{method=\"other\",code=\"4xx\"}"),
        0.0
    );
    // Head to 408: at least the head timeout (the first scrape is the other response).
    assert!(
        value("poolserve_request_duration_seconds_sum") >= 0.3,
        "{text}"
    );
}
