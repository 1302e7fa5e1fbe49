//! Command-line grammar, used only outside a web server.
//!
//! Under CGI (`GATEWAY_INTERFACE` set) argv is never parsed: Apache turns a
//! query string without `=` into arguments, so any visitor could pass
//! flags. The caller enforces that by not calling [`parse`] then.

use crate::config::{flag_key, Flag, Key, Kind, KEYS};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print usage: the overview, or one command's flags.
    Help(Topic),
    /// Print the version.
    Version,
    /// Stream to stdout, as a CGI would answer a GET.
    Stream(Overrides),
    /// Publish one event to the spool.
    Publish(PublishArgs),
    /// Run the built-in HTTP server.
    Serve(Overrides),
    /// Print a signed subscribe URL (or its query).
    Sign(SignArgs),
    /// Test a deployed stream from the client side; its own flags, parsed
    /// by [`crate::doctor`].
    Doctor(Vec<String>),
    /// Print the spool's numbers: channels, retained events, readers.
    Stats(StatsArgs),
    /// Validate the settings and the spool as the site's user.
    Check(Overrides),
}

/// What `help` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Every command in one line each.
    Overview,
    /// Streaming to stdout (no command word; what the CGI does).
    Stream,
    /// `serve`.
    Serve,
    /// `publish`.
    Publish,
    /// `sign`.
    Sign,
    /// `doctor`.
    Doctor,
    /// `stats`.
    Stats,
    /// `check`.
    Check,
}

impl Topic {
    /// The topic a command word names.
    pub fn from_word(word: &str) -> Option<Topic> {
        Some(match word {
            "stream" => Topic::Stream,
            "serve" => Topic::Serve,
            "publish" => Topic::Publish,
            "sign" => Topic::Sign,
            "doctor" => Topic::Doctor,
            "stats" => Topic::Stats,
            "check" => Topic::Check,
            _ => return None,
        })
    }
}

/// `nph-events stats …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsArgs {
    /// Settings flags (the spool).
    pub overrides: Overrides,
    /// `--json`: one JSON object instead of text.
    pub json: bool,
}

/// `nph-events sign …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignArgs {
    /// Settings flags (the secret, a config file).
    pub overrides: Overrides,
    /// `--channel`: the channel the URL reads.
    pub channel: Option<String>,
    /// `--grant`: what it may read, when more than the channel.
    pub grant: Option<String>,
    /// `--ttl`: seconds from now until it expires (default 300).
    pub ttl: u64,
    /// `--expires`: Unix seconds it expires at (instead of `--ttl`).
    pub expires: Option<u64>,
    /// `--url`: the stream URL to append the query to.
    pub url: Option<String>,
}

/// Lifetime of a signed URL when `--ttl` is not given: long enough to
/// load a page and connect, short enough that a leaked URL soon stops
/// working (a stream that started keeps running).
pub const DEFAULT_TTL: u64 = 300;

/// Where the published data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// `--data TEXT`.
    Text(String),
    /// `--json JSON`: validated, published as compact JSON text.
    Json(String),
    /// Standard input (neither flag given).
    Stdin,
}

/// `nph-events publish …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishArgs {
    /// Settings flags (spool, limits).
    pub overrides: Overrides,
    /// `--channel`, default `default`.
    pub channel: String,
    /// `--event`.
    pub event: Option<String>,
    /// The payload.
    pub data: Data,
    /// `--quiet`: no line on stderr about where the event went.
    pub quiet: bool,
}

/// Settings given as flags, applied after the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--config PATH`: replaces `NPH_EVENTS_CONFIG`.
    pub config_file: Option<String>,
    /// `(setting, raw value, flag as written)` in command-line order.
    pub values: Vec<Flag>,
}

/// Parses arguments (without the program name). Accepts `--flag value`
/// and `--flag=value`; the first word may name a command.
pub fn parse<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut args = args.into_iter().map(|a| a.as_ref().to_owned()).peekable();
    let word = args.peek().cloned().unwrap_or_default();
    let topic = match word.as_str() {
        "help" => {
            args.next();
            let topic = match args.next() {
                None => Topic::Overview,
                Some(w) => Topic::from_word(&w).ok_or_else(|| {
                    format!("no help on {w:?}: try serve, publish, sign, doctor, stats, check or stream")
                })?,
            };
            if let Some(extra) = args.next() {
                return Err(format!("unexpected {extra:?} after help"));
            }
            return Ok(Command::Help(topic));
        }
        w => match Topic::from_word(w) {
            // `stream` is the default; it is not a command word.
            Some(Topic::Stream) | None => Topic::Stream,
            Some(t) => {
                args.next();
                t
            }
        },
    };
    let rest: Vec<String> = args.collect();
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help(topic));
    }
    if topic == Topic::Doctor {
        return Ok(Command::Doctor(rest));
    }
    if topic == Topic::Stream && rest.iter().any(|a| a == "-V" || a == "--version") {
        return Ok(Command::Version);
    }
    let mut publish = (topic == Topic::Publish).then(|| PublishArgs {
        overrides: Overrides::default(),
        channel: crate::spool::DEFAULT_CHANNEL.to_owned(),
        event: None,
        data: Data::Stdin,
        quiet: false,
    });
    let mut sign = (topic == Topic::Sign).then(|| SignArgs {
        overrides: Overrides::default(),
        channel: None,
        grant: None,
        ttl: DEFAULT_TTL,
        expires: None,
        url: None,
    });
    let mut json = false;
    let mut overrides = Overrides::default();
    let mut args = rest.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let flag = flag.as_str();
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => args.next().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        if let Some(p) = publish.as_mut() {
            if publish_flag(p, flag, &mut value)? {
                continue;
            }
        }
        if let Some(g) = sign.as_mut() {
            if sign_flag(g, flag, &mut value)? {
                continue;
            }
        }
        if topic == Topic::Stats && flag == "--json" {
            json = match &inline {
                None => true,
                Some(v) => parse_yes_no(flag, v)?,
            };
            continue;
        }
        let allowed = settings_of(topic);
        match flag_key(flag) {
            Some(key) if !allowed.contains(&key.json) => {
                return Err(format!(
                    "{flag} is not a setting of {} (see nph-events help {})",
                    topic_name(topic),
                    topic_word(topic)
                ));
            }
            // A yes/no setting as a bare flag means yes; `--ws=false` says no.
            Some(key) if key.kind == Kind::Bool => {
                let v = inline.unwrap_or_else(|| "true".to_owned());
                overrides.values.push((key, v, flag.to_owned()));
            }
            Some(key) => {
                let v = value()?;
                overrides.values.push((key, v, flag.to_owned()));
            }
            None if flag == "--config" => overrides.config_file = Some(value()?),
            None if flag.starts_with('-') => {
                return Err(format!(
                    "unknown flag {arg:?} for {} (see nph-events help {})",
                    topic_name(topic),
                    topic_word(topic)
                ))
            }
            None => {
                return Err(format!(
                "unknown command {arg:?}: try serve, publish, sign, doctor, stats, check or help"
            ))
            }
        }
    }
    Ok(match topic {
        Topic::Publish => {
            let mut p = publish.ok_or("publish")?;
            p.overrides = overrides;
            Command::Publish(p)
        }
        Topic::Sign => {
            let mut g = sign.ok_or("sign")?;
            if g.channel.is_none() && g.grant.is_none() {
                return Err("sign needs --channel or --grant".to_owned());
            }
            g.overrides = overrides;
            Command::Sign(g)
        }
        Topic::Serve => Command::Serve(overrides),
        Topic::Stats => Command::Stats(StatsArgs { overrides, json }),
        Topic::Check => Command::Check(overrides),
        Topic::Stream | Topic::Overview | Topic::Doctor => Command::Stream(overrides),
    })
}

/// A `publish` flag; `Ok(false)` when `flag` is not one.
fn publish_flag(
    p: &mut PublishArgs,
    flag: &str,
    value: &mut dyn FnMut() -> Result<String, String>,
) -> Result<bool, String> {
    let mut set_data = |d: Data| {
        if p.data != Data::Stdin {
            return Err("give only one of --data and --json".to_owned());
        }
        p.data = d;
        Ok(true)
    };
    match flag {
        "--channel" => p.channel = value()?,
        "--event" => p.event = Some(value()?),
        "--data" => return set_data(Data::Text(value()?)),
        "--json" => return set_data(Data::Json(value()?)),
        "--quiet" | "-q" => p.quiet = true,
        _ => return Ok(false),
    }
    Ok(true)
}

/// A `sign` flag; `Ok(false)` when `flag` is not one.
fn sign_flag(
    g: &mut SignArgs,
    flag: &str,
    value: &mut dyn FnMut() -> Result<String, String>,
) -> Result<bool, String> {
    let seconds = |v: String| -> Result<u64, String> {
        v.parse()
            .map_err(|_| format!("{flag} takes whole seconds, not {v:?}"))
    };
    match flag {
        "--channel" => g.channel = Some(value()?),
        "--grant" => g.grant = Some(value()?),
        "--ttl" => g.ttl = seconds(value()?)?,
        "--expires" => g.expires = Some(seconds(value()?)?),
        "--url" => g.url = Some(value()?),
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_yes_no(flag: &str, v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{flag} takes true or false, not {v:?}")),
    }
}

/// Settings by what they are about, in the order help shows them. A key
/// missing here is shown under "Other settings" wherever every setting
/// applies (stream, serve, check).
const GROUPS: &[(&str, &[&str])] = &[
    (
        "The stream",
        &[
            "interval",
            "heartbeat",
            "retry",
            "tick_event",
            "max_duration",
            "output",
        ],
    ),
    ("The spool", &["spool", "retain_events", "retain_bytes"]),
    (
        "Publishing",
        &["max_body", "token_sha256", "publish_users", "publish_rate"],
    ),
    (
        "Who may read",
        &[
            "channels",
            "subscribe_secret",
            "origins",
            "ws_origins",
            "hosts",
        ],
    ),
    ("WebSocket", &["ws", "ws_mode", "ws_relay", "ws_rate"]),
    (
        "GRIP proxies (Pushpin)",
        &["grip_key", "grip_key_file", "grip_iss", "grip_publish"],
    ),
    (
        "The listener (serve)",
        &[
            "listen",
            "allow_remote",
            "max_connections",
            "header_timeout",
            "body_timeout",
            "max_per_client",
            "connect_rate",
            "queue_budget",
            "metrics",
            "metrics_channels",
        ],
    ),
];

/// Settings a command reads; `None` means all of them.
fn settings_filter(topic: Topic) -> Option<&'static [&'static str]> {
    match topic {
        Topic::Stream | Topic::Serve | Topic::Check | Topic::Overview => None,
        Topic::Publish => Some(&[
            "spool",
            "retain_events",
            "retain_bytes",
            "max_body",
            "grip_publish",
        ]),
        Topic::Sign => Some(&["subscribe_secret"]),
        Topic::Stats => Some(&["spool"]),
        Topic::Doctor => Some(&[]),
    }
}

/// JSON names of the settings `topic` accepts as flags.
fn settings_of(topic: Topic) -> Vec<&'static str> {
    match settings_filter(topic) {
        Some(keys) => keys.to_vec(),
        None if topic == Topic::Stream => KEYS
            .iter()
            .map(|k| k.json)
            .filter(|k| !listener_only(k))
            .collect(),
        None => KEYS.iter().map(|k| k.json).collect(),
    }
}

fn listener_only(json: &str) -> bool {
    GROUPS
        .iter()
        .any(|(name, keys)| name.contains("(serve)") && keys.contains(&json))
}

fn topic_name(topic: Topic) -> &'static str {
    match topic {
        Topic::Stream | Topic::Overview => "streaming",
        Topic::Serve => "serve",
        Topic::Publish => "publish",
        Topic::Sign => "sign",
        Topic::Doctor => "doctor",
        Topic::Stats => "stats",
        Topic::Check => "check",
    }
}

fn topic_word(topic: Topic) -> &'static str {
    match topic {
        Topic::Stream | Topic::Overview => "stream",
        t => topic_name(t),
    }
}

const OVERVIEW: &str = "\
nph-events: Server-Sent Events and WebSocket from a cgi-bin

Usage:
  nph-events serve [FLAGS]        HTTP server: demo page at /, stream at /events
                                  (default http://127.0.0.1:8080/)
  nph-events [FLAGS]              stream to stdout: the exact bytes a CGI client gets
  nph-events publish [FLAGS]      publish one event; prints its id
  nph-events sign [FLAGS]         print a signed subscribe URL
  nph-events doctor URL [FLAGS]   test a deployed stream from the client side:
                                  is it live, or does something buffer it?
  nph-events stats [--json]       channels, retained events, connected readers
  nph-events check [FLAGS]        validate the settings and the spool, as the site's user
  nph-events help [COMMAND]       this text, or one command's flags
  nph-events --version

Installed as cgi-bin/nph-events.cgi it answers HTTP requests; the nph-
name prefix selects non-parsed-header output (any other name: parsed
headers). Under a web server, arguments are ignored and settings come
from NPH_EVENTS_* variables and the JSON file in NPH_EVENTS_CONFIG
(default /etc/nph-events.json if it exists: the site and a shell share it).
Precedence: defaults < config file < environment < flags.

Run `nph-events help COMMAND` (or `nph-events COMMAND --help`) for its
flags and settings; `nph-events help stream` lists every setting.
";

const STREAM_USAGE: &str = "\
Usage: nph-events [FLAGS]

Streams to stdout exactly what a CGI client gets for a GET: the head, the
opening comment, then events of the channel (and ticks) until the reader
goes away. Under a web server (GATEWAY_INTERFACE set) this is what runs,
and the command line is ignored.
";

const SERVE_USAGE: &str = "\
Usage: nph-events serve [FLAGS]

Runs the built-in HTTP server: the demo page at /, the stream at /events
(SSE, and WebSocket with --ws), publishing by authenticated POST. It
shares the spool with the CGI and the publish command.
";

const PUBLISH_USAGE: &str = "\
Usage: nph-events publish [--channel C] [--event NAME] [--data TEXT | --json JSON] [FLAGS]

Publishes one event to every connected client of the channel and prints
its id. The data comes from standard input unless --data or --json is
given (one trailing newline is dropped).

Run it as the web server's user, or as root: root publishes into the
site's spool as that spool's owner.

  --channel C      channel to publish on (default \"default\")
  --event NAME     event name (the client's addEventListener); default: message
  --data TEXT      the data, as text (may span lines)
  --json JSON      the data, checked to be JSON and sent compact
  -q, --quiet      no line on stderr saying where the event went and how
                   many readers were connected (errors are still shown)
";

const SIGN_USAGE: &str = "\
Usage: nph-events sign (--channel C | --grant LIST) [--ttl SECONDS | --expires UNIX] [--url URL] [FLAGS]

Prints the query (or, with --url, the whole URL) of a signed subscribe
URL for channels whose policy is `signed`.

  --channel C      the channel the URL reads
  --grant LIST     what it may read: names and prefix* items, comma-separated, or *
  --ttl SECONDS    lifetime from now (default 300)
  --expires UNIX   expiry as Unix seconds, instead of --ttl
  --url URL        the stream URL to append the query to
";

const STATS_USAGE: &str = "\
Usage: nph-events stats [--json] [FLAGS]

Prints the spool's numbers: each channel with its retained events, its
bytes on disk and its connected readers (one per CGI stream; a listener
counts one per channel per stream thread, however many clients). Run it
as the site's user, or as root (which finds the site's spool).

  --json           one JSON object instead of text
";

const CHECK_USAGE: &str = "\
Usage: nph-events check [FLAGS]

Validates what the site's CGI would run with: the settings (environment,
config file, flags), the spool (owner, mode, free space, readers) and the
keys for tokens, signed URLs and GRIP. Run it as the site's user with the
site's settings; exits non-zero when something would fail.
";

/// The `--help` text: the overview, or one command's usage, flags and
/// settings (generated from the settings table so it cannot drift).
pub fn help(topic: Topic) -> String {
    let usage = match topic {
        Topic::Overview => return OVERVIEW.to_owned(),
        Topic::Doctor => return crate::doctor::HELP.to_owned(),
        Topic::Stream => STREAM_USAGE,
        Topic::Serve => SERVE_USAGE,
        Topic::Publish => PUBLISH_USAGE,
        Topic::Sign => SIGN_USAGE,
        Topic::Stats => STATS_USAGE,
        Topic::Check => CHECK_USAGE,
    };
    let mut s = usage.to_owned();
    let allowed = settings_of(topic);
    s.push_str(
        "\nSettings: each is a flag, an environment variable and a JSON key.\n\
         Yes/no settings are bare flags (--ws); --ws=false turns one off.\n",
    );
    let mut shown: Vec<&str> = Vec::new();
    let mut group = |title: &str, keys: Vec<&'static Key>, s: &mut String| {
        if keys.is_empty() {
            return;
        }
        s.push_str(&format!("\n{title}:\n"));
        for k in keys {
            shown.push(k.json);
            s.push_str(&setting_line(k));
        }
    };
    for (title, names) in GROUPS {
        let keys = names
            .iter()
            .filter(|n| allowed.contains(n))
            .filter_map(|n| KEYS.iter().find(|k| k.json == *n))
            .collect();
        group(title, keys, &mut s);
    }
    let grouped: Vec<&str> = GROUPS.iter().flat_map(|(_, n)| n.iter().copied()).collect();
    let other = KEYS
        .iter()
        .filter(|k| allowed.contains(&k.json) && !grouped.contains(&k.json))
        .collect();
    group("Other settings", other, &mut s);
    s.push_str(
        "\n  --config PATH    JSON config file (NPH_EVENTS_CONFIG; default /etc/nph-events.json if it exists)\n\
         \x20 -h, --help       this text\n",
    );
    s
}

/// One setting in help: the flag, what it does and its default, then its
/// other two spellings.
fn setting_line(k: &Key) -> String {
    let flag = match k.kind {
        Kind::Bool => k.flag.to_owned(),
        Kind::Value => format!("{} VALUE", k.flag),
    };
    let default = match k.default {
        "" => String::new(),
        d => format!(" (default {d})"),
    };
    format!(
        "  {flag:<24} {}{default}\n  {:<24} {}, \"{}\"\n",
        k.help, "", k.env, k.json
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_both_spellings() {
        let Command::Stream(o) =
            parse(["--interval", "0.5", "--heartbeat=2", "--config", "c.json"]).unwrap()
        else {
            panic!("expected stream")
        };
        assert_eq!(o.config_file.as_deref(), Some("c.json"));
        let got: Vec<_> = o
            .values
            .iter()
            .map(|(k, v, _)| (k.json, v.as_str()))
            .collect();
        assert_eq!(got, vec![("interval", "0.5"), ("heartbeat", "2")]);
    }

    #[test]
    fn publish_grammar() {
        let Command::Publish(p) = parse([
            "publish",
            "--channel",
            "news",
            "--event=e",
            "--json",
            "{}",
            "--spool",
            "/s",
        ])
        .unwrap() else {
            panic!("expected publish")
        };
        assert_eq!(
            (p.channel.as_str(), p.event.as_deref()),
            ("news", Some("e"))
        );
        assert_eq!(p.data, Data::Json("{}".into()));
        assert_eq!(p.overrides.values[0].1, "/s");
        let Command::Publish(p) = parse(["publish"]).unwrap() else {
            panic!()
        };
        assert_eq!((p.channel.as_str(), p.data), ("default", Data::Stdin));
        assert!(parse(["publish", "--data", "a", "--json", "1"]).is_err());
        assert!(
            parse(["--channel", "x"]).is_err(),
            "publish flags only after publish"
        );
    }

    #[test]
    fn sign_grammar() {
        let Command::Sign(g) = parse([
            "sign",
            "--channel",
            "user-42",
            "--ttl=60",
            "--url",
            "/e",
            "--subscribe-secret",
            "s",
        ])
        .unwrap() else {
            panic!("expected sign")
        };
        assert_eq!(
            (
                g.channel.as_deref(),
                g.ttl,
                g.url.as_deref(),
                g.grant,
                g.expires
            ),
            (Some("user-42"), 60, Some("/e"), None, None)
        );
        assert_eq!(g.overrides.values[0].0.json, "subscribe_secret");
        let Command::Sign(g) = parse(["sign", "--grant", "news-*", "--expires", "99"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (g.grant.as_deref(), g.expires, g.ttl),
            (Some("news-*"), Some(99), DEFAULT_TTL)
        );
        assert!(parse(["sign"])
            .unwrap_err()
            .contains("--channel or --grant"));
        assert!(parse(["sign", "--channel", "a", "--ttl", "5m"])
            .unwrap_err()
            .contains("whole seconds"));
        assert!(
            parse(["--grant", "x"]).is_err(),
            "sign flags only after sign"
        );
    }

    #[test]
    fn help_is_a_command_and_each_command_has_its_own() {
        assert_eq!(parse(["help"]).unwrap(), Command::Help(Topic::Overview));
        assert_eq!(
            parse(["help", "publish"]).unwrap(),
            Command::Help(Topic::Publish)
        );
        assert_eq!(
            parse(["publish", "--help"]).unwrap(),
            Command::Help(Topic::Publish)
        );
        assert_eq!(parse(["serve", "-h"]).unwrap(), Command::Help(Topic::Serve));
        assert!(parse(["help", "bogus"]).unwrap_err().contains("no help on"));
        let overview = help(Topic::Overview);
        for word in [
            "serve", "publish", "sign", "doctor", "stats", "check", "help",
        ] {
            assert!(overview.contains(&format!("nph-events {word}")), "{word}");
        }
        let (serve, publish, sign) = (help(Topic::Serve), help(Topic::Publish), help(Topic::Sign));
        assert_ne!(serve, publish);
        // Each flag with its meaning, not only in a usage line.
        assert!(publish.contains("--event NAME     event name"), "{publish}");
        assert!(publish.contains("--channel C      channel to publish on"));
        assert!(sign.contains("--ttl SECONDS    lifetime from now"));
        // Only the settings a command reads.
        assert!(publish.contains("--spool VALUE"), "{publish}");
        assert!(!publish.contains("--listen"), "{publish}");
        assert!(!help(Topic::Stream).contains("--listen"));
        assert!(serve.contains("--listen VALUE"));
        // Booleans as booleans.
        assert!(serve.contains("  --ws "), "{serve}");
        assert!(!serve.contains("--ws VALUE"), "{serve}");
    }

    #[test]
    fn every_setting_is_in_some_help_and_groups_name_real_keys() {
        let all = help(Topic::Serve);
        for k in KEYS {
            assert!(all.contains(k.env), "{} missing from serve help", k.env);
        }
        for (_, names) in GROUPS {
            for n in *names {
                assert!(KEYS.iter().any(|k| k.json == *n), "{n} is not a setting");
            }
        }
        for t in [Topic::Publish, Topic::Sign, Topic::Stats] {
            for n in settings_filter(t).unwrap() {
                assert!(KEYS.iter().any(|k| k.json == *n), "{n} is not a setting");
            }
        }
    }

    #[test]
    fn booleans_take_no_value_or_an_inline_one() {
        let Command::Serve(o) = parse(["serve", "--ws"]).unwrap() else {
            panic!()
        };
        assert_eq!(o.values[0].1, "true");
        let Command::Serve(o) = parse(["serve", "--ws=false"]).unwrap() else {
            panic!()
        };
        assert_eq!(o.values[0].1, "false");
        assert!(
            parse(["serve", "--ws", "true"]).is_err(),
            "a bare boolean does not take the next word"
        );
        assert!(parse(["publish", "--listen", "x"])
            .unwrap_err()
            .contains("is not a setting of publish"));
        let Command::Stats(s) = parse(["stats", "--json"]).unwrap() else {
            panic!()
        };
        assert!(s.json);
        assert_eq!(
            parse(["doctor", "http://x/", "--seconds", "3"]).unwrap(),
            Command::Doctor(vec!["http://x/".into(), "--seconds".into(), "3".into()])
        );
    }

    #[test]
    fn help_version_and_errors() {
        assert_eq!(parse(["--help"]).unwrap(), Command::Help(Topic::Stream));
        assert_eq!(parse(["-V"]).unwrap(), Command::Version);
        assert!(parse(["--interval"]).unwrap_err().contains("needs a value"));
        assert!(parse(["--bogus"]).unwrap_err().contains("unknown"));
        assert!(parse(["--ws"]).is_ok(), "a bare --ws means true");
        assert!(parse(["stray"]).is_err());
        assert!(help(Topic::Stream).contains("NPH_EVENTS_HEARTBEAT"));
    }
}
