//! Process logs: zap-shaped JSON lines on stderr (spec §9).
//!
//! Upstream logs with zap (knative.dev/pkg/logging): the JSON config in
//! `SERVING_LOGGING_CONFIG` (zap's production config when empty), its level
//! overridden by `SERVING_LOGGING_LEVEL` when that names a zap level, logger
//! name `queueproxy`, and every line carries `knative.dev/key`
//! (`<namespace>/<revision>`) and `knative.dev/pod`. Here each line has the
//! keys the config's `encoderConfig` names (`timeKey`, `levelKey`, `nameKey`,
//! `callerKey`, `messageKey`; zap's production defaults `ts`, `level`,
//! `logger`, `caller`, `msg` otherwise), the time as ISO 8601 when
//! `timeEncoder` is `iso8601` (else epoch seconds), the level lower case (upper
//! with `levelEncoder: capital`), then the fixed fields, then the event's own.
//! Process logs are not a hard contract; `outputPaths` is not honoured.
//!
//! Logs go to **stderr** because stdout carries the request log, one line per
//! request, which log collectors parse; interleaving process logs there would
//! corrupt it.

use serde_json::{Map, Value};
use std::io::Write;
use std::time::SystemTime;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

use crate::timefmt::{Precision, rfc3339};

/// Maps a zap level name to a tracing filter, as zap's `Level.UnmarshalText`
/// reads it (all lower- or all upper-case). zap's `dpanic`, `panic` and `fatal`
/// are severities above `error`; tracing has nothing above `error`.
pub fn parse_level(level: &str) -> Option<LevelFilter> {
    Some(match level {
        "debug" | "DEBUG" => LevelFilter::DEBUG,
        "info" | "INFO" => LevelFilter::INFO,
        "warn" | "WARN" => LevelFilter::WARN,
        "error" | "ERROR" | "dpanic" | "DPANIC" | "panic" | "PANIC" | "fatal" | "FATAL" => {
            LevelFilter::ERROR
        }
        _ => return None,
    })
}

/// [`parse_level`], with zap's production default (`info`) for empty or
/// unknown names.
pub fn level_filter(level: &str) -> LevelFilter {
    parse_level(level).unwrap_or(LevelFilter::INFO)
}

/// How process log lines look.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFormat {
    pub level: LevelFilter,
    pub time_key: String,
    pub level_key: String,
    pub name_key: String,
    pub caller_key: String,
    pub message_key: String,
    pub iso8601: bool,
    pub capital_levels: bool,
    /// The logger name (`queueproxy`).
    pub name: String,
    /// Fields on every line, in order (`knative.dev/key`, `knative.dev/pod`).
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ZapConfig {
    level: String,
    encoder_config: ZapEncoderConfig,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ZapEncoderConfig {
    time_key: Option<String>,
    level_key: Option<String>,
    name_key: Option<String>,
    caller_key: Option<String>,
    message_key: Option<String>,
    time_encoder: String,
    level_encoder: String,
}

impl LogFormat {
    /// The format from `SERVING_LOGGING_CONFIG` (`zap_config`, may be empty or
    /// unparsable: then zap's production config) and `SERVING_LOGGING_LEVEL`
    /// (`level`, which wins when it names a level).
    pub fn new(zap_config: &str, level: &str, name: &str, fields: Vec<(String, String)>) -> Self {
        let zap: ZapConfig = serde_json::from_str(zap_config).unwrap_or_default();
        let enc = zap.encoder_config;
        let level = parse_level(level.trim())
            .or_else(|| parse_level(&zap.level))
            .unwrap_or(LevelFilter::INFO);
        let key = |k: Option<String>, default: &str| k.unwrap_or_else(|| default.to_owned());
        LogFormat {
            level,
            time_key: key(enc.time_key, "ts"),
            level_key: key(enc.level_key, "level"),
            name_key: key(enc.name_key, "logger"),
            caller_key: key(enc.caller_key, "caller"),
            message_key: key(enc.message_key, "msg"),
            iso8601: enc.time_encoder == "iso8601" || enc.time_encoder == "ISO8601",
            capital_levels: enc.level_encoder.starts_with("capital"),
            name: name.to_owned(),
            fields,
        }
    }

    /// One log line (with its newline) for an event at `level`.
    fn line(
        &self,
        now: SystemTime,
        level: &Level,
        caller: Option<String>,
        event: Map<String, Value>,
    ) -> Vec<u8> {
        // In zap's order; serde_json's map would sort the keys.
        let mut pairs: Vec<(String, Value)> = Vec::new();
        let mut put = |key: &str, value: Value| {
            if !key.is_empty() {
                pairs.push((key.to_owned(), value));
            }
        };
        let level_name = match *level {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            _ => "debug",
        };
        let level_name = if self.capital_levels {
            level_name.to_ascii_uppercase()
        } else {
            level_name.to_owned()
        };
        put(&self.level_key, Value::String(level_name));
        let time = if self.iso8601 {
            Value::String(rfc3339(now, Precision::Millis))
        } else {
            let secs = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            serde_json::Number::from_f64(secs).map_or(Value::Null, Value::Number)
        };
        put(&self.time_key, time);
        put(&self.name_key, Value::String(self.name.clone()));
        if let Some(caller) = caller {
            put(&self.caller_key, Value::String(caller));
        }
        let mut event = event;
        let message = event
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        put(&self.message_key, message);
        for (k, v) in &self.fields {
            put(k, Value::String(v.clone()));
        }
        for (k, v) in event {
            put(&k, v);
        }
        let mut line = Vec::with_capacity(256);
        line.push(b'{');
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            let _ = serde_json::to_writer(&mut line, k);
            line.push(b':');
            let _ = serde_json::to_writer(&mut line, v);
        }
        line.extend_from_slice(b"}\n");
        line
    }
}

/// Writes every event as a zap-shaped JSON line on stderr.
struct ZapJsonLayer(LogFormat);

impl<S: Subscriber> Layer<S> for ZapJsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = JsonFields(Map::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let caller = meta
            .file()
            .map(|file| format!("{}:{}", file, meta.line().unwrap_or(0)));
        let line = self
            .0
            .line(SystemTime::now(), meta.level(), caller, fields.0);
        // One write per line, so lines from different threads never interleave.
        let _ = std::io::stderr().lock().write_all(&line);
    }
}

struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.0.insert(field.name().to_owned(), v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// Installs the global subscriber writing `format`'s lines. Only the first call
/// in a process has an effect; later calls (tests, a second `init` in an
/// embedding program) are ignored rather than panicking.
pub fn init_with(format: LogFormat) {
    let level = format.level;
    let subscriber = Registry::default().with(ZapJsonLayer(format).with_filter(level));
    let _already_set = tracing::subscriber::set_global_default(subscriber);
}

/// The queue-proxy's process logs: logger `queueproxy` with
/// `knative.dev/key` = `<namespace>/<revision>` and `knative.dev/pod`.
pub fn init_queue_proxy(config: &crate::config::Config) {
    init_with(LogFormat::new(
        &config.serving_logging_config,
        &config.serving_logging_level,
        "queueproxy",
        vec![
            (
                "knative.dev/key".to_owned(),
                format!("{}/{}", config.serving_namespace, config.serving_revision),
            ),
            ("knative.dev/pod".to_owned(), config.serving_pod.clone()),
        ],
    ));
}

/// Process logs at `level` in zap's production shape, with no fixed fields.
pub fn init(level: &str) {
    init_with(LogFormat::new("", level, "", Vec::new()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn zap_level_names() {
        for (name, want) in [
            ("debug", LevelFilter::DEBUG),
            ("DEBUG", LevelFilter::DEBUG),
            ("info", LevelFilter::INFO),
            ("warn", LevelFilter::WARN),
            ("WARN", LevelFilter::WARN),
            ("error", LevelFilter::ERROR),
            ("dpanic", LevelFilter::ERROR),
            ("panic", LevelFilter::ERROR),
            ("fatal", LevelFilter::ERROR),
            ("FATAL", LevelFilter::ERROR),
        ] {
            assert_eq!(level_filter(name), want, "{name}");
        }
        for unknown in ["", "Debug", "warning", "trace", "verbose", " debug"] {
            assert_eq!(level_filter(unknown), LevelFilter::INFO, "{unknown:?}");
        }
    }

    const KNATIVE_CONFIG: &str = r#"{"level": "warn", "development": false,
        "outputPaths": ["stdout"], "errorOutputPaths": ["stderr"], "encoding": "json",
        "encoderConfig": {"timeKey": "timestamp", "levelKey": "severity", "nameKey": "logger",
        "callerKey": "caller", "messageKey": "message", "stacktraceKey": "stacktrace",
        "lineEnding": "", "levelEncoder": "", "timeEncoder": "iso8601",
        "durationEncoder": "", "callerEncoder": ""}}"#;

    #[test]
    fn config_level_unless_the_variable_names_one() {
        assert_eq!(
            LogFormat::new(KNATIVE_CONFIG, "", "", vec![]).level,
            LevelFilter::WARN
        );
        assert_eq!(
            LogFormat::new(KNATIVE_CONFIG, "debug", "", vec![]).level,
            LevelFilter::DEBUG
        );
        assert_eq!(
            LogFormat::new(KNATIVE_CONFIG, "loud", "", vec![]).level,
            LevelFilter::WARN
        );
        assert_eq!(
            LogFormat::new("not json", "", "", vec![]).level,
            LevelFilter::INFO
        );
    }

    #[test]
    fn line_shape_follows_the_encoder_config() {
        let format = LogFormat::new(
            KNATIVE_CONFIG,
            "",
            "queueproxy",
            vec![("knative.dev/key".into(), "ns/rev".into())],
        );
        let mut event = Map::new();
        event.insert("message".into(), "hello".into());
        event.insert("port".into(), 8012.into());
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let line = format.line(t, &Level::INFO, Some("main.rs:1".into()), event);
        let text = String::from_utf8(line).unwrap();
        assert_eq!(
            text,
            "{\"severity\":\"info\",\"timestamp\":\"2023-11-14T22:13:20.123Z\",\"logger\":\"queueproxy\",\"caller\":\"main.rs:1\",\"message\":\"hello\",\"knative.dev/key\":\"ns/rev\",\"port\":8012}\n"
        );
        let production = LogFormat::new("", "", "queueproxy", vec![]);
        let line = production.line(t, &Level::WARN, None, Map::new());
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["level"], "warn");
        assert_eq!(v["ts"].as_f64().unwrap(), 1_700_000_000.123);
        assert_eq!(v["msg"], "");
    }

    #[test]
    fn init_twice_does_not_panic() {
        // `error` first: this installs the subscriber for the whole test binary, and other
        // modules' tests should not fill the output with their logs.
        init("error");
        init("debug");
    }
}
