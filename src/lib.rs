//! nph-events: strict Server-Sent Events from a cgi-bin.
//!
//! Deployment in one picture:
//!
//! ```text
//! cargo build --release
//! cgi-bin/install /usr/lib/cgi-bin          # builds and copies the release binary
//!                                           # to /usr/lib/cgi-bin/nph-events.cgi
//! # Apache: Define NPH_EVENTS_CGI_DIR /usr/lib/cgi-bin
//! #         Include /path/to/apache-conf/nph-events.conf
//! # lighttpd: var.nph_events_cgi_dir = "/usr/lib/cgi-bin"
//! #           include "/path/to/lighttpd-conf/nph-events.conf"
//! curl -N http://localhost/cgi-bin/nph-events.cgi
//! ```
//!
//! The crate is a library with a thin binary: [`run`] takes argv, the
//! environment, an output, a clock and a waiter, so every behaviour can be
//! tested with byte buffers and a fake clock.

#![warn(missing_docs, missing_debug_implementations)]

pub mod app;
pub mod auth;
pub mod cgi;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod hub;
pub mod listen;
pub mod publish;
pub mod pump;
pub mod spool;
pub mod sse;
pub mod subscription;
pub mod sys;
pub mod ws;

pub use app::{run, Inputs};

/// The crate version, as shown by `--version` and in the opening comment.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
