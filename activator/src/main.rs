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
use activator::source::RevisionSource;
use activator::source::kubernetes::KubernetesSource;
use activator::source::kubernetes::config_maps::apply_observability;
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
    // Upstream's zap fields (spec §8.4); the level from SERVING_LOGGING_LEVEL.
    logging::init_with(logging::LogFormat::new(
        "",
        &std::env::var("SERVING_LOGGING_LEVEL").unwrap_or_default(),
        "activator",
        vec![
            ("knative.dev/controller".into(), "activator".into()),
            ("knative.dev/pod".into(), config.pod_name.clone()),
        ],
    ));

    let quota = runtime::cpu_quota_cores(Path::new("/sys/fs/cgroup"));
    let available = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = runtime::worker_threads(quota, config.worker_threads, available);
    tracing::info!(worker_threads = threads, cpu_quota = ?quota, "sizing runtime");
    let rt = match runtime::build(threads) {
        Ok(rt) => rt,
        Err(err) => return fail(format_args!("building runtime: {err}")),
    };
    rt.block_on(async move {
        let mut config = config;
        let source: Arc<dyn RevisionSource> = match config.static_source.clone() {
            Some(path) => match StaticFileSource::load(&path) {
                Ok(source) => {
                    let source = Arc::new(source);
                    source.spawn_reload(STATIC_SOURCE_RELOAD);
                    source
                }
                Err(err) => return fail(err),
            },
            None => match KubernetesSource::from_config(&config).await {
                Ok(source) => {
                    let network = source.network();
                    network.apply_to(&mut config);
                    let observability = source.config_maps().borrow().observability.clone();
                    if let Err(err) = apply_observability(&observability, &mut config) {
                        return fail(err);
                    }
                    if network.system_internal_tls {
                        tracing::warn!(
                            "config-network enables system-internal-tls, which this activator \
                             does not serve yet (no :8112); plain 8012/8013 stay open"
                        );
                    }
                    Arc::new(source)
                }
                Err(err) => return fail(err),
            },
        };
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
