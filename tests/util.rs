//! Helpers shared by the in-process tests.

use std::time::Duration;

use borg_node::{
    behaviour::TransportKind,
    config::{Config, Layer},
    node::{self, NodeHandle},
};
use libp2p::identity::Keypair;

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

/// A directory removed when dropped. The node using it is dropped in the same runtime
/// shutdown, perhaps at the same moment on another worker thread, and RocksDB writes its last
/// files while closing: a removal that finds the directory refilled is tried again.
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        for _ in 0..40 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts an in-process node on the memory transport.
pub async fn memory_node(orgs: &[&str], bootstrap: &[String]) -> NodeHandle {
    memory_node_with(orgs, bootstrap, Layer::default()).await
}

/// Starts an in-process node on the memory transport with extra settings (`extra` wins).
pub async fn memory_node_with(orgs: &[&str], bootstrap: &[String], extra: Layer) -> NodeHandle {
    // The data dir lives as long as the test's runtime: the task holding it is dropped when
    // the runtime shuts down, and the directory is removed then. (One static directory for the
    // whole test binary was never removed, since statics are not dropped: every run left one
    // in /tmp, RocksDB stores included.)
    let dir = RemovedOnDrop(
        tempfile::Builder::new()
            .prefix("borg-test-")
            .tempdir()
            .expect("temp dir")
            .keep(),
    );
    let data_dir = dir.0.clone();
    tokio::spawn(async move {
        let _dir = dir;
        std::future::pending::<()>().await
    });
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
