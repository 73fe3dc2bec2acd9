//! One request's log line, written when its response is over: upstream's
//! request-log handler logs when the handler returns, after the body was
//! copied, with the status written and the body bytes counted.

use std::sync::Arc;
use tokio::time::Instant;

use super::{LogEntry, RequestInfo, RequestLogger, ResponseInfo, RevisionInfo};

/// Collects a request's status and body size, and logs the line on drop.
pub struct LogGuard {
    logger: Arc<RequestLogger>,
    request: RequestInfo,
    is_probe: bool,
    started: Instant,
    code: u16,
    bytes: u64,
    /// The request's revision, when not the logger's own (the activator).
    revision: Option<Arc<RevisionInfo>>,
}

impl LogGuard {
    /// A line for `request`, which arrived at `started`.
    pub fn new(
        logger: Arc<RequestLogger>,
        request: RequestInfo,
        is_probe: bool,
        started: Instant,
    ) -> Self {
        LogGuard {
            logger,
            request,
            is_probe,
            started,
            // Go's default when the handler never writes a status.
            code: 200,
            bytes: 0,
            revision: None,
        }
    }

    /// The line names `revision` instead of the logger's own.
    pub fn for_revision(mut self, revision: Arc<RevisionInfo>) -> Self {
        self.revision = Some(revision);
        self
    }

    /// The status the client got.
    pub fn responded(&mut self, code: u16) {
        self.code = code;
    }

    /// Body bytes written to the client.
    pub fn wrote(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let entry = LogEntry {
            request: &self.request,
            response: ResponseInfo::new(self.code, self.bytes, self.started.elapsed()),
            is_probe: self.is_probe,
        };
        match &self.revision {
            Some(revision) => self.logger.log_for(&entry, revision),
            None => self.logger.log(&entry),
        }
    }
}
