//! The config file the site's CGIs and a shell share
//! (`/etc/nph-events.json`): settings kept there reach a root shell's
//! `nph-events publish` without retyping, through real Apache. Its own
//! test binary, alone: the file is global to the host while it exists.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::bin;
use support::servers::{available, Kind, Server};

/// Removes the shared file however the test ends.
struct SiteFile;

impl Drop for SiteFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(nph_events::config::SITE_FILE);
    }
}

#[test]
fn a_root_shell_publishes_with_the_sites_own_settings() {
    let kind = Kind::ApacheCgidEvent;
    if !available(kind) || nph_events::sys::effective_uid() != 0 {
        eprintln!("skipped: needs root and {kind:?}");
        return;
    }
    let site = Path::new(nph_events::config::SITE_FILE);
    if site.exists() {
        eprintln!(
            "skipped: {} exists on this host; not touching it",
            site.display()
        );
        return;
    }
    let out = Command::new("id")
        .args(["-u", "www-data"])
        .output()
        .unwrap();
    let www: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // A spool where nothing would look by default.
    let spool = Path::new("/dev/shm").join(format!("nph-site-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&spool, Some(www), Some(www)).unwrap();
    let _guard = SiteFile;
    std::fs::write(
        site,
        format!(
            r#"{{"spool": "{}", "interval": 0, "heartbeat": 1}}"#,
            spool.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(site, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(site, Some(0), Some(www)).unwrap();

    // No spool in the server's configuration: the CGI reads the file.
    let server = Server::start(kind, &["nph-events.cgi"], &[("NPH_EVENTS_SPOOL", "")]);
    let (_conn, mut reader) = server.request("GET", "/cgi-bin/nph-events.cgi?channel=shared", &[]);
    assert!(
        reader.until("retry:", Duration::from_secs(5)),
        "{}\n{}",
        reader.text(),
        server.logs()
    );
    // And a root shell with an empty environment reads it too.
    let out = Command::new(bin())
        .env_clear()
        .args([
            "publish",
            "--channel",
            "shared",
            "--data",
            "from the shared file",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("in {} as www-data", spool.display())) && err.contains("1 reader"),
        "{err}"
    );
    assert!(
        reader.until("data: from the shared file\n", Duration::from_secs(5)),
        "{}\n{}",
        reader.text(),
        server.logs()
    );
    let channel = spool.join("channels").join("shared");
    assert_eq!(std::fs::metadata(&channel).unwrap().uid(), www);
    drop(server);
    std::fs::remove_dir_all(&spool).unwrap();
}
