//! The encoder against a spec-following parser: whatever the payload, what
//! a client dispatches equals what was encoded.

mod support;

use nph_events::sse::{self, Event};
use support::parse_sse;

const VOCAB: &[&str] = &["", "\n", "\r", "\r\n", "data", ":", " ", "id", "é"];

/// Every sequence of up to `n` vocabulary items.
fn sequences(n: usize) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut layer = vec![String::new()];
    for _ in 0..n {
        layer = layer
            .iter()
            .flat_map(|s| VOCAB.iter().map(move |v| format!("{s}{v}")))
            .collect();
        all.extend(layer.iter().cloned());
    }
    all
}

/// What the client's `data` must be: the spec normalises every line break
/// to LF (lines are split on CRLF, CR and LF, then joined with LF).
fn normalised(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

#[test]
fn every_small_payload_round_trips() {
    let payloads = sequences(5);
    assert_eq!(payloads.len(), 1 + 9 + 81 + 729 + 6561 + 59049);
    for data in &payloads {
        let mut wire = Vec::new();
        sse::encode(
            &Event {
                id: None,
                event: Some("x"),
                data,
            },
            &mut wire,
        )
        .unwrap();
        let (events, _) = parse_sse(std::str::from_utf8(&wire).unwrap());
        assert_eq!(events.len(), 1, "one event for {data:?}");
        assert_eq!(events[0].data, normalised(data), "payload {data:?}");
        assert_eq!(events[0].event, "x");
    }
}

#[test]
fn ids_and_names_round_trip_or_are_refused() {
    for value in sequences(3) {
        let mut wire = Vec::new();
        let e = Event {
            id: Some(&value),
            event: Some(&value),
            data: "d",
        };
        match sse::encode(&e, &mut wire) {
            Ok(()) => {
                let (events, _) = parse_sse(std::str::from_utf8(&wire).unwrap());
                assert_eq!(events.len(), 1);
                let name = if value.is_empty() {
                    "message"
                } else {
                    value.as_str()
                };
                assert_eq!(events[0].event, name);
                assert_eq!(events[0].last_event_id, value);
            }
            Err(_) => {
                assert!(value.contains(['\r', '\n']), "refused {value:?}");
                assert!(wire.is_empty(), "nothing written for {value:?}");
            }
        }
    }
}

#[test]
fn consecutive_events_stay_separate() {
    let mut wire = Vec::new();
    let payloads = ["a\r", "\nb", "", "c\r\n\r\n"];
    for d in payloads {
        sse::encode(
            &Event {
                data: d,
                ..Event::default()
            },
            &mut wire,
        )
        .unwrap();
        sse::comment("between\r\ndata: no", &mut wire);
    }
    let (events, _) = parse_sse(std::str::from_utf8(&wire).unwrap());
    let got: Vec<_> = events.iter().map(|e| e.data.clone()).collect();
    let want: Vec<_> = payloads.iter().map(|d| normalised(d)).collect();
    assert_eq!(got, want);
}
