//! Go's `fmt` and `strconv` output for template values, byte for byte.
//!
//! A request-log line is only as faithful as its numbers and strings: `{{.Response.Latency}}`
//! prints a `float64` with `%v` (`0.001234`, `1.2e-05`, `2`, `1e+06`), `printf` takes the usual
//! verbs, flags, widths and precisions, and `print` spaces its operands the way `fmt.Sprint`
//! does. What is mirrored:
//!
//! - `strconv.AppendFloat(v, 'e'|'E'|'f'|'g'|'G', prec, 64)`, including the shortest
//!   round-trip form for `prec < 0` and Go's rule that `%v`/`%g` switch to exponent form when
//!   the decimal exponent is below -4 or at least the precision (6 when shortest: note that
//!   this is 6, not the 21 that JavaScript and `encoding/json` use, so `123456789.0` prints
//!   `1.23456789e+08`). Digits come from Rust's float formatting, which is exact and rounds
//!   ties to even like Go's.
//! - `strconv.Quote`/`QuoteToASCII`/`QuoteRune` (`%q`), with Go's notion of printable runes.
//! - `fmt.Sprint`, `Sprintln`, `Sprintf`: flags `#0+- `, width, precision, `*` and `[n]`
//!   argument indexes; verbs `v s q x X d b o O c U t e E f F g G T`; `%!v(MISSING)`,
//!   `%!d(string=x)`, `%!(EXTRA …)`, `%!(NOVERB)`, `%!v(BADINDEX)` and friends. Slices, maps
//!   (sorted by key) and structs (`&{…}` at the top, `%+v` with field names, `%#v` in Go
//!   syntax) recurse with the verb as `fmt` does.
//!
//! Not mirrored, because no request-log value needs them: `%x`/`%b` on floats, `%p`
//! (pointers are addresses in Go: never reproducible), and the `#` flag on floats. Those verbs
//! print as a bad verb (`%!p(type=value)`).
//!
//! Values this engine cannot print as Go would (a whole `*http.Request`, whose fields hold
//! pointers) are refused with [`Unprintable`] rather than guessed.

use std::borrow::Cow;
use std::io::Write as _;

use super::gounicode::is_print;
use super::template::value::{IntType, Shape, Value};

/// A value whose Go rendering this engine does not reproduce (its type name inside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unprintable(pub &'static str);

const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";
const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

// ---------------------------------------------------------------------------------------------
// strconv: floats

/// The decimal digits of a finite, non-negative float: `0.d₁d₂… × 10^dp`, trailing zeros
/// removed (Go's `decimalSlice` after rounding). Zero has no digits and `dp == 0`.
struct Digits {
    d: Vec<u8>,
    dp: i32,
}

impl Digits {
    /// Shortest digits that round-trip (`prec == -1` in Go). Rust's `{:e}` prints exactly
    /// those.
    fn shortest(v: f64) -> Self {
        Self::from_exp_form(&format!("{v:e}"))
    }

    /// `n ≥ 1` significant digits, correctly rounded (ties to even, as Go's fixed-precision
    /// conversion does on the exact binary value).
    fn significant(v: f64, n: usize) -> Self {
        // Digits past an f64's exact expansion are zeros, and trailing zeros are dropped
        // anyway; Rust's formatter panics on a precision above u16::MAX, Go's goes to 1e6.
        let n = n.min(EXACT_SIGNIFICANT_DIGITS);
        Self::from_exp_form(&format!("{:.*e}", n - 1, v))
    }

    /// Parses Rust's `d.ddde±x` output.
    fn from_exp_form(s: &str) -> Self {
        let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let mut d: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
        while d.last() == Some(&b'0') {
            d.pop();
        }
        if d.is_empty() {
            return Digits { d, dp: 0 };
        }
        Digits { d, dp: exp + 1 }
    }

    fn nd(&self) -> i32 {
        self.d.len() as i32
    }
}

/// An f64's exact decimal expansion has at most 767 significant digits...
const EXACT_SIGNIFICANT_DIGITS: usize = 800;
/// ...and at most 1074 digits after the point (the smallest subnormal is 2^-1074).
const EXACT_FRACTION_DIGITS: usize = 1100;

/// Go's `strconv.AppendFloat(out, v, fmt, prec, 64)` for `fmt` in `e E f g G`.
pub fn append_float(out: &mut Vec<u8>, v: f64, fmt: u8, prec: i32) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    if v.is_sign_negative() {
        out.push(b'-');
    }
    let a = v.abs();
    let shortest = prec < 0;
    match fmt {
        b'f' | b'F' if !shortest => {
            // Exact fixed-point with round-half-even, as Go's big-decimal path. Past the
            // exact expansion every digit is 0 (and Rust's formatter stops at u16::MAX).
            let prec = prec as usize;
            let exact = prec.min(EXACT_FRACTION_DIGITS);
            let _ = write!(out, "{:.*}", exact, a);
            out.resize(out.len() + (prec - exact), b'0');
        }
        b'e' | b'E' => {
            let digs = if shortest {
                Digits::shortest(a)
            } else {
                Digits::significant(a, prec as usize + 1)
            };
            let prec = if shortest { digs.nd() - 1 } else { prec };
            fmt_e(out, &digs, prec, fmt);
        }
        b'g' | b'G' => {
            let (digs, mut prec) = if shortest {
                let d = Digits::shortest(a);
                let n = d.nd();
                (d, n)
            } else {
                let p = prec.max(1);
                (Digits::significant(a, p as usize), p)
            };
            let mut eprec = prec;
            if eprec > digs.nd() && digs.nd() >= digs.dp {
                eprec = digs.nd();
            }
            // %e is used if the exponent from the conversion is less than -4 or greater
            // than or equal to the precision; shortest uses precision 6 for this decision.
            if shortest {
                eprec = 6;
            }
            let exp = digs.dp - 1;
            if exp < -4 || exp >= eprec {
                if prec > digs.nd() {
                    prec = digs.nd();
                }
                fmt_e(out, &digs, prec - 1, fmt + b'e' - b'g');
            } else {
                if prec > digs.dp {
                    prec = digs.nd();
                }
                fmt_f(out, &digs, (prec - digs.dp).max(0));
            }
        }
        // Shortest 'f' (only reachable through FormatFloat(v, 'f', -1)): all digits.
        _ => {
            let digs = Digits::shortest(a);
            fmt_f(out, &digs, (digs.nd() - digs.dp).max(0));
        }
    }
}

/// `%e`: `d.dddde±dd`.
fn fmt_e(out: &mut Vec<u8>, digs: &Digits, prec: i32, fmt: u8) {
    out.push(digs.d.first().copied().unwrap_or(b'0'));
    if prec > 0 {
        out.push(b'.');
        let m = (digs.nd()).min(prec + 1).max(1) as usize;
        if m > 1 {
            out.extend_from_slice(&digs.d[1..m]);
        }
        for _ in m as i32..=prec {
            out.push(b'0');
        }
    }
    out.push(fmt);
    let mut exp = if digs.d.is_empty() { 0 } else { digs.dp - 1 };
    if exp < 0 {
        out.push(b'-');
        exp = -exp;
    } else {
        out.push(b'+');
    }
    if exp < 10 {
        out.push(b'0');
    }
    let _ = write!(out, "{exp}");
}

/// `%f`: `ddd.ddd` with `prec` fraction digits taken from `digs`.
fn fmt_f(out: &mut Vec<u8>, digs: &Digits, prec: i32) {
    if digs.dp > 0 {
        let m = digs.nd().min(digs.dp) as usize;
        out.extend_from_slice(&digs.d[..m]);
        for _ in m as i32..digs.dp {
            out.push(b'0');
        }
    } else {
        out.push(b'0');
    }
    if prec > 0 {
        out.push(b'.');
        for i in 1..=prec {
            let j = digs.dp + i - 1;
            let ch = if (0..digs.nd()).contains(&j) {
                digs.d[j as usize]
            } else {
                b'0'
            };
            out.push(ch);
        }
    }
}

/// `fmt.Sprint(v)` for a `float64`: `%v`, i.e. `strconv.FormatFloat(v, 'g', -1, 64)`.
pub fn format_float_v(v: f64) -> String {
    let mut out = Vec::new();
    append_float(&mut out, v, b'g', -1);
    String::from_utf8(out).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// strconv: UTF-8 and quoting

/// Go's `utf8.DecodeRune`: the rune at the start of `s` and its width, or `None` (Go's
/// `RuneError`) with width 1 for an invalid or truncated encoding. `s` must not be empty.
pub fn decode_rune(s: &[u8]) -> (Option<char>, usize) {
    let n = match s[0] {
        0x00..=0x7f => return (Some(char::from(s[0])), 1),
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return (None, 1),
    };
    match s.get(..n).and_then(|b| std::str::from_utf8(b).ok()) {
        Some(st) => (st.chars().next(), n),
        None => (None, 1),
    }
}

/// Number of runes in `s` as Go counts them (each invalid byte is one rune).
pub fn rune_count(s: &[u8]) -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < s.len() {
        i += decode_rune(&s[i..]).1;
        n += 1;
    }
    n
}

/// Go's `strconv.Quote` (`ascii_only`: `QuoteToASCII`).
pub fn append_quote(out: &mut Vec<u8>, s: &[u8], ascii_only: bool) {
    out.push(b'"');
    let mut i = 0;
    while i < s.len() {
        match decode_rune(&s[i..]) {
            (Some(c), w) => {
                append_escaped_rune(out, u32::from(c), b'"', ascii_only);
                i += w;
            }
            (None, _) => {
                out.extend_from_slice(b"\\x");
                out.push(LOWER_HEX[usize::from(s[i] >> 4)]);
                out.push(LOWER_HEX[usize::from(s[i] & 0xf)]);
                i += 1;
            }
        }
    }
    out.push(b'"');
}

/// Go's `strconv.QuoteRune` (`ascii_only`: `QuoteRuneToASCII`); invalid runes quote as
/// U+FFFD.
pub fn append_quote_rune(out: &mut Vec<u8>, r: u32, ascii_only: bool) {
    let r = char::from_u32(r).map_or(0xfffd, u32::from);
    out.push(b'\'');
    append_escaped_rune(out, r, b'\'', ascii_only);
    out.push(b'\'');
}

fn append_escaped_rune(out: &mut Vec<u8>, r: u32, quote: u8, ascii_only: bool) {
    let c = char::from_u32(r).unwrap_or('\u{fffd}');
    if r == u32::from(quote) || r == u32::from(b'\\') {
        out.push(b'\\');
        push_char(out, c);
        return;
    }
    if ascii_only {
        if r < 0x80 && is_print(c) {
            out.push(r as u8);
            return;
        }
    } else if is_print(c) {
        push_char(out, c);
        return;
    }
    let simple: &[u8] = match r {
        0x07 => b"\\a",
        0x08 => b"\\b",
        0x0c => b"\\f",
        0x0a => b"\\n",
        0x0d => b"\\r",
        0x09 => b"\\t",
        0x0b => b"\\v",
        _ => b"",
    };
    if !simple.is_empty() {
        out.extend_from_slice(simple);
    } else if r < 0x20 || r == 0x7f {
        out.extend_from_slice(b"\\x");
        out.push(LOWER_HEX[(r >> 4) as usize]);
        out.push(LOWER_HEX[(r & 0xf) as usize]);
    } else if r < 0x10000 {
        let _ = write!(out, "\\u{r:04x}");
    } else {
        let _ = write!(out, "\\U{r:08x}");
    }
}

/// Go's `strconv.CanBackquote`.
fn can_backquote(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let (r, w) = decode_rune(&s[i..]);
        match r {
            None => return false,
            Some('\u{feff}') => return false,
            Some(c) if c == '`' || c == '\u{7f}' => return false,
            Some(c) if (c as u32) < 0x20 && c != '\t' => return false,
            Some(_) => {}
        }
        i += w;
    }
    true
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

// ---------------------------------------------------------------------------------------------
// fmt

/// `fmt`'s per-verb flags (Go's `fmtFlags` plus width and precision).
#[derive(Clone, Copy, Default)]
struct Flags {
    wid: Option<usize>,
    prec: Option<usize>,
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    plus_v: bool,
    sharp_v: bool,
}

/// One formatting run: Go's `pp`.
struct Printer<'o> {
    out: &'o mut Vec<u8>,
    f: Flags,
}

impl Printer<'_> {
    fn write_padding(&mut self, n: usize) {
        let pad = if self.f.zero && !self.f.minus {
            b'0'
        } else {
            b' '
        };
        self.out.extend(std::iter::repeat_n(pad, n));
    }

    /// Go's `fmt.pad`: `b` padded to the width, counted in runes.
    fn pad(&mut self, b: &[u8]) {
        let Some(wid) = self.f.wid.filter(|&w| w > 0) else {
            self.out.extend_from_slice(b);
            return;
        };
        let width = wid.saturating_sub(rune_count(b));
        if self.f.minus {
            self.out.extend_from_slice(b);
            self.write_padding(width);
        } else {
            self.write_padding(width);
            self.out.extend_from_slice(b);
        }
    }

    /// Go's `truncateString`: at most `prec` runes.
    fn truncate<'s>(&self, s: &'s [u8]) -> &'s [u8] {
        let Some(prec) = self.f.prec else { return s };
        let mut i = 0;
        for _ in 0..prec {
            if i >= s.len() {
                return s;
            }
            i += decode_rune(&s[i..]).1;
        }
        &s[..i]
    }

    fn fmt_s(&mut self, s: &[u8]) {
        let s = self.truncate(s);
        self.pad(s);
    }

    fn fmt_q(&mut self, s: &[u8]) {
        let s = self.truncate(s);
        let mut q = Vec::with_capacity(s.len() + 2);
        if self.f.sharp && can_backquote(s) {
            q.push(b'`');
            q.extend_from_slice(s);
            q.push(b'`');
        } else {
            append_quote(&mut q, s, self.f.plus);
        }
        self.pad(&q);
    }

    /// Go's `fmtSbx`: hex of a string's bytes.
    fn fmt_sx(&mut self, s: &[u8], digits: &[u8; 16]) {
        let length = self.f.prec.map_or(s.len(), |p| p.min(s.len()));
        let x = if digits == UPPER_HEX { b'X' } else { b'x' };
        let mut width = 2 * length;
        if width > 0 {
            if self.f.space {
                if self.f.sharp {
                    width *= 2;
                }
                width += length - 1;
            } else if self.f.sharp {
                width += 2;
            }
        } else {
            if let Some(w) = self.f.wid {
                self.write_padding(w);
            }
            return;
        }
        let wid = self.f.wid.unwrap_or(0);
        if wid > width && !self.f.minus {
            self.write_padding(wid - width);
        }
        if self.f.sharp {
            self.out.extend_from_slice(&[b'0', x]);
        }
        for (i, &c) in s[..length].iter().enumerate() {
            if self.f.space && i > 0 {
                self.out.push(b' ');
                if self.f.sharp {
                    self.out.extend_from_slice(&[b'0', x]);
                }
            }
            self.out.push(digits[usize::from(c >> 4)]);
            self.out.push(digits[usize::from(c & 0xf)]);
        }
        if wid > width && self.f.minus {
            self.write_padding(wid - width);
        }
    }

    /// Go's `fmt.fmtInteger`.
    fn fmt_integer(&mut self, u: u64, base: u64, signed: bool, verb: char, digits: &[u8; 16]) {
        let negative = signed && (u as i64) < 0;
        let mut u = if negative {
            (u as i64).unsigned_abs()
        } else {
            u
        };
        let mut prec = 0;
        if let Some(p) = self.f.prec {
            prec = p;
            if p == 0 && u == 0 {
                let old = self.f.zero;
                self.f.zero = false;
                self.write_padding(self.f.wid.unwrap_or(0));
                self.f.zero = old;
                return;
            }
        } else if let (true, false, Some(w)) = (self.f.zero, self.f.minus, self.f.wid) {
            prec = w;
            if negative || self.f.plus || self.f.space {
                prec = prec.saturating_sub(1);
            }
        }
        let mut rev = Vec::with_capacity(24);
        loop {
            rev.push(digits[(u % base) as usize]);
            u /= base;
            if u == 0 {
                break;
            }
        }
        while rev.len() < prec {
            rev.push(b'0');
        }
        if self.f.sharp {
            match base {
                2 => rev.extend_from_slice(b"b0"),
                8 if rev.last() != Some(&b'0') => rev.push(b'0'),
                16 => rev.extend_from_slice(if digits == UPPER_HEX { b"X0" } else { b"x0" }),
                _ => {}
            }
        }
        if verb == 'O' {
            rev.extend_from_slice(b"o0");
        }
        if negative {
            rev.push(b'-');
        } else if self.f.plus {
            rev.push(b'+');
        } else if self.f.space {
            rev.push(b' ');
        }
        rev.reverse();
        let old = self.f.zero;
        self.f.zero = false;
        self.pad(&rev);
        self.f.zero = old;
    }

    /// Go's `fmt.fmtFloat` for verbs `e E f g G` (`prec` is the verb's default).
    fn fmt_float(&mut self, v: f64, verb: u8, prec: i32) {
        let prec = self.f.prec.map_or(prec, |p| p as i32);
        let mut num = vec![b'+'];
        append_float(&mut num, v, verb, prec);
        let mut num: &mut [u8] = if num[1] == b'-' || num[1] == b'+' {
            &mut num[1..]
        } else {
            &mut num[..]
        };
        if self.f.space && num[0] == b'+' && !self.f.plus {
            num[0] = b' ';
        }
        if num[1] == b'I' || num[1] == b'N' {
            let old = self.f.zero;
            self.f.zero = false;
            if num[1] == b'N' && !self.f.space && !self.f.plus {
                num = &mut num[1..];
            }
            let num = num.to_vec();
            self.pad(&num);
            self.f.zero = old;
            return;
        }
        if self.f.plus || num[0] != b'+' {
            if let (true, false, Some(w)) = (self.f.zero, self.f.minus, self.f.wid)
                && w > num.len()
            {
                self.out.push(num[0]);
                self.write_padding(w - num.len());
                self.out.extend_from_slice(&num[1..]);
                return;
            }
            let num = num.to_vec();
            self.pad(&num);
            return;
        }
        let num = num[1..].to_vec();
        self.pad(&num);
    }

    fn bad_verb(&mut self, verb: char, arg: &Value<'_>) -> Result<(), Unprintable> {
        self.out.extend_from_slice(b"%!");
        push_char(self.out, verb);
        self.out.push(b'(');
        if let Value::Nil = arg {
            self.out.extend_from_slice(b"<nil>");
        } else {
            self.out.extend_from_slice(arg.type_name().as_bytes());
            self.out.push(b'=');
            self.print_arg(arg, 'v')?;
        }
        self.out.push(b')');
        Ok(())
    }

    fn fmt_bool(&mut self, b: bool, verb: char) -> Result<(), Unprintable> {
        match verb {
            't' | 'v' => {
                self.pad(if b { b"true" } else { b"false" });
                Ok(())
            }
            _ => self.bad_verb(verb, &Value::Bool(b)),
        }
    }

    fn fmt_int(&mut self, i: i64, t: IntType, verb: char) -> Result<(), Unprintable> {
        let signed = !t.is_unsigned();
        let u = i as u64;
        match verb {
            'v' if self.f.sharp_v && !signed => {
                let old = self.f.sharp;
                self.f.sharp = true;
                self.fmt_integer(u, 16, false, 'v', LOWER_HEX);
                self.f.sharp = old;
            }
            'v' | 'd' => self.fmt_integer(u, 10, signed, verb, LOWER_HEX),
            'b' => self.fmt_integer(u, 2, signed, verb, LOWER_HEX),
            'o' | 'O' => self.fmt_integer(u, 8, signed, verb, LOWER_HEX),
            'x' => self.fmt_integer(u, 16, signed, verb, LOWER_HEX),
            'X' => self.fmt_integer(u, 16, signed, verb, UPPER_HEX),
            'c' => {
                let c = u32::try_from(i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{fffd}');
                let mut b = [0; 4];
                let s = c.encode_utf8(&mut b).as_bytes().to_vec();
                self.pad(&s);
            }
            'q' => {
                let mut q = Vec::new();
                append_quote_rune(&mut q, u32::try_from(i).unwrap_or(0xfffd), self.f.plus);
                self.pad(&q);
            }
            'U' => {
                let mut s = Vec::new();
                let _ = write!(s, "U+{u:04X}");
                if self.f.sharp
                    && let Some(c) = u32::try_from(i).ok().and_then(char::from_u32)
                    && is_print(c)
                {
                    s.extend_from_slice(b" '");
                    push_char(&mut s, c);
                    s.push(b'\'');
                }
                let old = self.f.zero;
                self.f.zero = false;
                self.pad(&s);
                self.f.zero = old;
            }
            _ => return self.bad_verb(verb, &Value::Int(i, t)),
        }
        Ok(())
    }

    fn fmt_f64(&mut self, v: f64, verb: char) -> Result<(), Unprintable> {
        match verb {
            'v' => self.fmt_float(v, b'g', -1),
            'g' | 'G' => self.fmt_float(v, verb as u8, -1),
            'e' | 'E' => self.fmt_float(v, verb as u8, 6),
            'f' | 'F' => self.fmt_float(v, b'f', 6),
            _ => return self.bad_verb(verb, &Value::Float(v)),
        }
        Ok(())
    }

    fn fmt_string(&mut self, s: &[u8], verb: char) -> Result<(), Unprintable> {
        match verb {
            'v' if self.f.sharp_v => self.fmt_q(s),
            'v' | 's' => self.fmt_s(s),
            'x' => self.fmt_sx(s, LOWER_HEX),
            'X' => self.fmt_sx(s, UPPER_HEX),
            'q' => self.fmt_q(s),
            _ => return self.bad_verb(verb, &Value::Str(Cow::Borrowed(s))),
        }
        Ok(())
    }

    /// Go's `printArg`: one operand at the top level.
    fn print_arg(&mut self, arg: &Value<'_>, verb: char) -> Result<(), Unprintable> {
        if let Value::Nil = arg {
            return match verb {
                'T' | 'v' => {
                    self.pad(b"<nil>");
                    Ok(())
                }
                _ => self.bad_verb(verb, arg),
            };
        }
        if verb == 'T' {
            self.fmt_s(arg.type_name().as_bytes());
            return Ok(());
        }
        if verb == 'p' {
            return self.bad_verb(verb, arg);
        }
        self.print_value(arg, verb, 0)
    }

    /// Go's `printValue` (and `handleMethods` for `String()`): `depth` > 0 inside a
    /// composite.
    fn print_value(&mut self, v: &Value<'_>, verb: char, depth: usize) -> Result<(), Unprintable> {
        match v {
            Value::Nil => {
                // Only reachable inside composites; Go prints an invalid value as this.
                self.out.extend_from_slice(b"<invalid reflect.Value>");
                Ok(())
            }
            Value::Bool(b) => self.fmt_bool(*b, verb),
            Value::Int(i, t) => self.fmt_int(*i, *t, verb),
            Value::Float(f) => self.fmt_f64(*f, verb),
            Value::Str(s) => self.fmt_string(s, verb),
            Value::Strings(items) => {
                if self.f.sharp_v {
                    self.out.extend_from_slice(b"[]string{");
                    for (i, s) in items.iter().enumerate() {
                        if i > 0 {
                            self.out.extend_from_slice(b", ");
                        }
                        self.fmt_string(s, verb)?;
                    }
                    self.out.push(b'}');
                    return Ok(());
                }
                self.out.push(b'[');
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b' ');
                    }
                    self.fmt_string(s, verb)?;
                }
                self.out.push(b']');
                Ok(())
            }
            Value::Obj(o) => {
                if !self.f.sharp_v
                    && matches!(verb, 'v' | 's' | 'x' | 'X' | 'q')
                    && let Some(s) = o.stringer()
                {
                    return self.fmt_string(&s, verb);
                }
                match o.shape() {
                    Shape::NilPointer => {
                        if self.f.sharp_v {
                            let _ = write!(self.out, "({})(nil)", o.type_name());
                            return Ok(());
                        }
                        match verb {
                            'v' => self.pad(b"<nil>"),
                            'b' | 'o' | 'd' | 'x' | 'X' => {
                                return self.fmt_int(0, IntType::Uint8, verb);
                            }
                            _ => return self.bad_verb(verb, v),
                        }
                        Ok(())
                    }
                    Shape::Map => {
                        if self.f.sharp_v {
                            self.out.extend_from_slice(o.type_name().as_bytes());
                            self.out.push(b'{');
                        } else {
                            self.out.extend_from_slice(b"map[");
                        }
                        for (i, (k, val)) in o.map_entries().iter().enumerate() {
                            if i > 0 {
                                if self.f.sharp_v {
                                    self.out.extend_from_slice(b", ");
                                } else {
                                    self.out.push(b' ');
                                }
                            }
                            self.fmt_string(k, verb)?;
                            self.out.push(b':');
                            self.print_value(val, verb, depth + 1)?;
                        }
                        self.out.push(if self.f.sharp_v { b'}' } else { b']' });
                        Ok(())
                    }
                    Shape::Struct => {
                        let Some(fields) = o.fields() else {
                            return Err(Unprintable(o.type_name()));
                        };
                        if depth > 0 {
                            // A pointer inside a composite prints as an address in Go.
                            return Err(Unprintable(o.type_name()));
                        }
                        if self.f.sharp_v {
                            self.out.push(b'&');
                            let name = o.type_name();
                            self.out.extend_from_slice(
                                name.strip_prefix('*').unwrap_or(name).as_bytes(),
                            );
                        } else {
                            self.out.push(b'&');
                        }
                        self.print_struct(&fields, verb)
                    }
                }
            }
        }
    }

    fn print_struct(
        &mut self,
        fields: &[(&'static str, Value<'_>)],
        verb: char,
    ) -> Result<(), Unprintable> {
        self.out.push(b'{');
        for (i, (name, val)) in fields.iter().enumerate() {
            if i > 0 {
                if self.f.sharp_v {
                    self.out.extend_from_slice(b", ");
                } else {
                    self.out.push(b' ');
                }
            }
            if self.f.plus_v || self.f.sharp_v {
                self.out.extend_from_slice(name.as_bytes());
                self.out.push(b':');
            }
            self.print_value(val, verb, 1)?;
        }
        self.out.push(b'}');
        Ok(())
    }
}

/// `fmt.Sprint(args...)`: operands separated by a space when neither side is a string.
pub fn sprint(out: &mut Vec<u8>, args: &[Value<'_>]) -> Result<(), Unprintable> {
    let mut p = Printer {
        out,
        f: Flags::default(),
    };
    let mut prev_string = false;
    for (i, arg) in args.iter().enumerate() {
        let is_string = matches!(arg, Value::Str(_));
        if i > 0 && !is_string && !prev_string {
            p.out.push(b' ');
        }
        p.print_arg(arg, 'v')?;
        prev_string = is_string;
    }
    Ok(())
}

/// `fmt.Sprintln(args...)`: operands always separated by a space, then a newline.
pub fn sprintln(out: &mut Vec<u8>, args: &[Value<'_>]) -> Result<(), Unprintable> {
    let mut p = Printer {
        out,
        f: Flags::default(),
    };
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            p.out.push(b' ');
        }
        p.print_arg(arg, 'v')?;
    }
    p.out.push(b'\n');
    Ok(())
}

/// Go's `printableValue` then `fmt.Fprint` of that one value: how a template action prints
/// its result. A missing value prints `<no value>`; a pointer to a struct is dereferenced
/// (`{…}`, no `&`) unless its type has `String()`.
pub fn print_printable(out: &mut Vec<u8>, v: &Value<'_>) -> Result<(), Unprintable> {
    let mut p = Printer {
        out,
        f: Flags::default(),
    };
    p.print_printable(v)
}

impl Printer<'_> {
    fn print_printable(&mut self, v: &Value<'_>) -> Result<(), Unprintable> {
        match v {
            Value::Nil => {
                self.out.extend_from_slice(b"<no value>");
                Ok(())
            }
            Value::Obj(o) if o.shape() == Shape::Struct && o.stringer().is_none() => {
                let Some(fields) = o.fields() else {
                    return Err(Unprintable(o.type_name()));
                };
                self.print_struct(&fields, 'v')
            }
            _ => self.print_arg(v, 'v'),
        }
    }
}

/// Go's `evalArgs` (behind `js`, `html`, `urlquery`): one string argument as is, anything
/// else through `printableValue` and `fmt.Sprint`.
pub fn eval_args<'v>(args: &'v [Value<'_>]) -> Result<Cow<'v, [u8]>, Unprintable> {
    if let [Value::Str(s)] = args {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::new();
    let mut p = Printer {
        out: &mut out,
        f: Flags::default(),
    };
    let mut prev_string = false;
    for (i, arg) in args.iter().enumerate() {
        // printableValue turns a missing value into the *string* "<no value>".
        let is_string = matches!(arg, Value::Str(_) | Value::Nil);
        if i > 0 && !is_string && !prev_string {
            p.out.push(b' ');
        }
        p.print_printable(arg)?;
        prev_string = is_string;
    }
    Ok(Cow::Owned(out))
}

/// `fmt.Sprintf(format, args...)`.
pub fn sprintf(out: &mut Vec<u8>, format: &[u8], args: &[Value<'_>]) -> Result<(), Unprintable> {
    let mut p = Printer {
        out,
        f: Flags::default(),
    };
    let end = format.len();
    let mut arg_num = 0;
    let mut reordered = false;
    let mut i = 0;
    while i < end {
        let mut good_arg_num = true;
        let last = i;
        while i < end && format[i] != b'%' {
            i += 1;
        }
        p.out.extend_from_slice(&format[last..i]);
        if i >= end {
            break;
        }
        i += 1;
        p.f = Flags::default();
        // Flags.
        while i < end {
            match format[i] {
                b'#' => p.f.sharp = true,
                b'0' => p.f.zero = !p.f.minus,
                b'+' => p.f.plus = true,
                b'-' => {
                    p.f.minus = true;
                    p.f.zero = false;
                }
                b' ' => p.f.space = true,
                _ => break,
            }
            i += 1;
        }
        let mut after_index;
        (arg_num, i, after_index) = arg_number(
            arg_num,
            format,
            i,
            args.len(),
            &mut reordered,
            &mut good_arg_num,
        );
        // Width.
        if i < end && format[i] == b'*' {
            i += 1;
            let (n, ok, next) = int_from_arg(args, arg_num);
            arg_num = next;
            if !ok {
                p.out.extend_from_slice(b"%!(BADWIDTH)");
            } else if n < 0 {
                p.f.wid = Some(n.unsigned_abs() as usize);
                p.f.minus = true;
                p.f.zero = false;
            } else {
                p.f.wid = Some(n as usize);
            }
            after_index = false;
        } else {
            let (n, ok, next) = parse_num(format, i, end);
            i = next;
            if ok {
                p.f.wid = Some(n);
                if after_index {
                    good_arg_num = false;
                }
            }
        }
        // Precision.
        if i + 1 < end && format[i] == b'.' {
            i += 1;
            if after_index {
                good_arg_num = false;
            }
            (arg_num, i, after_index) = arg_number(
                arg_num,
                format,
                i,
                args.len(),
                &mut reordered,
                &mut good_arg_num,
            );
            if i < end && format[i] == b'*' {
                i += 1;
                let (n, ok, next) = int_from_arg(args, arg_num);
                arg_num = next;
                if ok && n >= 0 {
                    p.f.prec = Some(n as usize);
                } else {
                    p.f.prec = None;
                    if !ok {
                        p.out.extend_from_slice(b"%!(BADPREC)");
                    }
                }
                after_index = false;
            } else {
                let (n, ok, next) = parse_num(format, i, end);
                i = next;
                p.f.prec = Some(if ok { n } else { 0 });
            }
        }
        if !after_index {
            (arg_num, i, _) = arg_number(
                arg_num,
                format,
                i,
                args.len(),
                &mut reordered,
                &mut good_arg_num,
            );
        }
        if i >= end {
            p.out.extend_from_slice(b"%!(NOVERB)");
            break;
        }
        let (verb, size) = match decode_rune(&format[i..]) {
            (Some(c), w) => (c, w),
            (None, w) => ('\u{fffd}', w),
        };
        i += size;
        if verb == '%' {
            p.out.push(b'%');
        } else if !good_arg_num {
            p.out.extend_from_slice(b"%!");
            push_char(p.out, verb);
            p.out.extend_from_slice(b"(BADINDEX)");
        } else if arg_num >= args.len() {
            p.out.extend_from_slice(b"%!");
            push_char(p.out, verb);
            p.out.extend_from_slice(b"(MISSING)");
        } else {
            if verb == 'v' {
                p.f.sharp_v = p.f.sharp;
                p.f.sharp = false;
                p.f.plus_v = p.f.plus;
                p.f.plus = false;
            }
            p.print_arg(&args[arg_num], verb)?;
            arg_num += 1;
        }
    }
    if !reordered && arg_num < args.len() {
        p.f = Flags::default();
        p.out.extend_from_slice(b"%!(EXTRA ");
        for (i, arg) in args[arg_num..].iter().enumerate() {
            if i > 0 {
                p.out.extend_from_slice(b", ");
            }
            if let Value::Nil = arg {
                p.out.extend_from_slice(b"<nil>");
            } else {
                p.out.extend_from_slice(arg.type_name().as_bytes());
                p.out.push(b'=');
                p.print_arg(arg, 'v')?;
            }
        }
        p.out.push(b')');
    }
    Ok(())
}

/// Go's `parsenum`: a decimal number at `start`, refusing absurd sizes.
fn parse_num(s: &[u8], start: usize, end: usize) -> (usize, bool, usize) {
    if start >= end {
        return (0, false, end);
    }
    let mut num = 0usize;
    let mut is_num = false;
    let mut i = start;
    while i < end && s[i].is_ascii_digit() {
        if num > 1_000_000 {
            return (0, false, end);
        }
        num = num * 10 + usize::from(s[i] - b'0');
        is_num = true;
        i += 1;
    }
    (num, is_num, i)
}

/// Go's `argNumber`: an explicit `[n]` argument index at `i`.
fn arg_number(
    arg_num: usize,
    format: &[u8],
    i: usize,
    num_args: usize,
    reordered: &mut bool,
    good: &mut bool,
) -> (usize, usize, bool) {
    if format.len() <= i || format[i] != b'[' {
        return (arg_num, i, false);
    }
    *reordered = true;
    let rest = &format[i..];
    // parseArgNumber: at least "[n]".
    let (index, wid, ok) = if rest.len() < 3 {
        (0, 1, false)
    } else {
        match rest.iter().position(|&c| c == b']') {
            Some(close) => {
                let (n, is_num, next) = parse_num(rest, 1, close);
                if !is_num || next != close {
                    (0, close + 1, false)
                } else {
                    (n as isize - 1, close + 1, true)
                }
            }
            None => (0, 1, false),
        }
    };
    if ok && index >= 0 && (index as usize) < num_args {
        return (index as usize, i + wid, true);
    }
    *good = false;
    (arg_num, i + wid, ok)
}

/// Go's `intFromArg`: a `*` width or precision.
fn int_from_arg(args: &[Value<'_>], arg_num: usize) -> (i64, bool, usize) {
    match args.get(arg_num) {
        Some(Value::Int(n, _)) if n.unsigned_abs() <= 1_000_000 => (*n, true, arg_num + 1),
        Some(_) => (0, false, arg_num + 1),
        None => (0, false, arg_num),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(v: f64) -> String {
        format_float_v(v)
    }

    fn f(v: f64, fmt: u8, prec: i32) -> String {
        let mut out = Vec::new();
        append_float(&mut out, v, fmt, prec);
        String::from_utf8(out).unwrap()
    }

    fn printf(format: &str, args: &[Value<'_>]) -> String {
        let mut out = Vec::new();
        sprintf(&mut out, format.as_bytes(), args).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn s(v: &str) -> Value<'_> {
        Value::str(v.as_bytes())
    }

    #[test]
    fn float_v_matches_go() {
        // Expected strings are what Go's fmt.Sprint prints for these float64 values.
        let table: &[(f64, &str)] = &[
            (0.001234, "0.001234"),
            (1.2e-05, "1.2e-05"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456789.0, "1.23456789e+08"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (2.0, "2"),
            (0.5, "0.5"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (0.0, "0"),
            (-0.0, "-0"),
            (-1.5, "-1.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for &(v, want) in table {
            assert_eq!(g(v), want, "%v of {v:e}");
        }
    }

    #[test]
    fn fixed_precision_rounds_half_to_even_like_go() {
        assert_eq!(f(0.125, b'f', 2), "0.12");
        assert_eq!(f(0.375, b'f', 2), "0.38");
        assert_eq!(f(2.5, b'f', 0), "2");
        assert_eq!(f(3.5, b'f', 0), "4");
        assert_eq!(f(1.005, b'f', 2), "1.00"); // 1.005 is below the tie in binary
        assert_eq!(f(0.001234, b'f', 6), "0.001234");
        assert_eq!(f(0.001234, b'e', 6), "1.234000e-03");
        assert_eq!(f(0.0, b'e', 3), "0.000e+00");
        assert_eq!(f(123456.0, b'e', -1), "1.23456e+05");
        assert_eq!(f(1.0, b'g', 3), "1");
        assert_eq!(f(123456.0, b'g', 3), "1.23e+05");
        assert_eq!(f(0.0001234, b'g', 2), "0.00012");
        assert_eq!(f(100.0, b'g', 0), "1e+02");
        assert_eq!(f(1e-7, b'G', -1), "1E-07");
    }

    #[test]
    fn quote_matches_strconv() {
        let q = |s: &[u8], ascii| {
            let mut out = Vec::new();
            append_quote(&mut out, s, ascii);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(q(b"a\"b\\c", false), r#""a\"b\\c""#);
        assert_eq!(
            q(b"\x07\x08\x0c\n\r\t\x0b\x00\x7f", false),
            r#""\a\b\f\n\r\t\v\x00\x7f""#
        );
        assert_eq!(q("héllo☺".as_bytes(), false), "\"héllo☺\"");
        assert_eq!(q("héllo☺".as_bytes(), true), r#""h\u00e9llo\u263a""#);
        assert_eq!(q("\u{1F600}".as_bytes(), true), r#""\U0001f600""#);
        assert_eq!(
            q("\u{a0}\u{ad}\u{2028}".as_bytes(), false),
            r#""\u00a0\u00ad\u2028""#
        );
        assert_eq!(q(b"\xff\xe2\x82", false), r#""\xff\xe2\x82""#);
    }

    #[test]
    fn printf_verbs_flags_and_widths() {
        let five = Value::int(5);
        assert_eq!(printf("%s-%d", &[s("a"), Value::int(42)]), "a-42");
        assert_eq!(
            printf("%5d|%-5d|%05d", &[five.clone(), five.clone(), five.clone()]),
            "    5|5    |00005"
        );
        assert_eq!(
            printf(
                "%+d % d %x %X %#x %o %#o %b %O",
                &[
                    five.clone(),
                    five.clone(),
                    Value::int(255),
                    Value::int(255),
                    Value::int(255),
                    Value::int(8),
                    Value::int(8),
                    five.clone(),
                    Value::int(8)
                ]
            ),
            "+5  5 ff FF 0xff 10 010 101 0o10"
        );
        assert_eq!(
            printf(
                "%-05d|%.3d|%6.3d|%.0d",
                &[Value::int(-5), five.clone(), Value::int(-7), Value::int(0)]
            ),
            "-5   |005|  -007|"
        );
        assert_eq!(
            printf(
                "%q %v %x % X %#x",
                &[s("a\"b"), s("x"), s("hi"), s("hi"), s("hi")]
            ),
            r#""a\"b" x 6869 68 69 0x6869"#
        );
        assert_eq!(
            printf("%8.3s|%-4s|%.2s", &[s("abcdef"), s("é"), s("日本語")]),
            "     abc|é   |日本"
        );
        assert_eq!(printf("%#q %+q", &[s("a`b"), s("é")]), r#""a`b" "\u00e9""#);
        assert_eq!(printf("%#q", &[s("ab")]), "`ab`");
        assert_eq!(
            printf(
                "%f %.2f %8.3f %-8.2f| %e %g %G",
                &[
                    Value::Float(0.001234),
                    Value::Float(2.0),
                    Value::Float(-3.25159),
                    Value::Float(1.5),
                    Value::Float(1234.5678),
                    Value::Float(1e-7),
                    Value::Float(1e-7)
                ]
            ),
            "0.001234 2.00   -3.252 1.50    | 1.234568e+03 1e-07 1E-07"
        );
        assert_eq!(
            printf(
                "%+.1f %08.2f % f %v",
                &[
                    Value::Float(2.0),
                    Value::Float(-1.5),
                    Value::Float(1.0),
                    Value::Float(1.2e-5)
                ]
            ),
            "+2.0 -0001.50  1.000000 1.2e-05"
        );
        assert_eq!(
            printf(
                "%6v|%-6v|%06v",
                &[
                    Value::Float(f64::INFINITY),
                    Value::Float(f64::NAN),
                    Value::Float(f64::NEG_INFINITY)
                ]
            ),
            "  +Inf|NaN   |  -Inf"
        );
        assert_eq!(
            printf(
                "%t %v %c %q %U %#U",
                &[
                    Value::Bool(true),
                    Value::Bool(false),
                    Value::int(0x263a),
                    Value::int(0x41),
                    Value::int(0x263a),
                    Value::int(0x263a)
                ]
            ),
            "true false ☺ 'A' U+263A U+263A '☺'"
        );
        assert_eq!(
            printf(
                "%T %T %T %T",
                &[s(""), Value::int(1), Value::Float(1.0), Value::Nil]
            ),
            "string int float64 <nil>"
        );
        assert_eq!(printf("100%%", &[]), "100%");
    }

    #[test]
    fn precisions_past_rusts_formatter_limit_print_as_go_does() {
        // Found by fuzzing: Rust's formatter panics on a precision above 65535; Go's
        // fmt accepts up to 1e6 and pads the exact expansion with zeros.
        let f = printf("%.200000f", &[Value::Float(0.1)]);
        assert_eq!(f.len(), 2 + 200_000);
        assert!(
            f.starts_with("0.1000000000000000055511151231257827"),
            "{}",
            &f[..40]
        );
        assert!(f[1100..].bytes().all(|b| b == b'0'));
        let e = printf("%.70000e", &[Value::Float(1.5)]);
        assert_eq!(e, format!("1.5{}e+00", "0".repeat(69_999)));
        let g = printf("%.70000g", &[Value::Float(0.1)]);
        assert!(
            g.starts_with("0.1000000000000000055511151231257827"),
            "{}",
            &g[..40]
        );
        assert!(!g.ends_with('0'), "%g drops trailing zeros");
        // The smallest subnormal's expansion ends exactly at the 1074th decimal.
        let tiny = printf("%.1100f", &[Value::Float(f64::from_bits(1))]);
        assert_eq!(tiny.len(), 2 + 1100);
        assert!(tiny[2..].starts_with(&format!("{}49406564584124654", "0".repeat(323))));
        assert_eq!(&tiny[2 + 1071..2 + 1074], "625");
        assert!(tiny[2 + 1074..].bytes().all(|b| b == b'0'));
    }

    #[test]
    fn printf_errors_are_inline_as_in_go() {
        assert_eq!(printf("%d", &[s("x")]), "%!d(string=x)");
        assert_eq!(printf("%s", &[Value::int(3)]), "%!s(int=3)");
        assert_eq!(printf("%d %d", &[Value::int(1)]), "1 %!d(MISSING)");
        assert_eq!(
            printf("%d", &[Value::int(1), s("x"), Value::Nil]),
            "1%!(EXTRA string=x, <nil>)"
        );
        assert_eq!(printf("%z", &[Value::int(1)]), "%!z(int=1)");
        assert_eq!(printf("%d", &[Value::Nil]), "%!d(<nil>)");
        assert_eq!(printf("%v", &[Value::Nil]), "<nil>");
        assert_eq!(printf("abc%", &[]), "abc%!(NOVERB)");
        assert_eq!(
            printf("%[2]d %[1]d", &[Value::int(1), Value::int(2)]),
            "2 1"
        );
        assert_eq!(printf("%[3]d", &[Value::int(1)]), "%!d(BADINDEX)");
        assert_eq!(
            printf(
                "%*d|%-*d|%.*f",
                &[
                    Value::int(4),
                    Value::int(7),
                    Value::int(3),
                    Value::int(7),
                    Value::int(1),
                    Value::Float(2.25)
                ]
            ),
            "   7|7  |2.2"
        );
        assert_eq!(printf("%*d", &[s("x"), Value::int(7)]), "%!(BADWIDTH)7");
        assert_eq!(printf("%p", &[Value::int(1)]), "%!p(int=1)");
    }

    #[test]
    fn sprint_spacing_and_slices() {
        let mut out = Vec::new();
        sprint(
            &mut out,
            &[
                Value::int(1),
                Value::int(2),
                s("a"),
                Value::int(3),
                s("b"),
                s("c"),
            ],
        )
        .unwrap();
        assert_eq!(out, b"1 2a3bc");
        out.clear();
        sprintln(&mut out, &[s("a"), s("b"), Value::int(3)]).unwrap();
        assert_eq!(out, b"a b 3\n");
        out.clear();
        let list = Value::Strings(vec![Cow::Borrowed(&b"x"[..]), Cow::Borrowed(&b"y z"[..])]);
        sprintf(
            &mut out,
            b"%v %q %d %#v",
            &[list.clone(), list.clone(), list.clone(), list],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[x y z] ["x" "y z"] [%!d(string=x) %!d(string=y z)] []string{"x", "y z"}"#
        );
    }

    #[test]
    fn eval_args_uses_printable_values() {
        let one = [s("a<b")];
        assert_eq!(&*eval_args(&one).unwrap(), b"a<b");
        assert_eq!(&*eval_args(&[Value::Nil]).unwrap(), b"<no value>");
        assert_eq!(
            &*eval_args(&[Value::int(1), Value::Nil, Value::int(2)]).unwrap(),
            b"1<no value>2"
        );
        assert_eq!(
            &*eval_args(&[Value::int(1), Value::Float(0.5)]).unwrap(),
            b"1 0.5"
        );
    }
}
