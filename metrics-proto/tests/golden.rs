//! Every vector in `shared/golden/metrics-proto-vectors.json` (bytes produced by
//! upstream's gogo-generated Go code) must encode from its values byte for byte and
//! decode back to its values.

use metrics_proto::{Message, Stat, WireStatMessage, WireStatMessages};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize, Default)]
#[serde(default)]
struct StatValue {
    pod_name: String,
    average_concurrent_requests: f64,
    average_proxied_concurrent_requests: f64,
    request_count: f64,
    proxied_request_count: f64,
    process_uptime: f64,
    timestamp: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireValue {
    namespace: String,
    name: String,
    stat: Option<StatValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WiresValue {
    messages: Vec<WireValue>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    value: serde_json::Value,
    hex: String,
}

impl From<StatValue> for Stat {
    fn from(v: StatValue) -> Self {
        Stat {
            pod_name: v.pod_name,
            average_concurrent_requests: v.average_concurrent_requests,
            average_proxied_concurrent_requests: v.average_proxied_concurrent_requests,
            request_count: v.request_count,
            proxied_request_count: v.proxied_request_count,
            process_uptime: v.process_uptime,
            timestamp: v.timestamp,
        }
    }
}

impl From<WiresValue> for WireStatMessages {
    fn from(v: WiresValue) -> Self {
        WireStatMessages {
            messages: v
                .messages
                .into_iter()
                .map(|m| WireStatMessage {
                    namespace: m.namespace,
                    name: m.name,
                    stat: m.stat.map(Stat::from),
                })
                .collect(),
        }
    }
}

fn vectors() -> Vec<Vector> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/golden/metrics-proto-vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let vectors: Vec<Vector> = serde_json::from_str(&text).expect("vectors parse");
    assert!(vectors.len() >= 5, "too few vectors in {}", path.display());
    vectors
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn check<M: Message + Default + PartialEq + std::fmt::Debug>(name: &str, want: M, bytes: &[u8]) {
    assert_eq!(want.encode_to_vec(), bytes, "{name}: encoding differs");
    let decoded = M::decode(bytes).unwrap_or_else(|e| panic!("{name}: decode: {e}"));
    assert_eq!(decoded, want, "{name}: decoding differs");
}

#[test]
fn every_golden_vector_round_trips_byte_for_byte() {
    let mut seen = 0;
    for v in vectors() {
        let bytes = unhex(&v.hex);
        match v.kind.as_str() {
            "metrics.Stat" => {
                let want: StatValue = serde_json::from_value(v.value).expect("stat value");
                check(&v.name, Stat::from(want), &bytes);
            }
            "metrics.WireStatMessages" => {
                let want: WiresValue = serde_json::from_value(v.value).expect("wire value");
                check(&v.name, WireStatMessages::from(want), &bytes);
            }
            other => panic!("{}: unknown message type {other}", v.name),
        }
        seen += 1;
    }
    assert!(seen >= 5);
}

#[test]
fn unknown_fields_are_skipped_as_upstream_does() {
    // A newer autoscaler field (tag 15, varint) must not break decoding.
    let mut bytes = Stat {
        pod_name: "p".into(),
        ..Default::default()
    }
    .encode_to_vec();
    bytes.extend_from_slice(&[0x78, 0x01]);
    assert_eq!(Stat::decode(bytes.as_slice()).unwrap().pod_name, "p");
}

#[test]
fn truncated_input_is_an_error_not_a_panic() {
    let bytes = unhex("0a2768656c6c6f");
    assert!(Stat::decode(bytes.as_slice()).is_err());
}
