//! The response body every handler returns: either a small local body (probe
//! answers, errors, stats) or the app's streaming body.
//!
//! The app's body carries a [`Completion`]: the request's autoscaler in-flight
//! guard, its breaker permit, its shutdown tracking and the pooled connection.
//! Upstream releases the breaker slot and records the stats "out" event when the
//! proxy handler returns, i.e. once the whole response was copied; here that
//! moment is the body's end of stream. A body dropped early (client gone, error)
//! releases them too, and only a body read to the end gives its connection back
//! to the pool.
//!
//! It also carries the request's [`BodyTimer`] once the head is written: when the
//! total or idle timer fires, `request timeout` is appended, the app's body is let
//! go (cancelling the call and freeing the slot) and the response ends.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::time::Instant;

use crate::breaker::Permit;
use crate::drain::Tracked;
use crate::proxy::client::Checkin;
use crate::request_log::LogGuard;
use crate::stats::InFlight;
use crate::timeout::BodyTimer;

/// Everything a response holds until it has been delivered.
#[derive(Default)]
pub struct Completion {
    /// The autoscaler's in-flight count for this request.
    pub in_flight: Option<InFlight>,
    /// The breaker slot.
    pub permit: Option<Permit>,
    /// Counts the request for the shutdown's wait on in-flight requests.
    pub tracked: Option<Tracked>,
    /// The app connection, returned to the pool only after a clean end of body.
    pub checkin: Option<Checkin>,
    /// When an upgraded connection must be closed (the revision's timers).
    pub tunnel_deadline: Option<Instant>,
    /// Anything else held until the response is over (the activator's
    /// throttler lease and per-revision stats guard).
    pub held: Option<Box<dyn Send + Sync>>,
    /// The request-log line, written once the response is over.
    pub log: Option<LogGuard>,
}

impl Completion {
    /// The response was delivered in full: release everything, keep the connection.
    fn complete(&mut self) {
        if let Some(checkin) = self.checkin.take() {
            checkin.checkin();
        }
        *self = Completion::default();
    }
}

pin_project! {
    /// A response body: local bytes, or the app's stream with its [`Completion`].
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Local { data: Option<Bytes> },
        Upstream {
            #[pin]
            inner: Incoming,
            completion: Completion,
            timer: Option<BodyTimer>,
            timed_out: bool,
        },
    }
}

impl ProxyBody {
    /// A complete body of `data` (possibly empty).
    pub fn local(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        ProxyBody::Local {
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        ProxyBody::Local { data: None }
    }

    /// The app's body, holding `completion` until its end.
    pub fn upstream(inner: Incoming, mut completion: Completion) -> Self {
        // hyper never polls a body that is already at its end (HEAD, 204, 304,
        // `Content-Length: 0`), so finish such responses now.
        if inner.is_end_stream() {
            completion.complete();
        }
        ProxyBody::Upstream {
            inner,
            completion,
            timer: None,
            timed_out: false,
        }
    }

    /// Logs the request once this body is over: at once for a local body,
    /// at the end of the app's body otherwise (its bytes counted on the way).
    pub fn with_log(mut self, mut log: LogGuard) -> Self {
        match &mut self {
            ProxyBody::Local { data } => log.wrote(data.as_ref().map_or(0, Bytes::len)),
            ProxyBody::Upstream { completion, .. } => completion.log = Some(log),
        }
        self
    }

    /// Keeps `guard` until this body is over (a metrics timer whose drop
    /// records): dropped at once for a local or already finished body.
    pub fn holding(mut self, guard: Box<dyn Send + Sync>) -> Self {
        if let ProxyBody::Upstream {
            inner, completion, ..
        } = &mut self
            && !inner.is_end_stream()
        {
            completion.held = Some(match completion.held.take() {
                Some(held) => Box::new((held, guard)),
                None => guard,
            });
        }
        self
    }

    /// Puts the body under `timer` (local bodies are complete already).
    pub fn with_timer(self, timer: BodyTimer) -> Self {
        match self {
            ProxyBody::Upstream {
                inner,
                completion,
                timed_out,
                ..
            } => ProxyBody::Upstream {
                inner,
                completion,
                timer: Some(timer),
                timed_out,
            },
            local => local,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ProxyBodyProj::Local { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBodyProj::Upstream {
                mut inner,
                completion,
                timer,
                timed_out,
            } => {
                if *timed_out {
                    return Poll::Ready(None);
                }
                // Checked first: the total timer fires even while data flows.
                if let Some(t) = timer
                    && t.poll_expired(cx).is_ready()
                {
                    let message = Bytes::from_static(t.message().as_bytes());
                    *timer = None;
                    *timed_out = true;
                    // Let the app's response go: this cancels it and frees the slot.
                    *completion = Completion::default();
                    return Poll::Ready(Some(Ok(Frame::data(message))));
                }
                let polled = inner.as_mut().poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => completion.complete(),
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            if let Some(t) = timer {
                                t.wrote();
                            }
                            if let Some(log) = &mut completion.log {
                                log.wrote(data.len());
                            }
                        }
                        // With a Content-Length, hyper stops polling once the last
                        // byte arrived, so the end is seen here, not as a `None`.
                        if inner.is_end_stream() {
                            completion.complete();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => *completion = Completion::default(),
                    Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local { data } => data.is_none(),
            ProxyBody::Upstream {
                inner, timed_out, ..
            } => *timed_out || inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
