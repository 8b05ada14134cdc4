//! borg-bench: measures borg-net against its targets and prints a table.
//!
//! - Real `borg-node` processes on an emulated LAN (network namespaces, as root), or on
//!   loopback with `--bootstrap` when namespaces cannot be made; it says which.
//! - In-process swarms (TCP on loopback, Noise, yamux; many to a child process) for scale.
//! - Targets are goals, not assertions: a missed target prints `pass = false`.
//! - Interrupted (SIGINT/SIGTERM), it kills its processes and removes its namespaces and temp
//!   dirs before exiting.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};

mod scale;
mod scenarios;

/// Measures borg-net end to end.
#[derive(Debug, Parser)]
#[command(name = "borg-bench", version)]
struct Args {
    /// A reduced set that runs in under 3 minutes.
    #[arg(long)]
    quick: bool,
    /// Also write one JSON object per scenario (one per line) to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Trials per scenario (default 5; 3 with --quick).
    #[arg(long)]
    trials: Option<usize>,
    /// Only these scenarios (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The borg-node executable (default: next to this one).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// Sizes of the in-process swarms of the scale scenario (default 100,500,1000; 30 with
    /// --quick).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    scale_sizes: Vec<usize>,
    /// Run one shard of the scale scenario: nodes of an org of the one `--scale-sizes`, in this
    /// process, reporting to the parent borg-bench on stdout until stdin closes (the parent
    /// starts its shards with this).
    #[arg(long, hide = true)]
    scale_shard: bool,
    /// How many nodes the shard runs.
    #[arg(long, hide = true, default_value_t = 0)]
    scale_shard_nodes: usize,
    /// The number of the shard's first node in the org.
    #[arg(long, hide = true, default_value_t = 0)]
    scale_shard_first: usize,
    /// The seed's address (absent: the shard starts the seed).
    #[arg(long, hide = true)]
    scale_seed: Option<String>,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    scenario: String,
    nodes: usize,
    trials: usize,
    unit: String,
    #[serde(deserialize_with = "f64_or_nan")]
    median: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    p95: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    max: f64,
    target: String,
    pass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// A missing measurement is NaN here and `null` in JSON (which has no NaN); read back as NaN.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Median, 95th and 99th percentile and maximum of `samples` (nearest rank).
pub fn summary(samples: &[f64]) -> (f64, f64, f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    (rank(0.5), rank(0.95), rank(0.99), s[s.len() - 1])
}

impl Row {
    /// A row from samples; `pass` decides from (median, p95, p99, max).
    pub fn from_samples(
        scenario: &str,
        nodes: usize,
        trials: usize,
        unit: &str,
        samples: &[f64],
        target: &str,
        pass: impl Fn(f64, f64, f64, f64) -> bool,
    ) -> Self {
        let (median, p95, p99, max) = summary(samples);
        Row {
            scenario: scenario.into(),
            nodes,
            trials,
            unit: unit.into(),
            median,
            p95,
            max,
            target: target.into(),
            pass: !samples.is_empty() && pass(median, p95, p99, max),
            p99: Some(p99),
            note: None,
        }
    }

    /// With a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<18} {:>5} {:>6} {:>9} {:>10} {:>10} {:>10} {:>10}  {:<28} pass",
        "scenario", "nodes", "trials", "unit", "median", "p95", "p99", "max", "target"
    );
    for r in rows {
        println!(
            "{:<18} {:>5} {:>6} {:>9} {:>10.1} {:>10.1} {:>10.1} {:>10.1}  {:<28} {}{}",
            r.scenario,
            r.nodes,
            r.trials,
            r.unit,
            r.median,
            r.p95,
            r.p99.unwrap_or(f64::NAN),
            r.max,
            r.target,
            if r.pass { "yes" } else { "NO" },
            r.note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        );
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    // The in-process scenarios log through this process: `RUST_LOG=info` shows why a swarm
    // does not converge.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let node_bin = match &args.node_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory for the borg-bench executable")?
            .join("borg-node"),
    };
    anyhow::ensure!(
        node_bin.exists(),
        "borg-node not found at {} (build it: cargo build --release -p borg-node, or pass --node-bin)",
        node_bin.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Clean up on interruption: the labs' Drop would not run.
    runtime.spawn(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        eprintln!("borg-bench: interrupted; cleaning up");
        borg_lab::emergency_cleanup();
        std::process::exit(130);
    });
    if args.scale_shard {
        // Its stdout belongs to the parent's protocol: no header, no table.
        let [org_size] = args.scale_sizes[..] else {
            anyhow::bail!("--scale-shard takes one --scale-sizes (the org's size)");
        };
        anyhow::ensure!(
            args.scale_shard_nodes >= 1,
            "--scale-shard needs --scale-shard-nodes"
        );
        let shard = scale::Shard {
            org_size,
            nodes: args.scale_shard_nodes,
            first: args.scale_shard_first,
            seed: args.scale_seed,
        };
        scale::run_shard(&shard, &runtime);
        return Ok(());
    }
    let namespaces = borg_lab::lab_possible();
    println!(
        "borg-bench: real processes on {}; borg-node = {}",
        if namespaces {
            "an emulated LAN (network namespaces, bridge, mDNS)"
        } else {
            "loopback with --bootstrap (not root: no namespaces; silent cuts emulated with SIGSTOP)"
        },
        node_bin.display()
    );
    let plan = scenarios::Plan {
        node_bin,
        namespaces,
        quick: args.quick,
        trials: args.trials.unwrap_or(if args.quick { 3 } else { 5 }).max(1),
        only: args.only,
        scale_sizes: args.scale_sizes,
    };
    let started = std::time::Instant::now();
    let rows = scenarios::run_all(&plan, &runtime);
    println!();
    print_table(&rows);
    println!(
        "\ntotal time {:?}",
        Duration::from_secs(started.elapsed().as_secs())
    );
    if let Some(path) = &args.json {
        let mut text = String::new();
        for r in &rows {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Row;

    /// A child `borg-bench` reports through JSON, where a missing measurement (NaN) is `null`.
    #[test]
    fn rows_without_samples_survive_json() {
        let row = Row::from_samples("scale-agree", 1000, 1, "s", &[], "<= 20 s", |_, _, _, _| {
            true
        })
        .note("no agreement");
        let text = serde_json::to_string(&row).expect("serialise");
        let back: Row = serde_json::from_str(&text).expect("deserialise");
        assert!(back.median.is_nan() && back.max.is_nan());
        assert!(!back.pass);
        assert_eq!(back.note.as_deref(), Some("no agreement"));
        let row = Row::from_samples("store-put", 3, 2, "ms", &[1.0, 3.0], "-", |_, _, _, _| true);
        let back: Row = serde_json::from_str(&serde_json::to_string(&row).expect("serialise"))
            .expect("deserialise");
        assert_eq!((back.median, back.max, back.pass), (1.0, 3.0, true));
    }
}
