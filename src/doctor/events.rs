//! The body read as an event stream, each field-block with the time its
//! dispatching blank line arrived (when a browser would have seen it).

use std::time::Duration;

/// What a piece of the stream was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A comment line (the opening line, a heartbeat).
    Comment(String),
    /// An event, dispatched by its blank line.
    Event {
        id: Option<String>,
        name: String,
        data: String,
    },
}

/// Parses timed body pieces into timed items (spec line splitting: CRLF,
/// CR or LF; a `retry:` field alone dispatches nothing and is left out).
pub fn parse(body: &[(Duration, Vec<u8>)]) -> Vec<(Duration, Item)> {
    let mut out = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut after_cr = false;
    let mut block = Block::default();
    for (at, bytes) in body {
        for &b in bytes {
            if after_cr && b == b'\n' {
                after_cr = false;
                continue;
            }
            after_cr = b == b'\r';
            if b == b'\r' || b == b'\n' {
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                if let Some(item) = block.line(&text) {
                    out.push((*at, item));
                }
            } else {
                line.push(b);
            }
        }
    }
    out
}

#[derive(Default)]
struct Block {
    id: Option<String>,
    name: Option<String>,
    data: Option<String>,
}

impl Block {
    fn line(&mut self, text: &str) -> Option<Item> {
        if text.is_empty() {
            let block = std::mem::take(self);
            return block.data.map(|data| Item::Event {
                id: block.id,
                name: block.name.unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if let Some(comment) = text.strip_prefix(':') {
            return Some(Item::Comment(comment.trim_start().to_owned()));
        }
        let (field, value) = text.split_once(':').unwrap_or((text, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "id" => self.id = Some(value),
            "event" => self.name = Some(value),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&value);
                }
                None => self.data = Some(value),
            },
            _ => {}
        }
        None
    }
}

/// A ticker event's fields: its number and the server's clock (Unix ms)
/// when it was written: `{"seq":N,"time":MS}`.
pub fn tick_fields(data: &str) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    Some((v.get("seq")?.as_u64()?, v.get("time")?.as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_carry_the_time_of_their_blank_line() {
        let s = Duration::from_secs;
        let body = vec![
            (
                s(1),
                b": nph-events/1\nretry: 3000\n\nevent: tick\ndata: {\"seq\":1,".to_vec(),
            ),
            (
                s(2),
                b"\"time\":5}\n\nid: 7\r\ndata: a\r\ndata: b\r\n\r\n".to_vec(),
            ),
        ];
        let items = parse(&body);
        assert_eq!(items[0], (s(1), Item::Comment("nph-events/1".into())));
        let Item::Event { name, data, .. } = &items[1].1 else {
            panic!()
        };
        assert_eq!((items[1].0, name.as_str()), (s(2), "tick"));
        assert_eq!(tick_fields(data), Some((1, 5)));
        assert_eq!(
            items[2].1,
            Item::Event {
                id: Some("7".into()),
                name: "message".into(),
                data: "a\nb".into()
            }
        );
        assert_eq!(items.len(), 3);
    }
}
