//! Go's predefined template functions (`text/template/funcs.go`): `and or not len index slice
//! call print printf println html js urlquery eq ne lt le gt ge`, with Go's signatures (for
//! argument checking), results and error messages.
//!
//! `and`/`or` short-circuit and are evaluated in [`super::exec`]; everything else receives
//! its evaluated arguments here. An `Err` is the function's own error; the executor wraps it
//! as `error calling NAME: …` like Go does.

use std::borrow::Cow;

use super::value::{IntType, Shape, Value};
use crate::request_log::gofmt::{self, Unprintable, decode_rune};
use crate::request_log::gounicode::is_print;
use crate::request_log::gourl::query_escape;

/// A parameter type, for Go's argument checking: `interface{}`/`reflect.Value` accept
/// anything; `string` and `int` only values of exactly that type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PType {
    Any,
    Str,
    Int,
}

/// A function's parameters: fixed ones, then optionally a variadic tail.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sig {
    pub fixed: &'static [PType],
    pub variadic: Option<PType>,
}

/// The predefined functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Builtin {
    And,
    Call,
    Html,
    Index,
    Slice,
    Js,
    Len,
    Not,
    Or,
    Print,
    Printf,
    Println,
    Urlquery,
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
    Ne,
}

/// Whether `name` is a predefined function (the parser rejects anything else).
pub(super) fn is_builtin(name: &str) -> bool {
    Builtin::from_name(name).is_some()
}

impl Builtin {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "and" => Builtin::And,
            "call" => Builtin::Call,
            "html" => Builtin::Html,
            "index" => Builtin::Index,
            "slice" => Builtin::Slice,
            "js" => Builtin::Js,
            "len" => Builtin::Len,
            "not" => Builtin::Not,
            "or" => Builtin::Or,
            "print" => Builtin::Print,
            "printf" => Builtin::Printf,
            "println" => Builtin::Println,
            "urlquery" => Builtin::Urlquery,
            "eq" => Builtin::Eq,
            "ge" => Builtin::Ge,
            "gt" => Builtin::Gt,
            "le" => Builtin::Le,
            "lt" => Builtin::Lt,
            "ne" => Builtin::Ne,
            _ => return None,
        })
    }

    /// Go's signature of the function.
    pub fn sig(self) -> Sig {
        const ANY1: &[PType] = &[PType::Any];
        const ANY2: &[PType] = &[PType::Any, PType::Any];
        let (fixed, variadic) = match self {
            Builtin::And
            | Builtin::Or
            | Builtin::Call
            | Builtin::Index
            | Builtin::Slice
            | Builtin::Eq => (ANY1, Some(PType::Any)),
            Builtin::Html | Builtin::Js | Builtin::Urlquery | Builtin::Print | Builtin::Println => {
                (&[][..], Some(PType::Any))
            }
            Builtin::Printf => (&[PType::Str][..], Some(PType::Any)),
            Builtin::Len | Builtin::Not => (ANY1, None),
            Builtin::Ge | Builtin::Gt | Builtin::Le | Builtin::Lt | Builtin::Ne => (ANY2, None),
        };
        Sig { fixed, variadic }
    }
}

fn unprintable(e: Unprintable) -> String {
    format!(
        "printing a value of type {} is not supported by this request-log template engine",
        e.0
    )
}

/// Calls `f` on evaluated, type-checked arguments. `callee` is the source text of the first
/// argument, which `call` names in its error.
pub(super) fn call<'a>(
    f: Builtin,
    args: Vec<Value<'a>>,
    callee: &str,
) -> Result<Value<'a>, String> {
    let owned = |v: Vec<u8>| Ok(Value::Str(Cow::Owned(v)));
    match f {
        Builtin::Html => escaper(args, html_needs_escape, html_escape),
        Builtin::Js => escaper(args, js_needs_escape, js_escape),
        Builtin::Urlquery => {
            let s = escaper_input(args)?;
            match query_escape(&s) {
                Cow::Borrowed(_) => Ok(Value::Str(s)),
                Cow::Owned(escaped) => owned(escaped),
            }
        }
        Builtin::Print => {
            let mut out = Vec::new();
            gofmt::sprint(&mut out, &args).map_err(unprintable)?;
            owned(out)
        }
        Builtin::Println => {
            let mut out = Vec::new();
            gofmt::sprintln(&mut out, &args).map_err(unprintable)?;
            owned(out)
        }
        Builtin::Printf => {
            let mut out = Vec::new();
            let Some((Value::Str(format), rest)) = args.split_first() else {
                return Err("printf needs a format string".into());
            };
            gofmt::sprintf(&mut out, format, rest).map_err(unprintable)?;
            owned(out)
        }
        Builtin::Len => length(&args[0]).map(Value::int),
        Builtin::Not => Ok(Value::Bool(!args[0].is_true())),
        Builtin::Index => index(&args[0], &args[1..]),
        Builtin::Slice => slice(&args[0], &args[1..]),
        Builtin::Call => match &args[0] {
            Value::Nil => Err("call of nil".into()),
            v => Err(format!("non-function {callee} of type {}", v.type_name())),
        },
        Builtin::Eq => eq(&args[0], &args[1..]).map(Value::Bool),
        Builtin::Ne => eq(&args[0], &args[1..]).map(|b| Value::Bool(!b)),
        Builtin::Lt => lt(&args[0], &args[1]).map(Value::Bool),
        Builtin::Le => le(&args[0], &args[1]).map(Value::Bool),
        Builtin::Gt => le(&args[0], &args[1]).map(|b| Value::Bool(!b)),
        Builtin::Ge => lt(&args[0], &args[1]).map(|b| Value::Bool(!b)),
        // Short-circuiting: evaluated by the executor before arguments are.
        Builtin::And | Builtin::Or => Err("and/or are evaluated by the executor".into()),
    }
}

/// The text an escaping function works on (Go's `evalArgs`), taking a lone string argument
/// as it is, without a copy.
fn escaper_input(args: Vec<Value<'_>>) -> Result<Cow<'_, [u8]>, String> {
    match <[Value<'_>; 1]>::try_from(args) {
        Ok([Value::Str(s)]) => Ok(s),
        Ok([other]) => Ok(Cow::Owned(
            gofmt::eval_args(&[other])
                .map_err(unprintable)?
                .into_owned(),
        )),
        Err(args) => Ok(Cow::Owned(
            gofmt::eval_args(&args).map_err(unprintable)?.into_owned(),
        )),
    }
}

/// `html`/`js`: like Go's `HTMLEscapeString`/`JSEscapeString`, the input itself comes back
/// when nothing needs escaping (no allocation for the common case).
fn escaper<'a>(
    args: Vec<Value<'a>>,
    needs_escape: fn(&[u8]) -> bool,
    escape: fn(&mut Vec<u8>, &[u8]),
) -> Result<Value<'a>, String> {
    let s = escaper_input(args)?;
    if !needs_escape(&s) {
        return Ok(Value::Str(s));
    }
    let mut out = Vec::with_capacity(s.len() + 16);
    escape(&mut out, &s);
    Ok(Value::Str(Cow::Owned(out)))
}

fn html_needs_escape(s: &[u8]) -> bool {
    s.iter()
        .any(|c| matches!(c, 0 | b'"' | b'\'' | b'&' | b'<' | b'>'))
}

/// Go's `jsIsSpecial` over bytes. A non-ASCII byte counts as special, as in Go: the escaper
/// then decides per rune, possibly copying it unchanged.
fn js_needs_escape(s: &[u8]) -> bool {
    s.iter().any(|&c| {
        !(b' '..0x80).contains(&c) || matches!(c, b'\\' | b'\'' | b'"' | b'<' | b'>' | b'&' | b'=')
    })
}

/// Go's `template.HTMLEscape`.
pub fn html_escape(out: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        match c {
            0 => out.extend_from_slice("\u{fffd}".as_bytes()),
            b'"' => out.extend_from_slice(b"&#34;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            _ => out.push(c),
        }
    }
}

/// Go's `template.JSEscape`: `\` `'` `"` get a backslash; `<` `>` `&` `=` and control bytes
/// become `\u00XX` (upper-case hex); non-ASCII runes pass unless Go deems them unprintable,
/// then `\uXXXX`. Invalid UTF-8 bytes pass through (Go decodes them as U+FFFD, printable).
/// DEL (0x7f) passes too: Go only escapes below the space.
pub fn js_escape(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c < 0x80 {
            match c {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\'' => out.extend_from_slice(b"\\'"),
                b'"' => out.extend_from_slice(b"\\\""),
                b'<' => out.extend_from_slice(b"\\u003C"),
                b'>' => out.extend_from_slice(b"\\u003E"),
                b'&' => out.extend_from_slice(b"\\u0026"),
                b'=' => out.extend_from_slice(b"\\u003D"),
                c if c < b' ' => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(c >> 4)]);
                    out.push(HEX[usize::from(c & 0xf)]);
                }
                c => out.push(c),
            }
            i += 1;
            continue;
        }
        let (r, size) = decode_rune(&s[i..]);
        match r {
            Some(r) if !is_print(r) => {
                out.extend_from_slice(format!("\\u{:04X}", u32::from(r)).as_bytes());
            }
            _ => out.extend_from_slice(&s[i..i + size]),
        }
        i += size;
    }
}

/// Go's `basicKind`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BasicKind {
    Invalid,
    Bool,
    Int,
    Uint,
    Float,
    Str,
}

fn basic_kind(v: &Value<'_>) -> BasicKind {
    match v {
        Value::Bool(_) => BasicKind::Bool,
        Value::Int(_, t) if t.is_unsigned() => BasicKind::Uint,
        Value::Int(..) => BasicKind::Int,
        Value::Float(_) => BasicKind::Float,
        Value::Str(_) => BasicKind::Str,
        _ => BasicKind::Invalid,
    }
}

fn int_of(v: &Value<'_>) -> i64 {
    match v {
        Value::Int(i, _) => *i,
        _ => 0,
    }
}

/// `reflect.Kind` of a non-basic value, for `eq`'s comparability rules.
fn reflect_kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Nil => "invalid",
        Value::Strings(_) => "slice",
        Value::Obj(o) if o.shape() == Shape::Map => "map",
        _ => "ptr",
    }
}

fn is_nil(v: &Value<'_>) -> bool {
    match v {
        Value::Strings(s) => s.is_empty(),
        other => other.is_nil(),
    }
}

/// Go's `eq arg1 arg2...`: true if `arg1` equals any of the others.
fn eq(a: &Value<'_>, others: &[Value<'_>]) -> Result<bool, String> {
    if others.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let k1 = basic_kind(a);
    for b in others {
        let k2 = basic_kind(b);
        let truth = if k1 != k2 {
            match (k1, k2) {
                (BasicKind::Int, BasicKind::Uint) | (BasicKind::Uint, BasicKind::Int) => {
                    int_of(a) >= 0 && int_of(a) == int_of(b)
                }
                _ if !matches!(a, Value::Nil) && !matches!(b, Value::Nil) => {
                    return Err(format!(
                        "incompatible types for comparison: {} and {}",
                        a.type_name(),
                        b.type_name()
                    ));
                }
                _ => false,
            }
        } else {
            match (a, b) {
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (Value::Int(x, _), Value::Int(y, _)) => x == y,
                (Value::Float(x), Value::Float(y)) => x == y,
                (Value::Str(x), Value::Str(y)) => x == y,
                _ => {
                    let (ka, kb) = (reflect_kind(a), reflect_kind(b));
                    if ka != kb && ka != "invalid" && kb != "invalid" {
                        return Err(format!(
                            "non-comparable types {} and {}",
                            a.type_name(),
                            b.type_name()
                        ));
                    }
                    if is_nil(a) || is_nil(b) {
                        is_nil(a) == is_nil(b)
                    } else if kb != "ptr" {
                        return Err(format!("non-comparable type {}", b.type_name()));
                    } else {
                        match (a, b) {
                            (Value::Obj(x), Value::Obj(y)) => std::ptr::addr_eq(*x, *y),
                            _ => false,
                        }
                    }
                }
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Go's `lt a b`.
fn lt(a: &Value<'_>, b: &Value<'_>) -> Result<bool, String> {
    let k1 = basic_kind(a);
    let k2 = basic_kind(b);
    if k1 == BasicKind::Invalid || k2 == BasicKind::Invalid {
        return Err("invalid type for comparison".into());
    }
    if k1 != k2 {
        return match (k1, k2) {
            (BasicKind::Int, BasicKind::Uint) => Ok(int_of(a) < 0 || int_of(a) < int_of(b)),
            (BasicKind::Uint, BasicKind::Int) => Ok(int_of(b) >= 0 && int_of(a) < int_of(b)),
            _ => Err(format!(
                "incompatible types for comparison: {} and {}",
                a.type_name(),
                b.type_name()
            )),
        };
    }
    match (a, b) {
        (Value::Int(x, _), Value::Int(y, _)) => Ok(x < y),
        (Value::Float(x), Value::Float(y)) => Ok(x < y),
        (Value::Str(x), Value::Str(y)) => Ok(x < y),
        _ => Err("invalid type for comparison".into()),
    }
}

/// Go's `le a b`: `lt` or `eq`.
fn le(a: &Value<'_>, b: &Value<'_>) -> Result<bool, String> {
    if lt(a, b)? {
        return Ok(true);
    }
    eq(a, std::slice::from_ref(b))
}

/// Go's `len`.
fn length(v: &Value<'_>) -> Result<i64, String> {
    match v {
        Value::Nil => Err("reflect: call of reflect.Value.Type on zero Value".into()),
        Value::Str(s) => Ok(s.len() as i64),
        Value::Strings(s) => Ok(s.len() as i64),
        Value::Obj(o) => match o.shape() {
            Shape::Map => Ok(o.map_len() as i64),
            Shape::NilPointer => Err("len of nil pointer".into()),
            Shape::Struct => Err(format!("len of type {}", deref_name(o.type_name()))),
        },
        other => Err(format!("len of type {}", other.type_name())),
    }
}

/// The type behind a pointer type: `*http.Request` → `http.Request`.
fn deref_name(t: &str) -> &str {
    t.strip_prefix('*').unwrap_or(t)
}

/// Go's `indexArg`: an integer index in `0..=cap`.
fn index_arg(i: &Value<'_>, cap: usize) -> Result<usize, String> {
    let x = match i {
        Value::Int(x, _) => *x,
        Value::Nil => return Err("cannot index slice/array with nil".into()),
        other => {
            return Err(format!(
                "cannot index slice/array with type {}",
                other.type_name()
            ));
        }
    };
    if x < 0 || x as u64 > cap as u64 {
        return Err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

fn sub<'a>(s: &Cow<'a, [u8]>, from: usize, to: usize) -> Cow<'a, [u8]> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(&b[from..to]),
        Cow::Owned(v) => Cow::Owned(v[from..to].to_vec()),
    }
}

/// Go's `index item i j…`: `item[i][j]…` over strings, slices and maps.
fn index<'a>(item: &Value<'a>, indexes: &[Value<'a>]) -> Result<Value<'a>, String> {
    if let Value::Nil = item {
        return Err("index of untyped nil".into());
    }
    let mut item = item.clone();
    for i in indexes {
        item = match &item {
            Value::Obj(o) if o.shape() == Shape::NilPointer => {
                return Err("index of nil pointer".into());
            }
            Value::Str(s) => {
                let x = index_arg(i, s.len())?;
                let Some(&b) = s.get(x) else {
                    return Err("reflect: string index out of range".into());
                };
                Value::Int(i64::from(b), IntType::Uint8)
            }
            Value::Strings(v) => {
                let x = index_arg(i, v.len())?;
                let Some(s) = v.get(x) else {
                    return Err("reflect: slice index out of range".into());
                };
                Value::Str(s.clone())
            }
            Value::Obj(o) if o.shape() == Shape::Map => {
                let key: &[u8] = match i {
                    Value::Str(k) => k,
                    Value::Nil => b"",
                    other => {
                        return Err(format!(
                            "value has type {}; should be string",
                            other.type_name()
                        ));
                    }
                };
                // A missing key gives the element type's zero value: a nil []string.
                o.map_get(key).unwrap_or(Value::Strings(Vec::new()))
            }
            Value::Obj(o) => {
                return Err(format!(
                    "can't index item of type {}",
                    deref_name(o.type_name())
                ));
            }
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

/// Go's `slice item i j k`: `item[i:j:k]` over strings and slices.
fn slice<'a>(item: &Value<'a>, indexes: &[Value<'a>]) -> Result<Value<'a>, String> {
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let len = match item {
        Value::Nil => return Err("slice of untyped nil".into()),
        Value::Str(s) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            s.len()
        }
        Value::Strings(v) => v.len(),
        Value::Obj(o) => {
            return Err(format!(
                "can't slice item of type {}",
                deref_name(o.type_name())
            ));
        }
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut idx = [0, len, 0];
    for (n, i) in indexes.iter().enumerate() {
        idx[n] = index_arg(i, len)?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    if indexes.len() == 3 && idx[1] > idx[2] {
        return Err(format!("invalid slice index: {} > {}", idx[1], idx[2]));
    }
    Ok(match item {
        Value::Str(s) => Value::Str(sub(s, idx[0], idx[1])),
        Value::Strings(v) => Value::Strings(v[idx[0]..idx[1]].to_vec()),
        _ => Value::Nil,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(s: &[u8]) -> String {
        let mut out = Vec::new();
        js_escape(&mut out, s);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn html(s: &[u8]) -> String {
        let mut out = Vec::new();
        html_escape(&mut out, s);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn js_escaping_table() {
        // Go's template.JSEscapeString, case by case.
        let table: &[(&[u8], &str)] = &[
            (b"plain text 123", "plain text 123"),
            (b"\\", "\\\\"),
            (b"'", "\\'"),
            (b"\"", "\\\""),
            (b"<", "\\u003C"),
            (b">", "\\u003E"),
            (b"&", "\\u0026"),
            (b"=", "\\u003D"),
            (
                b"\x00\x01\t\n\r\x1f",
                "\\u0000\\u0001\\u0009\\u000A\\u000D\\u001F",
            ),
            (b"\x7f", "\x7f"),
            (b"/?#%+;:@$,", "/?#%+;:@$,"),
            ("é☺日本".as_bytes(), "é☺日本"),
            (
                "\u{a0}\u{ad}\u{2028}\u{feff}".as_bytes(),
                "\\u00A0\\u00AD\\u2028\\uFEFF",
            ),
            ("\u{e0001}".as_bytes(), "\\uE0001"),
            (b"\xff", "\u{fffd}"), // the raw byte passes; lossy display shows U+FFFD
        ];
        for (input, want) in table {
            assert_eq!(js(input), *want, "js({input:?})");
        }
        let mut out = Vec::new();
        js_escape(&mut out, b"a\xffb");
        assert_eq!(out, b"a\xffb");
    }

    #[test]
    fn escapers_return_their_input_when_nothing_changes() {
        for f in [Builtin::Js, Builtin::Html, Builtin::Urlquery] {
            let v = call(f, vec![Value::str(b"plain-text_1")], "").unwrap();
            assert!(
                matches!(v, Value::Str(Cow::Borrowed(s)) if s == b"plain-text_1"),
                "{f:?}"
            );
        }
        let v = call(Builtin::Js, vec![Value::str(b"a=b")], "").unwrap();
        assert!(matches!(&v, Value::Str(Cow::Owned(o)) if o == b"a\\u003Db"));
        let v = call(Builtin::Urlquery, vec![Value::str(b"a b")], "").unwrap();
        assert!(matches!(&v, Value::Str(Cow::Owned(o)) if o == b"a+b"));
        let v = call(Builtin::Js, vec![Value::int(1), Value::str(b"<")], "").unwrap();
        assert!(matches!(&v, Value::Str(Cow::Owned(o)) if o == b"1\\u003C"));
    }

    #[test]
    fn html_escaping_table() {
        assert_eq!(
            html(b"<a href=\"x\">'&'</a>"),
            "&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(html(b"a\x00b"), "a\u{fffd}b");
        assert_eq!(html("é=é".as_bytes()), "é=é");
    }

    #[test]
    fn comparisons_follow_go_kinds() {
        let i = Value::int;
        let s = |x: &'static str| Value::str(x.as_bytes());
        assert_eq!(eq(&i(200), &[i(200)]), Ok(true));
        assert_eq!(eq(&i(1), &[i(2), i(3), i(1)]), Ok(true));
        assert_eq!(eq(&s("GET"), &[s("POST")]), Ok(false));
        assert_eq!(eq(&Value::Int(200, IntType::Int64), &[i(200)]), Ok(true));
        assert_eq!(eq(&Value::Int(7, IntType::Uint8), &[i(7)]), Ok(true));
        assert_eq!(
            eq(&i(1), &[Value::Float(1.0)]),
            Err("incompatible types for comparison: int and float64".into())
        );
        assert_eq!(eq(&Value::Nil, &[s("x")]), Ok(false));
        assert_eq!(eq(&Value::Nil, &[Value::Nil]), Ok(true));
        assert_eq!(
            eq(&i(1), &[]),
            Err("missing argument for comparison".into())
        );
        assert_eq!(lt(&s("a"), &s("b")), Ok(true));
        assert_eq!(lt(&i(-1), &Value::Int(0, IntType::Uint8)), Ok(true));
        assert_eq!(
            lt(&Value::Bool(true), &Value::Bool(false)),
            Err("invalid type for comparison".into())
        );
        assert_eq!(le(&Value::Float(0.5), &Value::Float(0.5)), Ok(true));
        assert_eq!(
            lt(&Value::Nil, &i(1)),
            Err("invalid type for comparison".into())
        );
    }

    #[test]
    fn index_slice_len() {
        let s = Value::str(b"hello");
        assert_eq!(
            format!("{:?}", index(&s, &[Value::int(1)]).unwrap()),
            "Int(101, uint8)"
        );
        assert_eq!(
            index(&s, &[Value::int(5)]).unwrap_err(),
            "reflect: string index out of range"
        );
        assert_eq!(
            index(&s, &[Value::int(6)]).unwrap_err(),
            "index out of range: 6"
        );
        assert_eq!(
            index(&s, &[Value::str(b"x")]).unwrap_err(),
            "cannot index slice/array with type string"
        );
        assert_eq!(index(&Value::Nil, &[]).unwrap_err(), "index of untyped nil");
        assert_eq!(
            index(&Value::int(3), &[Value::int(0)]).unwrap_err(),
            "can't index item of type int"
        );
        let list = Value::Strings(vec![Cow::Borrowed(&b"a"[..]), Cow::Borrowed(&b"b"[..])]);
        assert_eq!(
            format!("{:?}", index(&list, &[Value::int(1)]).unwrap()),
            "Str(\"b\")"
        );
        assert_eq!(
            format!("{:?}", slice(&s, &[Value::int(1), Value::int(3)]).unwrap()),
            "Str(\"el\")"
        );
        assert_eq!(
            format!("{:?}", slice(&list, &[Value::int(1)]).unwrap()),
            "Strings([\"b\"])"
        );
        assert_eq!(
            slice(&s, &[Value::int(3), Value::int(1)]).unwrap_err(),
            "invalid slice index: 3 > 1"
        );
        assert_eq!(
            slice(&s, &[Value::int(0), Value::int(1), Value::int(2)]).unwrap_err(),
            "cannot 3-index slice a string"
        );
        assert_eq!(length(&s), Ok(5));
        assert_eq!(length(&list), Ok(2));
        assert_eq!(length(&Value::int(1)), Err("len of type int".into()));
    }
}
