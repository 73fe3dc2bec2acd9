//! What holding a request costs, and an opt-in cap on how many are held.
//!
//! A held request must stay cheap (knative#13583): its body is never read
//! while it waits. A connection's first request waits in
//! [`crate::early_hold`], before hyper has the connection. A later request on a
//! kept-alive connection waits in the handler; [`detach_head`] copies its head
//! out of the connection's read buffer so that the 8 KiB buffer hyper parsed it
//! from is freed instead of being pinned, next to the fresh one hyper allocates
//! for the connection, for as long as the request waits.
//!
//! The cap (beyond upstream):
//! Upstream's revision breaker admits up to 10,000 + MaxInt32 waiters, so an
//! activator in front of a revision that cannot keep up grows without bound and
//! is OOM-killed (knative#13583). With `ACTIVATOR_MAX_HELD_PER_REVISION` set, a
//! request that would wait while that many are already waiting for the same
//! revision gets a 503 at once instead. Unset, nothing is counted.

use bytes::{Bytes, BytesMut};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Uri};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::revision::RevisionKey;

/// Counts held requests per revision against a cap.
pub struct HeldLimit {
    cap: Option<usize>,
    held: RwLock<HashMap<RevisionKey, Arc<AtomicUsize>>>,
}

/// One held request; dropping it (once released or gone) frees its place.
pub struct Held(Option<Arc<AtomicUsize>>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl HeldLimit {
    /// A limit of `cap` held requests per revision; `None` for no limit.
    pub fn new(cap: Option<usize>) -> Self {
        HeldLimit {
            cap,
            held: RwLock::new(HashMap::new()),
        }
    }

    /// A place among the revision's held requests, or `None` when it is full.
    pub fn enter(&self, key: &RevisionKey) -> Option<Held> {
        let Some(cap) = self.cap else {
            return Some(Held(None));
        };
        let count = self.counter(key);
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()?;
        Some(Held(Some(count)))
    }

    fn counter(&self, key: &RevisionKey) -> Arc<AtomicUsize> {
        if let Some(count) = self.held.read().get(key) {
            return count.clone();
        }
        self.held.write().entry(key.clone()).or_default().clone()
    }
}

/// Re-homes the request's URI and header values, which hyper slices out of the
/// connection's read buffer, into one allocation of their own size.
pub fn detach_head<B>(req: &mut Request<B>) {
    let uri_text = req.uri().path_and_query().map(PathAndQuery::as_str);
    let size = uri_text.map_or(0, str::len)
        + req
            .headers()
            .values()
            .map(|v| v.as_bytes().len())
            .sum::<usize>();
    let mut buf = BytesMut::with_capacity(size);
    if let Some(text) = uri_text {
        buf.extend_from_slice(text.as_bytes());
    }
    for value in req.headers().values() {
        buf.extend_from_slice(value.as_bytes());
    }
    let mut buf: Bytes = buf.freeze();

    if let Some(text) = uri_text {
        let path = buf.split_to(text.len());
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = PathAndQuery::from_maybe_shared(path).ok();
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    let old = std::mem::take(req.headers_mut());
    let mut headers = HeaderMap::with_capacity(old.len());
    let mut name = None;
    for (key, value) in old {
        // `into_iter` names only the first value of each header.
        if key.is_some() {
            name = key;
        }
        let Some(name) = name.clone() else { continue };
        let bytes = buf.split_to(value.as_bytes().len());
        let mut copied = HeaderValue::from_maybe_shared(bytes).unwrap_or(value.clone());
        copied.set_sensitive(value.is_sensitive());
        headers.append(name, copied);
    }
    *req.headers_mut() = headers;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_heads_are_equal_and_own_their_bytes() {
        let wire = Bytes::from_static(b"/a/b?c=d hello world second");
        let mut req = Request::builder()
            .uri(Uri::from_maybe_shared(wire.slice(0..8)).unwrap())
            .header(
                "x-one",
                HeaderValue::from_maybe_shared(wire.slice(9..14)).unwrap(),
            )
            .header("x-many", "1")
            .header(
                "x-many",
                HeaderValue::from_maybe_shared(wire.slice(15..20)).unwrap(),
            )
            .header("host", "example.com")
            .body(())
            .unwrap();
        let before = (req.uri().clone(), req.headers().clone());
        detach_head(&mut req);
        assert_eq!(req.uri(), &before.0);
        assert_eq!(req.headers(), &before.1);
        let values: Vec<_> = req.headers().get_all("x-many").iter().collect();
        assert_eq!(values, ["1", "world"]);
        // Nothing points into the original buffer any more.
        let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
        assert!(!range.contains(&(req.uri().path().as_ptr() as usize)));
        for value in req.headers().values() {
            assert!(!range.contains(&(value.as_bytes().as_ptr() as usize)));
        }
    }

    #[test]
    fn no_cap_never_refuses() {
        let limit = HeldLimit::new(None);
        let key = RevisionKey::new("ns", "rev");
        let held: Vec<_> = (0..1000).map(|_| limit.enter(&key).unwrap()).collect();
        assert_eq!(held.len(), 1000);
    }

    #[test]
    fn cap_is_per_revision_and_places_come_back() {
        let limit = HeldLimit::new(Some(2));
        let (a, b) = (RevisionKey::new("ns", "a"), RevisionKey::new("ns", "b"));
        let first = limit.enter(&a).unwrap();
        let _second = limit.enter(&a).unwrap();
        assert!(limit.enter(&a).is_none());
        assert!(limit.enter(&b).is_some());
        drop(first);
        assert!(limit.enter(&a).is_some());
    }
}
