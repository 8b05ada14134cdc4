//! Representative elections with real processes on the LAN lab (root only; see `lab.rs`).
//!
//! Timings are printed (and measured properly by borg-bench), never asserted: the outcome is.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::{Lab, lab_available, new_lab};

const PATIENCE: Duration = Duration::from_secs(60);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts `n` hosts on LAN 1, each running a node in `orgs`; waits for one agreed rep of the
/// first org. Returns the lab, the node indices and the agreed rep's index.
fn org_of(n: u8, org: &str) -> (Lab, Vec<usize>, usize) {
    let mut lab = new_lab();
    lab.add_lan(1);
    let hosts: Vec<_> = (1..=n).map(|h| lab.add_host(1, h)).collect();
    let nodes: Vec<usize> = hosts
        .iter()
        .map(|h| lab.start_node(h, &["--org", org]))
        .collect();
    let (rep, _) = lab.wait_for(PATIENCE, "one agreed rep", |lab| {
        let agreed = lab.agreed_rep(&nodes, org)?;
        // Settled: everyone also connected to everyone, so scores are final.
        lab.fully_connected(&nodes).then_some(agreed)
    });
    let rep_index = lab.index_of(&rep).expect("rep is one of ours");
    (lab, nodes, rep_index)
}

/// The successor every survivor agrees on, after the rep was lost at `lost_at_ms`; prints how
/// long each survivor took.
fn await_successor(
    lab: &Lab,
    survivors: &[usize],
    org: &str,
    expected: &str,
    lost_at_ms: u64,
    what: &str,
) {
    // Shortly before the wait gives up, say what each survivor sees and how its log ends, so
    // that a failure shows whether they disagree, agree on another successor, or are stuck.
    let started = Instant::now();
    let mut reported = false;
    let (rep, _) = lab.wait_for(PATIENCE, "survivors agree on a successor", |lab| {
        let agreed = lab
            .agreed_rep(survivors, org)
            .filter(|(rep, _)| rep == expected);
        if agreed.is_none() && !reported && started.elapsed() + Duration::from_secs(2) > PATIENCE {
            reported = true;
            for &i in survivors {
                let log = lab.log(i);
                let lines: Vec<&str> = log.lines().collect();
                eprintln!(
                    "{what}: node {i} sees {:?} (expected successor {expected}); its log ends:\n{}",
                    lab.rep_view(i, org),
                    lines[lines.len().saturating_sub(12)..].join("\n")
                );
            }
        }
        agreed
    });
    assert_eq!(rep, expected);
    let took: Vec<i64> = survivors
        .iter()
        .filter_map(|&i| lab.rep_view(i, org))
        .map(|(_, _, since)| since as i64 - lost_at_ms as i64)
        .collect();
    eprintln!("{what}: survivors adopted the successor after {took:?} ms");
}

#[derive(Clone, Copy)]
enum RepLoss {
    Kill,
    SilentCut,
}

/// Loses the rep of a 5-host org in the way `how`, then checks that every survivor names the
/// successor that everyone knew in advance, with `reason`.
fn lose_the_rep(how: RepLoss, reason: &str, what: &str) {
    let (mut lab, nodes, rep) = org_of(5, "lab");
    let line = lab.wait_whole_line(PATIENCE, &nodes, "lab");
    assert_eq!(line[0], lab.nodes[rep].peer_id);
    let lost_at = unix_ms();
    match how {
        RepLoss::Kill => lab.kill(rep),
        RepLoss::SilentCut => {
            let host = lab.nodes[rep].host.clone();
            lab.cut(&host);
        }
    }
    let survivors: Vec<usize> = nodes.iter().copied().filter(|&i| i != rep).collect();
    await_successor(&lab, &survivors, "lab", &line[1], lost_at, what);
    let orgs = lab.orgs(survivors[0]).expect("orgs");
    assert_eq!(orgs[0]["reason"], reason);
}

/// (a) kill -9 the rep of a 5-host org: every survivor names the announced successor.
#[test]
fn reps_kill_the_rep_and_every_survivor_agrees_on_the_successor() {
    if !lab_available() {
        return;
    }
    lose_the_rep(RepLoss::Kill, "crash", "reps (a) kill -9");
}

/// (b) The rep's link goes silent (bridge port disabled, no FIN): same outcome.
#[test]
fn reps_silent_cut_of_the_rep_is_repaired() {
    if !lab_available() {
        return;
    }
    lose_the_rep(RepLoss::SilentCut, "silent_timeout", "reps (b) silent cut");
}

/// (c) A 2 + 3 partition: each side has a rep; after the heal, one rep for all.
#[test]
fn reps_partition_then_heal_leaves_one_rep() {
    if !lab_available() {
        return;
    }
    let (lab, nodes, _) = org_of(5, "lab");
    let hosts: Vec<_> = nodes.iter().map(|&i| lab.nodes[i].host.clone()).collect();
    let started = Instant::now();
    lab.move_to_bridge(&hosts[0], "br1");
    lab.move_to_bridge(&hosts[1], "br1");
    let (small, large) = (&nodes[..2], &nodes[2..]);
    let rep_small = lab.wait_for(PATIENCE, "the 2-side agrees on a rep of its own", |lab| {
        lab.agreed_rep(small, "lab")
            .filter(|(rep, _)| small.iter().any(|&i| lab.nodes[i].peer_id == *rep))
    });
    let rep_large = lab.wait_for(PATIENCE, "the 3-side agrees on a rep of its own", |lab| {
        lab.agreed_rep(large, "lab")
            .filter(|(rep, _)| large.iter().any(|&i| lab.nodes[i].peer_id == *rep))
    });
    eprintln!(
        "reps (c): both sides have reps after {:?}",
        started.elapsed()
    );
    assert_ne!(rep_small.0, rep_large.0);
    let healed = Instant::now();
    lab.move_to_bridge(&hosts[0], "br0");
    lab.move_to_bridge(&hosts[1], "br0");
    let (rep, _) = lab.wait_for(PATIENCE, "one rep after the heal", |lab| {
        lab.agreed_rep(&nodes, "lab")
    });
    eprintln!("reps (c): one rep {:?} after the heal", healed.elapsed());
    assert!(nodes.iter().any(|&i| lab.nodes[i].peer_id == rep));
}

fn delivered_ids(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn has_message(lines: &[String], id: &str) -> bool {
    delivered_ids(lines).iter().any(|v| v["id"] == id)
}

/// (d) Two child orgs under a parent: the children's reps form the parent, messages cross the
/// tiers both ways, and killing the parent's rep is repaired at both levels.
#[test]
fn reps_two_children_and_a_parent() {
    if !lab_available() {
        return;
    }
    let mut lab = new_lab();
    lab.add_lan(1);
    let hosts: Vec<_> = (1..=6).map(|h| lab.add_host(1, h)).collect();
    let a: Vec<usize> = hosts[..3]
        .iter()
        .map(|h| lab.start_node(h, &["--org", "north:city"]))
        .collect();
    let b: Vec<usize> = hosts[3..]
        .iter()
        .map(|h| lab.start_node(h, &["--org", "south:city"]))
        .collect();

    // The children elect reps; those join "city" and elect one of themselves.
    let (city_rep, reps) = lab.wait_for(
        PATIENCE,
        "the parent org formed by the two child reps",
        |lab| {
            let (rep_a, _) = lab.agreed_rep(&a, "north")?;
            let (rep_b, _) = lab.agreed_rep(&b, "south")?;
            let ra = lab.index_of(&rep_a)?;
            let rb = lab.index_of(&rep_b)?;
            let (city_rep, _) = lab.agreed_rep(&[ra, rb], "city")?;
            let members = lab.orgs(ra)?.into_iter().find(|o| o["org"] == "city")?["members"]
                .as_array()?
                .len();
            (members == 2).then_some((city_rep, (ra, rb)))
        },
    );
    let (ra, rb) = reps;
    assert!(city_rep == lab.nodes[ra].peer_id || city_rep == lab.nodes[rb].peer_id);
    let city = lab
        .orgs(ra)
        .expect("orgs")
        .into_iter()
        .find(|o| o["org"] == "city")
        .expect("city");
    assert_eq!(city["auto_joined"], true);
    // Non-reps are not in the parent.
    let plain = *a.iter().find(|&&i| i != ra).expect("a non-rep in north");
    assert!(
        lab.orgs(plain)
            .expect("orgs")
            .iter()
            .all(|o| o["org"] != "city")
    );

    // A message in the parent reaches every member of both children.
    let subs: Vec<(usize, &str, _)> = a
        .iter()
        .map(|&i| (i, "north"))
        .chain(b.iter().map(|&i| (i, "south")))
        .map(|(i, org)| (i, org, lab.subscribe(i, org)))
        .collect();
    let city_subs = [lab.subscribe(ra, "city"), lab.subscribe(rb, "city")];
    let down = lab.wait_for(PATIENCE, "send in the parent", |lab| {
        lab.try_cli_json(ra, &["send", "--org", "city", "to all from the city"])?["id"]
            .as_str()
            .map(str::to_owned)
    });
    for (i, org, s) in &subs {
        lab.wait_for(PATIENCE, "parent message relayed into the child", |_| {
            has_message(&s.lines.snapshot(), &down).then_some(())
        });
        let msg = delivered_ids(&s.lines.snapshot())
            .into_iter()
            .find(|v| v["id"] == down.as_str())
            .expect("msg");
        assert_eq!(msg["org"], *org, "node {i}");
        assert_eq!(msg["origin_org"], "city");
        assert_eq!(
            msg["from"],
            lab.nodes[ra].peer_id.as_str(),
            "the original author is kept"
        );
    }

    // An --up message from a plain member of north reaches the parent and the other child.
    let up = lab.wait_for(PATIENCE, "send up", |lab| {
        lab.try_cli_json(
            plain,
            &["send", "--org", "north", "--up", "from north, for everyone"],
        )?["id"]
            .as_str()
            .map(str::to_owned)
    });
    for s in &city_subs {
        lab.wait_for(PATIENCE, "up message in the parent", |_| {
            has_message(&s.lines.snapshot(), &up).then_some(())
        });
    }
    for (_, org, s) in &subs {
        if *org == "south" {
            lab.wait_for(PATIENCE, "up message in the other child", |_| {
                has_message(&s.lines.snapshot(), &up).then_some(())
            });
        }
    }
    // Never twice, and the path is recorded.
    std::thread::sleep(Duration::from_secs(1));
    for (i, _, s) in &subs {
        for id in [&down, &up] {
            let n = delivered_ids(&s.lines.snapshot())
                .iter()
                .filter(|v| v["id"] == id.as_str())
                .count();
            assert!(n <= 1, "node {i} got message {id} {n} times");
        }
    }
    let south_copy = delivered_ids(&subs[3].2.lines.snapshot())
        .into_iter()
        .find(|v| v["id"] == up.as_str())
        .expect("up in south");
    assert_eq!(
        south_copy["path"].as_array().map(Vec::len),
        Some(2),
        "north rep into city, south rep into south"
    );
    assert_eq!(south_copy["from"], lab.nodes[plain].peer_id.as_str());

    // Kill the parent's rep: its child and the parent both get new reps, and the new child rep
    // joins the parent.
    drop(subs);
    drop(city_subs);
    let dead = lab.index_of(&city_rep).expect("city rep");
    let (child_org, child_nodes, other_rep) = if dead == ra {
        ("north", &a, rb)
    } else {
        ("south", &b, ra)
    };
    let survivors: Vec<usize> = child_nodes.iter().copied().filter(|&i| i != dead).collect();
    lab.kill(dead);
    let (new_child_rep, new_city_rep) = lab.wait_for(PATIENCE, "new reps at both levels", |lab| {
        let (child_rep, _) = lab.agreed_rep(&survivors, child_org)?;
        let c = lab.index_of(&child_rep)?;
        if c == dead {
            return None;
        }
        let (city_rep, _) = lab.agreed_rep(&[c, other_rep], "city")?;
        (lab.index_of(&city_rep)? != dead).then_some((c, city_rep))
    });
    eprintln!(
        "reps (d): after killing the city rep, {child_org} rep is node {new_child_rep} and city rep is {}",
        &new_city_rep[new_city_rep.len() - 8..]
    );
}

/// Handover: SIGTERM on the rep hands over to the announced successor at once.
#[test]
fn reps_sigterm_on_the_rep_hands_over() {
    if !lab_available() {
        return;
    }
    let (mut lab, nodes, rep) = org_of(4, "lab");
    let successor = lab.wait_whole_line(PATIENCE, &nodes, "lab")[1].clone();
    let left_at = unix_ms();
    let took = lab.terminate(rep);
    let survivors: Vec<usize> = nodes.iter().copied().filter(|&i| i != rep).collect();
    await_successor(
        &lab,
        &survivors,
        "lab",
        &successor,
        left_at,
        "reps handover (SIGTERM)",
    );
    eprintln!("reps handover: the old rep exited {took:?} after SIGTERM");
    let orgs = lab.orgs(survivors[0]).expect("orgs");
    assert_eq!(orgs[0]["reason"], "handover");
}
