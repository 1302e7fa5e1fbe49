//! Command-line grammar, used only outside a web server.
//!
//! Under CGI (`GATEWAY_INTERFACE` set) argv is never parsed: Apache turns a
//! query string without `=` into arguments, so any visitor could pass
//! flags. The caller enforces that by not calling [`parse`] then.

use crate::config::{flag_key, Flag, Kind, KEYS};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print usage.
    Help,
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
/// and `--flag=value`.
pub fn parse<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut args = args.into_iter().peekable();
    let mut publish = None;
    let mut sign = None;
    let mut serve = false;
    if args.peek().is_some_and(|a| a.as_ref() == "sign") {
        args.next();
        sign = Some(SignArgs {
            overrides: Overrides::default(),
            channel: None,
            grant: None,
            ttl: DEFAULT_TTL,
            expires: None,
            url: None,
        });
    } else if args.peek().is_some_and(|a| a.as_ref() == "serve") {
        args.next();
        serve = true;
    } else if args.peek().is_some_and(|a| a.as_ref() == "publish") {
        args.next();
        publish = Some(PublishArgs {
            overrides: Overrides::default(),
            channel: crate::spool::DEFAULT_CHANNEL.to_owned(),
            event: None,
            data: Data::Stdin,
        });
    }
    let mut overrides = Overrides::default();
    while let Some(arg) = args.next() {
        let arg = arg.as_ref();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg, None),
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ => {}
        }
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => args
                    .next()
                    .map(|v| v.as_ref().to_owned())
                    .ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        if let Some(p) = publish.as_mut() {
            let mut set_data = |d: Data| {
                if p.data != Data::Stdin {
                    return Err("give only one of --data and --json".to_owned());
                }
                p.data = d;
                Ok(())
            };
            match flag {
                "--channel" => {
                    p.channel = value()?;
                    continue;
                }
                "--event" => {
                    p.event = Some(value()?);
                    continue;
                }
                "--data" => {
                    set_data(Data::Text(value()?))?;
                    continue;
                }
                "--json" => {
                    set_data(Data::Json(value()?))?;
                    continue;
                }
                _ => {}
            }
        }
        if let Some(g) = sign.as_mut() {
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
                _ => {}
            }
            if matches!(
                flag,
                "--channel" | "--grant" | "--ttl" | "--expires" | "--url"
            ) {
                continue;
            }
        }
        match flag_key(flag) {
            // A yes/no setting as a bare flag means yes.
            Some(key) if key.kind == Kind::Bool && inline.is_none() => {
                overrides
                    .values
                    .push((key, "true".to_owned(), flag.to_owned()));
            }
            Some(key) => {
                let v = value()?;
                overrides.values.push((key, v, flag.to_owned()));
            }
            None if flag == "--config" => overrides.config_file = Some(value()?),
            None => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if let Some(mut g) = sign {
        if g.channel.is_none() && g.grant.is_none() {
            return Err("sign needs --channel or --grant".to_owned());
        }
        g.overrides = overrides;
        return Ok(Command::Sign(g));
    }
    Ok(match publish {
        Some(mut p) => {
            p.overrides = overrides;
            Command::Publish(p)
        }
        None if serve => Command::Serve(overrides),
        None => Command::Stream(overrides),
    })
}

/// The `--help` text, generated from the settings table so it cannot drift.
pub fn help() -> String {
    let mut s = String::from(
        "nph-events: Server-Sent Events from a cgi-bin\n\
         \n\
         Usage:\n\
         \x20 nph-events serve [OPTIONS]  HTTP server: demo page at /, stream at /events\n\
         \x20                         (default http://127.0.0.1:8080/)\n\
         \x20 nph-events [OPTIONS]     stream to stdout: the exact bytes a CGI client gets\n\
         \x20 nph-events publish [--channel C] [--event NAME] [--data TEXT | --json JSON] [OPTIONS]\n\
         \x20                         publish one event (data from stdin unless given); prints its id\n\
         \x20 nph-events sign (--channel C | --grant LIST) [--ttl SECONDS | --expires UNIX] [--url URL]\n\
         \x20                         print a signed subscribe URL (needs NPH_EVENTS_SUBSCRIBE_SECRET)\n\
         \x20 nph-events --help | --version\n\
         \n\
         Installed as cgi-bin/nph-events.cgi it answers HTTP requests; the nph-\n\
         name prefix selects non-parsed-header output (any other name: parsed\n\
         headers). Under a web server, arguments are ignored and settings come\n\
         from NPH_EVENTS_* variables and the JSON file in NPH_EVENTS_CONFIG.\n\
         Precedence: defaults < config file < environment < flags.\n\
         \n\
         Options (environment variable, JSON key):\n",
    );
    for k in KEYS {
        let flag = match k.kind {
            Kind::Bool => k.flag.to_owned(),
            Kind::Value => format!("{} V", k.flag),
        };
        let default = match k.default {
            "" => String::new(),
            d => format!(" (default {d})"),
        };
        s.push_str(&format!(
            "  {flag:<16} {}{default}\n  {:<16} ({}, \"{}\")\n",
            k.help, "", k.env, k.json
        ));
    }
    s.push_str(
        "  --config PATH    JSON config file (NPH_EVENTS_CONFIG)\n\
         \x20 -h, --help       this text\n\
         \x20 -V, --version    version\n",
    );
    s
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
    fn help_version_and_errors() {
        assert_eq!(parse(["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(["-V"]).unwrap(), Command::Version);
        assert!(parse(["--interval"]).unwrap_err().contains("needs a value"));
        assert!(parse(["--bogus"]).unwrap_err().contains("unknown"));
        assert!(parse(["--ws"]).is_ok(), "a bare --ws means true");
        assert!(parse(["stray"]).is_err());
        assert!(help().contains("NPH_EVENTS_HEARTBEAT"));
    }
}
