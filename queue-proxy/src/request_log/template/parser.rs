//! The parser: Go's `text/template/parse/parse.go`, over the tokens of [`super::lexer`].
//!
//! Same grammar and the same error messages (`template: NAME:LINE: MSG`), so an operator's
//! broken template is reported at start-up as Go would report it: `missing value for
//! command` for `{{}}`, `unexpected "}" in operand`, `function "x" not defined`, `undefined
//! variable "$x"`, `unexpected EOF` for an `{{if}}` without `{{end}}`, and so on.
//!
//! `{{define}}`, `{{template}}` and `{{block}}` (named sub-templates) and complex or
//! hexadecimal-float literals are refused with an error naming them: a request log is one
//! template, and an engine that half-supported them would print something Go would not.

use std::fmt;

use super::funcs::is_builtin;
use super::lexer::{Item, Kind, lex};
use super::node::{Arg, Branch, BranchKind, Command, List, Node, Number, Pipe};

/// A template that does not parse. Displays as Go's error does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template: {name}:{line}: {msg}")]
pub struct ParseError {
    /// The template's name.
    pub name: String,
    /// 1-based line of the offending token.
    pub line: usize,
    /// Go's message.
    pub msg: String,
}

/// What [`Parser::text_or_action`] found.
enum Parsed {
    Node(Node),
    /// `{{end}}`.
    End,
    /// `{{else}}`, or the `else` of `{{else if …}}` / `{{else with …}}`.
    Else,
}

type Result<T> = std::result::Result<T, ParseError>;

struct Parser<'p> {
    name: &'p str,
    items: Vec<Item>,
    idx: usize,
    furthest: usize,
    vars: Vec<String>,
    range_depth: usize,
    action_line: usize,
}

/// Parses `text` as the template `name`.
pub(super) fn parse(name: &str, text: &str) -> Result<List> {
    let mut p = Parser {
        name,
        items: lex(text),
        idx: 0,
        furthest: 0,
        vars: vec!["$".to_owned()],
        range_depth: 0,
        action_line: 0,
    };
    let mut root = Vec::new();
    while p.peek().kind != Kind::Eof {
        match p.text_or_action()? {
            Parsed::Node(n) => root.push(n),
            Parsed::End => return Err(p.error("unexpected {{end}}".into())),
            Parsed::Else => return Err(p.error("unexpected {{else}}".into())),
        }
    }
    Ok(root)
}

impl Parser<'_> {
    // Token access. The token list always ends with EOF or an error, which repeat forever.

    fn next(&mut self) -> Item {
        let i = self.idx.min(self.items.len() - 1);
        self.idx = i + 1;
        self.furthest = self.furthest.max(i);
        self.items[i].clone()
    }

    fn backup(&mut self) {
        self.idx -= 1;
    }

    fn peek(&mut self) -> Item {
        let t = self.next();
        self.backup();
        t
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let t = self.next();
            if t.kind != Kind::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn expect(&mut self, kind: Kind, context: &str) -> Result<Item> {
        let t = self.next_non_space();
        if t.kind != kind {
            return Err(self.unexpected(&t, context));
        }
        Ok(t)
    }

    // Errors.

    fn error(&self, msg: String) -> ParseError {
        let line = self.items[self.furthest.min(self.items.len() - 1)].line;
        ParseError {
            name: self.name.to_owned(),
            line,
            msg,
        }
    }

    fn unexpected(&self, t: &Item, context: &str) -> ParseError {
        if t.kind == Kind::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != t.line {
                extra = format!(" in action started at {}:{}", self.name, self.action_line);
                if t.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_owned();
                }
            }
            return self.error(format!("{t}{extra}"));
        }
        self.error(format!("unexpected {t} in {context}"))
    }

    fn unsupported(&self, what: &str) -> ParseError {
        self.error(format!(
            "{what} is not supported by this request-log template engine"
        ))
    }

    // Grammar.

    fn text_or_action(&mut self) -> Result<Parsed> {
        let t = self.next_non_space();
        match t.kind {
            Kind::Text => Ok(Parsed::Node(Node::Text(t.val.into_boxed_str()))),
            Kind::LeftDelim => {
                self.action_line = t.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => Err(self.unexpected(&t, "input")),
        }
    }

    fn action(&mut self) -> Result<Parsed> {
        let t = self.next_non_space();
        match t.kind {
            Kind::Block => Err(self.unsupported("{{block}}")),
            Kind::Define => Err(self.unsupported("{{define}}")),
            Kind::Template => Err(self.unsupported("{{template}}")),
            Kind::Break | Kind::Continue => {
                let is_break = t.kind == Kind::Break;
                let context = if is_break {
                    "{{break}}"
                } else {
                    "{{continue}}"
                };
                let end = self.next_non_space();
                if end.kind != Kind::RightDelim {
                    return Err(self.unexpected(&end, context));
                }
                if self.range_depth == 0 {
                    return Err(self.error(format!("{context} outside {{{{range}}}}")));
                }
                Ok(Parsed::Node(if is_break {
                    Node::Break
                } else {
                    Node::Continue
                }))
            }
            Kind::Else => {
                // "{{else if …}}" and "{{else with …}}" leave the keyword for parse_control.
                let peek = self.peek_non_space();
                if !matches!(peek.kind, Kind::If | Kind::With) {
                    self.expect(Kind::RightDelim, "else")?;
                }
                Ok(Parsed::Else)
            }
            Kind::End => {
                self.expect(Kind::RightDelim, "end")?;
                Ok(Parsed::End)
            }
            Kind::If => Ok(Parsed::Node(self.control(BranchKind::If)?)),
            Kind::With => Ok(Parsed::Node(self.control(BranchKind::With)?)),
            Kind::Range => Ok(Parsed::Node(self.control(BranchKind::Range)?)),
            _ => {
                self.backup();
                let pipe = self.pipeline("command", Kind::RightDelim)?;
                Ok(Parsed::Node(Node::Action(pipe)))
            }
        }
    }

    /// Go's `parseControl` for `if`, `with` and `range`.
    fn control(&mut self, kind: BranchKind) -> Result<Node> {
        let context = match kind {
            BranchKind::If => "if",
            BranchKind::With => "with",
            BranchKind::Range => "range",
        };
        let vars_mark = self.vars.len();
        let pipe = self.pipeline(context, Kind::RightDelim)?;
        if kind == BranchKind::Range {
            self.range_depth += 1;
        }
        let (list, next) = self.item_list()?;
        if kind == BranchKind::Range {
            self.range_depth -= 1;
        }
        let else_list = match next {
            Parsed::Else => {
                let peek = self.peek().kind;
                if kind == BranchKind::If && peek == Kind::If {
                    // {{if a}}_{{else if b}}_{{end}} is {{if a}}_{{else}}{{if b}}_{{end}}{{end}}.
                    self.next();
                    Some(vec![self.control(BranchKind::If)?])
                } else if kind == BranchKind::With && peek == Kind::With {
                    self.next();
                    Some(vec![self.control(BranchKind::With)?])
                } else {
                    let (else_list, next) = self.item_list()?;
                    if !matches!(next, Parsed::End) {
                        return Err(self.error("expected end; found {{else}}".into()));
                    }
                    Some(else_list)
                }
            }
            _ => None,
        };
        self.vars.truncate(vars_mark);
        Ok(Node::Branch(Branch {
            kind,
            pipe,
            list,
            else_list,
        }))
    }

    /// Nodes up to the next `{{end}}` or `{{else}}`, which is returned too.
    fn item_list(&mut self) -> Result<(List, Parsed)> {
        let mut list = Vec::new();
        while self.peek_non_space().kind != Kind::Eof {
            match self.text_or_action()? {
                Parsed::Node(n) => list.push(n),
                end_or_else => return Ok((list, end_or_else)),
            }
        }
        Err(self.error("unexpected EOF".into()))
    }

    fn pipeline(&mut self, context: &str, end: Kind) -> Result<Pipe> {
        let start = self.peek_non_space();
        let mut pipe = Pipe {
            pos: start.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        // Declarations or assignments: `$x :=`, `$x =`, `$i, $e :=`.
        loop {
            let v = self.peek_non_space();
            if v.kind != Kind::Variable {
                break;
            }
            let v_idx = self.idx;
            self.next_non_space();
            let next = self.peek_non_space();
            match next.kind {
                Kind::Assign | Kind::Declare => {
                    pipe.is_assign = next.kind == Kind::Assign;
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                }
                Kind::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().kind {
                            Kind::Variable | Kind::RightDelim | Kind::RightParen => continue,
                            _ => {
                                return Err(
                                    self.error("range can only initialize variables".into())
                                );
                            }
                        }
                    }
                    return Err(self.error(format!("too many declarations in {context}")));
                }
                _ => self.idx = v_idx,
            }
            break;
        }
        loop {
            let t = self.next_non_space();
            if t.kind == end {
                self.check_pipeline(&pipe, context)?;
                return Ok(pipe);
            }
            match t.kind {
                Kind::Bool
                | Kind::CharConstant
                | Kind::Complex
                | Kind::Dot
                | Kind::Field
                | Kind::Identifier
                | Kind::Number
                | Kind::Nil
                | Kind::RawString
                | Kind::String
                | Kind::Variable
                | Kind::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&t, context)),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> Result<()> {
        if pipe.cmds.is_empty() {
            return Err(self.error(format!("missing value for {context}")));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0],
                Arg::Bool { .. }
                    | Arg::Dot { .. }
                    | Arg::Nil { .. }
                    | Arg::Number { .. }
                    | Arg::String { .. }
            ) {
                return Err(self.error(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> Result<Command> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(operand) = self.operand()? {
                args.push(operand);
            }
            let t = self.next();
            match t.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RightParen => self.backup(),
                Kind::Pipe => {}
                _ => return Err(self.unexpected(&t, "operand")),
            }
            break;
        }
        if args.is_empty() {
            return Err(self.error("empty command".into()));
        }
        Ok(Command { pos, args })
    }

    fn operand(&mut self) -> Result<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Kind::Field {
            return Ok(Some(node));
        }
        let pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().kind == Kind::Field {
            let t = self.next();
            fields.push(t.val[1..].to_owned());
        }
        Ok(Some(match node {
            Arg::Field { mut idents, .. } => {
                idents.extend(fields);
                Arg::Field { pos, idents }
            }
            Arg::Variable { mut idents, .. } => {
                idents.extend(fields);
                Arg::Variable { pos, idents }
            }
            Arg::Bool { .. }
            | Arg::String { .. }
            | Arg::Number { .. }
            | Arg::Nil { .. }
            | Arg::Dot { .. } => {
                let mut q = Vec::new();
                crate::request_log::gofmt::append_quote(&mut q, node.to_string().as_bytes(), false);
                return Err(self.error(format!(
                    "unexpected . after term {}",
                    String::from_utf8_lossy(&q)
                )));
            }
            other => Arg::Chain {
                pos,
                node: Box::new(other),
                fields,
            },
        }))
    }

    fn term(&mut self) -> Result<Option<Arg>> {
        let t = self.next_non_space();
        let pos = t.pos;
        Ok(Some(match t.kind {
            Kind::Identifier => {
                if !is_builtin(&t.val) {
                    return Err(self.error(format!("function {:?} not defined", t.val)));
                }
                Arg::Identifier { pos, name: t.val }
            }
            Kind::Dot => Arg::Dot { pos },
            Kind::Nil => Arg::Nil { pos },
            Kind::Variable => {
                if !self.vars.contains(&t.val) {
                    return Err(self.error(format!("undefined variable {:?}", t.val)));
                }
                Arg::Variable {
                    pos,
                    idents: vec![t.val],
                }
            }
            Kind::Field => Arg::Field {
                pos,
                idents: vec![t.val[1..].to_owned()],
            },
            Kind::Bool => Arg::Bool {
                pos,
                value: t.val == "true",
            },
            Kind::CharConstant | Kind::Complex | Kind::Number => {
                let number = self.number(&t)?;
                Arg::Number { pos, number }
            }
            Kind::LeftParen => Arg::Pipe(Box::new(
                self.pipeline("parenthesized pipeline", Kind::RightParen)?,
            )),
            Kind::String | Kind::RawString => match unquote(&t.val) {
                Some(value) => Arg::String {
                    pos,
                    quoted: t.val,
                    value,
                },
                None => return Err(self.error("invalid syntax".into())),
            },
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }

    /// Go's `newNumber`: every interpretation of the literal that fits.
    fn number(&self, t: &Item) -> Result<Number> {
        let text = t.val.as_str();
        let mut n = Number {
            text: text.to_owned(),
            int: None,
            uint: None,
            float: None,
        };
        if t.kind == Kind::CharConstant {
            let inner = &text.as_bytes()[1..];
            let Some((r, tail)) = unquote_char(inner, b'\'') else {
                return Err(self.error("invalid syntax".into()));
            };
            if tail != b"'" {
                return Err(self.error(format!("malformed character constant: {text}")));
            }
            n.int = Some(i64::from(r));
            n.uint = Some(u64::from(r));
            n.float = Some(f64::from(r));
            return Ok(n);
        }
        if t.kind == Kind::Complex || text.ends_with('i') {
            return Err(self.unsupported("a complex constant"));
        }
        n.uint = parse_uint(text);
        n.int = parse_int(text);
        if n.int == Some(0) {
            n.uint = Some(n.uint.unwrap_or(0));
        }
        if let Some(i) = n.int {
            n.float = Some(i as f64);
        } else if let Some(u) = n.uint {
            n.float = Some(u as f64);
        } else if let Some(f) = parse_float(text) {
            if !text.contains(['.', 'e', 'E', 'p', 'P']) {
                return Err(self.error(format!("integer overflow: {text:?}")));
            }
            n.float = Some(f);
            if f.trunc() == f && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
            {
                n.int = Some(f as i64);
            }
            if f.trunc() == f && (0.0..1.844_674_407_370_955_2e19).contains(&f) {
                n.uint = Some(f as u64);
            }
        }
        if n.int.is_none() && n.uint.is_none() && n.float.is_none() {
            return Err(self.error(format!("illegal number syntax: {text:?}")));
        }
        Ok(n)
    }
}

impl fmt::Debug for Parser<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parser").field("idx", &self.idx).finish()
    }
}

/// Go's `underscoreOK`: underscores only between digits (or after a base prefix).
fn underscore_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    for &c in &s[i..] {
        if c.is_ascii_digit() || hex && c.is_ascii_hexdigit() {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// Go's `strconv.ParseUint(s, 0, 64)`.
fn parse_uint(s: &str) -> Option<u64> {
    if s.starts_with(['+', '-']) || !underscore_ok(s) {
        return None;
    }
    let clean = s.replace('_', "");
    let b = clean.as_bytes();
    let (digits, radix) = if b.len() > 2 && b[0] == b'0' {
        match b[1].to_ascii_lowercase() {
            b'x' => (&clean[2..], 16),
            b'o' => (&clean[2..], 8),
            b'b' => (&clean[2..], 2),
            _ => (&clean[1..], 8),
        }
    } else if b.len() == 2 && b[0] == b'0' && b[1].is_ascii_digit() {
        (&clean[1..], 8)
    } else {
        (&clean[..], 10)
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let u = parse_uint(body)?;
    if neg {
        if u <= 1 << 63 {
            Some((u as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(u).ok()
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal literals (hexadecimal floats are refused).
fn parse_float(s: &str) -> Option<f64> {
    if !underscore_ok(s) {
        return None;
    }
    let clean = s.replace('_', "");
    let body = clean.trim_start_matches(['+', '-']);
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        || body.starts_with("0x")
        || body.starts_with("0X")
    {
        return None;
    }
    clean.parse().ok()
}

/// Go's `strconv.UnquoteChar`: one (possibly escaped) character of a quoted literal, as a
/// rune value, and the rest. `\x` and octal escapes give a byte value.
fn unquote_char(s: &[u8], quote: u8) -> Option<(u32, &[u8])> {
    let c = *s.first()?;
    if c == quote && (quote == b'\'' || quote == b'"') {
        return None;
    }
    if c >= 0x80 {
        let (r, w) = crate::request_log::gofmt::decode_rune(s);
        return Some((r.map_or(0xfffd, u32::from), &s[w..]));
    }
    if c != b'\\' {
        return Some((u32::from(c), &s[1..]));
    }
    let e = *s.get(1)?;
    let rest = &s[2..];
    let simple = |v: u8| Some((u32::from(v), rest));
    match e {
        b'a' => simple(0x07),
        b'b' => simple(0x08),
        b'f' => simple(0x0c),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(0x0b),
        b'\\' => simple(b'\\'),
        b'\'' | b'"' if e == quote => simple(e),
        b'x' | b'u' | b'U' => {
            let n = match e {
                b'x' => 2,
                b'u' => 4,
                _ => 8,
            };
            let hex = rest.get(..n)?;
            let mut v = 0u32;
            for &h in hex {
                v = v << 4 | char::from(h).to_digit(16)?;
            }
            if e != b'x' && char::from_u32(v).is_none() {
                return None;
            }
            Some((v, &rest[n..]))
        }
        b'0'..=b'7' => {
            let oct = rest.get(..2)?;
            let mut v = u32::from(e - b'0');
            for &o in oct {
                if !(b'0'..=b'7').contains(&o) {
                    return None;
                }
                v = v << 3 | u32::from(o - b'0');
            }
            if v > 255 {
                return None;
            }
            Some((v, &rest[2..]))
        }
        _ => None,
    }
}

/// Go's `strconv.Unquote` for `"…"` and `` `…` `` literals; `None` is Go's `ErrSyntax`.
fn unquote(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() < 2 || b[0] != b[b.len() - 1] {
        return None;
    }
    let body = &b[1..b.len() - 1];
    match b[0] {
        b'`' => {
            if body.contains(&b'`') {
                return None;
            }
            Some(body.iter().copied().filter(|&c| c != b'\r').collect())
        }
        b'"' => {
            if body.contains(&b'\n') {
                return None;
            }
            let mut out = Vec::with_capacity(body.len());
            let mut rest = body;
            while !rest.is_empty() {
                let multibyte =
                    rest[0] >= 0x80 || rest.starts_with(b"\\u") || rest.starts_with(b"\\U");
                let (v, tail) = unquote_char(rest, b'"')?;
                if v < 0x80 || !multibyte {
                    out.push(v as u8);
                } else if rest[0] >= 0x80 {
                    // Copy the source bytes: they were valid UTF-8 (the template is a str).
                    out.extend_from_slice(&rest[..rest.len() - tail.len()]);
                } else {
                    let c = char::from_u32(v)?;
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                rest = tail;
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse("t", text).unwrap_err().to_string()
    }

    fn ok(text: &str) -> List {
        parse("t", text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn parse_errors_match_go() {
        assert_eq!(err("{{}}"), "template: t:1: missing value for command");
        assert_eq!(err("{{.X}"), "template: t:1: unexpected \"}\" in operand");
        assert_eq!(err("{{.X"), "template: t:1: unclosed action");
        assert_eq!(err("x\n{{if .X}}"), "template: t:2: unexpected EOF");
        assert_eq!(err("{{end}}"), "template: t:1: unexpected {{end}}");
        assert_eq!(err("{{else}}"), "template: t:1: unexpected {{else}}");
        assert_eq!(
            err("{{foo .X}}"),
            "template: t:1: function \"foo\" not defined"
        );
        assert_eq!(err("{{$x}}"), "template: t:1: undefined variable \"$x\"");
        assert_eq!(
            err("{{if 1}}{{$x := 1}}{{end}}{{$x}}"),
            "template: t:1: undefined variable \"$x\""
        );
        assert_eq!(
            err("{{.X | 3}}"),
            "template: t:1: non executable command in pipeline stage 2"
        );
        assert_eq!(
            err("{{break}}"),
            "template: t:1: {{break}} outside {{range}}"
        );
        assert_eq!(
            err("{{\"a\".X}}"),
            "template: t:1: unexpected . after term \"\\\"a\\\"\""
        );
        assert_eq!(err("{{\"\\q\"}}"), "template: t:1: invalid syntax");
        assert_eq!(
            err("{{99999999999999999999}}"),
            "template: t:1: integer overflow: \"99999999999999999999\""
        );
        assert_eq!(
            err("{{'ab'}}"),
            "template: t:1: malformed character constant: 'ab'"
        );
        assert_eq!(
            err("{{if .X}}{{else}}{{else}}{{end}}"),
            "template: t:1: expected end; found {{else}}"
        );
        assert_eq!(
            err("{{range $i, 3}}{{end}}"),
            "template: t:1: range can only initialize variables"
        );
        assert_eq!(
            err("{{with $x, $y := 3}}{{end}}"),
            "template: t:1: too many declarations in with"
        );
        assert_eq!(err("{{(.X}}"), "template: t:1: unclosed left paren");
        assert!(err("{{define \"x\"}}{{end}}").contains("{{define}} is not supported"));
        assert!(err("{{template \"x\"}}").contains("{{template}} is not supported"));
        assert!(err("{{1+2i}}").contains("complex constant is not supported"));
    }

    #[test]
    fn fields_chains_and_positions() {
        let root = ok("ab{{.Request.Header.Get \"X\" | js}}");
        let Node::Action(pipe) = &root[1] else {
            panic!()
        };
        assert_eq!(pipe.to_string(), ".Request.Header.Get \"X\" | js");
        let Arg::Field { pos, idents } = &pipe.cmds[0].args[0] else {
            panic!()
        };
        // Go gives a field chain the position of its second element.
        assert_eq!(
            (*pos, idents.join(".")),
            (12, "Request.Header.Get".to_owned())
        );
        let root = ok("{{$x := (.A).B 1 | printf \"%v\"}}");
        let Node::Action(pipe) = &root[0] else {
            panic!()
        };
        assert!(matches!(pipe.cmds[0].args[0], Arg::Chain { .. }));
        assert_eq!(pipe.to_string(), "$x := (.A).B 1 | printf \"%v\"");
    }

    #[test]
    fn control_structures() {
        let root = ok("{{if .A}}a{{else if .B}}b{{else}}c{{end}}");
        let Node::Branch(b) = &root[0] else { panic!() };
        assert_eq!(b.kind, BranchKind::If);
        let else_list = b.else_list.as_ref().unwrap();
        let Node::Branch(inner) = &else_list[0] else {
            panic!()
        };
        assert_eq!(inner.pipe.to_string(), ".B");
        assert!(inner.else_list.is_some());

        let root = ok("{{range $i, $v := .A}}{{$i}}{{break}}{{else}}none{{end}}");
        let Node::Branch(b) = &root[0] else { panic!() };
        assert_eq!(b.pipe.decl, ["$i", "$v"]);
        assert!(matches!(b.list[1], Node::Break));
        ok("{{with $x := .A}}{{$x}}{{else with .B}}{{.}}{{end}}");
        ok("{{/* c */}}{{- /* c */ -}}{{$ := .}}");
    }

    #[test]
    fn literals() {
        let num = |s: &str| {
            let root = ok(&format!("{{{{{s}}}}}"));
            let Node::Action(p) = &root[0] else { panic!() };
            let Arg::Number { number, .. } = &p.cmds[0].args[0] else {
                panic!()
            };
            (number.int, number.uint, number.float)
        };
        assert_eq!(num("42"), (Some(42), Some(42), Some(42.0)));
        assert_eq!(num("-7"), (Some(-7), None, Some(-7.0)));
        assert_eq!(num("0x1F"), (Some(31), Some(31), Some(31.0)));
        assert_eq!(num("017"), (Some(15), Some(15), Some(15.0)));
        assert_eq!(num("1_000"), (Some(1000), Some(1000), Some(1000.0)));
        assert_eq!(num("1.5"), (None, None, Some(1.5)));
        assert_eq!(num("2.0"), (Some(2), Some(2), Some(2.0)));
        assert_eq!(num("1e3"), (Some(1000), Some(1000), Some(1000.0)));
        assert_eq!(num("'a'"), (Some(97), Some(97), Some(97.0)));
        assert_eq!(num("'\\n'"), (Some(10), Some(10), Some(10.0)));

        assert_eq!(
            unquote(r#""a\tb\x41\101\u00e9\"""#).unwrap(),
            "a\tbAAé\"".as_bytes()
        );
        assert_eq!(unquote(r#""\xff""#).unwrap(), b"\xff");
        assert_eq!(unquote("`a\\n\r`").unwrap(), b"a\\n");
        assert!(unquote(r#""\'""#).is_none());
        assert!(unquote(r#""\400""#).is_none());
    }
}
