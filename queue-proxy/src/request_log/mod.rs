//! The request log (spec §9): one line per request on stdout, from the operator's Go
//! `text/template`.
//!
//! Mirrors upstream's `RequestLogHandler` (`pkg/http/request_log.go`, tested by
//! `request_log_test.go`) and its set-up in `pkg/queue/sharedmain/handlers.go`:
//!
//! - An empty template disables request logging. Otherwise a `\n` is appended to the
//!   template *text* when it lacks one, before parsing (so a trailing ` -}}` trims that
//!   newline away, exactly as upstream).
//! - A template that does not parse is reported at start-up and request logging is off
//!   ([`RequestLogger::new_or_disabled`] logs `Error setting up request logger. Request logs
//!   will be unavailable.`, upstream's message; [`RequestLogger::new`] returns the
//!   [`ParseError`] for callers that want to decide).
//! - Probe requests are logged only when probe request logging is enabled.
//! - Each line is rendered completely into a buffer first and handed to the sink in one
//!   write, so lines from concurrent requests never interleave (upstream renders into a
//!   pooled buffer and writes through a mutex-guarded `SyncFileWriter`).
//! - A template that fails while executing (say `{{.Request.Something}}`) writes, instead of
//!   the line, `Invalid request log template: method: M, response code: C, latency: L, url:
//!   U` (upstream's `fmt.Fprintf` with `%v`).
//!
//! The data a template sees is in `data`; the engine is [`template`]; Go's number and
//! string formatting is [`gofmt`]; `net/url` behaviour is [`gourl`].

pub(crate) mod data;
pub mod entry;
pub mod gofmt;
pub(crate) mod gounicode;
pub mod gourl;
mod guard;
pub mod template;

use std::cell::Cell;
use std::io::{self, Write};
use std::sync::Arc;

pub use entry::{LogEntry, RequestInfo, ResponseInfo, RevisionInfo, content_length_from_hint};
pub use guard::LogGuard;
pub use template::{ExecError, ParseError, Template};

use template::Value;

/// The template upstream uses when none is configured (`config-observability`'s
/// `logging.request-log-template`, spec §9).
pub const DEFAULT_TEMPLATE: &str = r#"{"httpRequest": {"requestMethod": "{{.Request.Method}}", "requestUrl": "{{js .Request.RequestURI}}", "requestSize": "{{.Request.ContentLength}}", "status": {{.Response.Code}}, "responseSize": "{{.Response.Size}}", "userAgent": "{{js .Request.UserAgent}}", "remoteIp": "{{js .Request.RemoteAddr}}", "serverIp": "{{.Revision.PodIP}}", "referer": "{{js .Request.Referer}}", "latency": "{{.Response.Latency}}s", "protocol": "{{.Request.Proto}}"}, "traceId": "{{.TraceID}}"}"#;

/// The name upstream gives the template (`template.New("requestLog")`), seen in errors.
pub const TEMPLATE_NAME: &str = "requestLog";

/// Where finished lines go. Each call carries one whole line, newline included; an
/// implementation must write it with nothing else in between.
pub trait LineSink: Send + Sync {
    /// Writes one line.
    fn write_line(&self, line: &[u8]) -> io::Result<()>;
}

/// The process's stdout: each line is one `write_all` on the locked handle, then a flush.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdoutSink;

impl LineSink for StdoutSink {
    fn write_line(&self, line: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(line)?;
        out.flush()
    }
}

/// Any writer behind a mutex (tests capture lines in a `Mutex<Vec<u8>>`).
impl<W: Write + Send> LineSink for parking_lot::Mutex<W> {
    fn write_line(&self, line: &[u8]) -> io::Result<()> {
        let mut w = self.lock();
        w.write_all(line)?;
        w.flush()
    }
}

impl<S: LineSink + ?Sized> LineSink for Arc<S> {
    fn write_line(&self, line: &[u8]) -> io::Result<()> {
        (**self).write_line(line)
    }
}

/// Lines above this size do not keep their render buffer alive on the thread.
const MAX_KEPT_BUFFER: usize = 64 * 1024;

thread_local! {
    /// Per-thread render buffer (upstream's `sync.Pool` of `bytes.Buffer`).
    static BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Renders request-log lines and writes them to a [`LineSink`] (stdout by default).
pub struct RequestLogger<S = StdoutSink> {
    template: Option<Template>,
    revision: Arc<RevisionInfo>,
    enable_probe_log: bool,
    sink: S,
}

impl<S> std::fmt::Debug for RequestLogger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLogger")
            .field("enabled", &self.template.is_some())
            .field("enable_probe_log", &self.enable_probe_log)
            .finish_non_exhaustive()
    }
}

impl RequestLogger<StdoutSink> {
    /// A logger writing to stdout. An empty `template` gives a disabled logger; a template
    /// that does not parse is an error.
    pub fn new(
        template: &str,
        revision: impl Into<Arc<RevisionInfo>>,
        enable_probe_log: bool,
    ) -> Result<Self, ParseError> {
        Self::with_sink(template, revision, enable_probe_log, StdoutSink)
    }

    /// Like [`RequestLogger::new`], but a template that does not parse is reported with
    /// `tracing::error!` and gives a disabled logger, as upstream's start-up does.
    pub fn new_or_disabled(
        template: &str,
        revision: impl Into<Arc<RevisionInfo>>,
        enable_probe_log: bool,
    ) -> Self {
        let revision = revision.into();
        match Self::new(template, revision.clone(), enable_probe_log) {
            Ok(logger) => logger,
            Err(error) => {
                tracing::error!(
                    %error,
                    "Error setting up request logger. Request logs will be unavailable."
                );
                RequestLogger {
                    template: None,
                    revision,
                    enable_probe_log,
                    sink: StdoutSink,
                }
            }
        }
    }
}

impl<S: LineSink> RequestLogger<S> {
    /// A logger writing to `sink`. An empty `template` gives a disabled logger; a template
    /// that does not parse is an error.
    pub fn with_sink(
        template: &str,
        revision: impl Into<Arc<RevisionInfo>>,
        enable_probe_log: bool,
        sink: S,
    ) -> Result<Self, ParseError> {
        let template = if template.is_empty() {
            None
        } else if template.ends_with('\n') {
            Some(Template::parse(TEMPLATE_NAME, template)?)
        } else {
            Some(Template::parse(TEMPLATE_NAME, &format!("{template}\n"))?)
        };
        Ok(RequestLogger {
            template,
            revision: revision.into(),
            enable_probe_log,
            sink,
        })
    }

    /// Whether any line can be written (the template is not empty).
    pub fn is_enabled(&self) -> bool {
        self.template.is_some()
    }

    /// Whether a request would be logged: lets a handler skip capturing a
    /// [`RequestInfo`] when nothing will be written.
    pub fn should_log(&self, is_probe: bool) -> bool {
        self.template.is_some() && (!is_probe || self.enable_probe_log)
    }

    /// The revision identity the templates see.
    pub fn revision(&self) -> &Arc<RevisionInfo> {
        &self.revision
    }

    /// The sink lines are written to.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Appends the line for `entry` to `out` (the template's output, or the "Invalid
    /// request log template" line if it fails). Returns false, writing nothing, when the
    /// entry is not to be logged.
    pub fn render(&self, entry: &LogEntry<'_>, out: &mut Vec<u8>) -> bool {
        self.render_for(entry, &self.revision, out)
    }

    /// [`render`](Self::render) for a request of `revision` (the activator
    /// serves many revisions; the queue-proxy's is fixed).
    pub fn render_for(
        &self,
        entry: &LogEntry<'_>,
        revision: &RevisionInfo,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(template) = &self.template else {
            return false;
        };
        if entry.is_probe && !self.enable_probe_log {
            return false;
        }
        let start = out.len();
        let input = data::Input::new(entry, revision);
        if let Err(error) = template.execute(Value::Obj(&input), out) {
            tracing::debug!(%error, "request log template failed");
            out.truncate(start);
            invalid_template_line(&input, out);
        }
        true
    }

    /// Renders the line for `entry` and writes it to the sink in one write. Write errors
    /// are ignored, as upstream ignores them.
    pub fn log(&self, entry: &LogEntry<'_>) {
        self.log_for(entry, &self.revision);
    }

    /// [`log`](Self::log) for a request of `revision`.
    pub fn log_for(&self, entry: &LogEntry<'_>, revision: &RevisionInfo) {
        if !self.should_log(entry.is_probe) {
            return;
        }
        let mut buf = BUFFER.take();
        buf.clear();
        if self.render_for(entry, revision, &mut buf)
            && let Err(error) = self.sink.write_line(&buf)
        {
            tracing::debug!(%error, "writing a request log line failed");
        }
        if buf.capacity() <= MAX_KEPT_BUFFER {
            BUFFER.set(buf);
        }
    }
}

/// Upstream's fallback line: `fmt.Fprintf(w, "Invalid request log template: method: %v,
/// response code: %v, latency: %v, url: %v\n", Method, Code, Latency, URL)`.
fn invalid_template_line(input: &data::Input<'_>, out: &mut Vec<u8>) {
    let response = input.response();
    out.extend_from_slice(b"Invalid request log template: method: ");
    out.extend_from_slice(input.method().as_bytes());
    out.extend_from_slice(format!(", response code: {}, latency: ", response.code).as_bytes());
    gofmt::append_float(out, response.latency, b'g', -1);
    out.extend_from_slice(b", url: ");
    out.extend_from_slice(&input.url_string());
    out.push(b'\n');
}
