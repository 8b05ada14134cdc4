//! The local control API: how CLI commands talk to the running daemon.
//!
//! - Transport: a Unix socket `control.sock` in the data dir, mode 0600, inside a data dir of
//!   mode 0700. Only the owner of the data dir (and root) can connect; nothing listens on the
//!   network.
//! - Framing: the client writes one JSON request line; the server answers with one JSON line,
//!   `{"ok": <value>}` or `{"error": "<one line>"}`. The client may then write its next request
//!   on the same connection (one at a time: each is answered before the next is read), so a
//!   program sending many messages pays for one connection, not one per message.
//!   `subscribe` and `events` answer `{"ok": null}` and then stream one JSON object per item
//!   until the client hangs up; the connection serves nothing else after them.
//! - Bounds: a request line longer than [`MAX_REQUEST_BYTES`] is refused, and at most
//!   [`MAX_CLIENTS`] clients are served at once.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, anyhow, bail};
use borg_proto::OrgName;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{
        Semaphore,
        broadcast::{
            self,
            error::{RecvError, TryRecvError},
        },
    },
};

use crate::{api::Delivered, config::OrgSpec, node::NodeHandle};

/// File name of the control socket inside the data dir.
pub const SOCKET_FILE: &str = "control.sock";

/// Longest request line: a maximal `put` value, hex-encoded, plus the JSON around it.
pub const MAX_REQUEST_BYTES: u64 = 2 * crate::node::MAX_PUT_BYTES as u64 + 64 * 1024;

/// Stream items are gathered into one write up to about this many bytes.
const STREAM_WRITE_BYTES: usize = 64 * 1024;

/// Longest response line a client accepts (a maximal `get` value, hex-encoded, or a page of
/// history).
const MAX_RESPONSE_BYTES: u64 = 2 * crate::node::MAX_PUT_BYTES as u64 + 16 * 1024 * 1024;

/// Clients served at once; the rest wait for a slot.
pub const MAX_CLIENTS: usize = 64;

/// A request to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The node's status.
    Status,
    /// The connected peers.
    Peers,
    /// The joined orgs and their elections.
    Orgs,
    /// Join an org: `org` or `org:parent:grandparent...`.
    Join {
        /// The org spec.
        org: String,
    },
    /// Leave an org.
    Leave {
        /// The org.
        org: String,
    },
    /// Send a text message to an org.
    Send {
        /// The org.
        org: String,
        /// The text.
        text: String,
        /// Ask the org's rep to relay it to the parent org.
        #[serde(default)]
        up: bool,
    },
    /// Stream election events (rep changes, members joining and leaving).
    Events,
    /// Opt in to or out of storing.
    Store {
        /// Opt in (`true`) or out.
        on: bool,
        /// With `on = false`: delete everything stored.
        #[serde(default)]
        purge: bool,
    },
    /// Logged messages of an org.
    History {
        /// The org.
        org: String,
        /// Unix ms, inclusive.
        #[serde(default)]
        since_ms: u64,
        /// At most this many.
        limit: usize,
    },
    /// Store a value under a name of this node.
    Put {
        /// The name.
        name: String,
        /// The value, hex-encoded.
        data_hex: String,
    },
    /// Fetch a value: `name` (this node's) or `<peer id>/name`.
    Get {
        /// The key.
        key: String,
    },
    /// Stream the messages delivered in one org, or in all orgs.
    Subscribe {
        /// The org; `None` for all.
        org: Option<String>,
    },
}

/// The control socket path of `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// Opens the control socket, refusing when another node already serves this data dir.
pub async fn bind(data_dir: &Path) -> Result<UnixListener> {
    let path = socket_path(data_dir);
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            bail!(
                "a borg-node is already running for data dir {}",
                data_dir.display()
            );
        }
        // Left behind by a node that was killed: nobody answers on it.
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove stale control socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot create control socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict control socket {}", path.display()))?;
    Ok(listener)
}

/// Serves control clients until the node stops.
pub async fn serve(listener: UnixListener, node: NodeHandle) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                continue;
            }
        };
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_client(stream, node).await {
                tracing::debug!(error = %e, "control client ended");
            }
            drop(permit);
        });
    }
}

async fn read_line_bounded<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    max: u64,
) -> Result<Option<String>> {
    let mut line = String::new();
    let n = (&mut *reader).take(max + 1).read_line(&mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if n as u64 > max {
        bail!("line longer than {max} bytes");
    }
    Ok(Some(line))
}

async fn write_line(
    stream: &mut (impl AsyncWriteExt + Unpin),
    value: &(impl Serialize + ?Sized),
) -> Result<()> {
    let mut bytes = Vec::new();
    push_line(&mut bytes, value)?;
    stream.write_all(&bytes).await?;
    Ok(())
}

/// Appends `value` as one line of JSON to `bytes`.
fn push_line(bytes: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) -> Result<()> {
    serde_json::to_writer(&mut *bytes, value)?;
    bytes.push(b'\n');
    Ok(())
}

fn parse_org(org: &str) -> Result<OrgName, String> {
    OrgName::new(org).map_err(|e| format!("invalid org {org:?}: {e}"))
}

async fn serve_client(stream: UnixStream, node: NodeHandle) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let line = match read_line_bounded(&mut reader, MAX_REQUEST_BYTES).await {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(e) => {
                // The rest of an overlong line cannot be told from a next request: hang up.
                write_line(&mut write, &json!({ "error": format!("bad request: {e}") })).await?;
                return Ok(());
            }
        };
        let request: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                // The line itself was complete, so the connection can go on.
                write_line(&mut write, &json!({ "error": format!("bad request: {e}") })).await?;
                continue;
            }
        };
        match request {
            Request::Events => {
                let rx = node.events();
                write_line(&mut write, &json!({ "ok": null })).await?;
                return stream_to_client(rx, &mut reader, &mut write, |_| true).await;
            }
            Request::Subscribe { org } => {
                let org = match org.as_deref().map(parse_org).transpose() {
                    Ok(org) => org,
                    Err(e) => {
                        write_line(&mut write, &json!({ "error": e })).await?;
                        continue;
                    }
                };
                // Subscribe before answering, so nothing delivered after the answer is missed.
                let rx = node.subscribe();
                write_line(&mut write, &json!({ "ok": null })).await?;
                return stream_to_client(rx, &mut reader, &mut write, |msg: &Delivered| {
                    org.as_ref().is_none_or(|o| o.as_str() == msg.org)
                })
                .await;
            }
            request => {
                let value = match handle(request, &node).await {
                    Ok(v) => json!({ "ok": v }),
                    Err(e) => json!({ "error": e }),
                };
                write_line(&mut write, &value).await?;
            }
        }
    }
}

/// Writes every item of `rx` that passes `keep` to the client, until the client hangs up or the
/// node stops. A client that falls behind gets `{"lagged": n}`.
async fn stream_to_client<T: Serialize>(
    mut rx: broadcast::Receiver<Arc<T>>,
    reader: &mut BufReader<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
    keep: impl Fn(&T) -> bool,
) -> Result<()> {
    let mut scratch = [0u8; 64];
    loop {
        let received = tokio::select! {
            received = rx.recv() => received,
            // The client sends nothing more; EOF or an error means it hung up.
            read = reader.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            },
        };
        // Whatever else is already waiting goes out in the same write: one system call (and
        // one wake-up of the client) for a burst instead of one per item.
        let mut lines = Vec::new();
        let mut closed = false;
        let mut next = Some(received);
        while let Some(received) = next.take() {
            match received {
                Ok(item) if keep(&item) => push_line(&mut lines, &*item)?,
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => push_line(&mut lines, &json!({ "lagged": n }))?,
                Err(RecvError::Closed) => closed = true,
            }
            if !closed && lines.len() < STREAM_WRITE_BYTES {
                next = match rx.try_recv() {
                    Ok(item) => Some(Ok(item)),
                    Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                    Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
                    Err(TryRecvError::Empty) => None,
                };
            }
        }
        if !lines.is_empty() {
            write.write_all(&lines).await?;
        }
        if closed {
            return Ok(());
        }
    }
}

async fn handle(request: Request, node: &NodeHandle) -> Result<Value, String> {
    fn value<T: Serialize>(v: Result<T, crate::node::NodeError>) -> Result<Value, String> {
        serde_json::to_value(v.map_err(|e| e.to_string())?).map_err(|e| e.to_string())
    }
    match request {
        Request::Status => value(node.status().await),
        Request::Peers => value(node.peers().await),
        Request::Orgs => value(node.orgs().await),
        Request::Join { org } => {
            let spec: OrgSpec = org.parse().map_err(|e: anyhow::Error| format!("{e:#}"))?;
            let changed = node.join(spec).await.map_err(|e| e.to_string())?;
            Ok(json!({ "org": org, "changed": changed }))
        }
        Request::Leave { org } => {
            let changed = node
                .leave(parse_org(&org)?)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({ "org": org, "changed": changed }))
        }
        Request::Send { org, text, up } => value(node.send(parse_org(&org)?, text, up).await),
        Request::Store { on, purge } => {
            if purge && on {
                return Err("--purge goes with `store off`".into());
            }
            value(node.set_store(on, purge).await)
        }
        Request::History {
            org,
            since_ms,
            limit,
        } => value(
            node.history(parse_org(&org)?, since_ms, limit.clamp(1, 100_000))
                .await,
        ),
        Request::Put { name, data_hex } => {
            let data = hex::decode(data_hex).map_err(|e| format!("bad hex value: {e}"))?;
            value(node.put(name, data).await)
        }
        Request::Get { key } => {
            let (owner, name) = match key.split_once('/') {
                Some((owner, name)) if owner.starts_with("12D3") || owner.starts_with("Qm") => {
                    let owner: libp2p::PeerId = owner
                        .parse()
                        .map_err(|e| format!("invalid peer id {owner:?}: {e}"))?;
                    (owner, name.to_owned())
                }
                _ => (node.peer_id(), key),
            };
            value(node.get(owner, name).await)
        }
        Request::Subscribe { .. } | Request::Events => Err("that request is a stream".into()),
    }
}

/// A connection from the CLI to the daemon of one data dir.
#[derive(Debug, Clone)]
pub struct Client {
    data_dir: PathBuf,
}

impl Client {
    /// A client for the daemon of `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
        }
    }

    async fn connect(&self) -> Result<UnixStream> {
        UnixStream::connect(socket_path(&self.data_dir))
            .await
            .map_err(|_| {
                anyhow!(
                    "no borg-node is running for data dir {}",
                    self.data_dir.display()
                )
            })
    }

    /// Opens a connection for several requests, one after the other.
    pub async fn session(&self) -> Result<Session> {
        let (read, write) = self.connect().await?.into_split();
        Ok(Session {
            reader: BufReader::new(read),
            write,
        })
    }

    /// Sends `request` on a connection of its own and returns the `ok` value, or the node's
    /// error.
    pub async fn call(&self, request: &Request) -> Result<Value> {
        self.session().await?.call(request).await
    }

    /// Sends a streaming `request`, calls `on_ready` once the node has accepted it, then
    /// `on_item` for every streamed line until the node stops.
    pub async fn stream(
        &self,
        request: &Request,
        on_ready: impl FnOnce(),
        mut on_item: impl FnMut(Value) -> Result<()>,
    ) -> Result<()> {
        let mut session = self.session().await?;
        session.call(request).await?;
        on_ready();
        // The write half stays open (in `session`) while streaming: closing it would tell the
        // server that the client hung up.
        while let Some(item) = next_line(&mut session.reader).await? {
            on_item(item)?;
        }
        Ok(())
    }
}

/// A control connection that serves requests one after the other: what a program that sends
/// many messages uses, rather than a connection per request.
pub struct Session {
    reader: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Session {
    /// Sends `request` and returns the `ok` value, or the node's error. An error of the node
    /// leaves the session usable; an I/O error means the node is gone.
    pub async fn call(&mut self, request: &Request) -> Result<Value> {
        write_line(&mut self.write, request).await?;
        let answer = next_line(&mut self.reader)
            .await?
            .ok_or_else(|| anyhow!("the node closed the control connection"))?;
        if let Some(err) = answer.get("error").and_then(Value::as_str) {
            bail!("{err}");
        }
        answer
            .get("ok")
            .cloned()
            .ok_or_else(|| anyhow!("unexpected answer from the node: {answer}"))
    }
}

async fn next_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Result<Option<Value>> {
    let mut line = String::new();
    let n = (&mut *reader)
        .take(MAX_RESPONSE_BYTES)
        .read_line(&mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_str(&line).context("malformed answer from the node")?,
    ))
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// Items that wait together are written in order, one per line, filtered; a client that
    /// fell behind is told how many it missed; the stream ends when the node's side closes.
    #[tokio::test]
    async fn streamed_items_keep_order_and_report_lag() {
        let (node_end, mut client_end) = UnixStream::pair().unwrap();
        let (read, mut write) = node_end.into_split();
        let mut reader = BufReader::new(read);
        let (tx, rx) = broadcast::channel::<Arc<u32>>(4);
        // Seven into a channel of four: the three oldest are lost to this subscriber.
        for n in 0..7 {
            tx.send(Arc::new(n)).unwrap();
        }
        drop(tx);
        stream_to_client(rx, &mut reader, &mut write, |n| *n != 5)
            .await
            .unwrap();
        drop(write);
        let mut out = String::new();
        client_end.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "{\"lagged\":3}\n3\n4\n6\n");
    }
}
