//! GRIP: nph-events as the origin behind a GRIP proxy (Pushpin, or a
//! hosted service speaking the same protocol). The proxy holds the clients;
//! the origin answers each with instructions (`Grip-Hold`, `Grip-Channel`)
//! and the backlog, then is done, and every publish is also sent to the
//! proxies, which fan it out. The spool stays the source of truth: resume
//! replays from it, and a proxy that is down loses nothing the spool has.

pub mod hold;
pub mod publish;
pub mod sig;
pub mod wsevents;
