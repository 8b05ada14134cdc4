//! The LAN lab: emulated LANs of network namespaces running real `borg-node` processes.
//!
//! Layout (see `shared/notes/lan-lab.md`):
//! - each LAN is a namespace holding a bridge `br0`; the bridge lives outside the root
//!   namespace so root's firewall never sees the traffic;
//! - each host is a namespace with `lo` and one veth `eth0` into its LAN's bridge, address
//!   `10.201.<lan>.<host>/24`, and no default route: nothing can leave the lab;
//! - a router namespace joins LANs at the IP level (multicast, and so mDNS, does not cross it).
//!
//! Namespaces are named `bl<pid><lab>-<name>`. A lab deletes its namespaces and kills its
//! processes on drop, including when a test panics; a new lab first removes leftovers of labs
//! whose process no longer exists (a run that was killed).
#![deny(missing_docs)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Processes and directories of this process's labs, for [`emergency_cleanup`].
static SPAWNED: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Registers a process (a lab's node, or one started outside a lab such as a child
/// `borg-bench`), so that [`emergency_cleanup`] kills it.
pub fn track_process(pid: u32) {
    if let Ok(mut pids) = SPAWNED.lock() {
        pids.push(pid);
    }
}

/// The process registered with [`track_process`] has ended.
pub fn forget_process(pid: u32) {
    if let Ok(mut pids) = SPAWNED.lock() {
        pids.retain(|p| *p != pid);
    }
}

/// Registers a directory (or file) made outside a lab, so that [`emergency_cleanup`] deletes it.
pub fn track_temp_dir(path: PathBuf) {
    if let Ok(mut dirs) = TEMP_DIRS.lock() {
        dirs.push(path);
    }
}

/// The directory registered with [`track_temp_dir`] is gone.
pub fn forget_temp_dir(path: &std::path::Path) {
    if let Ok(mut dirs) = TEMP_DIRS.lock() {
        dirs.retain(|d| d != path);
    }
}

/// Kills every process this process's labs started, deletes their namespaces and temporary
/// directories. For a signal handler: the labs' `Drop` does not run when the process is ended.
pub fn emergency_cleanup() {
    if let Ok(pids) = SPAWNED.lock() {
        for pid in pids.iter() {
            let _ = run("kill", &["-9", &pid.to_string()]);
        }
    }
    let me = format!("bl{}x", std::process::id());
    let out = run("ip", &["netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(&me) {
            delete_namespace(name);
        }
    }
    if let Ok(dirs) = TEMP_DIRS.lock() {
        for d in dirs.iter() {
            if d.is_dir() {
                let _ = std::fs::remove_dir_all(d);
            } else {
                let _ = std::fs::remove_file(d);
            }
        }
    }
}

/// Labs run one at a time: the processes of two labs at once would overload a 2-core machine.
static LAB_LOCK: Mutex<()> = Mutex::new(());

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

fn must(cmd: &str, args: &[&str]) {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Holds the lab lock without a lab: for a test too heavy to run beside the lab's processes.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether network namespaces can be made here (root and iproute2).
pub fn lab_possible() -> bool {
    unsafe_geteuid() == 0 && Command::new("ip").arg("-V").output().is_ok()
}

/// Whether the lab can run here. Without root it is skipped with a notice, except under
/// `CI=true`, where skipping would hide a broken CI setup.
pub fn lab_available() -> bool {
    if lab_possible() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the LAN lab needs root and iproute2, and CI=true forbids skipping it");
    }
    eprintln!("SKIPPED: the LAN lab needs root and iproute2 (run the tests as root)");
    false
}

fn unsafe_geteuid() -> u32 {
    // std has no geteuid; /proc tells us without unsafe code.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .and_then(|uid| uid.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Removes namespaces (and their processes) left by labs whose test process is gone.
fn remove_stale_namespaces() {
    let out = run("ip", &["netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("bl") else {
            continue;
        };
        let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if pid.is_empty() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        delete_namespace(name);
    }
}

fn delete_namespace(name: &str) {
    let pids = run("ip", &["netns", "pids", name]);
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let _ = run("kill", &["-9", pid]);
    }
    let _ = run("ip", &["netns", "del", name]);
}

/// A host in the lab.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its namespace.
    pub ns: String,
    /// Its IPv4 address.
    pub ip: String,
    /// Its LAN's bridge namespace and the bridge-side port of its veth.
    pub bridge_ns: String,
    /// The bridge-side port name.
    pub port: String,
}

/// A `borg-node run` process in the lab.
pub struct NodeProc {
    /// The host it runs on.
    pub host: Host,
    /// Its data dir.
    pub data_dir: PathBuf,
    child: Option<Child>,
    /// Its peer id (known after start).
    pub peer_id: String,
}

/// Lines read so far from a child's stdout.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// A copy of the lines so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// A running CLI process whose stdout is collected (e.g. `subscribe`).
pub struct Streamer {
    child: Child,
    /// Its stdout lines.
    pub lines: Lines,
    /// Its stderr lines.
    pub errors: Lines,
}

impl Drop for Streamer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(reader: impl std::io::Read + Send + 'static) -> Lines {
    let lines = Lines::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut l) = sink.0.lock() {
                l.push(line);
            }
        }
    });
    lines
}

/// An emulated network of LANs and hosts.
///
/// Without root ([`Lab::loopback`]) there are no namespaces: every "host" is this machine,
/// nodes listen on 127.0.0.1 with mDNS off and bootstrap to the first node, and a silent cut is
/// emulated by stopping the process (SIGSTOP: the kernel keeps its connections open, nothing
/// answers).
pub struct Lab {
    bin: PathBuf,
    loopback: bool,
    prefix: String,
    namespaces: Vec<String>,
    /// The nodes started so far, by index.
    pub nodes: Vec<NodeProc>,
    tmp: tempfile::TempDir,
    _guard: std::sync::MutexGuard<'static, ()>,
}

impl Lab {
    /// A new, empty lab whose nodes run the `borg-node` executable `bin`.
    pub fn new(bin: PathBuf) -> Self {
        let guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        remove_stale_namespaces();
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let tmp = tempfile::tempdir().expect("temp dir");
        if let Ok(mut dirs) = TEMP_DIRS.lock() {
            dirs.push(tmp.path().to_owned());
        }
        Self {
            bin,
            loopback: false,
            prefix: format!("bl{}x{n}", std::process::id()),
            namespaces: Vec::new(),
            nodes: Vec::new(),
            tmp,
            _guard: guard,
        }
    }

    /// A lab on loopback, for machines where namespaces cannot be made.
    pub fn loopback(bin: PathBuf) -> Self {
        let mut lab = Self::new(bin);
        lab.loopback = true;
        lab
    }

    /// Whether this lab runs on loopback rather than in namespaces.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    fn ns_name(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) -> String {
        let ns = self.ns_name(name);
        must("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Creates LAN number `lan` (its bridge namespace).
    pub fn add_lan(&mut self, lan: u8) {
        if self.loopback {
            return;
        }
        let ns = self.add_ns(&format!("lan{lan}"));
        must("ip", &["-n", &ns, "link", "add", "br0", "type", "bridge"]);
        must("ip", &["-n", &ns, "link", "set", "br0", "up"]);
    }

    fn plug(&mut self, lan: u8, ns: &str, ifname: &str, port: &str, addr: &str) -> String {
        let bridge_ns = self.ns_name(&format!("lan{lan}"));
        must(
            "ip",
            &[
                "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", port, "netns",
                &bridge_ns,
            ],
        );
        must(
            "ip",
            &["-n", &bridge_ns, "link", "set", port, "master", "br0"],
        );
        must("ip", &["-n", &bridge_ns, "link", "set", port, "up"]);
        must("ip", &["-n", ns, "addr", "add", addr, "dev", ifname]);
        must("ip", &["-n", ns, "link", "set", ifname, "up"]);
        bridge_ns
    }

    /// Adds host `host` to LAN `lan`, at 10.201.<lan>.<host>.
    pub fn add_host(&mut self, lan: u8, host: u8) -> Host {
        if self.loopback {
            return Host {
                ns: format!("{}-h{lan}-{host}", self.prefix),
                ip: "127.0.0.1".into(),
                bridge_ns: String::new(),
                port: String::new(),
            };
        }
        let ns = self.add_ns(&format!("h{lan}-{host}"));
        let ip = format!("10.201.{lan}.{host}");
        let port = format!("p{host}");
        let bridge_ns = self.plug(lan, &ns, "eth0", &port, &format!("{ip}/24"));
        Host {
            ns,
            ip,
            bridge_ns,
            port,
        }
    }

    /// Adds a router at .254 of each LAN in `lans` and routes between them; `hosts` get a
    /// route to the other LANs through it.
    pub fn add_router(&mut self, lans: &[u8], hosts: &[Host]) {
        let ns = self.add_ns("router");
        for lan in lans {
            self.plug(
                *lan,
                &ns,
                &format!("eth{lan}"),
                "p254",
                &format!("10.201.{lan}.254/24"),
            );
        }
        must(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        );
        for h in hosts {
            let own_lan: u8 =
                h.ip.split('.')
                    .nth(2)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            for lan in lans.iter().filter(|l| **l != own_lan) {
                must(
                    "ip",
                    &[
                        "-n",
                        &h.ns,
                        "route",
                        "add",
                        &format!("10.201.{lan}.0/24"),
                        "via",
                        &format!("10.201.{own_lan}.254"),
                    ],
                );
            }
        }
    }

    /// The data dir for a node on `host`.
    pub fn data_dir(&self, host: &Host) -> PathBuf {
        self.tmp.path().join(&host.ns)
    }

    /// Runs `borg-node <args>` on `host` to completion (for commands expected to exit).
    pub fn run_on(&self, host: &Host, args: &[&str], timeout: Duration) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &host.ns])
            .arg(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn borg-node");
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait().expect("wait").is_some() {
                return child.wait_with_output().expect("output");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "borg-node {} did not exit within {timeout:?}; stderr: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `borg-node run <extra>` on `host` with its own data dir and waits until it
    /// answers; returns the node index.
    pub fn start_node(&mut self, host: &Host, extra: &[&str]) -> usize {
        let i = self.spawn_node(host, extra);
        self.wait_ready(i);
        i
    }

    /// Starts `borg-node run <extra>` on `host` without waiting for it; see
    /// [`Lab::wait_ready`].
    pub fn spawn_node(&mut self, host: &Host, extra: &[&str]) -> usize {
        let data_dir = self.data_dir(host);
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let log = std::fs::File::create(data_dir.with_extension("log")).expect("log file");
        let mut command = if self.loopback {
            Command::new(&self.bin)
        } else {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &host.ns]).arg(&self.bin);
            c
        };
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("run")
            .args(extra);
        if self.loopback {
            command.args(["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"]);
            if let Some(first) = self.nodes.first().filter(|n| !n.peer_id.is_empty()) {
                let seed = self
                    .try_cli_json_dir(&first.data_dir, &["status"])
                    .and_then(|s| s["dial_addrs"][0].as_str().map(str::to_owned));
                if let Some(seed) = seed {
                    command.args(["--bootstrap", &seed]);
                }
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn borg-node run");
        track_process(child.id());
        self.nodes.push(NodeProc {
            host: host.clone(),
            data_dir,
            child: Some(child),
            peer_id: String::new(),
        });
        self.nodes.len() - 1
    }

    /// Waits until node `i` answers `status`, and records its peer id.
    pub fn wait_ready(&mut self, i: usize) {
        let status = self.wait_for(Duration::from_secs(30), "node answers status", |lab| {
            lab.try_cli_json(i, &["status"])
        });
        self.nodes[i].peer_id = status["peer_id"].as_str().unwrap_or_default().to_owned();
    }

    /// Restarts stopped node `i` on its host with its data dir and `extra`; waits until it
    /// answers. The node keeps its index.
    pub fn restart_node(&mut self, i: usize, extra: &[&str]) {
        let host = self.nodes[i].host.clone();
        let j = self.spawn_node(&host, extra);
        let node = self.nodes.remove(j);
        self.nodes[i] = node;
        self.wait_ready(i);
    }

    /// The node's log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].data_dir.with_extension("log")).unwrap_or_default()
    }

    /// Runs a CLI command against node `i` from the root namespace (the control socket is a
    /// file, not a network address).
    pub fn cli(&self, i: usize, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--data-dir")
            .arg(&self.nodes[i].data_dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run borg-node cli")
    }

    fn try_cli_json_dir(&self, data_dir: &Path, args: &[&str]) -> Option<Value> {
        let out = Command::new(&self.bin)
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .arg("--json")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())?
    }

    /// `cli(i, args + --json)` parsed, or `None` if it failed.
    pub fn try_cli_json(&self, i: usize, args: &[&str]) -> Option<Value> {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.cli(i, &args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The peer ids node `i` is connected to.
    pub fn connected_peers(&self, i: usize) -> Vec<String> {
        self.try_cli_json(i, &["status"])
            .and_then(|s| {
                s["peers"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// Whether every node in `group` is connected to every other node in `group`.
    pub fn fully_connected(&self, group: &[usize]) -> bool {
        group.iter().all(|&i| {
            let peers = self.connected_peers(i);
            group
                .iter()
                .filter(|&&j| j != i)
                .all(|&j| peers.contains(&self.nodes[j].peer_id))
        })
    }

    /// Starts `borg-node subscribe --org <org> --json` against node `i` and waits until it is
    /// subscribed.
    pub fn subscribe(&self, i: usize, org: &str) -> Streamer {
        let mut child = Command::new(&self.bin)
            .arg("--data-dir")
            .arg(&self.nodes[i].data_dir)
            .args(["subscribe", "--org", org, "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn subscribe");
        let lines = collect(child.stdout.take().expect("stdout"));
        let errors = collect(child.stderr.take().expect("stderr"));
        let streamer = Streamer {
            child,
            lines,
            errors,
        };
        self.wait_for(Duration::from_secs(20), "subscriber ready", |_| {
            streamer
                .errors
                .snapshot()
                .iter()
                .any(|l| l.contains("subscribed"))
                .then_some(())
        });
        streamer
    }

    /// Polls `check` every 200 ms until it returns `Some`, or panics after `limit`.
    pub fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out after {limit:?} waiting for: {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Silently cuts `host` off its LAN: its bridge port stops forwarding, the link stays up
    /// (no carrier change, no FIN): a dead link.
    pub fn cut(&self, host: &Host) {
        self.set_port_state(host, "0", "-STOP");
    }

    /// Undoes [`Lab::cut`]: the port forwards again.
    pub fn uncut(&self, host: &Host) {
        self.set_port_state(host, "3", "-CONT");
    }

    /// Sets `host`'s bridge port to STP `state` (0 disabled, 3 forwarding); on loopback, sends
    /// its processes `signal` instead.
    fn set_port_state(&self, host: &Host, state: &str, signal: &str) {
        if self.loopback {
            for node in self.nodes.iter().filter(|n| n.host.ns == host.ns) {
                if let Some(child) = &node.child {
                    must("kill", &[signal, &child.id().to_string()]);
                }
            }
            return;
        }
        let bridge = [
            "netns",
            "exec",
            &host.bridge_ns,
            "bridge",
            "link",
            "set",
            "dev",
        ];
        let mut args = bridge.to_vec();
        args.extend([host.port.as_str(), "state", state]);
        must("ip", &args);
    }

    /// Moves `host`'s bridge port to bridge `bridge` of its LAN (created if needed): hosts on
    /// different bridges of one LAN cannot talk, which makes a partition without any carrier
    /// change. `br0` is the LAN's own bridge, so moving back there heals it.
    pub fn move_to_bridge(&self, host: &Host, bridge: &str) {
        let exists = run("ip", &["-n", &host.bridge_ns, "link", "show", bridge])
            .status
            .success();
        if !exists {
            must(
                "ip",
                &[
                    "-n",
                    &host.bridge_ns,
                    "link",
                    "add",
                    bridge,
                    "type",
                    "bridge",
                ],
            );
            must("ip", &["-n", &host.bridge_ns, "link", "set", bridge, "up"]);
        }
        must(
            "ip",
            &[
                "-n",
                &host.bridge_ns,
                "link",
                "set",
                &host.port,
                "master",
                bridge,
            ],
        );
    }

    /// `orgs --json` of node `i`, or `None` if it does not answer.
    pub fn orgs(&self, i: usize) -> Option<Vec<Value>> {
        self.try_cli_json(i, &["orgs"])
            .and_then(|v| v.as_array().cloned())
    }

    /// Node `i`'s view of `org`: `(rep, term, rep_since_ms)`.
    pub fn rep_view(&self, i: usize, org: &str) -> Option<(String, u64, u64)> {
        let orgs = self.orgs(i)?;
        let o = orgs.iter().find(|o| o["org"] == org)?;
        Some((
            o["rep"].as_str()?.to_owned(),
            o["term"].as_u64()?,
            o["rep_since_ms"].as_u64()?,
        ))
    }

    /// Node `i`'s line of succession for `org` (the rep first), empty if it does not answer.
    pub fn succession(&self, i: usize, org: &str) -> Vec<String> {
        self.orgs(i)
            .and_then(|orgs| orgs.into_iter().find(|o| o["org"] == org))
            .and_then(|o| o["succession"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect()
    }

    /// If every node in `group` holds the same complete line of succession for `org` (the rep
    /// and every other node of `group`), that line. The rep announces its line as members'
    /// heartbeats fill it in, so a freshly agreed org may not have it yet.
    pub fn whole_line(&self, group: &[usize], org: &str) -> Option<Vec<String>> {
        let line = self.succession(*group.first()?, org);
        (line.len() == group.len() && group.iter().all(|&i| self.succession(i, org) == line))
            .then_some(line)
    }

    /// Waits up to `limit` until every node in `group` holds the same complete line of
    /// succession for `org` (see [`Lab::whole_line`]) and it has not changed for a second, and
    /// returns it: what a failover needs before the rep is lost, so that every survivor knows
    /// the successor. A line read the moment it is complete can still change: members' scores
    /// (their connection counts) grow while the org forms, and the rep redraws the line (seen:
    /// a rep's goodbye named another successor than the line read 200 ms after the election).
    pub fn wait_whole_line(&self, limit: Duration, group: &[usize], org: &str) -> Vec<String> {
        const STABLE: Duration = Duration::from_secs(1);
        let mut seen: Option<(Vec<String>, Instant)> = None;
        self.wait_for(
            limit,
            "every node knows the same line for a second",
            |lab| {
                let line = lab.whole_line(group, org)?;
                match &seen {
                    Some((held, since)) if *held == line => {
                        (since.elapsed() >= STABLE).then_some(line)
                    }
                    _ => {
                        seen = Some((line, Instant::now()));
                        None
                    }
                }
            },
        )
    }

    /// If every node in `group` names the same rep and term for `org`, that `(rep, term)`.
    pub fn agreed_rep(&self, group: &[usize], org: &str) -> Option<(String, u64)> {
        let mut agreed: Option<(String, u64)> = None;
        for &i in group {
            let (rep, term, _) = self.rep_view(i, org)?;
            match &agreed {
                None => agreed = Some((rep, term)),
                Some(a) if *a == (rep.clone(), term) => {}
                Some(_) => return None,
            }
        }
        agreed
    }

    /// The index of the node whose peer id is `peer`.
    pub fn index_of(&self, peer: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.peer_id == peer)
    }

    /// The `borg-node` executable.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The process id of node `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM to node `i` and waits for it to exit; returns how long that took.
    pub fn terminate(&mut self, i: usize) -> Duration {
        let child = self.nodes[i].child.as_mut().expect("running node");
        let start = Instant::now();
        must("kill", &["-TERM", &child.id().to_string()]);
        loop {
            if child.try_wait().expect("wait").is_some() {
                self.nodes[i].child = None;
                return start.elapsed();
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!("node {i} did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for ns in self.namespaces.iter().rev() {
            delete_namespace(ns);
        }
        if let Ok(mut dirs) = TEMP_DIRS.lock() {
            dirs.retain(|d| d != self.tmp.path());
        }
    }
}
