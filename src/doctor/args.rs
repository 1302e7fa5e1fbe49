//! The doctor's command line.

use std::path::PathBuf;

use super::target::Target;

/// What to test and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub target: Target,
    pub token: Option<String>,
    pub channel: Option<String>,
    /// How long to watch the stream.
    pub seconds: f64,
    pub origin: Option<String>,
    pub http2: bool,
    pub http2_prior: bool,
    pub json: bool,
    /// A private CA's certificate (PEM) for curl to trust (`https://`).
    pub cacert: Option<PathBuf>,
}

/// Watch this long by default: with the default 10 s ticker three ticks
/// (at 0, 10 and 20 s) are needed to see whether they come in bursts.
pub const DEFAULT_SECONDS: f64 = 22.0;
/// With probes, which the doctor sends itself, less is enough.
pub const DEFAULT_SECONDS_PROBES: f64 = 15.0;
/// The longest watch allowed.
pub const MAX_SECONDS: f64 = 600.0;

/// Parses the arguments after `doctor`; the error is one line.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut url = None;
    let mut token = None;
    let mut channel = None;
    let mut seconds = None;
    let mut origin = None;
    let mut cacert = None;
    let (mut http2, mut http2_prior, mut json) = (false, false, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{flag} needs {what}"))
        };
        match flag {
            "--token" => token = Some(value("a token")?),
            "--token-file" => {
                let path = value("a file")?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("--token-file {path}: {e}"))?;
                let line = text.lines().next().unwrap_or("").trim().to_owned();
                if line.is_empty() {
                    return Err(format!("--token-file {path}: the file is empty"));
                }
                token = Some(line);
            }
            "--channel" => {
                let c = value("a channel name")?;
                crate::spool::check_channel(&c).map_err(|e| format!("--channel {c:?}: {e}"))?;
                channel = Some(c);
            }
            "--seconds" => {
                let v = value("a number of seconds")?;
                let n: f64 = v
                    .parse()
                    .map_err(|_| format!("--seconds {v:?} is not a number"))?;
                if !(1.0..=MAX_SECONDS).contains(&n) {
                    return Err(format!(
                        "--seconds must be from 1 to {MAX_SECONDS}, not {v}"
                    ));
                }
                seconds = Some(n);
            }
            "--origin" => {
                let o = value("an origin (https://example.org)")?;
                if !(o.starts_with("http://") || o.starts_with("https://")) || o.trim() != o {
                    return Err(format!(
                        "--origin {o:?} is not an origin like https://example.org"
                    ));
                }
                origin = Some(o.trim_end_matches('/').to_owned());
            }
            "--cacert" => cacert = Some(ca_file(&value("a CA certificate file (PEM)")?)?),
            "--http2" if inline.is_none() => http2 = true,
            "--http2-prior-knowledge" if inline.is_none() => http2_prior = true,
            "--json" if inline.is_none() => json = true,
            f if f.starts_with('-') => {
                return Err(format!("unknown flag {arg:?} (see nph-events help doctor)"))
            }
            _ if url.is_none() => url = Some(Target::parse(arg)?),
            _ => return Err(format!("unexpected argument {arg:?}: one URL only")),
        }
    }
    let target = url.ok_or(
        "give the stream's URL, e.g. nph-events doctor https://example.org/cgi-bin/nph-events.cgi",
    )?;
    if http2 && http2_prior {
        return Err("--http2 and --http2-prior-knowledge exclude each other".into());
    }
    if http2_prior && target.https {
        return Err(
            "--http2-prior-knowledge is for http:// (h2c); https:// negotiates HTTP/2 by itself"
                .into(),
        );
    }
    if cacert.is_some() && !target.https {
        return Err(
            "--cacert is for https:// URLs (curl checks the server's certificate with it); \
             this URL is http://"
                .into(),
        );
    }
    let default = if token.is_some() {
        DEFAULT_SECONDS_PROBES
    } else {
        DEFAULT_SECONDS
    };
    Ok(Options {
        target,
        token,
        channel,
        seconds: seconds.unwrap_or(default),
        origin,
        http2,
        http2_prior,
        json,
        cacert,
    })
}

/// The `--cacert` file, checked here so that a wrong path is one clear
/// line rather than a curl error on every request. Made absolute, so
/// that the report's `using:` line names it unambiguously.
fn ca_file(path: &str) -> Result<PathBuf, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            use std::io::Read;
            // A CA bundle is a few hundred KiB; enough to find a certificate.
            f.take(16 << 20).read_to_end(&mut bytes)
        })
        .map_err(|e| format!("--cacert {path}: {e}"))?;
    // "-----BEGIN CERTIFICATE-----", or OpenSSL's TRUSTED CERTIFICATE.
    let marker = b"CERTIFICATE-----";
    if !bytes.windows(marker.len()).any(|w| w == marker) {
        return Err(format!(
            "--cacert {path}: no PEM certificate in it (-----BEGIN CERTIFICATE-----); \
             convert a DER file with: openssl x509 -inform der -in FILE -out FILE.pem"
        ));
    }
    std::path::absolute(path).map_err(|e| format!("--cacert {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_flags_and_refuses_bad_ones() {
        let o = parse(&args(&[
            "http://h/e.cgi",
            "--token",
            "t",
            "--seconds=4",
            "--json",
            "--http2",
        ]))
        .unwrap();
        assert_eq!(
            (o.token.as_deref(), o.seconds, o.json, o.http2),
            (Some("t"), 4.0, true, true)
        );
        assert_eq!(
            parse(&args(&["http://h/"])).unwrap().seconds,
            DEFAULT_SECONDS
        );
        for bad in [
            &["--seconds", "4"][..],
            &["http://h/", "--seconds", "0"],
            &["http://h/", "--seconds", "x"],
            &["http://h/", "--seconds"],
            &["http://h/", "--bogus"],
            &["http://h/", "http://g/"],
            &["http://h/", "--channel", "a/b"],
            &["http://h/", "--origin", "example.org"],
            &["http://h/", "--http2", "--http2-prior-knowledge"],
            &["https://h/", "--http2-prior-knowledge"],
            &["http://h/", "--json=1"],
            &["nonsense"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cacert_must_be_a_pem_file_and_an_https_url() {
        let dir = std::env::temp_dir().join(format!("nph-doctor-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let der = dir.join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0x01, 0x0a]).unwrap();
        let pem_s = pem.to_str().unwrap();
        let o = parse(&args(&["https://h/", "--cacert", pem_s])).unwrap();
        assert_eq!(o.cacert.as_deref(), Some(pem.as_path()));
        let o = parse(&args(&[&format!("--cacert={pem_s}"), "https://h/"])).unwrap();
        assert_eq!(o.cacert.as_deref(), Some(pem.as_path()));
        assert_eq!(parse(&args(&["https://h/"])).unwrap().cacert, None);
        let missing = dir.join("missing.pem");
        let e = parse(&args(&[
            "https://h/",
            "--cacert",
            missing.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(
            e.starts_with("--cacert ") && e.contains("No such file"),
            "{e}"
        );
        let e = parse(&args(&["https://h/", "--cacert", der.to_str().unwrap()])).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = parse(&args(&["http://h/", "--cacert", pem_s])).unwrap_err();
        assert!(e.contains("--cacert is for https://"), "{e}");
        assert!(parse(&args(&["https://h/", "--cacert"])).is_err());
        assert_eq!(e.lines().count(), 1, "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
