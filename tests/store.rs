//! The opt-in store: with real processes on the LAN lab (root only; see `lab.rs`), and with
//! in-process nodes where the order of events must be forced.

use std::{
    collections::HashSet,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use borg_node::config::Layer;
use borg_proto::OrgName;
use serde_json::Value;

use crate::{
    lab::{Lab, lab_available, new_lab},
    util::{all_connected, eventually, memory_node_with},
};

const PATIENCE: Duration = Duration::from_secs(90);

/// `n` hosts on one LAN, each running a storing node in org `org`, all connected.
fn storing_org(n: u8, org: &str) -> (Lab, Vec<usize>) {
    let mut lab = new_lab();
    lab.add_lan(1);
    let hosts: Vec<_> = (1..=n).map(|h| lab.add_host(1, h)).collect();
    let nodes: Vec<usize> = hosts
        .iter()
        .map(|h| lab.start_node(h, &["--org", org, "--store"]))
        .collect();
    lab.wait_for(PATIENCE, "all connected", |lab| {
        lab.fully_connected(&nodes).then_some(())
    });
    (lab, nodes)
}

fn history_ids(lab: &Lab, i: usize, org: &str) -> HashSet<String> {
    let out = lab.cli(i, &["history", "--org", org, "--limit", "100000", "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

/// Runs `f(k)` for k in 0..n on 4 threads (the CLI round trips are the slow part).
fn parallel<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let next = Arc::new(Mutex::new(0usize));
    let results = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (f, next, results) = (f.clone(), next.clone(), results.clone());
            std::thread::spawn(move || {
                loop {
                    let k = {
                        let mut n_ = next.lock().expect("lock");
                        let k = *n_;
                        *n_ += 1;
                        k
                    };
                    if k >= n {
                        break;
                    }
                    let r = f(k);
                    results.lock().expect("lock").push(r);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker");
    }
    Arc::try_unwrap(results)
        .ok()
        .expect("sole owner")
        .into_inner()
        .expect("lock")
}

/// (a) 1,000 acknowledged puts and 1,000 logged messages; kill -9 every node and restart them:
/// every acknowledged record and message is still there.
#[test]
fn store_acknowledged_data_survives_kill_9_of_every_node() {
    if !lab_available() {
        return;
    }
    let (mut lab, nodes) = storing_org(3, "lab");
    const N: usize = 1000;
    let started = Instant::now();
    let dirs: Vec<_> = nodes
        .iter()
        .map(|&i| lab.nodes[i].data_dir.clone())
        .collect();
    let writer_dir = dirs[0].clone();
    let acked: Vec<Option<String>> = parallel(N, move |k| {
        let out = std::process::Command::new(crate::lab::borg_node_bin())
            .arg("--data-dir")
            .arg(&writer_dir)
            .args(["put", &format!("rec-{k}"), &format!("value-{k}"), "--json"])
            .output()
            .expect("put");
        out.status.success().then(|| format!("rec-{k}"))
    });
    let acked: Vec<String> = acked.into_iter().flatten().collect();
    let writer_dir = dirs[1].clone();
    let sent: Vec<Option<String>> = parallel(N, move |k| {
        let out = std::process::Command::new(crate::lab::borg_node_bin())
            .arg("--data-dir")
            .arg(&writer_dir)
            .args(["send", "--org", "lab", &format!("message {k}"), "--json"])
            .output()
            .expect("send");
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
    });
    let sent: HashSet<String> = sent.into_iter().flatten().collect();
    eprintln!(
        "store (a): {} of {N} puts and {} of {N} sends acknowledged in {:?}",
        acked.len(),
        sent.len(),
        started.elapsed()
    );
    assert!(
        acked.len() >= N * 9 / 10,
        "most puts succeed on a healthy LAN"
    );
    assert!(sent.len() >= N * 9 / 10);
    // Messages reach the other storing nodes' logs.
    lab.wait_for(PATIENCE, "messages logged everywhere", |lab| {
        nodes
            .iter()
            .all(|&i| i == nodes[1] || sent.is_subset(&history_ids(lab, i, "lab")))
            .then_some(())
    });

    for &i in &nodes {
        lab.kill(i);
    }
    let hosts: Vec<_> = nodes.iter().map(|&i| lab.nodes[i].host.clone()).collect();
    let restarted: Vec<usize> = hosts
        .iter()
        .map(|h| lab.start_node(h, &["--org", "lab", "--store"]))
        .collect();
    for &i in &restarted {
        let ids = history_ids(&lab, i, "lab");
        let missing = sent.difference(&ids).count();
        assert_eq!(missing, 0, "node {i} lost {missing} acknowledged messages");
    }
    // Every acknowledged record is still readable, from the restarted writer.
    let writer_dir = lab.nodes[restarted[0]].data_dir.clone();
    let lost: Vec<Option<String>> = parallel(acked.len(), {
        let acked = acked.clone();
        move |k| {
            let name = &acked[k];
            let want = format!("value-{}", &name[4..]);
            let out = std::process::Command::new(crate::lab::borg_node_bin())
                .arg("--data-dir")
                .arg(&writer_dir)
                .args(["get", name])
                .output()
                .expect("get");
            (out.stdout != want.as_bytes()).then(|| name.clone())
        }
    });
    let lost: Vec<String> = lost.into_iter().flatten().collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    eprintln!(
        "store (a): after kill -9 of all 3 nodes, 0 of {} records and 0 of {} messages lost",
        acked.len(),
        sent.len()
    );
}

/// (b) A storing node that was down while 300 messages were sent (more than one page of
/// catch-up) catches up after restart.
#[test]
fn store_offline_member_catches_up() {
    if !lab_available() {
        return;
    }
    let (mut lab, nodes) = storing_org(3, "lab");
    let late = nodes[2];
    let host = lab.nodes[late].host.clone();
    lab.terminate(late);
    let sender = nodes[0];
    let mut ids = HashSet::new();
    for k in 0..300 {
        let v = lab
            .wait_for(PATIENCE, "send", |lab| {
                lab.try_cli_json(
                    sender,
                    &["send", "--org", "lab", &format!("while you were out {k}")],
                )
            })
            .clone();
        ids.insert(v["id"].as_str().expect("id").to_owned());
    }
    let back = lab.start_node(&host, &["--org", "lab", "--store"]);
    let started = Instant::now();
    lab.wait_for(PATIENCE, "the restarted node caught up", |lab| {
        ids.is_subset(&history_ids(lab, back, "lab")).then_some(())
    });
    eprintln!(
        "store (b): caught up on 300 messages {:?} after restart",
        started.elapsed()
    );
    // In order, with the envelope fields.
    let out = lab.cli(back, &["history", "--org", "lab", "--json"]);
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let times: Vec<u64> = lines
        .iter()
        .filter_map(|v| v["sent_at_ms"].as_u64())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "history is in order"
    );
    assert_eq!(lines[0]["from"], lab.nodes[sender].peer_id.as_str());
}

/// A storing node that logged a live message after missing a stretch of the org's messages
/// still fetches the stretch: catch-up starts at the org's watermark, not at the newest message
/// held. (Asking from the newest message lost the stretch whenever live messages arrived
/// before the catch-up: seen as test (b) failing one run in five.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_reaches_back_past_live_messages() {
    let storing = || Layer {
        store: Some(true),
        ..Layer::default()
    };
    let org = OrgName::new("gap").unwrap();
    let a = memory_node_with(&["gap"], &[], storing()).await;
    let seed = a.status().await.unwrap().dial_addrs[0].clone();
    let c = memory_node_with(&["gap"], &[seed], storing()).await;
    all_connected(&[a.clone(), c.clone()]).await;
    let send = |text: String| {
        let (a, org) = (a.clone(), org.clone());
        eventually(Duration::from_secs(30), "a message sent", move || {
            let (a, org, text) = (a.clone(), org.clone(), text.clone());
            async move { a.send(org, text, false).await.ok().map(|sent| sent.id) }
        })
    };
    let logged_by_c = || {
        let (c, org) = (c.clone(), org.clone());
        async move {
            let ids: HashSet<String> = c
                .history(org, 0, 1_000)
                .await
                .ok()?
                .into_iter()
                .map(|m| m.id)
                .collect();
            Some(ids)
        }
    };

    // The stretch: C hears these but, opted out, does not log them.
    c.set_store(false, false).await.unwrap();
    let mut stretch = HashSet::new();
    for k in 0..20 {
        stretch.insert(send(format!("missed {k}")).await);
    }
    // C opts in while A does not store: its catch-up finds nothing. Then a live message.
    a.set_store(false, false).await.unwrap();
    c.set_store(true, false).await.unwrap();
    let live = send("live".to_owned()).await;
    eventually(Duration::from_secs(30), "C logged the live message", || {
        let (logged, live) = (logged_by_c(), live.clone());
        async move { logged.await?.contains(&live).then_some(()) }
    })
    .await;
    // A stores again; C's next catch-up (it opts out and in) must reach back past `live`.
    a.set_store(true, false).await.unwrap();
    c.set_store(false, false).await.unwrap();
    c.set_store(true, false).await.unwrap();
    eventually(
        Duration::from_secs(30),
        "C caught up on the stretch",
        || {
            let (logged, stretch) = (logged_by_c(), stretch.clone());
            async move { stretch.is_subset(&logged.await?).then_some(()) }
        },
    )
    .await;
    a.shutdown().await;
    c.shutdown().await;
}

fn files_containing(dir: &Path, marker: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .map(|b| b.windows(marker.len()).any(|w| w == marker))
                .unwrap_or(false)
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// (c) After `store off --purge`, none of the org's data is left in the node's data dir.
#[test]
fn store_purge_leaves_no_data_on_disk() {
    if !lab_available() {
        return;
    }
    let (lab, nodes) = storing_org(2, "lab");
    let marker = "PURGE-MARKER-5e1f0c";
    for k in 0..50 {
        lab.wait_for(PATIENCE, "send", |lab| {
            lab.try_cli_json(
                nodes[1],
                &["send", "--org", "lab", &format!("{marker} {k}")],
            )
        });
    }
    assert!(
        lab.cli(nodes[1], &["put", "secret", &format!("{marker} record")])
            .status
            .success()
    );
    let target = nodes[0];
    lab.wait_for(PATIENCE, "messages logged", |lab| {
        (history_ids(lab, target, "lab").len() == 50).then_some(())
    });
    let dir = lab.nodes[target].data_dir.clone();
    // Flushed to the files (RocksDB's WAL at least) before the purge.
    assert!(
        !files_containing(&dir, marker.as_bytes()).is_empty(),
        "the marker is on disk first"
    );
    let out = lab.cli(target, &["store", "off", "--purge", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["store"], false);
    assert_eq!(status["messages"], 0);
    let left = files_containing(&dir, marker.as_bytes());
    assert!(left.is_empty(), "marker still in {left:?}");
    let status = lab.try_cli_json(target, &["status"]).expect("status");
    assert_eq!(status["store"], false);
}

/// (d) A 5 MiB file: put on one node, get on another, identical bytes.
#[test]
fn store_five_mib_file_round_trips() {
    if !lab_available() {
        return;
    }
    let (lab, nodes) = storing_org(3, "lab");
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    // Not compressible and not repetitive: every chunk differs.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let data: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&input, &data).expect("write");
    let started = Instant::now();
    let out = lab.cli(
        nodes[0],
        &[
            "put",
            "big",
            "--file",
            input.to_str().expect("utf-8"),
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let put: Value = serde_json::from_slice(&out.stdout).expect("json");
    eprintln!("store (d): put 5 MiB in {:?}: {put}", started.elapsed());
    assert!(put["chunks"].as_u64().unwrap_or(0) > 100);
    let key = format!("{}/big", lab.nodes[nodes[0]].peer_id);
    let started = Instant::now();
    let out = lab.cli(
        nodes[2],
        &["get", &key, "--out", output.to_str().expect("utf-8")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "store (d): get 5 MiB from another node in {:?}",
        started.elapsed()
    );
    assert!(
        std::fs::read(&output).expect("read") == data,
        "identical bytes"
    );
}
