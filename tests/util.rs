//! Helpers shared by the in-process tests.

use std::time::Duration;

use borg_node::{
    behaviour::TransportKind,
    config::{Config, Layer},
    node::{self, NodeHandle},
};
use libp2p::identity::Keypair;

/// A fresh data dir under the test process's temporary directory (removed when the process
/// ends, see `TEMP`).
fn extra_data_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = TEMP
        .path()
        .join(format!("node-{}", NEXT.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&dir).expect("data dir");
    dir
}

/// One temporary directory for the whole test binary; the OS cleans /tmp, and each run uses a
/// new one, so stores of different runs never mix.
static TEMP: std::sync::LazyLock<tempfile::TempDir> =
    std::sync::LazyLock::new(|| tempfile::tempdir().expect("temp dir"));

/// Polls `check` every 250 ms until it returns `Some`, or panics with `what` after `limit`.
/// (Not faster: with 50 nodes in one process, the polling itself is load.)
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Starts an in-process node on the memory transport.
pub async fn memory_node(orgs: &[&str], bootstrap: &[String]) -> NodeHandle {
    memory_node_with(orgs, bootstrap, Layer::default()).await
}

/// Starts an in-process node on the memory transport with extra settings (`extra` wins).
pub async fn memory_node_with(orgs: &[&str], bootstrap: &[String], extra: Layer) -> NodeHandle {
    let data_dir = extra_data_dir();
    let base = Layer {
        listen: Some(vec!["/memory/0".into()]),
        bootstrap: Some(bootstrap.to_vec()),
        orgs: Some(orgs.iter().map(|s| s.to_string()).collect()),
        mdns: Some(false),
        // Dozens of nodes share this process's two cores: give pongs and announcements the
        // slack that separate machines would not need, so load is not taken for failure.
        ping_interval_ms: Some(1_000),
        ping_timeout_ms: Some(4_000),
        election_silence_timeout_ms: Some(5_000),
        ..Layer::default()
    };
    let config = Config::resolve(data_dir, base.overridden_by(extra)).expect("valid config");
    tokio::time::timeout(
        Duration::from_secs(30),
        node::start(Keypair::generate_ed25519(), config, TransportKind::Memory),
    )
    .await
    .expect("node started in time")
    .expect("node started")
}

/// Waits until every node in `nodes` is connected to every other one.
pub async fn all_connected(nodes: &[NodeHandle]) {
    let n = nodes.len();
    eventually(
        Duration::from_secs(90),
        "every node connected to every other",
        || {
            let nodes = nodes.to_vec();
            async move {
                for node in &nodes {
                    if node.status().await.ok()?.peers.len() < n - 1 {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
}
