//! Which revision a request is for (spec §2.2), as upstream's ContextHandler
//! decides it: the `Knative-Serving-Namespace` and `Knative-Serving-Revision`
//! headers, or else a Host of the form `<rev>.<ns>.svc.<cluster-domain>[:port]`.
//! A Host of any other form keeps whatever the headers gave, possibly empty,
//! which then is "not found".

use http::HeaderMap;
use queue_proxy::headers::{KNATIVE_SERVING_NAMESPACE, KNATIVE_SERVING_REVISION};

use crate::revision::RevisionKey;

/// The revision `headers` (and `host`) name.
pub fn revision_key(headers: &HeaderMap, host: Option<&str>, cluster_domain: &str) -> RevisionKey {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (namespace, name) = (
        header(KNATIVE_SERVING_NAMESPACE),
        header(KNATIVE_SERVING_REVISION),
    );
    if !namespace.is_empty() && !name.is_empty() {
        return RevisionKey { namespace, name };
    }
    if let Some(key) = host.and_then(|host| from_host(host, cluster_domain)) {
        return key;
    }
    RevisionKey { namespace, name }
}

/// `rev.ns.svc.<domain>` (the domain may carry a `:port`).
fn from_host(host: &str, cluster_domain: &str) -> Option<RevisionKey> {
    let parts: Vec<&str> = host.splitn(4, '.').collect();
    let [name, namespace, svc, domain] = parts.as_slice() else {
        return None;
    };
    let domain = domain.split_once(':').map_or(*domain, |(d, _)| d);
    (*svc == "svc" && domain == cluster_domain).then(|| RevisionKey::new(*namespace, *name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn key(pairs: &[(&'static str, &'static str)], host: Option<&str>) -> RevisionKey {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        revision_key(&h, host, "cluster.local")
    }

    #[test]
    fn headers_win() {
        let k = key(
            &[
                ("knative-serving-namespace", "real-namespace"),
                ("knative-serving-revision", "real-name"),
            ],
            Some("other.ns.svc.cluster.local"),
        );
        assert_eq!(k, RevisionKey::new("real-namespace", "real-name"));
    }

    // §10 checks 11 and 12.
    #[test]
    fn host_form_and_fallbacks() {
        let want = RevisionKey::new("real-namespace", "real-name");
        assert_eq!(
            key(&[], Some("real-name.real-namespace.svc.cluster.local")),
            want
        );
        assert_eq!(
            key(&[], Some("real-name.real-namespace.svc.cluster.local:80")),
            want
        );
        assert_eq!(key(&[], Some("example.com")), RevisionKey::new("", ""));
        assert_eq!(
            key(&[], Some("a.b.svc.other.domain")),
            RevisionKey::new("", "")
        );
        assert_eq!(key(&[], Some("a.b.svc")), RevisionKey::new("", ""));
        // Only one header: the host decides if it can, else the partial header stays.
        assert_eq!(
            key(&[("knative-serving-revision", "r")], Some("example.com")),
            RevisionKey::new("", "r")
        );
    }
}
