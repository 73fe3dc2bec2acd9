//! The revision's request timeouts, as upstream's `pkg/http/handler/timeout.go`
//! enforces them in the queue-proxy (§5 of the spec).
//!
//! Three timers start when the request arrives (after the drainer, before the
//! breaker, so time spent queued counts):
//! - **total** (`REVISION_TIMEOUT_SECONDS`) fires regardless of progress; 0 fires
//!   at once, as upstream's does;
//! - **response start** (`REVISION_RESPONSE_START_TIMEOUT_SECONDS`, 0 = off) fires
//!   if nothing was written yet;
//! - **idle** (`REVISION_IDLE_TIMEOUT_SECONDS`, 0 = off) fires when nothing was
//!   written for that long.
//!
//! Before the response head: whichever fires first drops the request (which
//! cancels a breaker wait or the call to the app and frees its slot) and answers
//! 504 `request timeout`. After the head, the body carries a [`BodyTimer`] for the
//! total and idle timers: on expiry `request timeout` is appended and the response
//! ends. An upgraded connection gets no write tracking upstream (the hijack
//! bypasses it), so its tunnel closes at the earliest timer counted from arrival.

use http::Response;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

use crate::body::ProxyBody;
use crate::error::ProxyError;

/// The three durations of a revision, and what a timed-out response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeouts {
    pub total: Duration,
    pub response_start: Option<Duration>,
    pub idle: Option<Duration>,
    /// The 504 body, and the text appended to a response cut short: the
    /// queue-proxy's [`TIMEOUT_MESSAGE`], the activator's own.
    pub message: &'static str,
}

impl RequestTimeouts {
    /// From the env's seconds: negative totals count as 0 (fire at once), and a
    /// response-start or idle of 0 or less is off.
    pub fn from_seconds(total: i64, response_start: i64, idle: i64) -> Self {
        let secs = |s: i64| Duration::from_secs(u64::try_from(s).unwrap_or(0));
        let optional = |s: i64| (s > 0).then(|| secs(s));
        RequestTimeouts {
            total: secs(total),
            response_start: optional(response_start),
            idle: optional(idle),
            message: TIMEOUT_MESSAGE,
        }
    }

    /// When a request that arrived at `started` and has written nothing times out.
    /// Also the cap of an upgraded connection.
    pub fn head_deadline(&self, started: Instant) -> Instant {
        let mut deadline = started + self.total;
        for d in [self.response_start, self.idle].into_iter().flatten() {
            deadline = deadline.min(started + d);
        }
        deadline
    }

    /// Runs the request's handling under the timers: a 504 if no response head
    /// came in time, else the response with its body timed from here on.
    pub async fn run(
        &self,
        started: Instant,
        handling: impl Future<Output = Response<ProxyBody>>,
    ) -> Response<ProxyBody> {
        let mut sleep = Box::pin(tokio::time::sleep_until(self.head_deadline(started)));
        tokio::select! {
            biased;
            resp = handling => {
                let head_written = Instant::now();
                let total = started + self.total;
                let timer = BodyTimer::new(sleep, total, self.idle, head_written, self.message);
                resp.map(|body| body.with_timer(timer))
            }
            () = sleep.as_mut() => ProxyError::Timeout(self.message).into_response(),
        }
    }
}

/// The total and idle timers of a response whose head was written.
pub struct BodyTimer {
    sleep: Pin<Box<Sleep>>,
    total: Instant,
    idle: Option<Duration>,
    message: &'static str,
}

impl BodyTimer {
    fn new(
        mut sleep: Pin<Box<Sleep>>,
        total: Instant,
        idle: Option<Duration>,
        now: Instant,
        message: &'static str,
    ) -> Self {
        let timer_deadline = Self::deadline_after_write(total, idle, now);
        if sleep.deadline() != timer_deadline {
            sleep.as_mut().reset(timer_deadline);
        }
        BodyTimer {
            sleep,
            total,
            idle,
            message,
        }
    }

    fn deadline_after_write(total: Instant, idle: Option<Duration>, now: Instant) -> Instant {
        idle.map_or(total, |idle| total.min(now + idle))
    }

    /// Something was written: the idle timer starts over.
    pub fn wrote(&mut self) {
        if self.idle.is_some() {
            let deadline = Self::deadline_after_write(self.total, self.idle, Instant::now());
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Ready once a timer fired.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep.as_mut().poll(cx)
    }

    /// The text appended when the timer fires.
    pub fn message(&self) -> &'static str {
        self.message
    }
}

/// The queue-proxy's 504 body, appended to a response that timed out after it
/// started.
pub const TIMEOUT_MESSAGE: &str = "request timeout";

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn seconds_map_to_durations() {
        let t = RequestTimeouts::from_seconds(300, 0, 0);
        assert_eq!(t.total, Duration::from_secs(300));
        assert_eq!((t.response_start, t.idle), (None, None));
        let t = RequestTimeouts::from_seconds(-1, 7, 2);
        assert_eq!(t.total, Duration::ZERO);
        assert_eq!(t.response_start, Some(Duration::from_secs(7)));
        assert_eq!(t.idle, Some(Duration::from_secs(2)));
    }

    #[test]
    fn head_deadline_is_the_earliest_timer() {
        let now = Instant::now();
        let t = RequestTimeouts::from_seconds(10, 7, 0);
        assert_eq!(t.head_deadline(now), now + Duration::from_secs(7));
        let t = RequestTimeouts::from_seconds(10, 7, 3);
        assert_eq!(t.head_deadline(now), now + Duration::from_secs(3));
        let t = RequestTimeouts::from_seconds(10, 0, 0);
        assert_eq!(t.head_deadline(now), now + Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn no_head_in_time_is_a_504_with_the_exact_body() {
        let t = RequestTimeouts::from_seconds(10, 0, 0);
        let resp = t
            .run(Instant::now(), async {
                tokio::time::sleep(Duration::from_secs(12)).await;
                Response::new(ProxyBody::local("late"))
            })
            .await;
        assert_eq!(resp.status(), http::StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"request timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_total_fires_at_once() {
        let t = RequestTimeouts::from_seconds(0, 0, 0);
        let resp = t
            .run(Instant::now(), async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Response::new(ProxyBody::local("late"))
            })
            .await;
        assert_eq!(resp.status(), http::StatusCode::GATEWAY_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_in_time_passes() {
        let t = RequestTimeouts::from_seconds(10, 0, 0);
        let resp = t
            .run(Instant::now(), async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Response::new(ProxyBody::local("fine"))
            })
            .await;
        assert_eq!(resp.status(), http::StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"fine");
    }
}
