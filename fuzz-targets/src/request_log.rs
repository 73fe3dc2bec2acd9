//! The request-log template engine (`queue_proxy::request_log`): a Go
//! `text/template` subset, parsed from `requestLogTemplate` and executed once per
//! request against upstream's `RequestLogRevision`/`Request`/`Response` data.
//!
//! Input: the template, a NUL, then the request: a `METHOD TARGET` line and
//! header lines (invalid ones are skipped, as hyper would have refused them).
//!
//! Checks: no panic in parsing or executing; a template that parses renders one
//! line (its output or upstream's "Invalid request log template" line) and
//! renders the same bytes twice.
//!
//! `range` over an integer is Go 1.22's counted loop, so `{{range 99999999}}`
//! in the operator's template is as slow here as upstream; such templates are
//! skipped because slowness they ask for is no bug.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use queue_proxy::request_log::{
    LineSink, LogEntry, RequestInfo, RequestLogger, ResponseInfo, RevisionInfo,
};
use std::time::Duration;

pub const TARGET: crate::Target = crate::Target {
    name: "request_log",
    run,
    dictionary: &[
        b"{{",
        b"}}",
        b"{{-",
        b"-}}",
        b"{{end}}",
        b"{{else}}",
        b"{{if ",
        b"{{with ",
        b"{{range ",
        b"{{define \"x\"}}",
        b"{{template \"x\" .}}",
        b"{{block \"y\" .}}",
        b"{{break}}",
        b"{{continue}}",
        b"$x := ",
        b"$x = ",
        b" | ",
        b".Request.Method",
        b".Request.URL",
        b".Request.Header",
        b".Request.Host",
        b".Request.RemoteAddr",
        b".Request.ContentLength",
        b".Request.Proto",
        b".Response.Code",
        b".Response.Latency",
        b".Revision.Name",
        b"printf \"%",
        b"print",
        b"println",
        b"index",
        b"slice",
        b"len",
        b"and",
        b"or",
        b"not",
        b"eq",
        b"lt",
        b"html",
        b"js",
        b"urlquery",
        b"call",
        b"(",
        b")",
        b"\"\\u00e9\"",
        b"`raw`",
        b"'x'",
        b"0x1p-2",
        b"1e3",
        b"nil",
        b"true",
        b"\0GET /a?b=c HTTP/1.1\nuser-agent: x\n",
    ],
};

/// Lines go nowhere: the target renders into its own buffer.
struct Discard;

impl LineSink for Discard {
    fn write_line(&self, _line: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn run(data: &[u8]) {
    let (template, request) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &b""[..]),
    };
    let template = crate::text(template);
    if asks_for_slowness(&template) {
        return;
    }
    let Ok(logger) = RequestLogger::with_sink(&template, RevisionInfo::default(), true, Discard)
    else {
        return;
    };
    let request = request_info(request);
    let entry = LogEntry {
        request: &request,
        response: ResponseInfo::new(200, 5, Duration::from_millis(3)),
        is_probe: false,
    };
    let mut once = Vec::new();
    let rendered = logger.render(&entry, &mut once);
    assert_eq!(rendered, logger.is_enabled(), "an enabled logger renders");
    let mut twice = Vec::new();
    logger.render(&entry, &mut twice);
    assert_eq!(once, twice, "rendering is deterministic");
}

/// Counted loops whose bounds multiply past a few thousand iterations.
fn asks_for_slowness(template: &str) -> bool {
    if !template.contains("range") {
        return false;
    }
    let bytes = template.as_bytes();
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    let literal_with_suffix = bytes
        .windows(2)
        .any(|w| w[0].is_ascii_digit() && (w[1].is_ascii_alphabetic() || b"_.".contains(&w[1])));
    digits > 3 || literal_with_suffix
}

fn request_info(data: &[u8]) -> RequestInfo {
    let mut lines = crate::lines(data);
    let (method, uri) = lines
        .next()
        .map(|line| {
            let mut parts = line.splitn(2, |&b| b == b' ');
            let method = Method::from_bytes(parts.next().unwrap_or_default());
            let uri = Uri::try_from(parts.next().unwrap_or_default());
            (method.unwrap_or(Method::GET), uri.unwrap_or_default())
        })
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii_start();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    RequestInfo {
        method,
        uri,
        version: Version::HTTP_11,
        headers,
        remote_addr: Some(([10, 0, 0, 1], 34567).into()),
        content_length: -1,
        tls: false,
    }
}
