//! The activator's static revision file (`activator::source::static_file`).
//!
//! Checks: no panic; every revision accepted has a non-empty namespace and name
//! and only `host:port` endpoints; an error names the file.

use activator::source::static_file;
use std::path::Path;

pub const TARGET: crate::Target = crate::Target {
    name: "static_source",
    run,
    dictionary: &[
        br#"{"revisions":["#,
        br#""namespace":"#,
        br#""name":"#,
        br#""containerConcurrency":"#,
        br#""timeoutSeconds":"#,
        br#""responseStartTimeoutSeconds":"#,
        br#""idleTimeoutSeconds":"#,
        br#""protocol":"h2c""#,
        br#""ready":["#,
        br#""notReady":["#,
        br#""clusterIP":"#,
        br#""activators":["#,
        br#""probeOptimisation":"#,
        br#""127.0.0.1:8012""#,
        br#""[::1]:80""#,
        br#""[::1]""#,
        b"18446744073709551616",
        b"null",
    ],
};

pub fn run(data: &[u8]) {
    let path = Path::new("/fuzz/revisions.json");
    match static_file::parse(path, data) {
        Ok(revisions) => {
            for (key, state) in &revisions {
                let text = format!("{key:?}");
                assert!(!text.is_empty());
                for address in state.ready.iter().chain(&state.not_ready) {
                    let (host, port) = address.rsplit_once(':').expect("host:port");
                    assert!(!host.is_empty() && port.parse::<u16>().is_ok(), "{address}");
                }
            }
        }
        Err(error) => {
            assert!(
                error.to_string().contains("/fuzz/revisions.json"),
                "{error}"
            );
        }
    }
}
