#![deny(unsafe_code)]
#![warn(missing_docs)]
//! poolserve: a static-file HTTP/1.1 server built on a fixed pool of blocking workers that
//! cannot be starved.
//!
//! ```text
//!  acceptor (calling thread)                         keeper thread (one mio Poll)
//!  accept() ──▶ try_send ──▶ [ bounded queue ] ◀── ready again ── parked connections
//!      │ full → canned 503 + close     │                              ▲ (idle, silent, partial
//!      ▼                               ▼                              │  head, lingering close)
//!                           N workers built at start ─── park when no bytes are ready
//! ```
//!
//! A worker serves every complete request it has, tries one read that does not wait, and
//! parks the connection with the keeper as soon as no bytes are ready, or as soon as the
//! client stops taking its response; so a few hundred idle, silent, slowloris or slow-reading
//! connections cost keeper entries, never workers. Connections
//! coming back from the keeper carry a request, so workers take them before new ones and they
//! are never answered 503. SIGINT/SIGTERM (or [`ServerHandle::shutdown`]) stop accepting,
//! close idle connections, finish in-flight and queued requests byte-exact with
//! `Connection: close`, and return within the shutdown timeout.
//!
//! # Layout
//! Pure, socket-free and table-tested: [`request`] (head parser), [`body`] (body framing:
//! discarding unused bodies, decoding uploads), [`resolve`] (URL path → file, safely, for
//! reads and writes), [`conditional`] (validators, preconditions, ranges), [`encoding`]
//! (choosing a precompressed sidecar), [`mime`], [`http_date`], [`access`] (access-log
//! lines), [`config`] (limits, CLI and environment), [`site_rules`] (`_redirects`,
//! `_headers` and `--header`: parsing, limits, matching), [`metrics`] (the Prometheus
//! figures: counters and their text), [`listing`] (directory listings: the
//! view a request asks for, order, name escaping, the page made a piece at a time; its
//! `read` submodule reads a directory with GET's refusals). The answer: `handler` (a parsed
//! request → a reply: method, health, site rules, cache, path, representation, conditionals
//! and ranges, pages, listings; no socket, keeper or pool). Files: `rules_file` (the site rules in
//! force, reloaded when their files change), `cache` (small files and the configured pages) and
//! `upload` (PUT and DELETE decisions, atomic uploads, and the start-up sweep of the
//! temporary files a crash leaves). Sockets: `connection` (one connection while a worker holds it: its phase, reading, the keep-alive rule, expiry),
//! `outgoing` (resumable responses) and `keeper` (parked connections; a socket stays
//! registered from its first park to its close). Threads: `server` (acceptor, drain), `pool`
//! (workers, the ready queue and its jobs, and the rule for how many workers to wake),
//! `keeper` and [`shutdown`]. Zero-copy bodies: `snapshot` (sealed in-memory copies of large
//! files). System calls std lacks (Linux: sendfile, memfd and seals, `MSG_MORE`, listener
//! options): `sys`, the only module allowed `unsafe`; the crate root denies it elsewhere.
//! Errors: [`error`], where one `match` maps request errors to statuses. Wire format:
//! [`response`].
//!
//! # Embedding
//! ```
//! use poolserve::{Config, Server};
//!
//! let root = std::env::temp_dir().join(format!("poolserve-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&root).unwrap();
//! std::fs::write(root.join("index.html"), "hi").unwrap();
//! let config = Config { root: root.clone(), addr: "127.0.0.1:0".parse().unwrap(), ..Config::default() };
//! let running = Server::bind(config).unwrap().spawn().unwrap();
//! println!("serving on http://{}/", running.local_addr());
//! running.stop().unwrap(); // drains, then returns
//! # std::fs::remove_dir_all(root).unwrap();
//! ```

pub mod access;
pub mod body;
mod cache;
pub mod conditional;
pub mod config;
mod connection;
pub mod encoding;
pub mod error;
mod handler;
pub mod http_date;
mod keeper;
pub mod listing;
pub mod metrics;
pub mod mime;
mod outgoing;
mod pool;
pub mod request;
pub mod resolve;
pub mod response;
mod rules_file;
mod server;
pub mod shutdown;
pub mod site_rules;
mod snapshot;
mod state;
// The only module with `unsafe`: one system call per block, behind safe wrappers.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod sys;
#[cfg(test)]
mod testutil;
mod upload;

pub use config::{AccessLog, CliAction, Config, HoldGate, Limits, Overload};
pub use error::{ConfigError, Error, HttpError};
pub use server::{Running, Server, ServerHandle};
pub use shutdown::Shutdown;
pub use state::Stats;
