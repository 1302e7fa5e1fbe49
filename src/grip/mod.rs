//! GRIP: nph-events as the origin behind a GRIP proxy (Pushpin, or a
//! hosted service speaking the same protocol). The proxy holds the clients;
//! the origin answers each with instructions (`Grip-Hold`, `Grip-Channel`)
//! and the backlog, then is done, and every publish is also sent to the
//! proxies, which fan it out. The spool stays the source of truth: resume
//! replays from it, and a proxy that is down loses nothing the spool has.

pub mod endpoint;
pub mod hold;
pub mod publish;
pub mod sig;
pub mod ws;
pub mod wsevents;

use crate::config::Config;
use crate::handler::Answer;
use crate::http::Reply;
use crate::spool::Spool;

/// Completes the answers that tell a GRIP proxy what to do, with what the
/// spool holds (the backlog): a stream request through the proxy gets its
/// hold, a WebSocket-over-HTTP batch its events. Other answers pass
/// through. `spool`: the door's, or opened here when needed.
pub fn complete(config: &Config, spool: Option<&Spool>, answer: Answer) -> Answer {
    let needs_spool = matches!(&answer, Answer::Stream(s) if s.grip.is_some())
        || matches!(answer, Answer::GripWs(_));
    if !needs_spool {
        return answer;
    }
    let opened;
    let spool = match spool {
        Some(s) => s,
        None => match crate::stream::open_spool(config) {
            Ok(s) => {
                opened = s;
                &opened
            }
            Err(e) => return Answer::Reply(Reply::server_failure("open the spool", &e)),
        },
    };
    let reply = match &answer {
        Answer::Stream(s) => hold::answer(config, spool, s),
        Answer::GripWs(batch) => ws::answer(spool, batch),
        _ => return answer,
    };
    Answer::Reply(reply.unwrap_or_else(|e| Reply::server_failure("answer the GRIP proxy", &e)))
}
