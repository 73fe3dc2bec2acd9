//! The route tag a request is recorded under (`kn.route.tag` on the HTTP server
//! metrics and span), as upstream's `pkg/queue/routetag_handler.go` computes it.
//! Headers are not modified; the tag only labels telemetry.

use http::{HeaderMap, HeaderName};

/// Set by the ingress to the tag a request was routed by.
pub const KNATIVE_SERVING_TAG: HeaderName = HeaderName::from_static("knative-serving-tag");
/// Set by the ingress when the request came through the default route.
pub const KNATIVE_SERVING_DEFAULT_ROUTE: HeaderName =
    HeaderName::from_static("knative-serving-default-route");

/// No tag and no default-route header: tagging is off for the route.
pub const DISABLED: &str = "kn:disabled";
/// Through the default route without a tag.
pub const DEFAULT: &str = "kn:default";
/// A tag on the default route: the tag no longer exists.
pub const UNDEFINED: &str = "kn:undefined";

/// The tag for a request with these headers.
pub fn route_tag(headers: &HeaderMap) -> &str {
    let value = |name: HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let (tag, default_route) = (
        value(KNATIVE_SERVING_TAG),
        value(KNATIVE_SERVING_DEFAULT_ROUTE),
    );
    match (tag.is_empty(), default_route.is_empty()) {
        (true, true) => DISABLED,
        (true, false) => DEFAULT,
        (false, _) if default_route == "true" => UNDEFINED,
        (false, _) => tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn tag(pairs: &[(HeaderName, &'static str)]) -> String {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_static(v));
        }
        route_tag(&h).to_owned()
    }

    // Spec §12 check 22.
    #[test]
    fn tags_as_upstream() {
        assert_eq!(tag(&[(KNATIVE_SERVING_TAG, "test-tag")]), "test-tag");
        assert_eq!(
            tag(&[(KNATIVE_SERVING_DEFAULT_ROUTE, "true")]),
            "kn:default"
        );
        assert_eq!(
            tag(&[(KNATIVE_SERVING_DEFAULT_ROUTE, "anything")]),
            "kn:default"
        );
        assert_eq!(
            tag(&[
                (KNATIVE_SERVING_TAG, "test-tag"),
                (KNATIVE_SERVING_DEFAULT_ROUTE, "true")
            ]),
            "kn:undefined"
        );
        assert_eq!(
            tag(&[
                (KNATIVE_SERVING_TAG, "test-tag"),
                (KNATIVE_SERVING_DEFAULT_ROUTE, "false")
            ]),
            "test-tag"
        );
        assert_eq!(tag(&[]), "kn:disabled");
    }
}
