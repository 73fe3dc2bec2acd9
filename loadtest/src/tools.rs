//! wrk (closed loop, as fast as it goes) and hey (a fixed rate per worker):
//! running them and reading their output.

use std::io;
use std::net::SocketAddr;
use std::process::Command;

use crate::procs::children_cpu_seconds;

/// What one load-generator run measured. Latencies in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadResult {
    pub rps: Option<f64>,
    pub requests: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// Non-2xx responses plus socket errors.
    pub errors: u64,
    /// The generator's own CPU-seconds.
    pub generator_cpu: f64,
}

fn headers_args(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .flat_map(|(k, v)| ["-H".to_owned(), format!("{k}: {v}")])
        .collect()
}

fn run(program: &str, args: &[String]) -> io::Result<(String, f64)> {
    let before = children_cpu_seconds();
    let out = Command::new(program).args(args).output()?;
    let cpu = children_cpu_seconds() - before;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{program} {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok((stdout, cpu))
}

/// `wrk -t1 -c<conns> -d<secs>s --latency`.
pub fn wrk(
    addr: SocketAddr,
    conns: usize,
    secs: u64,
    headers: &[(String, String)],
) -> io::Result<LoadResult> {
    let mut args = vec![
        "-t1".to_owned(),
        format!("-c{conns}"),
        format!("-d{secs}s"),
        "--latency".to_owned(),
        "--timeout=10s".to_owned(),
    ];
    args.extend(headers_args(headers));
    args.push(format!("http://{addr}/"));
    let (out, cpu) = run("wrk", &args)?;
    let mut r = parse_wrk(&out);
    r.generator_cpu = cpu;
    Ok(r)
}

/// `hey -z <secs>s -c <workers> -q <qps per worker>`: a fixed total rate of
/// `workers x qps` while each request finishes within `1/qps`.
pub fn hey(
    addr: SocketAddr,
    workers: usize,
    qps_per_worker: f64,
    secs: u64,
    headers: &[(String, String)],
) -> io::Result<LoadResult> {
    let mut args = vec![
        "-z".to_owned(),
        format!("{secs}s"),
        "-c".to_owned(),
        workers.to_string(),
        "-q".to_owned(),
        qps_per_worker.to_string(),
        "-disable-compression".to_owned(),
    ];
    args.extend(headers_args(headers));
    args.push(format!("http://{addr}/"));
    let (out, cpu) = run("hey", &args)?;
    let mut r = parse_hey(&out);
    r.generator_cpu = cpu;
    Ok(r)
}

/// A wrk duration (`812.00us`, `1.20ms`, `2.01s`) in ms.
fn wrk_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1e3,
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        _ => return None,
    })
}

pub fn parse_wrk(out: &str) -> LoadResult {
    let mut r = LoadResult::default();
    let mut in_dist = false;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().ok();
        } else if t.starts_with("Latency Distribution") {
            in_dist = true;
            continue;
        } else if let Some((n, rest)) = t.split_once(" requests in ") {
            let _ = rest;
            r.requests = n.trim().parse().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors += v.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            r.errors += v
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        if in_dist {
            match t.split_once('%') {
                Some((pct, v)) if pct.chars().all(|c| c.is_ascii_digit()) => {
                    let ms = wrk_ms(v.trim());
                    match pct {
                        "50" => r.p50 = ms,
                        "90" => r.p90 = ms,
                        "99" => r.p99 = ms,
                        _ => {}
                    }
                }
                _ => in_dist = false,
            }
        }
    }
    r
}

pub fn parse_hey(out: &str) -> LoadResult {
    let mut r = LoadResult::default();
    let (mut in_status, mut in_errors) = (false, false);
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().ok();
        } else if let Some((pct, rest)) = t.split_once("% in ") {
            // hey prints "95%% in 0.1012 secs".
            let pct = pct.trim_end_matches('%');
            let ms = rest
                .split_whitespace()
                .next()
                .and_then(|s| s.parse::<f64>().ok())
                .map(|s| s * 1e3);
            match pct {
                "50" => r.p50 = ms,
                "90" => r.p90 = ms,
                "95" => r.p95 = ms,
                "99" => r.p99 = ms,
                _ => {}
            }
        } else if t.starts_with("Status code distribution:") {
            in_status = true;
            continue;
        } else if t.starts_with("Error distribution:") {
            (in_status, in_errors) = (false, true);
            continue;
        }
        let Some((inside, rest)) = t.strip_prefix('[').and_then(|t| t.split_once(']')) else {
            if t.is_empty() {
                (in_status, in_errors) = (false, false);
            }
            continue;
        };
        if in_status {
            // "[200]\t198 responses"
            let n: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            r.requests += n;
            if !inside.starts_with('2') {
                r.errors += n;
            }
        } else if in_errors {
            // "[3]\tGet ...: connection refused"
            r.errors += inside.parse::<u64>().unwrap_or(0);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 2s test @ http://127.0.0.1:1/
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   100.00us   50.00us   1.20ms   90.00%
  Latency Distribution
     50%   92.00us
     75%  110.00us
     90%  150.00us
     99%    1.02ms
  20000 requests in 2.00s, 1.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  10000.50
Transfer/sec:      0.50MB
";
        let r = parse_wrk(out);
        assert_eq!(r.rps, Some(10000.5));
        assert_eq!(r.requests, 20000);
        assert_eq!((r.p50, r.p90, r.p99), (Some(0.092), Some(0.15), Some(1.02)));
        assert_eq!(r.errors, 7);
    }

    #[test]
    fn reads_hey_output() {
        let out = "
Summary:
  Total:\t2.0031 secs
  Requests/sec:\t99.8450

Latency distribution:
  10%% in 0.1005 secs
  50%% in 0.1010 secs
  90%% in 0.1020 secs
  95%% in 0.1030 secs
  99%% in 0.1100 secs

Status code distribution:
  [200]\t198 responses
  [503]\t2 responses

Error distribution:
  [3]\tGet \"http://127.0.0.1:1/\": connection refused
";
        let r = parse_hey(out);
        assert_eq!(r.rps, Some(99.845));
        assert_eq!(r.requests, 200);
        assert_eq!(r.p95, Some(103.0));
        assert_eq!(r.errors, 5);
    }
}
