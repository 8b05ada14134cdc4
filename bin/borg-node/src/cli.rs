//! Command-line interface: argument definitions and the client-side commands.

use std::{
    io::{IsTerminal, Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::{
    api::{Delivered, Event, GetResult, OrgInfo, PeerInfo, PutResult, Sent, Status, StoreStatus},
    config::LogFormat,
    control::{Client, Request},
};

/// borg-net mesh node: organisations, representatives and replicated storage over libp2p.
#[derive(Debug, Parser)]
#[command(name = "borg-node", version, about, propagate_version = true)]
pub struct Cli {
    /// The data dir: identity, control socket, config.toml and stored data.
    /// Default: the platform data dir (`$XDG_DATA_HOME/borg-net` on Linux).
    #[arg(long, global = true, env = "BORG_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node (the daemon) in the foreground.
    Run(RunArgs),
    /// Print this node's peer id (creates the identity if there is none).
    Id,
    /// Show the running node's status.
    Status,
    /// List the connected peers.
    Peers,
    /// List the joined orgs with their reps, terms and lines of succession.
    Orgs,
    /// Print election events (rep changes, members joining and leaving) as they happen.
    Events,
    /// Join an org: `ORG`, or `ORG:PARENT[:GRANDPARENT...]` to place it in tiers.
    Join {
        /// The org (and its parents).
        org: String,
    },
    /// Leave an org.
    Leave {
        /// The org name.
        org: String,
    },
    /// Send a message to an org; prints its id.
    Send {
        /// The org.
        #[arg(long)]
        org: String,
        /// Ask the org's rep to relay the message up into the parent org.
        #[arg(long)]
        up: bool,
        /// The text; `-` reads it from stdin.
        text: String,
    },
    /// Print the messages received in an org (all orgs without --org) as they arrive.
    Subscribe {
        /// The org.
        #[arg(long)]
        org: Option<String>,
    },
    /// Chat in an org: each line typed is sent, incoming messages are printed.
    Chat {
        /// The org.
        #[arg(long)]
        org: String,
    },
    /// Opt in to (`on`) or out of (`off`) storing the orgs' data, at run time.
    Store {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        setting: String,
        /// With `off`: also delete everything stored (compacted away from the disk).
        #[arg(long)]
        purge: bool,
    },
    /// Print an org's logged messages, oldest first (this node must be storing).
    History {
        /// The org.
        #[arg(long)]
        org: String,
        /// Only messages sent at or after this Unix time, in ms.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Store a value under KEY (a name of this node's), replicated on storing nodes.
    Put {
        /// The name.
        key: String,
        /// The value (or use --file).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Fetch a value: KEY is a name of this node's, or `<peer id>/<name>`.
    Get {
        /// The key.
        key: String,
        /// Write the value to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `borg-node run` options. Each overrides the config file and the environment.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Listen on this multiaddr (repeatable). Default: TCP and QUIC on port 4747, all IPv4
    /// interfaces.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Dial this peer at start and keep redialling it (repeatable); `/p2p/<id>` optional.
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Join this org at start (repeatable); `NAME:PARENT[:GRANDPARENT...]` places it in tiers.
    #[arg(long = "org", value_name = "NAME")]
    pub orgs: Vec<String>,
    /// Turn off LAN discovery (mDNS).
    #[arg(long)]
    pub no_mdns: bool,
    /// The config file. Default: config.toml in the data dir, if it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Print the effective config and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Opt in to storing the orgs' data (messages and replicated records).
    #[arg(long)]
    pub store: bool,
}

/// The data dir from the flag or environment, else the platform default.
pub fn data_dir(cli: &Cli) -> Result<PathBuf> {
    if let Some(dir) = &cli.data_dir {
        return Ok(dir.clone());
    }
    match dirs::data_dir() {
        Some(base) => Ok(base.join("borg-net")),
        None => bail!("cannot determine a default data dir; pass --data-dir or set BORG_DATA_DIR"),
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

fn short(peer: &str) -> &str {
    &peer[peer.len().saturating_sub(8)..]
}

fn print_message(msg: &Delivered, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(msg)?)?;
    } else {
        writeln!(out, "[{}] {}: {}", msg.org, short(&msg.from), msg.text)?;
    }
    out.flush()?;
    Ok(())
}

/// Handles a streamed item: a message, or a notice that the client fell behind.
fn on_stream_item(item: Value, json: bool) -> Result<()> {
    if let Some(n) = item.get("lagged") {
        eprintln!("warning: fell behind and missed {n} messages");
        return Ok(());
    }
    let msg: Delivered = serde_json::from_value(item).context("malformed message from the node")?;
    print_message(&msg, json)
}

/// Runs a client subcommand against the daemon of `data_dir`.
pub async fn run_client(command: Command, data_dir: &Path, json: bool) -> Result<()> {
    let client = Client::new(data_dir);
    match command {
        Command::Run(_) | Command::Id => unreachable!("handled by main"),
        Command::Status => {
            let status: Status = serde_json::from_value(client.call(&Request::Status).await?)?;
            if json {
                return print_json(&status);
            }
            println!("peer id:   {}", status.peer_id);
            println!("orgs:      {}", status.orgs.join(", "));
            println!("peers:     {}", status.peers.len());
            println!("mdns:      {}", if status.mdns { "on" } else { "off" });
            println!(
                "store:     {} ({} records, {} messages, {} of {} bytes)",
                if status.store { "on" } else { "off" },
                status.storage.records,
                status.storage.messages,
                status.storage.bytes,
                status.storage.quota
            );
            println!("dial with:");
            for addr in &status.dial_addrs {
                println!("  {addr}");
            }
            for b in &status.bootstrap {
                println!(
                    "bootstrap: {} ({})",
                    b.addr,
                    if b.connected {
                        "connected"
                    } else {
                        "not connected"
                    }
                );
            }
        }
        Command::Peers => {
            let peers: Vec<PeerInfo> = serde_json::from_value(client.call(&Request::Peers).await?)?;
            if json {
                return print_json(&peers);
            }
            for p in &peers {
                println!(
                    "{}  conns={} orgs=[{}] ping={}ms pongs={}  {}",
                    p.peer_id,
                    p.connections,
                    p.orgs.join(","),
                    p.ping_interval_ms,
                    p.pongs,
                    p.addrs.join(" ")
                );
            }
        }
        Command::Orgs => {
            let orgs: Vec<OrgInfo> = serde_json::from_value(client.call(&Request::Orgs).await?)?;
            if json {
                return print_json(&orgs);
            }
            for o in &orgs {
                println!(
                    "{}{}  rep={}{} term={} reason={} members={} score={}{}",
                    o.org,
                    o.parent
                        .as_deref()
                        .map(|p| format!(" (parent {p})"))
                        .unwrap_or_default(),
                    o.rep.as_deref().map(short).unwrap_or("-"),
                    if o.am_rep { " (me)" } else { "" },
                    o.term,
                    o.reason,
                    o.members.len(),
                    o.score,
                    if o.auto_joined { " auto-joined" } else { "" },
                );
                let line: Vec<&str> = o.succession.iter().map(|p| short(p)).collect();
                println!("  succession: {}", line.join(" > "));
            }
        }
        Command::Events => {
            client
                .stream(
                    &Request::Events,
                    || eprintln!("watching events"),
                    |item| {
                        if let Some(n) = item.get("lagged") {
                            eprintln!("warning: fell behind and missed {n} events");
                        } else if json {
                            println!("{item}");
                        } else {
                            let event: Event = serde_json::from_value(item)?;
                            match event {
                                Event::RepChanged {
                                    org,
                                    rep,
                                    term,
                                    reason,
                                    ..
                                } => {
                                    println!(
                                        "[{org}] rep is now {} (term {term}, {reason})",
                                        short(&rep)
                                    )
                                }
                                Event::MemberJoined { org, peer_id, .. } => {
                                    println!("[{org}] {} joined", short(&peer_id))
                                }
                                Event::MemberLeft { org, peer_id, .. } => {
                                    println!("[{org}] {} left", short(&peer_id))
                                }
                            }
                        }
                        std::io::stdout().flush()?;
                        Ok(())
                    },
                )
                .await?;
        }
        Command::Join { org } => {
            let v = client.call(&Request::Join { org: org.clone() }).await?;
            if json {
                return print_json(&v);
            }
            println!("joined {org}");
        }
        Command::Leave { org } => {
            let v = client.call(&Request::Leave { org: org.clone() }).await?;
            if json {
                return print_json(&v);
            }
            println!("left {org}");
        }
        Command::Send { org, up, text } => {
            let text = if text == "-" {
                let mut buf = String::new();
                std::io::stdin()
                    .read_to_string(&mut buf)
                    .context("cannot read the message from stdin")?;
                buf.strip_suffix('\n').unwrap_or(&buf).to_owned()
            } else {
                text
            };
            let sent: Sent =
                serde_json::from_value(client.call(&Request::Send { org, text, up }).await?)?;
            if json {
                return print_json(&sent);
            }
            println!("{}", sent.id);
        }
        Command::Subscribe { org } => {
            let what = org.clone().unwrap_or_else(|| "all orgs".into());
            client
                .stream(
                    &Request::Subscribe { org },
                    // On stderr, so stdout stays pure JSON lines; scripts wait for it.
                    || eprintln!("subscribed to {what}"),
                    |item| on_stream_item(item, json),
                )
                .await?;
        }
        Command::Chat { org } => chat(client, org).await?,
        Command::Store { setting, purge } => {
            let v = client
                .call(&Request::Store {
                    on: setting == "on",
                    purge,
                })
                .await?;
            let status: StoreStatus = serde_json::from_value(v)?;
            if json {
                return print_json(&status);
            }
            println!(
                "store {}: {} records, {} messages, {} of {} bytes",
                if status.store { "on" } else { "off" },
                status.records,
                status.messages,
                status.bytes,
                status.quota
            );
        }
        Command::History { org, since, limit } => {
            let v = client
                .call(&Request::History {
                    org,
                    since_ms: since,
                    limit,
                })
                .await?;
            let messages: Vec<Delivered> = serde_json::from_value(v)?;
            for m in &messages {
                print_message(m, json)?;
            }
        }
        Command::Put { key, value, file } => {
            let data = match (value, file) {
                (_, Some(path)) => std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                (Some(v), None) => v.into_bytes(),
                (None, None) => bail!("give a value or --file"),
            };
            let v = client
                .call(&Request::Put {
                    name: key,
                    data_hex: hex::encode(&data),
                })
                .await?;
            let put: PutResult = serde_json::from_value(v)?;
            if json {
                return print_json(&put);
            }
            println!(
                "stored {} ({} bytes{}) on {} nodes",
                put.key,
                put.bytes,
                if put.chunks > 0 {
                    format!(", {} chunks", put.chunks)
                } else {
                    String::new()
                },
                put.replicas
            );
        }
        Command::Get { key, out } => {
            let v = client.call(&Request::Get { key }).await?;
            let got: GetResult = serde_json::from_value(v)?;
            match out {
                Some(path) => std::fs::write(&path, &got.data)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None if json => print_json(&got)?,
                None => std::io::stdout().write_all(&got.data)?,
            }
        }
    }
    Ok(())
}

async fn chat(client: Client, org: String) -> Result<()> {
    // Check the node and the org first, so a typo fails before the user types anything.
    let status: Status = serde_json::from_value(client.call(&Request::Status).await?)?;
    if !status.orgs.contains(&org) {
        bail!("not a member of org {org}; run `borg-node join {org}` first");
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "chatting in {org} as {}; Ctrl-D to quit",
            short(&status.peer_id)
        );
    }
    let receiver = {
        let client = client.clone();
        let org = org.clone();
        tokio::spawn(async move {
            client
                .stream(
                    &Request::Subscribe { org: Some(org) },
                    || {},
                    |item| on_stream_item(item, false),
                )
                .await
        })
    };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    // One connection for all lines (a piped file of thousands of lines would otherwise open
    // thousands); after an error it is opened again for the next line.
    let mut session = None;
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let request = Request::Send {
            org: org.clone(),
            text: line,
            up: false,
        };
        let open = match session.take() {
            Some(s) => Ok(s),
            None => client.session().await,
        };
        match open {
            Ok(mut s) => match s.call(&request).await {
                Ok(_) => session = Some(s),
                Err(e) => eprintln!("not sent: {e:#}"),
            },
            Err(e) => eprintln!("not sent: {e:#}"),
        }
    }
    receiver.abort();
    Ok(())
}
