//! In-process meshes: many nodes, Noise over the memory transport, one org.

use std::{collections::HashSet, time::Duration};

use borg_proto::OrgName;

use crate::util::{all_connected, eventually, memory_node};

/// 20 nodes that only know node 0 find each other through the DHT, and a message sent by one
/// reaches all the others exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_message_reaches_every_one_of_20_nodes() {
    const N: usize = 20;
    let org = OrgName::new("mesh").unwrap();
    let first = memory_node(&["mesh"], &[]).await;
    let seed = first.status().await.unwrap().dial_addrs[0].clone();
    let mut nodes = vec![first];
    for _ in 1..N {
        nodes.push(memory_node(&["mesh"], std::slice::from_ref(&seed)).await);
    }
    let mut receivers: Vec<_> = nodes.iter().map(|n| n.subscribe()).collect();

    // Everyone learns of everyone through the DHT, not only of the seed.
    all_connected(&nodes).await;

    let sender = &nodes[7];
    let sent = eventually(Duration::from_secs(30), "send accepted", || {
        let org = org.clone();
        async move { sender.send(org, "hello mesh".into(), false).await.ok() }
    })
    .await;

    for (i, rx) in receivers.iter_mut().enumerate() {
        if i == 7 {
            continue;
        }
        let msg = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("node {i} received nothing"))
            .unwrap();
        assert_eq!(msg.id, sent.id);
        assert_eq!(msg.text, "hello mesh");
        assert_eq!(msg.org, "mesh");
        assert_eq!(msg.from, sender.peer_id().to_string());
    }
    // Exactly once: nothing else arrives for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, rx) in receivers.iter_mut().enumerate() {
        assert!(rx.try_recv().is_err(), "node {i} got a duplicate");
    }
    for n in &nodes {
        n.shutdown().await;
    }
}

/// Join and leave at run time change who receives, and a non-member cannot send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_leave_at_run_time() {
    let a = memory_node(&["one"], &[]).await;
    let seed = a.status().await.unwrap().dial_addrs[0].clone();
    let b = memory_node(&[], std::slice::from_ref(&seed)).await;
    let one = OrgName::new("one").unwrap();

    let err = b.send(one.clone(), "x".into(), false).await.unwrap_err();
    assert!(err.to_string().contains("not a member"), "{err}");

    assert!(b.join("one".parse().unwrap()).await.unwrap());
    assert!(
        !b.join("one".parse().unwrap()).await.unwrap(),
        "joining twice is a no-op"
    );
    let mut rx = b.subscribe();
    let sent = eventually(Duration::from_secs(30), "a can publish to b", || {
        let (a, one) = (a.clone(), one.clone());
        async move { a.send(one, "after join".into(), false).await.ok() }
    })
    .await;
    let got = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, sent.id);

    assert!(b.leave(one.clone()).await.unwrap());
    let status = b.status().await.unwrap();
    assert!(status.orgs.is_empty());
    // Once b's unsubscription reached a, a has nobody to send to.
    eventually(Duration::from_secs(30), "a sees that b left", || {
        let (a, one) = (a.clone(), one.clone());
        async move {
            match a.send(one, "after leave".into(), false).await {
                Err(e) if e.to_string().contains("no other member") => Some(()),
                _ => None,
            }
        }
    })
    .await;
    let ids: HashSet<String> =
        std::iter::from_fn(|| rx.try_recv().ok().map(|m| m.id.clone())).collect();
    assert!(ids.is_empty(), "b received after leaving: {ids:?}");
    a.shutdown().await;
    b.shutdown().await;
}

/// 50 nodes elect one rep; when the rep's node stops abruptly, every survivor agrees on one
/// successor from the line the rep had announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard excludes other *tests* (threads), never another task of this runtime.
#[allow(clippy::await_holding_lock)]
async fn fifty_nodes_elect_one_rep_and_survive_its_loss() {
    const N: usize = 50;
    // 50 nodes in one process saturate two cores: run alone, not beside the LAN lab.
    let _alone = borg_lab::exclusive();
    let first = memory_node(&["big"], &[]).await;
    let seed = first.status().await.unwrap().dial_addrs[0].clone();
    let mut nodes = vec![first];
    for _ in 1..N {
        nodes.push(memory_node(&["big"], std::slice::from_ref(&seed)).await);
    }
    let started = std::time::Instant::now();
    // Every node names the same rep and term and knows all the others. (Not the whole line of
    // succession: under this load scores, and so the line's order, keep moving for a while.)
    let agreed = |nodes: Vec<borg_node::node::NodeHandle>, n: usize| async move {
        let mut view = None;
        for node in &nodes {
            let orgs = node.orgs().await.ok()?;
            let org = orgs.into_iter().find(|o| o.org == "big")?;
            if org.members.len() < n {
                return None;
            }
            let this = (org.rep?, org.term);
            match &view {
                None => view = Some(this),
                Some(v) if *v == this => {}
                Some(_) => return None,
            }
        }
        view
    };
    let (rep, term) = eventually(
        Duration::from_secs(300),
        "50 nodes agree on one rep",
        || agreed(nodes.clone(), N),
    )
    .await;
    eprintln!(
        "mesh: 50 nodes agreed on a rep after {:?}",
        started.elapsed()
    );
    let rep_index = nodes
        .iter()
        .position(|n| n.peer_id().to_string() == rep)
        .unwrap();
    let line = nodes[rep_index].orgs().await.unwrap()[0].succession.clone();
    assert_eq!(line[0], rep);

    nodes[rep_index].abort();
    let survivors: Vec<_> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != rep_index)
        .map(|(_, n)| n.clone())
        .collect();
    let stopped = std::time::Instant::now();
    let (new_rep, new_term) = eventually(
        Duration::from_secs(180),
        "survivors agree on a successor",
        || {
            let (survivors, rep) = (survivors.clone(), rep.clone());
            async move { agreed(survivors, 1).await.filter(|(r, _)| *r != rep) }
        },
    )
    .await;
    eprintln!(
        "mesh: survivors agreed on the successor within {:?}",
        stopped.elapsed()
    );
    // The first successor, unless the rep reordered its line in the instant before it died.
    assert!(
        line[1..4].contains(&new_rep),
        "the successor {new_rep} came from the announced line {:?}",
        &line[..4]
    );
    assert!(new_term > term);
    for n in &survivors {
        n.shutdown().await;
    }
}

/// 10 nodes, 4 of them storing: a put from a node that does not store is fetched by another;
/// non-storing nodes hold nothing; after two holders die, re-replication keeps the value
/// available even when the last original holder dies too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_replicates_across_opted_in_nodes_and_survives_holders_dying() {
    use borg_node::config::Layer;

    use crate::util::memory_node_with;

    let storing = |on: bool| Layer {
        store: Some(on),
        store_replication_interval_secs: Some(2),
        ..Layer::default()
    };
    let first = memory_node_with(&["data"], &[], storing(true)).await;
    let seed = first.status().await.unwrap().dial_addrs[0].clone();
    let mut nodes = vec![first];
    for i in 1..10 {
        nodes.push(memory_node_with(&["data"], std::slice::from_ref(&seed), storing(i < 4)).await);
    }
    all_connected(&nodes).await;

    let writer = &nodes[7];
    let put = eventually(
        Duration::from_secs(60),
        "put acknowledged by a quorum",
        || async {
            match writer.put("minutes".into(), b"meeting at 7".to_vec()).await {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("put: {e}");
                    None
                }
            }
        },
    )
    .await;
    assert!(put.replicas >= 2, "{put:?}");
    let got = nodes[5]
        .get(writer.peer_id(), "minutes".into())
        .await
        .unwrap();
    assert_eq!(got.data, b"meeting at 7");
    for n in &nodes[4..] {
        assert_eq!(
            n.status().await.unwrap().storage.records,
            0,
            "non-storing nodes hold nothing"
        );
    }

    // Which storing nodes hold it now.
    let holders = |nodes: Vec<borg_node::node::NodeHandle>| async move {
        let mut holders = Vec::new();
        for (i, n) in nodes.iter().enumerate().take(4) {
            if n.status()
                .await
                .map(|s| s.storage.records > 0)
                .unwrap_or(false)
            {
                holders.push(i);
            }
        }
        holders
    };
    let before = holders(nodes.clone()).await;
    assert!(before.len() >= 2, "{before:?}");
    // Kill all holders but one; the survivor re-replicates to the remaining storing nodes.
    for &i in &before[..before.len() - 1] {
        nodes[i].abort();
    }
    let survivor = before[before.len() - 1];
    let spare: Vec<usize> = (0..4).filter(|i| !before.contains(i)).collect();
    if !spare.is_empty() {
        let spare_nodes: Vec<_> = spare.iter().map(|&i| nodes[i].clone()).collect();
        eventually(
            Duration::from_secs(60),
            "re-replicated to a spare storing node",
            || {
                let spare_nodes = spare_nodes.clone();
                async move {
                    for n in &spare_nodes {
                        if n.status().await.ok()?.storage.records > 0 {
                            return Some(());
                        }
                    }
                    None
                }
            },
        )
        .await;
        nodes[survivor].abort();
    }
    let got = eventually(Duration::from_secs(60), "value still readable", || async {
        nodes[9].get(writer.peer_id(), "minutes".into()).await.ok()
    })
    .await;
    assert_eq!(got.data, b"meeting at 7");
}

/// A node in 150 orgs (300 gossipsub topics, past gossipsub's default limit of 100 per peer)
/// still exchanges messages in all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_topics_do_not_break_subscriptions() {
    use borg_node::config::Layer;

    use crate::util::memory_node_with;

    let orgs: Vec<String> = (0..150).map(|i| format!("org-{i}")).collect();
    let org_refs: Vec<&str> = orgs.iter().map(String::as_str).collect();
    // Slow heartbeats: 150 elections per node would otherwise be most of this test's load.
    let quiet = || Layer {
        election_heartbeat_ms: Some(2_000),
        election_silence_timeout_ms: Some(10_000),
        ..Layer::default()
    };
    let a = memory_node_with(&org_refs, &[], quiet()).await;
    let seed = a.status().await.unwrap().dial_addrs[0].clone();
    let b = memory_node_with(&org_refs, std::slice::from_ref(&seed), quiet()).await;
    let mut rx = b.subscribe();
    for name in ["org-0", "org-77", "org-149"] {
        let org = OrgName::new(name).unwrap();
        let sent = eventually(Duration::from_secs(60), "a can publish in the org", || {
            let (a, org) = (a.clone(), org.clone());
            async move { a.send(org, format!("hello {name}"), false).await.ok() }
        })
        .await;
        let got = loop {
            let m = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("delivered")
                .unwrap();
            if m.id == sent.id {
                break m;
            }
        };
        assert_eq!(got.org, name);
    }
    let peers = a.peers().await.unwrap();
    assert_eq!(peers[0].orgs.len(), 150, "a sees b in all 150 orgs");
    a.shutdown().await;
    b.shutdown().await;
}

/// One control connection serves requests one after the other: answers, a node's error and a
/// malformed line all leave it usable, and messages sent on it arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_control_connection_serves_many_requests() {
    use borg_node::control::{self, Client, Request};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let a = memory_node(&["talk"], &[]).await;
    let seed = a.status().await.unwrap().dial_addrs[0].clone();
    let b = memory_node(&["talk"], std::slice::from_ref(&seed)).await;
    all_connected(&[a.clone(), b.clone()]).await;
    let mut received = b.subscribe();

    let socket_dir = tempfile::tempdir().unwrap();
    let listener = control::bind(socket_dir.path()).await.unwrap();
    let server = tokio::spawn(control::serve(listener, a.clone()));
    let client = Client::new(socket_dir.path());

    let mut session = client.session().await.unwrap();
    let status = session.call(&Request::Status).await.unwrap();
    assert_eq!(status["peer_id"], a.peer_id().to_string());
    let refused = session
        .call(&Request::Send {
            org: "elsewhere".into(),
            text: "lost".into(),
            up: false,
        })
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("elsewhere"), "{refused:#}");
    // A first message (each try on a connection of its own) until b's mesh takes it, then
    // three more on the one session.
    eventually(Duration::from_secs(30), "a send accepted", || {
        let client = client.clone();
        async move {
            let mut session = client.session().await.ok()?;
            session
                .call(&Request::Send {
                    org: "talk".into(),
                    text: "first".into(),
                    up: false,
                })
                .await
                .ok()
        }
    })
    .await;
    for k in 0..3 {
        session
            .call(&Request::Send {
                org: "talk".into(),
                text: format!("on one connection {k}"),
                up: false,
            })
            .await
            .unwrap();
    }
    let mut texts = Vec::new();
    while texts.len() < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(30), received.recv())
            .await
            .expect("b received the messages")
            .unwrap();
        if msg.text.starts_with("on one connection") {
            texts.push(msg.text.clone());
        }
    }
    assert_eq!(
        texts,
        [
            "on one connection 0",
            "on one connection 1",
            "on one connection 2"
        ]
    );

    // A malformed line is answered with an error, and the next request is still served.
    let stream = tokio::net::UnixStream::connect(control::socket_path(socket_dir.path()))
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(b"{not json\n{\"cmd\":\"status\"}\n")
        .await
        .unwrap();
    let first = lines.next_line().await.unwrap().unwrap();
    assert!(first.contains("bad request"), "{first}");
    let second: serde_json::Value =
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(second["ok"]["peer_id"], a.peer_id().to_string());

    server.abort();
    a.shutdown().await;
    b.shutdown().await;
}

/// A member pings its rep at `ping_interval_ms` and its other links at the slower
/// `peer_ping_interval_ms`, and the faster rate follows the rep when the rep hands over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_ping_their_rep_faster_than_other_peers() {
    use borg_node::config::Layer;

    use crate::util::memory_node_with;

    // `memory_node` pings reps every 1 s; other links every 4 s here, for a clear contrast.
    let slow_others = || Layer {
        peer_ping_interval_ms: Some(4_000),
        ..Layer::default()
    };
    let org = OrgName::new("pings").unwrap();
    let first = memory_node_with(&["pings"], &[], slow_others()).await;
    let seed = first.status().await.unwrap().dial_addrs[0].clone();
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(memory_node_with(&["pings"], std::slice::from_ref(&seed), slow_others()).await);
    }
    all_connected(&nodes).await;
    let agreed_rep = |nodes: Vec<borg_node::node::NodeHandle>| async move {
        let mut reps = HashSet::new();
        for node in &nodes {
            reps.insert(node.orgs().await.ok()?.first()?.rep.clone()?);
        }
        (reps.len() == 1).then(|| reps.into_iter().next()).flatten()
    };
    let rep = eventually(Duration::from_secs(60), "one agreed rep", || {
        agreed_rep(nodes.clone())
    })
    .await;
    let rep_index = nodes
        .iter()
        .position(|n| n.peer_id().to_string() == rep)
        .unwrap();
    let member = &nodes[(rep_index + 1) % 3];
    let other = nodes[(rep_index + 2) % 3].peer_id().to_string();

    let link = |peers: &[borg_node::api::PeerInfo], id: &str| {
        peers
            .iter()
            .find(|p| p.peer_id == id)
            .map(|p| (p.ping_interval_ms, p.pongs))
    };
    let before = member.peers().await.unwrap();
    let (rep_interval, rep_pongs) = link(&before, &rep).expect("member linked to its rep");
    let (other_interval, other_pongs) = link(&before, &other).expect("members linked");
    assert_eq!(
        rep_interval, 1_000,
        "the rep link is pinged at ping_interval_ms"
    );
    assert_eq!(
        other_interval, 4_000,
        "another link at peer_ping_interval_ms"
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = member.peers().await.unwrap();
    let rep_answered = link(&after, &rep).unwrap().1 - rep_pongs;
    let other_answered = link(&after, &other).unwrap().1 - other_pongs;
    assert!(
        rep_answered > other_answered,
        "pongs in 12 s: rep {rep_answered}, other member {other_answered}"
    );

    // The rep hands over: the remaining member's link to the successor becomes the fast one,
    // and its link to the old rep slows down. Either remaining node may succeed, so the
    // link is watched from the one that did not.
    nodes[rep_index].leave(org.clone()).await.unwrap();
    let remaining = [member.clone(), nodes[(rep_index + 2) % 3].clone()];
    let successor = eventually(Duration::from_secs(30), "one agreed new rep", || {
        let remaining = remaining.to_vec();
        let rep = rep.clone();
        async move { agreed_rep(remaining).await.filter(|now| *now != rep) }
    })
    .await;
    let watcher = remaining
        .iter()
        .find(|n| n.peer_id().to_string() != successor)
        .expect("two remaining nodes, one successor");
    eventually(
        Duration::from_secs(10),
        "the remaining member pings its new rep fast and its old rep slowly",
        || {
            let watcher = watcher.clone();
            let (successor, rep) = (successor.clone(), rep.clone());
            async move {
                let peers = watcher.peers().await.ok()?;
                let fast = link(&peers, &successor)?.0 == 1_000;
                let old_slow = link(&peers, &rep).is_none_or(|(interval, _)| interval == 4_000);
                (fast && old_slow).then_some(())
            }
        },
    )
    .await;

    for node in nodes {
        node.shutdown().await;
    }
}
