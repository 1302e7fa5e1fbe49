//! Publishing end to end through real servers: an authenticated POST
//! reaches every connected SSE client; rejected POSTs append nothing.

mod support;

use std::time::Duration;

use support::servers::{available, Kind, Server};
use support::{body_of, parse_sse, Chunks};

const TOKEN: &str = "s3cret-publish-token";

fn settings(hash: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NPH_EVENTS_INTERVAL", "0".into()),
        ("NPH_EVENTS_HEARTBEAT", "1".into()),
        ("NPH_EVENTS_MAX_BODY", "1000".into()),
        ("NPH_EVENTS_TOKEN_SHA256", hash.into()),
        ("NPH_EVENTS_PUBLISH_USERS", "alice".into()),
    ]
}

fn status(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

/// Everything appended to `channel` in the server's spool.
fn spool_text(server: &Server, channel: &str) -> String {
    let dir = server.spool().join("channels").join(channel);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sse"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn fan_out(kind: Kind, script: &str) {
    if !available(kind) {
        return;
    }
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let owned = settings(&hash);
    let s: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(kind, &[script], &s);
    let path = format!("/cgi-bin/{script}?channel=room");
    let mut clients: Vec<(std::net::TcpStream, Chunks)> =
        (0..5).map(|_| server.request("GET", &path, &[])).collect();
    for (_, r) in clients.iter_mut() {
        assert!(
            r.until("retry:", Duration::from_secs(3)),
            "{}\n{}",
            r.text(),
            server.logs()
        );
    }
    let json = "Content-Type: application/json";
    let body = br#"{"event":"chat","data":"hello everyone"}"#;

    // Rejections first: nothing may be appended.
    let no_auth = server.send("POST", &path, &[json], body);
    assert!(
        status(&no_auth).starts_with("HTTP/1.1 401"),
        "{no_auth}\n{}",
        server.logs()
    );
    assert!(no_auth.contains("WWW-Authenticate: Bearer"), "{no_auth}");
    let wrong = server.send("POST", &path, &[json, "Authorization: Bearer nope"], body);
    assert!(status(&wrong).starts_with("HTTP/1.1 403"), "{wrong}");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let big = vec![b'x'; 2000];
    let too_big = server.send("POST", &path, &["Content-Type: text/plain", &auth], &big);
    assert!(status(&too_big).starts_with("HTTP/1.1 413"), "{too_big}");
    let bad_type = server.send("POST", &path, &["Content-Type: image/png", &auth], b"x");
    assert!(status(&bad_type).starts_with("HTTP/1.1 415"), "{bad_type}");
    assert_eq!(
        spool_text(&server, "room"),
        "",
        "rejected publishes appended something"
    );

    let ok = server.send("POST", &path, &[json, &auth], body);
    assert!(
        status(&ok).starts_with("HTTP/1.1 201"),
        "{ok}\n{}",
        server.logs()
    );
    let reply: serde_json::Value =
        serde_json::from_str(body_of(&ok).trim()).unwrap_or_else(|e| panic!("{e}: {ok}"));
    let id = reply["id"].as_str().unwrap().to_owned();
    for (i, (_, r)) in clients.iter_mut().enumerate() {
        assert!(
            r.until("hello everyone", Duration::from_secs(3)),
            "client {i}: {}",
            r.text()
        );
        let (events, _) = parse_sse(&body_of(&r.text()));
        assert_eq!(events.len(), 1, "client {i}: {events:?}");
        assert_eq!(events[0].event, "chat");
        assert_eq!(events[0].data, "hello everyone");
        assert_eq!(events[0].last_event_id, id);
    }
}

#[test]
fn apache_cgid_event_post_fans_out() {
    fan_out(Kind::ApacheCgidEvent, "nph-events.cgi");
}

#[test]
fn apache_cgi_prefork_post_fans_out() {
    fan_out(Kind::ApacheCgiPrefork, "events.cgi");
}

#[test]
fn lighttpd_post_fans_out() {
    fan_out(Kind::Lighttpd, "nph-events.cgi");
}

/// Apache authenticates the user (Basic); `REMOTE_USER` decides.
#[test]
fn apache_basic_auth_remote_user_may_publish() {
    if !available(Kind::ApacheCgidEvent) {
        return;
    }
    let hash = nph_events::auth::token_hash_hex(TOKEN);
    let owned = settings(&hash);
    let s: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let file = support::servers::htpasswd("publish");
    let m = "/usr/lib/apache2/modules";
    let extra = format!(
        "LoadModule auth_basic_module {m}/mod_auth_basic.so\n\
         LoadModule authn_core_module {m}/mod_authn_core.so\n\
         LoadModule authn_file_module {m}/mod_authn_file.so\n\
         LoadModule authz_user_module {m}/mod_authz_user.so\n\
         <Files \"private-events.cgi\">\n\
             AuthType Basic\n\
             AuthName \"publishers\"\n\
             AuthUserFile \"{}\"\n\
             Require valid-user\n\
         </Files>\n",
        file.display()
    );
    let server = Server::start_with(
        Kind::ApacheCgidEvent,
        &["private-events.cgi"],
        &s,
        &[],
        &extra,
    );
    let path = "/cgi-bin/private-events.cgi?channel=staff";
    let ct = "Content-Type: text/plain";
    // alice:pw and bob:pw in Basic form.
    let alice = "Authorization: Basic YWxpY2U6cHc=";
    let bob = "Authorization: Basic Ym9iOnB3";
    let r = server.send("POST", path, &[ct], b"no credentials");
    assert!(status(&r).starts_with("HTTP/1.1 401"), "{r}");
    let r = server.send("POST", path, &[ct, bob], b"from bob");
    assert!(
        status(&r).starts_with("HTTP/1.1 403"),
        "bob is not a publisher: {r}"
    );
    let r = server.send("POST", path, &[ct, alice], b"from alice");
    assert!(
        status(&r).starts_with("HTTP/1.1 201"),
        "{r}\n{}",
        server.logs()
    );
    let (events, _) = parse_sse(&spool_text(&server, "staff"));
    let datas: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(datas, vec!["from alice"]);
    let _ = std::fs::remove_dir_all(file.parent().expect("its directory"));
}
