//! The activator's config maps in SYSTEM_NAMESPACE (spec §1.3).
//!
//! - `config-network` is read once at startup, as upstream's `GET` before the
//!   informers start: a missing or invalid map stops the activator. Its mesh
//!   keys are fixed for the process' life (upstream needs a restart too).
//! - `config-logging` and `config-observability` (names from
//!   `CONFIG_LOGGING_NAME` / `CONFIG_OBSERVABILITY_NAME`) are watched and
//!   published as plain key/value data for the logging and observability
//!   modules. As upstream's config-map watcher, startup fails unless all three
//!   maps exist.

use queue_proxy::config::goparse;
use std::collections::BTreeMap;

use crate::backends::MeshMode;
use crate::config::Config;

/// The network config map's name (not configurable upstream either).
pub const CONFIG_NETWORK: &str = "config-network";

/// A config map's `data`.
pub type ConfigData = BTreeMap<String, String>;

/// The watched config maps' contents, as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigMaps {
    pub network: ConfigData,
    pub logging: ConfigData,
    pub observability: ConfigData,
}

/// The keys of `config-network` the activator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetworkConfig {
    /// `enable-mesh-pod-addressability` (Go bool, default false).
    pub mesh_pod_addressability: bool,
    /// `mesh-compatibility-mode` (`enabled`|`disabled`|`auto`, any case).
    pub mesh_compatibility_mode: MeshMode,
    /// `system-internal-tls: enabled`, or the legacy `internal-encryption: true`.
    pub system_internal_tls: bool,
}

/// A `config-network` value that upstream would refuse too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config-network: {key}: invalid value {value:?}")]
pub struct InvalidNetworkConfig {
    pub key: &'static str,
    pub value: String,
}

impl NetworkConfig {
    /// Parses the keys the activator reads; unknown keys are ignored.
    pub fn parse(data: &ConfigData) -> Result<NetworkConfig, InvalidNetworkConfig> {
        let invalid = |key: &'static str, value: &str| InvalidNetworkConfig {
            key,
            value: value.to_owned(),
        };
        let boolean = |key: &'static str| {
            data.get(key)
                .map(|v| goparse::parse_bool(v).map_err(|_| invalid(key, v)))
                .transpose()
        };
        let mut config = NetworkConfig {
            mesh_pod_addressability: boolean("enable-mesh-pod-addressability")?.unwrap_or(false),
            ..NetworkConfig::default()
        };
        if let Some(mode) = data.get("mesh-compatibility-mode") {
            config.mesh_compatibility_mode = mode
                .parse()
                .map_err(|_| invalid("mesh-compatibility-mode", mode))?;
        }
        let legacy = boolean("internal-encryption")?.unwrap_or(false);
        config.system_internal_tls = match data.get("system-internal-tls") {
            Some(v) if v.eq_ignore_ascii_case("enabled") => true,
            Some(v) if v.eq_ignore_ascii_case("disabled") => legacy,
            Some(v) => return Err(invalid("system-internal-tls", v)),
            None => legacy,
        };
        Ok(config)
    }
}

impl NetworkConfig {
    /// Puts the mesh settings where the data path reads them, replacing the
    /// static source's `ACTIVATOR_*` stand-ins.
    pub fn apply_to(&self, config: &mut Config) {
        config.mesh_pod_addressability = self.mesh_pod_addressability;
        config.mesh_compatibility_mode = self.mesh_compatibility_mode;
    }
}

/// A `config-observability` value the activator cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config-observability: {key}: invalid value {value:?}")]
pub struct InvalidObservabilityConfig {
    pub key: &'static str,
    pub value: String,
}

/// Applies `config-observability` as it is at startup: `metrics-protocol` and
/// the `tracing-*` keys (upstream builds its exporters once, at startup, too)
/// and the request log
/// (`logging.enable-request-log` with a non-empty
/// `logging.request-log-template`; upstream also follows later edits of the
/// template, which this activator does not yet).
pub fn apply_observability(
    data: &ConfigData,
    config: &mut Config,
) -> Result<(), InvalidObservabilityConfig> {
    if let Some(protocol) = data.get("metrics-protocol") {
        config.metrics_protocol = protocol.parse().map_err(|_| InvalidObservabilityConfig {
            key: "metrics-protocol",
            value: protocol.clone(),
        })?;
    }
    if let Some(protocol) = data.get("tracing-protocol") {
        config.tracing.protocol = protocol.clone();
    }
    if let Some(endpoint) = data.get("tracing-endpoint") {
        config.tracing.endpoint = endpoint.clone();
    }
    if let Some(rate) = data.get("tracing-sampling-rate") {
        config.tracing.sampling_rate =
            crate::config::parse_rate(rate).map_err(|_| InvalidObservabilityConfig {
                key: "tracing-sampling-rate",
                value: rate.clone(),
            })?;
    }
    let enabled = data
        .get("logging.enable-request-log")
        .is_some_and(|v| goparse::parse_bool(v) == Ok(true));
    config.request_log_template = data
        .get("logging.request-log-template")
        .filter(|template| enabled && !template.is_empty())
        .cloned();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observability_sets_metrics_and_the_request_log() {
        let env: std::collections::HashMap<String, String> = [
            ("POD_NAME", "a"),
            ("POD_IP", "10.0.0.1"),
            ("SYSTEM_NAMESPACE", "knative-serving"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut config = Config::from_env(&env, None).unwrap();
        apply_observability(
            &data(&[
                ("metrics-protocol", "prometheus"),
                ("logging.enable-request-log", "true"),
                ("logging.request-log-template", "{{.Request.Method}}"),
            ]),
            &mut config,
        )
        .unwrap();
        assert_eq!(
            config.metrics_protocol,
            crate::config::MetricsProtocol::Prometheus
        );
        assert_eq!(
            config.request_log_template.as_deref(),
            Some("{{.Request.Method}}")
        );
        apply_observability(
            &data(&[("logging.request-log-template", "{{.Request.Method}}")]),
            &mut config,
        )
        .unwrap();
        assert_eq!(config.request_log_template, None);
        let err =
            apply_observability(&data(&[("metrics-protocol", "statsd")]), &mut config).unwrap_err();
        assert_eq!(err.key, "metrics-protocol");
    }

    fn data(pairs: &[(&str, &str)]) -> ConfigData {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(
            NetworkConfig::parse(&data(&[])).unwrap(),
            NetworkConfig::default()
        );
        let c = NetworkConfig::parse(&data(&[
            ("enable-mesh-pod-addressability", "true"),
            ("mesh-compatibility-mode", "Disabled"),
            ("system-internal-tls", "Enabled"),
        ]))
        .unwrap();
        assert!(c.mesh_pod_addressability && c.system_internal_tls);
        assert_eq!(c.mesh_compatibility_mode, MeshMode::Disabled);
        let legacy = NetworkConfig::parse(&data(&[("internal-encryption", "true")])).unwrap();
        assert!(legacy.system_internal_tls);
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (key, value) in [
            ("enable-mesh-pod-addressability", "yes"),
            ("mesh-compatibility-mode", "sometimes"),
            ("system-internal-tls", "on"),
        ] {
            let err = NetworkConfig::parse(&data(&[(key, value)])).unwrap_err();
            assert_eq!(err.key, key);
        }
    }
}
