//! The OTel HTTP semantic-convention values otelhttp derives from a request,
//! shared by the spans and the request metrics.

use http::{Method, Version};

/// `http.request.method`: the known methods as is, anything else `_OTHER`.
pub fn method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The server span's name: the method, or `HTTP` for a non-standard one.
pub fn server_span_name(m: &Method) -> &'static str {
    match method(m) {
        "_OTHER" => "HTTP",
        known => known,
    }
}

/// `network.protocol.version`.
pub fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(server_span_name(&Method::POST), "POST");
        assert_eq!(
            server_span_name(&Method::from_bytes(b"PURGE").unwrap()),
            "HTTP"
        );
        assert_eq!(method(&Method::from_bytes(b"PURGE").unwrap()), "_OTHER");
        assert_eq!(protocol_version(Version::HTTP_2), "2");
    }
}
