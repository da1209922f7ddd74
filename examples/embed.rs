//! Start poolserve from code, serve a temporary directory, fetch a page from it, and stop it
//! from code (the stop drains, then returns).
//!
//! Run: `cargo run --example embed`

use std::io::{Read, Write};
use std::net::TcpStream;

use poolserve::{Config, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::temp_dir().join(format!("poolserve-embed-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    std::fs::write(
        root.join("index.html"),
        "<h1>hello from an embedded poolserve</h1>\n",
    )?;

    let config = Config {
        root: root.clone(),
        addr: "127.0.0.1:0".parse()?,
        workers: 2,
        ..Config::default()
    };
    let running = Server::bind(config)?.spawn()?;
    let addr = running.local_addr();
    println!("serving {} on http://{addr}/", root.display());

    let mut client = TcpStream::connect(addr)?;
    client.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    client.read_to_string(&mut response)?;
    println!("{}", response.lines().next().unwrap_or_default());

    running.stop()?;
    println!("stopped");
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
