//! The parts of Go's `net/url` a request log can reach: how a server parses the request
//! target into `*url.URL` (`url.ParseRequestURI`), what `URL.String()`, `EscapedPath()`,
//! `Hostname()`, `Port()`, `RequestURI()` and `Query()` return, and `url.QueryEscape` (the
//! `urlquery` template function).
//!
//! Go keeps `URL.Path` *decoded* (`/a%20b` → `/a b`) and remembers the original spelling in
//! `RawPath` only when re-escaping the path would not give it back; `String()` then prefers
//! the original. All of that is mirrored here, on bytes, because a template may print any of
//! these fields.

use std::borrow::Cow;

/// Which part of a URL is being escaped: Go's `encoding` modes that matter here.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    QueryComponent,
    Fragment,
}

/// Go's `shouldEscape`.
fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if mode == Mode::Host
        && matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => {
            return match mode {
                Mode::Path => c == b'?',
                Mode::QueryComponent => true,
                Mode::Fragment => false,
                Mode::Host => true,
            };
        }
        _ => {}
    }
    if mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*') {
        return false;
    }
    true
}

/// Go's `escape(s, mode)`: `%XX` (upper-case hex) for every byte that must be escaped; in
/// query components a space becomes `+`.
fn escape(s: &[u8], mode: Mode) -> Cow<'_, [u8]> {
    if !s.iter().any(|&c| should_escape(c, mode)) {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len() + 8);
    for &c in s {
        if c == b' ' && mode == Mode::QueryComponent {
            out.push(b'+');
        } else if should_escape(c, mode) {
            out.push(b'%');
            out.push(b"0123456789ABCDEF"[usize::from(c >> 4)]);
            out.push(b"0123456789ABCDEF"[usize::from(c & 0xf)]);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &[u8]) -> Cow<'_, [u8]> {
    escape(s, Mode::QueryComponent)
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Go's `unescape` for paths (`plus_is_space == false`) and query components (`true`);
/// `None` on a malformed `%` escape, where Go returns an error.
fn unescape(s: &[u8], plus_is_space: bool) -> Option<Cow<'_, [u8]>> {
    if !(s.contains(&b'%') || plus_is_space && s.contains(&b'+')) {
        return Some(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = unhex(*s.get(i + 1)?)?;
                let lo = unhex(*s.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(out))
}

/// Go's `validEncoded(s, encodePath)`.
fn valid_encoded_path(s: &[u8]) -> bool {
    s.iter().all(|&c| {
        matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'['
                | b']'
                | b'%'
        ) || !should_escape(c, Mode::Path)
    })
}

/// A parsed request target: the fields of Go's `url.URL` a server request can have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoUrl {
    /// `Scheme`, lower-cased (empty for origin-form targets).
    pub scheme: Vec<u8>,
    /// `Opaque` (a rootless path after a scheme).
    pub opaque: Vec<u8>,
    /// The raw `user:password` before `@`, when the target had one (Go's `User != nil`).
    pub user: Option<Vec<u8>>,
    /// `Host` (`host:port`), empty for origin-form targets.
    pub host: Vec<u8>,
    /// `Path`, decoded.
    pub path: Vec<u8>,
    /// `RawPath`: the original path, only when re-escaping `Path` would not reproduce it.
    pub raw_path: Vec<u8>,
    /// `OmitHost`: a scheme followed by `/` without an authority.
    pub omit_host: bool,
    /// `ForceQuery`: the target ended in a lone `?`.
    pub force_query: bool,
    /// `RawQuery`, without the `?`.
    pub raw_query: Vec<u8>,
}

impl GoUrl {
    /// Go's `url.ParseRequestURI`; `None` where Go returns an error (a Go server answers
    /// those requests 400 before any handler, so they never reach a request log).
    pub fn parse_request_uri(raw: &[u8]) -> Option<GoUrl> {
        if raw.is_empty() || raw.iter().any(|&c| c < 0x20 || c == 0x7f) {
            return None;
        }
        let mut url = GoUrl::default();
        if raw == b"*" {
            url.path = b"*".to_vec();
            return Some(url);
        }
        // getScheme: letters, then letters/digits/+-. up to a ':'.
        let mut rest = raw;
        for (i, &c) in raw.iter().enumerate() {
            match c {
                b'a'..=b'z' | b'A'..=b'Z' => {}
                b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
                b':' if i == 0 => return None,
                b':' => {
                    url.scheme = raw[..i].to_ascii_lowercase();
                    rest = &raw[i + 1..];
                    break;
                }
                _ => break,
            }
        }
        if rest.ends_with(b"?") && rest.iter().filter(|&&c| c == b'?').count() == 1 {
            url.force_query = true;
            rest = &rest[..rest.len() - 1];
        } else if let Some(q) = rest.iter().position(|&c| c == b'?') {
            url.raw_query = rest[q + 1..].to_vec();
            rest = &rest[..q];
        }
        if !rest.starts_with(b"/") {
            if !url.scheme.is_empty() {
                url.opaque = rest.to_vec();
                return Some(url);
            }
            return None;
        }
        if !url.scheme.is_empty() && rest.starts_with(b"//") {
            let authority_and_path = &rest[2..];
            let (authority, path) = match authority_and_path.iter().position(|&c| c == b'/') {
                Some(i) => authority_and_path.split_at(i),
                None => (authority_and_path, &b""[..]),
            };
            match authority.iter().rposition(|&c| c == b'@') {
                Some(at) => {
                    url.user = Some(authority[..at].to_vec());
                    url.host = authority[at + 1..].to_vec();
                }
                None => url.host = authority.to_vec(),
            }
            rest = path;
        } else if !url.scheme.is_empty() {
            url.omit_host = true;
        }
        // setPath.
        let path = unescape(rest, false)?;
        if escape(&path, Mode::Path) != rest {
            url.raw_path = rest.to_vec();
        }
        url.path = path.into_owned();
        Some(url)
    }

    /// A URL holding `raw` as its path and query, unparsed: for targets Go would have
    /// refused (a Go server answers them 400 before any handler runs).
    pub fn verbatim(raw: &[u8]) -> GoUrl {
        let (path, query) = match raw.iter().position(|&c| c == b'?') {
            Some(q) => (&raw[..q], &raw[q + 1..]),
            None => (raw, &b""[..]),
        };
        GoUrl {
            path: path.to_vec(),
            raw_query: query.to_vec(),
            ..GoUrl::default()
        }
    }

    /// Go's `URL.EscapedPath()`.
    pub fn escaped_path(&self) -> Cow<'_, [u8]> {
        if !self.raw_path.is_empty()
            && valid_encoded_path(&self.raw_path)
            && unescape(&self.raw_path, false).is_some_and(|p| *p == *self.path)
        {
            return Cow::Borrowed(&self.raw_path);
        }
        if self.path == b"*" {
            return Cow::Borrowed(&self.path);
        }
        escape(&self.path, Mode::Path)
    }

    /// Go's `URL.String()` (a request URL has no fragment).
    pub fn to_go_string(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.path.len() + self.raw_query.len() + 16);
        if !self.scheme.is_empty() {
            buf.extend_from_slice(&self.scheme);
            buf.push(b':');
        }
        if !self.opaque.is_empty() {
            buf.extend_from_slice(&self.opaque);
        } else {
            let has_authority =
                !self.scheme.is_empty() || !self.host.is_empty() || self.user.is_some();
            let omitted = self.omit_host && self.host.is_empty() && self.user.is_none();
            if has_authority && !omitted {
                if !self.host.is_empty() || !self.path.is_empty() || self.user.is_some() {
                    buf.extend_from_slice(b"//");
                }
                if let Some(user) = &self.user {
                    buf.extend_from_slice(user);
                    buf.push(b'@');
                }
                buf.extend_from_slice(&escape(&self.host, Mode::Host));
            }
            let path = self.escaped_path();
            if !path.is_empty() && path[0] != b'/' && !self.host.is_empty() {
                buf.push(b'/');
            }
            if buf.is_empty() {
                // RFC 3986 §4.2: a first segment with a colon would read as a scheme.
                let segment = path.split(|&c| c == b'/').next().unwrap_or(&[]);
                if segment.contains(&b':') {
                    buf.extend_from_slice(b"./");
                }
            }
            buf.extend_from_slice(&path);
        }
        if self.force_query || !self.raw_query.is_empty() {
            buf.push(b'?');
            buf.extend_from_slice(&self.raw_query);
        }
        buf
    }

    /// Go's `URL.RequestURI()`.
    pub fn request_uri(&self) -> Vec<u8> {
        let mut result = if self.opaque.is_empty() {
            let p = self.escaped_path();
            if p.is_empty() {
                b"/".to_vec()
            } else {
                p.into_owned()
            }
        } else if self.opaque.starts_with(b"//") {
            let mut r = self.scheme.clone();
            r.push(b':');
            r.extend_from_slice(&self.opaque);
            r
        } else {
            self.opaque.clone()
        };
        if self.force_query || !self.raw_query.is_empty() {
            result.push(b'?');
            result.extend_from_slice(&self.raw_query);
        }
        result
    }

    /// Go's `URL.Hostname()`: the host without port or IPv6 brackets.
    pub fn hostname(&self) -> &[u8] {
        let (host, _) = split_host_port(&self.host);
        host.strip_prefix(b"[")
            .and_then(|h| h.strip_suffix(b"]"))
            .unwrap_or(host)
    }

    /// Go's `URL.Port()`: the digits after the host's last colon, or empty.
    pub fn port(&self) -> &[u8] {
        split_host_port(&self.host).1
    }

    /// Go's `URL.Query()`: `url.ParseQuery(RawQuery)` without its error.
    pub fn query(&self) -> QueryValues {
        QueryValues::parse(&self.raw_query)
    }
}

/// Go's `splitHostPort` (the `URL` method, not `net.SplitHostPort`).
fn split_host_port(host: &[u8]) -> (&[u8], &[u8]) {
    let Some(colon) = host.iter().rposition(|&c| c == b':') else {
        return (host, b"");
    };
    let port = &host[colon + 1..];
    if !port.iter().all(u8::is_ascii_digit) {
        return (host, b"");
    }
    (&host[..colon], port)
}

/// Go's `url.Values` (`map[string][]string`), kept sorted by key as `fmt` prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryValues {
    entries: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl QueryValues {
    /// Go's `url.ParseQuery`, keeping what parsed and skipping what Go skips: pairs with a
    /// `;` in the key, and pairs that fail to unescape.
    pub fn parse(query: &[u8]) -> Self {
        let mut values = QueryValues::default();
        for pair in query.split(|&c| c == b'&') {
            if pair.is_empty() || pair.contains(&b';') {
                continue;
            }
            let (key, value) = match pair.iter().position(|&c| c == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let (Some(key), Some(value)) = (unescape(key, true), unescape(value, true)) else {
                continue;
            };
            match values.entries.binary_search_by(|(k, _)| k[..].cmp(&key)) {
                Ok(i) => values.entries[i].1.push(value.into_owned()),
                Err(i) => values
                    .entries
                    .insert(i, (key.into_owned(), vec![value.into_owned()])),
            }
        }
        values
    }

    /// The values for `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&[Vec<u8>]> {
        self.entries
            .binary_search_by(|(k, _)| k[..].cmp(key))
            .ok()
            .map(|i| &self.entries[i].1[..])
    }

    /// Entries sorted by key.
    pub fn entries(&self) -> &[(Vec<u8>, Vec<Vec<u8>>)] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn query_escape_matches_go() {
        // Go: url.QueryEscape("a b&c=d/e?f~g-h_i.j+k@é") == "a+b%26c%3Dd%2Fe%3Ff~g-h_i.j%2Bk%40%C3%A9"
        assert_eq!(
            s(&query_escape("a b&c=d/e?f~g-h_i.j+k@é".as_bytes())),
            "a+b%26c%3Dd%2Fe%3Ff~g-h_i.j%2Bk%40%C3%A9"
        );
        assert_eq!(s(&query_escape(b"plain")), "plain");
    }

    #[test]
    fn origin_form_targets() {
        let u = GoUrl::parse_request_uri(b"/path?x=1").unwrap();
        assert_eq!(
            (s(&u.path), s(&u.raw_query), s(&u.raw_path)),
            ("/path", "x=1", "")
        );
        assert_eq!(s(&u.to_go_string()), "/path?x=1");

        // Path is decoded; the original spelling is kept when re-escaping differs.
        let u = GoUrl::parse_request_uri(b"/a%20b/c%2Fd").unwrap();
        assert_eq!(s(&u.path), "/a b/c/d");
        assert_eq!(s(&u.raw_path), "/a%20b/c%2Fd");
        assert_eq!(s(&u.to_go_string()), "/a%20b/c%2Fd");
        assert_eq!(s(&u.request_uri()), "/a%20b/c%2Fd");

        // Default escaping reproduces it: no RawPath.
        let u = GoUrl::parse_request_uri(b"/a%20b").unwrap();
        assert_eq!(s(&u.raw_path), "");
        assert_eq!(s(&u.to_go_string()), "/a%20b");

        // Bytes Go escapes in paths are re-escaped; RawPath is not valid then.
        let u = GoUrl::parse_request_uri(b"/a|b").unwrap();
        assert_eq!(s(&u.to_go_string()), "/a%7Cb");

        let u = GoUrl::parse_request_uri(b"/p?").unwrap();
        assert!(u.force_query);
        assert_eq!(s(&u.to_go_string()), "/p?");

        assert_eq!(
            s(&GoUrl::parse_request_uri(b"*").unwrap().to_go_string()),
            "*"
        );
        assert!(GoUrl::parse_request_uri(b"/%zz").is_none());
        assert!(GoUrl::parse_request_uri(b"rel/ative").is_none());
    }

    #[test]
    fn absolute_form_targets() {
        let u = GoUrl::parse_request_uri(b"HTTP://Example.com:8080/x?y").unwrap();
        assert_eq!(s(&u.scheme), "http");
        assert_eq!(s(&u.host), "Example.com:8080");
        assert_eq!(s(u.hostname()), "Example.com");
        assert_eq!(s(u.port()), "8080");
        assert_eq!(s(&u.to_go_string()), "http://Example.com:8080/x?y");
        assert_eq!(s(&u.request_uri()), "/x?y");

        let u = GoUrl::parse_request_uri(b"http://[::1]:80").unwrap();
        assert_eq!(s(u.hostname()), "::1");
        assert_eq!(s(&u.to_go_string()), "http://[::1]:80");
        assert_eq!(s(&u.request_uri()), "/");
    }

    #[test]
    fn parse_query_like_go() {
        let q = QueryValues::parse(b"b=2&a=1&a=x+y%21&bad=%zz&semi;colon=1&&flag");
        let keys: Vec<_> = q.entries().iter().map(|(k, _)| s(k)).collect();
        assert_eq!(keys, ["a", "b", "flag"]);
        let a: Vec<_> = q.get(b"a").unwrap().iter().map(|v| s(v)).collect();
        assert_eq!(a, ["1", "x y!"]);
        assert_eq!(q.get(b"flag").unwrap(), [b"".to_vec()]);
        assert!(q.get(b"bad").is_none());
    }
}
