//! The `Forwarded` shim (spec §3 step 9).
//!
//! Mirrors upstream's `ForwardedShimHandler` (`pkg/queue/forwarded_shim.go`, tested by
//! `pkg/queue/forwarded_shim_test.go`): when a request carries legacy `X-Forwarded-*`
//! headers but no RFC 7239 `Forwarded` header, one is synthesised so applications that only
//! understand `Forwarded` see the same hops.
//!
//! The rules, all on the *first* line of each header:
//!
//! - A non-empty `Forwarded` is left untouched. (Upstream tests for an empty string, so an
//!   empty `Forwarded` line counts as absent and is replaced.)
//! - Nothing happens unless at least one of `X-Forwarded-For` (XFF), `X-Forwarded-Host`
//!   (XFH) or `X-Forwarded-Proto` (XFP) is non-empty.
//! - The first element is `for=<first XFF node>`, `host=<XFH>`, `proto=<XFP>` (the present
//!   ones, in that order) joined by `;`. Every further XFF node adds `, for=<node>`.
//! - XFF is split on `,` the way a `strings.Cut` loop does: a trailing empty segment is not
//!   a node (`"a,"` → `for=a`, `",,,"` → `for=, for=, for=`), any other empty segment gives
//!   `for=`. Nodes are trimmed with Go's `strings.TrimSpace` rules (Unicode white space);
//!   XFH and XFP are used verbatim.
//! - A node containing `:` is taken to be IPv6 and written as `"[node]"`, quotes included.
//! - `X-Forwarded-By` is ignored: it cannot be paired reliably with XFF nodes.
//!
//! Header values are handled as bytes, never as `str`. Go strings are byte strings too, so
//! obs-text (non-ASCII, possibly invalid UTF-8) in XF* headers is passed through into
//! `Forwarded` unchanged, as upstream does, and nothing here can panic on it.
//!
//! Cost: requests without XF* headers (the common case) do three map look-ups and
//! allocate nothing. Otherwise the value is measured first and written into one exactly
//! sized buffer that becomes the `HeaderValue` without a copy: one allocation.

use bytes::Bytes;
use http::HeaderMap;
use http::header::{FORWARDED, HeaderName, HeaderValue};

use crate::headers::X_FORWARDED_FOR;
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Adds a `Forwarded` header built from `X-Forwarded-For/-Host/-Proto` when the request has
/// none; see the module docs for the exact format. Leaves `headers` alone otherwise.
pub fn shim(headers: &mut HeaderMap) {
    if headers.get(FORWARDED).is_some_and(|v| !v.is_empty()) {
        return;
    }

    let first = |name: &HeaderName| headers.get(name).map_or(&b""[..], HeaderValue::as_bytes);
    let xff = first(&X_FORWARDED_FOR);
    let xfh = first(&X_FORWARDED_HOST);
    let xfp = first(&X_FORWARDED_PROTO);
    if xff.is_empty() && xfh.is_empty() && xfp.is_empty() {
        return;
    }

    let mut len = 0;
    render(xff, xfh, xfp, &mut len);
    let mut out = Vec::with_capacity(len);
    render(xff, xfh, xfp, &mut out);
    debug_assert_eq!(out.len(), len);

    // `len == capacity`, so the Vec becomes a `Bytes` without reallocating, and `Bytes` is
    // what `HeaderValue` stores, so this is not copied either. Every byte came from a valid
    // header value or is ASCII punctuation, so validation can only fail if a caller built
    // an input value unchecked; then the request simply goes on without a `Forwarded`.
    match HeaderValue::from_maybe_shared(Bytes::from(out)) {
        Ok(value) => {
            headers.insert(FORWARDED, value);
        }
        Err(_) => tracing::debug!("X-Forwarded-* headers hold bytes not valid in Forwarded"),
    }
}

/// Where [`render`] writes: a byte counter for the sizing pass, then the buffer itself.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for usize {
    fn put(&mut self, bytes: &[u8]) {
        *self += bytes.len();
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn render(xff: &[u8], xfh: &[u8], xfp: &[u8], out: &mut impl Sink) {
    let mut nodes = Nodes { rest: xff };
    let mut need_semicolon = false;
    // A non-empty XFF always yields at least one node.
    if let Some(node) = nodes.next() {
        out.put(b"for=");
        put_node(node, out);
        need_semicolon = true;
    }
    for (key, value) in [(&b"host="[..], xfh), (&b"proto="[..], xfp)] {
        if !value.is_empty() {
            if need_semicolon {
                out.put(b";");
            }
            out.put(key);
            out.put(value);
            need_semicolon = true;
        }
    }
    for node in nodes {
        out.put(b", for=");
        put_node(node, out);
    }
}

fn put_node(node: &[u8], out: &mut impl Sink) {
    // Upstream's IPv6 test is just "contains a colon".
    if node.contains(&b':') {
        out.put(b"\"[");
        out.put(node);
        out.put(b"]\"");
    } else {
        out.put(node);
    }
}

/// XFF nodes, trimmed. Stops once nothing is left, so a trailing `,` adds no empty node.
struct Nodes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Nodes<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (node, rest) = match self.rest.iter().position(|&b| b == b',') {
            Some(comma) => (&self.rest[..comma], &self.rest[comma + 1..]),
            None => (self.rest, &b""[..]),
        };
        self.rest = rest;
        Some(trim_go_space(node))
    }
}

/// Go's `strings.TrimSpace` on bytes: trims Unicode white space (which is exactly Rust's
/// `char::is_whitespace` set) from both ends; an invalid UTF-8 byte is not white space and
/// stops the trimming, as Go's `RuneError` does.
fn trim_go_space(s: &[u8]) -> &[u8] {
    // Fast path: nodes are normally plain IPs with at most ASCII blanks around them.
    let is_plain = |b: &u8| b.is_ascii() && !b.is_ascii_whitespace() && *b != 0x0b;
    match (s.first(), s.last()) {
        (None, _) | (_, None) => return s,
        (Some(first), Some(last)) if is_plain(first) && is_plain(last) => return s,
        _ => {}
    }

    let mut start = None;
    let mut end = 0;
    let mut offset = 0;
    for chunk in s.utf8_chunks() {
        for (i, c) in chunk.valid().char_indices() {
            if !c.is_whitespace() {
                start.get_or_insert(offset + i);
                end = offset + i + c.len_utf8();
            }
        }
        offset += chunk.valid().len();
        if !chunk.invalid().is_empty() {
            start.get_or_insert(offset);
            offset += chunk.invalid().len();
            end = offset;
        }
    }
    match start {
        Some(start) => &s[start..end],
        None => &s[..0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the shim over a request with the given header lines (name, raw value) and
    /// returns every `Forwarded` line afterwards.
    fn shimmed(lines: &[(&str, &[u8])]) -> Vec<Vec<u8>> {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        shim(&mut headers);
        headers
            .get_all(FORWARDED)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }

    /// The single `Forwarded` value for optional XFF / XFH / XFP values.
    fn fwd(xff: Option<&str>, xfh: Option<&str>, xfp: Option<&str>) -> Option<String> {
        let mut lines: Vec<(&str, &[u8])> = Vec::new();
        if let Some(v) = xff {
            lines.push(("x-forwarded-for", v.as_bytes()));
        }
        if let Some(v) = xfh {
            lines.push(("x-forwarded-host", v.as_bytes()));
        }
        if let Some(v) = xfp {
            lines.push(("x-forwarded-proto", v.as_bytes()));
        }
        let mut out = shimmed(&lines);
        assert!(out.len() <= 1, "more than one Forwarded line: {out:?}");
        out.pop().map(|v| String::from_utf8(v).unwrap())
    }

    // Spec §12 checks 15–21, which are also upstream's test table.

    #[test]
    fn check_15_all_three() {
        assert_eq!(
            fwd(Some("127.0.0.1, ::1"), Some("h"), Some("p")).as_deref(),
            Some(r#"for=127.0.0.1;host=h;proto=p, for="[::1]""#)
        );
    }

    #[test]
    fn check_16_xff_only() {
        assert_eq!(
            fwd(Some("127.0.0.1"), None, None).as_deref(),
            Some("for=127.0.0.1")
        );
        assert_eq!(
            fwd(Some("127.0.0.1, ::1"), None, None).as_deref(),
            Some(r#"for=127.0.0.1, for="[::1]""#)
        );
    }

    #[test]
    fn check_17_xff_with_one_of_host_proto() {
        assert_eq!(
            fwd(Some("127.0.0.1, ::1"), None, Some("p")).as_deref(),
            Some(r#"for=127.0.0.1;proto=p, for="[::1]""#)
        );
        assert_eq!(
            fwd(Some("127.0.0.1, ::1"), Some("h"), None).as_deref(),
            Some(r#"for=127.0.0.1;host=h, for="[::1]""#)
        );
    }

    #[test]
    fn check_18_no_xff() {
        assert_eq!(fwd(None, Some("h"), None).as_deref(), Some("host=h"));
        assert_eq!(fwd(None, None, Some("p")).as_deref(), Some("proto=p"));
        assert_eq!(
            fwd(None, Some("h"), Some("p")).as_deref(),
            Some("host=h;proto=p")
        );
    }

    #[test]
    fn check_19_empty_nodes() {
        assert_eq!(
            fwd(Some(",,,"), None, None).as_deref(),
            Some("for=, for=, for=")
        );
        assert_eq!(fwd(Some("a,"), None, None).as_deref(), Some("for=a"));
        assert_eq!(fwd(Some(","), None, None).as_deref(), Some("for="));
        assert_eq!(fwd(Some(",a"), None, None).as_deref(), Some("for=, for=a"));
        assert_eq!(
            fwd(Some("a,,b"), Some("h"), None).as_deref(),
            Some("for=a;host=h, for=, for=b")
        );
    }

    #[test]
    fn check_20_existing_forwarded_untouched() {
        let out = shimmed(&[
            ("x-forwarded-for", b"127.0.0.1, ::1"),
            ("x-forwarded-host", b"h"),
            ("x-forwarded-proto", b"p"),
            ("forwarded", b"for=a, for=b"),
        ]);
        assert_eq!(out, vec![b"for=a, for=b".to_vec()]);
    }

    #[test]
    fn check_21_nothing_to_shim() {
        assert_eq!(fwd(None, None, None), None);
        // Present but empty XF* lines count as absent, as in upstream.
        assert_eq!(fwd(Some(""), Some(""), Some("")), None);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-by", HeaderValue::from_static("b"));
        shim(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn single_xff_with_host_and_proto() {
        assert_eq!(
            fwd(Some("127.0.0.1"), Some("h"), Some("p")).as_deref(),
            Some("for=127.0.0.1;host=h;proto=p")
        );
    }

    #[test]
    fn nodes_are_trimmed_but_host_and_proto_are_verbatim() {
        assert_eq!(
            fwd(Some("\t1.1.1.1 ,  2.2.2.2\t, 2001:db8::1 "), None, None).as_deref(),
            Some(r#"for=1.1.1.1, for=2.2.2.2, for="[2001:db8::1]""#)
        );
        assert_eq!(
            fwd(Some("a"), Some(" h "), Some(" p")).as_deref(),
            Some("for=a;host= h ;proto= p")
        );
        // A whitespace-only XFF is non-empty, so it yields one empty node.
        assert_eq!(
            fwd(Some(" "), Some("h"), None).as_deref(),
            Some("for=;host=h")
        );
    }

    #[test]
    fn node_with_port_is_bracketed_like_ipv6() {
        assert_eq!(
            fwd(Some("10.0.0.1:8080"), None, None).as_deref(),
            Some(r#"for="[10.0.0.1:8080]""#)
        );
    }

    #[test]
    fn empty_forwarded_line_is_replaced() {
        let out = shimmed(&[("forwarded", b""), ("x-forwarded-for", b"1.2.3.4")]);
        assert_eq!(out, vec![b"for=1.2.3.4".to_vec()]);
        // ...but with nothing to shim from, it stays as it was.
        assert_eq!(shimmed(&[("forwarded", b"")]), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn only_first_line_of_each_header_is_used() {
        let out = shimmed(&[
            ("x-forwarded-for", b"1.1.1.1"),
            ("x-forwarded-for", b"2.2.2.2"),
            ("x-forwarded-host", b"h1"),
            ("x-forwarded-host", b"h2"),
            ("x-forwarded-proto", b"http"),
            ("x-forwarded-proto", b"https"),
        ]);
        assert_eq!(out, vec![b"for=1.1.1.1;host=h1;proto=http".to_vec()]);
    }

    #[test]
    fn non_ascii_bytes_pass_through() {
        // obs-text that is not UTF-8 at all, in every header.
        let out = shimmed(&[
            ("x-forwarded-for", b"\xff\xfe, b\x80"),
            ("x-forwarded-host", b"h\xe9"),
            ("x-forwarded-proto", b"\xc3"),
        ]);
        assert_eq!(
            out,
            vec![b"for=\xff\xfe;host=h\xe9;proto=\xc3, for=b\x80".to_vec()]
        );
    }

    #[test]
    fn unicode_white_space_is_trimmed_like_go() {
        // U+00A0 (NBSP) and U+3000 around a node are white space for Go's TrimSpace.
        let out = shimmed(&[("x-forwarded-for", "\u{a0}a\u{3000}, \u{85}b".as_bytes())]);
        assert_eq!(out, vec![b"for=a, for=b".to_vec()]);
        // An invalid byte is not white space: trimming stops there.
        let out = shimmed(&[("x-forwarded-for", b"\xff \xc2\xa0")]);
        assert_eq!(out, vec![b"for=\xff".to_vec()]);
    }

    #[test]
    fn trim_matches_go_trim_space() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"x", b"x"),
            (b"  ", b""),
            (b" \t a b \t ", b"a b"),
            ("\u{2000}x\u{205f}".as_bytes(), b"x"),
            (b"\x80 ", b"\x80"),
            (b" \x80", b"\x80"),
            (b"\xe2\xc2\xa0", b"\xe2"),
        ];
        for (input, want) in cases {
            assert_eq!(trim_go_space(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn output_buffer_is_sized_exactly() {
        let (xff, xfh, xfp) = (&b" a , ::1 ,, b,"[..], &b"host"[..], &b"https"[..]);
        let mut len = 0;
        render(xff, xfh, xfp, &mut len);
        let mut out = Vec::new();
        render(xff, xfh, xfp, &mut out);
        assert_eq!(
            out,
            br#"for=a;host=host;proto=https, for="[::1]", for=, for=b"#
        );
        assert_eq!(len, out.len());
    }
}
