//! `OBSERVABILITY_CONFIG` (`queue_proxy::observability`), then what start-up
//! derives from it: the request logger from `requestLogTemplate`.
//!
//! Checks: no panic; a parse is deterministic.

use queue_proxy::observability::ObservabilityConfig;
use queue_proxy::request_log::{RequestLogger, RevisionInfo};

pub const TARGET: crate::Target = crate::Target {
    name: "observability_config",
    run,
    dictionary: &[
        br#""tracing":{"#,
        br#""protocol":"#,
        br#""endpoint":"#,
        br#""samplingRate":"#,
        br#""requestMetrics":{"#,
        br#""metrics":{"#,
        br#""runtime":{"#,
        br#""exportInterval":"#,
        br#""enableRequestLog":true"#,
        br#""requestLogTemplate":"#,
        br#""enableProbeRequestLog":"#,
        br#""prometheus""#,
        br#""grpc""#,
        br#""http/protobuf""#,
        b"{{.Request.Method}}",
        b"null",
        b"1e400",
        b"-0",
    ],
};

pub fn run(data: &[u8]) {
    let text = crate::text(data);
    let Ok(config) = ObservabilityConfig::parse(&text) else {
        return;
    };
    assert_eq!(
        Some(&config),
        ObservabilityConfig::parse(&text).ok().as_ref(),
        "parsing is deterministic"
    );
    if config.enable_request_log && config.request_log_template.len() <= 4096 {
        drop(RequestLogger::new_or_disabled(
            &config.request_log_template,
            RevisionInfo::default(),
            config.enable_probe_request_log,
        ));
    }
}
