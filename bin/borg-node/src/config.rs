//! The node's configuration and where it comes from.
//!
//! Each setting is resolved from layers, the later winning:
//! 1. built-in defaults;
//! 2. the TOML file (`config.toml` in the data dir, or `--config FILE`);
//! 3. environment variables (`BORG_*`);
//! 4. command-line flags.
//!
//! A list setting (listen, bootstrap, orgs) given in a layer replaces the list of the layers
//! below it; lists are not merged, so what you see in the winning layer is what runs.

use std::{path::PathBuf, str::FromStr, time::Duration};

use anyhow::{Context, Result, bail};
use borg_proto::OrgName;
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// The TCP and UDP (QUIC) port a node listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 4747;

/// Default ping interval on links to this node's reps. A peer that has not answered a ping for
/// interval + timeout (800 ms) is presumed lost: the rep's silent loss (a dead link, no FIN)
/// must be repaired in under a second. The verdict counts from the last pong, so of a given
/// interval + timeout a longer interval costs fewer pings and finds a cut no later (400 + 400
/// ms against 200 + 600 ms: failover-silent median 619 against 750 ms; idle CPU 0.6 against
/// 0.8 % of a core).
pub const DEFAULT_PING_INTERVAL_MS: u64 = 400;

/// Default ping interval on every other link (never shorter than the rep links'). Only the
/// loss of a rep needs finding within a second; a member's other links (to fellow members,
/// and a rep's links to its members) are judged within 2.4 s. Pinging them every 400 ms
/// too made pings most of an idle node's work: measured in a 5-node org on loopback, idle
/// CPU per node 1.0-1.6 % with every link at 400 ms against 0.8-0.9 % with every link at
/// 2 s; each member has one rep link and three others.
pub const DEFAULT_PEER_PING_INTERVAL_MS: u64 = 2_000;

/// Default interval between mDNS queries, once started. libp2p-mdns probes at 0.5, 1, 2 and 4 s
/// first, so nodes started together find each other within a second; afterwards every query is
/// answered by every node to the whole LAN (n² packets per round), the largest part of an idle
/// node's CPU at 1 s. A node that starts later is found at once all the same: everyone hears
/// its answer to its own first probe.
pub const DEFAULT_MDNS_QUERY_INTERVAL_MS: u64 = 5_000;

/// Default number of org members a node dials by itself. A LAN of up to this many nodes
/// becomes a full mesh (every member sees every loss at once); a larger org is a random graph
/// of this degree plus a star around its rep, so that a 1,000-member org is not half a
/// million connections.
pub const DEFAULT_ORG_DEGREE: usize = 24;

/// Default `idle_timeout_secs`: as long as a Kademlia request may take, so a lookup's
/// connection outlives its requests. At 30 s, the connections of each member's periodic lookups
/// overlapped: 100 in-process members held 60-90 connections each, and 4.1-4.4 MiB per node.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 10;

/// Default ping timeout: how late a pong may be. 400 ms is far above the round trip of a LAN
/// or of a loaded 2-core machine running 20 nodes; a peer busier than that is presumed lost
/// but keeps its connection for 5 s, and is back with its next pong.
pub const DEFAULT_PING_TIMEOUT_MS: u64 = 400;

/// An org to join and, optionally, its chain of parent orgs: `child:parent:grandparent`.
///
/// The chain says where this org sits in the tiers: when this node becomes the rep of `child`
/// it joins `parent`, and if it becomes the rep of `parent` too, it joins `grandparent`.
/// `:` cannot occur in org names, so the syntax is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSpec {
    /// The org.
    pub org: OrgName,
    /// Its parent, the parent's parent, and so on.
    pub parents: Vec<OrgName>,
}

impl OrgSpec {
    /// The direct parent, if any.
    pub fn parent(&self) -> Option<&OrgName> {
        self.parents.first()
    }

    /// The spec of the parent org (its own chain), if any.
    pub fn parent_spec(&self) -> Option<OrgSpec> {
        let (org, rest) = self.parents.split_first()?;
        Some(OrgSpec {
            org: org.clone(),
            parents: rest.to_vec(),
        })
    }
}

impl FromStr for OrgSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut chain = Vec::new();
        for part in s.split(':') {
            let org = OrgName::new(part).with_context(|| format!("invalid org {s:?}"))?;
            if chain.contains(&org) {
                bail!("invalid org {s:?}: {org} appears twice in its chain of parents");
            }
            chain.push(org);
        }
        let org = chain.remove(0);
        Ok(Self {
            org,
            parents: chain,
        })
    }
}

impl std::fmt::Display for OrgSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.org.as_str())?;
        for p in &self.parents {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => bail!("unknown log format {other:?} (expected text or json)"),
        }
    }
}

/// One layer of settings; `None` means "not set here".
///
/// This is also the schema of the TOML file, so unknown keys are an error rather than a
/// silently ignored typo.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Multiaddrs to listen on.
    pub listen: Option<Vec<String>>,
    /// Multiaddrs of peers to dial at start and keep dialling.
    pub bootstrap: Option<Vec<String>>,
    /// Orgs to join at start.
    pub orgs: Option<Vec<String>>,
    /// LAN discovery with mDNS.
    pub mdns: Option<bool>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// Interval between pings on connections to this node's reps, in ms.
    pub ping_interval_ms: Option<u64>,
    /// Interval between pings on every other connection, in ms (at least `ping_interval_ms`).
    pub peer_ping_interval_ms: Option<u64>,
    /// A ping unanswered after this long closes the connection, in ms.
    pub ping_timeout_ms: Option<u64>,
    /// Connections that are not org links (a DHT lookup's) close this long after they were
    /// made, in seconds.
    pub idle_timeout_secs: Option<u64>,
    /// Interval between mDNS queries, in ms.
    pub mdns_query_interval_ms: Option<u64>,
    /// Interval between DHT lookups of org members, in seconds.
    pub discovery_interval_secs: Option<u64>,
    /// How many org members this node dials by itself (found on the LAN or in the DHT); it
    /// also keeps a connection to each of its reps and accepts members that dial it.
    pub org_degree: Option<usize>,
    /// Interval between election announcements, in ms.
    pub election_heartbeat_ms: Option<u64>,
    /// A member (or rep) not heard for this long, without a direct connection, is presumed
    /// gone, in ms.
    pub election_silence_timeout_ms: Option<u64>,
    /// By how many connections a member must beat the rep for the rep to hand over.
    pub election_margin: Option<u32>,
    /// How long that lead must last before the handover, in ms.
    pub election_hold_ms: Option<u64>,
    /// Opt in to storing the orgs' messages and replicated records.
    pub store: Option<bool>,
    /// The most the store may hold, in MiB.
    pub store_quota_mb: Option<u64>,
    /// On how many storing nodes a record is placed.
    pub replication_factor: Option<usize>,
    /// How often stored records are re-replicated to the nodes closest to their keys, in
    /// seconds.
    pub store_replication_interval_secs: Option<u64>,
    /// The largest record value the store accepts, in KiB.
    pub store_max_record_kib: Option<usize>,
    /// The largest logged message the store accepts, in KiB.
    pub store_max_message_kib: Option<usize>,
}

impl Layer {
    /// Parses a TOML config file's contents.
    pub fn from_toml(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Reads the `BORG_*` variables through `get` (a parameter so tests need not touch the
    /// process environment). Lists are comma-separated.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        fn list(v: String) -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }
        fn parse<T: FromStr>(name: &str, v: Option<String>) -> Result<Option<T>>
        where
            T::Err: std::fmt::Display,
        {
            v.map(|v| {
                v.parse::<T>()
                    .map_err(|e| anyhow::anyhow!("environment variable {name}={v:?}: {e}"))
            })
            .transpose()
        }
        Ok(Self {
            listen: get("BORG_LISTEN").map(list),
            bootstrap: get("BORG_BOOTSTRAP").map(list),
            orgs: get("BORG_ORGS").map(list),
            mdns: parse("BORG_MDNS", get("BORG_MDNS"))?,
            log_format: parse("BORG_LOG_FORMAT", get("BORG_LOG_FORMAT"))?,
            ping_interval_ms: parse("BORG_PING_INTERVAL_MS", get("BORG_PING_INTERVAL_MS"))?,
            peer_ping_interval_ms: parse(
                "BORG_PEER_PING_INTERVAL_MS",
                get("BORG_PEER_PING_INTERVAL_MS"),
            )?,
            ping_timeout_ms: parse("BORG_PING_TIMEOUT_MS", get("BORG_PING_TIMEOUT_MS"))?,
            idle_timeout_secs: parse("BORG_IDLE_TIMEOUT_SECS", get("BORG_IDLE_TIMEOUT_SECS"))?,
            mdns_query_interval_ms: parse(
                "BORG_MDNS_QUERY_INTERVAL_MS",
                get("BORG_MDNS_QUERY_INTERVAL_MS"),
            )?,
            discovery_interval_secs: parse(
                "BORG_DISCOVERY_INTERVAL_SECS",
                get("BORG_DISCOVERY_INTERVAL_SECS"),
            )?,
            org_degree: parse("BORG_ORG_DEGREE", get("BORG_ORG_DEGREE"))?,
            election_heartbeat_ms: parse(
                "BORG_ELECTION_HEARTBEAT_MS",
                get("BORG_ELECTION_HEARTBEAT_MS"),
            )?,
            election_silence_timeout_ms: parse(
                "BORG_ELECTION_SILENCE_TIMEOUT_MS",
                get("BORG_ELECTION_SILENCE_TIMEOUT_MS"),
            )?,
            election_margin: parse("BORG_ELECTION_MARGIN", get("BORG_ELECTION_MARGIN"))?,
            election_hold_ms: parse("BORG_ELECTION_HOLD_MS", get("BORG_ELECTION_HOLD_MS"))?,
            store: parse("BORG_STORE", get("BORG_STORE"))?,
            store_quota_mb: parse("BORG_STORE_QUOTA_MB", get("BORG_STORE_QUOTA_MB"))?,
            replication_factor: parse("BORG_REPLICATION_FACTOR", get("BORG_REPLICATION_FACTOR"))?,
            store_replication_interval_secs: parse(
                "BORG_STORE_REPLICATION_INTERVAL_SECS",
                get("BORG_STORE_REPLICATION_INTERVAL_SECS"),
            )?,
            store_max_record_kib: parse(
                "BORG_STORE_MAX_RECORD_KIB",
                get("BORG_STORE_MAX_RECORD_KIB"),
            )?,
            store_max_message_kib: parse(
                "BORG_STORE_MAX_MESSAGE_KIB",
                get("BORG_STORE_MAX_MESSAGE_KIB"),
            )?,
        })
    }

    /// `self` with every setting that `over` sets replaced by `over`'s.
    pub fn overridden_by(self, over: Layer) -> Layer {
        Layer {
            listen: over.listen.or(self.listen),
            bootstrap: over.bootstrap.or(self.bootstrap),
            orgs: over.orgs.or(self.orgs),
            mdns: over.mdns.or(self.mdns),
            log_format: over.log_format.or(self.log_format),
            ping_interval_ms: over.ping_interval_ms.or(self.ping_interval_ms),
            peer_ping_interval_ms: over.peer_ping_interval_ms.or(self.peer_ping_interval_ms),
            ping_timeout_ms: over.ping_timeout_ms.or(self.ping_timeout_ms),
            idle_timeout_secs: over.idle_timeout_secs.or(self.idle_timeout_secs),
            mdns_query_interval_ms: over.mdns_query_interval_ms.or(self.mdns_query_interval_ms),
            discovery_interval_secs: over
                .discovery_interval_secs
                .or(self.discovery_interval_secs),
            org_degree: over.org_degree.or(self.org_degree),
            election_heartbeat_ms: over.election_heartbeat_ms.or(self.election_heartbeat_ms),
            election_silence_timeout_ms: over
                .election_silence_timeout_ms
                .or(self.election_silence_timeout_ms),
            election_margin: over.election_margin.or(self.election_margin),
            election_hold_ms: over.election_hold_ms.or(self.election_hold_ms),
            store: over.store.or(self.store),
            store_quota_mb: over.store_quota_mb.or(self.store_quota_mb),
            replication_factor: over.replication_factor.or(self.replication_factor),
            store_replication_interval_secs: over
                .store_replication_interval_secs
                .or(self.store_replication_interval_secs),
            store_max_record_kib: over.store_max_record_kib.or(self.store_max_record_kib),
            store_max_message_kib: over.store_max_message_kib.or(self.store_max_message_kib),
        }
    }
}

/// The effective configuration of a running node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the identity, control socket and store live.
    pub data_dir: PathBuf,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and keep dialling.
    pub bootstrap: Vec<Multiaddr>,
    /// Orgs to join at start, with their parents.
    pub orgs: Vec<OrgSpec>,
    /// LAN discovery with mDNS.
    pub mdns: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Interval between pings on connections to this node's reps.
    pub ping_interval: Duration,
    /// Interval between pings on every other connection (never shorter than `ping_interval`).
    pub peer_ping_interval: Duration,
    /// A ping unanswered after this long closes the connection.
    pub ping_timeout: Duration,
    /// Connections that are not org links (a DHT lookup's) close this long after they were made.
    pub idle_timeout: Duration,
    /// Interval between mDNS queries.
    pub mdns_query_interval: Duration,
    /// Interval between DHT lookups of org members.
    pub discovery_interval: Duration,
    /// How many org members this node dials by itself.
    pub org_degree: usize,
    /// Election tunables.
    pub election: borg_proto::election::Config,
    /// Whether the node stores org data at start.
    pub store: bool,
    /// The store's limits.
    pub store_limits: borg_store::Limits,
    /// On how many storing nodes a record is placed.
    pub replication_factor: std::num::NonZeroUsize,
    /// Re-replication interval of stored records.
    pub store_replication_interval: Duration,
}

/// The listen addresses used when none are configured: every IPv4 interface, TCP and QUIC.
pub fn default_listen() -> Vec<String> {
    vec![
        format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"),
        format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1"),
    ]
}

fn parse_addrs(what: &str, list: Vec<String>) -> Result<Vec<Multiaddr>> {
    list.into_iter()
        .map(|s| {
            s.parse::<Multiaddr>()
                .with_context(|| format!("invalid {what} address {s:?}"))
        })
        .collect()
}

impl Config {
    /// Resolves a layer (already merged from file, env and flags) into a checked config.
    pub fn resolve(data_dir: PathBuf, layer: Layer) -> Result<Self> {
        let orgs = layer
            .orgs
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.parse::<OrgSpec>())
            .collect::<Result<Vec<_>>>()?;
        let ms = |v: Option<u64>, default: u64| Duration::from_millis(v.unwrap_or(default));
        let ping_interval = ms(layer.ping_interval_ms, DEFAULT_PING_INTERVAL_MS);
        let config = Self {
            data_dir,
            listen: parse_addrs("listen", layer.listen.unwrap_or_else(default_listen))?,
            bootstrap: parse_addrs("bootstrap", layer.bootstrap.unwrap_or_default())?,
            orgs,
            mdns: layer.mdns.unwrap_or(true),
            log_format: layer.log_format.unwrap_or_default(),
            ping_interval,
            peer_ping_interval: ms(layer.peer_ping_interval_ms, DEFAULT_PEER_PING_INTERVAL_MS)
                .max(ping_interval),
            ping_timeout: ms(layer.ping_timeout_ms, DEFAULT_PING_TIMEOUT_MS),
            idle_timeout: Duration::from_secs(
                layer.idle_timeout_secs.unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS),
            ),
            mdns_query_interval: ms(layer.mdns_query_interval_ms, DEFAULT_MDNS_QUERY_INTERVAL_MS),
            discovery_interval: Duration::from_secs(layer.discovery_interval_secs.unwrap_or(30)),
            org_degree: layer.org_degree.unwrap_or(DEFAULT_ORG_DEGREE),
            election: {
                let d = borg_proto::election::Config::default();
                borg_proto::election::Config {
                    heartbeat: layer
                        .election_heartbeat_ms
                        .map_or(d.heartbeat, Duration::from_millis),
                    silence_timeout: layer
                        .election_silence_timeout_ms
                        .map_or(d.silence_timeout, Duration::from_millis),
                    margin: layer.election_margin.unwrap_or(d.margin),
                    hold: layer.election_hold_ms.map_or(d.hold, Duration::from_millis),
                    ..d
                }
            },
            store: layer.store.unwrap_or(false),
            store_limits: borg_store::Limits {
                quota_bytes: layer.store_quota_mb.unwrap_or(1024).saturating_mul(1 << 20),
                // Bounded below by what the node itself writes (a 48 KiB chunk, a 20 KiB
                // envelope) and above by the DHT packet size.
                max_record_bytes: layer.store_max_record_kib.unwrap_or(64).clamp(64, 200) * 1024,
                max_message_bytes: layer.store_max_message_kib.unwrap_or(64).clamp(24, 1024) * 1024,
            },
            replication_factor: std::num::NonZeroUsize::new(layer.replication_factor.unwrap_or(3))
                .ok_or_else(|| anyhow::anyhow!("replication_factor must be at least 1"))?,
            store_replication_interval: Duration::from_secs(
                layer.store_replication_interval_secs.unwrap_or(600).max(1),
            ),
        };
        if config.election.heartbeat.is_zero()
            || config.election.silence_timeout <= config.election.heartbeat
        {
            bail!("election_silence_timeout_ms must be longer than election_heartbeat_ms (> 0)");
        }
        if config.ping_interval.is_zero() || config.ping_timeout.is_zero() {
            bail!("ping interval and timeout must be positive");
        }
        if config.mdns_query_interval < Duration::from_millis(100) {
            bail!("mdns_query_interval_ms must be at least 100");
        }
        if config.discovery_interval.is_zero() {
            bail!("discovery_interval_secs must be positive");
        }
        if config.org_degree == 0 {
            bail!("org_degree must be at least 1");
        }
        Ok(config)
    }

    /// The config as TOML, in the file's schema, for `run --print-config`.
    pub fn to_toml(&self) -> String {
        let layer = Layer {
            listen: Some(self.listen.iter().map(ToString::to_string).collect()),
            bootstrap: Some(self.bootstrap.iter().map(ToString::to_string).collect()),
            orgs: Some(self.orgs.iter().map(ToString::to_string).collect()),
            mdns: Some(self.mdns),
            log_format: Some(self.log_format),
            ping_interval_ms: Some(self.ping_interval.as_millis() as u64),
            peer_ping_interval_ms: Some(self.peer_ping_interval.as_millis() as u64),
            ping_timeout_ms: Some(self.ping_timeout.as_millis() as u64),
            idle_timeout_secs: Some(self.idle_timeout.as_secs()),
            mdns_query_interval_ms: Some(self.mdns_query_interval.as_millis() as u64),
            discovery_interval_secs: Some(self.discovery_interval.as_secs()),
            org_degree: Some(self.org_degree),
            election_heartbeat_ms: Some(self.election.heartbeat.as_millis() as u64),
            election_silence_timeout_ms: Some(self.election.silence_timeout.as_millis() as u64),
            election_margin: Some(self.election.margin),
            election_hold_ms: Some(self.election.hold.as_millis() as u64),
            store: Some(self.store),
            store_quota_mb: Some(self.store_limits.quota_bytes >> 20),
            replication_factor: Some(self.replication_factor.get()),
            store_replication_interval_secs: Some(self.store_replication_interval.as_secs()),
            store_max_record_kib: Some(self.store_limits.max_record_bytes / 1024),
            store_max_message_kib: Some(self.store_limits.max_message_bytes / 1024),
        };
        format!(
            "# data dir: {}\n{}",
            self.data_dir.display(),
            toml::to_string(&layer).unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_listen_on_the_documented_port_with_mdns() {
        let c = Config::resolve("/d".into(), Layer::default()).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert!(c.listen[0].to_string().ends_with("/tcp/4747"));
        assert!(c.listen[1].to_string().ends_with("/udp/4747/quic-v1"));
        assert!(c.mdns);
        assert!(c.bootstrap.is_empty());
    }

    #[test]
    fn flags_override_env_which_overrides_file() {
        let file = Layer::from_toml(
            r#"
            orgs = ["from-file"]
            mdns = false
            ping_interval_ms = 111
            bootstrap = ["/ip4/10.0.0.1/tcp/1"]
            "#,
        )
        .unwrap();
        let env =
            Layer::from_env(env(&[("BORG_ORGS", "env-a, env-b"), ("BORG_MDNS", "true")])).unwrap();
        let flags = Layer {
            mdns: Some(false),
            ..Layer::default()
        };
        let merged = file.overridden_by(env).overridden_by(flags);
        let c = Config::resolve("/d".into(), merged).unwrap();
        // orgs: env beats file
        assert_eq!(
            c.orgs.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            ["env-a", "env-b"]
        );
        // mdns: flag beats env beats file
        assert!(!c.mdns);
        // only in the file: kept
        assert_eq!(c.ping_interval, Duration::from_millis(111));
        assert_eq!(c.bootstrap.len(), 1);
    }

    #[test]
    fn other_links_are_never_pinged_faster_than_rep_links() {
        let c = Config::resolve("/d".into(), Layer::default()).unwrap();
        assert_eq!(
            c.ping_interval,
            Duration::from_millis(DEFAULT_PING_INTERVAL_MS)
        );
        assert_eq!(
            c.peer_ping_interval,
            Duration::from_millis(DEFAULT_PEER_PING_INTERVAL_MS)
        );
        let slow_reps = Layer {
            ping_interval_ms: Some(5_000),
            ..Layer::default()
        };
        let c = Config::resolve("/d".into(), slow_reps).unwrap();
        assert_eq!(c.peer_ping_interval, Duration::from_millis(5_000));
    }

    #[test]
    fn org_specs_carry_their_parents() {
        let spec: OrgSpec = "street:district:city".parse().unwrap();
        assert_eq!(spec.org.as_str(), "street");
        assert_eq!(spec.parent().map(|p| p.as_str()), Some("district"));
        let parent = spec.parent_spec().unwrap();
        assert_eq!(parent.to_string(), "district:city");
        assert_eq!(parent.parent_spec().unwrap().parent_spec(), None);
        assert!("a:a".parse::<OrgSpec>().is_err());
        assert!("a::b".parse::<OrgSpec>().is_err());
        assert!("a/b".parse::<OrgSpec>().is_err());
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../../deploy/config.example.toml");
        let c = Config::resolve("/d".into(), Layer::from_toml(text).unwrap()).unwrap();
        assert_eq!(
            c.ping_interval,
            Duration::from_millis(DEFAULT_PING_INTERVAL_MS)
        );
        assert_eq!(c.election.hold, Duration::from_millis(5_000));
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let err = Layer::from_toml("mdsn = true").unwrap_err().to_string();
        assert!(err.contains("mdsn"), "{err}");
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = Layer::from_env(env(&[("BORG_MDNS", "yes please")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BORG_MDNS"), "{err}");
        let err = Config::resolve(
            "/d".into(),
            Layer {
                bootstrap: Some(vec!["not-an-addr".into()]),
                ..Layer::default()
            },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("not-an-addr"));
        let err = Config::resolve(
            "/d".into(),
            Layer {
                orgs: Some(vec!["a/b".into()]),
                ..Layer::default()
            },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("a/b"));
    }

    #[test]
    fn printed_config_parses_back_to_the_same_config() {
        let c = Config::resolve(
            "/d".into(),
            Layer {
                orgs: Some(vec!["x".into()]),
                bootstrap: Some(vec!["/ip4/127.0.0.1/tcp/9".into()]),
                ..Layer::default()
            },
        )
        .unwrap();
        let text = c.to_toml();
        let again = Config::resolve("/d".into(), Layer::from_toml(&text).unwrap()).unwrap();
        assert_eq!(again.to_toml(), text);
    }
}
