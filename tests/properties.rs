//! Property tests for the two parsers every outsider can reach: the HTTP
//! request head and the client event. Arbitrary input never panics, and is
//! always decided: an answer, an upgrade, or (for a head) a bounded wait
//! for more bytes.

use interviewd::handshake::{examine, Examined, MAX_REQUEST_HEAD};
use interviewd::protocol;
use proptest::prelude::*;

const VALID: &str = "GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Statuses the handshake answers with.
const STATUSES: [u16; 7] = [400, 404, 405, 408, 426, 431, 503];

fn decided(bytes: &[u8]) -> bool {
    match examine(bytes) {
        Examined::NeedMore => false,
        Examined::Answer(a) => {
            assert!(STATUSES.contains(&a.status), "status {}", a.status);
            true
        }
        Examined::Upgrade(r) => {
            assert!(r.head_len <= bytes.len());
            true
        }
        // Closed at once.
        Examined::Tls => true,
        // The page, or 404.
        Examined::Page { .. } => true,
    }
}

/// Mutations of a valid head: the inputs most likely to find the corners.
fn mutated_head() -> impl Strategy<Value = Vec<u8>> {
    (
        0..VALID.len(),
        prop::collection::vec(any::<u8>(), 0..8),
        0..8usize,
    )
        .prop_map(|(at, insert, cut)| {
            let mut v = VALID.as_bytes().to_vec();
            let end = (at + cut).min(v.len());
            v.splice(at..end, insert);
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic; an undecided head is never over the size
    /// limit (so the reader stops at the limit), and more input can only
    /// decide it.
    #[test]
    fn any_bytes_are_decided_or_wait_within_the_limit(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        if !decided(&bytes) {
            prop_assert!(bytes.len() <= MAX_REQUEST_HEAD);
        }
    }

    /// A head mutated anywhere is decided once the client sends the blank
    /// line, or at the latest at the size limit; a prefix of a decided head
    /// is never an upgrade with a different request.
    #[test]
    fn mutated_heads_are_always_decided(mut head in mutated_head()) {
        if !decided(&head) {
            head.extend_from_slice(b"\r\n\r\n");
            if !decided(&head) {
                head.resize(MAX_REQUEST_HEAD + 1, b'a');
                prop_assert!(decided(&head));
            }
        }
    }

    /// Arbitrary text never panics the event parser, and every refusal names
    /// an error code.
    #[test]
    fn any_text_is_an_event_or_a_named_error(text in ".{0,512}") {
        let (_, parsed) = protocol::parse(&text, 1024);
        if let Err(e) = parsed {
            prop_assert!(!e.code.is_empty());
        }
    }

    /// Structured JSON with arbitrary shapes where an event is expected.
    #[test]
    fn any_json_event_is_an_event_or_a_named_error(
        ty in prop::sample::select(vec![
            "conversation.item.create", "response.create", "response.cancel",
            "conversation.item.delete", "conversation.item.retrieve", "interview.finish",
            "session.update", "input_audio_buffer.append", "nope",
        ]),
        item in any_json(3),
        id in any_json(1),
    ) {
        let event = serde_json::json!({"type": ty, "item": item, "item_id": id, "event_id": id});
        let (_, parsed) = protocol::parse(&event.to_string(), 64);
        if let Err(e) = parsed {
            prop_assert!(!e.code.is_empty());
        }
    }
}

fn any_json(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,80}".prop_map(Value::String),
        prop::sample::select(vec![
            "message",
            "user",
            "input_text",
            "system",
            "function_call"
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(depth, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["type", "role", "content", "text", "id"])
                    .prop_map(str::to_owned),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The two parsers' unit cases that matter most at the edge, kept next to
/// the properties: a valid head upgrades whole, and its prefixes wait.
#[test]
fn a_valid_head_upgrades_and_its_prefixes_wait() {
    for end in 0..VALID.len() {
        assert_eq!(
            examine(&VALID.as_bytes()[..end]),
            Examined::NeedMore,
            "prefix {end}"
        );
    }
    assert!(matches!(examine(VALID.as_bytes()), Examined::Upgrade(_)));
}
