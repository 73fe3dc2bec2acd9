//! The tokenizer: Go's `text/template/parse/lex.go` (Go 1.22+ behaviour).
//!
//! Mirrored exactly, because it decides what a template means:
//!
//! - Text runs until `{{`. `{{- ` (a `-` and one of space, tab, CR, LF) trims all white space
//!   before the action, ` -}}` all white space after it. `{{-3}}` is the number -3.
//! - `{{/* … */}}` is a comment (also with trim markers); it must close right before `}}`.
//! - Inside an action: runs of space/tab/CR/LF are one space token (newlines are allowed);
//!   `|`, `(`, `)`, `:=`, `=`, `,`; `"…"` and `` `…` `` strings; `'c'` character constants;
//!   numbers (decimal, `0x`/`0o`/`0b`, `_` separators, exponents, a trailing `i` for
//!   imaginary); `.Field`, `$var`, identifiers and the keywords `block break continue define
//!   else end if nil range template with`, `true`/`false` and `.`.
//! - An identifier, field or variable must end at a terminator: space, `.`, `,`, `|`, `:`,
//!   `(`, `)`, end of input or the closing `}}`.
//!
//! The whole input is tokenized up front (templates are parsed once, at start-up); the
//! token list ends at the first error or at EOF.

use crate::request_log::gounicode::is_print;

/// Token kinds (Go's `itemType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Error,
    Bool,
    Char,
    CharConstant,
    Complex,
    Assign,
    Declare,
    Eof,
    Field,
    Identifier,
    LeftDelim,
    LeftParen,
    Number,
    Pipe,
    RawString,
    RightDelim,
    RightParen,
    Space,
    String,
    Text,
    Variable,
    // Keywords.
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

impl Kind {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            Kind::Block
                | Kind::Break
                | Kind::Continue
                | Kind::Dot
                | Kind::Define
                | Kind::Else
                | Kind::End
                | Kind::If
                | Kind::Nil
                | Kind::Range
                | Kind::Template
                | Kind::With
        )
    }
}

/// One token. For [`Kind::Error`], `val` is the message; otherwise the source text.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Item {
    pub kind: Kind,
    pub pos: usize,
    pub val: String,
    pub line: usize,
}

impl std::fmt::Display for Item {
    /// Go's `item.String()`, as parse errors quote tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            Kind::Eof => f.write_str("EOF"),
            Kind::Error => f.write_str(&self.val),
            k if k.is_keyword() => write!(f, "<{}>", self.val),
            _ => {
                let mut out = Vec::new();
                let v = self.val.as_bytes();
                if self.val.chars().count() > 10 {
                    let cut: String = self.val.chars().take(10).collect();
                    crate::request_log::gofmt::append_quote(&mut out, cut.as_bytes(), false);
                    out.extend_from_slice(b"...");
                } else {
                    crate::request_log::gofmt::append_quote(&mut out, v, false);
                }
                f.write_str(&String::from_utf8_lossy(&out))
            }
        }
    }
}

const LEFT_DELIM: &str = "{{";
const RIGHT_DELIM: &str = "}}";
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";
const TRIM_MARKER_LEN: usize = 2;

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

fn has_left_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(char::from(b[1]))
}

fn has_right_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(char::from(b[0])) && b[1] == b'-'
}

/// Go's `%#U`: `U+0041 'A'`, or just `U+0007` for an unprintable rune.
fn sharp_u(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{c}'", u32::from(c))
    } else {
        format!("U+{:04X}", u32::from(c))
    }
}

enum State {
    Text,
    LeftDelim,
    Comment,
    RightDelim,
    InsideAction,
    Space,
    Identifier,
    Field,
    Variable,
    Char,
    Number,
    Quote,
    RawQuote,
    Done,
}

struct Lexer<'s> {
    input: &'s str,
    pos: usize,
    start: usize,
    paren_depth: i32,
    items: Vec<Item>,
}

/// Tokenizes `input`; the result ends with an [`Kind::Eof`] or [`Kind::Error`] item.
pub(super) fn lex(input: &str) -> Vec<Item> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        paren_depth: 0,
        items: Vec::new(),
    };
    let mut state = State::Text;
    loop {
        state = match state {
            State::Text => l.lex_text(),
            State::LeftDelim => l.lex_left_delim(),
            State::Comment => l.lex_comment(),
            State::RightDelim => l.lex_right_delim(),
            State::InsideAction => l.lex_inside_action(),
            State::Space => l.lex_space(),
            State::Identifier => l.lex_identifier(),
            State::Field => l.lex_field_or_variable(Kind::Field),
            State::Variable => l.lex_variable(),
            State::Char => l.lex_char(),
            State::Number => l.lex_number(),
            State::Quote => l.lex_quote(),
            State::RawQuote => l.lex_raw_quote(),
            State::Done => return l.items,
        }
    }
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.input[self.pos..]
    }

    fn next(&mut self) -> Option<char> {
        let c = self.rest().chars().next()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    /// Steps back over `c`, the char just returned by `next`.
    fn backup(&mut self, c: Option<char>) {
        if let Some(c) = c {
            self.pos -= c.len_utf8();
        }
    }

    fn line_at(&self, pos: usize) -> usize {
        1 + self.input[..pos].bytes().filter(|&b| b == b'\n').count()
    }

    fn emit(&mut self, kind: Kind) -> State {
        let val = self.input[self.start..self.pos].to_owned();
        let line = self.line_at(self.start);
        self.items.push(Item {
            kind,
            pos: self.start,
            val,
            line,
        });
        self.start = self.pos;
        State::InsideAction
    }

    fn ignore(&mut self) {
        self.start = self.pos;
    }

    fn errorf(&mut self, msg: String) -> State {
        let line = self.line_at(self.start);
        self.items.push(Item {
            kind: Kind::Error,
            pos: self.start,
            val: msg,
            line,
        });
        State::Done
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.next();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    /// Whether the input is at `}}`, possibly preceded by a trim marker.
    fn at_right_delim(&self) -> (bool, bool) {
        let rest = self.rest();
        if has_right_trim_marker(rest) && rest[TRIM_MARKER_LEN..].starts_with(RIGHT_DELIM) {
            return (true, true);
        }
        (rest.starts_with(RIGHT_DELIM), false)
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(c) if is_space(c) => true,
            // '}' starts the right delimiter (Go checks its first rune only).
            Some('.' | ',' | '|' | ':' | ')' | '(' | '}') => true,
            Some(_) => false,
        }
    }

    fn lex_text(&mut self) -> State {
        if let Some(x) = self.rest().find(LEFT_DELIM) {
            if x > 0 {
                self.pos += x;
                let delim_end = self.pos + LEFT_DELIM.len();
                let trim = if has_left_trim_marker(&self.input[delim_end..]) {
                    let text = &self.input[self.start..self.pos];
                    text.len() - text.trim_end_matches(is_space).len()
                } else {
                    0
                };
                self.pos -= trim;
                if self.pos > self.start {
                    self.emit(Kind::Text);
                }
                self.pos += trim;
                self.ignore();
            }
            return State::LeftDelim;
        }
        self.pos = self.input.len();
        if self.pos > self.start {
            self.emit(Kind::Text);
        }
        self.emit(Kind::Eof);
        State::Done
    }

    fn lex_left_delim(&mut self) -> State {
        self.pos += LEFT_DELIM.len();
        let trim = has_left_trim_marker(self.rest());
        let after_marker = if trim { TRIM_MARKER_LEN } else { 0 };
        if self.input[self.pos + after_marker..].starts_with(LEFT_COMMENT) {
            self.pos += after_marker;
            self.ignore();
            return State::Comment;
        }
        self.emit(Kind::LeftDelim);
        self.pos += after_marker;
        self.ignore();
        self.paren_depth = 0;
        State::InsideAction
    }

    fn lex_comment(&mut self) -> State {
        self.pos += LEFT_COMMENT.len();
        let Some(x) = self.rest().find(RIGHT_COMMENT) else {
            return self.errorf("unclosed comment".into());
        };
        self.pos += x + RIGHT_COMMENT.len();
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.errorf("comment ends before closing delimiter".into());
        }
        if trim {
            self.pos += TRIM_MARKER_LEN;
        }
        self.pos += RIGHT_DELIM.len();
        if trim {
            let rest = self.rest();
            self.pos += rest.len() - rest.trim_start_matches(is_space).len();
        }
        self.ignore();
        State::Text
    }

    fn lex_right_delim(&mut self) -> State {
        let (_, trim) = self.at_right_delim();
        if trim {
            self.pos += TRIM_MARKER_LEN;
            self.ignore();
        }
        self.pos += RIGHT_DELIM.len();
        self.emit(Kind::RightDelim);
        if trim {
            let rest = self.rest();
            self.pos += rest.len() - rest.trim_start_matches(is_space).len();
            self.ignore();
        }
        State::Text
    }

    fn lex_inside_action(&mut self) -> State {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return State::RightDelim;
            }
            return self.errorf("unclosed left paren".into());
        }
        let c = self.next();
        match c {
            None => self.errorf("unclosed action".into()),
            Some(c) if is_space(c) => {
                self.backup(Some(c));
                State::Space
            }
            Some('=') => self.emit(Kind::Assign),
            Some(':') => {
                if self.next() != Some('=') {
                    return self.errorf("expected :=".into());
                }
                self.emit(Kind::Declare)
            }
            Some('|') => self.emit(Kind::Pipe),
            Some('"') => State::Quote,
            Some('`') => State::RawQuote,
            Some('$') => State::Variable,
            Some('\'') => State::Char,
            Some('.')
                if !self.peek().is_some_and(|d| d.is_ascii_digit()) && self.peek().is_some() =>
            {
                State::Field
            }
            Some(c @ ('.' | '+' | '-' | '0'..='9')) => {
                self.backup(Some(c));
                State::Number
            }
            Some(c) if is_alphanumeric(c) => {
                self.backup(Some(c));
                State::Identifier
            }
            Some('(') => {
                self.paren_depth += 1;
                self.emit(Kind::LeftParen)
            }
            Some(')') => {
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.errorf("unexpected right paren".into());
                }
                self.emit(Kind::RightParen)
            }
            Some(c) if c.is_ascii() && is_print(c) => self.emit(Kind::Char),
            Some(c) => self.errorf(format!("unrecognized character in action: {}", sharp_u(c))),
        }
    }

    fn lex_space(&mut self) -> State {
        let mut spaces = 0;
        while self.peek().is_some_and(is_space) {
            self.next();
            spaces += 1;
        }
        // A trim-marked closing delimiter starts with a space: leave it for RightDelim.
        let last = self.pos - 1;
        if has_right_trim_marker(&self.input[last..])
            && self.input[last + TRIM_MARKER_LEN..].starts_with(RIGHT_DELIM)
        {
            self.pos = last;
            if spaces == 1 {
                return State::RightDelim;
            }
        }
        self.emit(Kind::Space)
    }

    fn lex_identifier(&mut self) -> State {
        while self.peek().is_some_and(is_alphanumeric) {
            self.next();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or('\u{fffd}');
            return self.errorf(format!("bad character {}", sharp_u(c)));
        }
        let kind = match &self.input[self.start..self.pos] {
            "block" => Kind::Block,
            "break" => Kind::Break,
            "continue" => Kind::Continue,
            "define" => Kind::Define,
            "else" => Kind::Else,
            "end" => Kind::End,
            "if" => Kind::If,
            "range" => Kind::Range,
            "nil" => Kind::Nil,
            "template" => Kind::Template,
            "with" => Kind::With,
            "true" | "false" => Kind::Bool,
            _ => Kind::Identifier,
        };
        self.emit(kind)
    }

    fn lex_variable(&mut self) -> State {
        if self.at_terminator() {
            return self.emit(Kind::Variable);
        }
        self.lex_field_or_variable(Kind::Variable)
    }

    fn lex_field_or_variable(&mut self, kind: Kind) -> State {
        if self.at_terminator() {
            return self.emit(if kind == Kind::Variable {
                Kind::Variable
            } else {
                Kind::Dot
            });
        }
        while self.peek().is_some_and(is_alphanumeric) {
            self.next();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or('\u{fffd}');
            return self.errorf(format!("bad character {}", sharp_u(c)));
        }
        self.emit(kind)
    }

    fn lex_char(&mut self) -> State {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    Some('\n') | None => {
                        return self.errorf("unterminated character constant".into());
                    }
                    Some(_) => {}
                },
                Some('\n') | None => return self.errorf("unterminated character constant".into()),
                Some('\'') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::CharConstant)
    }

    fn lex_number(&mut self) -> State {
        if !self.scan_number() {
            let text = self.input[self.start..self.pos].to_owned();
            return self.errorf(format!("bad number syntax: {}", quote(&text)));
        }
        if matches!(self.peek(), Some('+' | '-')) {
            // Complex: 1+2i. No spaces, must end in 'i'.
            if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                let text = self.input[self.start..self.pos].to_owned();
                return self.errorf(format!("bad number syntax: {}", quote(&text)));
            }
            return self.emit(Kind::Complex);
        }
        self.emit(Kind::Number)
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 10 + 1 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 16 + 6 + 1 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek().is_some_and(is_alphanumeric) {
            self.next();
            return false;
        }
        true
    }

    fn lex_quote(&mut self) -> State {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    Some('\n') | None => return self.errorf("unterminated quoted string".into()),
                    Some(_) => {}
                },
                Some('\n') | None => return self.errorf("unterminated quoted string".into()),
                Some('"') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::String)
    }

    fn lex_raw_quote(&mut self) -> State {
        loop {
            match self.next() {
                None => return self.errorf("unterminated raw quoted string".into()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::RawString)
    }
}

/// `%q` of a template fragment, for error messages.
fn quote(s: &str) -> String {
    let mut out = Vec::new();
    crate::request_log::gofmt::append_quote(&mut out, s.as_bytes(), false);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<(Kind, String)> {
        lex(input).into_iter().map(|i| (i.kind, i.val)).collect()
    }

    fn k(kind: Kind, val: &str) -> (Kind, String) {
        (kind, val.to_owned())
    }

    #[test]
    fn text_actions_and_fields() {
        assert_eq!(
            kinds("a {{.Request.Header.Get \"X\" | js}} b"),
            [
                k(Kind::Text, "a "),
                k(Kind::LeftDelim, "{{"),
                k(Kind::Field, ".Request"),
                k(Kind::Field, ".Header"),
                k(Kind::Field, ".Get"),
                k(Kind::Space, " "),
                k(Kind::String, "\"X\""),
                k(Kind::Space, " "),
                k(Kind::Pipe, "|"),
                k(Kind::Space, " "),
                k(Kind::Identifier, "js"),
                k(Kind::RightDelim, "}}"),
                k(Kind::Text, " b"),
                k(Kind::Eof, ""),
            ]
        );
    }

    #[test]
    fn keywords_variables_numbers_and_punctuation() {
        assert_eq!(
            kinds("{{if $x := (len .) }}{{else}}{{end}}"),
            [
                k(Kind::LeftDelim, "{{"),
                k(Kind::If, "if"),
                k(Kind::Space, " "),
                k(Kind::Variable, "$x"),
                k(Kind::Space, " "),
                k(Kind::Declare, ":="),
                k(Kind::Space, " "),
                k(Kind::LeftParen, "("),
                k(Kind::Identifier, "len"),
                k(Kind::Space, " "),
                k(Kind::Dot, "."),
                k(Kind::RightParen, ")"),
                k(Kind::Space, " "),
                k(Kind::RightDelim, "}}"),
                k(Kind::LeftDelim, "{{"),
                k(Kind::Else, "else"),
                k(Kind::RightDelim, "}}"),
                k(Kind::LeftDelim, "{{"),
                k(Kind::End, "end"),
                k(Kind::RightDelim, "}}"),
                k(Kind::Eof, ""),
            ]
        );
        let nums: Vec<_> = lex("{{1 -2 3.5e-3 0x1F 1_000 'a' 1+2i true nil $}}")
            .into_iter()
            .filter(|i| i.kind != Kind::Space)
            .map(|i| (i.kind, i.val))
            .collect();
        assert_eq!(
            nums,
            [
                k(Kind::LeftDelim, "{{"),
                k(Kind::Number, "1"),
                k(Kind::Number, "-2"),
                k(Kind::Number, "3.5e-3"),
                k(Kind::Number, "0x1F"),
                k(Kind::Number, "1_000"),
                k(Kind::CharConstant, "'a'"),
                k(Kind::Complex, "1+2i"),
                k(Kind::Bool, "true"),
                k(Kind::Nil, "nil"),
                k(Kind::Variable, "$"),
                k(Kind::RightDelim, "}}"),
                k(Kind::Eof, ""),
            ]
        );
    }

    #[test]
    fn trim_markers_and_comments() {
        assert_eq!(
            kinds("a  \n{{- .X -}}\n\t b{{-3}}"),
            [
                k(Kind::Text, "a"),
                k(Kind::LeftDelim, "{{"),
                k(Kind::Field, ".X"),
                k(Kind::RightDelim, "}}"),
                k(Kind::Text, "b"),
                k(Kind::LeftDelim, "{{"),
                k(Kind::Number, "-3"),
                k(Kind::RightDelim, "}}"),
                k(Kind::Eof, ""),
            ]
        );
        assert_eq!(
            kinds("a {{/* c */}} b {{- /* c */ -}} c"),
            [
                k(Kind::Text, "a "),
                k(Kind::Text, " b"),
                k(Kind::Text, "c"),
                k(Kind::Eof, "")
            ]
        );
        // Newlines inside an action are spaces.
        assert_eq!(kinds("{{.A\n.B}}")[2], k(Kind::Space, "\n"),);
    }

    #[test]
    fn errors_read_like_go() {
        let last = |s: &str| lex(s).pop().unwrap();
        assert_eq!(last("{{.X").val, "unclosed action");
        assert_eq!(last("{{/* x").val, "unclosed comment");
        assert_eq!(
            last("{{/* x */ }}").val,
            "comment ends before closing delimiter"
        );
        assert_eq!(last("{{(.X}}").val, "unclosed left paren");
        assert_eq!(last("{{.X)}}").val, "unexpected right paren");
        assert_eq!(last("{{\"abc}}").val, "unterminated quoted string");
        assert_eq!(last("{{`abc}}").val, "unterminated raw quoted string");
        assert_eq!(last("{{3x}}").val, "bad number syntax: \"3x\"");
        assert_eq!(last("{{.X#}}").val, "bad character U+0023 '#'");
        assert_eq!(
            last("{{\u{7}}}").val,
            "unrecognized character in action: U+0007"
        );
        assert_eq!(last("{{: }}").val, "expected :=");
        let e = last("a\nb{{.X");
        assert_eq!((e.kind, e.line), (Kind::Error, 2));
    }

    #[test]
    fn item_display_quotes_like_go() {
        let item = |kind, val: &str| Item {
            kind,
            pos: 0,
            val: val.into(),
            line: 1,
        };
        assert_eq!(item(Kind::Eof, "").to_string(), "EOF");
        assert_eq!(item(Kind::End, "end").to_string(), "<end>");
        assert_eq!(item(Kind::Char, "}").to_string(), "\"}\"");
        assert_eq!(
            item(Kind::Text, "0123456789abc").to_string(),
            "\"0123456789\"..."
        );
    }
}
