//! Settings, their defaults, and where they come from.
//!
//! One precedence order, lowest first:
//!
//! 1. built-in defaults (documented on each [`Config`] field);
//! 2. the JSON config file named by `NPH_EVENTS_CONFIG` (or `--config`);
//! 3. `NPH_EVENTS_*` environment variables (Apache `SetEnv`, lighttpd
//!    `setenv.add-environment`);
//! 4. command-line flags, only outside a web server: under CGI, argv is
//!    attacker-controlled (Apache turns a `=`-less query string into argv).
//!
//! A bad value is never replaced by a default: it is a [`ConfigError`] that
//! names the setting, so a typo shows up in the server log instead of
//! silently running with other numbers. The query string has no say here.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::access::{parse_rules, Rule};
use crate::signature::Secret;
use crate::spool::Retention;
use crate::sse;

/// How the response head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// NPH when the program's file name starts with `nph-`, else parsed-header.
    Auto,
    /// Always write the status line and the whole head (non-parsed header).
    Nph,
    /// Always write a `Status:` line and let the server frame the body.
    Cgi,
}

/// Every setting with its default. Durations accept fractions (`0.5`).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Time between ticker events. Default 10 s (as the classic script);
    /// `0` turns the ticker off.
    pub interval: Duration,
    /// A comment is sent when nothing was written for this long. Default
    /// 15 s: well below common server `Timeout`s (30–300 s), and it bounds
    /// how long a process outlives its client (about 1–2 heartbeats).
    pub heartbeat: Duration,
    /// The `retry:` reconnection delay sent to the client, in ms. Default 3000.
    pub retry_ms: u64,
    /// The `event:` name of ticker events. Default `tick`.
    pub tick_event: String,
    /// End the stream cleanly after this long so the client reconnects and
    /// the process is recycled; `None` is never. Default `auto`
    /// ([`Config::max_duration_auto`]): each door settles it
    /// ([`Config::settle_lifetime`]).
    pub max_duration: Option<Duration>,
    /// `max_duration` was left at `auto`: [`CGI_LIFETIME`] under a web
    /// server, never for `serve`. Any value given (`0` included) clears it.
    pub max_duration_auto: bool,
    /// Each stream's lifetime is cut short by a random fraction up to this
    /// (0 to 0.9), so clients that connected together do not reconnect
    /// together. Default 0.5.
    pub max_duration_jitter: f64,
    /// Head framing. Default [`Output::Auto`].
    pub output: Output,
    /// Spool directory. Default `None`: a private per-user directory
    /// ([`crate::spool::default_root`]).
    pub spool: Option<PathBuf>,
    /// Retention per channel. Default 1000 events and 1 MiB.
    pub retention: Retention,
    /// Largest accepted publish body (POST, CLI data), bytes. Default 64 KiB.
    pub max_body: u64,
    /// SHA-256 of the bearer token that may publish by POST. Default none.
    pub token_sha256: Option<[u8; 32]>,
    /// Web-server-authenticated users (`REMOTE_USER`) that may publish.
    /// Default none.
    pub publish_users: Vec<String>,
    /// `serve`: address to listen on. Default `127.0.0.1:8080`.
    pub listen: std::net::SocketAddr,
    /// `serve`: allow a non-loopback `listen` address. Default false.
    pub allow_remote: bool,
    /// `serve`: most connections at once; more get 503. Default 1024.
    pub max_connections: usize,
    /// `serve`: time allowed for a request head to arrive (slow clients
    /// holding connections open); then 408. Default 10 s.
    pub header_timeout: Duration,
    /// `serve`: time allowed for a whole request body to arrive once its
    /// head is read (slow bodies holding connections open); then 408.
    /// Default 10 s: 6.5 KB/s for a 64 KiB body.
    pub body_timeout: Duration,
    /// `serve`: most connections at once from one client address; more get
    /// 429. Connections from the address they reach (a reverse proxy on
    /// this host) are not counted. Default 32.
    pub max_per_client: usize,
    /// `serve`: new connections per second from one client address (burst
    /// twice that); more get 429 without a thread. The same exemption as
    /// `max_per_client`. Default 50.
    pub connect_rate: u32,
    /// Accept WebSocket upgrades. Default false.
    pub ws: bool,
    /// WebSocket mode: relay (default) or echo (conformance testing; only
    /// by configuration, never by a visitor).
    pub ws_mode: WsMode,
    /// Who may publish by sending a WebSocket message: `off`, `auth` (as
    /// POST: token or REMOTE_USER; the default) or `open` (anyone: a chat).
    pub ws_relay: Relay,
    /// Messages per second one WebSocket client may publish. Default 10.
    pub ws_rate: u32,
    /// Origins of other sites' pages allowed to use this one: read streams
    /// cross-origin (CORS, `withCredentials` included), open a WebSocket,
    /// publish from a browser. Empty (default): the site's own pages only.
    /// `*`: any page, but without credentials (no cookies, no Basic auth)
    /// and never to publish.
    pub origins: Vec<String>,
    /// Key of signed subscribe URLs ([`crate::signature`]). Default none:
    /// signed URLs are refused.
    pub subscribe_secret: Option<Secret>,
    /// Channel policies: `pattern=policy` rules ([`crate::access`]).
    /// Default none: every channel is public.
    pub channels: Vec<Rule>,
    /// Key GRIP proxies sign requests with (`Grip-Sig`, HS256; Pushpin's
    /// `sig_key`). Default none: no request is answered with GRIP
    /// instructions.
    pub grip_key: Option<Secret>,
    /// The issuer (`iss`) a `Grip-Sig` must carry (Pushpin's `sig_iss`).
    /// Default `pushpin`.
    pub grip_iss: String,
    /// GRIP publish endpoints every publish is also sent to (one per
    /// proxy). Default none.
    pub grip_publish: Vec<String>,
    /// `serve`: bytes of output queued for slow clients, all clients
    /// together; a client holding queued output when the budget is spent
    /// is dropped (it reconnects and resumes). Default 64 MiB.
    pub queue_budget: usize,
    /// Host names the site answers to (`Host`, with or without a port),
    /// for the same-origin rule: a request whose `Host` is not one of them
    /// is not same-origin whatever its `Origin` says (DNS rebinding).
    /// Loopback names always count. Default none.
    pub hosts: Vec<String>,
    /// Publishes per second from clients (POST, WebSocket messages) for the
    /// whole site, burst the same; more get 429 or an error notice.
    /// Default 200.
    pub publish_rate: u32,
    /// `serve`: who may read `/metrics`. Default [`MetricsAccess::Local`].
    pub metrics: MetricsAccess,
    /// `serve`: `/metrics` has series per channel, labelled with the
    /// channel's name. Default false: only totals (channel names can be
    /// private: a user's, a room's).
    pub metrics_channels: bool,
}

/// Who may read the listener's `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAccess {
    /// Clients on this host (a loopback peer) whose request came through
    /// no proxy (no `Forwarded`, `X-Forwarded-For`, `X-Real-IP` or `Via`
    /// header): a reverse proxy on this host connects from loopback too.
    Local,
    /// Every client that reaches the listener (protect it otherwise).
    Any,
    /// Nobody: `/metrics` is 404.
    Off,
}

/// What a WebSocket client's text message does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsMode {
    /// Publish it to the channel (chat relay); events go to the client.
    Relay,
    /// Send it back (conformance testing); no events.
    Echo,
}

/// Who may publish through a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// Nobody: WebSocket clients only receive.
    Off,
    /// Clients with the credentials a POST needs.
    Auth,
    /// Anyone connected.
    Open,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(10),
            heartbeat: Duration::from_secs(15),
            retry_ms: 3000,
            tick_event: "tick".to_owned(),
            max_duration: None,
            max_duration_auto: true,
            max_duration_jitter: 0.5,
            output: Output::Auto,
            spool: None,
            retention: Retention::default(),
            max_body: 64 * 1024,
            token_sha256: None,
            publish_users: Vec::new(),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            allow_remote: false,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_per_client: 32,
            connect_rate: 50,
            ws: false,
            ws_mode: WsMode::Relay,
            ws_relay: Relay::Auth,
            ws_rate: 10,
            origins: Vec::new(),
            subscribe_secret: None,
            channels: Vec::new(),
            grip_key: None,
            grip_iss: "pushpin".to_owned(),
            grip_publish: Vec::new(),
            queue_budget: 64 << 20,
            hosts: Vec::new(),
            publish_rate: 200,
            metrics: MetricsAccess::Local,
            metrics_channels: false,
        }
    }
}

/// A stream's lifetime under a web server when `max_duration` is `auto`:
/// short enough that a graceful reload's old server generation, kept for
/// as long as its streams last, is gone within minutes; long enough that
/// reconnecting (a process start and a backlog read, about a millisecond)
/// costs nothing that shows. See DESIGN.md, "Recycling".
pub const CGI_LIFETIME: Duration = Duration::from_secs(300);

/// Which front door a configuration is settled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// A CGI under a web server (or streaming to a terminal).
    Cgi,
    /// The built-in listener (`serve`).
    Listener,
}

impl Config {
    /// Settles `max_duration: auto` for `door`: [`CGI_LIFETIME`] for a CGI,
    /// whose process and server slot a long stream holds through reloads;
    /// never for the listener, where a stream costs a socket (behind a
    /// proxy that reloads, set it). A given value stays.
    pub fn settle_lifetime(&mut self, door: Door) {
        if self.max_duration_auto {
            self.max_duration = match door {
                Door::Cgi => Some(CGI_LIFETIME),
                Door::Listener => None,
            };
            self.max_duration_auto = false;
        }
    }
}

/// A setting's three spellings: JSON key, environment variable, flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Key in the JSON config file.
    pub json: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// Command-line flag.
    pub flag: &'static str,
    /// What kind of value it takes: a bare flag and a JSON boolean are
    /// accepted for [`Kind::Bool`] settings only.
    pub kind: Kind,
    /// The default, spelled as a value of this setting would be (`""` for
    /// none); `--help` and the README show it, a test sets it and gets
    /// [`Config::default`].
    pub default: &'static str,
    /// One line for `--help` and error messages.
    pub help: &'static str,
}

/// The shape of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`); as a flag it
    /// needs no value.
    Bool,
    /// Anything else, given as text (JSON: a string or a number).
    Value,
}

/// All settings. `NPH_EVENTS_CONFIG` is not here: it names the file, it is
/// not a value inside it.
pub const KEYS: &[Key] = &[
    Key {
        json: "interval",
        env: "NPH_EVENTS_INTERVAL",
        flag: "--interval",
        kind: Kind::Value,
        default: "10",
        help: "seconds between ticker events, 0 = no ticker",
    },
    Key {
        json: "heartbeat",
        env: "NPH_EVENTS_HEARTBEAT",
        flag: "--heartbeat",
        kind: Kind::Value,
        default: "15",
        help: "seconds of silence before a heartbeat comment",
    },
    Key {
        json: "retry",
        env: "NPH_EVENTS_RETRY",
        flag: "--retry",
        kind: Kind::Value,
        default: "3000",
        help: "client reconnection delay in milliseconds",
    },
    Key {
        json: "tick_event",
        env: "NPH_EVENTS_TICK_EVENT",
        flag: "--tick-event",
        kind: Kind::Value,
        default: "tick",
        help: "event name of ticker events",
    },
    Key {
        json: "max_duration",
        env: "NPH_EVENTS_MAX_DURATION",
        flag: "--max-duration",
        kind: Kind::Value,
        default: "auto",
        help: "seconds after which a stream ends cleanly and the client resumes, 0 = never; auto = 300 under a web server, never for serve",
    },
    Key {
        json: "max_duration_jitter",
        env: "NPH_EVENTS_MAX_DURATION_JITTER",
        flag: "--max-duration-jitter",
        kind: Kind::Value,
        default: "0.5",
        help: "each stream's lifetime is cut short by a random fraction up to this (0 to 0.9), so clients do not reconnect together",
    },
    Key {
        json: "output",
        env: "NPH_EVENTS_OUTPUT",
        flag: "--output",
        kind: Kind::Value,
        default: "auto",
        help: "head framing: auto (nph- name => NPH), nph or cgi",
    },
    Key {
        json: "spool",
        env: "NPH_EVENTS_SPOOL",
        flag: "--spool",
        kind: Kind::Value,
        default: "",
        help: "spool directory (default /dev/shm/nph-events-<uid>, private)",
    },
    Key {
        json: "retain_events",
        env: "NPH_EVENTS_RETAIN_EVENTS",
        flag: "--retain-events",
        kind: Kind::Value,
        default: "1000",
        help: "events kept per channel for resume",
    },
    Key {
        json: "retain_bytes",
        env: "NPH_EVENTS_RETAIN_BYTES",
        flag: "--retain-bytes",
        kind: Kind::Value,
        default: "1048576",
        help: "bytes kept per channel for resume",
    },
    Key {
        json: "max_body",
        env: "NPH_EVENTS_MAX_BODY",
        flag: "--max-body",
        kind: Kind::Value,
        default: "65536",
        help: "largest publish body in bytes",
    },
    Key {
        json: "token_sha256",
        env: "NPH_EVENTS_TOKEN_SHA256",
        flag: "--token-sha256",
        kind: Kind::Value,
        default: "",
        help: "hex SHA-256 of the bearer token allowed to POST (default: none)",
    },
    Key {
        json: "publish_users",
        env: "NPH_EVENTS_PUBLISH_USERS",
        flag: "--publish-users",
        kind: Kind::Value,
        default: "",
        help: "comma-separated REMOTE_USERs allowed to POST (default: none)",
    },
    Key {
        json: "listen",
        env: "NPH_EVENTS_LISTEN",
        flag: "--listen",
        kind: Kind::Value,
        default: "127.0.0.1:8080",
        help: "serve: address:port to listen on",
    },
    Key {
        json: "allow_remote",
        env: "NPH_EVENTS_ALLOW_REMOTE",
        flag: "--allow-remote",
        kind: Kind::Bool,
        default: "false",
        help: "serve: allow a non-loopback --listen address",
    },
    Key {
        json: "max_connections",
        env: "NPH_EVENTS_MAX_CONNECTIONS",
        flag: "--max-connections",
        kind: Kind::Value,
        default: "1024",
        help: "serve: most connections at once, more get 503",
    },
    Key {
        json: "header_timeout",
        env: "NPH_EVENTS_HEADER_TIMEOUT",
        flag: "--header-timeout",
        kind: Kind::Value,
        default: "10",
        help: "serve: seconds for a request head to arrive",
    },
    Key {
        json: "body_timeout",
        env: "NPH_EVENTS_BODY_TIMEOUT",
        flag: "--body-timeout",
        kind: Kind::Value,
        default: "10",
        help: "serve: seconds for a whole request body to arrive",
    },
    Key {
        json: "max_per_client",
        env: "NPH_EVENTS_MAX_PER_CLIENT",
        flag: "--max-per-client",
        kind: Kind::Value,
        default: "32",
        help: "serve: most connections at once from one address, more get 429",
    },
    Key {
        json: "connect_rate",
        env: "NPH_EVENTS_CONNECT_RATE",
        flag: "--connect-rate",
        kind: Kind::Value,
        default: "50",
        help: "serve: new connections per second from one address, more get 429",
    },
    Key {
        json: "ws",
        env: "NPH_EVENTS_WS",
        flag: "--ws",
        kind: Kind::Bool,
        default: "false",
        help: "accept WebSocket upgrades",
    },
    Key {
        json: "ws_mode",
        env: "NPH_EVENTS_WS_MODE",
        flag: "--ws-mode",
        kind: Kind::Value,
        default: "relay",
        help: "WebSocket mode: relay or echo",
    },
    Key {
        json: "ws_relay",
        env: "NPH_EVENTS_WS_RELAY",
        flag: "--ws-relay",
        kind: Kind::Value,
        default: "auth",
        help: "who may publish over WebSocket: off, auth or open",
    },
    Key {
        json: "ws_rate",
        env: "NPH_EVENTS_WS_RATE",
        flag: "--ws-rate",
        kind: Kind::Value,
        default: "10",
        help: "messages per second a WebSocket client may publish",
    },
    Key {
        json: "origins",
        env: "NPH_EVENTS_ORIGINS",
        flag: "--origins",
        kind: Kind::Value,
        default: "",
        help: "comma-separated origins of other sites' pages that may read (CORS), open a WebSocket and publish; * = any page, without credentials",
    },
    Key {
        json: "ws_origins",
        env: "NPH_EVENTS_WS_ORIGINS",
        flag: "--ws-origins",
        kind: Kind::Value,
        default: "",
        help: "the old name of origins (same list)",
    },
    Key {
        json: "subscribe_secret",
        env: "NPH_EVENTS_SUBSCRIBE_SECRET",
        flag: "--subscribe-secret",
        kind: Kind::Value,
        default: "",
        help: "key of signed subscribe URLs, 16 bytes or more (default: none, signed URLs refused)",
    },
    Key {
        json: "grip_key",
        env: "NPH_EVENTS_GRIP_KEY",
        flag: "--grip-key",
        kind: Kind::Value,
        default: "",
        help: "key GRIP proxies sign requests with (Pushpin sig_key), 16 bytes or more; base64:… for binary (default: none, no GRIP)",
    },
    Key {
        json: "grip_key_file",
        env: "NPH_EVENTS_GRIP_KEY_FILE",
        flag: "--grip-key-file",
        kind: Kind::Value,
        default: "",
        help: "file holding grip_key (its first line), instead of the key itself",
    },
    Key {
        json: "grip_iss",
        env: "NPH_EVENTS_GRIP_ISS",
        flag: "--grip-iss",
        kind: Kind::Value,
        default: "pushpin",
        help: "issuer a Grip-Sig must name (Pushpin sig_iss)",
    },
    Key {
        json: "grip_publish",
        env: "NPH_EVENTS_GRIP_PUBLISH",
        flag: "--grip-publish",
        kind: Kind::Value,
        default: "",
        help: "comma-separated GRIP publish URLs, one per proxy, e.g. http://127.0.0.1:5561/publish/ (default: none)",
    },
    Key {
        json: "channels",
        env: "NPH_EVENTS_CHANNELS",
        flag: "--channels",
        kind: Kind::Value,
        default: "",
        help: "channel policies, pattern=public|signed|user, first match wins (default: all public)",
    },
    Key {
        json: "hosts",
        env: "NPH_EVENTS_HOSTS",
        flag: "--hosts",
        kind: Kind::Value,
        default: "",
        help: "comma-separated host names of the site, for the same-origin rule",
    },
    Key {
        json: "publish_rate",
        env: "NPH_EVENTS_PUBLISH_RATE",
        flag: "--publish-rate",
        kind: Kind::Value,
        default: "200",
        help: "publishes per second from clients, whole site",
    },
    Key {
        json: "queue_budget",
        env: "NPH_EVENTS_QUEUE_BUDGET",
        flag: "--queue-budget",
        kind: Kind::Value,
        default: "67108864",
        help: "serve: bytes queued for slow clients, all together",
    },
    Key {
        json: "metrics",
        env: "NPH_EVENTS_METRICS",
        flag: "--metrics",
        kind: Kind::Value,
        default: "local",
        help: "serve: who may read /metrics: local (loopback, not through a proxy), any or off",
    },
    Key {
        json: "metrics_channels",
        env: "NPH_EVENTS_METRICS_CHANNELS",
        flag: "--metrics-channels",
        kind: Kind::Bool,
        default: "false",
        help: "serve: per-channel series in /metrics, labelled with channel names",
    },
];

/// Name of the variable that points at the JSON config file.
pub const CONFIG_VAR: &str = "NPH_EVENTS_CONFIG";

/// A setting that could not be used, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the bad value was found, e.g. `NPH_EVENTS_INTERVAL` or
    /// `"interval" in /etc/nph-events.json`.
    pub setting: String,
    /// What was wrong, for the log line.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting {}: {}", self.setting, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn bad(setting: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        reason: reason.into(),
    }
}

impl Config {
    /// Sets one value given as text; `origin` names it in errors.
    pub fn set(&mut self, key: &Key, raw: &str, origin: &str) -> Result<(), ConfigError> {
        let err = |reason: String| bad(format!("{origin}={raw:?}"), reason);
        match key.json {
            "interval" => self.interval = seconds(raw, 0.0, 86_400.0).map_err(err)?,
            "heartbeat" => self.heartbeat = seconds(raw, 0.01, 3_600.0).map_err(err)?,
            "retry" => self.retry_ms = millis(raw).map_err(err)?,
            "tick_event" => self.tick_event = event_name(raw).map_err(err)?,
            "max_duration" if raw.trim() == "auto" => {
                self.max_duration = None;
                self.max_duration_auto = true;
            }
            "max_duration" => {
                let d = seconds(raw, 0.0, 31_536_000.0).map_err(err)?;
                self.max_duration = (!d.is_zero()).then_some(d);
                self.max_duration_auto = false;
            }
            "max_duration_jitter" => {
                self.max_duration_jitter = fraction(raw, 0.9).map_err(err)?;
            }
            "output" => self.output = output(raw).map_err(err)?,
            "spool" => self.spool = Some(spool_path(raw).map_err(err)?),
            "retain_events" => self.retention.events = count(raw, 1, 10_000_000).map_err(err)?,
            "retain_bytes" => self.retention.bytes = count(raw, 4096, 1 << 34).map_err(err)?,
            "max_body" => self.max_body = count(raw, 1, 16 << 20).map_err(err)?,
            "token_sha256" => self.token_sha256 = Some(sha256_hex(raw).map_err(err)?),
            "publish_users" => self.publish_users = users(raw).map_err(err)?,
            "listen" => {
                self.listen = raw
                    .trim()
                    .parse()
                    .map_err(|_| err("expected address:port, e.g. 127.0.0.1:8080".to_owned()))?
            }
            "allow_remote" => self.allow_remote = boolean(raw).map_err(err)?,
            "max_connections" => {
                self.max_connections = count(raw, 1, 1_000_000).map_err(err)? as usize
            }
            "header_timeout" => self.header_timeout = seconds(raw, 0.05, 3_600.0).map_err(err)?,
            "body_timeout" => self.body_timeout = seconds(raw, 0.05, 3_600.0).map_err(err)?,
            "connect_rate" => self.connect_rate = count(raw, 1, 1_000_000).map_err(err)? as u32,
            "max_per_client" => {
                self.max_per_client = count(raw, 1, 1_000_000).map_err(err)? as usize
            }
            "ws" => self.ws = boolean(raw).map_err(err)?,
            "ws_mode" => {
                self.ws_mode = match raw.trim() {
                    "relay" => WsMode::Relay,
                    "echo" => WsMode::Echo,
                    _ => return Err(err("expected relay or echo".to_owned())),
                }
            }
            "ws_relay" => {
                self.ws_relay = match raw.trim() {
                    "off" => Relay::Off,
                    "auth" => Relay::Auth,
                    "open" => Relay::Open,
                    _ => return Err(err("expected off, auth or open".to_owned())),
                }
            }
            "ws_rate" => self.ws_rate = count(raw, 1, 10_000).map_err(err)? as u32,
            "origins" | "ws_origins" => self.origins = users(raw).map_err(err)?,
            "subscribe_secret" => self.subscribe_secret = Secret::parse(raw).map_err(err)?,
            "channels" => self.channels = parse_rules(raw).map_err(err)?,
            "grip_key" => self.grip_key = Secret::parse_key(raw).map_err(err)?,
            "grip_key_file" => {
                self.grip_key = match raw.trim() {
                    "" => None,
                    path => {
                        let text = std::fs::read_to_string(path)
                            .map_err(|e| err(format!("cannot read {path}: {e}")))?;
                        let key = text.lines().next().unwrap_or("");
                        Secret::parse_key(key).map_err(err)?
                    }
                }
            }
            "grip_iss" => self.grip_iss = raw.trim().to_owned(),
            "grip_publish" => self.grip_publish = publish_urls(raw).map_err(err)?,
            "hosts" => self.hosts = users(raw).map_err(err)?,
            "publish_rate" => self.publish_rate = count(raw, 1, 1_000_000).map_err(err)? as u32,
            "queue_budget" => {
                self.queue_budget = count(raw, 1 << 20, 1 << 40).map_err(err)? as usize
            }
            "metrics" => {
                self.metrics = match raw.trim() {
                    "local" => MetricsAccess::Local,
                    "any" => MetricsAccess::Any,
                    "off" => MetricsAccess::Off,
                    _ => return Err(err("expected local, any or off".to_owned())),
                }
            }
            "metrics_channels" => self.metrics_channels = boolean(raw).map_err(err)?,
            other => return Err(bad(origin, format!("unknown key {other}"))),
        }
        Ok(())
    }

    /// Applies a JSON config file's text. Unknown keys are errors: a typo
    /// must not silently fall back to a default.
    pub fn apply_json(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            bad(
                format!("{CONFIG_VAR} file {path}"),
                format!("not JSON: {e}"),
            )
        })?;
        let Some(map) = value.as_object() else {
            return Err(bad(
                format!("{CONFIG_VAR} file {path}"),
                "expected a JSON object",
            ));
        };
        for (name, v) in map {
            let origin = format!("{name:?} in {path}");
            let key = KEYS
                .iter()
                .find(|k| k.json == name)
                .ok_or_else(|| bad(&origin, format!("unknown key; known: {}", json_keys())))?;
            let raw = match (v, key.kind) {
                (serde_json::Value::String(s), _) => s.clone(),
                (serde_json::Value::Number(n), Kind::Value) => n.to_string(),
                (serde_json::Value::Bool(b), Kind::Bool) => b.to_string(),
                (_, Kind::Bool) => return Err(bad(&origin, "expected true or false")),
                _ => return Err(bad(&origin, "expected a string or a number")),
            };
            self.set(key, &raw, &origin)?;
        }
        Ok(())
    }

    /// Applies `NPH_EVENTS_*` variables. An unknown `NPH_EVENTS_` name is an
    /// error for the same reason as an unknown JSON key.
    pub fn apply_env<'a>(
        &mut self,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), ConfigError> {
        for (name, raw) in vars {
            if !name.starts_with("NPH_EVENTS_") || name == CONFIG_VAR {
                continue;
            }
            let key = KEYS
                .iter()
                .find(|k| k.env == name)
                .ok_or_else(|| bad(name, format!("unknown variable; known: {}", env_names())))?;
            self.set(key, raw, name)?;
        }
        Ok(())
    }
}

/// A flag given on the command line: the setting, its raw value and the
/// flag as written (for error messages).
pub type Flag = (&'static Key, String, String);

/// Builds the configuration in precedence order: defaults, the JSON file
/// (`file`, else the one `NPH_EVENTS_CONFIG` names), the `NPH_EVENTS_*`
/// variables among `vars`, then `flags`.
pub fn load<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    file: Option<&str>,
    flags: &[Flag],
) -> Result<Config, ConfigError> {
    load_from(vars, file, flags, SITE_FILE)
}

/// The config file shared by the site's CGIs and a shell on the host,
/// read when `NPH_EVENTS_CONFIG` is not set and the file exists: settings
/// kept there reach `nph-events publish` without retyping, and take
/// effect for new streams without reloading the web server.
/// `NPH_EVENTS_CONFIG=` (empty) turns it off.
pub const SITE_FILE: &str = "/etc/nph-events.json";

/// The config file a run reads: `file` (`--config`), else the one
/// `NPH_EVENTS_CONFIG` names (none if empty), else `site_file` if it
/// exists.
pub fn file_in_use<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    file: Option<&str>,
    site_file: &str,
) -> Option<String> {
    if let Some(f) = file {
        return Some(f.to_owned()).filter(|f| !f.is_empty());
    }
    let named = vars.into_iter().find(|(k, _)| *k == CONFIG_VAR);
    match named {
        Some((_, v)) => Some(v.to_owned()).filter(|v| !v.is_empty()),
        None => std::path::Path::new(site_file)
            .exists()
            .then(|| site_file.to_owned()),
    }
}

/// [`load`] with another shared file than [`SITE_FILE`] (tests).
pub fn load_from<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    file: Option<&str>,
    flags: &[Flag],
    site_file: &str,
) -> Result<Config, ConfigError> {
    let mut env: Vec<(&str, &str)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with("NPH_EVENTS_"))
        .collect();
    env.sort_unstable();
    let mut config = Config::default();
    if let Some(path) = file_in_use(env.iter().copied(), file, site_file) {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            bad(
                format!("{CONFIG_VAR}={path:?}"),
                format!("cannot read the file: {e}"),
            )
        })?;
        config.apply_json(&text, &path)?;
    }
    config.apply_env(env)?;
    for (key, raw, flag) in flags {
        config.set(key, raw, flag)?;
    }
    Ok(config)
}

/// The key a command-line flag names.
pub fn flag_key(flag: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.flag == flag)
}

fn json_keys() -> String {
    KEYS.iter().map(|k| k.json).collect::<Vec<_>>().join(", ")
}

fn env_names() -> String {
    let mut names: Vec<_> = KEYS.iter().map(|k| k.env).collect();
    names.push(CONFIG_VAR);
    names.join(", ")
}

/// Parses decimal seconds within `[min, max]`; `0` is always allowed (off).
fn seconds(raw: &str, min: f64, max: f64) -> Result<Duration, String> {
    let expect = || format!("expected seconds from {min} to {max}, e.g. 10 or 0.5");
    let v: f64 = raw.trim().parse().map_err(|_| expect())?;
    let zero_ok = min == 0.0;
    if !v.is_finite() || v > max || v < 0.0 || (v < min && !(zero_ok && v == 0.0)) {
        return Err(expect());
    }
    Ok(Duration::from_secs_f64(v))
}

/// A fraction from 0 to `max`.
fn fraction(raw: &str, max: f64) -> Result<f64, String> {
    let v: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("expected a fraction from 0 to {max}, e.g. 0.5"))?;
    if !(0.0..=max).contains(&v) {
        return Err(format!("expected a fraction from 0 to {max}, e.g. 0.5"));
    }
    Ok(v)
}

fn millis(raw: &str) -> Result<u64, String> {
    let expect = || "expected whole milliseconds from 0 to 86400000".to_owned();
    let t = raw.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expect());
    }
    t.parse::<u64>()
        .ok()
        .filter(|v| *v <= 86_400_000)
        .ok_or_else(expect)
}

fn event_name(raw: &str) -> Result<String, String> {
    if raw.is_empty() || raw.len() > 64 {
        return Err("expected 1 to 64 bytes".to_owned());
    }
    sse::check_field(raw).map_err(|e| e.to_string())?;
    Ok(raw.to_owned())
}

fn count(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    let t = raw.trim();
    t.parse::<u64>()
        .ok()
        .filter(|v| t.bytes().all(|b| b.is_ascii_digit()) && (min..=max).contains(v))
        .ok_or_else(|| format!("expected a whole number from {min} to {max}"))
}

fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

fn spool_path(raw: &str) -> Result<PathBuf, String> {
    let max = crate::spool::MAX_ROOT_LEN;
    if !raw.starts_with('/') || raw.len() > max {
        return Err(format!("expected an absolute path of at most {max} bytes"));
    }
    Ok(PathBuf::from(raw))
}

fn sha256_hex(raw: &str) -> Result<[u8; 32], String> {
    let t = raw.trim().as_bytes();
    let expect = || "expected 64 hex digits (sha256sum of the token)".to_owned();
    // from_str_radix takes a sign: check the digits first.
    if t.len() != 64 || !t.iter().all(u8::is_ascii_hexdigit) {
        return Err(expect());
    }
    let mut out = [0u8; 32];
    for (i, pair) in t.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).map_err(|_| expect())?;
        out[i] = u8::from_str_radix(hex, 16).map_err(|_| expect())?;
    }
    Ok(out)
}

/// GRIP publish endpoints: `http://host:port/path` URLs.
fn publish_urls(raw: &str) -> Result<Vec<String>, String> {
    let list = users(raw)?;
    for url in &list {
        crate::grip::endpoint::Endpoint::parse(url)?;
    }
    Ok(list)
}

fn users(raw: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if list
        .iter()
        .any(|u| u.len() > 256 || u.contains(['\r', '\n', '\0']))
    {
        return Err("user names must be one line of at most 256 bytes".to_owned());
    }
    Ok(list)
}

fn output(raw: &str) -> Result<Output, String> {
    match raw.trim() {
        "auto" => Ok(Output::Auto),
        "nph" => Ok(Output::Nph),
        "cgi" => Ok(Output::Cgi),
        _ => Err("expected auto, nph or cgi".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_site_file_is_read_unless_another_or_none_is_named() {
        let dir = std::env::temp_dir().join(format!("nph-site-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let site = dir.join("site.json");
        let other = dir.join("other.json");
        std::fs::write(&site, r#"{"heartbeat": 7}"#).unwrap();
        std::fs::write(&other, r#"{"heartbeat": 9}"#).unwrap();
        let site_s = site.to_str().unwrap();
        let other_s = other.to_str().unwrap();
        let hb = |vars: &[(&str, &str)], file: Option<&str>| {
            load_from(vars.iter().copied(), file, &[], site_s)
                .unwrap()
                .heartbeat
                .as_secs()
        };
        assert_eq!(hb(&[], None), 7, "the shared file by default");
        assert_eq!(hb(&[(CONFIG_VAR, other_s)], None), 9);
        assert_eq!(hb(&[(CONFIG_VAR, "")], None), 15, "empty: no file at all");
        assert_eq!(hb(&[], Some(other_s)), 9, "--config wins");
        assert_eq!(
            hb(&[("NPH_EVENTS_HEARTBEAT", "3")], None),
            3,
            "the environment still wins over the file"
        );
        std::fs::remove_file(&site).unwrap();
        assert_eq!(hb(&[], None), 15, "a missing shared file is no error");
        assert_eq!(file_in_use([], None, site_s), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn key(json: &str) -> &'static Key {
        KEYS.iter().find(|k| k.json == json).unwrap()
    }

    #[test]
    fn fractional_seconds_and_zero() {
        let mut c = Config::default();
        c.set(key("interval"), "0.5", "x").unwrap();
        assert_eq!(c.interval, Duration::from_millis(500));
        c.set(key("interval"), "0", "x").unwrap();
        assert!(c.interval.is_zero());
        c.set(key("max_duration"), "0", "x").unwrap();
        assert_eq!(c.max_duration, None);
        c.set(key("max_duration"), "2.5", "x").unwrap();
        assert_eq!(c.max_duration, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let mut c = Config::default();
        for (k, v) in [
            ("interval", "abc"),
            ("interval", "-1"),
            ("interval", "NaN"),
            ("interval", "inf"),
            ("heartbeat", "0"),
            ("heartbeat", "99999"),
            ("retry", "1.5"),
            ("retry", "-3"),
            ("retry", ""),
            ("tick_event", "a\nb"),
            ("tick_event", ""),
            ("output", "raw"),
            ("spool", "relative/dir"),
            ("retain_events", "0"),
            ("retain_bytes", "10"),
            ("max_body", "1.5"),
            ("token_sha256", "abc"),
            ("token_sha256", &"g".repeat(64)),
            ("metrics", "public"),
            ("metrics_channels", "maybe"),
        ] {
            let e = c.set(key(k), v, key(k).env).unwrap_err();
            assert!(e.to_string().contains(key(k).env), "{e}");
        }
        assert_eq!(c, Config::default(), "a failed set changes nothing");
    }

    #[test]
    fn publish_settings() {
        let mut c = Config::default();
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        c.set(key("token_sha256"), hash, "x").unwrap();
        assert_eq!(c.token_sha256.unwrap()[..2], [0x9f, 0x86]);
        // A sign is not a hex digit (from_str_radix would take "+f").
        assert!(c.set(key("token_sha256"), &"+f".repeat(32), "x").is_err());
        c.set(key("publish_users"), " alice, bob ,,", "x").unwrap();
        assert_eq!(c.publish_users, vec!["alice", "bob"]);
        c.set(key("retain_events"), "50", "x").unwrap();
        assert_eq!(c.retention.events, 50);
        c.set(key("spool"), "/var/spool/nph-events", "x").unwrap();
        assert_eq!(
            c.spool.as_deref(),
            Some(std::path::Path::new("/var/spool/nph-events"))
        );
    }

    #[test]
    fn env_applies_and_rejects_unknown_names() {
        let mut c = Config::default();
        c.apply_env([
            ("NPH_EVENTS_HEARTBEAT", "0.25"),
            ("PATH", "/bin"),
            ("NPH_EVENTS_CONFIG", "/nonexistent"),
        ])
        .unwrap();
        assert_eq!(c.heartbeat, Duration::from_millis(250));
        let e = c.apply_env([("NPH_EVENTS_INTERVALL", "1")]).unwrap_err();
        assert_eq!(e.setting, "NPH_EVENTS_INTERVALL");
    }

    #[test]
    fn json_file_numbers_strings_and_errors() {
        let mut c = Config::default();
        c.apply_json(
            r#"{"interval": 2, "tick_event": "beat", "retry": "500"}"#,
            "f",
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.tick_event, "beat");
        assert_eq!(c.retry_ms, 500);
        assert!(c.apply_json("[1]", "f").is_err());
        assert!(c.apply_json("{", "f").is_err());
        assert!(c.apply_json(r#"{"intervl": 1}"#, "f").is_err());
        assert!(c.apply_json(r#"{"interval": true}"#, "f").is_err());
    }

    #[test]
    fn json_booleans_wherever_a_flag_exists() {
        let mut c = Config::default();
        c.apply_json(r#"{"ws": true, "allow_remote": true}"#, "f")
            .unwrap();
        assert!(c.ws && c.allow_remote);
        c.apply_json(r#"{"ws": false, "allow_remote": "no"}"#, "f")
            .unwrap();
        assert!(!c.ws && !c.allow_remote);
        let e = c.apply_json(r#"{"ws": 1}"#, "f").unwrap_err();
        assert!(e.reason.contains("true or false"), "{e}");
        for k in KEYS.iter().filter(|k| k.kind == Kind::Bool) {
            let mut c = Config::default();
            c.apply_json(&format!(r#"{{"{}": true}}"#, k.json), "f")
                .unwrap();
            assert_ne!(c, Config::default(), "{} took a JSON true", k.json);
        }
    }

    /// A value for every setting, other than its default.
    fn sample(json: &str) -> &'static str {
        match json {
            "interval" | "heartbeat" | "header_timeout" | "body_timeout" | "max_duration" => "2.5",
            "max_duration_jitter" => "0.25",
            "retry" | "retain_events" | "max_body" | "ws_rate" | "max_connections" => "77",
            "retain_bytes" => "8192",
            "tick_event" => "beat",
            "output" => "nph",
            "spool" => "/var/spool/x",
            "token_sha256" => "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "publish_users" | "origins" | "ws_origins" | "hosts" => "a,b",
            "subscribe_secret" => "sixteen or more bytes",
            "channels" => "user-{REMOTE_USER}=user,*=signed",
            "grip_key" => "base64:c2l4dGVlbiBvciBtb3JlIGJ5dGVz",
            "grip_key_file" => "/proc/sys/kernel/random/boot_id",
            "grip_iss" => "proxy",
            "grip_publish" => "http://127.0.0.1:5561/publish/",
            "publish_rate" | "max_per_client" | "connect_rate" => "77",
            "queue_budget" => "2097152",
            "listen" => "127.0.0.1:9",
            "allow_remote" | "ws" | "metrics_channels" => "true",
            "metrics" => "any",
            "ws_mode" => "echo",
            "ws_relay" => "open",
            other => panic!("no sample value for {other}: add one"),
        }
    }

    /// Every setting's default, set by its JSON key, its variable and its
    /// flag, gives the same configuration; the defaults the table shows are
    /// the real ones.
    #[test]
    fn every_key_round_trips_through_file_env_and_flag() {
        let dir = std::env::temp_dir().join(format!("nph-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for k in KEYS {
            let mut d = Config::default();
            if !k.default.is_empty() {
                d.set(k, k.default, "default").unwrap();
            }
            assert_eq!(d, Config::default(), "{}: documented default", k.json);
            let v = sample(k.json);
            let file = dir.join(format!("{}.json", k.json));
            let json = match k.kind {
                Kind::Bool => format!(r#"{{"{}": {v}}}"#, k.json),
                Kind::Value => format!(r#"{{"{}": "{v}"}}"#, k.json),
            };
            std::fs::write(&file, json).unwrap();
            let path = file.to_str().unwrap();
            let from_file = load([], Some(path), &[]).unwrap();
            let from_env = load([(k.env, v)], None, &[]).unwrap();
            let flag = (flag_key(k.flag).unwrap(), v.to_owned(), k.flag.to_owned());
            let from_flag = load([], None, &[flag]).unwrap();
            assert_ne!(from_file, Config::default(), "{}", k.json);
            assert_eq!(from_file, from_env, "{}", k.env);
            assert_eq!(from_file, from_flag, "{}", k.flag);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The README's settings table lists exactly the table's keys, with
    /// their variable, flag and default.
    #[test]
    fn readme_table_matches_the_keys() {
        let readme = include_str!("../README.md");
        let rows: Vec<Vec<String>> = readme
            .lines()
            .filter(|l| l.starts_with("| `NPH_EVENTS_") && !l.contains("NPH_EVENTS_CONFIG"))
            .map(|l| {
                l.split('|')
                    .map(|c| c.trim().trim_matches('`').to_owned())
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), KEYS.len(), "one README row per setting");
        for k in KEYS {
            let row = rows
                .iter()
                .find(|r| r[1] == k.env)
                .unwrap_or_else(|| panic!("{} missing from the README", k.env));
            assert_eq!((row[2].as_str(), row[3].as_str()), (k.json, k.flag));
            if !k.default.is_empty() {
                assert_eq!(row[4], k.default, "{} default", k.env);
            }
        }
    }
}
