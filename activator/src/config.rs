//! The activator's environment (spec §1.1), read like upstream's: a missing
//! required variable or a malformed value is an error naming the variable, and
//! the binary exits 1 with it.
//!
//! Reuses the queue-proxy's env plumbing ([`EnvSource`], [`ConfigError`] and
//! Go's parsers), so tests pass a map and never touch the process env.
//!
//! Upstream reads `config-network` and friends from the Kubernetes API, and so
//! does the Kubernetes source (the default). With the static source
//! (`ACTIVATOR_STATIC_SOURCE`) there is no API, and the settings the data path
//! needs come from extension variables (`ACTIVATOR_*` below), which upstream
//! does not know.

use queue_proxy::config::goparse::{self, NumError};
use queue_proxy::config::{ConfigError, EnvSource, NotUnicode};
pub use queue_proxy::observability::TracingConfig;
use std::path::PathBuf;

use crate::backends::MeshMode;
use crate::source::kubernetes::KubeVersion;
use crate::source::kubernetes::client::DEFAULT_MIN_VERSION;
use std::time::Duration;

/// The activator's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `POD_NAME` (required): `pod_name` in every stat sent to the autoscaler.
    pub pod_name: String,
    /// `POD_IP` (required): this activator's identity for subsetting.
    pub pod_ip: String,
    /// `SYSTEM_NAMESPACE` (required): where the autoscaler service lives.
    pub system_namespace: String,
    /// `CLUSTER_DOMAIN`, else the `search svc.<domain>` of /etc/resolv.conf,
    /// else `cluster.local`.
    pub cluster_domain: String,
    /// `MAX_IDLE_PROXY_CONNS_PER_HOST` (default 100): idle connections kept per pod.
    pub max_idle_per_host: usize,
    /// `PROBE_TIMEOUT` (Go duration, default 300ms): one probe round's deadline.
    pub probe_timeout: Duration,
    /// `PROBE_FREQUENCY` (Go duration, default 200ms): the slowest re-probe period.
    pub probe_frequency: Duration,
    /// `METRICS_PROMETHEUS_PORT` (1024–65535, default 9090), or the
    /// `ACTIVATOR_METRICS_PORT` extension (any port; 0 for tests).
    pub metrics_port: u16,
    /// `KUBECONFIG`: kubeconfig file(s); unset means the in-cluster config.
    pub kubeconfig: Option<String>,
    /// `CONFIG_LOGGING_NAME` (default `config-logging`).
    pub config_logging_name: String,
    /// `CONFIG_OBSERVABILITY_NAME` (default `config-observability`).
    pub config_observability_name: String,
    /// `KUBERNETES_MIN_VERSION` (default `v1.34.0`): the API server must be at
    /// least this version.
    pub kubernetes_min_version: KubeVersion,

    // === extensions ===
    /// `ACTIVATOR_HTTP_PORT` (default 8012).
    pub http_port: u16,
    /// `ACTIVATOR_H2C_PORT` (default 8013).
    pub h2c_port: u16,
    /// `ACTIVATOR_STATIC_SOURCE`: a JSON file of revisions and endpoints (see
    /// `source::static_file`) instead of the Kubernetes API.
    pub static_source: Option<PathBuf>,
    /// `ACTIVATOR_AUTOSCALER_URL`: overrides `ws://autoscaler.<ns>.svc.<domain>:8080`.
    pub autoscaler_url: Option<String>,
    /// `ACTIVATOR_DRAIN_TIMEOUT_MS` (default 45000): how long traffic is still
    /// served after SIGTERM (upstream's fixed 45 s; for tests).
    pub drain_timeout: Duration,
    /// `ACTIVATOR_MAX_HELD_PER_REVISION`: opt-in cap on requests held (waiting
    /// for capacity) per revision; past it, 503. Unset: no cap, as upstream.
    pub max_held_per_revision: Option<usize>,
    /// `ACTIVATOR_WORKER_THREADS`: tokio workers; unset means from the CPU quota.
    pub worker_threads: Option<usize>,
    /// `ACTIVATOR_ENABLE_MESH_POD_ADDRESSABILITY` (bool, default false):
    /// config-network's `enable-mesh-pod-addressability` ("passthrough LB").
    /// With the Kubernetes source, config-network's value replaces it.
    pub mesh_pod_addressability: bool,
    /// `ACTIVATOR_MESH_COMPATIBILITY_MODE` (`auto`|`enabled`|`disabled`, default
    /// `auto`): config-network's `mesh-compatibility-mode`. With the Kubernetes
    /// source, config-network's value replaces it.
    pub mesh_compatibility_mode: MeshMode,
    /// `ACTIVATOR_METRICS_PROTOCOL` (`none`|`prometheus`|`grpc`|`http/protobuf`,
    /// default `none`): config-observability's `metrics-protocol`.
    pub metrics_protocol: MetricsProtocol,
    /// `ACTIVATOR_REQUEST_LOG_TEMPLATE`: config-observability's
    /// `logging.request-log-template` with `logging.enable-request-log` on;
    /// unset or empty, no request log.
    pub request_log_template: Option<String>,
    /// `ACTIVATOR_TRACING_PROTOCOL` (`none`|`grpc`|`http/protobuf`|`stdout`),
    /// `ACTIVATOR_TRACING_ENDPOINT` and `ACTIVATOR_TRACING_SAMPLING_RATE`:
    /// config-observability's `tracing-protocol`, `tracing-endpoint` and
    /// `tracing-sampling-rate`.
    pub tracing: TracingConfig,
}

/// config-observability's `metrics-protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsProtocol {
    #[default]
    None,
    Prometheus,
    Grpc,
    HttpProtobuf,
}

impl std::str::FromStr for MetricsProtocol {
    type Err = NumError;

    fn from_str(s: &str) -> Result<Self, NumError> {
        match s {
            "" | "none" => Ok(MetricsProtocol::None),
            "prometheus" => Ok(MetricsProtocol::Prometheus),
            "grpc" => Ok(MetricsProtocol::Grpc),
            "http/protobuf" => Ok(MetricsProtocol::HttpProtobuf),
            _ => Err(NumError::Syntax),
        }
    }
}

impl Config {
    /// Reads the activator's variables from `env`. `resolv_conf` is the text of
    /// /etc/resolv.conf, if readable (for the cluster domain).
    pub fn from_env(
        env: &impl EnvSource,
        resolv_conf: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let cluster_domain = match optional(env, "CLUSTER_DOMAIN")? {
            Some(domain) if !domain.is_empty() => domain,
            _ => resolv_conf
                .and_then(cluster_domain_from_resolv_conf)
                .unwrap_or_else(|| "cluster.local".to_owned()),
        };
        Ok(Config {
            pod_name: required(env, "POD_NAME")?,
            pod_ip: required(env, "POD_IP")?,
            system_namespace: required(env, "SYSTEM_NAMESPACE")?,
            cluster_domain,
            max_idle_per_host: parsed(env, "MAX_IDLE_PROXY_CONNS_PER_HOST", "int", |v| {
                non_negative(goparse::parse_int(v)?)
            })?
            .unwrap_or(100),
            probe_timeout: parsed(env, "PROBE_TIMEOUT", "duration", goparse::parse_duration)?
                .unwrap_or(Duration::from_millis(300)),
            probe_frequency: parsed(env, "PROBE_FREQUENCY", "duration", goparse::parse_duration)?
                .unwrap_or(Duration::from_millis(200)),
            metrics_port: match parsed(env, "ACTIVATOR_METRICS_PORT", "port", goparse::parse_port)?
            {
                Some(port) => port,
                None => parsed(env, "METRICS_PROMETHEUS_PORT", "port (1024-65535)", |v| {
                    match goparse::parse_port(v)? {
                        port @ 1024.. => Ok(port),
                        _ => Err(NumError::Range),
                    }
                })?
                .unwrap_or(9090),
            },
            kubeconfig: optional(env, "KUBECONFIG")?.filter(|k| !k.is_empty()),
            config_logging_name: optional(env, "CONFIG_LOGGING_NAME")?
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "config-logging".to_owned()),
            config_observability_name: optional(env, "CONFIG_OBSERVABILITY_NAME")?
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "config-observability".to_owned()),
            kubernetes_min_version: parsed(env, "KUBERNETES_MIN_VERSION", "version", |v| {
                v.parse::<KubeVersion>().map_err(|_| NumError::Syntax)
            })?
            .unwrap_or(DEFAULT_MIN_VERSION),
            http_port: parsed(env, "ACTIVATOR_HTTP_PORT", "port", goparse::parse_port)?
                .unwrap_or(8012),
            h2c_port: parsed(env, "ACTIVATOR_H2C_PORT", "port", goparse::parse_port)?
                .unwrap_or(8013),
            static_source: optional(env, "ACTIVATOR_STATIC_SOURCE")?
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            autoscaler_url: optional(env, "ACTIVATOR_AUTOSCALER_URL")?.filter(|u| !u.is_empty()),
            drain_timeout: parsed(env, "ACTIVATOR_DRAIN_TIMEOUT_MS", "milliseconds", |v| {
                Ok(Duration::from_millis(
                    non_negative(goparse::parse_int(v)?)? as u64
                ))
            })?
            .unwrap_or(Duration::from_secs(45)),
            max_held_per_revision: parsed(
                env,
                "ACTIVATOR_MAX_HELD_PER_REVISION",
                "positive int",
                positive,
            )?,
            worker_threads: parsed(env, "ACTIVATOR_WORKER_THREADS", "positive int", positive)?,
            mesh_pod_addressability: parsed(
                env,
                "ACTIVATOR_ENABLE_MESH_POD_ADDRESSABILITY",
                "bool",
                goparse::parse_bool,
            )?
            .unwrap_or(false),
            mesh_compatibility_mode: parsed(
                env,
                "ACTIVATOR_MESH_COMPATIBILITY_MODE",
                "mesh mode",
                |v| v.parse::<MeshMode>().map_err(|_| NumError::Syntax),
            )?
            .unwrap_or_default(),
            metrics_protocol: parsed(
                env,
                "ACTIVATOR_METRICS_PROTOCOL",
                "metrics protocol",
                str::parse,
            )?
            .unwrap_or_default(),
            request_log_template: optional(env, "ACTIVATOR_REQUEST_LOG_TEMPLATE")?
                .filter(|t| !t.is_empty()),
            tracing: TracingConfig {
                protocol: optional(env, "ACTIVATOR_TRACING_PROTOCOL")?.unwrap_or_default(),
                endpoint: optional(env, "ACTIVATOR_TRACING_ENDPOINT")?.unwrap_or_default(),
                sampling_rate: parsed(env, "ACTIVATOR_TRACING_SAMPLING_RATE", "float", parse_rate)?
                    .unwrap_or(0.0),
            },
        })
    }

    /// Where the autoscaler's stat server listens.
    pub fn autoscaler_url(&self) -> String {
        self.autoscaler_url.clone().unwrap_or_else(|| {
            format!(
                "ws://autoscaler.{}.svc.{}:8080",
                self.system_namespace, self.cluster_domain
            )
        })
    }
}

/// `search ... svc.<domain> ...` in resolv.conf gives the cluster domain.
fn cluster_domain_from_resolv_conf(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("search"))
        .flat_map(str::split_whitespace)
        .find_map(|entry| entry.strip_prefix("svc."))
        .map(|domain| domain.trim_end_matches('.').to_owned())
        .filter(|domain| !domain.is_empty())
}

fn optional(env: &impl EnvSource, key: &'static str) -> Result<Option<String>, ConfigError> {
    env.get(key)
        .map_err(|NotUnicode| ConfigError::NotUnicode { key })
}

fn required(env: &impl EnvSource, key: &'static str) -> Result<String, ConfigError> {
    optional(env, key)?.ok_or(ConfigError::Missing { key })
}

fn parsed<T>(
    env: &impl EnvSource,
    key: &'static str,
    ty: &'static str,
    parse: impl Fn(&str) -> Result<T, NumError>,
) -> Result<Option<T>, ConfigError> {
    optional(env, key)?
        .map(|value| {
            parse(&value).map_err(|reason| ConfigError::Parse {
                key,
                value,
                ty,
                reason,
            })
        })
        .transpose()
}

/// A sampling rate, 0 to 1.
pub(crate) fn parse_rate(v: &str) -> Result<f64, NumError> {
    match v.trim().parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        Ok(_) => Err(NumError::Range),
        Err(_) => Err(NumError::Syntax),
    }
}

fn non_negative(n: i64) -> Result<usize, NumError> {
    usize::try_from(n).map_err(|_| NumError::Range)
}

fn positive(v: &str) -> Result<usize, NumError> {
    match non_negative(goparse::parse_int(v)?)? {
        0 => Err(NumError::Range),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("POD_NAME", "activator-abc"),
            ("POD_IP", "10.0.0.5"),
            ("SYSTEM_NAMESPACE", "knative-serving"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        env
    }

    #[test]
    fn defaults_are_upstreams() {
        let c = Config::from_env(&env(&[]), None).unwrap();
        assert_eq!(c.cluster_domain, "cluster.local");
        assert_eq!(c.max_idle_per_host, 100);
        assert_eq!(c.probe_timeout, Duration::from_millis(300));
        assert_eq!(c.probe_frequency, Duration::from_millis(200));
        assert_eq!((c.http_port, c.h2c_port), (8012, 8013));
        assert_eq!(c.drain_timeout, Duration::from_secs(45));
        assert_eq!(c.max_held_per_revision, None);
        assert_eq!(c.metrics_port, 9090);
        assert_eq!(c.metrics_protocol, MetricsProtocol::None);
        assert_eq!(c.kubeconfig, None);
        assert_eq!(c.config_logging_name, "config-logging");
        assert_eq!(c.config_observability_name, "config-observability");
        assert_eq!(c.kubernetes_min_version, DEFAULT_MIN_VERSION);
        assert_eq!(
            c.autoscaler_url(),
            "ws://autoscaler.knative-serving.svc.cluster.local:8080"
        );
    }

    #[test]
    fn required_vars_are_named() {
        for key in ["POD_NAME", "POD_IP", "SYSTEM_NAMESPACE"] {
            let mut e = env(&[]);
            e.remove(key);
            let err = Config::from_env(&e, None).unwrap_err();
            assert_eq!(err.to_string(), format!("required key {key} missing value"));
        }
    }

    #[test]
    fn malformed_values_are_named() {
        for (key, value) in [
            ("PROBE_TIMEOUT", "300"),
            ("PROBE_FREQUENCY", "fast"),
            ("MAX_IDLE_PROXY_CONNS_PER_HOST", "-1"),
            ("ACTIVATOR_HTTP_PORT", "http"),
            ("ACTIVATOR_MAX_HELD_PER_REVISION", "0"),
            ("METRICS_PROMETHEUS_PORT", "80"),
            ("ACTIVATOR_METRICS_PROTOCOL", "statsd"),
            ("ACTIVATOR_TRACING_SAMPLING_RATE", "2"),
            ("KUBERNETES_MIN_VERSION", "1.34"),
        ] {
            let err = Config::from_env(&env(&[(key, value)]), None).unwrap_err();
            assert_eq!(err.key(), key, "{err}");
        }
    }

    #[test]
    fn mesh_settings() {
        let c = Config::from_env(&env(&[]), None).unwrap();
        assert!(!c.mesh_pod_addressability);
        assert_eq!(c.mesh_compatibility_mode, MeshMode::Auto);
        let c = Config::from_env(
            &env(&[
                ("ACTIVATOR_ENABLE_MESH_POD_ADDRESSABILITY", "true"),
                ("ACTIVATOR_MESH_COMPATIBILITY_MODE", "Enabled"),
            ]),
            None,
        )
        .unwrap();
        assert!(c.mesh_pod_addressability);
        assert_eq!(c.mesh_compatibility_mode, MeshMode::Enabled);
        let err = Config::from_env(
            &env(&[("ACTIVATOR_MESH_COMPATIBILITY_MODE", "sometimes")]),
            None,
        )
        .unwrap_err();
        assert_eq!(err.key(), "ACTIVATOR_MESH_COMPATIBILITY_MODE");
    }

    #[test]
    fn metrics_settings() {
        let c = Config::from_env(
            &env(&[
                ("METRICS_PROMETHEUS_PORT", "9999"),
                ("ACTIVATOR_METRICS_PROTOCOL", "prometheus"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.metrics_port, 9999);
        assert_eq!(c.metrics_protocol, MetricsProtocol::Prometheus);
        let c = Config::from_env(
            &env(&[
                ("METRICS_PROMETHEUS_PORT", "9999"),
                ("ACTIVATOR_METRICS_PORT", "0"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.metrics_port, 0);
    }

    #[test]
    fn cluster_domain_from_env_then_resolv_conf() {
        let resolv = "nameserver 10.96.0.10\nsearch default.svc.example.org svc.example.org example.org\noptions ndots:5\n";
        let c = Config::from_env(&env(&[]), Some(resolv)).unwrap();
        assert_eq!(c.cluster_domain, "example.org");
        let c = Config::from_env(&env(&[("CLUSTER_DOMAIN", "corp.local")]), Some(resolv)).unwrap();
        assert_eq!(c.cluster_domain, "corp.local");
        let c = Config::from_env(&env(&[]), Some("nameserver 1.1.1.1\n")).unwrap();
        assert_eq!(c.cluster_domain, "cluster.local");
    }

    #[test]
    fn go_durations_and_overrides() {
        let c = Config::from_env(
            &env(&[
                ("PROBE_TIMEOUT", "1.5s"),
                ("ACTIVATOR_AUTOSCALER_URL", "ws://127.0.0.1:9999"),
                ("ACTIVATOR_DRAIN_TIMEOUT_MS", "100"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.probe_timeout, Duration::from_millis(1500));
        assert_eq!(c.autoscaler_url(), "ws://127.0.0.1:9999");
        assert_eq!(c.drain_timeout, Duration::from_millis(100));
    }
}
