//! The template's dot: upstream's `RequestLogTemplateInput` (`.Request`, `.Response`,
//! `.Revision`, `.TraceID`), with `.Request` behaving like the `*http.Request` a Go server
//! hands its handlers.
//!
//! What a Go server does to a request before handlers see it is mirrored, because templates
//! print it:
//!
//! - `Header` is keyed by canonical names (`X-B3-Traceid`), so `index .Request.Header
//!   "X-B3-Traceid"` finds the header and `index .Request.Header "x-b3-traceid"` does not;
//!   `Header.Get` canonicalizes its argument. HTTP/1.x drops `Host` (it is in `.Host`),
//!   `Transfer-Encoding` (it is in `.TransferEncoding`), `Content-Length` of a chunked
//!   request, `Trailer` of a chunked request and, on HTTP/1.1, a `Connection` header naming
//!   `close` (it is in `.Close`). HTTP/2 joins several `Cookie` fields with `"; "` and drops
//!   `Trailer`.
//! - `URL` is parsed from the request target as `url.ParseRequestURI` does (path decoded,
//!   `RawPath` kept only when needed, `String()` re-escaping), and `RequestURI` is the target
//!   as sent (`:path` on HTTP/2).
//! - `Proto` is `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`; `RemoteAddr` is `ip:port` (IPv6 in
//!   brackets, IPv4-mapped IPv6 shown as IPv4 like Go's listener reports it).
//! - `.TraceID` is upstream's `ExtractTraceID`: the second `-`-separated field of
//!   `traceparent`, else `X-B3-TraceId`, else empty.
//!
//! Values are borrowed from the request where they can be (header values, method), and
//! computed on first use otherwise (the parsed URL), so a template pays only for what it
//! prints.
//!
//! Fields and methods of Go's types that cannot be reproduced (`Body`, `Context`,
//! `Cookie`, `Form`, …) fail execution with an error naming them, rather than print
//! something Go would not.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::SocketAddr;

use http::header::{CONNECTION, CONTENT_LENGTH, COOKIE, HOST, TRAILER, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, Method, Version};

use super::entry::{LogEntry, RequestInfo, ResponseInfo, RevisionInfo};
use super::gourl::{GoUrl, QueryValues};
use super::template::{IntType, Member, Object, Param, Shape, Value};

/// The template's dot for one line.
pub(crate) struct Input<'r> {
    request: RequestView<'r>,
    response: ResponseInfo,
    revision: &'r RevisionInfo,
}

impl<'r> Input<'r> {
    pub(crate) fn new(entry: &LogEntry<'r>, revision: &'r RevisionInfo) -> Self {
        Input {
            request: RequestView::new(entry.request),
            response: entry.response,
            revision,
        }
    }

    /// `Request.Method`, for the "Invalid request log template" line.
    pub(crate) fn method(&self) -> &str {
        self.request.info.method.as_str()
    }

    /// `Request.URL.String()`, for the "Invalid request log template" line.
    pub(crate) fn url_string(&self) -> Vec<u8> {
        self.request.url().url.to_go_string()
    }

    /// `Response`, for the "Invalid request log template" line.
    pub(crate) fn response(&self) -> ResponseInfo {
        self.response
    }
}

impl<'a> Object<'a> for Input<'_> {
    fn type_name(&self) -> &'static str {
        "*http.RequestLogTemplateInput"
    }

    fn member(&'a self, name: &str) -> Member<'a> {
        match name {
            "Request" => Member::Field(Value::Obj(&self.request)),
            "Response" => Member::Field(Value::Obj(&self.response)),
            "Revision" => Member::Field(Value::Obj(self.revision)),
            "TraceID" => Member::Field(Value::Str(trace_id(&self.request.info.headers))),
            _ => Member::NotFound,
        }
    }
}

/// Upstream's `ExtractTraceID`.
fn trace_id(headers: &HeaderMap) -> Cow<'_, [u8]> {
    if let Some(tp) = headers.get("traceparent").map(|v| v.as_bytes())
        && !tp.is_empty()
    {
        // strings.SplitN(tp, "-", 3): the second part, if there is a dash at all.
        let mut parts = tp.splitn(3, |&c| c == b'-');
        parts.next();
        if let Some(id) = parts.next() {
            return Cow::Borrowed(id);
        }
    }
    match headers.get("x-b3-traceid") {
        Some(v) if !v.is_empty() => Cow::Borrowed(v.as_bytes()),
        _ => Cow::Borrowed(b""),
    }
}

impl<'a> Object<'a> for ResponseInfo {
    fn type_name(&self) -> &'static str {
        "*http.RequestLogResponse"
    }

    fn member(&'a self, name: &str) -> Member<'a> {
        match name {
            "Code" => Member::Field(Value::int(self.code)),
            "Size" => Member::Field(Value::int(self.size)),
            "Latency" => Member::Field(Value::Float(self.latency)),
            _ => Member::NotFound,
        }
    }

    fn fields(&'a self) -> Option<Vec<(&'static str, Value<'a>)>> {
        Some(vec![
            ("Code", Value::int(self.code)),
            ("Size", Value::int(self.size)),
            ("Latency", Value::Float(self.latency)),
        ])
    }
}

impl<'a> Object<'a> for RevisionInfo {
    fn type_name(&self) -> &'static str {
        "*http.RequestLogRevision"
    }

    fn member(&'a self, name: &str) -> Member<'a> {
        let s = match name {
            "Name" => &self.name,
            "Namespace" => &self.namespace,
            "Service" => &self.service,
            "Configuration" => &self.configuration,
            "PodName" => &self.pod_name,
            "PodIP" => &self.pod_ip,
            _ => return Member::NotFound,
        };
        Member::Field(Value::str(s.as_bytes()))
    }

    fn fields(&'a self) -> Option<Vec<(&'static str, Value<'a>)>> {
        Some(
            [
                ("Name", &self.name),
                ("Namespace", &self.namespace),
                ("Service", &self.service),
                ("Configuration", &self.configuration),
                ("PodName", &self.pod_name),
                ("PodIP", &self.pod_ip),
            ]
            .into_iter()
            .map(|(n, s)| (n, Value::str(s.as_bytes())))
            .collect(),
        )
    }
}

/// Go's `(major, minor)` for a version, and its `Proto` string.
fn proto(version: Version) -> (&'static str, i64, i64) {
    match version {
        Version::HTTP_09 => ("HTTP/0.9", 0, 9),
        Version::HTTP_10 => ("HTTP/1.0", 1, 0),
        Version::HTTP_2 => ("HTTP/2.0", 2, 0),
        Version::HTTP_3 => ("HTTP/3.0", 3, 0),
        _ => ("HTTP/1.1", 1, 1),
    }
}

fn is_http1(version: Version) -> bool {
    matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    )
}

/// `httpguts.HeaderValuesContainsToken`: a comma-separated token, case-insensitively.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&c| c == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// `*http.Request`.
struct RequestView<'r> {
    info: &'r RequestInfo,
    header: HeaderView<'r>,
    chunked: bool,
    close: bool,
    url: OnceCell<UrlView>,
}

impl<'r> RequestView<'r> {
    fn new(info: &'r RequestInfo) -> Self {
        let h1 = is_http1(info.version);
        let (_, major, minor) = proto(info.version);
        let at_least_11 = major > 1 || major == 1 && minor >= 1;
        let chunked = h1 && at_least_11 && info.headers.contains_key(TRANSFER_ENCODING);
        let has_close = has_token(&info.headers, &CONNECTION, "close");
        let close = match (major, minor) {
            (0, _) => true,
            (1, 0) => has_close || !has_token(&info.headers, &CONNECTION, "keep-alive"),
            (1, _) => has_close,
            _ => false,
        };
        RequestView {
            info,
            header: HeaderView {
                map: &info.headers,
                http1: h1,
                hide_connection: h1 && at_least_11 && has_close,
                chunked,
            },
            chunked,
            close,
            url: OnceCell::new(),
        }
    }

    /// `RequestURI`: the target as sent (`:path` on HTTP/2).
    fn request_uri(&self) -> Cow<'r, [u8]> {
        let uri = &self.info.uri;
        if is_http1(self.info.version) && uri.scheme().is_some() {
            return Cow::Owned(uri.to_string().into_bytes());
        }
        match (uri.path_and_query(), uri.authority()) {
            (Some(pq), _) => Cow::Borrowed(pq.as_str().as_bytes()),
            (None, Some(a)) => Cow::Borrowed(a.as_str().as_bytes()),
            (None, None) => Cow::Borrowed(b""),
        }
    }

    fn url(&self) -> &UrlView {
        self.url.get_or_init(|| {
            let raw = self.request_uri();
            let connect = self.info.method == Method::CONNECT && !raw.starts_with(b"/");
            let url = if connect {
                // Go parses an authority-form target as "http://" + target, then drops the
                // scheme.
                let mut with_scheme = b"http://".to_vec();
                with_scheme.extend_from_slice(&raw);
                GoUrl::parse_request_uri(&with_scheme).map(|mut u| {
                    u.scheme.clear();
                    u
                })
            } else {
                GoUrl::parse_request_uri(&raw)
            };
            UrlView {
                // A target Go would reject with 400 never reaches a Go handler; keep it
                // verbatim rather than fail.
                url: url.unwrap_or_else(|| GoUrl::verbatim(&raw)),
                query: OnceCell::new(),
            }
        })
    }

    /// `Host`: the URL's host, else the `Host` header (`:authority` on HTTP/2).
    fn host(&self) -> Cow<'r, [u8]> {
        if let Some(a) = self.info.uri.authority() {
            return Cow::Borrowed(a.as_str().as_bytes());
        }
        Cow::Borrowed(
            self.info
                .headers
                .get(HOST)
                .map_or(&b""[..], |v| v.as_bytes()),
        )
    }

    fn remote_addr(&self) -> Vec<u8> {
        match self.info.remote_addr {
            None => Vec::new(),
            Some(SocketAddr::V6(a)) if a.ip().to_ipv4_mapped().is_some() => {
                let v4 = a
                    .ip()
                    .to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
                format!("{v4}:{}", a.port()).into_bytes()
            }
            Some(a) => a.to_string().into_bytes(),
        }
    }
}

/// Fields of `http.Request` (and its methods) this engine does not reproduce.
const REQUEST_UNSUPPORTED: &[&str] = &[
    "Body",
    "GetBody",
    "Form",
    "PostForm",
    "MultipartForm",
    "Trailer",
    "Cancel",
    "Response",
    "Pattern",
    "AddCookie",
    "BasicAuth",
    "Clone",
    "Context",
    "Cookie",
    "Cookies",
    "CookiesNamed",
    "FormFile",
    "FormValue",
    "MultipartReader",
    "ParseForm",
    "ParseMultipartForm",
    "PathValue",
    "PostFormValue",
    "SetBasicAuth",
    "SetPathValue",
    "WithContext",
    "Write",
    "WriteProxy",
];

impl<'a> Object<'a> for RequestView<'_> {
    fn type_name(&self) -> &'static str {
        "*http.Request"
    }

    fn member(&'a self, name: &str) -> Member<'a> {
        let (proto, major, minor) = proto(self.info.version);
        Member::Field(match name {
            "Method" => Value::str(self.info.method.as_str().as_bytes()),
            "URL" => Value::Obj(self.url()),
            "Proto" => Value::str(proto.as_bytes()),
            "ProtoMajor" => Value::int(major),
            "ProtoMinor" => Value::int(minor),
            "Header" => Value::Obj(&self.header),
            "ContentLength" => Value::Int(self.info.content_length, IntType::Int64),
            "TransferEncoding" => {
                if self.chunked {
                    Value::Strings(vec![Cow::Borrowed(b"chunked")])
                } else {
                    Value::Strings(Vec::new())
                }
            }
            "Close" => Value::Bool(self.close),
            "Host" => Value::Str(self.host()),
            "RemoteAddr" => Value::Str(Cow::Owned(self.remote_addr())),
            "RequestURI" => Value::Str(self.request_uri()),
            "TLS" => Value::Obj(if self.info.tls { &TLS_STATE } else { &NIL_TLS }),
            "UserAgent" | "Referer" => return Member::Method(&[]),
            "ProtoAtLeast" => return Member::Method(&[Param::Int, Param::Int]),
            n if REQUEST_UNSUPPORTED.contains(&n) => return Member::Unsupported,
            _ => return Member::NotFound,
        })
    }

    fn call(&'a self, name: &str, args: &[Value<'a>]) -> Result<Value<'a>, String> {
        match (name, args) {
            ("UserAgent", []) => Ok(Value::Str(self.header.get(b"User-Agent"))),
            ("Referer", []) => Ok(Value::Str(self.header.get(b"Referer"))),
            ("ProtoAtLeast", [Value::Int(maj, _), Value::Int(min, _)]) => {
                let (_, major, minor) = proto(self.info.version);
                Ok(Value::Bool(major > *maj || major == *maj && minor >= *min))
            }
            _ => Err(format!("no method {name} with these arguments")),
        }
    }
}

/// `*tls.ConnectionState`: nil on cleartext requests; opaque otherwise.
struct TlsState {
    nil: bool,
}

static NIL_TLS: TlsState = TlsState { nil: true };
static TLS_STATE: TlsState = TlsState { nil: false };

impl<'a> Object<'a> for TlsState {
    fn type_name(&self) -> &'static str {
        "*tls.ConnectionState"
    }

    fn shape(&self) -> Shape {
        if self.nil {
            Shape::NilPointer
        } else {
            Shape::Struct
        }
    }

    fn member(&'a self, name: &str) -> Member<'a> {
        const FIELDS: &[&str] = &[
            "Version",
            "HandshakeComplete",
            "DidResume",
            "CipherSuite",
            "NegotiatedProtocol",
            "NegotiatedProtocolIsMutual",
            "ServerName",
            "PeerCertificates",
            "VerifiedChains",
            "SignedCertificateTimestamps",
            "OCSPResponse",
            "TLSUnique",
            "ECHAccepted",
            "ExportKeyingMaterial",
        ];
        if !FIELDS.contains(&name) {
            return Member::NotFound;
        }
        if self.nil {
            Member::Field(Value::Nil)
        } else {
            Member::Unsupported
        }
    }
}

/// `http.Header` (`map[string][]string` with canonical keys), as a Go server fills it.
struct HeaderView<'r> {
    map: &'r HeaderMap,
    http1: bool,
    hide_connection: bool,
    chunked: bool,
}

/// Go's `CanonicalMIMEHeaderKey` for a valid (token) header name.
fn canonical(name: &[u8]) -> Vec<u8> {
    let mut upper = true;
    name.iter()
        .map(|&c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == b'-';
            out
        })
        .collect()
}

impl<'r> HeaderView<'r> {
    /// Whether the Go server would have removed this header from `Request.Header`.
    fn hidden(&self, name: &HeaderName) -> bool {
        if self.http1 {
            *name == HOST
                || *name == TRANSFER_ENCODING
                || self.hide_connection && *name == CONNECTION
                || self.chunked && (*name == CONTENT_LENGTH || *name == TRAILER)
        } else {
            *name == TRAILER
        }
    }

    /// The visible values for a header name, HTTP/2 cookies joined.
    fn values(&self, name: &HeaderName) -> Option<Vec<Cow<'r, [u8]>>> {
        if self.hidden(name) {
            return None;
        }
        let mut values: Vec<Cow<'r, [u8]>> = self
            .map
            .get_all(name)
            .iter()
            .map(|v| Cow::Borrowed(v.as_bytes()))
            .collect();
        if values.is_empty() {
            return None;
        }
        if !self.http1 && *name == COOKIE && values.len() > 1 {
            values = vec![Cow::Owned(values.join(&b"; "[..]))];
        }
        Some(values)
    }

    /// The values under a map key, which must be spelled canonically as Go's map keys are.
    fn lookup(&self, key: &[u8]) -> Option<Vec<Cow<'r, [u8]>>> {
        let name = HeaderName::from_bytes(key).ok()?;
        if canonical(name.as_str().as_bytes()) != key {
            return None;
        }
        self.values(&name)
    }

    /// `Header.Get(key)`: the first value under the canonicalized key, or "".
    fn get(&self, key: &[u8]) -> Cow<'r, [u8]> {
        HeaderName::from_bytes(key)
            .ok()
            .and_then(|n| self.values(&n))
            .and_then(|v| v.into_iter().next())
            .unwrap_or(Cow::Borrowed(b""))
    }
}

impl<'a> Object<'a> for HeaderView<'_> {
    fn type_name(&self) -> &'static str {
        "http.Header"
    }

    fn shape(&self) -> Shape {
        Shape::Map
    }

    fn member(&'a self, name: &str) -> Member<'a> {
        match name {
            "Get" | "Values" => Member::Method(&[Param::Str]),
            "Add" | "Clone" | "Del" | "Set" | "Write" | "WriteSubset" => Member::Unsupported,
            key => Member::Field(self.map_get(key.as_bytes()).unwrap_or(Value::Nil)),
        }
    }

    fn call(&'a self, name: &str, args: &[Value<'a>]) -> Result<Value<'a>, String> {
        match (name, args) {
            ("Get", [Value::Str(key)]) => Ok(Value::Str(self.get(key))),
            ("Values", [Value::Str(key)]) => Ok(Value::Strings(
                HeaderName::from_bytes(key)
                    .ok()
                    .and_then(|n| self.values(&n))
                    .unwrap_or_default(),
            )),
            _ => Err(format!("no method {name} with these arguments")),
        }
    }

    fn map_len(&self) -> usize {
        self.map.keys().filter(|n| !self.hidden(n)).count()
    }

    fn map_get(&'a self, key: &[u8]) -> Option<Value<'a>> {
        self.lookup(key).map(Value::Strings)
    }

    fn map_entries(&'a self) -> Vec<(Cow<'a, [u8]>, Value<'a>)> {
        let mut entries: Vec<(Cow<'a, [u8]>, Value<'a>)> = self
            .map
            .keys()
            .filter_map(|n| {
                let values = self.values(n)?;
                Some((
                    Cow::Owned(canonical(n.as_str().as_bytes())),
                    Value::Strings(values),
                ))
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    }
}

/// `*url.URL`.
struct UrlView {
    url: GoUrl,
    query: OnceCell<ValuesView>,
}

impl<'a> Object<'a> for UrlView {
    fn type_name(&self) -> &'static str {
        "*url.URL"
    }

    fn member(&'a self, name: &str) -> Member<'a> {
        let u = &self.url;
        Member::Field(match name {
            "Scheme" => Value::str(&u.scheme),
            "Opaque" => Value::str(&u.opaque),
            "User" => match &u.user {
                None => Value::Obj(&NIL_USERINFO),
                Some(_) => return Member::Unsupported,
            },
            "Host" => Value::str(&u.host),
            "Path" => Value::str(&u.path),
            "RawPath" => Value::str(&u.raw_path),
            "OmitHost" => Value::Bool(u.omit_host),
            "ForceQuery" => Value::Bool(u.force_query),
            "RawQuery" => Value::str(&u.raw_query),
            "Fragment" | "RawFragment" => Value::str(b""),
            "String" | "EscapedPath" | "EscapedFragment" | "Hostname" | "Port" | "IsAbs"
            | "Query" | "Redacted" | "RequestURI" => return Member::Method(&[]),
            "JoinPath" | "MarshalBinary" | "AppendBinary" | "Parse" | "ResolveReference"
            | "UnmarshalBinary" => return Member::Unsupported,
            _ => return Member::NotFound,
        })
    }

    fn call(&'a self, name: &str, _args: &[Value<'a>]) -> Result<Value<'a>, String> {
        let u = &self.url;
        let owned = |v: Vec<u8>| Value::Str(Cow::Owned(v));
        Ok(match name {
            "String" | "Redacted" => owned(u.to_go_string()),
            "EscapedPath" => Value::Str(u.escaped_path()),
            "EscapedFragment" => Value::str(b""),
            "Hostname" => Value::str(u.hostname()),
            "Port" => Value::str(u.port()),
            "IsAbs" => Value::Bool(!u.scheme.is_empty()),
            "Query" => Value::Obj(self.query.get_or_init(|| ValuesView(u.query()))),
            "RequestURI" => owned(u.request_uri()),
            _ => return Err(format!("no method {name}")),
        })
    }

    fn stringer(&'a self) -> Option<Cow<'a, [u8]>> {
        Some(Cow::Owned(self.url.to_go_string()))
    }
}

/// A nil `*url.Userinfo`: its methods are nil-safe in Go and return "".
struct NilUserinfo;

static NIL_USERINFO: NilUserinfo = NilUserinfo;

impl<'a> Object<'a> for NilUserinfo {
    fn type_name(&self) -> &'static str {
        "*url.Userinfo"
    }

    fn shape(&self) -> Shape {
        Shape::NilPointer
    }

    fn member(&'a self, name: &str) -> Member<'a> {
        match name {
            "Username" | "String" => Member::Method(&[]),
            "Password" => Member::Unsupported,
            _ => Member::NotFound,
        }
    }

    fn call(&'a self, _name: &str, _args: &[Value<'a>]) -> Result<Value<'a>, String> {
        Ok(Value::str(b""))
    }

    fn stringer(&'a self) -> Option<Cow<'a, [u8]>> {
        Some(Cow::Borrowed(b""))
    }
}

/// `url.Values`.
struct ValuesView(QueryValues);

impl<'a> Object<'a> for ValuesView {
    fn type_name(&self) -> &'static str {
        "url.Values"
    }

    fn shape(&self) -> Shape {
        Shape::Map
    }

    fn member(&'a self, name: &str) -> Member<'a> {
        match name {
            "Get" | "Has" => Member::Method(&[Param::Str]),
            "Add" | "Del" | "Encode" | "Set" => Member::Unsupported,
            key => Member::Field(self.map_get(key.as_bytes()).unwrap_or(Value::Nil)),
        }
    }

    fn call(&'a self, name: &str, args: &[Value<'a>]) -> Result<Value<'a>, String> {
        match (name, args) {
            ("Get", [Value::Str(key)]) => Ok(Value::str(
                self.0
                    .get(key)
                    .and_then(|v| v.first())
                    .map_or(&b""[..], |v| &v[..]),
            )),
            ("Has", [Value::Str(key)]) => Ok(Value::Bool(self.0.get(key).is_some())),
            _ => Err(format!("no method {name} with these arguments")),
        }
    }

    fn map_len(&self) -> usize {
        self.0.entries().len()
    }

    fn map_get(&'a self, key: &[u8]) -> Option<Value<'a>> {
        self.0
            .get(key)
            .map(|v| Value::Strings(v.iter().map(|s| Cow::Borrowed(&s[..])).collect()))
    }

    fn map_entries(&'a self) -> Vec<(Cow<'a, [u8]>, Value<'a>)> {
        self.0
            .entries()
            .iter()
            .map(|(k, v)| {
                (
                    Cow::Borrowed(&k[..]),
                    Value::Strings(v.iter().map(|s| Cow::Borrowed(&s[..])).collect()),
                )
            })
            .collect()
    }
}
