//! One run of the program: decide what the request asks for, answer it.
//!
//! Exit status: 0 after a served request, a finished stream, a departed
//! client or a termination signal; 1 when the response could not be given
//! (bad configuration under CGI, a write error other than a disconnect);
//! 2 for a command-line usage or configuration error.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use crate::cgi::{Protocol, Request};
use crate::cli::{self, Command, Overrides};
use crate::clock::{Clock, Waiter};
use crate::config::{Config, ConfigError, Output, CONFIG_VAR};
use crate::http::{self, Framing};
use crate::pump::{self, Outcome};
use crate::sse;

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
    let program = inputs
        .args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let command = if under_cgi {
        // argv is visitor-controlled under CGI: never look at it.
        Command::Stream(Overrides::default())
    } else {
        let args: Vec<String> = inputs.args[1.min(inputs.args.len())..]
            .iter()
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
    match command {
        Command::Help => finish_plain(out, &cli::help()),
        Command::Version => finish_plain(out, &format!("nph-events {}\n", crate::VERSION)),
        Command::Stream(overrides) => {
            let ctx = Context {
                under_cgi,
                program: &program,
                clock: inputs.clock,
            };
            ctx.respond(&vars, &overrides, inputs.waiter, out, err)
        }
    }
}

fn finish_plain(out: &mut impl Write, text: &str) -> i32 {
    let _ = pump::send(out, text.as_bytes());
    0
}

/// The facts of this run that shape the response.
struct Context<'a> {
    under_cgi: bool,
    program: &'a str,
    clock: &'a dyn Clock,
}

impl Context<'_> {
    fn respond(
        &self,
        vars: &HashMap<String, String>,
        overrides: &Overrides,
        waiter: &mut dyn Waiter,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> i32 {
        let request = if self.under_cgi {
            Request::from_vars(vars)
        } else {
            Request::terminal()
        };
        let loaded = load_config(vars, overrides);
        let output = loaded.as_ref().map(|c| c.output).unwrap_or(Output::Auto);
        let framing = self.framing(output, request.protocol);
        let head_only = request.method == "HEAD";
        let config = match loaded {
            Ok(c) => c,
            Err(e) => return self.config_failed(&e, &framing, head_only, out, err),
        };
        if matches!(framing, Framing::Nph { .. }) && request.protocol == Protocol::Http2OrLater {
            let _ = writeln!(
                err,
                "nph-events: warning: NPH output over HTTP/2 is held back by the server \
                 until the script exits; install the binary under a name without the \
                 nph- prefix (e.g. events.cgi) or set NPH_EVENTS_OUTPUT=cgi"
            );
        }
        let mut buf = Vec::with_capacity(512);
        if request.method != "GET" && !head_only {
            let allow = [("Allow", "GET, HEAD")];
            let msg = "this URL serves an event stream; use GET";
            http::write_error(
                &mut buf,
                &framing,
                http::METHOD_NOT_ALLOWED,
                &allow,
                msg,
                true,
            );
            return finish_response(out, &buf);
        }
        if let Err(e) = request.query_pairs() {
            http::write_error(
                &mut buf,
                &framing,
                http::BAD_REQUEST,
                &[],
                e.reason(),
                !head_only,
            );
            return finish_response(out, &buf);
        }
        http::write_head(&mut buf, &framing, http::OK, http::SSE_HEADERS);
        if head_only {
            return finish_response(out, &buf);
        }
        sse::comment(&format!("nph-events/{}", crate::VERSION), &mut buf);
        sse::retry(config.retry_ms, &mut buf);
        if let Err(e) = pump::send(out, &buf) {
            return write_failed(&e, err);
        }
        match pump::stream(out, &config, self.clock, waiter) {
            Ok(Outcome::MaxDuration | Outcome::ClientGone) => 0,
            Err(e) => write_failed(&e, err),
        }
    }

    fn framing(&self, output: Output, protocol: Protocol) -> Framing {
        let nph = match output {
            Output::Nph => true,
            Output::Cgi => false,
            Output::Auto => self.program.starts_with("nph-"),
        };
        if nph {
            Framing::Nph {
                protocol,
                date: httpdate::fmt_http_date(self.clock.wall()),
            }
        } else {
            Framing::Cgi
        }
    }

    /// One log line naming the setting; under CGI also a short 500 that
    /// names it without revealing its value.
    fn config_failed(
        &self,
        e: &ConfigError,
        framing: &Framing,
        head_only: bool,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> i32 {
        let _ = writeln!(err, "nph-events: {e}");
        if !self.under_cgi {
            return 2;
        }
        let setting = e.setting.split(['=', ' ']).next().unwrap_or("");
        let msg = format!("server configuration error in {setting} (see the server error log)");
        let mut buf = Vec::new();
        http::write_error(
            &mut buf,
            framing,
            http::INTERNAL_ERROR,
            &[],
            &msg,
            !head_only,
        );
        let _ = pump::send(out, &buf);
        1
    }
}

/// Builds the configuration in precedence order: defaults, file, env, flags.
fn load_config(
    vars: &HashMap<String, String>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    let file = overrides
        .config_file
        .as_deref()
        .or(vars.get(CONFIG_VAR).map(String::as_str))
        .filter(|p| !p.is_empty());
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            setting: format!("{CONFIG_VAR}={path:?}"),
            reason: format!("cannot read the file: {e}"),
        })?;
        config.apply_json(&text, path)?;
    }
    let mut env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.sort_unstable();
    config.apply_env(env)?;
    for (key, raw, flag) in &overrides.values {
        config.set(key, raw, flag)?;
    }
    Ok(config)
}

fn finish_response(out: &mut impl Write, bytes: &[u8]) -> i32 {
    // A client that left before reading an error page is not an error.
    let _ = pump::send(out, bytes);
    0
}

fn write_failed(e: &std::io::Error, err: &mut impl Write) -> i32 {
    if pump::is_disconnect(e) {
        return 0;
    }
    let _ = writeln!(err, "nph-events: cannot write the response: {e}");
    1
}
