//! The `queue-proxy` binary: environment in, proxy out.
//!
//! Upstream's `cmd/queue` takes no flags and ignores its arguments; the pod spec the
//! reconciler writes has no `command` or `args`. We add `--help` (the environment contract,
//! rendered from the config table) and `--version`, and otherwise keep upstream's tolerance:
//! unknown arguments are logged and ignored, never fatal, so an image swap cannot crash-loop
//! on a stray `args:`.
//!
//! Exit codes follow upstream: 1 on a configuration or listen error (message on stderr),
//! 0 after a graceful drain, 1 at once on a second SIGTERM/SIGINT (knative.dev/pkg/signals).

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::Path;
use std::process::ExitCode;

use clap::{Arg, ArgAction, Command};

use queue_proxy::config::{self, Config, ProcessEnv};
use queue_proxy::{logging, runtime};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn main() -> ExitCode {
    let ignored_args = parse_args();

    let config = match Config::from_env(&ProcessEnv) {
        Ok(config) => config,
        Err(err) => return fail(err),
    };
    logging::init_queue_proxy(&config);
    if !ignored_args.is_empty() {
        tracing::warn!(
            args = ?ignored_args,
            "ignoring command-line arguments: queue-proxy is configured by its environment"
        );
    }

    let quota = runtime::cpu_quota_cores(Path::new(CGROUP_ROOT));
    let available = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = runtime::worker_threads(quota, config.worker_threads, available);
    tracing::info!(
        worker_threads = threads,
        cpu_quota = ?quota,
        available_cores = available,
        worker_threads_override = ?config.worker_threads,
        "sizing runtime"
    );
    let rt = match runtime::build(threads) {
        Ok(rt) => rt,
        Err(err) => return fail(format_args!("building runtime: {err}")),
    };

    // Handlers are installed before anything listens, so a SIGTERM that races startup
    // still drains instead of killing the process.
    let shutdown = {
        let _context = rt.enter();
        match queue_proxy::signals::shutdown_signal() {
            Ok(shutdown) => shutdown,
            Err(err) => return fail(format_args!("installing signal handlers: {err}")),
        }
    };
    match rt.block_on(queue_proxy::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(err),
    }
}

fn fail(err: impl std::fmt::Display) -> ExitCode {
    eprintln!("queue-proxy: {err}");
    ExitCode::FAILURE
}

/// Handles `--help` and `--version` (which exit), and returns every other argument.
fn parse_args() -> Vec<OsString> {
    let cli = Command::new("queue-proxy")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Knative Serving's queue-proxy sidecar, in Rust: a drop-in replacement.")
        .after_help(config::help_text())
        .arg(
            // Swallows anything else, flags included: upstream ignores its arguments.
            Arg::new("ignored")
                .action(ArgAction::Append)
                .num_args(0..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .value_parser(clap::value_parser!(OsString))
                .hide(true),
        );
    let args: Vec<OsString> = std::env::args_os().collect();
    match cli.try_get_matches_from(&args) {
        Ok(mut matches) => matches
            .remove_many::<OsString>("ignored")
            .map(Iterator::collect)
            .unwrap_or_default(),
        // Help and version print and exit 0.
        Err(err) if !err.use_stderr() => err.exit(),
        // Anything clap still refuses (there should be nothing) is ignored as a whole.
        Err(_) => args.into_iter().skip(1).collect(),
    }
}
