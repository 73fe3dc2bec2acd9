//! `loadtest`: the demo, side-by-side load runs and the soak run. See the
//! library docs for what each does.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The workspace's target/release, where `cargo build --release` puts the binaries.
fn release_bin(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = root.parent().unwrap_or(&root);
    root.join("target/release").join(name)
}

fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

#[derive(Parser)]
#[command(
    name = "loadtest",
    about = "Demo, load runs and soak for the Rust queue-proxy and activator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// App + queue-proxy + activator + a stand-in autoscaler on loopback: a
    /// cold start, steady traffic, a burst past CC, idle; then a report.
    Demo {
        /// containerConcurrency of the demo revision.
        #[arg(long, default_value_t = 2)]
        cc: u32,
        /// The app's start-up delay, in ms.
        #[arg(long, default_value_t = 500)]
        startup_ms: u64,
        /// The app's work per request, in ms.
        #[arg(long, default_value_t = 10)]
        work_ms: u64,
        /// The steady phase, in seconds.
        #[arg(long, default_value_t = 6)]
        steady_secs: u64,
        /// The stand-in autoscaler's pod limit.
        #[arg(long, default_value_t = 2)]
        max_pods: usize,
    },
    /// Side by side with wrk and hey: app direct, nginx proxy_pass, our
    /// queue-proxy (CC=0, CC=10), activator -> queue-proxy; plus a constant-rate
    /// run with a 100 ms app. Writes a Markdown report and an SVG chart.
    Run {
        /// The queue-proxy binary [default: target/release/queue-proxy].
        #[arg(long)]
        queue_proxy_bin: Option<PathBuf>,
        /// The activator binary [default: target/release/activator].
        #[arg(long)]
        activator_bin: Option<PathBuf>,
        /// Another queue-proxy binary (e.g. upstream's) to run side by side as `compare`.
        #[arg(long)]
        compare_bin: Option<PathBuf>,
        /// wrk connection counts.
        #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
        connections: Vec<usize>,
        /// Repetitions (each target once per repetition, order rotated).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Seconds per wrk run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Warm-up seconds per target and connection count.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Total req/s of the constant-rate run (0 skips it).
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Seconds per constant-rate run.
        #[arg(long, default_value_t = 10)]
        rate_duration: u64,
        /// Where the report goes.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Half capacity through activator -> queue-proxy for a long time; RSS and
    /// fds sampled every 10 s. Passes if RSS grows <= 1 MiB after warm-up, fds
    /// stay flat and nothing errors.
    Soak {
        #[arg(long)]
        queue_proxy_bin: Option<PathBuf>,
        #[arg(long)]
        activator_bin: Option<PathBuf>,
        /// Seconds of load.
        #[arg(long, default_value_t = 600)]
        duration: u64,
        /// Seconds of warm-up (RSS growth is measured from its end).
        #[arg(long, default_value_t = 60)]
        warmup: u64,
        /// Client connections (also wrk's for the capacity run).
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// containerConcurrency of the soaked revision.
        #[arg(long, default_value_t = 0)]
        cc: u32,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare two saved outputs of `cargo bench -p benches` (e.g.
    /// benches/baseline.txt and a new run): each median and its change.
    BenchDiff { baseline: PathBuf, new: PathBuf },
    /// The sample app alone, as a process (used by `run` for its 100 ms app).
    App {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 0)]
        work_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    };
    match cli.command {
        Command::Run {
            queue_proxy_bin,
            activator_bin,
            compare_bin,
            connections,
            reps,
            duration,
            warmup,
            rate,
            rate_duration,
            out,
        } => {
            let opts = loadtest::run::RunOptions {
                queue_proxy_bin: queue_proxy_bin.unwrap_or_else(|| release_bin("queue-proxy")),
                activator_bin: activator_bin.unwrap_or_else(|| release_bin("activator")),
                compare_bin,
                connections,
                reps,
                duration_secs: duration,
                warmup_secs: warmup,
                rate_qps: rate,
                rate_secs: rate_duration,
                out_dir: out.unwrap_or_else(results_dir),
            };
            match loadtest::run::run(&opts) {
                Ok(path) => {
                    println!("report: {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("run failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Soak {
            queue_proxy_bin,
            activator_bin,
            duration,
            warmup,
            connections,
            cc,
            out,
        } => {
            let opts = loadtest::soak::SoakOptions {
                queue_proxy_bin: queue_proxy_bin.unwrap_or_else(|| release_bin("queue-proxy")),
                activator_bin: activator_bin.unwrap_or_else(|| release_bin("activator")),
                duration: Duration::from_secs(duration),
                warmup: Duration::from_secs(warmup),
                sample_every: Duration::from_secs(10),
                connections,
                load_fraction: 0.5,
                container_concurrency: cc,
                out_dir: out.unwrap_or_else(results_dir),
            };
            match loadtest::soak::run(&opts) {
                Ok((path, passed)) => {
                    println!("report: {}", path.display());
                    if passed {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("soak failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo {
            cc,
            startup_ms,
            work_ms,
            steady_secs,
            max_pods,
        } => {
            let mut config = loadtest::demo::DemoConfig::standard();
            config.container_concurrency = cc;
            config.app_startup = Duration::from_millis(startup_ms);
            config.app_work = Duration::from_millis(work_ms);
            config.steady = Duration::from_secs(steady_secs);
            config.policy.max_pods = max_pods;
            config.policy.target_per_pod = (f64::from(cc) * 0.7).max(0.7);
            match rt().block_on(loadtest::demo::run(config)) {
                Ok(report) => {
                    println!("{report}");
                    if report.errors() == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("demo failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::BenchDiff { baseline, new } => {
            match (
                std::fs::read_to_string(&baseline),
                std::fs::read_to_string(&new),
            ) {
                (Ok(old), Ok(new)) => {
                    print!("{}", loadtest::bench_diff::diff(&old, &new));
                    ExitCode::SUCCESS
                }
                (Err(e), _) => {
                    eprintln!("cannot read {}: {e}", baseline.display());
                    ExitCode::FAILURE
                }
                (_, Err(e)) => {
                    eprintln!("cannot read {}: {e}", new.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::App { listen, work_ms } => rt().block_on(async {
            match tokio::net::TcpListener::bind(listen).await {
                Ok(listener) => {
                    loadtest::app::serve(listener, Duration::from_millis(work_ms)).await;
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("app: cannot listen on {listen}: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
    }
}
