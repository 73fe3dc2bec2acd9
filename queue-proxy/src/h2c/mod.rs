//! `Upgrade: h2c` on the main port (RFC 7540 §3.2), which upstream's main server
//! gets from golang.org/x/net/http2/h2c's handler: an HTTP/1.1 request asking to
//! upgrade is answered `101 Switching Protocols`, the connection goes on as
//! HTTP/2, and the upgrading request itself is stream 1, answered over HTTP/2.
//!
//! hyper has no such upgrade (hyperium/hyper#2411, hyperium/h2#220): its HTTP/2
//! server cannot be told that stream 1 already exists. So the request is replayed
//! to it as frames. After the client's connection preface and first SETTINGS
//! frame the server reads a synthesized HEADERS frame for stream 1 (HPACK
//! literals without indexing and without Huffman, so the shared HPACK dynamic
//! table stays in step with the client's encoder, which never saw these fields),
//! then the body as DATA frames, then whatever the client sends. The body used
//! connection flow-control window the client never counted; the `io` submodule
//! squares that.
//!
//! As in x/net, the body is read before the 101 and the handler gets stream 1 as
//! the original HTTP/1.1 request (x/net hands the `*http.Request` itself to
//! `ServeConn` as its `UpgradeRequest`), so the proxy forwards it over HTTP/1.1
//! as upstream does; only later streams are HTTP/2 requests. Its `Upgrade` header
//! is dropped: that hop is over, and the app must not be asked to upgrade again.
//!
//! Where this differs from x/net:
//! - the test is RFC 7540's (a `Connection` listing `Upgrade` and `HTTP2-Settings`,
//!   exactly one `HTTP2-Settings`), and a malformed `HTTP2-Settings` is a 400; x/net
//!   looks at `Upgrade` and `Connection: HTTP2-Settings` only and answers a bad or
//!   missing `HTTP2-Settings` with an empty 500;
//! - the body must fit the initial flow-control window (65,535 bytes): a longer
//!   `Content-Length` is served over HTTP/1.1 without upgrading (RFC 7540 §3.2 lets
//!   a server ignore the upgrade), a longer chunked body is a 413;
//! - a request HTTP/2 cannot carry as it is (CONNECT, a Host that is not a valid
//!   authority, a header list over the HTTP/2 server's limit) is also served over
//!   HTTP/1.1 without upgrading;
//! - the upgraded connection is not part of the listener's graceful shutdown.

mod frames;
mod io;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, Uri, request};
use http_body::Body;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::body::ProxyBody;
use crate::error::go_http_error;
use crate::server::{Handler, MAX_CONCURRENT_STREAMS};
use frames::{
    ACK, FRAME_HEADER_LEN, Field, FrameHead, MAX_FRAME_PAYLOAD, PREFACE, SETTINGS, encode_block,
    header_list_size, regular_fields, upgrade_stream_frames,
};
use io::UpgradedIo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// The largest upgrading body: the initial flow-control window (RFC 7540 §6.9.2),
/// all the server takes before the client could learn of a larger one.
pub const MAX_UPGRADE_BODY: usize = 65_535;

/// The HTTP/2 server's header list limit: hyper's default, which the main port's
/// prior-knowledge HTTP/2 uses too.
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// x/net/http2's `prefaceTimeout`: how long the client has after the 101 to send
/// its connection preface and SETTINGS.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `headers` ask for an upgrade to h2c (RFC 7540 §3.2): `Upgrade` lists
/// `h2c`, `Connection` lists both `Upgrade` and `HTTP2-Settings` (tokens, ASCII
/// case-insensitive, as x/net's `httpguts.HeaderValuesContainsToken` matches
/// them), and an `HTTP2-Settings` header is present.
pub fn is_h2c_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers, &header::UPGRADE, "h2c")
        && has_token(headers, &header::CONNECTION, "upgrade")
        && has_token(headers, &header::CONNECTION, "http2-settings")
        && headers.contains_key(HTTP2_SETTINGS)
}

/// Answers `101 Switching Protocols` (`Connection: Upgrade`, `Upgrade: h2c`) and,
/// in a spawned task, serves the upgraded connection as an HTTP/2 server with the
/// same `handler`; the upgrading request itself is served as stream 1 (RFC 7540
/// §3.2) with its response sent over HTTP/2.
///
/// A malformed `HTTP2-Settings` is a 400 and a chunked body over
/// [`MAX_UPGRADE_BODY`] a 413, neither upgrading; a request that cannot become
/// stream 1 is passed to `handler` over HTTP/1.1 (see the module docs).
pub async fn upgrade<H: Handler>(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    handler: Arc<H>,
) -> Response<ProxyBody> {
    if let Err(err) = check_settings(req.headers()) {
        return UpgradeError::from(err).into_response();
    }
    let block = match request_block(&req) {
        Ok(block) => block,
        Err(reason) => {
            tracing::debug!(%reason, %peer, "h2c upgrade declined, serving over HTTP/1.1");
            return handler.handle(req, peer).await;
        }
    };
    // Taken before the 101 is returned: hyper hands the connection over once the
    // 101 is written.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    let (data, trailers) = match read_body(body).await {
        Ok(read) => read,
        Err(err) => return err.into_response(),
    };
    let trailers = match trailers.as_ref().map(trailer_block).transpose() {
        Ok(block) => block.flatten(),
        Err(err) => return err.into_response(),
    };
    let frames = upgrade_stream_frames(&block, &data, trailers.as_deref());
    let debt = u32::try_from(data.len()).expect("upgrading bodies are capped at 65,535 bytes");
    parts.headers.remove(header::UPGRADE);
    tokio::spawn(serve_upgraded(
        on_upgrade, frames, debt, parts, peer, handler,
    ));

    let mut resp = Response::new(ProxyBody::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    resp
}

/// Go's `httpguts.HeaderValuesContainsToken`: some comma-separated element of some
/// `name` value is `token`, ignoring ASCII case and surrounding whitespace.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Why an upgrade was refused with an error response.
#[derive(Debug, thiserror::Error)]
enum UpgradeError {
    #[error("invalid HTTP2-Settings header: {0}")]
    Settings(#[from] SettingsError),
    #[error("request body over {MAX_UPGRADE_BODY} bytes cannot be upgraded to h2c")]
    BodyTooLarge,
    #[error("reading the request body: {0}")]
    Body(#[source] BoxError),
    #[error("request trailers over HTTP/2's {MAX_HEADER_LIST_SIZE}-byte header list limit")]
    TrailersTooLarge,
}

impl UpgradeError {
    fn into_response(self) -> Response<ProxyBody> {
        let status = match self {
            UpgradeError::Settings(_) | UpgradeError::Body(_) => StatusCode::BAD_REQUEST,
            UpgradeError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UpgradeError::TrailersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        };
        go_http_error(status, &self.to_string())
    }
}

/// What is wrong with an `HTTP2-Settings` header (RFC 7540 §3.2.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum SettingsError {
    #[error("expected exactly one, got {0}")]
    Count(usize),
    #[error("not base64url")]
    Base64,
    #[error("{0} octets is not a whole number of settings")]
    Length(usize),
    #[error("setting {id:#06x} has invalid value {value}")]
    Value { id: u16, value: u32 },
}

/// Checks that there is one `HTTP2-Settings` and that it decodes to a valid
/// SETTINGS payload. Its values are not applied: the client repeats them in the
/// SETTINGS frame of its preface, which the server reads first.
fn check_settings(headers: &HeaderMap) -> Result<(), SettingsError> {
    let mut values = headers.get_all(HTTP2_SETTINGS).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(SettingsError::Count(
            headers.get_all(HTTP2_SETTINGS).iter().count(),
        ));
    };
    let payload = decode_base64url(value.as_bytes()).ok_or(SettingsError::Base64)?;
    if payload.len() % 6 != 0 {
        return Err(SettingsError::Length(payload.len()));
    }
    for setting in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([setting[0], setting[1]]);
        let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
        // The range checks of RFC 7540 §6.5.2; unknown settings are ignored.
        let valid = match id {
            0x2 => value <= 1,
            0x4 => value <= 0x7fff_ffff,
            0x5 => (16_384..=16_777_215).contains(&value),
            _ => true,
        };
        if !valid {
            return Err(SettingsError::Value { id, value });
        }
    }
    Ok(())
}

/// Unpadded base64url (RFC 4648 §5), as Go's `base64.RawURLEncoding` decodes it:
/// leftover bits of the last character are ignored.
fn decode_base64url(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Why a request is served over HTTP/1.1 instead of upgrading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Decline {
    #[error("CONNECT cannot be replayed as an HTTP/2 request")]
    Connect,
    #[error("Host is not a valid :authority")]
    Authority,
    #[error("header list over HTTP/2's {MAX_HEADER_LIST_SIZE}-byte limit")]
    HeaderListTooLarge,
    #[error("Content-Length over the {MAX_UPGRADE_BODY}-byte initial flow-control window")]
    BodyTooLarge,
}

/// The request target as `:path`.
fn request_path(uri: &Uri) -> &str {
    match uri.path_and_query().map(|p| p.as_str()) {
        Some(path) if !path.is_empty() => path,
        _ => "/",
    }
}

/// Stream 1's HPACK header block: `:method`, `:scheme`, `:path`, `:authority`
/// (from Host), then the request's HTTP/2-legal fields; or why `req` cannot be
/// replayed as stream 1.
fn request_block<B: Body>(req: &Request<B>) -> Result<Vec<u8>, Decline> {
    if req.method() == Method::CONNECT {
        return Err(Decline::Connect);
    }
    if req.body().size_hint().lower() > MAX_UPGRADE_BODY as u64 {
        return Err(Decline::BodyTooLarge);
    }
    let authority = req
        .headers()
        .get(header::HOST)
        .map(HeaderValue::as_bytes)
        .or_else(|| req.uri().authority().map(|a| a.as_str().as_bytes()))
        .filter(|host| !host.is_empty());
    if let Some(host) = authority {
        // hyper's HTTP/2 server rejects the stream if it does not parse.
        Authority::try_from(host).map_err(|_| Decline::Authority)?;
    }

    let mut fields: Vec<Field<'_>> = Vec::with_capacity(req.headers().len() + 4);
    fields.push((b":method", req.method().as_str().as_bytes()));
    fields.push((b":scheme", b"http"));
    fields.push((b":path", request_path(req.uri()).as_bytes()));
    if let Some(host) = authority {
        fields.push((b":authority", host));
    }
    fields.extend(regular_fields(req.headers()));
    // h2 flags a list that reaches the limit.
    if header_list_size(&fields) >= MAX_HEADER_LIST_SIZE as usize {
        return Err(Decline::HeaderListTooLarge);
    }
    Ok(encode_block(&fields))
}

/// The HPACK block of the request's trailers, `None` if none are HTTP/2-legal.
fn trailer_block(trailers: &HeaderMap) -> Result<Option<Vec<u8>>, UpgradeError> {
    let fields: Vec<Field<'_>> = regular_fields(trailers).collect();
    if fields.is_empty() {
        return Ok(None);
    }
    if header_list_size(&fields) >= MAX_HEADER_LIST_SIZE as usize {
        return Err(UpgradeError::TrailersTooLarge);
    }
    Ok(Some(encode_block(&fields)))
}

/// Reads the whole body (and trailers), up to [`MAX_UPGRADE_BODY`] bytes.
async fn read_body<B>(mut body: B) -> Result<(Bytes, Option<HeaderMap>), UpgradeError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        match frame
            .map_err(|err| UpgradeError::Body(err.into()))?
            .into_data()
        {
            Ok(chunk) => {
                if data.len() + chunk.len() > MAX_UPGRADE_BODY {
                    return Err(UpgradeError::BodyTooLarge);
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    Ok((data.freeze(), trailers))
}

/// How the client began HTTP/2 after the 101.
#[derive(Debug, PartialEq, Eq)]
enum ClientStart {
    /// The preface and a SETTINGS frame, as RFC 7540 §3.5 requires: stream 1
    /// goes right after them.
    Settings(Vec<u8>),
    /// Anything else, passed on as it is so that the HTTP/2 server answers it
    /// with the connection error it calls for.
    Invalid(Vec<u8>),
}

/// Reads the client's preface and first frame if it is SETTINGS.
async fn read_client_start<R: AsyncRead + Unpin>(io: &mut R) -> std::io::Result<ClientStart> {
    let mut start = vec![0; PREFACE.len() + FRAME_HEADER_LEN];
    io.read_exact(&mut start[..PREFACE.len()]).await?;
    if start[..PREFACE.len()] != PREFACE[..] {
        start.truncate(PREFACE.len());
        return Ok(ClientStart::Invalid(start));
    }
    io.read_exact(&mut start[PREFACE.len()..]).await?;
    let head = FrameHead::parse(
        start[PREFACE.len()..]
            .try_into()
            .expect("a frame header is 9 octets"),
    );
    if head.kind != SETTINGS
        || head.flags & ACK != 0
        || head.stream != 0
        || head.len > MAX_FRAME_PAYLOAD
    {
        return Ok(ClientStart::Invalid(start));
    }
    let header_end = start.len();
    start.resize(header_end + head.len, 0);
    io.read_exact(&mut start[header_end..]).await?;
    Ok(ClientStart::Settings(start))
}

/// Gives stream 1 the upgrading request's parts.
struct UpgradeRequest(Mutex<Option<request::Parts>>);

impl UpgradeRequest {
    /// `req` with the upgrading request's parts if it is stream 1: the first
    /// request the connection yields (its frames precede the client's), with the
    /// same method and path. Should stream 1 have been refused, a later stream is
    /// not mistaken for it.
    fn adopt<B>(&self, req: Request<B>) -> Request<B> {
        let parts = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        match parts {
            Some(parts)
                if parts.method == *req.method()
                    && request_path(&parts.uri) == request_path(req.uri()) =>
            {
                Request::from_parts(parts, req.into_body())
            }
            _ => req,
        }
    }
}

/// Waits for the 101 to go out, then serves the connection as HTTP/2 with
/// `frames` (stream 1) replayed after the client's preface and SETTINGS.
async fn serve_upgraded<H: Handler>(
    on_upgrade: OnUpgrade,
    frames: Vec<u8>,
    debt: u32,
    parts: request::Parts,
    peer: SocketAddr,
    handler: Arc<H>,
) {
    let mut upgraded = match on_upgrade.await {
        Ok(upgraded) => TokioIo::new(upgraded),
        Err(err) => {
            tracing::debug!(error = %err, %peer, "h2c upgrade failed");
            return;
        }
    };
    let start = match tokio::time::timeout(PREFACE_TIMEOUT, read_client_start(&mut upgraded)).await
    {
        Ok(Ok(start)) => start,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, %peer, "h2c: reading the client preface failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "h2c: no client preface in time");
            return;
        }
    };
    let (prefix, debt) = match start {
        ClientStart::Settings(mut prefix) => {
            prefix.extend_from_slice(&frames);
            (prefix, debt)
        }
        ClientStart::Invalid(prefix) => (prefix, 0),
    };
    let io = UpgradedIo::new(upgraded, Bytes::from(prefix), debt);

    let stream1 = UpgradeRequest(Mutex::new(Some(parts)));
    let service = service_fn(move |req: Request<Incoming>| {
        let served = handler.clone().handle(stream1.adopt(req), peer);
        async move { Ok::<_, Infallible>(served.await) }
    });
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE);
    if let Err(err) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(error = %err, %peer, "h2c connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use tokio::io::AsyncWriteExt;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const CURL_SETTINGS: &str = "AAMAAABkAARAAAAAAAIAAAAA";

    #[test]
    fn curl_upgrade_is_recognized() {
        assert!(is_h2c_upgrade(&headers(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", CURL_SETTINGS),
        ])));
        // Tokens in any case, spread over several values, among others.
        assert!(is_h2c_upgrade(&headers(&[
            ("connection", "keep-alive ,\tupgrade"),
            ("connection", "http2-settings"),
            ("upgrade", "websocket, H2C"),
            ("http2-settings", ""),
        ])));
    }

    #[test]
    fn incomplete_upgrades_are_not_recognized() {
        let full = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", CURL_SETTINGS),
        ];
        for missing in 0..full.len() {
            let mut pairs = full.to_vec();
            pairs.remove(missing);
            assert!(
                !is_h2c_upgrade(&headers(&pairs)),
                "without {:?}",
                full[missing]
            );
        }
        assert!(!is_h2c_upgrade(&headers(&[
            ("connection", "HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", CURL_SETTINGS),
        ])));
        assert!(!is_h2c_upgrade(&headers(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2"),
            ("http2-settings", CURL_SETTINGS),
        ])));
        // A token must match whole, not as a substring.
        assert!(!is_h2c_upgrade(&headers(&[
            ("connection", "Upgrade, HTTP2-Settingsx"),
            ("upgrade", "h2c"),
            ("http2-settings", CURL_SETTINGS),
        ])));
    }

    #[test]
    fn base64url_decodes_like_go_raw_url_encoding() {
        assert_eq!(
            decode_base64url(CURL_SETTINGS.as_bytes()).unwrap(),
            [0, 3, 0, 0, 0, 100, 0, 4, 0x40, 0, 0, 0, 0, 2, 0, 0, 0, 0]
        );
        assert_eq!(decode_base64url(b"").unwrap(), b"");
        assert_eq!(decode_base64url(b"-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode_base64url(b"YQ").unwrap(), b"a");
        assert_eq!(decode_base64url(b"YWI").unwrap(), b"ab");
        assert_eq!(decode_base64url(b"YWJj").unwrap(), b"abc");
        // Padding, the standard alphabet's + and /, and a lone sextet are errors.
        for bad in [&b"YQ=="[..], b"+/8", b"YWJjZ", b"YW J"] {
            assert_eq!(decode_base64url(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn settings_header_is_validated() {
        let check = |pairs: &[(&'static str, &'static str)]| check_settings(&headers(pairs));
        assert_eq!(check(&[("http2-settings", CURL_SETTINGS)]), Ok(()));
        assert_eq!(check(&[("http2-settings", "")]), Ok(()));
        assert_eq!(check(&[]), Err(SettingsError::Count(0)));
        assert_eq!(
            check(&[("http2-settings", ""), ("http2-settings", "")]),
            Err(SettingsError::Count(2))
        );
        assert_eq!(
            check(&[("http2-settings", "AA==")]),
            Err(SettingsError::Base64)
        );
        assert_eq!(
            check(&[("http2-settings", "AAMA")]),
            Err(SettingsError::Length(3))
        );
        // ENABLE_PUSH = 2.
        assert_eq!(
            check(&[("http2-settings", "AAIAAAAC")]),
            Err(SettingsError::Value { id: 2, value: 2 })
        );
        // MAX_FRAME_SIZE = 16383.
        assert_eq!(
            check(&[("http2-settings", "AAUAAD__")]),
            Err(SettingsError::Value {
                id: 5,
                value: 16_383
            })
        );
        // An unknown setting is fine.
        assert_eq!(check(&[("http2-settings", "AP8AAAAC")]), Ok(()));
    }

    fn get(
        uri: &str,
        pairs: &[(&'static str, &'static str)],
        body: &'static str,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::get(uri)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        *req.headers_mut() = headers(pairs);
        req
    }

    #[test]
    fn request_block_has_pseudo_headers_then_h2_fields() {
        let req = get(
            "/x?y=1",
            &[
                ("host", "example.com:8080"),
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
                ("http2-settings", CURL_SETTINGS),
                ("user-agent", "curl/7.88.1"),
            ],
            "",
        );
        let mut expected = Vec::new();
        for (name, value) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/x?y=1"),
            (":authority", "example.com:8080"),
            ("user-agent", "curl/7.88.1"),
        ] {
            expected.push(0x00);
            expected.push(name.len() as u8);
            expected.extend_from_slice(name.as_bytes());
            expected.push(value.len() as u8);
            expected.extend_from_slice(value.as_bytes());
        }
        assert_eq!(request_block(&req).unwrap(), expected);
    }

    #[test]
    fn authority_falls_back_to_the_absolute_uri_and_may_be_absent() {
        let req = get("http://a.example/p", &[], "");
        let block = request_block(&req).unwrap();
        assert!(block.ends_with(b"\x00\x0a:authority\x09a.example"));
        let req = get("/p", &[("host", "")], "");
        let block = request_block(&req).unwrap();
        assert!(!block.windows(10).any(|w| w == b":authority"));
    }

    #[test]
    fn requests_h2_cannot_carry_are_declined() {
        let mut connect = get("/", &[("host", "a")], "");
        *connect.method_mut() = Method::CONNECT;
        assert_eq!(request_block(&connect), Err(Decline::Connect));
        assert_eq!(
            request_block(&get("/", &[("host", "bad host")], "")),
            Err(Decline::Authority)
        );
        let big: &'static str = "x".repeat(MAX_UPGRADE_BODY + 1).leak();
        assert_eq!(
            request_block(&get("/", &[], big)),
            Err(Decline::BodyTooLarge)
        );
        let fits: &'static str = "x".repeat(MAX_UPGRADE_BODY).leak();
        assert!(request_block(&get("/", &[], fits)).is_ok());
        let long: &'static str = "v".repeat(MAX_HEADER_LIST_SIZE as usize).leak();
        assert_eq!(
            request_block(&get("/", &[("x-long", long)], "")),
            Err(Decline::HeaderListTooLarge)
        );
    }

    #[test]
    fn stream_1_adopts_the_upgrading_request_once() {
        let original = Request::post("/x?y=1")
            .header("host", "example.com")
            .header("connection", "Upgrade, HTTP2-Settings")
            .body(())
            .unwrap();
        let (parts, ()) = original.into_parts();
        let stream1 = UpgradeRequest(Mutex::new(Some(parts)));

        let h2 = Request::post("http://example.com/x?y=1")
            .version(http::Version::HTTP_2)
            .body("body")
            .unwrap();
        let adopted = stream1.adopt(h2);
        assert_eq!(adopted.version(), http::Version::HTTP_11);
        assert_eq!(adopted.uri(), "/x?y=1");
        assert_eq!(adopted.headers()["host"], "example.com");
        assert_eq!(*adopted.body(), "body");

        let later = Request::post("http://example.com/x?y=1")
            .version(http::Version::HTTP_2)
            .body("again")
            .unwrap();
        assert_eq!(stream1.adopt(later).version(), http::Version::HTTP_2);
    }

    #[test]
    fn a_different_first_request_is_not_adopted() {
        let (parts, ()) = Request::get("/a").body(()).unwrap().into_parts();
        let stream1 = UpgradeRequest(Mutex::new(Some(parts)));
        let other = Request::get("http://h/b")
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        assert_eq!(stream1.adopt(other).uri(), "http://h/b");
        // Nor is any request after it.
        let late = Request::get("http://h/a")
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        assert_eq!(stream1.adopt(late).version(), http::Version::HTTP_2);
    }

    #[tokio::test]
    async fn client_start_is_preface_and_settings() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut sent = PREFACE.to_vec();
        sent.extend_from_slice(&[0, 0, 6, SETTINGS, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        client.write_all(&sent).await.unwrap();
        // What follows SETTINGS is left unread.
        client.write_all(b"next").await.unwrap();
        assert_eq!(
            read_client_start(&mut server).await.unwrap(),
            ClientStart::Settings(sent)
        );
        let mut next = [0u8; 4];
        server.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"next");
    }

    #[tokio::test]
    async fn other_client_starts_pass_through_unread_beyond_the_problem() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            read_client_start(&mut server).await.unwrap(),
            ClientStart::Invalid(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..24].to_vec())
        );

        // A PING first, and a SETTINGS ACK first.
        for first in [
            [0, 0, 8, 6, 0, 0, 0, 0, 0],
            [0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0],
        ] {
            let (mut client, mut server) = tokio::io::duplex(1024);
            let mut sent = PREFACE.to_vec();
            sent.extend_from_slice(&first);
            client.write_all(&sent).await.unwrap();
            assert_eq!(
                read_client_start(&mut server).await.unwrap(),
                ClientStart::Invalid(sent)
            );
        }
    }

    #[tokio::test]
    async fn body_is_read_up_to_the_cap() {
        let fits = Full::new(Bytes::from(vec![7u8; MAX_UPGRADE_BODY]));
        let (data, trailers) = read_body(fits).await.unwrap();
        assert_eq!(data.len(), MAX_UPGRADE_BODY);
        assert!(trailers.is_none());

        let over = Full::new(Bytes::from(vec![7u8; MAX_UPGRADE_BODY + 1]));
        assert!(matches!(
            read_body(over).await,
            Err(UpgradeError::BodyTooLarge)
        ));
    }

    /// Says what it got: version, body, and the `x-sum` trailer.
    struct Describe;

    impl Handler for Describe {
        async fn handle(
            self: Arc<Self>,
            req: Request<Incoming>,
            _peer: SocketAddr,
        ) -> Response<ProxyBody> {
            let version = req.version();
            let upgrade = req.headers().get(header::UPGRADE).cloned();
            let collected = req.into_body().collect().await.unwrap();
            let sum = collected.trailers().and_then(|t| t.get("x-sum").cloned());
            let body = collected.to_bytes();
            Response::new(ProxyBody::local(format!(
                "{version:?} upgrade={upgrade:?} body={} x-sum={sum:?}",
                String::from_utf8_lossy(&body)
            )))
        }
    }

    /// The whole exchange over loopback with an HTTP/1.1 server routing to
    /// [`upgrade`]: the handler gets stream 1 as HTTP/1.1 with its chunked body
    /// and trailers, and the answer comes back as HTTP/2 frames.
    #[tokio::test]
    async fn stream_1_carries_body_and_trailers_to_the_handler() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, peer) = listener.accept().await.unwrap();
            let service = service_fn(move |req| async move {
                Ok::<_, Infallible>(upgrade(req, peer, Arc::new(Describe)).await)
            });
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
                .unwrap();
        });

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(
                b"POST /t HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                  Upgrade: h2c\r\nHTTP2-Settings: \r\nTransfer-Encoding: chunked\r\n\
                  Trailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 5\r\n\r\n",
            )
            .await
            .unwrap();
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {got:?}");
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        got.drain(..head_end);

        client.write_all(PREFACE).await.unwrap();
        client
            .write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        let mut body = Vec::new();
        loop {
            while got.len() < FRAME_HEADER_LEN
                || got.len() < FRAME_HEADER_LEN + FrameHead::parse(got[..9].try_into().unwrap()).len
            {
                let mut chunk = [0u8; 4096];
                let n = client.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed after {got:?}");
                got.extend_from_slice(&chunk[..n]);
            }
            let head = FrameHead::parse(got[..9].try_into().unwrap());
            let frame: Vec<u8> = got.drain(..FRAME_HEADER_LEN + head.len).collect();
            assert_ne!(head.kind, 0x3, "RST_STREAM");
            assert_ne!(head.kind, 0x7, "GOAWAY");
            if head.stream == 1 && head.kind == frames::DATA {
                body.extend_from_slice(&frame[FRAME_HEADER_LEN..]);
                if head.flags & frames::END_STREAM != 0 {
                    break;
                }
            }
        }
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"HTTP/1.1 upgrade=None body=hello x-sum=Some("5")"#
        );
    }

    #[test]
    fn error_statuses() {
        let status = |err: UpgradeError| err.into_response().status();
        assert_eq!(
            status(SettingsError::Base64.into()),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(UpgradeError::BodyTooLarge),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(UpgradeError::TrailersTooLarge),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
}
