//! The autoscaler wire messages (`metrics-proto`): what the autoscaler would
//! decode from a queue-proxy scrape and from the activator's websocket.
//!
//! Input: a selector byte (even: `Stat`, odd: `WireStatMessages`), then the bytes.
//! Checks: no panic; a message that decodes re-encodes to bytes that decode to
//! the same message, and whose encoding is stable (canonical proto3).

use metrics_proto::{Message, Stat, WireStatMessages};

pub const TARGET: crate::Target = crate::Target {
    name: "metrics_proto",
    run,
    dictionary: &[
        b"\x0a",
        b"\x11",
        b"\x19",
        b"\x21",
        b"\x29",
        b"\x31",
        b"\x38",
        b"\x12",
        b"\x1a",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        b"\x00\x00\x00\x00\x00\x00\xf8\x7f",
    ],
};

pub fn run(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        round_trip::<Stat>(bytes);
    } else {
        round_trip::<WireStatMessages>(bytes);
    }
}

fn round_trip<M: Message + Default + std::fmt::Debug>(bytes: &[u8]) {
    let Ok(message) = M::decode(bytes) else {
        return;
    };
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len(), "encoded_len is exact");
    let again = M::decode(encoded.as_slice()).expect("our own encoding decodes");
    // NaN != NaN, so compare encodings rather than messages.
    assert_eq!(again.encode_to_vec(), encoded, "{message:?}");
}
