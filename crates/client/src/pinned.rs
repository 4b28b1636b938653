//! A consortium client's start: the state at a pinned height, read in pieces.
//!
//! [`start`] asks a validator to pin its last finalized state (`GET /v1/state/pin`), checks
//! that height's header against the genesis validators, and holds the state as its certified
//! root only ([`medspace_state::State::remote`]). Reads and the blocks the client executes
//! after it load pieces of that one state from that validator as they reach them
//! (`GET /v1/state/nodes`), each checked against the hash its parent names. So a command costs
//! the records it touches, whatever the length of the chain or the size of the state.
//!
//! A validator that offers no pin (or whose pin does not check) is passed over; when none
//! does, the client starts from a checkpoint as before ([`Follower::start`]).

use crate::{ClientError, Result};
use medspace_api::gate::KeySigner;
use medspace_chain::follow::RequestSigner as _;
use medspace_chain::follow::{HeaderCheck, HttpSource};
use medspace_chain::node::Genesis as ChainGenesis;
use medspace_ledger::Follower;
use medspace_state::State;
use medspace_state::trie::remote::{Locate, NodeSource, RemoteNodes};
use medspace_types::{Hash, Keypair};
use std::time::Duration;

/// How many pieces a client keeps (each a path of a few nodes, or a small table whole).
const CACHE_PIECES: usize = 65_536;

/// How often a pin is tried again when its height has no certificate of its own yet.
const PIN_ATTEMPTS: usize = 20;

/// How long one piece may take.
const PIECE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often an idle client reads a small piece, so the validator keeps its pin (which it
/// drops after `medspace_api::pieces::PIN_IDLE` unread).
const KEEP_PIN: Duration = Duration::from_secs(60);

struct Job {
    path: String,
    auth: String,
    reply: std::sync::mpsc::SyncSender<std::result::Result<Vec<u8>, String>>,
}

/// Pieces of one validator's pinned state over its API. Requests go through a thread of its
/// own (with its own runtime), so a read can block for its piece from anywhere, also from
/// inside the client's async block execution.
struct HttpPieces {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    audience: String,
    reader: KeySigner,
    height: u64,
}

impl HttpPieces {
    fn start(
        client: reqwest::Client,
        audience: &str,
        url: &str,
        reader: &Keypair,
        height: u64,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Runtime(e.to_string()))?;
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let base = url.to_string();
        let (key, name) = (KeySigner(reader.clone()), audience.to_string());
        std::thread::Builder::new()
            .name("medspace-pieces".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut keep = tokio::time::interval(KEEP_PIN);
                    keep.tick().await;
                    loop {
                        tokio::select! {
                            job = queue.recv() => {
                                // The client is gone (its sender dropped): so is this thread.
                                let Some(job) = job else { break };
                                let answer = get_piece(&client, &base, &job.path, &job.auth).await;
                                // The reader may have given up; nothing to tell then.
                                let _ = job.reply.send(answer);
                            }
                            _ = keep.tick() => {
                                // The leftmost path: a piece of a few hundred bytes.
                                let path = piece_path(height, &Locate {
                                    path: &[],
                                    depth: 0,
                                    toward: &[],
                                    whole_from: u32::MAX,
                                });
                                let auth = key.authorization(&name, &path);
                                let _ = get_piece(&client, &base, &path, &auth).await;
                            }
                        }
                    }
                });
            })
            .map_err(|e| ClientError::Runtime(e.to_string()))?;
        Ok(Self {
            jobs,
            audience: audience.to_string(),
            reader: KeySigner(reader.clone()),
            height,
        })
    }
}

async fn get_piece(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    auth: &str,
) -> std::result::Result<Vec<u8>, String> {
    let r = client
        .get(format!("{base}{path}"))
        .header("authorization", auth)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body.to_vec())
    } else {
        Err(format!("{status}: {}", crate::error_reason(&body)))
    }
}

fn piece_path(height: u64, at: &Locate<'_>) -> String {
    format!(
        "/v1/state/nodes?height={height}&at={}&depth={}&toward={}&whole_from={}",
        hex::encode(at.path),
        at.depth,
        hex::encode(at.toward),
        at.whole_from
    )
}

impl NodeSource for HttpPieces {
    fn fetch(&self, at: Locate<'_>) -> std::result::Result<Vec<u8>, String> {
        let path = piece_path(self.height, &at);
        let auth = self.reader.authorization(&self.audience, &path);
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Job { path, auth, reply })
            .map_err(|_| "the piece reader stopped".to_string())?;
        answer
            .recv()
            .map_err(|_| "the piece reader stopped".to_string())?
    }
}

/// A validator's pin: its height, its root and the record count it reports.
struct Pin {
    height: u64,
    root: Hash,
    records: usize,
}

fn ask_pin(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    (name, url): (&str, &str),
    reader: &Keypair,
) -> Result<Pin> {
    let path = "/v1/state/pin";
    let auth = KeySigner(reader.clone()).authorization(name, path);
    let what = format!("GET {url}{path}");
    let req = client
        .get(format!("{url}{path}"))
        .header("authorization", auth);
    let (status, body) = runtime.block_on(async {
        let r = req.send().await.map_err(|e| http(&what, e))?;
        let status = r.status().as_u16();
        let body = r.bytes().await.map_err(|e| http(&what, e))?;
        Ok::<_, ClientError>((status, body))
    })?;
    if status != 200 {
        return Err(ClientError::Refused {
            what,
            status,
            reason: crate::error_reason(&body),
        });
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| http(&what, e))?;
    let number = |f: &str| v.get(f).and_then(serde_json::Value::as_u64);
    let root = v
        .get("root")
        .and_then(serde_json::Value::as_str)
        .and_then(|r| r.parse::<Hash>().ok());
    match (number("height"), root, number("records")) {
        (Some(height), Some(root), Some(records)) => Ok(Pin {
            height,
            root,
            records: usize::try_from(records).unwrap_or(usize::MAX),
        }),
        _ => Err(http(&what, "no height, root or record count in the answer")),
    }
}

fn http(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Http {
        what: what.to_string(),
        error: e.to_string(),
    }
}

/// Where a client's verified state came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    /// Nothing was finalized yet: the genesis state, from the genesis file.
    Genesis,
    /// A validator's pinned state at `height`, held as its certified root, read in pieces.
    Pinned {
        /// The pinned height.
        height: u64,
        /// The validator serving the pieces.
        validator: String,
    },
    /// A checkpoint's whole state at `height` (0: replayed from genesis): asked for
    /// ([`crate::Remote::connect_replica`]), or no validator's pin checked.
    Checkpoint {
        /// The checkpoint's height.
        height: u64,
        /// Why not a pin (each validator's failure).
        why: String,
    },
}

impl std::fmt::Display for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Started::Genesis => write!(f, "the genesis state (nothing finalized yet)"),
            Started::Pinned { height, validator } => write!(
                f,
                "the state at height {height}, its root checked against the validators' certificate, read in pieces from {validator}"
            ),
            Started::Checkpoint { height, why } => write!(
                f,
                "the whole state from the checkpoint at height {height} (0: replayed from genesis), since {why}"
            ),
        }
    }
}

/// The follower a client starts with, and where it started (a pinned state's pieces are
/// reached through the follower's state: [`State::pieces`]).
pub(crate) fn start(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    genesis: &ChainGenesis,
    source: &HttpSource,
    reader: &Keypair,
) -> Result<(Follower, Started)> {
    let check = HeaderCheck::new(genesis)?;
    let mut why = Vec::new();
    for v in &genesis.validators {
        let url = medspace_chain::tls::node_url(v);
        match start_at(
            runtime,
            client,
            genesis,
            source,
            &check,
            (&v.name, &url),
            reader,
        ) {
            Ok(started) => return Ok(started),
            Err(e) => why.push(format!("{}: {e}", v.name)),
        }
    }
    let why = why.join("; ");
    tracing::warn!(reasons = %why, "client: no validator's pinned state checks; starting from a checkpoint");
    let (follower, _) = replica(runtime, genesis, source)?;
    let height = follower.height();
    Ok((follower, Started::Checkpoint { height, why }))
}

/// The follower of a client that holds the whole state: from a validator's checkpoint (checked
/// against its height's certified header), or from genesis if none checks.
pub(crate) fn replica(
    runtime: &tokio::runtime::Runtime,
    genesis: &ChainGenesis,
    source: &HttpSource,
) -> Result<(Follower, Started)> {
    let (follower, height) = runtime.block_on(Follower::start(genesis, source))?;
    let started = if height == 0 {
        Started::Genesis
    } else {
        Started::Checkpoint {
            height,
            why: "the client asked for the whole state".into(),
        }
    };
    Ok((follower, started))
}

fn start_at(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    genesis: &ChainGenesis,
    source: &HttpSource,
    check: &HeaderCheck,
    (name, url): (&str, &str),
    reader: &Keypair,
) -> Result<(Follower, Started)> {
    for _ in 0..PIN_ATTEMPTS {
        let pin = ask_pin(runtime, client, (name, url), reader)?;
        if pin.height == 0 {
            // Nothing finalized yet: the genesis state is small and derived from the file.
            return Ok((Follower::new(genesis)?, Started::Genesis));
        }
        // A height finalized through a later block's certificate has none of its own: pin
        // again (the next pin is a later height).
        let Some(header) = runtime.block_on(source.fetch_header(pin.height, 2_000))? else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let root = Hash(check.verify(pin.height, &header)?.state_root);
        let client = medspace_chain::tls::client(genesis, PIECE_TIMEOUT)
            .map_err(|e| ClientError::Runtime(e.to_string()))?;
        let pieces = HttpPieces::start(client, name, url, reader, pin.height)?;
        let nodes = RemoteNodes::new(pieces, CACHE_PIECES);
        let state = State::remote(root, pin.records, &nodes)?;
        let follower = Follower::from_state(genesis, state, &header, pin.height)?;
        let started = Started::Pinned {
            height: pin.height,
            validator: name.to_string(),
        };
        return Ok((follower, started));
    }
    Err(ClientError::Missing(format!(
        "no pinned height with a certificate of its own after {PIN_ATTEMPTS} tries"
    )))
}

/// What one client command cost on a state served by a node's API ([`measure`]).
#[derive(Clone, Debug)]
pub struct CommandFigures {
    /// From the pin to the command's last read, median of the runs.
    pub seconds: f64,
    /// Every run's time.
    pub runs: Vec<f64>,
    /// Pieces one run fetched.
    pub pieces: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What the command printed (lines).
    pub lines: usize,
}

/// A node that serves one fixed state: what `medspace bench state` puts behind the real read
/// API to measure a light client on a state of any size.
struct Fixed(medspace_ledger::Snapshot);

impl medspace_ledger::Ledger for Fixed {
    fn snapshot(&self) -> medspace_ledger::Snapshot {
        self.0.clone()
    }
    fn submit(
        &self,
        _: medspace_types::SignedTx,
    ) -> std::result::Result<Hash, medspace_ledger::SubmitError> {
        Err(medspace_ledger::SubmitError::ReadOnly)
    }
    fn tx_status(&self, _: &Hash) -> medspace_ledger::TxStatus {
        medspace_ledger::TxStatus::Unknown
    }
}

/// Serves `state` (at `height`) with the node's read API on loopback as `member`'s node, and
/// runs `command` `runs` times as a fresh light client reading as `reader`: a pin, then the
/// state held as its root and read in pieces over HTTP. The certified header's check is not
/// part of it (a fixed state has none; it is one signature-set check, independent of the
/// state's size). `command` returns how many lines it made.
pub fn measure(
    state: State,
    height: u64,
    member: &str,
    reader: &Keypair,
    runs: usize,
    command: impl Fn(&State) -> Result<usize>,
) -> Result<CommandFigures> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| ClientError::Runtime(e.to_string()))?;
    let ledger = std::sync::Arc::new(Fixed(medspace_ledger::Snapshot {
        state,
        height,
        time_ms: 0,
        anchor: None,
    }));
    let app = medspace_api::read_router(ledger, medspace_api::Config::new(member));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| ClientError::Runtime(e.to_string()))?;
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(|e| ClientError::Runtime(e.to_string()))?
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    let client = medspace_chain::tls::plain_client(PIECE_TIMEOUT)
        .map_err(|e| ClientError::Runtime(e.to_string()))?;
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = std::time::Instant::now();
        let pin = ask_pin(&runtime, &client, (member, &url), reader)?;
        let pieces = HttpPieces::start(client.clone(), member, &url, reader, pin.height)?;
        let nodes = RemoteNodes::new(pieces, CACHE_PIECES);
        let light = State::remote(pin.root, pin.records, &nodes)?;
        let lines = command(&light)?;
        times.push(started.elapsed().as_secs_f64());
        last = Some((nodes.fetches(), nodes.bytes(), lines));
    }
    let (pieces, bytes, lines) = last.unwrap_or_default();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(CommandFigures {
        seconds: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        runs: times,
        pieces,
        bytes,
        lines,
    })
}
