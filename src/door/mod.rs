//! The front doors: how a request arrives and how its answer leaves. Each
//! builds the typed request, asks [`crate::handler`], and does only the
//! framing and the I/O.

pub mod cgi;
pub mod host;
pub mod listener;
pub mod metrics;
pub mod reactor;
