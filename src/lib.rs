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
//!
//! The shape of the house, outside in (each layer calls only the ones
//! below it):
//!
//! * entry: `main.rs`, [`command`], [`cli`]: inputs, argv, the command;
//! * doors: [`door`] (CGI, listener, reactor): framing and I/O only;
//! * the handler: [`handler`]: a typed request in, an answer out;
//! * streams: [`stream`], [`ws`] sessions: following a channel, feeding a
//!   client; rules: [`config`], [`auth`], [`message`], [`origin`], the
//!   handshake:
//!   who may, what a body means, settings;
//! * the spool: [`spool`]: the shared event log on disk;
//! * wire formats: [`request`], [`http`], [`sse`], [`demo`]: bytes in,
//!   bytes out;
//! * the system: [`sys`] (the only `unsafe`), [`clock`].

#![warn(missing_docs, missing_debug_implementations)]
#![deny(unsafe_code)]

pub mod access;
pub mod auth;
pub mod check;
pub mod cli;
pub mod clock;
pub mod command;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod door;
pub mod grip;
pub mod handler;
pub mod http;
pub mod message;
pub mod origin;
pub mod request;
pub mod signature;
pub mod site;
pub mod spool;
pub mod sse;
pub mod stats;
pub mod stream;
#[allow(unsafe_code)]
pub mod sys;
pub mod ws;

pub use command::{run, Inputs};

/// The crate version, as shown by `--version` and in the opening comment.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
