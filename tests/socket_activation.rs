//! Serving on an inherited listening socket (issue 19), with the real binary: five restarts
//! on one socket held by a harness that plays systemd's part (`activation_harness.py`)
//! lose no request under `curl` loops; a descriptor of the wrong kind is refused with one
//! line and exit 2; `LISTEN_FDS` meant for another process is ignored; and, where it is
//! installed, systemd's own `systemd-socket-activate` starts the server.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{first_line, TestDir};

const BIN: &str = env!("CARGO_BIN_EXE_poolserve");
const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/activation_harness.py");

/// Whether `cmd --version` runs (the tests that need it say "skipped" otherwise).
fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A file served in the restart test: larger than the small-file cache's inline bodies, so
/// a cut body would show as a short size.
fn body() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect()
}

/// One request by `curl` (a new connection each time): `None` when it got the whole file
/// with 200, else what went wrong.
fn curl_once(url: &str, want_len: usize) -> Option<String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            url,
        ])
        .output();
    match out {
        Ok(o)
            if o.status.success()
                && String::from_utf8_lossy(&o.stdout) == format!("200 {want_len}") =>
        {
            None
        }
        Ok(o) => Some(format!(
            "{} {:?} {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("curl: {e}")),
    }
}

fn stop_on_drop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn five_restarts_on_one_inherited_socket_fail_and_truncate_nothing() {
    if !have("python3") || !have("curl") {
        println!("skipped: needs python3 and curl");
        return;
    }
    const RESTARTS: usize = 5;
    const CLIENTS: usize = 8;
    let d = TestDir::new();
    let data = body();
    d.file("big.bin", &data);
    let mut harness = Command::new("python3")
        .args([
            HARNESS,
            BIN,
            d.path.to_str().unwrap(),
            &RESTARTS.to_string(),
            "0.5",
        ])
        .args(["--workers", "4", "--shutdown-timeout", "15"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the harness");
    let mut lines = BufReader::new(harness.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").expect("readable");
    let port: u16 = first.strip_prefix("port ").expect(&first).parse().unwrap();
    let url = format!("http://127.0.0.1:{port}/big.bin");

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, failures, url, len) =
                (stop.clone(), failures.clone(), url.clone(), data.len());
            std::thread::spawn(move || {
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(why) = curl_once(&url, len) {
                        failures.lock().unwrap().push(why);
                    }
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut exits = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        exits.push(line.clone());
        if line.starts_with(&format!("restart {RESTARTS}:")) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let total: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    // Now the last process may stop.
    writeln!(harness.stdin.take().unwrap(), "stop").unwrap();
    exits.extend(lines.map_while(Result::ok));
    let status = harness.wait().unwrap();
    let failures = failures.lock().unwrap();
    println!(
        "{total} requests over {RESTARTS} restarts, {} failed: {exits:?}",
        failures.len()
    );
    assert!(status.success(), "harness: {status}");
    assert_eq!(exits.len(), RESTARTS + 2, "{exits:?}");
    for (k, line) in exits[..RESTARTS].iter().enumerate() {
        assert_eq!(
            line,
            &format!("restart {}: exit 0", k + 1),
            "a drain that did not end well"
        );
    }
    assert_eq!(exits[RESTARTS], "last: exit 0");
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(total >= 50, "too few requests to mean anything: {total}");
}

#[test]
fn a_descriptor_that_is_not_a_listening_socket_is_refused_with_exit_2() {
    for (args, stdin, want) in [
        (
            &["--fd", "0"][..],
            Stdio::null(),
            "poolserve: cannot serve on inherited descriptor 0: descriptor 0 is not a socket",
        ),
        (
            &["--fd", "77"],
            Stdio::null(),
            "poolserve: cannot serve on inherited descriptor 77: descriptor 77 is not open",
        ),
    ] {
        let d = TestDir::new();
        let out = Command::new(BIN)
            .args(args)
            .arg(&d.path)
            .env("RUST_LOG", "warn")
            .stdin(stdin)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end(), want, "{args:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn listen_fds_meant_for_another_process_is_ignored() {
    let d = TestDir::new();
    d.file("a.txt", "a");
    let mut child = Command::new(BIN)
        .args(["-p", "0", "--access-log", "off"])
        .arg(&d.path)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (_out, _, addr) = first_line(&mut child);
    let r = curl_body(&format!("http://{addr}/a.txt"));
    stop_on_drop(&mut child);
    assert_eq!(r.as_deref(), Some("a"), "it bound its own port and served");
}

fn curl_body(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn systemd_socket_activate_starts_it_on_its_socket() {
    if !have("systemd-socket-activate") || !have("curl") {
        println!("skipped: needs systemd-socket-activate and curl");
        return;
    }
    let d = TestDir::new();
    d.file("a.txt", "activated");
    // A port that was free a moment ago (systemd-socket-activate binds it itself).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("systemd-socket-activate")
        .args([
            "-l",
            &format!("127.0.0.1:{port}"),
            BIN,
            "--access-log",
            "off",
        ])
        .arg(&d.path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It says "Listening on ADDR as 3." once the socket listens, before poolserve even
    // starts; the request then waits in the backlog until poolserve accepts it.
    // The pipe stays open to the end: it logs more there (and a closed pipe would kill it).
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    stderr.read_line(&mut said).unwrap();
    assert!(said.starts_with("Listening on "), "{said:?}");
    let got = curl_body(&format!("http://127.0.0.1:{port}/a.txt"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exited = (0..500).find_map(|_| {
        let s = child.try_wait().unwrap();
        if s.is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    });
    if exited.is_none() {
        stop_on_drop(&mut child);
    }
    assert_eq!(got.as_deref(), Some("activated"));
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
}

#[test]
fn the_socket_and_service_units_verify_clean() {
    if !have("systemd-analyze") {
        println!("skipped: needs systemd-analyze");
        return;
    }
    // The units as shipped, with ExecStart pointing at the binary just built (verify checks
    // that the command exists).
    let d = TestDir::new();
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    for unit in ["poolserve.socket", "poolserve.service"] {
        let text = std::fs::read_to_string(format!("{deploy}/{unit}")).unwrap();
        d.file(unit, text.replace("/usr/local/bin/poolserve", BIN));
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(d.path.join("poolserve.socket"))
        .arg(d.path.join("poolserve.service"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    // Messages about the machine's own units (this test runs in containers too) are not ours.
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("poolserve")).collect();
    assert!(out.status.success() && ours.is_empty(), "{said}");
}
