//! Configuration from the environment, parsed the way upstream's envconfig parses it.
//!
//! The Go queue-proxy fills one struct with `envconfig.Process("", &env)`
//! (kelseyhightower/envconfig) and exits 1 on the first error. The reconciler that writes our
//! environment is upstream's, so the rules are upstream's too:
//!
//! - a **required** variable must be *present*; an empty string is a valid string value;
//! - an absent optional variable takes its default (Go's zero value upstream);
//! - int and bool values always go through Go's parsers ([`goparse`]), so an *empty* or
//!   malformed value is an error even for optional variables, `0x10` is 16 and `010` is 8;
//! - variables are checked in a fixed order (upstream's struct order, as listed in [`VARS`])
//!   and the first failure is reported, naming the variable.
//!
//! Ports are the one deliberate difference: upstream keeps `QUEUE_SERVING_PORT` and
//! `USER_PORT` as strings and only fails when it listens or dials; we parse them here so a
//! typo fails at start with the variable's name ([`goparse::parse_port`]).
//! `QUEUE_SERVING_TLS_PORT` stays raw because it matters only once TLS certificates exist.
//!
//! Every variable is declared once, in the table at the bottom of this file. That table
//! generates the [`Config`] fields (and their docs), the parse order in
//! [`Config::from_env`], and [`VARS`], which `--help` renders with [`help_text`].
//!
//! Some variables are extensions that upstream does not read; they exist so tests can run
//! several proxies on one host, shorten upstream's fixed durations, and so operators can
//! size the runtime by hand: `QUEUE_PROXY_ADMIN_PORT` (default 8022),
//! `QUEUE_PROXY_METRICS_PORT` (default 9090), `QUEUE_PROXY_USER_METRICS_PORT` (default 9091;
//! `requestMetrics.endpoint` in `OBSERVABILITY_CONFIG` wins), `QUEUE_PROXY_WORKER_THREADS` (default: derived
//! from the cgroup CPU quota, see [`crate::runtime`]), `QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS`
//! (default 30000), `QUEUE_PROXY_UPGRADE_DRAIN_TIMEOUT_MS` (default 60000) and
//! `QUEUE_PROXY_HEADER_READ_TIMEOUT_MS` (default 60000). The reconciler also sets `SYSTEM_NAMESPACE`, `HOST_IP` and `ROOT_CA`,
//! which upstream ignores; so do we ([`IGNORED_VARS`]).
//!
//! Reading goes through [`EnvSource`] so tests pass a `HashMap` instead of touching the
//! process environment (linkerd2-proxy's `Strings` pattern).

pub mod goparse;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

pub use goparse::NumError;

// === EnvSource ===

/// A key → value source of configuration.
pub trait EnvSource {
    /// `Ok(None)` when `key` is absent; [`NotUnicode`] when it is present but unusable.
    fn get(&self, key: &str) -> Result<Option<String>, NotUnicode>;
}

/// A variable is present but its value is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("value is not valid UTF-8")]
pub struct NotUnicode;

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Result<Option<String>, NotUnicode> {
        std::env::var_os(key)
            .map(|v| v.into_string().map_err(|_| NotUnicode))
            .transpose()
    }
}

/// For tests: `HashMap<String, String>`, `HashMap<&str, &str>` and mixes.
impl<K, V, S> EnvSource for HashMap<K, V, S>
where
    K: Borrow<str> + Hash + Eq,
    V: AsRef<str>,
    S: BuildHasher,
{
    fn get(&self, key: &str) -> Result<Option<String>, NotUnicode> {
        Ok(HashMap::get(self, key).map(|v| v.as_ref().to_owned()))
    }
}

// === ConfigError ===

/// The first problem found in the environment. Every message names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is absent (envconfig's wording).
    #[error("required key {key} missing value")]
    Missing { key: &'static str },
    /// A value does not parse as its type.
    #[error("assigning {key}: converting {value:?} to type {ty}: {reason}")]
    Parse {
        key: &'static str,
        value: String,
        ty: &'static str,
        reason: NumError,
    },
    /// A value is not UTF-8 (Go would take the bytes; nothing we read can use them).
    #[error("assigning {key}: value is not valid UTF-8")]
    NotUnicode { key: &'static str },
}

impl ConfigError {
    /// The variable the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Missing { key } | Self::Parse { key, .. } | Self::NotUnicode { key } => key,
        }
    }
}

// === Var ===

/// One row of the variable table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    /// Type name used in errors and `--help`: `int`, `bool`, `string`, `port`, `positive int`.
    pub ty: &'static str,
    pub presence: Presence,
    pub origin: Origin,
    pub description: &'static str,
}

/// What happens when a variable is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Absent is an error (envconfig `required:"true"`). Present-but-empty is still parsed.
    Required,
    /// Absent means this text is parsed instead.
    Default(&'static str),
    /// Absent means `None`.
    Unset,
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Required => f.write_str("required"),
            Self::Default("") => f.write_str("default \"\""),
            Self::Default(text) => write!(f, "default {text}"),
            Self::Unset => f.write_str("optional"),
        }
    }
}

/// Whether upstream reads the variable too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Part of the upstream contract, set by the reconciler.
    Upstream,
    /// Ours only; the reconciler never sets it.
    Extension,
}

/// Set by the reconciler, not read by upstream's queue-proxy nor by us.
pub const IGNORED_VARS: &[&str] = &["SYSTEM_NAMESPACE", "HOST_IP", "ROOT_CA"];

// === value conversion ===

/// How a field's Rust type is read. Each type has exactly one meaning in [`Config`]:
/// `u16` is always a port, `Option<usize>` the worker-thread count and `Duration` a
/// number of milliseconds.
trait FromEnvValue: Sized {
    const TYPE: &'static str;
    fn convert(raw: &str) -> Result<Self, NumError>;
    /// The value of an absent [`Presence::Unset`] variable; `None` if the type has none.
    fn unset() -> Option<Self> {
        None
    }
}

impl FromEnvValue for String {
    const TYPE: &'static str = "string";
    fn convert(raw: &str) -> Result<Self, NumError> {
        Ok(raw.to_owned())
    }
}

impl FromEnvValue for i64 {
    const TYPE: &'static str = "int";
    fn convert(raw: &str) -> Result<Self, NumError> {
        goparse::parse_int(raw)
    }
}

impl FromEnvValue for bool {
    const TYPE: &'static str = "bool";
    fn convert(raw: &str) -> Result<Self, NumError> {
        goparse::parse_bool(raw)
    }
}

impl FromEnvValue for u16 {
    const TYPE: &'static str = "port";
    fn convert(raw: &str) -> Result<Self, NumError> {
        goparse::parse_port(raw)
    }
}

/// A thread count: a Go int, at least 1.
impl FromEnvValue for Option<usize> {
    const TYPE: &'static str = "positive int";
    fn convert(raw: &str) -> Result<Self, NumError> {
        let n = goparse::parse_int(raw)?;
        match usize::try_from(n) {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(NumError::Range),
        }
    }
    fn unset() -> Option<Self> {
        Some(None)
    }
}

/// Milliseconds as a Go int, at least 0 (only our test-facing extensions use it).
impl FromEnvValue for Duration {
    const TYPE: &'static str = "milliseconds";
    fn convert(raw: &str) -> Result<Self, NumError> {
        let ms = goparse::parse_int(raw)?;
        u64::try_from(ms)
            .map(Duration::from_millis)
            .map_err(|_| NumError::Range)
    }
}

fn read<T: FromEnvValue>(src: &impl EnvSource, var: &Var) -> Result<T, ConfigError> {
    let key = var.name;
    let raw = match src.get(key) {
        Ok(Some(raw)) => raw,
        Ok(None) => match var.presence {
            Presence::Required => return Err(ConfigError::Missing { key }),
            Presence::Default(text) => text.to_owned(),
            // The table only marks Option fields Unset; if that ever slips, fail loudly
            // rather than invent a value.
            Presence::Unset => return T::unset().ok_or(ConfigError::Missing { key }),
        },
        Err(NotUnicode) => return Err(ConfigError::NotUnicode { key }),
    };
    T::convert(&raw).map_err(|reason| ConfigError::Parse {
        key,
        value: raw,
        ty: T::TYPE,
        reason,
    })
}

// === the table ===

macro_rules! presence {
    (required) => {
        Presence::Required
    };
    (default $text:literal) => {
        Presence::Default($text)
    };
    (unset) => {
        Presence::Unset
    };
}

macro_rules! presence_doc {
    (required) => {
        "required"
    };
    (default $text:literal) => {
        concat!("optional, default `", stringify!($text), "`")
    };
    (unset) => {
        "optional, unset by default"
    };
}

macro_rules! origin_doc {
    (Upstream) => {
        ""
    };
    (Extension) => {
        " Extension: upstream does not read it."
    };
}

macro_rules! config_table {
    ($(
        $field:ident : $ty:ty = $name:literal, $origin:ident, [$($presence:tt)+], $desc:literal;
    )+) => {
        /// The queue-proxy's configuration; see the [module docs](self) for parsing rules.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Config {
            $(
                #[doc = $desc]
                #[doc = ""]
                #[doc = concat!(
                    "`", $name, "` (", presence_doc!($($presence)+), ").", origin_doc!($origin)
                )]
                pub $field: $ty,
            )+
        }

        /// Every variable [`Config::from_env`] reads, in the order it reads them.
        pub const VARS: &[Var] = &[$(config_table!(@var $ty, $name, $origin, [$($presence)+], $desc),)+];

        impl Config {
            /// Reads every variable of [`VARS`] in order; the first problem is the error.
            pub fn from_env(src: &impl EnvSource) -> Result<Config, ConfigError> {
                $(
                    let $field = read::<$ty>(
                        src,
                        &config_table!(@var $ty, $name, $origin, [$($presence)+], $desc),
                    )?;
                )+
                Ok(Config { $($field,)+ })
            }
        }
    };
    (@var $ty:ty, $name:literal, $origin:ident, [$($presence:tt)+], $desc:literal) => {
        Var {
            name: $name,
            ty: <$ty as FromEnvValue>::TYPE,
            presence: presence!($($presence)+),
            origin: Origin::$origin,
            description: $desc,
        }
    };
}

// Upstream's order (the `config` struct in cmd/queue/main.go, spec §1), then extensions.
config_table! {
    container_concurrency: i64 = "CONTAINER_CONCURRENCY", Upstream, [required],
        "Max in-flight requests to the user container; < 1 means unlimited.";
    queue_serving_port: u16 = "QUEUE_SERVING_PORT", Upstream, [required],
        "Port of the main listener (HTTP/1.1 and h2c), on all interfaces.";
    queue_serving_tls_port: String = "QUEUE_SERVING_TLS_PORT", Upstream, [required],
        "Port of the TLS listener; validated only when serving certificates exist.";
    user_port: u16 = "USER_PORT", Upstream, [required],
        "Port of the user container, reached on 127.0.0.1.";
    revision_timeout_seconds: i64 = "REVISION_TIMEOUT_SECONDS", Upstream, [required],
        "Total request timeout, in seconds.";
    revision_response_start_timeout_seconds: i64 = "REVISION_RESPONSE_START_TIMEOUT_SECONDS",
        Upstream, [default "0"],
        "Max seconds until the response starts; 0 disables.";
    revision_idle_timeout_seconds: i64 = "REVISION_IDLE_TIMEOUT_SECONDS", Upstream, [default "0"],
        "Max seconds between response writes; 0 disables.";
    serving_readiness_probe: String = "SERVING_READINESS_PROBE", Upstream, [default ""],
        "JSON readiness probe(s) of the user container; empty means always ready.";
    enable_http_full_duplex: bool = "ENABLE_HTTP_FULL_DUPLEX", Upstream, [default "false"],
        "Let HTTP/1 handlers read the request while writing the response.";
    enable_http2_auto_detection: bool = "ENABLE_HTTP2_AUTO_DETECTION", Upstream,
        [default "false"],
        "HTTP readiness probes try h2c before HTTP/1.1.";
    enable_multi_container_probes: bool = "ENABLE_MULTI_CONTAINER_PROBES", Upstream,
        [default "false"],
        "SERVING_READINESS_PROBE is a JSON array, one probe per container.";
    serving_logging_config: String = "SERVING_LOGGING_CONFIG", Upstream, [required],
        "zap JSON logging config; may be empty.";
    serving_logging_level: String = "SERVING_LOGGING_LEVEL", Upstream, [required],
        "Log level (debug, info, warn, error, dpanic, panic, fatal); empty means info.";
    serving_namespace: String = "SERVING_NAMESPACE", Upstream, [required],
        "Namespace of the revision; log key and metrics attribute.";
    serving_service: String = "SERVING_SERVICE", Upstream, [default ""],
        "Knative Service owning the revision, if any; metrics attribute.";
    serving_configuration: String = "SERVING_CONFIGURATION", Upstream, [required],
        "Configuration owning the revision; metrics attribute.";
    serving_revision: String = "SERVING_REVISION", Upstream, [required],
        "Name of the revision; log key and metrics attribute.";
    serving_pod: String = "SERVING_POD", Upstream, [required],
        "Name of the pod; the pod_name of autoscaler stats.";
    serving_pod_ip: String = "SERVING_POD_IP", Upstream, [required],
        "IP of the pod; request-log field.";
    observability_config: String = "OBSERVABILITY_CONFIG", Upstream, [default ""],
        "JSON of config-observability: tracing, request metrics, request log.";
    queue_proxy_tls_min_version: String = "QUEUE_PROXY_TLS_MIN_VERSION", Upstream,
        [default ""],
        "Minimum TLS version, 1.2 or 1.3; empty means 1.3.";
    queue_proxy_tls_max_version: String = "QUEUE_PROXY_TLS_MAX_VERSION", Upstream,
        [default ""],
        "Maximum TLS version, 1.2 or 1.3; empty means the library default.";
    queue_proxy_tls_cipher_suites: String = "QUEUE_PROXY_TLS_CIPHER_SUITES", Upstream,
        [default ""],
        "Comma-separated Go cipher-suite names; empty means the library default.";
    queue_proxy_tls_curve_preferences: String = "QUEUE_PROXY_TLS_CURVE_PREFERENCES", Upstream,
        [default ""],
        "Comma-separated curve names (X25519, P-256, ...); empty means the library default.";
    admin_port: u16 = "QUEUE_PROXY_ADMIN_PORT", Extension, [default "8022"],
        "Port of the admin listener (/wait-for-drain).";
    metrics_port: u16 = "QUEUE_PROXY_METRICS_PORT", Extension, [default "9090"],
        "Port of the autoscaling metrics listener (/metrics).";
    user_metrics_port: u16 = "QUEUE_PROXY_USER_METRICS_PORT", Extension, [default "9091"],
        "Port of the Prometheus request-metrics listener when requestMetrics.protocol is prometheus.";
    worker_threads: Option<usize> = "QUEUE_PROXY_WORKER_THREADS", Extension, [unset],
        "Tokio worker threads; unset means derived from the cgroup CPU quota.";
    drain_quiet_period: Duration = "QUEUE_PROXY_DRAIN_QUIET_PERIOD_MS", Extension,
        [default "30000"],
        "Quiet period of the drain after SIGTERM, in ms (upstream's fixed 30 s; for tests).";
    upgrade_drain_timeout: Duration = "QUEUE_PROXY_UPGRADE_DRAIN_TIMEOUT_MS", Extension,
        [default "60000"],
        "How long shutdown waits for upgraded connections, in ms (upstream's fixed 60 s; for tests).";
    certs_dir: String = "QUEUE_PROXY_CERTS_DIR", Extension, [default "/var/lib/knative/certs"],
        "Directory holding tls.crt and tls.key for internal TLS (tests override it).";
    header_read_timeout: Duration = "QUEUE_PROXY_HEADER_READ_TIMEOUT_MS", Extension,
        [default "60000"],
        "How long a connection may take to send a request's headers, in ms (upstream's fixed 60 s; for tests).";
}

// === help ===

/// The environment section of `--help`, rendered from [`VARS`].
pub fn help_text() -> String {
    use fmt::Write as _;

    let mut out = String::from(
        "Configuration is read from the environment only, as upstream's queue-proxy does.\n\
         A required variable must be present (an empty string counts); int, bool and port\n\
         values use Go's syntax (0x10, 0o17, 1_000; t/F/TRUE/0 ...) and may not be empty.\n",
    );
    let mut section = |title: &str, origin: Origin| {
        let _ = write!(out, "\n{title}:\n");
        for var in VARS.iter().filter(|v| v.origin == origin) {
            let _ = write!(
                out,
                "  {}  ({}, {})\n      {}\n",
                var.name, var.ty, var.presence, var.description
            );
        }
    };
    section("Environment", Origin::Upstream);
    section(
        "Extensions (ours; upstream does not read them)",
        Origin::Extension,
    );
    let _ = write!(
        out,
        "\nAccepted and ignored (set by the reconciler, unused upstream too):\n  {}\n",
        IGNORED_VARS.join(", ")
    );
    out
}

// === test support ===

/// A complete, valid environment as the reconciler writes it (spec §13 values), with the
/// user container on `user_port`. Tests edit entries and call [`Config::from_env`].
#[doc(hidden)]
pub fn test_env(user_port: u16) -> HashMap<String, String> {
    let user_port = user_port.to_string();
    [
        ("SERVING_NAMESPACE", "default"),
        ("SERVING_SERVICE", "hello"),
        ("SERVING_CONFIGURATION", "hello"),
        ("SERVING_REVISION", "hello-00001"),
        ("QUEUE_SERVING_PORT", "8012"),
        ("QUEUE_SERVING_TLS_PORT", "8112"),
        ("CONTAINER_CONCURRENCY", "0"),
        ("REVISION_TIMEOUT_SECONDS", "300"),
        ("REVISION_RESPONSE_START_TIMEOUT_SECONDS", "0"),
        ("REVISION_IDLE_TIMEOUT_SECONDS", "0"),
        ("SERVING_POD", "hello-00001-deployment-5d4b9c7f6-abcde"),
        ("SERVING_POD_IP", "127.0.0.1"),
        ("SERVING_LOGGING_CONFIG", ""),
        ("SERVING_LOGGING_LEVEL", ""),
        ("USER_PORT", user_port.as_str()),
        ("SYSTEM_NAMESPACE", "knative-serving"),
        ("SERVING_READINESS_PROBE", ""),
        ("HOST_IP", "127.0.0.1"),
        ("ENABLE_HTTP2_AUTO_DETECTION", "false"),
        ("ENABLE_HTTP_FULL_DUPLEX", "false"),
        ("ROOT_CA", ""),
        ("QUEUE_PROXY_TLS_MIN_VERSION", ""),
        ("QUEUE_PROXY_TLS_MAX_VERSION", ""),
        ("QUEUE_PROXY_TLS_CIPHER_SUITES", ""),
        ("QUEUE_PROXY_TLS_CURVE_PREFERENCES", ""),
        ("ENABLE_MULTI_CONTAINER_PROBES", "false"),
        (
            "OBSERVABILITY_CONFIG",
            r#"{"tracing":{},"metrics":{},"runtime":{},"requestMetrics":{}}"#,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[cfg(test)]
mod tests;
