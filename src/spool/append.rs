//! Publishing: append one record to a channel, atomically with respect to
//! every other publisher and every reader.
//!
//! Under the channel's exclusive `flock`:
//! 1. repair: if the newest segment does not end with a complete record (a
//!    publisher was killed mid-write, or a write failed half-way), truncate
//!    it back to the last complete record. Readers never consumed those
//!    bytes: they advance only over complete records.
//! 2. the next id: the segment's first id when it is empty, else one more
//!    than the largest of its name, its first record's id and its last
//!    record's id (equal to the last id in a sound spool; a corrupt one
//!    cannot make ids repeat or go backwards). A record that does not start
//!    with `id: N` there is refused as corruption, as is an id space
//!    exhausted at `u64::MAX`: nothing is written then;
//! 3. rotate to a new segment when the newest is full;
//! 4. render the record and write it with one `write_all`; on failure the
//!    file is cut back to its previous length;
//! 5. after a rotation, delete whole old segments beyond the retention.
//!
//! Every file is opened without following symbolic links, and the
//! channel's directories are checked (ours, real directories) or created
//! with mode 0700. Readers are woken after the lock is released.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{last_record, list_segments, open_file, record_id_at, segment_name, Retention, Spool};
use crate::sse::{self, Event};

/// One event to publish.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// The `event:` name, if any (validated by the caller and the encoder).
    pub event: Option<&'a str>,
    /// The payload.
    pub data: &'a str,
}

/// Appends `new` to `channel` and wakes its readers; returns the id.
///
/// `now_micros` names the first segment of a new channel (its first id).
pub fn append_and_wake(
    spool: &Spool,
    channel: &str,
    new: NewEvent<'_>,
    retention: &Retention,
    now_micros: u64,
) -> io::Result<u64> {
    append_and_wake_record(spool, channel, new, retention, now_micros).map(|a| a.id)
}

/// What an append wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The event's id.
    pub id: u64,
    /// The id before it on the channel (ids are consecutive), if the
    /// channel had an event before: what a GRIP proxy orders by.
    pub prev: Option<u64>,
    /// The record as written: the exact bytes readers stream.
    pub record: Vec<u8>,
    /// Readers of the channel woken for it: processes following the
    /// channel (a CGI stream each, a listener reactor each) when it was
    /// written. Zero when appended without waking.
    pub readers: usize,
}

/// [`append_and_wake`], returning the record and the id before it.
pub fn append_and_wake_record(
    spool: &Spool,
    channel: &str,
    new: NewEvent<'_>,
    retention: &Retention,
    now_micros: u64,
) -> io::Result<Appended> {
    let mut appended = append_record(spool, channel, new, retention, now_micros)?;
    appended.readers = super::wake::notify(spool, channel);
    Ok(appended)
}

/// [`append_and_wake`] without waking readers (they still see the record at their
/// next wake-up or heartbeat).
pub fn append(
    spool: &Spool,
    channel: &str,
    new: NewEvent<'_>,
    retention: &Retention,
    now_micros: u64,
) -> io::Result<u64> {
    append_record(spool, channel, new, retention, now_micros).map(|a| a.id)
}

fn append_record(
    spool: &Spool,
    channel: &str,
    new: NewEvent<'_>,
    retention: &Retention,
    now_micros: u64,
) -> io::Result<Appended> {
    if let Some(name) = new.event {
        sse::check_field(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    let dir = spool.create_channel_dir(channel)?;
    let lock = open_file(
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600),
        &dir.join("lock"),
    )?;
    lock.lock()?;
    let segments = list_segments(&dir)?;
    let (mut first, mut file) = match segments.last() {
        Some(&first) => (first, open_segment(&dir, first, false)?),
        None => (now_micros, open_segment(&dir, now_micros, true)?),
    };
    let path = dir.join(segment_name(first));
    let (mut size, id) = repair_and_next_id(&mut file, first, &path)?;
    let prev = (id > first || segments.len() > 1).then(|| id - 1);
    let count = id.saturating_sub(first);
    let rotate = count >= retention.segment_events() || size >= retention.segment_bytes();
    if rotate {
        first = id;
        file = open_segment(&dir, first, true)?;
        size = 0;
    }
    let mut record = Vec::with_capacity(new.data.len() + 64);
    let id_text = id.to_string();
    let event = Event {
        id: Some(&id_text),
        event: new.event,
        data: new.data,
    };
    sse::encode(&event, &mut record).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if let Err(e) = file.write_all(&record) {
        // Leave no torn record behind; if this fails too, the next
        // publisher's repair step removes it.
        let _ = file.set_len(size);
        return Err(e);
    }
    if rotate {
        enforce_retention(&dir, retention)?;
    }
    drop(lock);
    Ok(Appended {
        id,
        prev,
        record,
        readers: 0,
    })
}

fn open_segment(dir: &Path, first: u64, create: bool) -> io::Result<File> {
    open_file(
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .mode(0o600),
        &dir.join(segment_name(first)),
    )
}

/// Cuts an incomplete tail off the newest segment `file` (named `first`)
/// and returns its resulting size and the next id (see the module doc).
/// Reads only the segment's ends, in constant memory.
fn repair_and_next_id(file: &mut File, first: u64, path: &Path) -> io::Result<(u64, u64)> {
    let size = file.metadata()?.len();
    let Some((last_start, end)) = last_record(file, size)? else {
        // No complete record: all of it is a torn write (or garbage that no
        // reader ever passed on, since readers pass on whole records only).
        if size != 0 {
            file.set_len(0)?;
        }
        return Ok((0, first));
    };
    if end != size {
        file.set_len(end)?;
    }
    let corrupt = |what: &str| {
        io::Error::other(format!(
            "spool corrupt: {}: {what}; remove the channel's directory {} (its events are lost)",
            path.display(),
            path.parent()
                .map_or_else(String::new, |d| d.display().to_string())
        ))
    };
    let last = record_id_at(file, last_start)?
        .ok_or_else(|| corrupt("its last record does not start with an `id: N` line"))?;
    let oldest = if last_start == 0 {
        last
    } else {
        record_id_at(file, 0)?
            .ok_or_else(|| corrupt("its first record does not start with an `id: N` line"))?
    };
    let next = first.max(oldest).max(last).checked_add(1).ok_or_else(|| {
        io::Error::other(format!(
            "channel id space exhausted (the last id is {}); remove the channel's directory {}",
            u64::MAX,
            path.parent()
                .map_or_else(String::new, |d| d.display().to_string())
        ))
    })?;
    Ok((end, next))
}

/// Deletes the oldest segments while the others still hold the retention.
/// Arithmetic saturates: segment names come from the file system.
fn enforce_retention(dir: &Path, retention: &Retention) -> io::Result<()> {
    let firsts = list_segments(dir)?;
    let sizes: Vec<u64> = firsts
        .iter()
        .map(|f| fs::symlink_metadata(dir.join(segment_name(*f))).map_or(0, |m| m.len()))
        .collect();
    // Events in every segment but the newest are known from the names;
    // the newest was just created and holds one record.
    let span = |i: usize| firsts[i + 1].saturating_sub(firsts[i]);
    let mut events: u64 = (0..firsts.len().saturating_sub(1))
        .map(span)
        .fold(1, u64::saturating_add);
    let mut bytes: u64 = sizes.iter().copied().fold(0, u64::saturating_add);
    for i in 0..firsts.len().saturating_sub(1) {
        let (oldest_events, oldest_bytes) = (span(i), sizes[i]);
        if events.saturating_sub(oldest_events) < retention.events
            && bytes.saturating_sub(oldest_bytes) < retention.bytes
        {
            break;
        }
        fs::remove_file(dir.join(segment_name(firsts[i])))?;
        events = events.saturating_sub(oldest_events);
        bytes = bytes.saturating_sub(oldest_bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    pub(crate) fn temp_spool(tag: &str) -> (PathBuf, Spool) {
        let dir = std::env::temp_dir().join(format!(
            "nph-events-unit-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        (dir, spool)
    }

    fn ev(data: &str) -> NewEvent<'_> {
        NewEvent { event: None, data }
    }

    /// What a GRIP proxy orders by: the first event of a channel has no
    /// id before it, every later one the one before, across segments.
    #[test]
    fn each_append_names_the_id_before_it() {
        let (dir, spool) = temp_spool("prev");
        let r = Retention {
            events: 4,
            bytes: 1 << 20,
        };
        let first = append_record(&spool, "c", ev("a"), &r, 1000).unwrap();
        assert_eq!((first.id, first.prev), (1000, None));
        assert_eq!(first.record, b"id: 1000\ndata: a\n\n");
        for n in 1..10u64 {
            let a = append_record(&spool, "c", ev("x"), &r, 9999).unwrap();
            assert_eq!(
                (a.id, a.prev),
                (1000 + n, Some(999 + n)),
                "rotations keep it"
            );
        }
        assert!(list_segments(&spool.channel_dir("c")).unwrap().len() > 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ids_are_consecutive_from_creation_time() {
        let (dir, spool) = temp_spool("ids");
        let r = Retention::default();
        assert_eq!(append(&spool, "c", ev("a"), &r, 1000).unwrap(), 1000);
        assert_eq!(append(&spool, "c", ev("b"), &r, 5000).unwrap(), 1001);
        let seg = fs::read_to_string(spool.channel_dir("c").join(segment_name(1000))).unwrap();
        assert_eq!(seg, "id: 1000\ndata: a\n\nid: 1001\ndata: b\n\n");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn torn_tail_is_cut_before_the_next_append() {
        let (dir, spool) = temp_spool("torn");
        let r = Retention::default();
        append(&spool, "c", ev("a"), &r, 1).unwrap();
        let path = spool.channel_dir("c").join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"id: 2\ndata: half").unwrap();
        assert_eq!(append(&spool, "c", ev("b"), &r, 1).unwrap(), 2);
        let seg = fs::read_to_string(&path).unwrap();
        assert_eq!(seg, "id: 1\ndata: a\n\nid: 2\ndata: b\n\n");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_and_retention() {
        let (dir, spool) = temp_spool("rot");
        let r = Retention {
            events: 8,
            bytes: 1 << 20,
        };
        for i in 0..40 {
            assert_eq!(append(&spool, "c", ev("x"), &r, 100).unwrap(), 100 + i);
        }
        let firsts = list_segments(&spool.channel_dir("c")).unwrap();
        // Segments of 2 events; at least 8 events kept, at most 8 + 2.
        let kept = 140 - firsts[0];
        assert!((8..=10).contains(&kept), "{firsts:?}");
        assert!(firsts.windows(2).all(|w| w[1] - w[0] == 2), "{firsts:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    /// Writes segment `first` of channel `c` with `bytes` (a corrupt spool).
    fn plant(spool: &Spool, first: u64, bytes: &[u8]) -> PathBuf {
        let dir = spool.create_channel_dir("c").unwrap();
        let path = dir.join(segment_name(first));
        fs::write(&path, bytes).unwrap();
        path
    }

    /// A segment whose records hold ids below its name (or whose first
    /// record's id is above its last) still gets ids above all of them,
    /// strictly increasing. The old code took the last id + 1 only and
    /// then computed `id - first`: every publish returned the same id.
    #[test]
    fn ids_below_the_segment_name_still_increase() {
        let (dir, spool) = temp_spool("below");
        let r = Retention::default();
        plant(&spool, 1000, b"id: 5\ndata: a\n\nid: 6\ndata: b\n\n");
        let ids: Vec<u64> = (0..5)
            .map(|_| append(&spool, "c", ev("x"), &r, 1).unwrap())
            .collect();
        assert_eq!(ids, [1001, 1002, 1003, 1004, 1005]);
        fs::remove_dir_all(&dir).unwrap();

        let (dir, spool) = temp_spool("backwards");
        plant(&spool, 100, b"id: 500\ndata: a\n\nid: 101\ndata: b\n\n");
        assert_eq!(append(&spool, "c", ev("x"), &r, 1).unwrap(), 501);
        assert_eq!(append(&spool, "c", ev("x"), &r, 1).unwrap(), 502);
        fs::remove_dir_all(dir).unwrap();
    }

    /// At `u64::MAX` a publish is refused with a clear error and writes
    /// nothing (the old code wrapped to 0, or panicked in a debug build).
    #[test]
    fn exhausted_id_space_is_refused() {
        let r = Retention::default();
        let (dir, spool) = temp_spool("max");
        let body = format!("id: {}\ndata: a\n\n", u64::MAX);
        let path = plant(&spool, u64::MAX - 1, body.as_bytes());
        for _ in 0..2 {
            let e = append(&spool, "c", ev("x"), &r, 1).unwrap_err().to_string();
            assert!(e.contains("channel id space exhausted"), "{e}");
            assert!(e.contains("remove the channel's directory"), "{e}");
        }
        assert_eq!(fs::read(&path).unwrap(), body.as_bytes(), "nothing written");
        assert_eq!(
            list_segments(&spool.channel_dir("c")).unwrap(),
            [u64::MAX - 1]
        );
        fs::remove_dir_all(&dir).unwrap();

        // An empty segment named u64::MAX: that id is handed out, then no more.
        let (dir, spool) = temp_spool("maxname");
        plant(&spool, u64::MAX, b"");
        assert_eq!(append(&spool, "c", ev("x"), &r, 1).unwrap(), u64::MAX);
        let e = append(&spool, "c", ev("y"), &r, 1).unwrap_err().to_string();
        assert!(e.contains("channel id space exhausted"), "{e}");
        fs::remove_dir_all(dir).unwrap();
    }

    /// A complete record without an `id: N` first line in the newest
    /// segment (garbage, bad UTF-8) is refused as corruption naming the
    /// file; a torn tail, whatever its bytes, is cut.
    #[test]
    fn unparsable_records_are_refused_torn_tails_cut() {
        let r = Retention::default();
        let cases: [&[u8]; 5] = [
            b"id: 1\ndata: a\n\ngarbage\n\n",
            b"id: 1\ndata: a\n\nid: 2\xff\ndata: b\n\n",
            b"\xff\xfe\n\nid: 1\ndata: a\n\n",
            b"\n\n",
            b"data: no id\n\n",
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let (dir, spool) = temp_spool(&format!("corrupt{i}"));
            let path = plant(&spool, 1, bytes);
            let e = append(&spool, "c", ev("x"), &r, 1).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("spool corrupt: {}", path.display())),
                "case {i}: {e}"
            );
            assert_eq!(
                fs::read(&path).unwrap(),
                *bytes,
                "case {i}: nothing written"
            );
            fs::remove_dir_all(dir).unwrap();
        }
        let torn: [(&[u8], u64); 3] = [
            (b"id: 1\ndata: a\n\n\xff\xfegarbage", 2),
            (b"garbage without a boundary", 1),
            (b"id: 1\ndata: a\n\nid: 2\ndata: half", 2),
        ];
        for (i, (bytes, want)) in torn.iter().enumerate() {
            let (dir, spool) = temp_spool(&format!("torn{i}"));
            plant(&spool, 1, bytes);
            assert_eq!(
                append(&spool, "c", ev("x"), &r, 1).unwrap(),
                *want,
                "case {i}"
            );
            fs::remove_dir_all(dir).unwrap();
        }
    }

    /// A huge newest segment with no record boundary (sparse: 256 MiB of
    /// zeros) is cut in constant memory, not read into memory at once.
    #[test]
    fn huge_garbage_segment_is_cut() {
        let r = Retention::default();
        let (dir, spool) = temp_spool("huge");
        let path = plant(&spool, 7, b"");
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        assert_eq!(append(&spool, "c", ev("x"), &r, 1).unwrap(), 7);
        assert_eq!(fs::read(&path).unwrap(), b"id: 7\ndata: x\n\n");
        fs::remove_dir_all(dir).unwrap();
    }

    /// A symbolic link planted as the lock file, the newest segment or the
    /// channel directory is not followed: the publish fails and the link's
    /// target is unchanged (the old code appended to it, truncated it
    /// while "repairing" it, or created it).
    #[test]
    fn planted_links_are_not_followed() {
        let r = Retention::default();
        let (dir, spool) = temp_spool("links");
        let victim = dir.join("victim");
        fs::write(&victim, "precious, no record end").unwrap();
        append(&spool, "c", ev("a"), &r, 1).unwrap();
        let chan = spool.channel_dir("c");
        let seg = chan.join(segment_name(1));
        fs::remove_file(&seg).unwrap();
        std::os::unix::fs::symlink(&victim, &seg).unwrap();
        let e = append(&spool, "c", ev("b"), &r, 1).unwrap_err().to_string();
        assert!(
            e.contains("symbolic link") && e.contains(&seg.display().to_string()),
            "{e}"
        );
        fs::remove_file(&seg).unwrap();
        fs::remove_file(chan.join("lock")).unwrap();
        let made = dir.join("made-through-lock");
        std::os::unix::fs::symlink(&made, chan.join("lock")).unwrap();
        let e = append(&spool, "c", ev("b"), &r, 1).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("lock"), "{e}");
        assert!(!made.exists(), "nothing created through the lock link");
        let elsewhere = dir.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, spool.channel_dir("d")).unwrap();
        let e = append(&spool, "d", ev("b"), &r, 1).unwrap_err().to_string();
        assert!(
            e.contains("channel directory") && e.contains("symbolic link"),
            "{e}"
        );
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            "precious, no record end"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_event_name_appends_nothing() {
        let (dir, spool) = temp_spool("bad");
        let r = Retention::default();
        let bad = NewEvent {
            event: Some("a\nb"),
            data: "x",
        };
        assert!(append(&spool, "c", bad, &r, 1).is_err());
        assert_eq!(append(&spool, "c", ev("ok"), &r, 1).unwrap(), 1);
        fs::remove_dir_all(dir).unwrap();
    }
}
