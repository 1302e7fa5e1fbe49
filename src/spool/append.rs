//! Publishing: append one record to a channel, atomically with respect to
//! every other publisher and every reader.
//!
//! Under the channel's exclusive `flock`:
//! 1. repair: if the newest segment does not end with a complete record (a
//!    publisher was killed mid-write, or a write failed half-way), truncate
//!    it back to the last complete record. Readers never consumed those
//!    bytes: they advance only over complete records.
//! 2. the next id is the newest record's id + 1 (or the segment's first id);
//! 3. rotate to a new segment when the newest is full;
//! 4. render the record and write it with one `write_all`; on failure the
//!    file is cut back to its previous length;
//! 5. after a rotation, delete whole old segments beyond the retention.
//!
//! Readers are woken after the lock is released.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;

use super::{complete_len, list_segments, record_id, segment_name, Retention, Spool};
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
    let id = append(spool, channel, new, retention, now_micros)?;
    super::wake::notify(spool, channel);
    Ok(id)
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
    if let Some(name) = new.event {
        sse::check_field(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    }
    let dir = spool.channel_dir(channel);
    DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join("lock"))?;
    lock.lock()?;
    let segments = list_segments(&dir)?;
    let (mut first, mut file) = match segments.last() {
        Some(&first) => (first, open_segment(&dir, first, false)?),
        None => (now_micros, open_segment(&dir, now_micros, true)?),
    };
    let (mut size, last) = repair_and_last_id(&mut file)?;
    let id = last.map_or(first, |l| l + 1);
    let count = id - first;
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
    Ok(id)
}

fn open_segment(dir: &Path, first: u64, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .mode(0o600)
        .open(dir.join(segment_name(first)))
}

/// Cuts an incomplete tail record off `file` and returns the resulting
/// size and the id of the last complete record (None if there is none).
fn repair_and_last_id(file: &mut File) -> io::Result<(u64, Option<u64>)> {
    let size = file.seek(SeekFrom::End(0))?;
    // Usually the last record and the boundary before it are in the last
    // few KiB; the window doubles until they are found.
    let mut window = 4096u64;
    loop {
        let start = size.saturating_sub(window);
        let mut tail = vec![0u8; (size - start) as usize];
        file.read_exact_at(&mut tail, start)?;
        let complete = complete_len(&tail);
        // The last record starts after the previous "\n\n" (or at 0).
        let last_start = tail[..complete.saturating_sub(2)]
            .windows(2)
            .rposition(|w| w == b"\n\n")
            .map(|i| i + 2);
        let found = match (complete, last_start) {
            (0, _) if start == 0 => Some((0, None)),
            (c, Some(s)) if c > 0 => Some((c, record_id(&tail[s..c]))),
            (c, None) if c > 0 && start == 0 => Some((c, record_id(&tail[..c]))),
            _ => None,
        };
        if let Some((complete, last)) = found {
            let new_size = start + complete as u64;
            if new_size != size {
                file.set_len(new_size)?;
            }
            return Ok((new_size, last));
        }
        window *= 2;
    }
}

/// Deletes the oldest segments while the others still hold the retention.
fn enforce_retention(dir: &Path, retention: &Retention) -> io::Result<()> {
    let firsts = list_segments(dir)?;
    let sizes: Vec<u64> = firsts
        .iter()
        .map(|f| fs::metadata(dir.join(segment_name(*f))).map_or(0, |m| m.len()))
        .collect();
    // Events in every segment but the newest are known from the names;
    // the newest was just created and holds one record.
    let mut events: u64 = firsts.windows(2).map(|w| w[1] - w[0]).sum::<u64>() + 1;
    let mut bytes: u64 = sizes.iter().sum();
    for i in 0..firsts.len().saturating_sub(1) {
        let (oldest_events, oldest_bytes) = (firsts[i + 1] - firsts[i], sizes[i]);
        if events - oldest_events < retention.events && bytes - oldest_bytes < retention.bytes {
            break;
        }
        fs::remove_file(dir.join(segment_name(firsts[i])))?;
        events -= oldest_events;
        bytes -= oldest_bytes;
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
        let spool = Spool::open(&dir, true).unwrap();
        (dir, spool)
    }

    fn ev(data: &str) -> NewEvent<'_> {
        NewEvent { event: None, data }
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
