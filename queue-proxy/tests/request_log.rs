//! The request log (spec §9, conformance check 58): the default template's exact bytes, the
//! writer's rules (upstream's `request_log_test.go` cases), the `*http.Request` data model a
//! template sees, Go value formatting, and whole lines under concurrency, both into an
//! injected sink and on the real stdout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version};
use http_body::Body as _;
use http_body_util::Full;
use parking_lot::Mutex;
use queue_proxy::request_log::{
    DEFAULT_TEMPLATE, LogEntry, RequestInfo, RequestLogger, ResponseInfo, RevisionInfo,
    content_length_from_hint,
};

type Sink = Arc<Mutex<Vec<u8>>>;

fn revision() -> RevisionInfo {
    RevisionInfo {
        name: "rev".into(),
        namespace: "ns".into(),
        service: "svc".into(),
        configuration: "cfg".into(),
        pod_name: "pn".into(),
        pod_ip: "ip".into(),
    }
}

fn logger(template: &str, enable_probe_log: bool) -> (RequestLogger<Sink>, Sink) {
    let sink = Sink::default();
    let logger = RequestLogger::with_sink(template, revision(), enable_probe_log, sink.clone())
        .unwrap_or_else(|e| panic!("{template:?}: {e}"));
    (logger, sink)
}

/// A request as the server would capture it: `ContentLength` from the body's size hint,
/// as hyper reports it.
fn capture(builder: http::request::Builder, body: &'static str) -> RequestInfo {
    let body = Full::new(Bytes::from_static(body.as_bytes()));
    let content_length = content_length_from_hint(&body.size_hint());
    let (parts, _) = builder.body(body).unwrap().into_parts();
    let remote: SocketAddr = "10.0.0.1:34567".parse().unwrap();
    RequestInfo::from_parts(&parts, Some(remote), content_length)
}

fn ok_response() -> ResponseInfo {
    ResponseInfo::new(200, 12, Duration::from_nanos(1_234_000))
}

/// Renders `template` for `request` and returns the line.
fn line(template: &str, request: &RequestInfo, response: ResponseInfo) -> String {
    let (logger, sink) = logger(template, false);
    logger.log(&LogEntry {
        request,
        response,
        is_probe: false,
    });
    let out = sink.lock().clone();
    String::from_utf8(out).unwrap()
}

fn get(uri: &str) -> RequestInfo {
    capture(Request::get(uri).header("host", "example.com"), "")
}

#[test]
fn default_template_renders_upstreams_exact_bytes() {
    let request = capture(
        Request::post("/path?x=1")
            .version(Version::HTTP_11)
            .header("host", "example.com")
            .header("user-agent", r#"Mozilla/5.0 "quoted" <tag>"#)
            .header("referer", "https://ex.com/?a=b&c=d")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        "test",
    );
    let mut rev = revision();
    rev.pod_ip = "10.1.2.3".into();
    let sink = Sink::default();
    let logger = RequestLogger::with_sink(DEFAULT_TEMPLATE, rev, false, sink.clone()).unwrap();
    logger.log(&LogEntry {
        request: &request,
        response: ResponseInfo {
            code: 200,
            size: 12,
            latency: 0.001234,
        },
        is_probe: false,
    });

    // Derived by hand from Go's rules:
    // - `js` is template.JSEscapeString: `\` → `\\`, `'` → `\'`, `"` → `\"`, and `<` `>` `&`
    //   `=` → `\u003C` `\u003E` `\u0026` `\u003D` (upper-case hex); bytes below 0x20 →
    //   `\u00XX`; everything else (including `/ ? : .` and digits) is kept. So
    //   `/path?x=1` → `/path?x\u003D1`; the user agent's quotes become `\"` and its angle
    //   brackets `\u003C`/`\u003E`; the referer's `=` and `&` become `\u003D`/`\u0026`;
    //   `10.0.0.1:34567` is unchanged.
    // - `requestSize` is ContentLength (int64 4, the body "test"); `status` and
    //   `responseSize` are ints; `latency` is a float64 printed with %v, i.e. strconv's 'g'
    //   with the shortest digits ("1234", decimal exponent -3); 'g' uses plain notation for
    //   exponents in [-4, 6) when shortest, so "0.001234".
    // - `protocol` is Go's Proto for HTTP/1.1; `traceId` is the second dash-separated field
    //   of traceparent.
    // - Upstream appends "\n" to a template without one.
    let want = concat!(
        r#"{"httpRequest": {"requestMethod": "POST", "requestUrl": "/path?x\u003D1", "#,
        r#""requestSize": "4", "status": 200, "responseSize": "12", "#,
        r#""userAgent": "Mozilla/5.0 \"quoted\" \u003Ctag\u003E", "#,
        r#""remoteIp": "10.0.0.1:34567", "serverIp": "10.1.2.3", "#,
        r#""referer": "https://ex.com/?a\u003Db\u0026c\u003Dd", "latency": "0.001234s", "#,
        r#""protocol": "HTTP/1.1"}, "traceId": "4bf92f3577b34da6a3ce929d0e0e4736"}"#,
        "\n"
    );
    assert_eq!(String::from_utf8(sink.lock().clone()).unwrap(), want);
}

/// Upstream's `TestRequestLogHandler` table, and conformance check 58.
#[test]
fn upstream_request_log_cases() {
    struct Case {
        name: &'static str,
        uri: &'static str,
        template: &'static str,
        want: &'static str,
        is_probe: bool,
        enable_probe_log: bool,
    }
    let cases = [
        Case {
            name: "empty template",
            uri: "http://example.com/testpage",
            template: "",
            want: "",
            is_probe: false,
            enable_probe_log: false,
        },
        Case {
            name: "template with new line",
            uri: "http://example.com/testpage",
            template: "{{.Request.URL}}\n",
            want: "http://example.com/testpage\n",
            is_probe: false,
            enable_probe_log: false,
        },
        Case {
            name: "template without new line",
            uri: "http://example.com/",
            template: "{{.Request.ContentLength}}",
            want: "4\n",
            is_probe: false,
            enable_probe_log: false,
        },
        Case {
            name: "revision info",
            uri: "http://example.com/",
            template: "{{.Revision.Name}}, {{.Revision.Namespace}}, {{.Revision.Service}}, \
                       {{.Revision.Configuration}}, {{.Revision.PodName}}, {{.Revision.PodIP}}",
            want: "rev, ns, svc, cfg, pn, ip\n",
            is_probe: false,
            enable_probe_log: false,
        },
        Case {
            name: "probe request and logging support disabled",
            uri: "http://example.com/",
            template: "{{.Request.ContentLength}}",
            want: "",
            is_probe: true,
            enable_probe_log: false,
        },
        Case {
            name: "probe request and logging support enabled",
            uri: "http://example.com/",
            template: "{{.Request.ContentLength}}",
            want: "4\n",
            is_probe: true,
            enable_probe_log: true,
        },
    ];
    for case in cases {
        let (logger, sink) = logger(case.template, case.enable_probe_log);
        let request = capture(Request::post(case.uri), "test");
        logger.log(&LogEntry {
            request: &request,
            response: ok_response(),
            is_probe: case.is_probe,
        });
        let got = String::from_utf8(sink.lock().clone()).unwrap();
        assert_eq!(got, case.want, "{}", case.name);
        assert_eq!(
            logger.is_enabled(),
            !case.template.is_empty(),
            "{}",
            case.name
        );
        assert_eq!(
            logger.should_log(case.is_probe),
            !case.want.is_empty(),
            "{}",
            case.name
        );
    }
}

#[test]
fn a_template_that_does_not_parse_is_an_error_or_disables_logging() {
    let err = RequestLogger::with_sink("{{}}", revision(), false, Sink::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template: requestLog:1: missing value for command"
    );
    let err = RequestLogger::new("a\n{{if .Request}}", revision(), false).unwrap_err();
    assert_eq!(err.to_string(), "template: requestLog:3: unexpected EOF");
    let err = RequestLogger::new("{{.Request.Method | nope}}", revision(), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template: requestLog:1: function \"nope\" not defined"
    );
    assert!(!RequestLogger::new_or_disabled("{{}}", revision(), true).is_enabled());
    assert!(RequestLogger::new_or_disabled(DEFAULT_TEMPLATE, revision(), true).is_enabled());
}

#[test]
fn a_failing_template_writes_upstreams_invalid_template_line() {
    // Upstream's TestFailedTemplateExecution, with the whole line checked.
    let request = capture(Request::get("/some/path?q=1"), "");
    let response = ResponseInfo {
        code: 200,
        size: 0,
        latency: 1.2e-05,
    };
    assert_eq!(
        line("{{.Request.Something}}", &request, response),
        "Invalid request log template: method: GET, response code: 200, latency: 1.2e-05, \
         url: /some/path?q=1\n"
    );
    // Partial output before the failure is dropped, not written.
    assert_eq!(
        line(
            "before {{.Response.Code}} {{.Request.Body}}",
            &request,
            response
        ),
        "Invalid request log template: method: GET, response code: 200, latency: 1.2e-05, \
         url: /some/path?q=1\n"
    );
    // Wrong arguments and nil pointers fail the same way.
    for template in [
        "{{.Request.Header.Get}}",
        "{{.Request.TLS.Version}}",
        "{{.Request}}",
        "{{eq .Response.Latency 1}}",
    ] {
        assert!(
            line(template, &request, response).starts_with("Invalid request log template: "),
            "{template}"
        );
    }
}

#[test]
fn the_newline_is_appended_to_the_template_text_as_upstream_does() {
    let request = get("/");
    assert_eq!(line("x\n", &request, ok_response()), "x\n");
    assert_eq!(
        line("{{.Request.Method}}", &request, ok_response()),
        "GET\n"
    );
    // Upstream appends "\n" before parsing, so a trailing trim marker eats it.
    assert_eq!(
        line("{{.Request.Method -}}", &request, ok_response()),
        "GET"
    );
}

#[test]
fn request_fields_behave_like_a_go_server_request() {
    let response = ok_response();
    let r = capture(
        Request::post("/a%20b/c?x=1&y=two%21&x=3")
            .header("host", "svc.example.com:8080")
            .header("accept", "text/html")
            .header("accept", "*/*")
            .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")
            .header("connection", "keep-alive"),
        "body",
    );
    let render = |t: &str| line(t, &r, response);
    assert_eq!(
        render(
            "{{.Request.Method}} {{.Request.Proto}} {{.Request.ProtoMajor}} {{.Request.ProtoMinor}}"
        ),
        "POST HTTP/1.1 1 1\n"
    );
    assert_eq!(
        render(
            "{{.Request.RequestURI}}|{{.Request.URL}}|{{.Request.URL.Path}}|{{.Request.URL.RawPath}}|{{.Request.URL.RawQuery}}"
        ),
        "/a%20b/c?x=1&y=two%21&x=3|/a%20b/c?x=1&y=two%21&x=3|/a b/c||x=1&y=two%21&x=3\n"
    );
    assert_eq!(
        render(
            "{{.Request.URL.Query.Get \"y\"}}|{{index .Request.URL.Query \"x\"}}|{{.Request.URL.Query}}"
        ),
        "two!|[1 3]|map[x:[1 3] y:[two!]]\n"
    );
    assert_eq!(
        render(
            "{{.Request.Host}}|{{.Request.Header.Get \"Host\"}}|{{.Request.RemoteAddr}}|{{.Request.Close}}"
        ),
        "svc.example.com:8080||10.0.0.1:34567|false\n"
    );
    // Header: canonical keys, Host removed, values in order.
    assert_eq!(
        render("{{.Request.Header}}"),
        "map[Accept:[text/html */*] Connection:[keep-alive] \
         X-B3-Traceid:[80f198ee56343ba864fe8b2a57d3eff7]]\n"
    );
    assert_eq!(
        render(
            "{{index .Request.Header \"X-B3-Traceid\"}}|{{index .Request.Header \"x-b3-traceid\"}}|\
             {{.Request.Header.Get \"x-B3-TRACEID\"}}|{{.Request.Header.Values \"Accept\"}}|\
             {{.Request.Header.Accept}}|{{.Request.Header.Missing}}|{{len .Request.Header}}"
        ),
        "[80f198ee56343ba864fe8b2a57d3eff7]|[]|80f198ee56343ba864fe8b2a57d3eff7|[text/html */*]|\
         [text/html */*]|<no value>|3\n"
    );
    assert_eq!(
        render("{{range $k, $v := .Request.Header}}{{$k}}={{len $v}};{{end}}"),
        "Accept=2;Connection=1;X-B3-Traceid=1;\n"
    );
    assert_eq!(
        render(
            "{{.TraceID}}|{{.Request.UserAgent}}|{{.Request.Referer}}|{{.Request.TransferEncoding}}"
        ),
        "80f198ee56343ba864fe8b2a57d3eff7|||[]\n"
    );
    assert_eq!(
        render(
            "{{if .Request.TLS}}https{{else}}http{{end}} {{.Request.TLS}} {{.Request.URL.User}}|{{.Request.URL.IsAbs}}"
        ),
        "http <nil> |false\n"
    );
    assert_eq!(
        render("{{.Request.ProtoAtLeast 1 1}} {{.Request.ProtoAtLeast 2 0}}"),
        "true false\n"
    );
    let tls = r.clone().with_tls(true);
    assert_eq!(
        line("{{if .Request.TLS}}https{{end}}", &tls, response),
        "https\n"
    );
}

#[test]
fn http2_requests_look_like_go_http2_server_requests() {
    let r = capture(
        Request::get("https://example.com/a%2Fb?q=1")
            .version(Version::HTTP_2)
            .header("cookie", "a=1")
            .header("cookie", "b=2"),
        "",
    );
    assert_eq!(
        line(
            "{{.Request.Proto}} {{.Request.ProtoMajor}}.{{.Request.ProtoMinor}}|{{.Request.RequestURI}}|\
             {{.Request.URL}}|{{.Request.URL.Path}}|{{.Request.Host}}|{{.Request.Header.Get \"Cookie\"}}|\
             {{.Request.ContentLength}}",
            &r,
            ok_response()
        ),
        "HTTP/2.0 2.0|/a%2Fb?q=1|/a%2Fb?q=1|/a/b|example.com|a=1; b=2|0\n"
    );
}

#[test]
fn http1_framing_headers_move_into_fields() {
    let builder = Request::post("/")
        .header("host", "h")
        .header("transfer-encoding", "chunked")
        .header("connection", "close")
        .header("x-a", "1");
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    let r = RequestInfo::from_parts(&parts, None, -1);
    assert_eq!(
        line(
            "{{.Request.ContentLength}} {{.Request.TransferEncoding}} {{.Request.Close}} {{.Request.Header}} [{{.Request.RemoteAddr}}]",
            &r,
            ok_response()
        ),
        "-1 [chunked] true map[X-A:[1]] []\n"
    );
    let (parts, ()) = Request::get("/")
        .version(Version::HTTP_10)
        .body(())
        .unwrap()
        .into_parts();
    let r = RequestInfo::from_parts(&parts, None, 0);
    assert_eq!(
        line("{{.Request.Proto}} {{.Request.Close}}", &r, ok_response()),
        "HTTP/1.0 true\n"
    );
}

#[test]
fn remote_addr_is_go_host_port() {
    let at = |addr: &str| {
        let (parts, ()) = Request::get("/").body(()).unwrap().into_parts();
        let r = RequestInfo::from_parts(&parts, Some(addr.parse().unwrap()), 0);
        line("{{.Request.RemoteAddr}}", &r, ok_response())
    };
    assert_eq!(at("10.0.0.1:80"), "10.0.0.1:80\n");
    assert_eq!(at("[::1]:8080"), "[::1]:8080\n");
    // A dual-stack listener sees IPv4 peers as v4-mapped; Go reports them as IPv4.
    assert_eq!(at("[::ffff:10.0.0.1]:80"), "10.0.0.1:80\n");
}

#[test]
fn trace_id_matches_upstream_extract_trace_id() {
    // Upstream's TestExtractTraceID table.
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        (
            &[
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
            "0af7651916cd43dd8448eb211c80319c",
        ),
        (
            &[("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7")],
            "80f198ee56343ba864fe8b2a57d3eff7",
        ),
        (
            &[("X-B3-Traceid", "463ac35c9f6413ad48485a3953bb6124")],
            "463ac35c9f6413ad48485a3953bb6124",
        ),
        (
            &[
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
            ],
            "4bf92f3577b34da6a3ce929d0e0e4736",
        ),
        (&[("X-B3-TraceId", "463ac35c9f6413ad")], "463ac35c9f6413ad"),
        (&[("Content-Type", "application/json")], ""),
        (&[], ""),
        (&[("traceparent", "invalid")], ""),
        (&[("traceparent", "00")], ""),
    ];
    for (headers, want) in cases {
        let mut builder = Request::get("/");
        for (k, v) in *headers {
            builder = builder.header(*k, *v);
        }
        let r = capture(builder, "");
        assert_eq!(
            line("{{.TraceID}}", &r, ok_response()),
            format!("{want}\n"),
            "{headers:?}"
        );
    }
}

#[test]
fn latency_and_numbers_print_as_go_does() {
    // fmt's %v for float64 is strconv's 'g' with the shortest digits: exponent form when
    // the decimal exponent is below -4 or at least 6 (not 21: that is JavaScript's and
    // encoding/json's rule), so 123456789.0 prints 1.23456789e+08.
    let r = get("/");
    let cases = [
        (0.001234, "0.001234"),
        (1.2e-05, "1.2e-05"),
        (0.0001, "0.0001"),
        (123456789.0, "1.23456789e+08"),
        (123456.0, "123456"),
        (2.0, "2"),
        (0.5, "0.5"),
        (1e21, "1e+21"),
        (0.0, "0"),
    ];
    for (latency, want) in cases {
        let response = ResponseInfo {
            code: 200,
            size: 0,
            latency,
        };
        assert_eq!(
            line("{{.Response.Latency}}", &r, response),
            format!("{want}\n")
        );
    }
    // Duration → seconds as Go's Duration.Seconds().
    assert_eq!(
        ResponseInfo::new(200, 1, Duration::from_micros(12)).latency,
        1.2e-05
    );
    let response = ResponseInfo {
        code: 404,
        size: 1234,
        latency: 0.25,
    };
    assert_eq!(
        line(
            "{{printf \"%s-%d %v %q %.2f %x %5d|%-5s|\" .Request.Method .Response.Code .Response.Latency .Request.Method .Response.Latency .Response.Size .Response.Code .Request.Method}}",
            &r,
            response
        ),
        "GET-404 0.25 \"GET\" 0.25 4d2   404|GET  |\n"
    );
    assert_eq!(
        line(
            "{{.Response}} {{printf \"%+v\" .Response}} {{.Revision}}",
            &r,
            response
        ),
        "{404 1234 0.25} &{Code:404 Size:1234 Latency:0.25} {rev ns svc cfg pn ip}\n"
    );
    assert_eq!(
        line(
            "{{print .Response.Code .Response.Latency \"x\" .Request.Method}} {{html \"<a&b>\"}} {{urlquery .Request.URL}}",
            &r,
            response
        ),
        "404 0.25xGET &lt;a&amp;b&gt; %2F\n"
    );
}

#[test]
fn conditionals_over_the_request() {
    let render = |code: i64, probe_header: bool| {
        let mut b = Request::get("/healthz");
        if probe_header {
            b = b.header("k-network-probe", "queue");
        }
        let r = capture(b, "");
        line(
            "{{if ge .Response.Code 500}}ERROR{{else if ge .Response.Code 400}}WARN{{else}}INFO{{end}} \
             {{with .Request.Header.Get \"K-Network-Probe\"}}probe={{.}}{{else}}user{{end}} \
             {{- /* comment */}} {{and .Request.URL.Path (ne .Request.Method \"POST\")}}",
            &r,
            ResponseInfo {
                code,
                size: 0,
                latency: 0.0,
            },
        )
    };
    assert_eq!(render(503, false), "ERROR user true\n");
    assert_eq!(render(404, true), "WARN probe=queue true\n");
    assert_eq!(render(200, false), "INFO user true\n");
}

/// Threads × lines, each line long enough that a writer flushing in pieces would interleave.
const THREADS: usize = 8;
const LINES: usize = 100;
const FILL: usize = 10_000;
const TEMPLATE: &str = "REQLOG {{.Request.Header.Get \"X-Thread\"}} {{.Request.Header.Get \"X-Fill\"}} {{.Response.Size}}";

fn thread_request(t: usize) -> RequestInfo {
    let fill = char::from(b'a' + t as u8).to_string().repeat(FILL);
    capture(
        Request::get("/")
            .header("x-thread", t.to_string())
            .header("x-fill", fill),
        "",
    )
}

fn log_from_threads<S: queue_proxy::request_log::LineSink + 'static>(
    logger: Arc<RequestLogger<S>>,
) {
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let logger = logger.clone();
            std::thread::spawn(move || {
                let request = thread_request(t);
                for seq in 0..LINES {
                    logger.log(&LogEntry {
                        request: &request,
                        response: ResponseInfo {
                            code: 200,
                            size: seq as i64,
                            latency: 0.0,
                        },
                        is_probe: false,
                    });
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Checks that `out` holds exactly THREADS × LINES whole lines, each thread's in order;
/// lines that are not ours (a test harness's) must not contain our marker or fill.
fn assert_whole_lines(out: &str) {
    let mut next_seq: HashMap<usize, usize> = HashMap::new();
    let mut ours = 0;
    for l in out.lines() {
        if !l.contains("REQLOG") && l.len() < 1000 {
            continue;
        }
        let parts: Vec<&str> = l.split(' ').collect();
        assert_eq!(
            parts.len(),
            4,
            "mangled line starting {:?}",
            &l[..l.len().min(80)]
        );
        assert_eq!(parts[0], "REQLOG");
        let t: usize = parts[1].parse().unwrap();
        let fill = char::from(b'a' + t as u8).to_string().repeat(FILL);
        assert!(parts[2] == fill, "thread {t}'s fill is mangled");
        let seq: usize = parts[3].parse().unwrap();
        let expected = next_seq.entry(t).or_default();
        assert_eq!(seq, *expected, "thread {t}'s lines out of order");
        *expected += 1;
        ours += 1;
    }
    assert_eq!(ours, THREADS * LINES);
}

#[test]
fn concurrent_lines_never_interleave_in_the_sink() {
    let sink = Sink::default();
    let logger =
        Arc::new(RequestLogger::with_sink(TEMPLATE, revision(), false, sink.clone()).unwrap());
    log_from_threads(logger);
    let out = String::from_utf8(sink.lock().clone()).unwrap();
    assert_whole_lines(&out);
}

/// Run in a child process by `concurrent_lines_never_interleave_on_stdout`: logs from many
/// threads to the real stdout.
#[test]
#[ignore = "helper: run by concurrent_lines_never_interleave_on_stdout in a child process"]
fn stdout_logging_child() {
    let logger = Arc::new(RequestLogger::new(TEMPLATE, revision(), false).unwrap());
    log_from_threads(logger);
}

#[test]
fn concurrent_lines_never_interleave_on_stdout() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stdout_logging_child",
            "--ignored",
            "--nocapture",
            "--quiet",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_whole_lines(&String::from_utf8(out.stdout).unwrap());
}
