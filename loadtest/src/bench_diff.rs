//! `loadtest bench-diff OLD NEW`: the change in each benchmark's median
//! between two saved outputs of `cargo bench -p benches` (divan's table), so
//! a change can be judged against `benches/baseline.txt`.

use std::fmt::Write as _;

/// Each benchmark's path (`group::name::t=2`) and median in nanoseconds, from
/// divan's tree table.
pub fn parse_divan(text: &str) -> Vec<(String, f64)> {
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let prefix_len = line
            .chars()
            .take_while(|c| matches!(c, '│' | '├' | '╰' | '─' | ' '))
            .count();
        let rest: String = line.chars().skip(prefix_len).collect();
        let cols: Vec<&str> = rest.split('│').collect();
        if cols.len() < 4 {
            continue;
        }
        let Some(name) = cols[0].split_whitespace().next() else {
            continue;
        };
        let depth = prefix_len / 3;
        stack.truncate(depth);
        stack.push(name.to_owned());
        if let Some(ns) = parse_time(cols[2].trim()) {
            // The root is the bench binary's name: leave it out of the path.
            out.push((stack[1.min(stack.len() - 1)..].join("::"), ns));
        }
    }
    out
}

/// `10.5 ns`, `1.2 µs`, `3 ms`, `1.1 s` in nanoseconds.
fn parse_time(s: &str) -> Option<f64> {
    let (n, unit) = s.split_once(' ')?;
    let n: f64 = n.parse().ok()?;
    let scale = match unit.trim() {
        "ps" => 1e-3,
        "ns" => 1.0,
        "µs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    Some(n * scale)
}

fn human(ns: f64) -> String {
    match ns {
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.2} µs", n / 1e3),
        n => format!("{n:.1} ns"),
    }
}

/// A table of baseline vs new medians.
pub fn diff(old: &str, new: &str) -> String {
    let old = parse_divan(old);
    let new = parse_divan(new);
    let mut out = format!(
        "{:<48} {:>12} {:>12} {:>8}\n",
        "benchmark (median)", "baseline", "new", "change"
    );
    for (name, n) in &new {
        let base = old.iter().find(|(o, _)| o == name).map(|(_, v)| *v);
        let change = base.map_or_else(
            || "new".to_owned(),
            |b| format!("{:+.1}%", (n / b - 1.0) * 100.0),
        );
        let _ = writeln!(
            out,
            "{name:<48} {:>12} {:>12} {change:>8}",
            base.map_or_else(|| "-".to_owned(), human),
            human(*n)
        );
    }
    for (name, _) in old.iter().filter(|(o, _)| !new.iter().any(|(n, _)| n == o)) {
        let _ = writeln!(out, "{name:<48} (gone)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Timer precision: 20 ns
hot_paths                      fastest       │ slowest       │ median        │ mean          │ samples │ iters
├─ breaker                                   │               │               │               │         │
│  ├─ acquire_release          10.2 ns       │ 12.3 ns       │ 10.5 ns       │ 10.6 ns       │ 100     │ 51200
│  ╰─ acquire_release_contended              │               │               │               │         │
│     ├─ t=2                   30 ns         │ 90 ns         │ 41 ns         │ 45 ns         │ 100     │ 100
│     ╰─ t=4                   40 ns         │ 99 ns         │ 52 ns         │ 55 ns         │ 100     │ 100
╰─ handler                                   │               │               │               │         │
   ╰─ via_queue_proxy          40.1 µs       │ 1.2 ms        │ 55.3 µs       │ 60 µs         │ 50      │ 50
";

    #[test]
    fn reads_divan_tables() {
        let got = parse_divan(SAMPLE);
        assert_eq!(
            got,
            vec![
                ("breaker::acquire_release".to_owned(), 10.5),
                ("breaker::acquire_release_contended::t=2".to_owned(), 41.0),
                ("breaker::acquire_release_contended::t=4".to_owned(), 52.0),
                ("handler::via_queue_proxy".to_owned(), 55_300.0),
            ]
        );
        let d = diff(SAMPLE, &SAMPLE.replace("10.5 ns", "21 ns"));
        assert!(d.contains("+100.0%"), "{d}");
        assert!(d.contains("+0.0%"), "{d}");
    }
}
