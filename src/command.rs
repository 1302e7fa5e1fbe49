//! One run of the program: what the command line (or the web server) asks
//! for, the configuration loaded once, and the front door or command that
//! answers.
//!
//! Exit status: 0 after a served request (including error answers), a
//! finished stream, a departed client or a termination signal; 1 when the
//! program could not do its job (bad configuration under CGI, spool
//! failure, a write error other than a disconnect); 2 for command-line
//! usage or configuration errors.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;

use crate::cli::{self, Command, Data, Overrides, PublishArgs};
use crate::clock::{Clock, Waiter};
use crate::config::{self, Config, ConfigError};
use crate::door::cgi::{self, Cgi};
use crate::message::{self, Message};
use crate::signature;
use crate::spool;
use crate::stream::{self, send};

/// Everything a run reads from the outside world.
pub struct Inputs<'a> {
    /// argv, program name first.
    pub args: Vec<OsString>,
    /// The process environment.
    pub vars: Vec<(OsString, OsString)>,
    /// Time source.
    pub clock: &'a dyn Clock,
    /// How to sleep between events.
    pub waiter: &'a mut dyn Waiter,
    /// The request body (CGI) or data to publish (CLI).
    pub stdin: &'a mut dyn Read,
}

impl std::fmt::Debug for Inputs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs").field("args", &self.args).finish()
    }
}

/// Runs the program; returns the exit status. `out` is the response (the
/// CGI's stdout), `err` the log (stderr, i.e. the server's error log).
pub fn run(inputs: Inputs<'_>, out: &mut impl Write, err: &mut impl Write) -> i32 {
    let vars: HashMap<String, String> = inputs
        .vars
        .iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let under_cgi = vars.contains_key("GATEWAY_INTERFACE");
    let command = if under_cgi {
        // argv is visitor-controlled under CGI: never look at it.
        Command::Stream(Overrides::default())
    } else {
        let args: Vec<String> = inputs
            .args
            .iter()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        match cli::parse(&args) {
            Ok(c) => c,
            Err(msg) => {
                let _ = writeln!(err, "nph-events: {msg} (try --help)");
                return 2;
            }
        }
    };
    let load = |o: &Overrides| {
        let env = vars.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        config::load(env, o.config_file.as_deref(), &o.values)
    };
    match command {
        Command::Help(topic) => plain(out, &cli::help(topic)),
        Command::Version => plain(out, &format!("nph-events {}\n", crate::VERSION)),
        Command::Publish(args) => match load(&args.overrides) {
            Ok(c) => {
                let argv = typed(&inputs.args);
                publish(c, &args, &argv, inputs.clock, inputs.stdin, out, err)
            }
            Err(e) => fail(err, "nph-events publish", 2, &e.to_string()),
        },
        Command::Sign(args) => match load(&args.overrides) {
            Ok(c) => sign(&c, &args, inputs.clock, out, err),
            Err(e) => fail(err, "nph-events sign", 2, &e.to_string()),
        },
        Command::Doctor(args) => crate::doctor::main(&args, out, err),
        Command::Stats(args) => match load(&args.overrides) {
            Ok(mut c) => match crate::site::settle_for_reading(&mut c) {
                Ok(()) => crate::stats::main(&c, args.json, out, err),
                Err(e) => fail(err, "nph-events stats", 1, &e),
            },
            Err(e) => fail(err, "nph-events stats", 2, &e.to_string()),
        },
        Command::Check(overrides) => {
            let env = vars.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            crate::check::main(env, &overrides, out, err)
        }
        Command::Serve(overrides) => match load(&overrides) {
            Ok(mut c) => {
                c.settle_lifetime(config::Door::Listener);
                serve(c, err)
            }
            Err(e) => fail(err, "nph-events serve", 2, &e.to_string()),
        },
        Command::Stream(overrides) => {
            crate::sys::exit_on_termination_signals();
            let program = inputs
                .args
                .first()
                .and_then(|a| Path::new(a).file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let door = Cgi {
                request: cgi::request(&vars, under_cgi),
                program: &program,
                clock: inputs.clock,
                waiter: inputs.waiter,
                stdin: inputs.stdin,
                under_server: under_cgi,
            };
            let loaded: Result<Config, ConfigError> = load(&overrides).map(|mut c| {
                c.settle_lifetime(config::Door::Cgi);
                c
            });
            door.respond(loaded, under_cgi, out, err)
        }
    }
}

fn plain(out: &mut impl Write, text: &str) -> i32 {
    let _ = send(out, text.as_bytes());
    0
}

fn fail(err: &mut impl Write, who: &str, code: i32, msg: &str) -> i32 {
    let _ = writeln!(err, "{who}: {msg}");
    code
}

/// `nph-events sign`: prints the query of a signed subscribe URL (or the
/// whole URL with `--url`), for scripts and for trying a policy out.
fn sign(
    config: &Config,
    args: &cli::SignArgs,
    clock: &dyn Clock,
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    let who = "nph-events sign";
    let Some(secret) = &config.subscribe_secret else {
        return fail(err, who, 2, "no secret: set NPH_EVENTS_SUBSCRIBE_SECRET (or --subscribe-secret, or subscribe_secret in the config file)");
    };
    for channel in args.channel.iter() {
        if let Err(e) = spool::check_channel(channel) {
            return fail(err, who, 2, &format!("--channel {channel:?}: {e}"));
        }
    }
    if let Some(grant) = &args.grant {
        match signature::Grant::parse(grant) {
            Err(e) => return fail(err, who, 2, &e.to_string()),
            Ok(g) => {
                if let Some(c) = args.channel.as_deref().filter(|c| !g.covers(c)) {
                    return fail(
                        err,
                        who,
                        2,
                        &format!("--grant {grant:?} does not cover --channel {c}"),
                    );
                }
            }
        }
    }
    let now = clock
        .wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expires = args
        .expires
        .unwrap_or(now.saturating_add(args.ttl))
        .to_string();
    let signed = match (&args.grant, &args.channel) {
        (Some(g), _) => g.as_str(),
        (None, Some(c)) => c.as_str(),
        (None, None) => return fail(err, who, 2, "give --channel or --grant"),
    };
    let sig = signature::sign(secret.bytes(), signed, &expires);
    let mut query = Vec::new();
    if let Some(c) = &args.channel {
        query.push(format!("channel={c}"));
    }
    if let Some(g) = &args.grant {
        query.push(format!("grant={g}"));
    }
    query.push(format!("expires={expires}"));
    query.push(format!("sig={sig}"));
    let query = query.join("&");
    let line = match &args.url {
        Some(url) if url.contains('?') => format!("{url}&{query}\n"),
        Some(url) => format!("{url}?{query}\n"),
        None => format!("{query}\n"),
    };
    plain(out, &line)
}

/// `nph-events serve`: the built-in HTTP server.
fn serve(config: Config, err: &mut impl Write) -> i32 {
    let spool = match stream::open_spool(&config) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                err,
                "nph-events serve",
                1,
                &format!("cannot open the spool: {e}"),
            )
        }
    };
    crate::sys::limit_malloc_arenas();
    crate::sys::raise_open_files_limit();
    if !config.grip_publish.is_empty() {
        crate::grip::publish::start_sender();
    }
    crate::door::listener::serve(config, spool, err)
}

/// argv as text, for messages that suggest a command.
fn typed(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// `nph-events publish`: prints the new id on stdout, and on stderr where
/// it went and how many readers had it. Root publishes into the site's
/// spool as its owner ([`crate::site`]).
fn publish(
    mut config: Config,
    args: &PublishArgs,
    argv: &[String],
    clock: &dyn Clock,
    stdin: &mut dyn Read,
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    let who = "nph-events publish";
    if let Err(e) = spool::check_channel(&args.channel) {
        return fail(
            err,
            who,
            2,
            &format!("bad --channel {:?}: {e}", args.channel),
        );
    }
    let message = match cli_message(args, &config, stdin) {
        Ok(m) => m,
        Err(msg) => return fail(err, who, 2, &msg),
    };
    let reached = match crate::site::settle_for_writing(&mut config, argv) {
        Ok(r) => r,
        Err(msg) => return fail(err, who, 1, &msg),
    };
    match stream::publish_appended(&config, &args.channel, &message, clock) {
        Ok(a) => {
            if !args.quiet {
                let proxies = config.grip_publish.len();
                crate::site::report(err, who, &reached, &args.channel, a.id, a.readers, proxies);
            }
            plain(out, &format!("{}\n", a.id))
        }
        Err(e) => fail(err, who, 1, &format!("cannot publish: {e}")),
    }
}

/// The message the command line gives: `--data`, `--json` or stdin.
fn cli_message(
    args: &PublishArgs,
    config: &Config,
    stdin: &mut dyn Read,
) -> Result<Message, String> {
    use crate::http::Refusal;
    let event = message::event_name(args.event.as_deref()).map_err(|e| e.reason())?;
    let data = match &args.data {
        Data::Text(t) => t.clone(),
        Data::Json(j) => serde_json::from_str::<serde_json::Value>(j)
            .map_err(|e| format!("--json is not valid JSON: {e}"))?
            .to_string(),
        Data::Stdin => {
            let body = message::read_body(stdin, None, config.max_body).map_err(|e| e.reason())?;
            let mut text =
                String::from_utf8(body).map_err(|_| "standard input is not UTF-8".to_owned())?;
            // `echo hi | nph-events publish` publishes "hi", as `$(…)` would.
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        }
    };
    if data.len() as u64 > config.max_body {
        return Err(format!(
            "data is larger than max_body ({} bytes)",
            config.max_body
        ));
    }
    Ok(Message {
        event,
        data,
        sender: None,
    })
}
