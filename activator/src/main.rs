//! The `activator` binary: environment in, activator out. Exits 1 on a
//! configuration or listen error (message on stderr), 0 after the drain, and 1
//! at once on a second SIGTERM/SIGINT, as upstream's does.

use std::num::NonZeroUsize;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use activator::config::Config;
use activator::server::ActivatorServer;
use activator::source::static_file::StaticFileSource;
use queue_proxy::config::ProcessEnv;
use queue_proxy::{logging, runtime, signals};

/// How often the static source file is checked for changes.
const STATIC_SOURCE_RELOAD: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").ok();
    let config = match Config::from_env(&ProcessEnv, resolv_conf.as_deref()) {
        Ok(config) => config,
        Err(err) => return fail(err),
    };
    let Some(source_path) = config.static_source.clone() else {
        return fail(
            "ACTIVATOR_STATIC_SOURCE: required: revisions come from a static file until \
             the Kubernetes source is available",
        );
    };
    logging::init(&std::env::var("SERVING_LOGGING_LEVEL").unwrap_or_default());

    let quota = runtime::cpu_quota_cores(Path::new("/sys/fs/cgroup"));
    let available = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = runtime::worker_threads(quota, config.worker_threads, available);
    tracing::info!(worker_threads = threads, cpu_quota = ?quota, "sizing runtime");
    let rt = match runtime::build(threads) {
        Ok(rt) => rt,
        Err(err) => return fail(format_args!("building runtime: {err}")),
    };
    rt.block_on(async move {
        let source = match StaticFileSource::load(&source_path) {
            Ok(source) => Arc::new(source),
            Err(err) => return fail(err),
        };
        source.spawn_reload(STATIC_SOURCE_RELOAD);
        let shutdown = match signals::shutdown_signal() {
            Ok(shutdown) => shutdown,
            Err(err) => return fail(format_args!("installing signal handlers: {err}")),
        };
        let server = match ActivatorServer::bind(config, source) {
            Ok(server) => server,
            Err(err) => return fail(err),
        };
        tracing::info!(http = %server.http_addr(), h2c = %server.h2c_addr(), "activator listening");
        server.run(shutdown).await;
        ExitCode::SUCCESS
    })
}

fn fail(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("activator: {err}");
    ExitCode::FAILURE
}
