//! The demo in its short mode, in-process, judged by its report.

use loadtest::demo::{DemoConfig, Phase, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_demo_cold_starts_scales_to_zero_and_has_no_errors() {
    let report = run(DemoConfig::quick()).await.expect("demo runs");
    let text = report.to_string();
    assert!(report.cold_started(), "no cold start:\n{text}");
    assert_eq!(report.errors(), 0, "errors:\n{text}");
    assert_eq!(
        report.count(Phase::ColdStart, 200),
        report.config.cold_requests,
        "every held request released with 200:\n{text}"
    );
    // Held for at least the app's start-up.
    assert!(report.cold_waits[0] >= report.config.app_startup, "{text}");
    assert!(
        report.breaker_503s() > 0,
        "the burst past CC met the breaker:\n{text}"
    );
    assert!(report.count(Phase::SteadyDirect, 200) > 0, "{text}");
    // The autoscaler saw proxied traffic in its scrapes, and scaled back to zero.
    assert!(
        report
            .autoscaler
            .samples
            .iter()
            .any(|s| s.proxied_rps > 0.0),
        "{text}"
    );
    assert!(
        report
            .autoscaler
            .events
            .iter()
            .any(|e| e.why == "idle" && e.to == 0),
        "scaled to zero when idle:\n{text}"
    );
    assert!(text.contains("== Errors"), "{text}");
}
