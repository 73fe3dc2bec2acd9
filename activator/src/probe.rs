//! The requests the activator answers itself (spec §2.1 steps 1–3, §9):
//!
//! 1. **Kubelet health** (`User-Agent: kube-probe/…` or a non-empty
//!    `K-Kubelet-Probe`): 500 `received SIGTERM from kubelet` once shutting
//!    down, 500 `connection has not yet been established` while the autoscaler
//!    websocket is down (a fresh activator is not Ready until it is up), else
//!    200 with an empty body.
//! 2. **Network probe** (`K-Network-Probe: probe`): the hash is echoed, or 400
//!    without one. Every other request loses its `K-Network-Hash`.
//! 3. **Activator probe** (any other non-empty `K-Network-Probe`): `activator`
//!    answers 200 `activator`; anything else is 400 naming the value with Go's
//!    `%q` quoting (of the HTML-escaped value, as upstream's snapshot does).

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use queue_proxy::body::ProxyBody;
use queue_proxy::error::go_http_error;
use queue_proxy::headers::{
    ACTIVATOR_NAME, K_NETWORK_HASH, K_NETWORK_PROBE, NETWORK_PROBE_VALUE, is_kubelet_probe,
};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// What kubelet health checks consult.
pub struct Health {
    shutting_down: AtomicBool,
    link_up: watch::Receiver<bool>,
}

impl Health {
    /// Health gated on `link_up` (the autoscaler websocket's status).
    pub fn new(link_up: watch::Receiver<bool>) -> Self {
        Health {
            shutting_down: AtomicBool::new(false),
            link_up,
        }
    }

    /// The first SIGTERM: health fails from now on.
    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    fn answer(&self) -> Response<ProxyBody> {
        if self.shutting_down.load(Ordering::Acquire) {
            return go_http_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "received SIGTERM from kubelet",
            );
        }
        if !*self.link_up.borrow() {
            return go_http_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "connection has not yet been established",
            );
        }
        Response::new(ProxyBody::empty())
    }
}

/// The answer to a request the activator handles itself, or `None` for a request
/// to forward (with `K-Network-Hash` removed).
pub fn answer(health: &Health, headers: &mut HeaderMap) -> Option<Response<ProxyBody>> {
    if is_kubelet_probe(headers) {
        return Some(health.answer());
    }
    let probe = headers
        .get(K_NETWORK_PROBE)
        .filter(|v| !v.is_empty())
        .cloned();
    if probe
        .as_ref()
        .is_some_and(|v| v.as_bytes() == NETWORK_PROBE_VALUE.as_bytes())
    {
        return Some(queue_proxy::probes::network_probe(headers));
    }
    headers.remove(K_NETWORK_HASH);
    let probe = probe?;
    if probe.as_bytes() == ACTIVATOR_NAME.as_bytes() {
        let mut resp = Response::new(ProxyBody::local(ACTIVATOR_NAME));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Some(resp);
    }
    let value = String::from_utf8_lossy(probe.as_bytes());
    let message = format!(
        "unexpected probe header value: {}",
        go_quote(&html_escape(&value))
    );
    Some(go_http_error(StatusCode::BAD_REQUEST, &message))
}

/// Go's `html.EscapeString`.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `strconv.Quote` (`%q`): double quotes, with `\"`, `\\`, the C escapes,
/// and `\x`/`\u`/`\U` for anything not printable.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    async fn text(resp: Response<ProxyBody>) -> (StatusCode, String) {
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn go_quote_matches_strconv() {
        assert_eq!(go_quote("queue"), "\"queue\"");
        assert_eq!(go_quote("a\"b\\c\nd\x01"), "\"a\\\"b\\\\c\\nd\\x01\"");
        assert_eq!(go_quote("ünï"), "\"ünï\"");
        assert_eq!(
            go_quote(&html_escape("<a&'\">")),
            "\"&lt;a&amp;&#39;&#34;&gt;\""
        );
    }

    #[tokio::test]
    async fn kubelet_health_follows_shutdown_and_link() {
        let (tx, rx) = watch::channel(false);
        let health = Health::new(rx);
        let mut h = headers(&[("user-agent", "kube-probe/1.30")]);
        // §10 check 2: link down.
        let (status, body) = text(answer(&health, &mut h).unwrap()).await;
        assert_eq!(status, 500);
        assert_eq!(body, "connection has not yet been established\n");
        // §10 check 1: link up.
        tx.send(true).unwrap();
        let (status, body) = text(answer(&health, &mut h).unwrap()).await;
        assert_eq!((status.as_u16(), body.as_str()), (200, ""));
        // §10 check 3, with the header form too.
        health.shutting_down();
        let mut h = headers(&[("k-kubelet-probe", "1")]);
        let (status, body) = text(answer(&health, &mut h).unwrap()).await;
        assert_eq!(status, 500);
        assert_eq!(body, "received SIGTERM from kubelet\n");
    }

    #[tokio::test]
    async fn network_and_activator_probes() {
        let (_tx, rx) = watch::channel(true);
        let health = Health::new(rx);
        // §10 check 4: not a kubelet probe.
        assert!(answer(&health, &mut headers(&[("user-agent", "chromium/734.6.5")])).is_none());
        // §10 checks 5, 6.
        let resp = answer(
            &health,
            &mut headers(&[("k-network-probe", "probe"), ("k-network-hash", "abc")]),
        )
        .unwrap();
        assert_eq!(resp.headers()["k-network-hash"], "abc");
        assert_eq!(text(resp).await, (StatusCode::OK, String::new()));
        let (status, body) =
            text(answer(&health, &mut headers(&[("k-network-probe", "probe")])).unwrap()).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            "a probe request must contain a non-empty \"K-Network-Hash\" header\n"
        );
        // §10 check 7.
        let (status, body) =
            text(answer(&health, &mut headers(&[("k-network-probe", "activator")])).unwrap()).await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "activator"));
        // §10 check 8.
        let (status, body) =
            text(answer(&health, &mut headers(&[("k-network-probe", "queue")])).unwrap()).await;
        assert_eq!(status, 400);
        assert_eq!(body, "unexpected probe header value: \"queue\"\n");
        // §10 checks 9 and 19: an empty probe header is a normal request, and
        // K-Network-Hash goes.
        let mut h = headers(&[("k-network-probe", ""), ("k-network-hash", "x")]);
        assert!(answer(&health, &mut h).is_none());
        assert!(!h.contains_key("k-network-hash"));
    }
}
