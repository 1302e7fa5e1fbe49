//! `nph-events doctor URL`: a client-side self-test of a deployed stream.
//!
//! The most common deployment failure is something between the program and
//! the browser holding the stream back (compression, a proxy's buffer,
//! lighttpd without `stream-response-body`, an NPH program over HTTP/2, a
//! CDN). The doctor connects the way a browser does, times every byte
//! against when it was sent (probe events it publishes itself, or the
//! ticker's own timestamps), recognises the server in front, and names the
//! fix for it.

use std::io::Write;

mod args;
mod assess;
mod capture;
mod events;
mod fix;
mod head;
mod probe;
mod report;
mod run;
mod target;
mod transport;
mod ws;

/// `nph-events help doctor`.
pub const HELP: &str = "\
Usage: nph-events doctor URL [FLAGS]

Tests a deployed event stream from the client side, through whatever is in
between, and names the fix for the server it finds. It asks as a browser
does (Accept-Encoding: gzip, deflate, br), watches the stream, and times
each event against when it was sent: probe events it publishes with
--token, otherwise the ticker's own timestamps (the default ticker runs
every 10 s, so watch at least 22 s without a token). Checks, each ok, warn
or FAIL with the number measured:

  head, first-byte  time to the response head and to the first body byte
  live              live, batched (by how much) or buffered to the end
  publish           the probes' POST (with --token)
  compression       Content-Encoding of the answer (and a second stream
                    without Accept-Encoding, to tell compression apart)
  http              HTTP/1.0, 1.1 or 2
  idle              longest silence against common proxy idle timeouts
  resume            reconnect with Last-Event-ID (with --token)
  cors              Access-Control-Allow-Origin (with --origin)
  websocket         the upgrade handshake (501: not enabled, info only)

Flags:
  --token T          publish probes: POST to URL with Authorization: Bearer T
                     (NPH_EVENTS_TOKEN_SHA256 holds its SHA-256)
  --token-file F     the token from the first line of file F
  --channel C        the channel to watch (and probe); with a token the
                     default is \"doctor\", kept apart from the site's own
  --seconds N        how long to watch (default 22, 15 with a token; 1-600)
  --origin O         send Origin: O and check the CORS answer for it
  --http2            HTTP/2 (https: negotiated; http: Upgrade to h2c)
  --http2-prior-knowledge   h2c without upgrade (http:// only)
  --cacert F         https:// only: verify the server's certificate with the
                     CA certificate(s) in PEM file F (a private CA; curl's
                     --cacert). There is no way to skip verification.
  --json             one JSON object instead of text

http:// is spoken by a built-in HTTP/1.1 client. https:// and HTTP/2 run
the system curl program (with -N, unbuffered), timing what it prints;
without curl on PATH they fail with a message. A certificate curl cannot
verify ends the run with curl's error line and exit status 1.

Exit status: 0 live, 1 not live (buffered, batched) or a check failed or
the URL could not be reached, 2 usage error.
";

/// Runs the doctor with its arguments (after the word `doctor`); returns
/// the exit status.
pub fn main(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let options = match args::parse(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(err, "nph-events doctor: {e}");
            return 2;
        }
    };
    let report = match run::run(&options, err) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "nph-events doctor: {e}");
            return 1;
        }
    };
    let written = if options.json {
        report.write_json(out)
    } else {
        report.write_text(out)
    };
    if let Err(e) = written {
        let _ = writeln!(err, "nph-events doctor: cannot write the report: {e}");
        return 1;
    }
    report.status()
}
