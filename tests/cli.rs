//! The real binary: --help/--version, bad input (one line, exit 2), and the Ctrl-C drain:
//! SIGINT during a slow download lets it finish byte-exact and exits 0; a second SIGINT
//! exits at once with a non-zero status.

mod support;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{first_line, TestDir};

const BIN: &str = env!("CARGO_BIN_EXE_poolserve");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run poolserve")
}

#[test]
fn help_and_version_print_and_exit_0() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--root",
        "--addr",
        "--port",
        "--workers",
        "--queue",
        "--header-timeout",
        "--shutdown-timeout",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("poolserve {}\n", env!("CARGO_PKG_VERSION"))
    );
}

fn assert_usage_error(args: &[&str], needle: &str) {
    let out = run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err:?}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let d = TestDir::new();
    let file = d.file("f.txt", "x");
    assert_usage_error(&["--bogus"], "--bogus");
    assert_usage_error(&["--workers", "zero"], "--workers");
    assert_usage_error(
        &["--root", "/definitely/not/here", "--port", "0"],
        "/definitely/not/here",
    );
    assert_usage_error(
        &["--root", file.to_str().unwrap(), "--port", "0"],
        "not a directory",
    );
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_usage_error(
        &["--root", d.path.to_str().unwrap(), "--port", &port],
        "cannot bind",
    );
}

/// Starts the binary on port 0 and reads the address from its one stdout line. Its stderr
/// is piped and read only at the end, so tests that make many requests must use
/// [`start_logging`] without the access log (a full pipe would block the server's logging).
fn start(root: &TestDir, extra: &[&str]) -> (Child, SocketAddr) {
    start_logging(root, extra, "info")
}

/// Reads the address from the binary's one stdout line (`... listening on http://ADDR/ ...`).
fn listening_address(child: &mut Child) -> SocketAddr {
    first_line(child).2
}

fn start_logging(root: &TestDir, extra: &[&str], rust_log: &str) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["--root", root.path.to_str().unwrap(), "--port", "0"])
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn poolserve");
    let addr = listening_address(&mut child);
    (child, addr)
}

/// Everything the (exited) child wrote to stderr.
fn stderr_of(child: &mut Child) -> String {
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    log
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

#[test]
fn sigint_during_a_slow_download_completes_it_and_exits_0() {
    let d = TestDir::new();
    let data: Vec<u8> = (0..(32u32 << 20)).map(|i| (i % 253) as u8).collect();
    d.file("big.bin", &data);
    let (mut child, addr) = start(&d, &["--shutdown-timeout", "20"]);

    let mut dl = TcpStream::connect(addr).unwrap();
    dl.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    dl.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = vec![0u8; 64 * 1024];
    let n = dl.read(&mut got).unwrap();
    got.truncate(n);

    signal(&child, "-INT");
    // Read slowly (about 32 MiB/s at most), so the drain really waits for us.
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match dl.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("download broke: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        got[split..] == data[..],
        "download not byte-exact ({} bytes)",
        got.len() - split
    );
    assert!(
        TcpStream::connect(addr).is_err(),
        "listener still open after SIGINT"
    );

    let status = wait_with_timeout(&mut child, Duration::from_secs(20)).expect("exit after drain");
    let log = stderr_of(&mut child);
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("drained 1 connection"), "{log}");
}

#[test]
fn a_second_sigint_exits_at_once() {
    let d = TestDir::new();
    d.file("big.bin", vec![1u8; 64 << 20]);
    let (mut child, addr) = start(&d, &["--shutdown-timeout", "30"]);
    // A client that never reads keeps the drain from finishing.
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    stuck
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stuck.read_exact(&mut head).unwrap();

    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "first SIGINT must drain, not exit"
    );
    let t = Instant::now();
    signal(&child, "-INT");
    let status =
        wait_with_timeout(&mut child, Duration::from_secs(5)).expect("exit on second SIGINT");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(!status.success(), "{status:?}");
}

/// accept() failing with EMFILE must not spin or exit: the server logs it (rate-limited),
/// backs off, and serves again once descriptors are free. The binary runs under
/// `prlimit --nofile` so the limit is real.
#[test]
fn running_out_of_descriptors_backs_off_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    let mut child = Command::new("prlimit")
        .args([
            "--nofile=40:40",
            BIN,
            "--root",
            d.path.to_str().unwrap(),
            "--port",
            "0",
            // A cap far beyond what 40 descriptors allow (the derived one would fit).
            "--max-connections",
            "900",
            // The hogs below stay silent: deferred, the kernel would not hand them over.
            "--defer-accept",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prlimit poolserve");
    let addr = listening_address(&mut child);

    // Far more connections than 40 descriptors allow; the kernel backlog holds the rest.
    let hogs: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(
        hogs.len() > 40,
        "could only open {} connections",
        hogs.len()
    );
    // Wait until the server has certainly hit the limit (each accepted hog costs it one).
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server exited on EMFILE"
    );
    drop(hogs);

    // Once descriptors are free again, a fresh client is served.
    let t = Instant::now();
    let served = loop {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        if got.starts_with("HTTP/1.1 200 ") || t.elapsed() > Duration::from_secs(10) {
            break got;
        }
    };
    assert!(
        served.starts_with("HTTP/1.1 200 "),
        "not served after recovery: {served:?}"
    );

    signal(&child, "-TERM");
    let status =
        wait_with_timeout(&mut child, Duration::from_secs(15)).expect("exit after SIGTERM");
    let log = stderr_of(&mut child);
    assert!(log.contains("accept failed"), "EMFILE not logged: {log}");
    assert!(
        log.lines().filter(|l| l.contains("accept failed")).count() < 20,
        "not rate-limited: {log}"
    );
    assert_eq!(status.code(), Some(0), "{log}");
}

/// `--drain-delay`: after SIGTERM the server keeps serving (new connections too) with
/// `/health` at 503, then drains and exits 0.
#[test]
fn drain_delay_keeps_serving_with_health_503_first() {
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    let (mut child, addr) = start(&d, &["--drain-delay", "1"]);
    let get = |path: &str| {
        let mut s = TcpStream::connect(addr).expect("still accepting during the delay");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        got
    };
    assert!(get("/health").starts_with("HTTP/1.1 200 "));
    let t = Instant::now();
    signal(&child, "-TERM");
    // The signal is handled on another thread: wait for health to flip, boundedly.
    let flipped = (0..100).any(|_| {
        let r = get("/health");
        r.starts_with("HTTP/1.1 503 ") || {
            std::thread::sleep(Duration::from_millis(10));
            false
        }
    });
    assert!(flipped, "health never turned 503");
    assert!(
        get("/a.txt").starts_with("HTTP/1.1 200 "),
        "files are still served during the delay"
    );
    let status =
        wait_with_timeout(&mut child, Duration::from_secs(10)).expect("exit after the delay");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "exited after {:?}",
        t.elapsed()
    );
    assert_eq!(status.code(), Some(0));
}

/// The drain under load: client loops fetch a 64 KiB file over fresh connections while
/// SIGINT arrives. Every response that started must be complete, and no connection that the
/// server took may be reset.
#[test]
fn sigint_under_client_loops_truncates_and_resets_nothing() {
    let d = TestDir::new();
    let body: Vec<u8> = (0..65_536u32).map(|i| (i % 239) as u8).collect();
    d.file("f.bin", &body);
    // No access log (a full stderr pipe would block the server), but the shutdown stats line.
    let (mut child, addr) = start_logging(
        &d,
        &["--shutdown-timeout", "10"],
        "warn,poolserve::server=info",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loops: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            let body = body.clone();
            std::thread::spawn(move || {
                let (mut ok, mut truncated, mut resets, mut refused) = (0, 0, 0, 0);
                let t = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && t.elapsed() < Duration::from_secs(10)
                {
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        refused += 1;
                        break; // the listener is closed: this loop is done
                    };
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let _ =
                        s.write_all(b"GET /f.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                    let mut got = Vec::new();
                    match s.read_to_end(&mut got) {
                        Ok(_) if got.ends_with(&body) && got.len() > body.len() => ok += 1,
                        Ok(_) if got.is_empty() => resets += 1,
                        Ok(_) => truncated += 1,
                        Err(_) if got.is_empty() => resets += 1,
                        Err(_) => truncated += 1,
                    }
                }
                (ok, truncated, resets, refused)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "-INT");
    let status =
        wait_with_timeout(&mut child, Duration::from_secs(15)).expect("exit after the drain");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut truncated, mut resets) = (0, 0, 0);
    for l in loops {
        let (o, t, r, _) = l.join().unwrap();
        ok += o;
        truncated += t;
        resets += r;
    }
    let log = stderr_of(&mut child);
    let accepted: u64 = log
        .split("stats: accepted=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stats line in {log}"));
    eprintln!(
        "drain under load: {ok} complete, {truncated} truncated, {resets} reset, {accepted} accepted"
    );
    assert!(ok > 0, "no request succeeded before the signal");
    assert_eq!(truncated, 0, "{ok} complete, {truncated} truncated");
    // Every connection the server accepted got its complete response. A reset with no byte
    // at all can only be a connection the kernel completed in the instant between the
    // acceptor's last sweep and the listener's close, never accepted by the server.
    assert_eq!(
        accepted, ok,
        "{resets} reset, {accepted} accepted, {ok} complete\n{log}"
    );
    assert_eq!(status.code(), Some(0));
}

/// SIGUSR1 logs a stats line with the counters, and the shutdown logs another.
#[test]
fn sigusr1_logs_the_counters() {
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    let (mut child, addr) = start(&d, &[]);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    signal(&child, "-USR1");
    std::thread::sleep(Duration::from_millis(200)); // USR1 before TERM
    signal(&child, "-TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(10)).expect("exit");
    let log = stderr_of(&mut child);
    let stats: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("stats: accepted="))
        .collect();
    assert_eq!(stats.len(), 2, "{log}");
    assert!(stats[0].contains("accepted=1 served=1 "), "{}", stats[0]);
    assert!(stats[1].contains("forced=0"), "{}", stats[1]);
    assert_eq!(status.code(), Some(0));
}

/// The access log: one line per request on stdout (not stderr), NCSA Combined by default
/// with client fields escaped, JSON on request, nothing with `off`; health probes are not
/// logged.
#[test]
fn access_log_lines_go_to_stdout_in_the_chosen_format() {
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    for (format, check) in [("combined", "combined"), ("json", "json"), ("off", "off")] {
        let mut child = Command::new(BIN)
            .args(["--root", d.path.to_str().unwrap(), "--port", "0"])
            .args(["--access-log", format])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn poolserve");
        let (mut out, _, addr) = first_line(&mut child);
        for raw in [
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: \u{e9}vil \"agent\r\nReferer: http://r/\r\nConnection: close\r\n\r\n",
            "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        ] {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(raw.as_bytes()).unwrap();
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).unwrap();
        }
        signal(&child, "-INT");
        let status = wait_with_timeout(&mut child, Duration::from_secs(10)).expect("exits");
        assert!(status.success());
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        let lines: Vec<&str> = rest.lines().collect();
        match check {
            "combined" => {
                assert_eq!(lines.len(), 2, "{rest}");
                assert!(lines[0].starts_with("127.0.0.1 - - ["), "{rest}");
                assert!(
                    lines[0].contains(
                        "] \"GET /a.txt HTTP/1.1\" 200 4 \"http://r/\" \"\\xC3\\xA9vil \\\"agent\" "
                    ),
                    "{rest}"
                );
                assert!(
                    lines[1].contains("\"GET /missing HTTP/1.1\" 404 "),
                    "{rest}"
                );
            }
            "json" => {
                assert_eq!(lines.len(), 2, "{rest}");
                assert!(lines[0].starts_with("{\"time\":\""), "{rest}");
                assert!(
                    lines[0].contains("\"status\":200,\"bytes\":4,\"referer\":\"http://r/\",\"user_agent\":\"\u{e9}vil \\\"agent\""),
                    "{rest}"
                );
                assert!(lines[1].contains("\"status\":404"), "{rest}");
            }
            _ => assert!(lines.is_empty(), "{rest}"),
        }
    }
}

/// Issue 15: a log reader that stops reading never stops serving. stdout is a pipe nobody
/// reads: 10,000 requests and `/health` are all answered (the lines beyond the queue are
/// dropped, counted and warned about once); when the reader resumes, lines flow again.
#[test]
fn a_stalled_log_reader_never_stops_serving() {
    const CLIENTS: usize = 4;
    const REQUESTS: usize = 10_000;
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    let mut child = Command::new(BIN)
        .args(["--root", d.path.to_str().unwrap(), "--port", "0"])
        .args(["--access-log", "combined"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn poolserve");
    let (out, _, addr) = first_line(&mut child);
    // Nobody reads stdout now: its pipe (64 KiB, a few hundred lines) fills at once.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let connect = || {
                    let s = TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    s
                };
                let mut s = connect();
                for _ in 0..REQUESTS / CLIENTS {
                    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    let r = support::read_response(&mut s, false).expect("answered");
                    assert_eq!(r.status, 200);
                    if r.header("Connection") == Some("close") {
                        s = connect(); // the per-connection request cap
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("every request answered");
    }
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(support::read_response(&mut s, false).unwrap().status, 200);

    // The reader resumes: what was queued comes out, then new lines again.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines() {
            if lines_tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    // Until the backlog is out, a new line may still find the queue full and be dropped:
    // ask again (a numbered request each time) until one comes through.
    let t = Instant::now();
    let mut seen = 0usize;
    'resumed: for attempt in 0.. {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no new line after the reader resumed"
        );
        let marker = format!("GET /a.txt?after={attempt} ");
        let raw = format!("GET /a.txt?after={attempt} HTTP/1.1\r\nHost: t\r\n\r\n");
        s.write_all(raw.as_bytes()).unwrap();
        assert_eq!(support::read_response(&mut s, false).unwrap().status, 200);
        while let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
            seen += 1;
            if line.contains(&marker) {
                break 'resumed;
            }
        }
    }
    assert!(
        seen < REQUESTS,
        "lines were dropped, not all queued: {seen}"
    );
    signal(&child, "-TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    let log = stderr_of(&mut child);
    assert_eq!(
        log.matches("access log: stdout is not keeping up").count(),
        1,
        "one warning per 10 s: {log}"
    );
    let stats = log
        .lines()
        .find(|l| l.contains("stats: accepted="))
        .unwrap_or_else(|| panic!("{log}"));
    let dropped: u64 = stats
        .split("log_dropped=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(dropped > 0 && dropped < REQUESTS as u64, "{stats}");
}

/// Issue 15: under a low descriptor limit the derived cap keeps the connections within the
/// budget. Slow readers of a large file (each holds its socket and the file while its
/// response waits) fill the cap and all get every byte; a crowd of newcomers gets 200 or
/// 503, never 500, even when descriptors run out for a moment.
#[test]
fn a_low_descriptor_limit_is_budgeted_and_slow_readers_finish() {
    const BIG: usize = 4 * 1024 * 1024;
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    d.file(
        "big.bin",
        (0..BIG).map(|i| (i % 253) as u8).collect::<Vec<u8>>(),
    );
    d.file("mid.bin", vec![b'm'; 64 * 1024]);
    let mut child = Command::new("prlimit")
        .args(["--nofile=64:64", BIN, "--root", d.path.to_str().unwrap()])
        .args(["--port", "0", "--workers", "4", "--access-log", "off"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prlimit poolserve");
    let (_, first, addr) = first_line(&mut child);
    let cap: usize = first
        .split(", ")
        .find_map(|part| part.trim_end().strip_suffix(" connections)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no cap in {first:?}"));
    assert!(
        (10..32).contains(&cap),
        "64 descriptors, 4 workers: cap {cap}"
    );

    let readers = requests_sent(
        addr,
        cap,
        b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    // Newcomers, all at once and held open, for a file too large for the cache (each
    // answer opens it): past the budget, accept() may back off on EMFILE for a moment, and
    // a file that cannot be opened is 503, never 500.
    let newcomers = requests_sent(
        addr,
        3 * cap,
        b"GET /mid.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let mut statuses = std::collections::BTreeMap::new();
    for mut s in newcomers {
        let r = support::read_response(&mut s, false).expect("an answer");
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    for mut s in readers {
        let head = support::read_response(&mut s, true).expect("the head");
        assert_eq!(head.status, 200);
        let mut body = Vec::with_capacity(BIG);
        s.read_to_end(&mut body).unwrap();
        assert_eq!(body.len(), BIG, "every byte");
        assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
    }
    signal(&child, "-TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(15)).expect("exit");
    let log = stderr_of(&mut child);
    assert!(log.contains("descriptor budget: "), "{log}");
    assert!(
        !log.contains("accept failed"),
        "ran out of descriptors: {log}"
    );
    assert!(!log.contains("cannot read"), "{log}");
    assert_eq!(status.code(), Some(0), "{log}");
    eprintln!("{statuses:?}");
}

/// Issue 15: a cap set above what the descriptor limit allows is warned about at start-up;
/// when descriptors then run out, accept() backs off and a file that cannot be opened is
/// answered 503 with `Connection: close` (giving its descriptor back), never 500.
#[test]
fn out_of_descriptors_a_file_that_cannot_be_opened_is_503_not_500() {
    const CLIENTS: usize = 40;
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let d = TestDir::new();
    d.file("mid.bin", vec![b'm'; 64 * 1024]);
    let mut child = Command::new("prlimit")
        .args(["--nofile=40:40", BIN, "--root", d.path.to_str().unwrap()])
        .args(["--port", "0", "--workers", "4", "--max-connections", "900"])
        .args(["--access-log", "off"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prlimit poolserve");
    let addr = listening_address(&mut child);
    let clients = requests_sent(addr, CLIENTS, b"GET /mid.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut statuses = std::collections::BTreeMap::new();
    for mut s in clients {
        let r = support::read_response(&mut s, false).expect("an answer");
        if r.status == 503 {
            assert_eq!(r.header("Connection"), Some("close"));
            assert_eq!(r.header("Retry-After"), Some("1"));
        }
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    signal(&child, "-TERM");
    let status = wait_with_timeout(&mut child, Duration::from_secs(15)).expect("exit");
    let log = stderr_of(&mut child);
    assert!(log.contains("--max-connections 900: "), "{log}");
    assert_eq!(status.code(), Some(0), "{log}");
}

/// `n` connections to `addr`, each with `request` sent and a 10 s read timeout.
fn requests_sent(addr: SocketAddr, n: usize, request: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(request).unwrap();
            s
        })
        .collect()
}

/// `poolserve -p 0 DIR` shares DIR: the positional root and the short port flag, through the
/// binary (the python -m http.server habit).
#[test]
fn a_folder_is_shared_by_naming_it() {
    let d = TestDir::new();
    d.file("hello.txt", "hi\n");
    let mut child = Command::new(BIN)
        .args(["-p", "0", "--list-dirs", d.path.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn poolserve");
    let (_out, line, addr) = first_line(&mut child);
    assert!(
        line.contains(&format!(
            "root {}",
            d.path.canonicalize().unwrap().display()
        )),
        "{line}"
    );
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = support::read_response(&mut s, false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hi\n"));
    // The folder itself is listed (the README's share-a-folder command).
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = support::read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("<a href=\"hello.txt\">hello.txt</a>"),
        "{}",
        r.text()
    );
    signal(&child, "-TERM");
    assert!(wait_with_timeout(&mut child, Duration::from_secs(10)).is_some_and(|s| s.success()));
}
