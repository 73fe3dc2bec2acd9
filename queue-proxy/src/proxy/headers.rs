//! Header rules for the hop to the app and back, as Go's `httputil.ReverseProxy`
//! applies them in upstream's proxy (`pkg/queue/sharedmain/handlers.go`,
//! `knative.dev/networking/pkg/http/proxy`).
//!
//! Toward the app: hop-by-hop headers go (`Connection` and what it names,
//! `Proxy-Connection`, `Keep-Alive`, `Proxy-Authenticate`, `Proxy-Authorization`,
//! `TE` unless it asks for trailers, `Transfer-Encoding`, and `Upgrade` unless the
//! request upgrades); the peer's IP is appended to `X-Forwarded-For`; nothing else
//! is added (no `Via`, no `User-Agent`, no `Accept-Encoding`). Back from the app
//! the same hop-by-hop headers go, except on a 101.
//!
//! `Trailer` is hop-by-hop too, but Go's transport announces the trailers it
//! forwards again, both ways; hyper sends HTTP/1.1 trailers only when they are
//! announced, so the announcement is kept instead.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::cell::RefCell;
use std::net::IpAddr;

use crate::headers::{KNATIVE_SERVING_NAMESPACE, KNATIVE_SERVING_REVISION, X_FORWARDED_FOR};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop by rule, whatever `Connection` names.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::UPGRADE
        || *name == header::TRANSFER_ENCODING
        || *name == header::PROXY_AUTHENTICATE
        || *name == header::PROXY_AUTHORIZATION
        || *name == KEEP_ALIVE
        || *name == PROXY_CONNECTION
}

/// The protocol a request asks to upgrade to (`Connection: upgrade` plus
/// `Upgrade: <proto>`), as Go's `upgradeType` decides it.
pub fn upgrade_type(headers: &HeaderMap) -> Option<HeaderValue> {
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return None;
    }
    headers.get(header::UPGRADE).cloned()
}

/// Applies the outbound rules to a request's headers. `upgrade` is the value of
/// [`upgrade_type`] taken before any header was removed.
pub fn to_app(headers: &mut HeaderMap, peer: IpAddr, upgrade: Option<HeaderValue>) {
    // One pass over the names tells what there is to do; usually nothing.
    let (mut knative, mut hop) = (false, false);
    for name in headers.keys() {
        knative |= *name == KNATIVE_SERVING_REVISION || *name == KNATIVE_SERVING_NAMESPACE;
        hop |= is_hop_by_hop(name);
    }
    if knative {
        headers.remove(KNATIVE_SERVING_REVISION);
        headers.remove(KNATIVE_SERVING_NAMESPACE);
    }
    if hop {
        let wants_trailers = has_token(headers, &header::TE, "trailers");
        remove_hop_by_hop(headers);
        if wants_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if let Some(proto) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, proto);
    }
    append_forwarded_for(headers, peer);
}

/// Applies the inbound rules to a response's headers.
pub fn from_app(headers: &mut HeaderMap, switching_protocols: bool) {
    if !switching_protocols && headers.keys().any(is_hop_by_hop) {
        remove_hop_by_hop(headers);
    }
}

/// Removes `Connection`, the headers it names, and every hop-by-hop header.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in present {
        headers.remove(name);
    }
}

thread_local! {
    /// The last peer's `X-Forwarded-For` value: a connection's requests, and a
    /// sidecar's few peers (ingress, activator), hit it nearly always.
    static PEER_VALUE: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
}

/// The peer's IP as a header value, as Go prints it.
fn peer_value(peer: IpAddr) -> HeaderValue {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; Go shows them as IPv4.
    let peer = peer.to_canonical();
    PEER_VALUE.with(|cached| {
        let mut cached = cached.borrow_mut();
        match &*cached {
            Some((ip, value)) if *ip == peer => value.clone(),
            _ => {
                let value = HeaderValue::from_str(&peer.to_string())
                    .expect("an IP address is a valid header value");
                *cached = Some((peer, value.clone()));
                value
            }
        }
    })
}

/// `X-Forwarded-For: <prior, joined by ", ">, <peer>`, as Go writes it.
fn append_forwarded_for(headers: &mut HeaderMap, peer: IpAddr) {
    let peer = peer_value(peer);
    let mut prior = headers.get_all(&X_FORWARDED_FOR).iter();
    let value = match (prior.next(), prior.next()) {
        (None, _) => Ok(peer),
        (Some(only), None) => join_forwarded(&[only.as_bytes()], peer.as_bytes()),
        (Some(first), Some(second)) => {
            let mut all = vec![first.as_bytes(), second.as_bytes()];
            all.extend(prior.map(HeaderValue::as_bytes));
            join_forwarded(&all, peer.as_bytes())
        }
    };
    if let Ok(value) = value {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

fn join_forwarded(prior: &[&[u8]], peer: &[u8]) -> Result<HeaderValue, header::InvalidHeaderValue> {
    let len = prior.iter().map(|p| p.len() + 2).sum::<usize>() + peer.len();
    let mut out = Vec::with_capacity(len);
    for p in prior {
        out.extend_from_slice(p);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer);
    HeaderValue::from_bytes(&out)
}

/// Whether any value of `name` lists `token` (comma-separated, case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    #[test]
    fn strips_revision_headers_and_hop_by_hop() {
        let mut h = map(&[
            ("knative-serving-revision", "r"),
            ("knative-serving-namespace", "n"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "x"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("k-proxy-request", "activator"),
            ("knative-serving-tag", "t"),
        ]);
        to_app(&mut h, PEER, None);
        for gone in [
            "knative-serving-revision",
            "knative-serving-namespace",
            "connection",
            "x-private",
            "keep-alive",
            "proxy-authorization",
            "te",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone} should be removed");
        }
        assert_eq!(h["k-proxy-request"], "activator");
        assert_eq!(h["knative-serving-tag"], "t");
    }

    #[test]
    fn keeps_te_trailers_and_upgrade_when_upgrading() {
        let mut h = map(&[
            ("te", "trailers, deflate"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        let up = upgrade_type(&h);
        assert_eq!(up.as_ref().unwrap(), "websocket");
        to_app(&mut h, PEER, up);
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["connection"], "Upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn upgrade_needs_the_connection_token() {
        assert!(upgrade_type(&map(&[("upgrade", "websocket")])).is_none());
        let h = map(&[
            ("connection", "keep-alive, upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(upgrade_type(&h).is_some());
    }

    #[test]
    fn appends_peer_to_forwarded_for() {
        let mut h = HeaderMap::new();
        to_app(&mut h, PEER, None);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");

        let mut h = map(&[("x-forwarded-for", "1.2.3.4")]);
        to_app(&mut h, PEER, None);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.7");

        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
        ]);
        to_app(&mut h, "::ffff:10.0.0.7".parse().unwrap(), None);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 5.6.7.8, 10.0.0.7");

        let mut h = HeaderMap::new();
        to_app(&mut h, "2001:db8::1".parse().unwrap(), None);
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
    }

    #[test]
    fn response_rules_keep_trailer_announcement_and_101_headers() {
        let mut h = map(&[
            ("connection", "close"),
            ("keep-alive", "x"),
            ("trailer", "grpc-status"),
        ]);
        from_app(&mut h, false);
        assert!(!h.contains_key("connection"));
        assert!(!h.contains_key("keep-alive"));
        assert_eq!(h["trailer"], "grpc-status");

        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        from_app(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
    }
}
