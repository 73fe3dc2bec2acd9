//! `loadtest`: the demo, side-by-side load runs and the soak run. See the
//! library docs for what each does.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command {
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
            match rt.block_on(loadtest::demo::run(config)) {
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
        Command::App { listen, work_ms } => rt.block_on(async {
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
