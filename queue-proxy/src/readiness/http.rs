//! The HTTP probe.
//!
//! Mirrors upstream's `health.HTTPProbe` (`pkg/queue/health/probe.go`) with the
//! prober transport of `knative.dev/pkg/network` (`NewProberTransport`):
//!
//! - `GET <scheme>://<host>:<port>/<path>`: one leading slash of the configured
//!   path is dropped and one is added, and the query is kept;
//! - `User-Agent: kube-probe//` (the prober's prefix and an empty version), always:
//!   upstream adds it before the configured headers and Go's client sends only the
//!   first `User-Agent`, so a configured one is never seen by the app;
//! - the configured headers (a configured `Host` is ignored, as Go's client
//!   ignores it), and `Accept-Encoding: gzip` unless one is configured;
//! - a new connection per request, closed afterwards (no keep-alive), and a
//!   timeout over the whole request;
//! - ready iff the status is 200–399. The body is never read.
//!
//! With HTTP/2 auto-detection (`ENABLE_HTTP2_AUTO_DETECTION`), an h2c
//! prior-knowledge GET *without* the configured headers comes first. If it is
//! ready, a second h2c GET *with* them decides; otherwise (no h2c, or not ready
//! over h2c) an HTTP/1.1 GET, again without the configured headers, decides. Each
//! request gets the full attempt timeout, as each `http.Client.Do` does upstream.
//!
//! Differences from upstream: `https` probes fail with a clear reason (this crate
//! has no TLS client; upstream dials them with Go's default TLS settings), an
//! empty `host` is sent as `Host: 127.0.0.1:<port>` (Go would send `:<port>`; the
//! reconciler always sets the host), and redirects are not followed (a 3xx
//! answer is ready, where Go's client would let the redirect target decide).

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONNECTION, HOST, RANGE, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body_util::Empty;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::time::Duration;

use super::error::{HttpRequestError, HttpSetupError, ProbeError};
use super::spec::HttpGetAction;
use super::tcp;

/// The kubelet's probe user agent with the empty version upstream sends.
pub(super) const KUBE_PROBE_UA: &str = "kube-probe//";

/// Headers that never come from the probe's configuration: Go's client takes the
/// `Host` from the URL, sends only its own first `User-Agent`, and frames the
/// request itself.
const NEVER_CONFIGURED: [HeaderName; 4] = [
    HOST,
    USER_AGENT,
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
];

/// Connection-specific headers HTTP/2 forbids; dropped from h2c requests.
const NOT_IN_H2: [HeaderName; 4] = [
    CONNECTION,
    http::header::UPGRADE,
    http::header::TRANSFER_ENCODING,
    http::header::TE,
];

/// Which wire protocol a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    H2c,
}

/// A validated HTTP probe: everything needed to build its requests.
#[derive(Debug)]
pub(super) struct HttpTarget {
    host: String,
    port: u16,
    /// `http://host:port/path?query`, for messages.
    url: String,
    host_header: HeaderValue,
    /// Origin form, for HTTP/1.1.
    origin_uri: Uri,
    /// Absolute form, for h2c (its authority becomes `:authority`).
    absolute_uri: Uri,
    /// The configured headers, validated, minus the ones never sent.
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether the configuration already asks for an encoding or a range.
    negotiates_encoding: bool,
}

impl HttpTarget {
    /// Validates the probe once; a probe that fails here fails every attempt.
    pub(super) fn new(action: &HttpGetAction) -> Result<Self, HttpSetupError> {
        let authority_text = tcp::authority(&action.host, action.port);
        let target = request_target(&action.path)?;
        let scheme = action.scheme.to_ascii_lowercase();
        let url = format!("{scheme}://{authority_text}{target}");
        match scheme.as_str() {
            "http" => {}
            "" => return Err(HttpSetupError::MissingScheme),
            "https" => return Err(HttpSetupError::Https { url }),
            _ => return Err(HttpSetupError::UnsupportedScheme { url, scheme }),
        }

        let invalid_url = |e: &dyn std::fmt::Display| HttpSetupError::InvalidUrl(e.to_string());
        let authority =
            Authority::try_from(authority_text.as_str()).map_err(|e| invalid_url(&e))?;
        let path_and_query =
            PathAndQuery::try_from(target.as_str()).map_err(|e| invalid_url(&e))?;
        let origin_uri = Uri::from(path_and_query.clone());
        let absolute_uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(authority)
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| invalid_url(&e))?;
        let host_header = HeaderValue::try_from(authority_text).map_err(|e| invalid_url(&e))?;

        let mut headers = Vec::with_capacity(action.http_headers.len());
        let mut negotiates_encoding = false;
        for header in &action.http_headers {
            let name = HeaderName::try_from(header.name.as_str())
                .map_err(|_| HttpSetupError::InvalidHeaderName(header.name.clone()))?;
            // Go trims surrounding blanks when it writes a value.
            let value = HeaderValue::try_from(header.value.trim_matches([' ', '\t']))
                .map_err(|_| HttpSetupError::InvalidHeaderValue(header.name.clone()))?;
            if NEVER_CONFIGURED.contains(&name) || name.as_str() == "trailer" {
                continue;
            }
            if (name == ACCEPT_ENCODING || name == RANGE) && !value.is_empty() {
                negotiates_encoding = true;
            }
            headers.push((name, value));
        }

        Ok(Self {
            host: action.host.clone(),
            port: action.port,
            url,
            host_header,
            origin_uri,
            absolute_uri,
            headers,
            negotiates_encoding,
        })
    }

    /// One probe attempt: each request gets `timeout`.
    pub(super) async fn probe(
        &self,
        timeout: Duration,
        autodetect_h2: bool,
    ) -> Result<(), ProbeError> {
        if !autodetect_h2 {
            return self.get(Proto::Http1, true, timeout).await;
        }
        if self.get(Proto::H2c, false, timeout).await.is_ok() {
            return self.get(Proto::H2c, true, timeout).await;
        }
        self.get(Proto::Http1, false, timeout)
            .await
            .map_err(|e| ProbeError::ProtocolDetection(Box::new(e)))
    }

    async fn get(
        &self,
        proto: Proto,
        with_headers: bool,
        timeout: Duration,
    ) -> Result<(), ProbeError> {
        let request = self.request(proto, with_headers);
        let status = match tokio::time::timeout(timeout, self.exchange(proto, request)).await {
            Ok(Ok(status)) => status,
            Ok(Err(error)) => return Err(self.request_error(error)),
            Err(_) => return Err(self.request_error(HttpRequestError::Timeout)),
        };
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(ProbeError::HttpStatus(status))
        }
    }

    fn request_error(&self, error: HttpRequestError) -> ProbeError {
        ProbeError::HttpRequest {
            url: self.url.clone(),
            error,
        }
    }

    fn request(&self, proto: Proto, with_headers: bool) -> Request<Empty<Bytes>> {
        let mut request = Request::new(Empty::new());
        *request.method_mut() = Method::GET;
        match proto {
            Proto::Http1 => {
                *request.uri_mut() = self.origin_uri.clone();
                *request.version_mut() = Version::HTTP_11;
                request.headers_mut().insert(HOST, self.host_header.clone());
            }
            Proto::H2c => {
                *request.uri_mut() = self.absolute_uri.clone();
                *request.version_mut() = Version::HTTP_2;
            }
        }
        let headers = request.headers_mut();
        headers.insert(USER_AGENT, HeaderValue::from_static(KUBE_PROBE_UA));
        if with_headers {
            for (name, value) in &self.headers {
                if proto == Proto::H2c && (NOT_IN_H2.contains(name) || is_h2_forbidden(name)) {
                    continue;
                }
                headers.append(name.clone(), value.clone());
            }
        }
        if !(with_headers && self.negotiates_encoding) {
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if proto == Proto::Http1 {
            headers.append(CONNECTION, HeaderValue::from_static("close"));
        }
        request
    }

    /// Connects, sends `request` and returns the response status.
    async fn exchange(
        &self,
        proto: Proto,
        request: Request<Empty<Bytes>>,
    ) -> Result<u16, HttpRequestError> {
        let io = TokioIo::new(tcp::connect(&self.host, self.port).await?);
        let response = match proto {
            Proto::Http1 => {
                let (mut sender, conn) = http1::Builder::new()
                    .title_case_headers(true)
                    .handshake(io)
                    .await
                    .map_err(HttpRequestError::Protocol)?;
                drive(conn, sender.send_request(request)).await
            }
            Proto::H2c => {
                let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                    .map_err(HttpRequestError::Protocol)?;
                drive(conn, sender.send_request(request)).await
            }
        };
        response
            .map(|r| r.status().as_u16())
            .map_err(HttpRequestError::Protocol)
    }
}

/// Headers h2 rejects that are not in the `http` crate's constants.
fn is_h2_forbidden(name: &HeaderName) -> bool {
    matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

/// Runs `work` while driving the connection `conn`, and returns `work`'s result.
/// The connection is dropped (closed) with the returned future, so a timed-out or
/// finished exchange leaves nothing behind.
pub(super) async fn drive<C, W, T, E>(conn: C, work: W) -> Result<T, E>
where
    C: Future<Output = Result<(), hyper::Error>>,
    W: Future<Output = Result<T, E>>,
{
    tokio::pin!(conn, work);
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            // Its error, if any, reaches `work` through hyper.
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    }
}

/// The request target upstream builds: `"/" + path without one leading "/"`,
/// parsed as a URL (so a fragment is dropped and the query kept), then written
/// with the path escaped where it must be.
fn request_target(path: &str) -> Result<String, HttpSetupError> {
    if path.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(HttpSetupError::InvalidUrl(
            "net/url: invalid control character in URL".to_owned(),
        ));
    }
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.split_once('#').map_or(path, |(before, _)| before);
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let mut target = String::with_capacity(path.len() + 8);
    target.push('/');
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
                let end = (i + 3).min(bytes.len());
                return Err(HttpSetupError::InvalidEscape(
                    String::from_utf8_lossy(&bytes[i..end]).into_owned(),
                ));
            }
            target.push('%');
        } else if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            target.push(char::from(b));
        } else {
            push_escaped(&mut target, b);
        }
    }
    if let Some(query) = query {
        target.push('?');
        for &b in query.as_bytes() {
            if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
                target.push(char::from(b));
            } else {
                push_escaped(&mut target, b);
            }
        }
    }
    Ok(target)
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readiness::spec::HttpHeader;

    fn action(path: &str, scheme: &str, headers: &[(&str, &str)]) -> HttpGetAction {
        HttpGetAction {
            host: String::new(),
            port: 8080,
            path: path.to_owned(),
            scheme: scheme.to_owned(),
            http_headers: headers
                .iter()
                .map(|(n, v)| HttpHeader {
                    name: (*n).to_owned(),
                    value: (*v).to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn request_targets_follow_upstream_url_building() {
        for (path, want) in [
            ("", "/"),
            ("/", "/"),
            ("health", "/health"),
            ("/health", "/health"),
            ("//health", "//health"),
            ("health?foo=bar", "/health?foo=bar"),
            ("/a b?x=1 2", "/a%20b?x=1%202"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a%2Fb", "/a%2Fb"),
            ("/h#frag", "/h"),
            ("/h?q#frag", "/h?q"),
            ("/!$&'()*+,;=:@", "/!$&'()*+,;=:@"),
        ] {
            assert_eq!(request_target(path).unwrap(), want, "{path:?}");
        }
        assert!(matches!(
            request_target("/a%zz"),
            Err(HttpSetupError::InvalidEscape(e)) if e == "%zz"
        ));
        assert!(matches!(
            request_target("/a%2"),
            Err(HttpSetupError::InvalidEscape(_))
        ));
        assert!(matches!(
            request_target("/a\nb"),
            Err(HttpSetupError::InvalidUrl(_))
        ));
    }

    #[test]
    fn schemes() {
        assert!(HttpTarget::new(&action("", "HTTP", &[])).is_ok());
        assert!(HttpTarget::new(&action("", "http", &[])).is_ok());
        assert!(matches!(
            HttpTarget::new(&action("", "", &[])),
            Err(HttpSetupError::MissingScheme)
        ));
        let https = HttpTarget::new(&action("/h", "HTTPS", &[])).unwrap_err();
        assert_eq!(
            https.to_string(),
            "Get \"https://127.0.0.1:8080/h\": HTTPS readiness probes are not supported by this queue-proxy"
        );
        assert!(matches!(
            HttpTarget::new(&action("", "ftp", &[])),
            Err(HttpSetupError::UnsupportedScheme { scheme, .. }) if scheme == "ftp"
        ));
    }

    #[test]
    fn requests_carry_upstreams_headers() {
        let target = HttpTarget::new(&action(
            "health?foo=bar",
            "HTTP",
            &[
                ("K-Kubelet-Probe", "queue"),
                ("X-Multi", "1"),
                ("x-multi", " 2 "),
                ("User-Agent", "custom"),
                ("Host", "elsewhere"),
                ("Connection", "keep-alive"),
                ("Keep-Alive", "timeout=5"),
            ],
        ))
        .unwrap();

        let h1 = target.request(Proto::Http1, true);
        assert_eq!(h1.method(), Method::GET);
        assert_eq!(h1.uri(), "/health?foo=bar");
        assert_eq!(h1.version(), Version::HTTP_11);
        let h = h1.headers();
        assert_eq!(h[HOST], "127.0.0.1:8080");
        assert_eq!(
            h.get_all(USER_AGENT).iter().collect::<Vec<_>>(),
            ["kube-probe//"]
        );
        assert_eq!(h["k-kubelet-probe"], "queue");
        assert_eq!(h.get_all("x-multi").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h[ACCEPT_ENCODING], "gzip");
        assert_eq!(
            h.get_all(CONNECTION).iter().collect::<Vec<_>>(),
            ["keep-alive", "close"]
        );

        let h2 = target.request(Proto::H2c, true);
        assert_eq!(h2.uri(), "http://127.0.0.1:8080/health?foo=bar");
        assert_eq!(h2.version(), Version::HTTP_2);
        let h = h2.headers();
        assert!(h.get(HOST).is_none());
        assert!(h.get(CONNECTION).is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h["k-kubelet-probe"], "queue");
        assert_eq!(h[USER_AGENT], "kube-probe//");

        let bare = target.request(Proto::H2c, false);
        assert!(bare.headers().get("k-kubelet-probe").is_none());
        assert_eq!(bare.headers()[USER_AGENT], "kube-probe//");
    }

    #[test]
    fn configured_encoding_replaces_gzip() {
        let target = HttpTarget::new(&action("", "HTTP", &[("Accept-Encoding", "br")])).unwrap();
        let request = target.request(Proto::Http1, true);
        assert_eq!(
            request
                .headers()
                .get_all(ACCEPT_ENCODING)
                .iter()
                .collect::<Vec<_>>(),
            ["br"]
        );
        // Without the configured headers Go asks for gzip itself.
        assert_eq!(
            target.request(Proto::Http1, false).headers()[ACCEPT_ENCODING],
            "gzip"
        );
    }

    #[test]
    fn invalid_headers_fail_setup() {
        assert!(matches!(
            HttpTarget::new(&action("", "HTTP", &[("bad name", "v")])),
            Err(HttpSetupError::InvalidHeaderName(n)) if n == "bad name"
        ));
        assert!(matches!(
            HttpTarget::new(&action("", "HTTP", &[("", "v")])),
            Err(HttpSetupError::InvalidHeaderName(_))
        ));
        assert!(matches!(
            HttpTarget::new(&action("", "HTTP", &[("X", "a\nb")])),
            Err(HttpSetupError::InvalidHeaderValue(n)) if n == "X"
        ));
    }
}
