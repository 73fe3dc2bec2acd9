//! Why the throttler could not hand out a [`super::Lease`].

use queue_proxy::breaker::BreakerError;

use crate::revision::RevisionKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThrottlerError {
    /// The revision was never announced to the throttler (upstream: the
    /// informer has no such revision). Worded like Kubernetes' NotFound error,
    /// which upstream passes through.
    #[error("revision.serving.knative.dev \"{}\" not found", .0.name)]
    RevisionNotFound(RevisionKey),
    /// The revision was removed while the request waited for capacity.
    #[error("revision was removed while the request was waiting for capacity")]
    RevisionGone,
    /// The revision breaker's queue is full (practically unreachable: it admits
    /// 10,000 + MaxInt32).
    #[error("pending request queue full")]
    QueueFull,
}

impl From<BreakerError> for ThrottlerError {
    fn from(err: BreakerError) -> Self {
        match err {
            BreakerError::QueueFull => ThrottlerError::QueueFull,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // §10 checks 17 and 44: the texts the handler answers with.
    #[test]
    fn messages_match_upstream() {
        let err = ThrottlerError::RevisionNotFound(RevisionKey::new("ns", "fooname"));
        assert_eq!(
            err.to_string(),
            r#"revision.serving.knative.dev "fooname" not found"#
        );
        assert_eq!(
            ThrottlerError::from(BreakerError::QueueFull).to_string(),
            "pending request queue full"
        );
    }
}
