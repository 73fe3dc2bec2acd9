//! Go's scalar parsers, byte for byte.
//!
//! Upstream reads its environment with kelseyhightower/envconfig, which hands int fields to
//! `strconv.ParseInt(s, 0, 64)` and bool fields to `strconv.ParseBool`. Operators and the
//! reconciler write values for that parser, so anything Go accepts must parse to the same
//! number here, and anything Go rejects must be rejected: Rust's `str::parse` differs (no
//! base prefixes, no leading-zero octal, no `_` separators, no `T`/`F`), which would turn a
//! working Go pod spec into a crash loop or, worse, a different concurrency limit.
//!
//! Ports are the one place we are stricter than upstream: Go keeps `QUEUE_SERVING_PORT` and
//! `USER_PORT` as strings and only fails when it listens or dials. See [`parse_port`].

/// Why a value was rejected; the texts are Go's `strconv.ErrSyntax` and `strconv.ErrRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumError {
    /// The text is not a number of the expected form.
    #[error("invalid syntax")]
    Syntax,
    /// The text is a number, but not one the target type can hold.
    #[error("value out of range")]
    Range,
}

/// `strconv.ParseInt(s, 0, 64)`.
///
/// An optional sign, then a base prefix (`0b`, `0o`, `0x`, any case; a bare leading `0`
/// means octal, so `010` is 8 and `08` is an error), then digits. `_` may separate digits
/// or follow a prefix, as in Go source. No whitespace is trimmed.
pub fn parse_int(s: &str) -> Result<i64, NumError> {
    let (neg, unsigned) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_uint(unsigned)?;
    // Two's complement: the negative range is one larger than the positive one.
    const LIMIT: u64 = 1 << 63;
    match (neg, magnitude) {
        (false, m) if m >= LIMIT => Err(NumError::Range),
        (true, m) if m > LIMIT => Err(NumError::Range),
        (true, m) => Ok(0i64.wrapping_sub_unsigned(m)),
        (false, m) => Ok(m as i64),
    }
}

/// `strconv.ParseUint(s, 0, 64)`, which `ParseInt` calls after removing the sign.
fn parse_uint(s: &str) -> Result<u64, NumError> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(NumError::Syntax);
    }
    let (base, digits): (u8, &[u8]) = if bytes[0] == b'0' {
        // A prefix only counts when something follows it: `0x` alone is octal `0` + `x`.
        match bytes.get(1).map(u8::to_ascii_lowercase) {
            Some(b'b') if bytes.len() >= 3 => (2, &bytes[2..]),
            Some(b'o') if bytes.len() >= 3 => (8, &bytes[2..]),
            Some(b'x') if bytes.len() >= 3 => (16, &bytes[2..]),
            _ => (8, &bytes[1..]),
        }
    } else {
        (10, bytes)
    };

    let mut underscores = false;
    let mut n: u64 = 0;
    for &c in digits {
        let d = match c.to_ascii_lowercase() {
            b'_' => {
                underscores = true;
                continue;
            }
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'z' => c - b'a' + 10,
            _ => return Err(NumError::Syntax),
        };
        if d >= base {
            return Err(NumError::Syntax);
        }
        // Go reports overflow as soon as it happens, before looking at later bytes.
        n = n
            .checked_mul(u64::from(base))
            .and_then(|n| n.checked_add(u64::from(d)))
            .ok_or(NumError::Range)?;
    }
    if underscores && !underscores_ok(bytes) {
        return Err(NumError::Syntax);
    }
    Ok(n)
}

/// Go's `underscoreOK`: `_` only between digits, or between a base prefix and a digit.
fn underscores_ok(s: &[u8]) -> bool {
    #[derive(PartialEq)]
    enum Saw {
        Start,
        Digit,
        Underscore,
        Other,
    }
    let mut saw = Saw::Start;
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = Saw::Digit; // the prefix counts as a digit
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    for &c in &s[i..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = Saw::Digit;
        } else if c == b'_' {
            if saw != Saw::Digit {
                return false;
            }
            saw = Saw::Underscore;
        } else if saw == Saw::Underscore {
            return false;
        } else {
            saw = Saw::Other;
        }
    }
    saw != Saw::Underscore
}

/// `strconv.ParseBool`: exactly `1 t T TRUE true True` and `0 f F FALSE false False`.
pub fn parse_bool(s: &str) -> Result<bool, NumError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(NumError::Syntax),
    }
}

/// A numeric TCP port as Go's `net` package reads the port half of `:<port>`: an optional
/// `+`, then decimal digits (leading zeros are decimal, not octal), at most 65535.
///
/// Stricter than Go on purpose, so a typo fails at start instead of on the first request:
/// Go maps an empty port to 0 (an ephemeral listener nobody can reach, or a dial that always
/// fails) and resolves service names (`http` → 80); both are rejected here. Port 0 itself
/// is accepted, as in Go.
pub fn parse_port(s: &str) -> Result<u16, NumError> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumError::Syntax);
    }
    // All digits, so the only possible failure is overflow.
    digits.parse::<u16>().map_err(|_| NumError::Range)
}

/// Go's `time.ParseDuration` for the non-negative durations configuration uses
/// (`300ms`, `1.5s`, `1m30s`, `0`): a sequence of decimal numbers, each with a
/// unit `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`. A leading `+` is accepted; a
/// negative duration is out of range here.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, NumError> {
    let rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if rest.starts_with('-') {
        return Err(NumError::Range);
    }
    if rest.is_empty() {
        return Err(NumError::Syntax);
    }
    let mut total: f64 = 0.0;
    let mut rest = rest;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(NumError::Syntax)?;
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(NumError::Syntax);
        }
        let value: f64 = number.parse().map_err(|_| NumError::Syntax)?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(NumError::Syntax),
        };
        total += value * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    if total > u64::MAX as f64 {
        return Err(NumError::Range);
    }
    Ok(std::time::Duration::from_nanos(total.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use NumError::{Range, Syntax};

    /// Cases from Go's `strconv/atoi_test.go` (`parseBaseTests` with base 0, and
    /// `parseInt64Tests`), plus the prefix and underscore rules spelled out there.
    #[test]
    fn parse_int_matches_go() {
        let cases: &[(&str, Result<i64, NumError>)] = &[
            ("", Err(Syntax)),
            ("0", Ok(0)),
            ("-0", Ok(0)),
            ("+0", Ok(0)),
            ("1", Ok(1)),
            ("-1", Ok(-1)),
            ("+1", Ok(1)),
            ("12345", Ok(12345)),
            ("-12345", Ok(-12345)),
            ("012345", Ok(0o12345)),
            ("-012345", Ok(-0o12345)),
            ("010", Ok(8)),
            ("08", Err(Syntax)),
            ("09", Err(Syntax)),
            ("0x10", Ok(16)),
            ("0X10", Ok(16)),
            ("0xff", Ok(255)),
            ("0XFF", Ok(255)),
            ("-0x10", Ok(-16)),
            ("0x", Err(Syntax)),
            ("0xg", Err(Syntax)),
            ("0o17", Ok(15)),
            ("0O17", Ok(15)),
            ("0o8", Err(Syntax)),
            ("0o", Err(Syntax)),
            ("0b101", Ok(5)),
            ("0B101", Ok(5)),
            ("0b2", Err(Syntax)),
            ("0b", Err(Syntax)),
            ("9223372036854775807", Ok(i64::MAX)),
            ("-9223372036854775807", Ok(-i64::MAX)),
            ("-9223372036854775808", Ok(i64::MIN)),
            ("9223372036854775808", Err(Range)),
            ("-9223372036854775809", Err(Range)),
            ("18446744073709551615", Err(Range)),
            ("18446744073709551616", Err(Range)),
            ("0x7fffffffffffffff", Ok(i64::MAX)),
            ("-0x8000000000000000", Ok(i64::MIN)),
            ("0x8000000000000000", Err(Range)),
            // Overflow is reported before a later bad byte is seen.
            ("99999999999999999999x", Err(Range)),
            ("12345x", Err(Syntax)),
            ("-12345x", Err(Syntax)),
            ("1.5", Err(Syntax)),
            ("1e3", Err(Syntax)),
            ("abc", Err(Syntax)),
            ("+", Err(Syntax)),
            ("-", Err(Syntax)),
            ("--1", Err(Syntax)),
            ("+-1", Err(Syntax)),
            ("-+1", Err(Syntax)),
            (" 1", Err(Syntax)),
            ("1 ", Err(Syntax)),
            ("1\n", Err(Syntax)),
            ("١", Err(Syntax)), // non-ASCII digit
            // Underscores: only with base 0, between digits or after a prefix.
            ("1_000", Ok(1000)),
            ("-1_000", Ok(-1000)),
            ("1_2_3", Ok(123)),
            ("0x_1", Ok(1)),
            ("0x_1_f", Ok(31)),
            ("0b_1010", Ok(10)),
            ("0o_17", Ok(15)),
            ("0_10", Ok(8)),
            ("_1", Err(Syntax)),
            ("-_1", Err(Syntax)),
            ("1_", Err(Syntax)),
            ("1__0", Err(Syntax)),
            ("0x_", Err(Syntax)),
            ("0x__1", Err(Syntax)),
            ("0_", Err(Syntax)),
            ("_", Err(Syntax)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_int(input), *want, "parse_int({input:?})");
        }
    }

    #[test]
    fn parse_bool_accepts_exactly_gos_spellings() {
        for s in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(s), Ok(true), "{s:?}");
        }
        for s in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(s), Ok(false), "{s:?}");
        }
        for s in [
            "", "yes", "no", "on", "off", "tRUE", "FaLsE", "y", "n", " true", "true ", "01", "2",
        ] {
            assert_eq!(parse_bool(s), Err(Syntax), "{s:?}");
        }
    }

    #[test]
    fn parse_port_is_decimal_and_bounded() {
        let cases: &[(&str, Result<u16, NumError>)] = &[
            ("8012", Ok(8012)),
            ("0", Ok(0)),
            ("65535", Ok(65535)),
            ("+8080", Ok(8080)),
            ("08080", Ok(8080)), // decimal, unlike parse_int
            ("0x1f90", Err(Syntax)),
            ("65536", Err(Range)),
            ("99999999999999999999999", Err(Range)),
            ("", Err(Syntax)),
            ("+", Err(Syntax)),
            ("-1", Err(Syntax)),
            ("http", Err(Syntax)),
            ("notaport", Err(Syntax)),
            (" 8080", Err(Syntax)),
            ("8080 ", Err(Syntax)),
            ("80_80", Err(Syntax)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_port(input), *want, "parse_port({input:?})");
        }
    }

    #[test]
    fn durations_as_go_parses_them() {
        use std::time::Duration;
        for (text, want) in [
            ("300ms", Duration::from_millis(300)),
            ("200ms", Duration::from_millis(200)),
            ("1.5s", Duration::from_millis(1500)),
            ("1m30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("10us", Duration::from_micros(10)),
            ("0", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "5", "ms", "1.2.3s", "5 s", "5sec", ".s"] {
            assert_eq!(parse_duration(bad), Err(NumError::Syntax), "{bad}");
        }
        assert_eq!(parse_duration("-1s"), Err(NumError::Range));
    }
}
