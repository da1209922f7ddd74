//! `--reuse-port` with the real binary: two processes listen on one port (each with its own
//! root, so the answers tell them apart), and the kernel spreads new connections between
//! them: both serve. A plain second process on that port fails with exit 2.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};

use support::{first_line, TestDir};

const BIN: &str = env!("CARGO_BIN_EXE_poolserve");

/// Starts poolserve with `args`, and returns it with the port from its first line.
fn start(args: &[&str], root: &TestDir) -> (Child, BufReader<ChildStdout>, u16) {
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--access-log", "off"])
        .arg(&root.path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, _, addr) = first_line(&mut child);
    (child, out, addr.port())
}

fn stop(mut child: Child) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().ok().and_then(|s| s.code())
}

/// The body of `GET /id.txt` on a new connection.
fn id(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /id.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    got.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

#[test]
fn two_processes_share_one_port_and_both_serve() {
    let (a, b) = (TestDir::new(), TestDir::new());
    a.file("id.txt", "a");
    b.file("id.txt", "b");
    let (first, _out_a, port) = start(&["-p", "0", "--reuse-port"], &a);
    let port_arg = port.to_string();
    let (second, _out_b, port_b) = start(&["-p", &port_arg, "--reuse-port"], &b);
    assert_eq!(port_b, port);
    // The kernel picks a listener by a hash of each connection's addresses: with new
    // source ports, both come up within a few dozen connections.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        seen.insert(id(port));
        if seen.len() == 2 {
            break;
        }
    }
    // Without the option, the port is taken.
    let c = TestDir::new();
    let plain = Command::new(BIN)
        .args(["-p", &port_arg])
        .arg(&c.path)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let (code_a, code_b) = (stop(first), stop(second));
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(plain.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("cannot bind 127.0.0.1:"));
    assert_eq!((code_a, code_b), (Some(0), Some(0)));
}
