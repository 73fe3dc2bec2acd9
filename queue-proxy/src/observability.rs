//! `OBSERVABILITY_CONFIG`: the JSON the reconciler renders from
//! config-observability (spec §9). Missing keys keep the queue-proxy's defaults
//! (protocols `none`, profiling `disabled`, request log off with upstream's
//! default template); invalid JSON is a startup error naming the variable, as
//! upstream's is fatal. Durations are integer nanoseconds, as Go marshals them.
//!
//! Who acts on what: the request-log keys ([`crate::request_log`]),
//! `requestMetrics` (`prometheus` in [`crate::request_metrics`], `grpc` and
//! `http/protobuf` in [`crate::telemetry::metrics_export`]) and `tracing`
//! ([`crate::telemetry::spans`]). The `runtime` block (Go's profiling and
//! memstats) is parsed and otherwise ignored.

use serde::Deserialize;

use crate::request_log::DEFAULT_TEMPLATE;

/// The observability settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObservabilityConfig {
    pub tracing: TracingConfig,
    pub runtime: RuntimeConfig,
    pub request_metrics: RequestMetricsConfig,
    /// `logging.enable-request-log`.
    pub enable_request_log: bool,
    /// `logging.request-log-template`; upstream's default when absent.
    pub request_log_template: String,
    /// `logging.enable-probe-request-log`.
    pub enable_probe_request_log: bool,
}

/// `tracing-*`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TracingConfig {
    pub protocol: String,
    pub endpoint: String,
    pub sampling_rate: f64,
}

/// `runtime-*`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RuntimeConfig {
    pub profiling: String,
    /// Nanoseconds.
    pub export_interval: i64,
}

/// `request-metrics-*`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RequestMetricsConfig {
    pub protocol: String,
    pub endpoint: String,
    /// Nanoseconds.
    pub export_interval: i64,
}

impl Default for ObservabilityConfig {
    fn default() -> Self {
        ObservabilityConfig {
            tracing: TracingConfig::default(),
            runtime: RuntimeConfig::default(),
            request_metrics: RequestMetricsConfig::default(),
            enable_request_log: false,
            request_log_template: DEFAULT_TEMPLATE.to_owned(),
            enable_probe_request_log: false,
        }
    }
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            protocol: "none".to_owned(),
            endpoint: String::new(),
            sampling_rate: 0.0,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            profiling: "disabled".to_owned(),
            export_interval: 0,
        }
    }
}

impl Default for RequestMetricsConfig {
    fn default() -> Self {
        RequestMetricsConfig {
            protocol: "none".to_owned(),
            endpoint: String::new(),
            export_interval: 0,
        }
    }
}

/// `OBSERVABILITY_CONFIG` is not the JSON the reconciler writes.
#[derive(Debug, thiserror::Error)]
#[error("OBSERVABILITY_CONFIG: {0}")]
pub struct ObservabilityConfigError(#[from] serde_json::Error);

impl ObservabilityConfig {
    /// Parses the variable's value; empty means all defaults.
    pub fn parse(json: &str) -> Result<Self, ObservabilityConfigError> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        Ok(serde_json::from_str(json)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciler_zero_config_keeps_defaults() {
        let c = ObservabilityConfig::parse(
            r#"{"tracing":{},"metrics":{},"runtime":{},"requestMetrics":{}}"#,
        )
        .unwrap();
        assert_eq!(c, ObservabilityConfig::default());
        assert_eq!(c.request_log_template, DEFAULT_TEMPLATE);
        assert_eq!(
            ObservabilityConfig::parse("").unwrap(),
            ObservabilityConfig::default()
        );
    }

    #[test]
    fn keys_overlay_defaults() {
        let c = ObservabilityConfig::parse(
            r#"{"tracing":{"protocol":"grpc","endpoint":"otel:4317","samplingRate":0.5},
                "requestMetrics":{"protocol":"prometheus","exportInterval":15000000000},
                "enableRequestLog":true,"requestLogTemplate":"{{.Request.Method}}",
                "enableProbeRequestLog":true}"#,
        )
        .unwrap();
        assert_eq!(c.tracing.protocol, "grpc");
        assert_eq!(c.tracing.sampling_rate, 0.5);
        assert_eq!(c.request_metrics.protocol, "prometheus");
        assert_eq!(c.request_metrics.export_interval, 15_000_000_000);
        assert_eq!(c.runtime.profiling, "disabled");
        assert!(c.enable_request_log && c.enable_probe_request_log);
        assert_eq!(c.request_log_template, "{{.Request.Method}}");
    }

    #[test]
    fn invalid_json_names_the_variable() {
        let err = ObservabilityConfig::parse("{nope").unwrap_err();
        assert!(
            err.to_string().starts_with("OBSERVABILITY_CONFIG: "),
            "{err}"
        );
        assert!(ObservabilityConfig::parse(r#"{"enableRequestLog":"yes"}"#).is_err());
    }
}
