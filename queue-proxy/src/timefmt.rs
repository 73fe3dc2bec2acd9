//! RFC 3339 timestamps in UTC from a `SystemTime`, for the JSON process logs
//! (zap's `iso8601` time encoder: milliseconds) and the `stdout` span
//! exporter (nanoseconds). No calendar crate: the civil-date conversion is
//! Howard Hinnant's `civil_from_days`.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// How many fractional digits to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Millis,
    Nanos,
}

/// `2026-12-05T00:40:12.345Z` (millis) or `…12.345678901Z` (nanos).
pub fn rfc3339(t: SystemTime, precision: Precision) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let _ = match precision {
        Precision::Millis => write!(out, ".{:03}Z", since.subsec_millis()),
        Precision::Nanos => write!(out, ".{:09}Z", since.subsec_nanos()),
    };
    out
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(rfc3339(t, Precision::Millis), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            rfc3339(t, Precision::Nanos),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339(
                UNIX_EPOCH + Duration::from_secs(951_782_400),
                Precision::Millis
            ),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH, Precision::Millis),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
