//! `SERVING_READINESS_PROBE` (`queue_proxy::readiness::parse`), then the probe
//! set-up that runs at start (URL and header validation in `Readiness::new`).
//!
//! Input: one byte choosing `ENABLE_MULTI_CONTAINER_PROBES` (odd = true), then the
//! JSON. Checks: no panic; single mode yields at most one probe.

use queue_proxy::readiness::{self, Readiness, ReadinessOptions};

pub const TARGET: crate::Target = crate::Target {
    name: "readiness_probe",
    run,
    dictionary: &[
        br#""httpGet":"#,
        br#""tcpSocket":"#,
        br#""grpc":"#,
        br#""exec":{"command":["x"]}"#,
        br#""path":"#,
        br#""host":"#,
        br#""port":"#,
        br#""scheme":"HTTP""#,
        br#""httpHeaders":[{"name":"a","value":"b"}]"#,
        br#""periodSeconds":"#,
        br#""timeoutSeconds":"#,
        br#""successThreshold":"#,
        br#""failureThreshold":"#,
        br#""service":"#,
        b"null",
        b"%zz",
        b"[::1]",
        b"\\u0000",
        b"2147483648",
    ],
};

pub fn run(data: &[u8]) {
    let Some((&mode, json)) = data.split_first() else {
        return;
    };
    let multi = mode & 1 == 1;
    if let Ok(probes) = readiness::parse(&crate::text(json), multi) {
        assert!(multi || probes.len() <= 1, "one probe without multi");
        drop(Readiness::new(probes, ReadinessOptions::default()));
    }
}
