//! Process logs: JSON lines on stderr, at the level named by `SERVING_LOGGING_LEVEL`.
//!
//! Upstream logs with zap (knative.dev/pkg/logging): a JSON production config from
//! `SERVING_LOGGING_CONFIG` with the level overridden by `SERVING_LOGGING_LEVEL` when that
//! names a zap level. Process logs are not part of the contract (spec §9), so we keep the
//! shape (one JSON object per line) and the level names, not zap's field names.
//!
//! Logs go to **stderr** because stdout carries the request log, one line per request,
//! which log collectors parse; interleaving process logs there would corrupt it.

use tracing::level_filters::LevelFilter;

/// Maps a zap level name to a tracing filter, as zap's `Level.UnmarshalText` reads it
/// (all lower- or all upper-case). zap's `dpanic`, `panic` and `fatal` are severities
/// above `error`; tracing has nothing above `error`. Empty or unknown names leave zap's
/// production default, `info`.
pub fn level_filter(level: &str) -> LevelFilter {
    match level {
        "debug" | "DEBUG" => LevelFilter::DEBUG,
        "info" | "INFO" => LevelFilter::INFO,
        "warn" | "WARN" => LevelFilter::WARN,
        "error" | "ERROR" | "dpanic" | "DPANIC" | "panic" | "PANIC" | "fatal" | "FATAL" => {
            LevelFilter::ERROR
        }
        _ => LevelFilter::INFO,
    }
}

/// Installs the global subscriber. Only the first call in a process has an effect; later
/// calls (tests, a second `init` in an embedding program) are ignored rather than panicking.
pub fn init(level: &str) {
    let _already_set = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_max_level(level_filter(level))
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn init_twice_does_not_panic() {
        // `error` first: this installs the subscriber for the whole test binary, and other
        // modules' tests should not fill the output with their logs.
        init("error");
        init("debug");
    }
}
