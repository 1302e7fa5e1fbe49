//! Publishing from a shell into the site's spool, whoever runs it.
//!
//! The spool belongs to the user the web server runs CGIs as (`www-data`
//! on Debian): every file in it must be that user's, or the streams cannot
//! read them. A shell is often someone else, mostly root. So:
//!
//! * root with no spool configured looks for the site's spool where the
//!   CGIs make it (`/dev/shm/nph-events-<uid>`, or `/tmp/…`) instead of
//!   writing into a root spool that no stream reads;
//! * root publishing into a spool that belongs to another user becomes
//!   that user first (the spool's owner and group, no other groups), so
//!   what it creates stays usable by the streams; nothing is chowned;
//! * anyone else gets the exact command to run as the owner, never a
//!   silent success in the wrong place.
//!
//! None of this runs under a web server: there the spool is always the
//! process's own.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::spool::inspect;
use crate::sys::{self, user_name};

/// Where the CGIs make their default spools (see
/// [`crate::spool::default_root`]), searched in this order.
pub const BASES: &[&str] = &["/dev/shm", "/tmp"];

/// A site spool found by its name and checked by its owner and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The spool directory.
    pub root: PathBuf,
    /// Its owner: the user the web server's CGIs run as.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Readers following any channel of it now.
    pub readers: usize,
}

/// The spools under [`BASES`] named `nph-events-<uid>` that really belong
/// to that uid, are real directories and are private. A directory that
/// fails any of these was not made by nph-events for that user and is
/// skipped (a planted name must not attract a root publisher).
pub fn default_spools() -> Vec<Found> {
    let mut found = Vec::new();
    for base in BASES {
        let Ok(entries) = fs::read_dir(base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(uid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("nph-events-"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let root = entry.path();
            let Ok(meta) = fs::symlink_metadata(&root) else {
                continue;
            };
            if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
                continue;
            }
            let readers = inspect::open(&root)
                .and_then(|s| inspect::readers(&s))
                .map_or(0, |r| r.total());
            found.push(Found {
                root,
                uid,
                gid: meta.gid(),
                readers,
            });
        }
    }
    found
}

/// Which of the default spools a root shell means: the only one; else
/// the only one that streams read now. Several candidates with nothing to
/// tell them apart are an error that lists them.
///
/// Only spools of system accounts (below `UID_MIN`, where web servers
/// run) and root's own are chosen without being named: anyone with a
/// login can make `/tmp/nph-events-<their uid>`, and a root shell must
/// not be drawn into it. Such spools are listed, to be named with
/// `--spool` if meant.
pub fn pick(found: &[Found]) -> Result<&Found, String> {
    pick_below(found, uid_min())
}

fn pick_below(all: &[Found], uid_min: u32) -> Result<&Found, String> {
    let found: Vec<&Found> = all.iter().filter(|f| f.uid < uid_min).collect();
    let live: Vec<&Found> = found.iter().copied().filter(|f| f.readers > 0).collect();
    let users: Vec<String> = all
        .iter()
        .filter(|f| f.uid >= uid_min)
        .map(|f| {
            format!(
                "{} (owner {}, a login user: not chosen unless named)",
                f.root.display(),
                user_name(f.uid)
            )
        })
        .collect();
    let also = match users.as_slice() {
        [] => String::new(),
        u => format!("; also found {}", u.join(", ")),
    };
    match (found.as_slice(), live.as_slice()) {
        ([one], _) => Ok(one),
        (_, [one]) => Ok(one),
        ([], _) => Err(format!(
            "no site spool found (looked for nph-events-<uid> in {}): no stream has run \
             on this host yet. Open the stream once (the CGI makes its spool), or name the \
             spool with --spool DIR (NPH_EVENTS_SPOOL){also}",
            BASES.join(" and ")
        )),
        (all, _) => {
            let list: Vec<String> = all
                .iter()
                .map(|f| {
                    format!(
                        "--spool {} (owner {}, {} readers)",
                        f.root.display(),
                        user_name(f.uid),
                        f.readers
                    )
                })
                .collect();
            Err(format!(
                "{} site spools found and nothing tells which one is meant; choose one: {}{also}",
                all.len(),
                list.join("; ")
            ))
        }
    }
}

/// The first uid of login users (`UID_MIN` in `/etc/login.defs`, 1000 when
/// it does not say).
fn uid_min() -> u32 {
    let defs = fs::read_to_string("/etc/login.defs").unwrap_or_default();
    defs.lines()
        .filter_map(|l| l.trim().strip_prefix("UID_MIN"))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(1000)
}

/// How a shell command reached its spool, said on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    /// The spool directory.
    pub root: PathBuf,
    /// The user the command now runs as.
    pub uid: u32,
    /// Whether root found the spool itself (nothing configured).
    pub found: bool,
    /// Whether root became the spool's owner to write into it.
    pub became_owner: bool,
}

/// Settles the spool for a shell command that writes (`publish`): finds
/// the site's spool for root when none is configured (setting
/// `config.spool`), then makes this process the spool's owner if it is
/// root and the spool is someone else's. A non-root user facing another
/// user's spool gets the command to run instead. `argv` is the command as
/// typed, for that suggestion.
pub fn settle_for_writing(config: &mut Config, argv: &[String]) -> Result<Reached, String> {
    let euid = sys::effective_uid();
    let mut found_it = false;
    if config.spool.is_none() && euid == 0 {
        let all = default_spools();
        let site = pick(&all)?;
        config.spool = Some(site.root.clone());
        found_it = site.uid != 0;
    }
    let root = config
        .spool
        .clone()
        .unwrap_or_else(crate::spool::default_root);
    let meta = match fs::symlink_metadata(&root) {
        Ok(m) => m,
        // A new spool is made by (and for) this user; `Spool::open` checks
        // the rest.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Reached {
                root,
                uid: euid,
                found: found_it,
                became_owner: false,
            })
        }
        Err(e) => return Err(format!("{}: {e}", root.display())),
    };
    if meta.file_type().is_symlink() || meta.uid() == euid {
        return Ok(Reached {
            root,
            uid: euid,
            found: found_it,
            became_owner: false,
        });
    }
    let (owner, group) = (meta.uid(), meta.gid());
    if euid != 0 {
        return Err(format!(
            "spool {} belongs to {} (uid {owner}), not to you (uid {euid}); the streams \
             read only what its owner writes. Run: sudo -u {} {}",
            root.display(),
            user_name(owner),
            user_name(owner),
            shell_words(argv)
        ));
    }
    sys::become_user(owner, group).map_err(|e| {
        format!(
            "cannot become {} (uid {owner}), the owner of spool {}: {e}",
            user_name(owner),
            root.display()
        )
    })?;
    Ok(Reached {
        root,
        uid: owner,
        found: found_it,
        became_owner: true,
    })
}

/// Settles the spool for a shell command that only reads (`stats`): root
/// with no spool configured finds the site's, as for writing; nobody
/// changes user, since reading changes nothing.
pub fn settle_for_reading(config: &mut Config) -> Result<(), String> {
    if config.spool.is_none() && sys::effective_uid() == 0 {
        let all = default_spools();
        config.spool = Some(pick(&all)?.root.clone());
    }
    Ok(())
}

/// Whether any stream has ever read this spool: readers make its wake-up
/// directory when they start. A spool without one was written to by
/// publishers only, which usually means the wrong spool.
pub fn ever_read(root: &Path) -> bool {
    fs::symlink_metadata(root.join("wake")).is_ok_and(|m| m.is_dir())
}

/// What a shell user needs to hear after a publish: where it went, as
/// whom, and how many readers had it. Warns when the spool has never had
/// a reader and names the site's spool if one exists.
pub fn report(
    err: &mut dyn Write,
    who: &str,
    reached: &Reached,
    channel: &str,
    id: u64,
    readers: usize,
    proxies: usize,
) {
    let as_whom = if reached.became_owner {
        format!(" as {} (the spool's owner)", user_name(reached.uid))
    } else {
        String::new()
    };
    let to_proxies = match proxies {
        0 => String::new(),
        1 => ", and sent to 1 GRIP proxy".to_owned(),
        n => format!(", and sent to {n} GRIP proxies"),
    };
    let _ = writeln!(
        err,
        "{who}: event {id} on channel {channel:?} in {}{as_whom}: {readers} {} connected{to_proxies}",
        reached.root.display(),
        if readers == 1 { "reader" } else { "readers" }
    );
    // Behind GRIP proxies the clients are theirs: a spool no stream reads
    // is the normal case there.
    if readers == 0 && proxies == 0 && !ever_read(&reached.root) {
        let others: Vec<String> = default_spools()
            .into_iter()
            .filter(|f| f.root != reached.root && ever_read(&f.root))
            .map(|f| format!("{} (owner {})", f.root.display(), user_name(f.uid)))
            .collect();
        let hint = match others.as_slice() {
            [] => String::new(),
            list => format!(
                "; the site's streams read {}: publish as that user, or as root",
                list.join(", ")
            ),
        };
        let _ = writeln!(
            err,
            "{who}: warning: no stream has ever read {}; the event is kept for streams \
             that start later{hint}",
            reached.root.display()
        );
    }
}

/// `argv` as one shell command line, quoted where needed, so a printed
/// suggestion can be pasted as it is.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./=:,@%+-".contains(&b));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(uid: u32, readers: usize) -> Found {
        Found {
            root: PathBuf::from(format!("/dev/shm/nph-events-{uid}")),
            uid,
            gid: uid,
            readers,
        }
    }

    #[test]
    fn the_only_spool_or_the_only_live_one_is_picked() {
        let one = [found(33, 0)];
        assert_eq!(pick(&one).unwrap().uid, 33);
        let two = [found(0, 0), found(33, 2)];
        assert_eq!(pick(&two).unwrap().uid, 33, "the one streams read");
        let e = pick(&[found(0, 1), found(33, 2)]).unwrap_err();
        assert!(e.contains("--spool /dev/shm/nph-events-33"), "{e}");
        assert!(e.contains("2 readers"), "{e}");
        let e = pick_below(&[found(100, 0), found(33, 0)], 1000).unwrap_err();
        assert!(e.contains("choose one"), "{e}");
        assert!(pick(&[]).unwrap_err().contains("no site spool found"));
        // A login user's spool is never chosen by itself, even if live.
        let mixed = [found(33, 0), found(1000, 5)];
        assert_eq!(pick_below(&mixed, 1000).unwrap().uid, 33);
        let e = pick_below(&[found(1000, 5)], 1000).unwrap_err();
        assert!(e.contains("no site spool found"), "{e}");
        assert!(e.contains("a login user: not chosen unless named"), "{e}");
    }

    #[test]
    fn suggested_commands_paste_back_as_typed() {
        let argv: Vec<String> = [
            "nph-events",
            "publish",
            "--data",
            "it's here",
            "--channel=a",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            shell_words(&argv),
            r"nph-events publish --data 'it'\''s here' --channel=a"
        );
        assert_eq!(quote(""), "''");
    }
}
