//! The `Forwarded` shim (`queue_proxy::forwarded::shim`).
//!
//! Input: header lines `name: value` (hyper's rules decide which are valid; the
//! rest are skipped, as hyper would have refused the request).
//!
//! Checks, from the module's contract: a non-empty `Forwarded` is never touched;
//! without one, a `Forwarded` appears iff some `X-Forwarded-*` first line is
//! non-empty, and it has one `for=` element per XFF node (a `strings.Cut` split
//! that drops one trailing empty segment); the shim is idempotent.

use http::header::{FORWARDED, HeaderMap, HeaderName, HeaderValue};

pub const TARGET: crate::Target = crate::Target {
    name: "forwarded",
    run,
    dictionary: &[
        b"x-forwarded-for: ",
        b"x-forwarded-host: ",
        b"x-forwarded-proto: ",
        b"forwarded: ",
        b"\nx-forwarded-for: ",
        b"::1",
        b", ",
        b"\xc2\x85",
        b"\xe3\x80\x80",
        b"\t",
    ],
};

pub fn run(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in crate::lines(data) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let before = headers.clone();
    queue_proxy::forwarded::shim(&mut headers);

    let first = |name: &str| before.get(name).map_or(&b""[..], HeaderValue::as_bytes);
    if !first("forwarded").is_empty() {
        assert_eq!(headers, before, "a non-empty Forwarded is left alone");
        return;
    }
    let xff = first("x-forwarded-for");
    let any = !xff.is_empty()
        || !first("x-forwarded-host").is_empty()
        || !first("x-forwarded-proto").is_empty();
    if !any {
        assert_eq!(headers, before, "nothing to shim: headers unchanged");
        return;
    }
    let forwarded = headers
        .get(FORWARDED)
        .filter(|v| !v.is_empty())
        .expect("X-Forwarded-* headers give a Forwarded");
    assert_eq!(
        headers.get_all(FORWARDED).iter().count(),
        1,
        "one Forwarded line replaces an empty one"
    );
    let nodes = if xff.is_empty() {
        0
    } else {
        let segments = xff.split(|&b| b == b',').count();
        segments - usize::from(xff.ends_with(b","))
    };
    let elements = forwarded.as_bytes().split(|&b| b == b',').count();
    // Nodes are written whole (a node holding `,` cannot exist: it was split on it),
    // but host and proto are verbatim and may hold commas of their own.
    let extra = [first("x-forwarded-host"), first("x-forwarded-proto")]
        .iter()
        .map(|v| v.iter().filter(|&&b| b == b',').count())
        .sum::<usize>();
    assert_eq!(
        elements,
        nodes.max(1) + extra,
        "{forwarded:?} from {before:?}"
    );

    let once = headers.clone();
    queue_proxy::forwarded::shim(&mut headers);
    assert_eq!(headers, once, "the shim is idempotent");
}
