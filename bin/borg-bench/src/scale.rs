//! The scale scenario: an org of `n` nodes run in-process (many swarms to a process), over TCP
//! on loopback with Noise and yamux, the stack real nodes use.
//!
//! A trial runs its nodes in child `borg-bench` processes ("shards") of at most `SHARD_NODES`
//! nodes. Every second each shard surveys its own nodes and reports the result as one JSON line
//! on its stdout; this process merges the reports and decides when the whole org agreed. A
//! shard stops when its stdin closes, so it cannot outlive the trial (or its parent).
//!
//! Why TCP: over libp2p's in-memory transport, 1,000 nodes took 56–206 s to agree (five trials,
//! session 15), with a few links that carried nothing for minutes; the same code over TCP on
//! loopback agreed in 21–25 s in four trials out of four (session 16). Nodes never use the
//! memory transport, so it was measuring something users do not run.
//!
//! Why shards: each TCP connection between two nodes of one process holds two of its file
//! descriptors, and this machine's limit is 20,000 per process (a hard limit root cannot raise
//! in this container). 1,000 nodes held ~16,800 descriptors in one process after agreeing
//! (~14 connections a node) and would pass the limit as members keep linking up to
//! `org_degree`; 500 to a process leave room for 20 connections a node.
//!
//! Why the seed has a process of its own: every other node bootstraps from it, so it carries a
//! connection to each, and it becomes the rep. On a real network it has a CPU of its own;
//! sharing a runtime with 499 nodes, its event loop waited its turn behind theirs, so its
//! answers and what it learnt of its members ran seconds late (1,000 nodes: agreed in
//! 20.6–26.1 s; with the seed alone, 14.0 s, its process using ~35 % of one core).

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;

use crate::{
    Row,
    scenarios::{ORG, Plan, proc_rss_kib, unix_ms},
};

/// Most nodes one shard process runs (see the module docs for why there is a limit); the seed
/// runs alone in the first.
const SHARD_NODES: usize = 500;

/// How long a shard may take to start its first node and report the seed's address.
const SEED_PATIENCE: Duration = Duration::from_secs(60);

/// A node's view of the org: `(rep, term)`, or `None` when it has no rep or did not answer.
type View = Option<(String, u64)>;

/// What a shard tells its parent: one JSON object per line on its stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Report {
    /// The first shard started the seed (node 0): the others bootstrap from `addr`. `started_ms`
    /// is `unix_ms` just before the seed started, where the agreement time is counted from.
    Seed { addr: String, started_ms: u64 },
    /// One survey of the shard's nodes.
    Survey(Partial),
    /// The shard could not run its nodes.
    Failed(String),
}

/// One shard's survey of its own nodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Partial {
    /// Each distinct view `(rep, term)` (`None`: no rep, or the node did not answer), how many
    /// of the shard's nodes hold it, and why its rep got there (as one holder gives it).
    views: Vec<(View, usize, String)>,
    /// Fewest members (itself included) a node knows.
    members_min: usize,
    peers_min: usize,
    peers_max: usize,
    peers_sum: usize,
    /// Members known by the best-informed node of the shard that believes it is rep.
    rep_knows: usize,
    /// When the view surveyed came about, by the nodes' own clocks (unix ms): the last node
    /// adopted its rep, or a rep first heard of its last member, whichever came later.
    settled_ms: u64,
    /// The shard's RSS growth since it started (KiB).
    rss_growth_kib: f64,
}

/// The whole org, merged from one survey of every shard.
struct Survey {
    views: usize,
    /// Nodes holding the most common view.
    largest: usize,
    rep_knows: usize,
    members_min: usize,
    peers: (usize, usize, usize),
    /// One agreed rep *of the whole org*: every node names it, and it knows every member (its
    /// line of succession is drawn from all of them).
    agreed: bool,
    settled_ms: u64,
    /// The reason the most common view's rep got there.
    reason: String,
    rss_growth_kib: f64,
}

impl Survey {
    fn merge(parts: &[Partial], n: usize) -> Self {
        let mut views: HashMap<&View, (usize, &str)> = HashMap::new();
        for (view, count, reason) in parts.iter().flat_map(|p| &p.views) {
            views.entry(view).or_insert((0, reason)).0 += count;
        }
        let answered: usize = views.values().map(|(count, _)| count).sum();
        let (largest, reason) = views
            .values()
            .max_by_key(|(count, _)| *count)
            .map_or((0, ""), |(count, reason)| (*count, *reason));
        let rep_knows = parts.iter().map(|p| p.rep_knows).max().unwrap_or(0);
        let peers_sum: usize = parts.iter().map(|p| p.peers_sum).sum();
        Self {
            views: views.len(),
            largest,
            rep_knows,
            members_min: parts.iter().map(|p| p.members_min).min().unwrap_or(0),
            peers: (
                parts.iter().map(|p| p.peers_min).min().unwrap_or(0),
                peers_sum / n.max(1),
                parts.iter().map(|p| p.peers_max).max().unwrap_or(0),
            ),
            agreed: views.len() == 1
                && !views.contains_key(&None)
                && answered == n
                && rep_knows >= n,
            settled_ms: parts.iter().map(|p| p.settled_ms).max().unwrap_or(0),
            reason: reason.to_string(),
            rss_growth_kib: parts.iter().map(|p| p.rss_growth_kib).sum(),
        }
    }

    fn mib_per_node(&self, n: usize) -> f64 {
        self.rss_growth_kib / 1024.0 / n.max(1) as f64
    }
}

impl std::fmt::Display for Survey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (min, avg, max) = self.peers;
        write!(
            f,
            "views {} (largest {}, {})  rep knows {}  members known >= {}  peers {min}/{avg}/{max} (min/avg/max)",
            self.views, self.largest, self.reason, self.rep_knows, self.members_min
        )
    }
}

/// How long the org keeps running after it first agrees, before its memory is measured and
/// its agreement checked again: by then the members have made their links (at the moment of
/// agreement many still have one or two), and the connections of the first DHT lookups have
/// been trimmed (after the nodes' 10 s `idle_timeout`). `--quick` waits 15 s, which keeps it
/// under 3 minutes (45 s took it to 204 s).
fn settle_time(plan: &Plan) -> Duration {
    Duration::from_secs(if plan.quick { 15 } else { 45 })
}

/// Runs the scale scenario for `n` nodes, `plan.trials` times (once with `--quick`), and merges
/// the trials into one row per measurement.
pub fn trials(plan: &Plan, n: usize) -> Vec<Row> {
    // A trial takes a minute or more, most of it `settle_time`: --quick keeps to one.
    let trials = if plan.quick { 1 } else { plan.trials };
    let runs: Vec<Result<Vec<Row>, String>> = (1..=trials)
        .map(|t| {
            eprintln!("scale {n}: trial {t} of {trials}");
            trial(plan, n)
        })
        .collect();
    merge_trials(n, &runs)
}

/// One row per scenario name found in `runs` (one entry per trial, each that trial's rows):
/// each trial that measured something gives one sample (its row's median), and the row
/// passes only if every trial's row passed. The note lists every trial.
fn merge_trials(n: usize, runs: &[Result<Vec<Row>, String>]) -> Vec<Row> {
    let mut names: Vec<&str> = Vec::new();
    for row in runs.iter().flatten().flatten() {
        if !names.contains(&row.scenario.as_str()) {
            names.push(&row.scenario);
        }
    }
    names
        .into_iter()
        .filter_map(|name| {
            let of_trial: Vec<Result<&Row, &str>> = runs
                .iter()
                .map(|run| match run {
                    Ok(rows) => rows.iter().find(|r| r.scenario == name).ok_or("no result"),
                    Err(e) => Err(e.as_str()),
                })
                .collect();
            let template = of_trial.iter().find_map(|r| r.ok())?;
            let samples: Vec<f64> = of_trial
                .iter()
                .filter_map(|r| r.ok())
                .map(|r| r.median)
                .filter(|m| !m.is_nan())
                .collect();
            let each: Vec<String> = of_trial
                .iter()
                .map(|r| match r {
                    Ok(r) if !r.median.is_nan() => {
                        format!("{:.1}{}", r.median, if r.pass { "" } else { " (missed)" })
                    }
                    Ok(r) => format!("none ({})", r.note.as_deref().unwrap_or("no result")),
                    Err(e) => format!("none ({e})"),
                })
                .collect();
            let every_trial_passed = of_trial.iter().all(|r| r.is_ok_and(|r| r.pass));
            let row = Row::from_samples(
                name,
                n,
                runs.len(),
                &template.unit,
                &samples,
                &template.target,
                |_, _, _, _| every_trial_passed,
            );
            Some(row.note(format!(
                "trials: {}; met only if every trial met it; first trial: {}",
                each.join(", "),
                template.note.as_deref().unwrap_or("-")
            )))
        })
        .collect()
}

/// The shard processes of one trial. Dropping it closes their stdin (their signal to stop),
/// waits for them (killing any that does not end within 30 s) and removes their data
/// directories.
#[derive(Default)]
struct Shards {
    running: Vec<(Child, PathBuf)>,
}

impl Shards {
    /// Starts shard `index` with `nodes` nodes numbered from `first`; its reports arrive on
    /// `reports` as `(index, Some(report))`, and `(index, None)` when its stdout closes.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        plan: &Plan,
        n: usize,
        index: usize,
        nodes: usize,
        first: usize,
        seed: Option<&str>,
        reports: mpsc::Sender<(usize, Option<Report>)>,
    ) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("borg-bench's own path: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--scale-shard")
            .args(["--scale-sizes", &n.to_string()])
            .args(["--scale-shard-nodes", &nodes.to_string()])
            .args(["--scale-shard-first", &first.to_string()])
            .arg("--node-bin")
            .arg(&plan.node_bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(seed) = seed {
            cmd.args(["--scale-seed", seed]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start a shard borg-bench: {e}"))?;
        borg_lab::track_process(child.id());
        // Its data directory, should it be killed before it removes it.
        let data = data_dir(child.id());
        borg_lab::track_temp_dir(data.clone());
        let stdout = child.stdout.take();
        self.running.push((child, data));
        let stdout = stdout.ok_or("a shard without stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Report>(&line) {
                    Ok(report) => {
                        if reports.send((index, Some(report))).is_err() {
                            return;
                        }
                    }
                    Err(e) => eprintln!(
                        "scale {n}: shard {index} said something unreadable ({e}): {line}"
                    ),
                }
            }
            let _ = reports.send((index, None));
        });
        Ok(())
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for (child, _) in &mut self.running {
            drop(child.stdin.take());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (child, data) in &mut self.running {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
            borg_lab::forget_process(child.id());
            let _ = std::fs::remove_dir_all(&*data);
            borg_lab::forget_temp_dir(data);
        }
    }
}

/// Waits for a survey from every one of `shards` shards (the latest each sends) and merges them.
fn next_round(
    reports: &mpsc::Receiver<(usize, Option<Report>)>,
    shards: usize,
    n: usize,
    deadline: Instant,
) -> Result<Survey, String> {
    let mut latest: Vec<Option<Partial>> = vec![None; shards];
    while latest.iter().any(Option::is_none) {
        let wait = deadline.saturating_duration_since(Instant::now());
        match reports.recv_timeout(wait) {
            Ok((k, Some(Report::Survey(p)))) => latest[k] = Some(p),
            Ok((k, Some(Report::Failed(e)))) => return Err(format!("shard {k} failed: {e}")),
            Ok((_, Some(Report::Seed { .. }))) => {}
            Ok((k, None)) => return Err(format!("shard {k} ended unexpectedly")),
            Err(_) => return Err("timed out".into()),
        }
    }
    Ok(Survey::merge(
        &latest.into_iter().flatten().collect::<Vec<_>>(),
        n,
    ))
}

/// One trial of the scale scenario for `n` nodes in fresh shard processes: its rows.
fn trial(plan: &Plan, n: usize) -> Result<Vec<Row>, String> {
    // The seed alone in the first shard, the other nodes split evenly over the rest.
    let others = n.saturating_sub(1);
    let rest = others.div_ceil(SHARD_NODES).max(1);
    let sizes: Vec<usize> = std::iter::once(1)
        .chain((0..rest).map(|k| others / rest + usize::from(k < others % rest)))
        .filter(|&size| size > 0)
        .collect();
    let shards = sizes.len();
    let (tx, rx) = mpsc::channel();
    let mut running = Shards::default();
    running.start(plan, n, 0, sizes[0], 0, None, tx.clone())?;
    let seed_deadline = Instant::now() + SEED_PATIENCE;
    let (seed, started_ms) = loop {
        let wait = seed_deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok((_, Some(Report::Seed { addr, started_ms }))) => break (addr, started_ms),
            Ok((_, Some(Report::Failed(e)))) => return Err(format!("shard 0 failed: {e}")),
            Ok((_, Some(Report::Survey(_)))) => {}
            Ok((_, None)) => return Err("shard 0 ended before starting the seed".into()),
            Err(_) => return Err(format!("shard 0 started no seed in {SEED_PATIENCE:?}")),
        }
    };
    let started = Instant::now();
    let mut first = sizes[0];
    for (k, &size) in sizes.iter().enumerate().skip(1) {
        running.start(plan, n, k, size, first, Some(&seed), tx.clone())?;
        first += size;
    }
    drop(tx);
    let limit = Duration::from_secs(if plan.quick { 120 } else { 300 });
    let settle = settle_time(plan);
    let mut last_growth = 0.0;
    let outcome = loop {
        let round = match next_round(&rx, shards, n, started + limit) {
            Ok(round) => round,
            Err(e) => {
                break Err(format!(
                    "no agreement within {limit:?}: {e} ({:.1} MiB per node)",
                    last_growth
                ));
            }
        };
        last_growth = round.mib_per_node(n);
        // Printed as progress, so that a run that does not converge shows why.
        eprintln!(
            "scale {n}: {:>5.1} s  {round}",
            started.elapsed().as_secs_f64()
        );
        if round.agreed {
            // A survey of 1,000 busy nodes takes seconds: the time is when the agreed view came
            // about, by the nodes' own records, not when the survey saw it.
            let took = Duration::from_millis(round.settled_ms.saturating_sub(started_ms));
            let seen = started.elapsed();
            let at_agreement = round.mib_per_node(n);
            let settled = Instant::now() + settle;
            // The shards keep surveying meanwhile; those rounds are not needed.
            while let Some(wait) = settled.checked_duration_since(Instant::now()) {
                match rx.recv_timeout(wait) {
                    Ok((k, None)) => {
                        eprintln!("scale {n}: shard {k} ended while settling");
                        break;
                    }
                    Ok((k, Some(Report::Failed(e)))) => {
                        eprintln!("scale {n}: shard {k} failed while settling: {e}");
                        break;
                    }
                    // Every shard's reader has ended (each reported its end first).
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    _ => {}
                }
            }
            let later = next_round(&rx, shards, n, Instant::now() + Duration::from_secs(60));
            break later.map(|later| {
                eprintln!(
                    "scale {n}: {:>5.1} s  {later}  ({settle:?} after agreeing)",
                    started.elapsed().as_secs_f64()
                );
                (took, seen, at_agreement, later)
            });
        }
    };
    drop(running);
    Ok(match outcome {
        Ok((took, seen, at_agreement, later)) => vec![
            Row::from_samples(
                "scale-agree",
                n,
                1,
                "s",
                &[took.as_secs_f64()],
                "<= 20 s at 1000",
                // An agreement that falls apart again is not one.
                |m, _, _, _| m <= 20.0 && later.agreed,
            )
            .note(format!(
                "in-process over TCP loopback (the seed in a process of its own, the others in {} of at most {SHARD_NODES}), from the first start until all name one rep and it knows all members (by the nodes' rep_since_ms and known_since_ms; a survey saw it at {:.1} s); {settle:?} later {}",
                shards - 1,
                seen.as_secs_f64(),
                if later.agreed {
                    "still agreed".to_string()
                } else {
                    format!("NOT agreed ({} views, largest {}/{n})", later.views, later.largest)
                }
            )),
            Row::from_samples(
                "scale-memory",
                n,
                1,
                "MiB/node",
                &[later.mib_per_node(n)],
                "<= 4 MiB per node",
                |m, _, _, _| m <= 4.0,
            )
            .note(format!(
                "process RSS growth per node {settle:?} after agreeing ({at_agreement:.1} at agreement); peers per node {}/{}/{} (min/avg/max)",
                later.peers.0, later.peers.1, later.peers.2
            )),
        ],
        Err(e) => vec![
            Row::from_samples(
                "scale-agree",
                n,
                1,
                "s",
                &[],
                "<= 20 s at 1000",
                |_, _, _, _| false,
            )
            .note(e),
        ],
    })
}

/// The data directory of shard process `pid` (a parent `borg-bench` removes its shards').
fn data_dir(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("borg-bench-scale-{pid}"))
}

/// What a shard process runs: `nodes` nodes of an org of `org_size`, numbered from `first`.
pub struct Shard {
    pub org_size: usize,
    pub nodes: usize,
    pub first: usize,
    /// The seed's address; without one this shard starts the seed as its first node.
    pub seed: Option<String>,
}

fn report(report: &Report) {
    // Rust's stdout is line-buffered: each report reaches the parent at once.
    if let Ok(line) = serde_json::to_string(report) {
        println!("{line}");
    }
}

/// Runs one shard until its stdin closes: starts its nodes, then surveys them every second and
/// reports each survey on stdout.
pub fn run_shard(shard: &Shard, rt: &Runtime) {
    use borg_node::{
        behaviour::TransportKind,
        config::{Config, Layer},
        node,
    };
    let me = std::process::id();
    let rss_before = proc_rss_kib(me).unwrap_or(0.0);
    let tmp = data_dir(me);
    borg_lab::track_temp_dir(tmp.clone());
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        // The parent closes our stdin to stop us, and so does its death.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = stop.send(true);
    });
    let config = |i: usize, seed: Option<String>| {
        Config::resolve(
            tmp.join(i.to_string()),
            Layer {
                listen: Some(vec!["/ip4/127.0.0.1/tcp/0".into()]),
                bootstrap: Some(seed.into_iter().collect()),
                orgs: Some(vec![ORG.into()]),
                mdns: Some(false),
                // Hundreds of nodes share two cores here, where each real node has a CPU of its
                // own: the liveness timers are relaxed so that pongs late from scheduling alone
                // do not close links (failover speed is measured by the LAN scenarios).
                ping_interval_ms: Some(5_000),
                ping_timeout_ms: Some(20_000),
                election_silence_timeout_ms: Some(30_000),
                ..Layer::default()
            },
        )
        .map_err(|e| e.to_string())
    };
    // Stop before the machine runs out of memory: 16 GiB for the whole org.
    let memory_cap_kib = 16.0 * 1024.0 * 1024.0 * shard.nodes as f64 / shard.org_size as f64;
    let outcome: Result<(), String> = rt.block_on(async {
        let mut nodes = Vec::new();
        let start = |i: usize, seed: Option<String>| {
            let c = config(i, seed);
            async move {
                node::start(
                    libp2p::identity::Keypair::generate_ed25519(),
                    c?,
                    TransportKind::Network,
                )
                .await
                .map_err(|e| format!("node {i}: {e}"))
            }
        };
        let seed = match &shard.seed {
            Some(seed) => seed.clone(),
            None => {
                let started_ms = unix_ms();
                let first = start(shard.first, None).await?;
                let status = first.status().await.map_err(|e| e.to_string())?;
                let addr = status
                    .dial_addrs
                    .first()
                    .cloned()
                    .ok_or("the seed has no address")?;
                report(&Report::Seed {
                    addr: addr.clone(),
                    started_ms,
                });
                nodes.push(first);
                addr
            }
        };
        while nodes.len() < shard.nodes {
            if proc_rss_kib(me).unwrap_or(0.0) - rss_before > memory_cap_kib {
                return Err(format!(
                    "stopped at {} nodes: the memory cap was reached",
                    nodes.len()
                ));
            }
            nodes.push(start(shard.first + nodes.len(), Some(seed.clone())).await?);
        }
        let seed_peer = seed.rsplit("/p2p/").next().unwrap_or_default().to_string();
        loop {
            tokio::select! {
                _ = stopped.changed() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let (mut partial, outliers) = survey(&nodes, shard, &seed_peer).await;
            partial.rss_growth_kib = proc_rss_kib(me).unwrap_or(0.0) - rss_before;
            report(&Report::Survey(partial));
            for line in outliers {
                eprintln!("    {line}");
            }
        }
        for node in &nodes {
            node.abort();
        }
        Ok(())
    });
    if let Err(e) = outcome {
        report(&Report::Failed(e));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    borg_lab::forget_temp_dir(&tmp);
}

/// One node's answer to a survey.
struct NodeView {
    /// Its number in the whole org.
    index: usize,
    view: View,
    /// Members it knows, itself included.
    members: usize,
    peers: usize,
    /// Why its rep got there.
    reason: String,
    /// Whether it is connected to the seed (node 0).
    on_seed: bool,
}

/// The link between nodes `a` and `b` as each end sees it: whether it knows the other as an
/// org member (its subscription arrived, or it was heard), the pongs on it, its connections.
async fn link_both_ends(
    a: &borg_node::node::NodeHandle,
    b: &borg_node::node::NodeHandle,
) -> String {
    let side = |from: Vec<borg_node::api::PeerInfo>, to: String| {
        from.into_iter().find(|p| p.peer_id == to).map_or_else(
            || "no link".to_string(),
            |p| {
                format!(
                    "member {}, {} pongs, {} conns",
                    !p.orgs.is_empty(),
                    p.pongs,
                    p.connections
                )
            },
        )
    };
    let here = side(a.peers().await.unwrap_or_default(), b.peer_id().to_string());
    let there = side(b.peers().await.unwrap_or_default(), a.peer_id().to_string());
    format!("here {here}, at the other end {there}")
}

/// Asks every node of the shard at once for its view of the org (asked one by one, a round
/// over 500 busy event loops takes longer than the convergence it measures). Returns the
/// survey and a few lines on nodes that show why a run does not converge: nodes off the
/// shard's most common view or that know no other member, and members a rep in this shard
/// does not know, each with its link to the seed or rep seen from both ends when both are here.
async fn survey(
    nodes: &[borg_node::node::NodeHandle],
    shard: &Shard,
    seed_peer: &str,
) -> (Partial, Vec<String>) {
    let mut views: HashMap<View, (usize, String)> = HashMap::new();
    let (mut peers_min, mut peers_max, mut peers_sum) = (usize::MAX, 0, 0);
    let mut members_min = usize::MAX;
    let mut rep_knows = 0;
    let mut settled_ms = 0;
    let mut asks = tokio::task::JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let node = node.clone();
        asks.spawn(async move { (i, node.orgs().await, node.status().await) });
    }
    let mut each: Vec<NodeView> = Vec::with_capacity(nodes.len());
    // (local index, members) of the node that believes it is rep and knows the most.
    let mut rep: Option<(usize, HashSet<String>)> = None;
    while let Some(answer) = asks.join_next().await {
        let Ok((i, Ok(orgs), Ok(status))) = answer else {
            views.entry(None).or_default().0 += 1;
            continue;
        };
        let org = orgs.into_iter().find(|o| o.org == ORG);
        let view = org
            .as_ref()
            .and_then(|o| o.rep.clone().map(|r| (r, o.term)));
        let reason = org.as_ref().map_or_else(String::new, |o| o.reason.clone());
        let members = org.as_ref().map_or(0, |o| o.members.len());
        if let Some(o) = org.as_ref().filter(|o| o.am_rep) {
            if o.members.len() > rep_knows {
                rep = Some((i, o.members.iter().map(|m| m.peer_id.clone()).collect()));
            }
            rep_knows = rep_knows.max(o.members.len());
            let last_learnt = o.members.iter().map(|m| m.known_since_ms).max();
            settled_ms = settled_ms.max(last_learnt.unwrap_or(0));
        }
        settled_ms = settled_ms.max(org.as_ref().map_or(0, |o| o.rep_since_ms));
        views
            .entry(view.clone())
            .or_insert_with(|| (0, reason.clone()))
            .0 += 1;
        members_min = members_min.min(members);
        peers_min = peers_min.min(status.peers.len());
        peers_max = peers_max.max(status.peers.len());
        peers_sum += status.peers.len();
        each.push(NodeView {
            index: shard.first + i,
            view,
            members,
            peers: status.peers.len(),
            reason,
            on_seed: status.peers.iter().any(|p| p == seed_peer),
        });
    }
    let common = views
        .iter()
        .max_by_key(|(_, (count, _))| *count)
        .and_then(|(view, _)| view.clone());
    let short = |peer: &str| {
        peer.get(peer.len().saturating_sub(6)..)
            .unwrap_or(peer)
            .to_string()
    };
    let mut outliers = Vec::new();
    // Members of this shard the (best informed) rep does not know, and their link to it.
    if let Some((r, known)) = rep
        .as_ref()
        .filter(|(_, known)| known.len() < shard.org_size)
    {
        let unknown = nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| !known.contains(&node.peer_id().to_string()))
            .take(3);
        for (i, node) in unknown {
            let members = each
                .iter()
                .find(|e| e.index == shard.first + i)
                .map_or(0, |e| e.members);
            outliers.push(format!(
                "node {} unknown to the rep: knows {members} members; its link to the rep: {}",
                shard.first + i,
                link_both_ends(node, &nodes[*r]).await
            ));
        }
    }
    // The seed is this shard's first node if this shard started it.
    let seed_here = nodes.first().filter(|_| shard.seed.is_none());
    for e in each
        .iter()
        .filter(|e| e.view != common || e.members < 2)
        .take(5)
    {
        let mut line = format!(
            "node {}: view {} ({}), knows {} members, {} peers",
            e.index,
            e.view
                .as_ref()
                .map_or_else(|| "none".to_string(), |(r, t)| format!("{}@{t}", short(r))),
            e.reason,
            e.members,
            e.peers,
        );
        if e.on_seed {
            line.push_str(", the seed among them");
            if let (Some(node), Some(seed)) = (nodes.get(e.index - shard.first), seed_here) {
                line.push_str(&format!(
                    "; seed link: {}",
                    link_both_ends(node, seed).await
                ));
            }
        }
        outliers.push(line);
    }
    let partial = Partial {
        views: views
            .into_iter()
            .map(|(view, (count, reason))| (view, count, reason))
            .collect(),
        members_min: if each.is_empty() { 0 } else { members_min },
        peers_min: if each.is_empty() { 0 } else { peers_min },
        peers_max,
        peers_sum,
        rep_knows,
        settled_ms,
        rss_growth_kib: 0.0,
    };
    (partial, outliers)
}

#[cfg(test)]
mod tests {
    use super::{Partial, Survey, merge_trials};
    use crate::Row;

    fn partial(views: &[(Option<&str>, usize)], rep_knows: usize) -> Partial {
        Partial {
            views: views
                .iter()
                .map(|(rep, count)| (rep.map(|r| (r.to_string(), 1)), *count, "elected".into()))
                .collect(),
            members_min: 2,
            peers_min: 1,
            peers_max: 10,
            peers_sum: 20,
            rep_knows,
            settled_ms: 1_000,
            rss_growth_kib: 1024.0,
        }
    }

    #[test]
    fn the_org_agrees_only_when_every_shard_names_one_rep_that_knows_everyone() {
        let agreed = Survey::merge(
            &[
                partial(&[(Some("a"), 6)], 10),
                partial(&[(Some("a"), 4)], 0),
            ],
            10,
        );
        assert!(agreed.agreed);
        assert_eq!(
            (agreed.views, agreed.largest, agreed.peers),
            (1, 10, (1, 4, 10))
        );
        assert_eq!(agreed.mib_per_node(10), 0.2);
        // The shards disagree.
        let split = Survey::merge(
            &[partial(&[(Some("a"), 6)], 6), partial(&[(Some("b"), 4)], 4)],
            10,
        );
        assert!(!split.agreed);
        assert_eq!((split.views, split.largest, split.rep_knows), (2, 6, 6));
        // One rep, but it does not know every member yet.
        let unknown = Survey::merge(
            &[partial(&[(Some("a"), 6)], 9), partial(&[(Some("a"), 4)], 0)],
            10,
        );
        assert!(!unknown.agreed);
        // A node did not answer.
        let silent = Survey::merge(
            &[
                partial(&[(Some("a"), 5), (None, 1)], 10),
                partial(&[(Some("a"), 4)], 0),
            ],
            10,
        );
        assert!(!silent.agreed);
        // A shard's report is missing: too few nodes answered.
        let missing = Survey::merge(&[partial(&[(Some("a"), 6)], 10)], 10);
        assert!(!missing.agreed);
    }

    fn agree(took: f64, pass: bool) -> Row {
        Row::from_samples(
            "scale-agree",
            1000,
            1,
            "s",
            &[took],
            "<= 20 s",
            |_, _, _, _| pass,
        )
    }

    fn memory(mib: f64) -> Row {
        Row::from_samples(
            "scale-memory",
            1000,
            1,
            "MiB/node",
            &[mib],
            "<= 4",
            |m, _, _, _| m <= 4.0,
        )
    }

    #[test]
    fn every_trial_is_one_sample() {
        let runs = vec![
            Ok(vec![agree(12.0, true), memory(3.0)]),
            Ok(vec![agree(18.0, true), memory(3.5)]),
            Ok(vec![agree(15.0, true), memory(3.2)]),
        ];
        let rows = merge_trials(1000, &runs);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].scenario, "scale-agree");
        assert_eq!(
            (rows[0].trials, rows[0].median, rows[0].max),
            (3, 15.0, 18.0)
        );
        assert!(rows[0].pass);
        assert_eq!((rows[1].median, rows[1].max), (3.2, 3.5));
        assert!(rows[1].pass);
    }

    #[test]
    fn one_missed_or_failed_trial_misses_the_target() {
        let failed =
            Row::from_samples("scale-agree", 1000, 1, "s", &[], "<= 20 s", |_, _, _, _| {
                false
            })
            .note("no agreement within 300s");
        let runs = vec![
            Ok(vec![agree(12.0, true), memory(3.0)]),
            Ok(vec![failed]),
            Err("the child borg-bench ended without a result".to_string()),
            Ok(vec![agree(30.0, false), memory(4.5)]),
        ];
        let rows = merge_trials(1000, &runs);
        let agreed = &rows[0];
        assert_eq!((agreed.trials, agreed.max), (4, 30.0));
        assert!(!agreed.pass);
        let note = agreed.note.as_deref().unwrap_or_default();
        assert!(note.contains("none (no agreement within 300s)"), "{note}");
        assert!(note.contains("30.0 (missed)"), "{note}");
        // Memory was measured in two trials; one of them missed.
        assert_eq!((rows[1].median, rows[1].max), (3.0, 4.5));
        assert!(!rows[1].pass);
    }
}
