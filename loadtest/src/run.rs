//! `loadtest run`: the real binaries side by side with nginx, on loopback.
//!
//! Throughput targets, all in front of one nginx backend (`return 200 "ok"`):
//! the backend `direct`, `nginx-proxy` (proxy_pass with kept-alive upstream
//! connections), `queue-proxy` (CC=0), `queue-proxy-cc10`, `activator` (→ its
//! own queue-proxy CC=0 → backend) and, with `--compare-bin`, `compare` (that
//! binary in the queue-proxy's place, CC=0). Each is driven by `wrk -t1 -cN`;
//! for each connection count every target is warmed up, then runs once per
//! repetition, in an order rotated per repetition, so a neighbour's burst of
//! CPU hits several targets once rather than one target every time. Medians
//! over repetitions, and ratios of medians between targets.
//!
//! The constant-rate part mirrors upstream's dataplane-probe: an app that
//! takes 100 ms, a fixed rate from `hey -q`, p95 through queue-proxy and
//! through activator → queue-proxy compared with the app direct.
//!
//! CPU is each proxy process's utime+stime over the run (the activator
//! target counts the activator and its queue-proxy); RSS is read idle (after
//! one request) and after all load.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::procs::{self, Child};
use crate::summary::{fmt, median, ratio};
use crate::svg;
use crate::tools::{self, LoadResult};

/// `loadtest run` options.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub queue_proxy_bin: PathBuf,
    pub activator_bin: PathBuf,
    pub compare_bin: Option<PathBuf>,
    pub connections: Vec<usize>,
    pub reps: usize,
    pub duration_secs: u64,
    pub warmup_secs: u64,
    /// Total rate of the constant-rate part (0 skips it).
    pub rate_qps: u32,
    pub rate_secs: u64,
    /// Where the report goes (`<out>/run-<date>.md` and `.svg`).
    pub out_dir: PathBuf,
}

/// One throughput target.
struct Target {
    name: String,
    addr: SocketAddr,
    headers: Vec<(String, String)>,
    /// The processes whose CPU and RSS count for this target.
    proxies: Vec<(String, u32)>,
}

/// One wrk or hey run.
#[derive(Debug, Clone)]
struct Run {
    target: String,
    conns: usize,
    rep: usize,
    result: LoadResult,
    proxy_cpu: Option<f64>,
    /// Machine CPU-seconds used by other processes meanwhile.
    foreign_cpu: f64,
}

const NS: &str = "knative-serving-namespace";
const REV: &str = "knative-serving-revision";

fn activator_headers(revision: &str) -> Vec<(String, String)> {
    vec![
        (NS.to_owned(), "default".to_owned()),
        (REV.to_owned(), revision.to_owned()),
    ]
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Started {
    children: Vec<Child>,
}

impl Started {
    fn pid(&self, name: &str) -> u32 {
        self.children
            .iter()
            .find(|c| c.name == name)
            .map_or(0, Child::pid)
    }
    /// `e`, with the logs of any child that has exited.
    fn explain(&mut self, e: io::Error) -> io::Error {
        let mut msg = e.to_string();
        for c in self.children.iter_mut() {
            if c.exited() {
                let _ = write!(
                    msg,
                    "\n{} has exited; its log ends:\n{}",
                    c.name,
                    c.log_tail()
                );
            }
        }
        io::Error::new(e.kind(), msg)
    }

    fn get(&mut self, name: &str) -> &mut Child {
        self.children
            .iter_mut()
            .find(|c| c.name == name)
            .expect("started")
    }
}

/// Runs everything and writes the report; returns the report's path.
pub fn run(opts: &RunOptions) -> io::Result<PathBuf> {
    procs::ensure_tools()?;
    for bin in [&opts.queue_proxy_bin, &opts.activator_bin]
        .into_iter()
        .chain(opts.compare_bin.as_ref())
    {
        if !bin.is_file() {
            return Err(io::Error::other(format!(
                "{} not found: build it with `cargo build --release -p queue-proxy -p activator` (or pass its path)",
                bin.display()
            )));
        }
    }
    let dir = std::env::temp_dir().join(format!("loadtest-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(opts, &dir);
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("logs kept in {}", dir.display());
    }
    result
}

fn start_queue_proxy(
    s: &mut Started,
    name: &str,
    bin: &Path,
    user_port: u16,
    cc: u32,
    dir: &Path,
) -> io::Result<u16> {
    let port = procs::free_port()?;
    let env = procs::queue_proxy_env(port, user_port, cc)?;
    s.children
        .push(Child::spawn(name, bin, &[], Some(&env), dir)?);
    procs::wait_ok(s.get(name), local(port), &[])?;
    Ok(port)
}

fn run_in(opts: &RunOptions, dir: &Path) -> io::Result<PathBuf> {
    let mut s = Started { children: vec![] };
    let backend = procs::free_port()?;
    s.children
        .push(procs::nginx("backend", backend, None, dir)?);
    procs::wait_ok(s.get("backend"), local(backend), &[])?;
    let nginx_port = procs::free_port()?;
    s.children
        .push(procs::nginx("nginx-proxy", nginx_port, Some(backend), dir)?);
    procs::wait_ok(s.get("nginx-proxy"), local(nginx_port), &[])?;
    let qp = &opts.queue_proxy_bin;
    let qp0 = start_queue_proxy(&mut s, "queue-proxy", qp, backend, 0, dir)?;
    let qp10 = start_queue_proxy(&mut s, "queue-proxy-cc10", qp, backend, 10, dir)?;
    let qpa = start_queue_proxy(&mut s, "queue-proxy-behind-activator", qp, backend, 0, dir)?;
    let compare = match &opts.compare_bin {
        Some(bin) => Some(start_queue_proxy(&mut s, "compare", bin, backend, 0, dir)?),
        None => None,
    };

    // The 100 ms app for the constant-rate part, with a queue-proxy in front.
    let exe = std::env::current_exe()?;
    let app100 = procs::free_port()?;
    let listen = local(app100).to_string();
    s.children.push(Child::spawn(
        "app-100ms",
        &exe,
        &["app", "--listen", &listen, "--work-ms", "100"],
        None,
        dir,
    )?);
    procs::wait_ok(s.get("app-100ms"), local(app100), &[])?;
    let qps = start_queue_proxy(&mut s, "queue-proxy-100ms", qp, app100, 0, dir)?;

    // The activator, with a revision per queue-proxy behind it.
    let revisions = serde_json::json!({"revisions": [
        {"namespace": "default", "name": "fast", "containerConcurrency": 0,
         "ready": [local(qpa).to_string()]},
        {"namespace": "default", "name": "slow", "containerConcurrency": 0,
         "ready": [local(qps).to_string()]},
    ]});
    let source = dir.join("revisions.json");
    std::fs::write(&source, revisions.to_string())?;
    let act_port = procs::free_port()?;
    let act_env = procs::activator_env("activator-loadtest", act_port, &source)?;
    s.children.push(Child::spawn(
        "activator",
        &opts.activator_bin,
        &[],
        Some(&act_env),
        dir,
    )?);
    procs::wait_ok(
        s.get("activator"),
        local(act_port),
        &activator_headers("fast"),
    )?;
    procs::wait_ok(
        s.get("activator"),
        local(act_port),
        &activator_headers("slow"),
    )?;

    let mut targets = vec![
        Target {
            name: "direct".into(),
            addr: local(backend),
            headers: vec![],
            proxies: vec![],
        },
        Target {
            name: "nginx-proxy".into(),
            addr: local(nginx_port),
            headers: vec![],
            proxies: vec![("nginx-proxy".into(), s.pid("nginx-proxy"))],
        },
        Target {
            name: "queue-proxy".into(),
            addr: local(qp0),
            headers: vec![],
            proxies: vec![("queue-proxy".into(), s.pid("queue-proxy"))],
        },
        Target {
            name: "queue-proxy-cc10".into(),
            addr: local(qp10),
            headers: vec![],
            proxies: vec![("queue-proxy-cc10".into(), s.pid("queue-proxy-cc10"))],
        },
        Target {
            name: "activator".into(),
            addr: local(act_port),
            headers: activator_headers("fast"),
            proxies: vec![
                ("activator".into(), s.pid("activator")),
                (
                    "queue-proxy-behind-activator".into(),
                    s.pid("queue-proxy-behind-activator"),
                ),
            ],
        },
    ];
    if let Some(port) = compare {
        targets.push(Target {
            name: "compare".into(),
            addr: local(port),
            headers: vec![],
            proxies: vec![("compare".into(), s.pid("compare"))],
        });
    }

    std::thread::sleep(Duration::from_secs(1));
    let rss_pids: Vec<(String, u32)> = targets.iter().flat_map(|t| t.proxies.clone()).collect();
    let idle: Vec<Rss> = rss_pids.iter().map(|(n, p)| Rss::read(n, *p)).collect();

    let per_c =
        targets.len() as u64 * (opts.reps as u64 * (opts.duration_secs + 1) + opts.warmup_secs);
    eprintln!(
        "{} targets x {} connection counts x {} reps of {} s, about {:.0} min, then the constant-rate part",
        targets.len(),
        opts.connections.len(),
        opts.reps,
        opts.duration_secs,
        (per_c * opts.connections.len() as u64) as f64 / 60.0
    );
    let mut runs = Vec::new();
    for &conns in &opts.connections {
        for t in &targets {
            tools::wrk(t.addr, conns, opts.warmup_secs, &t.headers)?;
        }
        for rep in 0..opts.reps {
            let k = rep % targets.len();
            for t in targets[k..].iter().chain(&targets[..k]) {
                let run = measure(t, &[s.pid("backend")], conns, rep, || {
                    tools::wrk(t.addr, conns, opts.duration_secs, &t.headers)
                })
                .map_err(|e| s.explain(e))?;
                eprintln!(
                    "  c={conns:<3} rep {rep} {:<18} {:>8} req/s  p50 {:>7} ms  p99 {:>7} ms  CPU {:>6} s/10k  foreign {:.1} s{}",
                    t.name,
                    fmt(run.result.rps, 0),
                    fmt(run.result.p50, 3),
                    fmt(run.result.p99, 3),
                    fmt(cpu_per_10k(&run), 3),
                    run.foreign_cpu,
                    if run.result.errors > 0 {
                        format!("  ERRORS {}", run.result.errors)
                    } else {
                        String::new()
                    }
                );
                runs.push(run);
            }
        }
    }
    let after: Vec<Rss> = rss_pids.iter().map(|(n, p)| Rss::read(n, *p)).collect();

    let mut rate_runs = Vec::new();
    if opts.rate_qps > 0 {
        // hey: 20 workers at qps/20 each; a 100 ms request leaves each worker
        // room for 10 per second.
        let workers = 20usize;
        let per_worker = f64::from(opts.rate_qps) / workers as f64;
        let rate_targets = [
            Target {
                name: "direct-100ms".into(),
                addr: local(app100),
                headers: vec![],
                proxies: vec![],
            },
            Target {
                name: "queue-proxy-100ms".into(),
                addr: local(qps),
                headers: vec![],
                proxies: vec![("queue-proxy-100ms".into(), s.pid("queue-proxy-100ms"))],
            },
            Target {
                name: "activator-100ms".into(),
                addr: local(act_port),
                headers: activator_headers("slow"),
                proxies: vec![("activator".into(), s.pid("activator"))],
            },
        ];
        eprintln!(
            "constant rate: {} req/s for {} s per run (hey -c {workers} -q {per_worker}), 100 ms app",
            opts.rate_qps, opts.rate_secs
        );
        for rep in 0..opts.reps {
            let k = rep % rate_targets.len();
            for t in rate_targets[k..].iter().chain(&rate_targets[..k]) {
                let run = measure(t, &[s.pid("app-100ms")], workers, rep, || {
                    tools::hey(t.addr, workers, per_worker, opts.rate_secs, &t.headers)
                })?;
                eprintln!(
                    "  rep {rep} {:<18} {:>6} req/s  p50 {:>7} ms  p95 {:>7} ms  p99 {:>7} ms{}",
                    t.name,
                    fmt(run.result.rps, 1),
                    fmt(run.result.p50, 2),
                    fmt(run.result.p95, 2),
                    fmt(run.result.p99, 2),
                    if run.result.errors > 0 {
                        format!("  ERRORS {}", run.result.errors)
                    } else {
                        String::new()
                    }
                );
                rate_runs.push(run);
            }
        }
    }

    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let report = Report {
        opts: opts.clone(),
        names,
        runs,
        rate_runs,
        idle,
        after,
    };
    let date = utc_date();
    std::fs::create_dir_all(&opts.out_dir)?;
    let md_path = opts.out_dir.join(format!("run-{date}.md"));
    let svg_name = format!("run-{date}.svg");
    std::fs::write(opts.out_dir.join(&svg_name), report.svg())?;
    std::fs::write(&md_path, report.markdown(&date, &svg_name))?;
    println!("{}", report.summary_table());
    Ok(md_path)
}

/// Runs `go` against `t`, with the CPU of `t`'s proxies and of `backends`
/// (the apps behind them) over the run.
fn measure(
    t: &Target,
    backends: &[u32],
    conns: usize,
    rep: usize,
    go: impl FnOnce() -> io::Result<LoadResult>,
) -> io::Result<Run> {
    let backend_cpu = || -> f64 { backends.iter().filter_map(|p| procs::cpu_seconds(*p)).sum() };
    let b0 = backend_cpu();
    let cpu = |t: &Target| -> Option<f64> {
        if t.proxies.is_empty() {
            return None;
        }
        t.proxies.iter().map(|(_, p)| procs::cpu_seconds(*p)).sum()
    };
    let cpu0 = cpu(t);
    let m0 = procs::machine_cpu_seconds();
    let result = go()?;
    let m1 = procs::machine_cpu_seconds();
    let cpu1 = cpu(t);
    let backend = backend_cpu() - b0;
    let proxy_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let busy = m0.zip(m1).map_or(0.0, |(a, b)| b.0 - a.0);
    // Ours: the proxies, the backend and the generator; what is left is other
    // work on the machine.
    let foreign = (busy - proxy_cpu.unwrap_or(0.0) - backend - result.generator_cpu).max(0.0);
    Ok(Run {
        target: t.name.clone(),
        conns,
        rep,
        result,
        proxy_cpu,
        foreign_cpu: foreign,
    })
}

fn cpu_per_10k(run: &Run) -> Option<f64> {
    let reqs = run.result.requests as f64;
    run.proxy_cpu.filter(|_| reqs > 0.0).map(|c| c / reqs * 1e4)
}

/// RSS of one process, in MiB.
#[derive(Debug, Clone)]
struct Rss {
    name: String,
    vm_rss: Option<f64>,
    anon: Option<f64>,
}

impl Rss {
    fn read(name: &str, pid: u32) -> Rss {
        let mib = |k| procs::status_kib(pid, k).map(|v| v as f64 / 1024.0);
        Rss {
            name: name.to_owned(),
            vm_rss: mib("VmRSS"),
            anon: mib("RssAnon"),
        }
    }
}

/// Today's date, UTC, as `YYYY-MM-DD`.
pub fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86400) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Medians of one target at one connection count.
#[derive(Debug, Clone, Default)]
struct Medians {
    rps: Option<f64>,
    p50: Option<f64>,
    p90: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    cpu_10k: Option<f64>,
    errors: u64,
}

fn medians<'a>(runs: impl Iterator<Item = &'a Run> + Clone) -> Medians {
    Medians {
        rps: median(runs.clone().map(|r| r.result.rps)),
        p50: median(runs.clone().map(|r| r.result.p50)),
        p90: median(runs.clone().map(|r| r.result.p90)),
        p95: median(runs.clone().map(|r| r.result.p95)),
        p99: median(runs.clone().map(|r| r.result.p99)),
        cpu_10k: median(runs.clone().map(cpu_per_10k)),
        errors: runs.map(|r| r.result.errors).sum(),
    }
}

struct Report {
    opts: RunOptions,
    names: Vec<String>,
    runs: Vec<Run>,
    rate_runs: Vec<Run>,
    idle: Vec<Rss>,
    after: Vec<Rss>,
}

impl Report {
    fn med(&self, name: &str, conns: usize) -> Medians {
        medians(
            self.runs
                .iter()
                .filter(|r| r.target == name && r.conns == conns),
        )
    }

    fn rate_med(&self, name: &str) -> Medians {
        medians(self.rate_runs.iter().filter(|r| r.target == name))
    }

    /// RPS ratio of `a` to `b` in each repetition (they ran minutes apart at most).
    fn per_rep_rps(&self, a: &str, b: &str, conns: usize) -> Vec<Option<f64>> {
        (0..self.opts.reps)
            .map(|rep| {
                let get = |n: &str| {
                    self.runs
                        .iter()
                        .find(|r| r.target == n && r.conns == conns && r.rep == rep)
                        .and_then(|r| r.result.rps)
                };
                ratio(get(a), get(b))
            })
            .collect()
    }

    /// (name, against, what) pairs for the ratio table.
    fn pairs(&self) -> Vec<(&str, &str)> {
        let mut p = vec![
            ("queue-proxy", "nginx-proxy"),
            ("queue-proxy-cc10", "nginx-proxy"),
            ("activator", "queue-proxy"),
        ];
        if self.names.iter().any(|n| n == "compare") {
            p.push(("queue-proxy", "compare"));
        }
        p
    }

    fn ratio_rows(&self) -> Vec<[String; 7]> {
        let mut rows = Vec::new();
        for (a, b) in self.pairs() {
            for &c in &self.opts.connections {
                let (ma, mb, md) = (self.med(a, c), self.med(b, c), self.med("direct", c));
                let added = |m: &Medians| m.p50.zip(md.p50).map(|(x, d)| x - d);
                let per_rep: Vec<String> = self
                    .per_rep_rps(a, b, c)
                    .into_iter()
                    .map(|r| fmt(r, 2))
                    .collect();
                rows.push([
                    format!("{a} / {b}"),
                    c.to_string(),
                    fmt(ratio(ma.rps, mb.rps), 2),
                    format!("[{}]", per_rep.join(", ")),
                    fmt(ratio(ma.cpu_10k, mb.cpu_10k), 2),
                    format!("{} / {}", fmt(added(&ma), 3), fmt(added(&mb), 3)),
                    fmt(ratio(added(&ma), added(&mb)), 2),
                ]);
            }
        }
        rows
    }

    fn summary_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{:<18} {:>3} {:>9} {:>8} {:>8} {:>8} {:>10} {:>4}",
            "target", "c", "req/s", "p50 ms", "p90 ms", "p99 ms", "CPU s/10k", "err"
        );
        for &c in &self.opts.connections {
            for n in &self.names {
                let m = self.med(n, c);
                let _ = writeln!(
                    out,
                    "{:<18} {:>3} {:>9} {:>8} {:>8} {:>8} {:>10} {:>4}",
                    n,
                    c,
                    fmt(m.rps, 0),
                    fmt(m.p50, 3),
                    fmt(m.p90, 3),
                    fmt(m.p99, 3),
                    fmt(m.cpu_10k, 3),
                    m.errors
                );
            }
        }
        let _ = writeln!(
            out,
            "\n{:<32} {:>3} {:>6} {:>9} {:>16}",
            "ratio (medians)", "c", "RPS x", "CPU/req x", "p50 added x"
        );
        for r in self.ratio_rows() {
            let _ = writeln!(
                out,
                "{:<32} {:>3} {:>6} {:>9} {:>16}",
                r[0], r[1], r[2], r[4], r[6]
            );
        }
        if !self.rate_runs.is_empty() {
            let d = self.rate_med("direct-100ms");
            let _ = writeln!(out, "\nconstant rate, 100 ms app: p95 overhead vs direct");
            for n in ["queue-proxy-100ms", "activator-100ms"] {
                let m = self.rate_med(n);
                let overhead = m.p95.zip(d.p95).map(|(a, b)| a - b);
                let _ = writeln!(
                    out,
                    "  {n:<18} p95 {} ms  ({} ms)",
                    fmt(m.p95, 2),
                    overhead.map_or_else(|| "-".to_owned(), |o| format!("{o:+.2}"))
                );
            }
        }
        out
    }

    fn markdown(&self, date: &str, svg_name: &str) -> String {
        let o = &self.opts;
        let mut md = String::new();
        let _ = writeln!(md, "# Load run, {date}\n");
        let _ = writeln!(
            md,
            "`loadtest run` on {} ({} CPUs), shared with other agents compiling Rust: \
             **a noisy machine**. Targets ran in alternation (order rotated per repetition) \
             and every figure is a median of {} repetitions; ratios are between targets \
             measured in the same minutes. `foreign` is machine CPU used by other processes \
             during a run.\n",
            cpu_model(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            o.reps
        );
        let _ = writeln!(
            md,
            "- commit: `{}`\n- queue-proxy: `{}`\n- activator: `{}`{}\n- wrk -t1, {} s per run ({} s warm-up per target and connection count), connections {:?}\n- backend: nginx, one worker, `return 200 \"ok\"`; nginx-proxy: one worker, `proxy_pass` with `keepalive 64`\n",
            git_head(),
            o.queue_proxy_bin.display(),
            o.activator_bin.display(),
            o.compare_bin
                .as_ref()
                .map(|b| format!("\n- compare: `{}`", b.display()))
                .unwrap_or_default(),
            o.duration_secs,
            o.warmup_secs,
            o.connections
        );
        let foreign: Vec<f64> = self.runs.iter().map(|r| r.foreign_cpu).collect();
        let busy = foreign
            .iter()
            .filter(|f| **f > o.duration_secs as f64 * 0.5)
            .count();
        let _ = writeln!(
            md,
            "Noise: median foreign CPU per run {} s, max {} s; {busy} of {} runs had more than half a core of foreign load.\n",
            fmt(median(foreign.iter().map(|f| Some(*f))), 1),
            fmt(foreign.iter().copied().reduce(f64::max), 1),
            foreign.len()
        );
        let _ = writeln!(md, "![chart]({svg_name})\n");
        let _ = writeln!(md, "## Medians\n");
        let _ = writeln!(
            md,
            "| target | c | req/s | p50 ms | p90 ms | p99 ms | proxy CPU s/10k req | errors |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for &c in &o.connections {
            for n in &self.names {
                let m = self.med(n, c);
                let _ = writeln!(
                    md,
                    "| {n} | {c} | {} | {} | {} | {} | {} | {} |",
                    fmt(m.rps, 0),
                    fmt(m.p50, 3),
                    fmt(m.p90, 3),
                    fmt(m.p99, 3),
                    fmt(m.cpu_10k, 3),
                    m.errors
                );
            }
        }
        let _ = writeln!(
            md,
            "\nThe activator target's CPU is the activator's plus its queue-proxy's.\n\n## Ratios\n\n\
             From the medians; the RPS ratio in each repetition in brackets (its spread is the honest error bar). \
             \"p50 added\" is each target's p50 minus direct's.\n\n\
             | pair | c | RPS × | RPS × per rep | CPU/req × | p50 added, ms | p50 added × |\n| --- | ---: | ---: | --- | ---: | --- | ---: |"
        );
        for r in self.ratio_rows() {
            let _ = writeln!(md, "| {} |", r.join(" | "));
        }
        if !self.rate_runs.is_empty() {
            let d = self.rate_med("direct-100ms");
            let _ = writeln!(
                md,
                "\n## Constant rate (upstream's dataplane-probe)\n\n\
                 A 100 ms app at {} req/s (hey, 20 workers), {} s per run, medians of {} runs. \
                 Upstream's SLO is +10 ms at p95; ours aims at +1 ms.\n\n\
                 | target | req/s | p50 ms | p95 ms | p99 ms | p95 overhead vs direct, ms | errors |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
                o.rate_qps, o.rate_secs, o.reps
            );
            for n in ["direct-100ms", "queue-proxy-100ms", "activator-100ms"] {
                let m = self.rate_med(n);
                let _ = writeln!(
                    md,
                    "| {n} | {} | {} | {} | {} | {} | {} |",
                    fmt(m.rps, 1),
                    fmt(m.p50, 2),
                    fmt(m.p95, 2),
                    fmt(m.p99, 2),
                    fmt(m.p95.zip(d.p95).map(|(a, b)| a - b), 2),
                    m.errors
                );
            }
        }
        let _ = writeln!(
            md,
            "\n## RSS, MiB\n\nIdle: after start-up and one request. After: once all throughput load was over. Anon: the `RssAnon` part (heap, stacks); the rest is mapped files (binary, shared libraries).\n\n\
             | process | idle VmRSS | idle anon | after VmRSS | after anon |\n| --- | ---: | ---: | ---: | ---: |"
        );
        for (i, a) in self.idle.iter().zip(&self.after) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                i.name,
                fmt(i.vm_rss, 2),
                fmt(i.anon, 2),
                fmt(a.vm_rss, 2),
                fmt(a.anon, 2)
            );
        }
        let _ = writeln!(
            md,
            "\n## Every run\n\n| c | rep | target | req/s | p50 ms | p99 ms | CPU s/10k | foreign CPU s |\n| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
        );
        for r in self.runs.iter().chain(&self.rate_runs) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                r.conns,
                r.rep,
                r.target,
                fmt(r.result.rps, 0),
                fmt(r.result.p50, 3),
                fmt(r.result.p99, 3),
                fmt(cpu_per_10k(r), 3),
                r.foreign_cpu
            );
        }
        md
    }

    fn svg(&self) -> String {
        let groups: Vec<String> = self.names.clone();
        let mut charts = Vec::new();
        for &c in &self.opts.connections {
            let meds: Vec<Medians> = self.names.iter().map(|n| self.med(n, c)).collect();
            charts.push(svg::bars(
                &format!("Requests per second, wrk -c{c} (median)"),
                "req/s",
                &groups,
                &[("req/s", meds.iter().map(|m| m.rps).collect())],
            ));
            charts.push(svg::bars(
                &format!("Latency, wrk -c{c} (median of each percentile)"),
                "ms",
                &groups,
                &[
                    ("p50", meds.iter().map(|m| m.p50).collect()),
                    ("p90", meds.iter().map(|m| m.p90).collect()),
                    ("p99", meds.iter().map(|m| m.p99).collect()),
                ],
            ));
        }
        if !self.rate_runs.is_empty() {
            let names = ["direct-100ms", "queue-proxy-100ms", "activator-100ms"];
            let meds: Vec<Medians> = names.iter().map(|n| self.rate_med(n)).collect();
            charts.push(svg::bars(
                &format!("Constant rate {} req/s, 100 ms app", self.opts.rate_qps),
                "ms",
                &names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
                &[
                    ("p50", meds.iter().map(|m| m.p50).collect()),
                    ("p95", meds.iter().map(|m| m.p95).collect()),
                    ("p99", meds.iter().map(|m| m.p99).collect()),
                ],
            ));
        }
        svg::stack(&charts)
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|x| x.1.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// The commit the work tree is at (the binaries may be built from another).
pub fn git_head() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}
