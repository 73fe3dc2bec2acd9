//! W3C context propagation over HTTP headers: `traceparent` and `tracestate`
//! (Trace Context) and `baggage`, the propagators upstream installs (no B3).
//!
//! Only used when tracing is on: with `tracing.protocol: none` nothing is
//! extracted or injected and the incoming headers reach the app untouched.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

/// Trace Context and Baggage, in that order (upstream's composite propagator).
#[derive(Debug, Default)]
pub struct Propagator {
    trace_context: TraceContextPropagator,
    baggage: BaggagePropagator,
}

impl Propagator {
    /// The context carried by `headers`: the remote parent span (if any valid
    /// `traceparent`) and the baggage.
    pub fn extract(&self, headers: &HeaderMap) -> Context {
        let carrier = HeaderExtractor(headers);
        let cx = self.trace_context.extract(&carrier);
        if headers.contains_key(BAGGAGE) {
            self.baggage.extract_with_context(&cx, &carrier)
        } else {
            cx
        }
    }

    /// Writes the context of an unsampled request's call into `headers`: the
    /// trace id of `span`, a new span id, its flags and trace state. Nothing is
    /// recorded for such a request, so no span objects are made for it; the
    /// baggage headers are already the incoming ones.
    pub fn inject_unsampled(&self, span: &SpanContext, headers: &mut HeaderMap) {
        inject_trace_context(span, RandomIdGenerator::default().new_span_id(), headers);
    }

    /// Writes `cx` into `headers`, replacing what was there: `traceparent` and
    /// `tracestate` (when not empty) for a valid span context, `baggage` when
    /// there is baggage.
    pub fn inject(&self, cx: &Context, headers: &mut HeaderMap) {
        let span = cx.span();
        let span_context = span.span_context();
        inject_trace_context(span_context, span_context.span_id(), headers);
        self.baggage
            .inject_context(cx, &mut HeaderInjector(headers));
    }
}

/// W3C Trace Context for `span` with `span_id`, formatted by hand: the SDK's
/// propagator goes through `format!` and costs ten times as much.
fn inject_trace_context(span: &SpanContext, span_id: SpanId, headers: &mut HeaderMap) {
    if !span.is_valid() {
        return;
    }
    let mut buf = [0u8; 55];
    buf[..3].copy_from_slice(b"00-");
    hex_into(&span.trace_id().to_bytes(), &mut buf[3..35]);
    buf[35] = b'-';
    hex_into(&span_id.to_bytes(), &mut buf[36..52]);
    buf[52] = b'-';
    hex_into(&[span.trace_flags().to_u8() & 1], &mut buf[53..55]);
    if let Ok(value) = HeaderValue::from_bytes(&buf) {
        headers.insert(TRACEPARENT, value);
    }
    // Go's propagator sets no empty trace state (an incoming one stays).
    let state = span.trace_state().header();
    if !state.is_empty()
        && let Ok(value) = HeaderValue::from_str(&state)
    {
        headers.insert(TRACESTATE, value);
    }
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// Reads propagation fields from request headers.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // The propagators' own keys without parsing them into header names.
        let value = match key {
            "traceparent" => self.0.get(TRACEPARENT),
            "tracestate" => self.0.get(TRACESTATE),
            "baggage" => self.0.get(BAGGAGE),
            other => self.0.get(other),
        };
        value.and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let all: Vec<&str> = self
            .0
            .get_all(key)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!all.is_empty()).then_some(all)
    }
}

/// Writes propagation fields into request headers.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Go's propagators set nothing for an empty baggage.
        if value.is_empty() {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::baggage::BaggageExt;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn round_trip_keeps_trace_state_and_baggage() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(PARENT));
        headers.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
        headers.insert("baggage", HeaderValue::from_static("user=alice"));
        let p = Propagator::default();
        let cx = p.extract(&headers);
        let span = cx.span().span_context().clone();
        assert!(span.is_remote() && span.is_sampled());
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            cx.baggage().get("user").map(|v| v.as_str().to_owned()),
            Some("alice".to_owned())
        );

        let mut out = HeaderMap::new();
        p.inject(&cx, &mut out);
        assert_eq!(out["traceparent"], PARENT);
        assert_eq!(out["tracestate"], "congo=t61rcWkgMzE");
        assert_eq!(out["baggage"], "user=alice");
    }

    #[test]
    fn empty_trace_state_is_not_sent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        let p = Propagator::default();
        let cx = p.extract(&headers);
        let mut out = HeaderMap::new();
        p.inject(&cx, &mut out);
        assert!(out.get("tracestate").is_none() && out.get("baggage").is_none());
        let mut out = HeaderMap::new();
        p.inject_unsampled(&cx.span().span_context().clone(), &mut out);
        let tp = out["traceparent"].to_str().unwrap();
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(
            tp.ends_with("-00") && !tp.contains("00f067aa0ba902b7"),
            "{tp}"
        );
        assert!(out.get("tracestate").is_none());
    }

    #[test]
    fn malformed_traceparent_gives_no_parent() {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static("00-zz-yy-01"));
        let cx = Propagator::default().extract(&headers);
        assert!(!cx.span().span_context().is_valid());
    }
}
