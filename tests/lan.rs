//! LAN lab scenarios with real `borg-node` processes (root only; see `lab.rs`).

use std::{
    collections::HashSet,
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::lab::{Lab, lab_available, new_lab};

/// Generous: the lab must not flake on a loaded 2-core machine. Speed is measured by
/// borg-bench, not asserted here.
const PATIENCE: Duration = Duration::from_secs(60);

fn ids_received(lines: &[String]) -> HashSet<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

/// Sends `text` from node `from` to `org`, retrying while no member is reachable yet; returns
/// the message id.
fn send(lab: &Lab, from: usize, org: &str, text: &str) -> String {
    lab.wait_for(PATIENCE, "send accepted", |lab| {
        let v = lab.try_cli_json(from, &["send", "--org", org, text])?;
        v["id"].as_str().map(str::to_owned)
    })
}

/// (a) Five hosts on one LAN, mDNS only: all see each other, and a message reaches all.
#[test]
fn lan_five_hosts_discover_each_other_and_chat() {
    if !lab_available() {
        return;
    }
    let mut lab = new_lab();
    lab.add_lan(1);
    let hosts: Vec<_> = (1..=5).map(|h| lab.add_host(1, h)).collect();
    let start = Instant::now();
    let nodes: Vec<usize> = hosts
        .iter()
        .map(|h| lab.start_node(h, &["--org", "lab"]))
        .collect();
    lab.wait_for(PATIENCE, "all 5 nodes connected to each other", |lab| {
        lab.fully_connected(&nodes).then_some(())
    });
    eprintln!(
        "lan (a): 5 nodes fully connected {:?} after the first start",
        start.elapsed()
    );

    let subscribers: Vec<_> = nodes[1..]
        .iter()
        .map(|&i| lab.subscribe(i, "lab"))
        .collect();
    let id = send(&lab, nodes[0], "lab", "meeting at 7");
    for (k, s) in subscribers.iter().enumerate() {
        lab.wait_for(PATIENCE, "message delivered", |_| {
            ids_received(&s.lines.snapshot())
                .contains(&id)
                .then_some(())
        });
        let line: Value = s
            .lines
            .snapshot()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["id"] == id.as_str())
            .expect("line");
        assert_eq!(line["text"], "meeting at 7", "subscriber {k}");
        assert_eq!(line["org"], "lab");
        assert_eq!(line["from"], lab.nodes[nodes[0]].peer_id.as_str());
        assert!(line["sent_at_ms"].as_u64().is_some() && line["received_at_ms"].as_u64().is_some());
    }

    // SIGTERM: the node leaves and exits promptly.
    let took = lab.terminate(nodes[4]);
    eprintln!("lan (a): SIGTERM exit took {took:?}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(lab.log(nodes[4]).contains("stopped"));
}

/// (b) Two LANs that multicast cannot cross, joined by a router; one node of LAN 2
/// bootstraps to one node of LAN 1. Every member ends up connected to every other, and
/// messages flow both ways.
#[test]
fn lan_two_lans_joined_by_one_bootstrap_become_one_mesh() {
    if !lab_available() {
        return;
    }
    let mut lab = new_lab();
    lab.add_lan(1);
    lab.add_lan(2);
    let a: Vec<_> = (1..=3).map(|h| lab.add_host(1, h)).collect();
    let b: Vec<_> = (1..=3).map(|h| lab.add_host(2, h)).collect();
    let all_hosts: Vec<_> = a.iter().chain(b.iter()).cloned().collect();
    lab.add_router(&[1, 2], &all_hosts);

    let a_nodes: Vec<usize> = a
        .iter()
        .map(|h| lab.start_node(h, &["--org", "city"]))
        .collect();
    let b_nodes: Vec<usize> = b[1..]
        .iter()
        .map(|h| lab.start_node(h, &["--org", "city"]))
        .collect();
    // Each LAN on its own first: mDNS cannot cross the router.
    lab.wait_for(PATIENCE, "LAN 1 connected", |lab| {
        lab.fully_connected(&a_nodes).then_some(())
    });
    lab.wait_for(PATIENCE, "LAN 2 connected", |lab| {
        lab.fully_connected(&b_nodes).then_some(())
    });
    assert!(
        !lab.connected_peers(b_nodes[0])
            .contains(&lab.nodes[a_nodes[0]].peer_id),
        "LANs must not see each other without a bootstrap"
    );

    let seed = format!(
        "/ip4/{}/tcp/4747/p2p/{}",
        a[0].ip, lab.nodes[a_nodes[0]].peer_id
    );
    let start = Instant::now();
    let bridge_node = lab.start_node(&b[0], &["--org", "city", "--bootstrap", &seed]);
    let mut everyone = a_nodes.clone();
    everyone.extend(&b_nodes);
    everyone.push(bridge_node);
    lab.wait_for(PATIENCE, "all 6 members connected to each other", |lab| {
        lab.fully_connected(&everyone).then_some(())
    });
    eprintln!(
        "lan (b): full mesh of 6 across two LANs {:?} after the bootstrap node started",
        start.elapsed()
    );

    let sub_a = lab.subscribe(a_nodes[2], "city");
    let sub_b = lab.subscribe(b_nodes[1], "city");
    let from_b = send(&lab, b_nodes[0], "city", "hello from LAN 2");
    let from_a = send(&lab, a_nodes[1], "city", "hello from LAN 1");
    lab.wait_for(PATIENCE, "LAN 2 message reached LAN 1", |_| {
        ids_received(&sub_a.lines.snapshot())
            .contains(&from_b)
            .then_some(())
    });
    lab.wait_for(PATIENCE, "LAN 1 message reached LAN 2", |_| {
        ids_received(&sub_b.lines.snapshot())
            .contains(&from_a)
            .then_some(())
    });
    let status = lab.try_cli_json(bridge_node, &["status"]).expect("status");
    assert_eq!(status["bootstrap"][0]["connected"], true);
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

/// (c) Bad starts: each gives a clear one-line error; an unreachable bootstrap keeps running
/// and says so.
#[test]
fn lan_bad_starts_fail_clearly() {
    if !lab_available() {
        return;
    }
    let mut lab = new_lab();
    lab.add_lan(1);
    let h1 = lab.add_host(1, 1);
    let h2 = lab.add_host(1, 2);
    let quick = Duration::from_secs(20);

    // A malformed bootstrap address: refused before anything starts.
    let dir = lab.data_dir(&h2);
    let dir_s = dir.to_str().expect("utf-8 path").to_owned();
    let out = lab.run_on(
        &h2,
        &[
            "--data-dir",
            &dir_s,
            "run",
            "--bootstrap",
            "tcp://10.201.1.1:4747",
        ],
        quick,
    );
    assert!(!out.status.success());
    let err = last_line(&out.stderr);
    assert!(err.starts_with("error: invalid bootstrap address"), "{err}");

    // Wrong CLI arguments: clap's usage error, exit code 2.
    let out = lab.run_on(&h2, &["--data-dir", &dir_s, "run", "--no-such-flag"], quick);
    assert_eq!(out.status.code(), Some(2));

    // A corrupt key file: refused, and the file is left for the user to inspect.
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("identity.key");
    std::fs::write(&key, b"not a key").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = lab.run_on(&h2, &["--data-dir", &dir_s, "run"], quick);
    assert!(!out.status.success());
    let err = last_line(&out.stderr);
    assert!(err.contains("is corrupt"), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().count(),
        1,
        "one line"
    );
    assert_eq!(std::fs::read(&key).expect("read"), b"not a key");

    // A key readable by others: refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = lab.run_on(&h2, &["--data-dir", &dir_s, "run"], quick);
    assert!(last_line(&out.stderr).contains("accessible by other users"));
    std::fs::remove_file(&key).expect("rm key");

    // A corrupt store: refused with a one-line error, the files left alone.
    let corrupt = lab.data_dir(&h2).with_extension("corrupt-store");
    std::fs::create_dir_all(corrupt.join("store")).expect("dir");
    std::fs::write(corrupt.join("store/CURRENT"), b"garbage\n").expect("write");
    let corrupt_s = corrupt.to_str().expect("utf-8").to_owned();
    let out = lab.run_on(&h2, &["--data-dir", &corrupt_s, "run", "--store"], quick);
    assert!(!out.status.success());
    let err = last_line(&out.stderr);
    assert!(
        err.contains("store in") && err.contains("is corrupt"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(corrupt.join("store/CURRENT")).expect("read"),
        b"garbage\n"
    );

    // A port already in use: the second node on the same host fails fast.
    let first = lab.start_node(&h1, &["--org", "x"]);
    let other_dir = lab.data_dir(&h1).with_extension("second");
    let other_s = other_dir.to_str().expect("utf-8").to_owned();
    let out = lab.run_on(&h1, &["--data-dir", &other_s, "run", "--org", "x"], quick);
    assert!(!out.status.success());
    let err = last_line(&out.stderr);
    assert!(
        err.contains("cannot listen on") && err.contains("in use"),
        "{err}"
    );

    // The same data dir twice: refused, the first keeps running.
    let first_dir = lab.nodes[first]
        .data_dir
        .to_str()
        .expect("utf-8")
        .to_owned();
    let out = lab.run_on(
        &h1,
        &[
            "--data-dir",
            &first_dir,
            "run",
            "--listen",
            "/ip4/0.0.0.0/tcp/4800",
        ],
        quick,
    );
    assert!(
        last_line(&out.stderr).contains("already running"),
        "{}",
        last_line(&out.stderr)
    );
    assert!(lab.try_cli_json(first, &["status"]).is_some());

    // An unreachable bootstrap peer: keeps running, says so, reports it in status.
    let n = lab.start_node(
        &h2,
        &["--org", "x", "--bootstrap", "/ip4/10.201.1.99/tcp/4747"],
    );
    lab.wait_for(PATIENCE, "unreachable bootstrap logged", |lab| {
        lab.log(n)
            .contains("bootstrap peer unreachable")
            .then_some(())
    });
    let status = lab.try_cli_json(n, &["status"]).expect("still running");
    assert_eq!(status["bootstrap"][0]["connected"], false);

    // No node running for a data dir: a clear error, non-zero exit.
    let empty = lab.data_dir(&h2).with_extension("none");
    let out = lab.run_on(
        &h2,
        &["--data-dir", empty.to_str().expect("utf-8"), "status"],
        quick,
    );
    assert!(!out.status.success());
    assert!(last_line(&out.stderr).contains("no borg-node is running for data dir"));
}

/// (d) A member that stops reading (its LAN port disabled; liveness checks put far off, so it
/// is not found lost) slows the sender down instead of losing messages: once the member's
/// send queue is full, `send` waits for room, and when the member reads again it gets every
/// message whose `send` was answered. Gossipsub drops what does not fit in a peer's queue of
/// 5,000 messages; 6,000 are sent here.
#[test]
fn lan_a_member_that_stops_reading_slows_the_sender_and_misses_nothing() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use borg_node::control::{Client, Request};

    const TOTAL: usize = 6_000;
    if !lab_available() {
        return;
    }
    let mut lab = new_lab();
    lab.add_lan(1);
    let hosts: Vec<_> = (1..=2).map(|h| lab.add_host(1, h)).collect();
    for host in &hosts {
        let dir = lab.data_dir(host);
        std::fs::create_dir_all(&dir).expect("data dir");
        std::fs::write(
            dir.join("config.toml"),
            "ping_interval_ms = 600000\npeer_ping_interval_ms = 600000\nping_timeout_ms = 600000\n",
        )
        .expect("config");
    }
    let nodes: Vec<usize> = hosts
        .iter()
        .map(|h| lab.start_node(h, &["--org", "lab"]))
        .collect();
    lab.wait_for(PATIENCE, "both nodes connected", |lab| {
        lab.fully_connected(&nodes).then_some(())
    });
    let receiver = lab.subscribe(nodes[1], "lab");
    let probe = send(&lab, nodes[0], "lab", "probe");
    lab.wait_for(PATIENCE, "a first message delivered", |_| {
        ids_received(&receiver.lines.snapshot())
            .contains(&probe)
            .then_some(())
    });

    lab.cut(&hosts[1]);
    let client = Client::new(&lab.nodes[nodes[0]].data_dir);
    let answered = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sender = runtime.spawn({
        let answered = answered.clone();
        async move {
            let mut session = client.session().await.expect("control session");
            let (mut ids, mut refused) = (Vec::new(), 0);
            while ids.len() < TOTAL {
                let text = format!("{:05} {}", ids.len() + refused, "x".repeat(4_000));
                let request = Request::Send {
                    org: "lab".into(),
                    text,
                    up: false,
                };
                match session.call(&request).await {
                    Ok(sent) => {
                        ids.push(sent["id"].as_str().expect("message id").to_owned());
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    // Waited too long for room (a loaded machine): not sent, and said so.
                    Err(e) if e.to_string().contains("not taking messages") => refused += 1,
                    Err(e) => panic!("send failed: {e:#}"),
                }
            }
            (ids, refused)
        }
    });
    // Sending stalls once the queue towards the cut member is full: no answer for a second.
    let (mut seen, mut still_since) = (0, Instant::now());
    while still_since.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(50));
        let now = answered.load(Ordering::Relaxed);
        assert!(
            now < TOTAL,
            "all {TOTAL} sends were answered while the member read nothing"
        );
        if now != seen {
            (seen, still_since) = (now, Instant::now());
        }
    }
    eprintln!("lan (d): sending stalled after {seen} answers");
    lab.uncut(&hosts[1]);
    let (ids, refused) = runtime.block_on(sender).expect("sender");
    eprintln!(
        "lan (d): {} sent, {refused} refused for lack of room",
        ids.len()
    );
    lab.wait_for(PATIENCE, "every answered message delivered", |_| {
        let got = ids_received(&receiver.lines.snapshot());
        ids.iter().all(|id| got.contains(id)).then_some(())
    });
}
