//! A client of a running consortium: submits signed transactions to the validators' HTTP API
//! and acts on the state it verified itself, never on a node's word: the state root of a
//! header certified by the genesis validators, read in pieces checked against it
//! ([`crate::pinned`]), then each finalized block after it (finality certificate,
//! re-execution to the header's root) on that state.

use crate::{ClientError, Result};
use medspace_chain::follow::HttpSource;
use medspace_ledger::Follower;
use medspace_state::{Receipt, State};
use medspace_types::*;
use std::time::{Duration, Instant};

fn http(what: impl Into<String>, error: impl std::fmt::Display) -> ClientError {
    ClientError::Http {
        what: what.into(),
        error: error.to_string(),
    }
}

/// How long the client waits without a newly finalized block before it gives up (by default;
/// see [`Remote::set_finality_timeout`]).
pub const FINALITY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the client waits for a block before it asks which validators it can reach.
const STALL_PROBE: Duration = Duration::from_secs(2);

/// How long one validator may take to answer that probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why no block has been finalized for a while, as far as this client can tell: which
/// validators do not answer their open `GET /v1/health`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// The validators whose node did not answer.
    pub unreachable: Vec<String>,
    /// How many validators the genesis names.
    pub validators: usize,
    /// How many of them must take part for a block to be finalized.
    pub needed: usize,
    /// The last finalized height this client verified.
    pub height: u64,
    /// How long the client has waited for the next block.
    pub waited: Duration,
}

impl Stall {
    /// Validators `n` of which `needed` must vote: `n - f` with `f = (n - 1) / 3` faulty.
    pub fn quorum(n: usize) -> usize {
        n - n.saturating_sub(1) / 3
    }

    /// Whether enough validators answer to finalize blocks.
    pub fn can_finalize(&self) -> bool {
        self.validators - self.unreachable.len() >= self.needed
    }

    /// One line for a person.
    pub fn describe(&self) -> String {
        let waited = self.waited.as_secs();
        if self.unreachable.is_empty() {
            return format!(
                "no block finalized for {waited} s after height {}; all {} validators answer",
                self.height, self.validators
            );
        }
        format!(
            "no block finalized for {waited} s after height {}: validator{} {} unreachable ({} of {} reachable, {} needed to finalize{})",
            self.height,
            if self.unreachable.len() == 1 { "" } else { "s" },
            self.unreachable.join(", "),
            self.validators - self.unreachable.len(),
            self.validators,
            self.needed,
            if self.can_finalize() {
                ""
            } else {
                ": the consortium cannot finalize until they are back"
            }
        )
    }
}

/// What is told of a stalled wait.
type StallReport = Box<dyn FnMut(&Stall) + Send>;

struct Pending {
    id: [u8; 32],
    kind: &'static str,
    signer: PublicKey,
    /// The validator it was sent to.
    url: String,
    /// Refused by the validators' proposers (it never enters a block): the reason.
    dropped: Option<String>,
}

/// A verifying client of the consortium's chain.
pub struct Remote {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    urls: Vec<String>,
    /// The validators' names, in the order of `urls`.
    names: Vec<String>,
    /// Every node of the genesis (validators and observers), by member: its API's URL.
    nodes: std::collections::BTreeMap<String, String>,
    next_url: usize,
    source: HttpSource,
    follower: Follower,
    started: crate::pinned::Started,
    chain_id: Name,
    /// The key that reads the chain.
    reader: Keypair,
    pending: Vec<Pending>,
    /// The height each validator is known to have finalized (see [`Remote::caught_up`]).
    reached: std::collections::HashMap<String, u64>,
    /// How long to wait without a new finalized block.
    finality_timeout: Duration,
    /// Told, while waiting, why no block comes.
    on_stall: Option<StallReport>,
}

impl Remote {
    /// Connects to the validators named in the genesis and catches up with the chain, reading
    /// blocks as `reader` (validators serve whole blocks to the keys of the consortium's
    /// members and their users only; a patient reads through [`crate::light::LightClient`]).
    pub fn connect(genesis: &medspace_chain::node::Genesis, reader: &Keypair) -> Result<Self> {
        Self::start(genesis, reader, true)
    }

    /// Like [`Remote::connect`], but holding the whole state, from a validator's checkpoint
    /// (checked against the certified header of its height): for a client that submits and
    /// follows many transactions (a bootstrap, a load generator), whose blocks would each cost
    /// many pieces read one by one from a pinned state.
    pub fn connect_replica(
        genesis: &medspace_chain::node::Genesis,
        reader: &Keypair,
    ) -> Result<Self> {
        Self::start(genesis, reader, false)
    }

    fn start(
        genesis: &medspace_chain::node::Genesis,
        reader: &Keypair,
        light: bool,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ClientError::Runtime(e.to_string()))?;
        // Every node is reached over TLS, trusting exactly the certificates the genesis pins.
        let urls = medspace_chain::tls::validator_urls(genesis);
        let client = medspace_chain::tls::client(genesis, Duration::from_secs(30))
            .map_err(|e| ClientError::Runtime(e.to_string()))?;
        let source = HttpSource::from_genesis(genesis)
            .map_err(|e| ClientError::Runtime(e.to_string()))?
            .signed_by(std::sync::Arc::new(medspace_api::gate::KeySigner(
                reader.clone(),
            )));
        // Start from a validator's pinned state, held as its certified root and read in pieces
        // as the command reaches them: the command does not re-execute the chain, nor load the
        // state (a checkpoint if no validator pins).
        let (follower, started) = if light {
            crate::pinned::start(&runtime, &client, genesis, &source, reader)?
        } else {
            crate::pinned::replica(&runtime, genesis, &source)?
        };
        let mut r = Self {
            runtime,
            source,
            client,
            reader: reader.clone(),
            urls,
            names: genesis.validators.iter().map(|v| v.name.clone()).collect(),
            nodes: genesis
                .validators
                .iter()
                .chain(&genesis.observers)
                .map(|n| (n.name.clone(), medspace_chain::tls::node_url(n)))
                .collect(),
            next_url: 0,
            follower,
            started,
            chain_id: Name::new(&genesis.chain_id)?,
            pending: Vec::new(),
            reached: Default::default(),
            finality_timeout: FINALITY_TIMEOUT,
            on_stall: None,
        };
        r.catch_up()?;
        Ok(r)
    }

    /// The verified state after the last finalized block this client applied.
    pub fn state(&self) -> &State {
        self.follower.state()
    }

    /// Where this client's verified state came from.
    pub fn started(&self) -> &crate::pinned::Started {
        &self.started
    }

    /// Height of that block.
    pub fn height(&self) -> u64 {
        self.follower.height()
    }

    /// Its time (ms since the epoch).
    pub fn time_ms(&self) -> u64 {
        self.follower.time_ms()
    }

    /// Applies every block finalized so far.
    pub fn catch_up(&mut self) -> Result<()> {
        let latest = self.latest_height()?;
        let (follower, source) = (&mut self.follower, &self.source);
        self.runtime
            .block_on(follower.sync_to(source, latest, |_| {}))?;
        Ok(())
    }

    fn latest_height(&mut self) -> Result<u64> {
        let mut last_err = None;
        for _ in 0..self.urls.len() {
            let (name, url) = self.validator();
            let client = self.client.clone();
            let auth = medspace_api::auth::Request {
                method: "GET",
                path_and_query: "/v1/blocks",
                audience: &name,
                body: b"",
            }
            .sign(&self.reader);
            let answer: Result<u64> = self.runtime.block_on(async move {
                let what = format!("GET {url}/v1/blocks");
                let bytes = client
                    .get(format!("{url}/v1/blocks"))
                    .header("authorization", auth)
                    .send()
                    .await
                    .map_err(|e| http(&what, e))?
                    .bytes()
                    .await
                    .map_err(|e| http(&what, e))?;
                let v: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| http(&what, e))?;
                v.get("height")
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| http(&what, "no height in the answer"))
            });
            match answer {
                Ok(h) => return Ok(h),
                Err(e) => {
                    self.next_url += 1;
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| ClientError::Missing("no validators in the genesis".into())))
    }

    /// The validator asked next: its name and URL.
    fn validator(&self) -> (String, String) {
        let i = self.next_url % self.urls.len().max(1);
        (
            self.names.get(i).cloned().unwrap_or_default(),
            self.urls.get(i).cloned().unwrap_or_default(),
        )
    }

    /// Gives up waiting for a block after `timeout` without one (default [`FINALITY_TIMEOUT`]).
    pub fn set_finality_timeout(&mut self, timeout: Duration) {
        self.finality_timeout = timeout;
    }

    /// Calls `f` while a wait for the next block lasts: after a few seconds with which
    /// validators do not answer, again whenever that changes (and every 10 s).
    pub fn on_stall(&mut self, f: impl FnMut(&Stall) + Send + 'static) {
        self.on_stall = Some(Box::new(f));
    }

    /// Asks every validator's open `GET /v1/health` (each at most [`PROBE_TIMEOUT`]).
    pub fn stall(&self, waited: Duration) -> Stall {
        let client = self.client.clone();
        let targets: Vec<(String, String)> = self
            .names
            .iter()
            .cloned()
            .zip(self.urls.iter().map(|u| format!("{u}/v1/health")))
            .collect();
        let answers = self.runtime.block_on(async move {
            let handles: Vec<_> = targets
                .into_iter()
                .map(|(name, url)| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let answered = tokio::time::timeout(PROBE_TIMEOUT, client.get(url).send())
                            .await
                            .is_ok_and(|r| r.is_ok());
                        (name, answered)
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                if let Ok(a) = h.await {
                    out.push(a);
                }
            }
            out
        });
        Stall {
            unreachable: answers
                .into_iter()
                .filter(|(_, ok)| !ok)
                .map(|(n, _)| n)
                .collect(),
            validators: self.names.len(),
            needed: Stall::quorum(self.names.len()),
            height: self.height(),
            waited,
        }
    }

    /// Waits for the next finalized block and applies it (long-poll). After a few seconds
    /// without one it tells [`Remote::on_stall`] which validators do not answer; after the
    /// finality timeout it gives up, saying so.
    pub fn next_block(&mut self) -> Result<()> {
        let next = self.height() + 1;
        let started = Instant::now();
        let mut told: Option<(Vec<String>, Instant)> = None;
        loop {
            let (follower, source) = (&mut self.follower, &self.source);
            let slice = self.runtime.block_on(async {
                tokio::time::timeout(STALL_PROBE, follower.sync_to(source, next, |_| {})).await
            });
            if let Ok(done) = slice {
                done?;
                return Ok(());
            }
            let stall = self.stall(started.elapsed());
            if stall.waited >= self.finality_timeout {
                return Err(ClientError::Timeout(format!(
                    "{}; gave up after {} s without a finalized block",
                    stall.describe(),
                    self.finality_timeout.as_secs()
                )));
            }
            let tell = told.as_ref().is_none_or(|(before, at)| {
                *before != stall.unreachable || at.elapsed() >= Duration::from_secs(10)
            });
            if tell {
                if let Some(f) = self.on_stall.as_mut() {
                    f(&stall);
                }
                told = Some((stall.unreachable, Instant::now()));
            }
        }
    }

    /// The API URL of `member`'s node, as the genesis names it.
    pub fn node_url(&self, member: &MemberId) -> Result<&str> {
        self.nodes
            .get(member.as_str())
            .map(String::as_str)
            .ok_or_else(|| ClientError::Missing(format!("no node named {member} in the genesis")))
    }

    /// The members that run a node (validators and observers).
    pub fn node_members(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// A `GET` at `member`'s node, signed by `key` for that node only (the API's signed
    /// requests): status and body.
    pub fn get_signed(
        &self,
        member: &MemberId,
        path_and_query: &str,
        key: &Keypair,
    ) -> Result<(u16, Vec<u8>)> {
        self.signed("GET", member, path_and_query, b"", key)
    }

    /// A `POST` of `body` at `member`'s node, signed by `key` for that node only: status and
    /// body.
    pub fn post_signed(
        &self,
        member: &MemberId,
        path: &str,
        body: &[u8],
        key: &Keypair,
    ) -> Result<(u16, Vec<u8>)> {
        self.signed("POST", member, path, body, key)
    }

    fn signed(
        &self,
        method: &str,
        member: &MemberId,
        path: &str,
        body: &[u8],
        key: &Keypair,
    ) -> Result<(u16, Vec<u8>)> {
        let auth = medspace_api::auth::Request {
            method,
            path_and_query: path,
            audience: member.as_str(),
            body,
        }
        .sign(key);
        let url = format!("{}{path}", self.node_url(member)?);
        let req = match method {
            "POST" => self.client.post(&url).body(body.to_vec()),
            _ => self.client.get(&url),
        }
        .header("authorization", auth);
        let what = format!("{method} {url}");
        self.runtime.block_on(async move {
            let r = req.send().await.map_err(|e| http(&what, e))?;
            let status = r.status().as_u16();
            let body = r.bytes().await.map_err(|e| http(&what, e))?;
            Ok((status, body.to_vec()))
        })
    }

    /// Signs `payload` with the signer's next nonce, counting its transactions not yet final.
    pub fn sign(&self, key: &Keypair, payload: Payload) -> Result<SignedTx> {
        let pk = key.public();
        let queued = self.pending.iter().filter(|p| p.signer == pk).count() as u64;
        let nonce = self.state().next_nonce(&pk)? + queued;
        Ok(SignedTx::new(&self.chain_id, key, nonce, payload))
    }

    /// Signs and submits a transaction to a validator (spreading submissions over them).
    pub fn submit(&mut self, key: &Keypair, payload: Payload) -> Result<Hash> {
        let kind = payload.kind();
        let tx = self.sign(key, payload)?;
        let (id, url) = self.post(&tx)?;
        self.pending.push(Pending {
            id: id.0,
            kind,
            signer: tx.body.signer.clone(),
            url,
            dropped: None,
        });
        Ok(id)
    }

    /// Signs and submits many transactions the way a gateway does: each validator receives its
    /// signers' transactions in `POST /v1/txs` batches (signatures verified in one batch). A
    /// validator that cannot be reached is replaced by the next; any refusal is the error
    /// (naming how many were refused and the first reason).
    pub fn submit_many(&mut self, items: Vec<(&Keypair, Payload)>) -> Result<Vec<Hash>> {
        let n = self.urls.len().max(1);
        let mut queued: std::collections::HashMap<PublicKey, u64> = Default::default();
        let mut groups: Vec<Vec<(SignedTx, &'static str)>> = vec![Vec::new(); n];
        let mut ids = Vec::with_capacity(items.len());
        for (key, payload) in items {
            let kind = payload.kind();
            let pk = key.public();
            let extra = queued.entry(pk.clone()).or_insert(0);
            let mut tx = self.sign(key, payload)?;
            if *extra > 0 {
                tx = SignedTx::new(&self.chain_id, key, tx.body.nonce + *extra, tx.body.payload);
            }
            *extra += 1;
            ids.push(tx.id());
            let pick = pk.as_ref().first().copied().unwrap_or(0) as usize;
            if let Some(g) = groups.get_mut((pick + self.next_url) % n) {
                g.push((tx, kind));
            }
        }
        for (first, group) in groups.into_iter().enumerate() {
            for chunk in group.chunks(medspace_chain::engine::GOSSIP_BATCH_TXS) {
                self.post_batch(first, chunk)?;
            }
        }
        Ok(ids)
    }

    /// POSTs `body` to `target`: the answer's status and text, or why there was none.
    fn post_bytes(
        &self,
        target: String,
        body: bytes::Bytes,
    ) -> Result<(reqwest::StatusCode, String), reqwest::Error> {
        let client = self.client.clone();
        self.runtime.block_on(async move {
            let r = client.post(target.as_str()).body(body).send().await?;
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            Ok((status, text))
        })
    }

    /// Waits (a bounded time) until the validator at `url` has finalized the height this
    /// client acts on: a transaction built on a state the validator has not committed yet
    /// (a consent right after its signer's registration) would be refused there.
    fn caught_up(&mut self, url: &str) {
        let height = self.height();
        if height == 0 || self.reached.get(url).is_some_and(|h| *h >= height) {
            return;
        }
        let name = self
            .urls
            .iter()
            .position(|u| u == url)
            .and_then(|i| self.names.get(i))
            .cloned()
            .unwrap_or_default();
        let path = format!("/v1/blocks/{height}/header?wait_ms=5000");
        let auth = medspace_api::auth::Request {
            method: "GET",
            path_and_query: &path,
            audience: &name,
            body: b"",
        }
        .sign(&self.reader);
        let client = self.client.clone();
        let target = format!("{url}{path}");
        let reached = self.runtime.block_on(async move {
            client
                .get(target)
                .header("authorization", auth)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        });
        if reached {
            self.reached.insert(url.to_string(), height);
        }
    }

    /// POSTs `body` to `path` at validator `first`, or at the next ones if it cannot be
    /// reached (after [`Remote::caught_up`] with each): the validator's URL and its JSON
    /// answer. A refusal is the error, with the node's reason; `what` names the submission.
    fn post_with_failover(
        &mut self,
        first: usize,
        path: &str,
        body: bytes::Bytes,
        what: &str,
    ) -> Result<(String, serde_json::Value)> {
        let n = self.urls.len().max(1);
        let mut unreachable = Vec::new();
        for step in 0..n {
            let url = self
                .urls
                .get((first + step) % n)
                .cloned()
                .unwrap_or_default();
            self.caught_up(&url);
            // A validator that is busy (its submission rate, or a full mempool) is asked again
            // after a growing pause, for as long as the finality timeout.
            let busy_since = Instant::now();
            let mut pause = Duration::from_millis(50);
            let answered = loop {
                match self.post_bytes(format!("{url}{path}"), body.clone()) {
                    Ok((status, _))
                        if (status == reqwest::StatusCode::TOO_MANY_REQUESTS
                            || status == reqwest::StatusCode::SERVICE_UNAVAILABLE)
                            && busy_since.elapsed() < self.finality_timeout =>
                    {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                    other => break other,
                }
            };
            let (status, text) = match answered {
                Ok(a) => a,
                Err(e) => {
                    unreachable.push(format!("{url}: {e}"));
                    continue;
                }
            };
            let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if !status.is_success() {
                let reason = answer
                    .get("error")
                    .and_then(|e| e.as_str())
                    .unwrap_or(&text);
                return Err(ClientError::Refused {
                    what: what.to_string(),
                    status: status.as_u16(),
                    reason: reason.to_string(),
                });
            }
            return Ok((url, answer));
        }
        Err(http(
            format!("submitting {what}"),
            format!("no validator could be reached: {}", unreachable.join("; ")),
        ))
    }

    /// Posts one batch to validator `first` (or the next reachable one) and records the
    /// accepted transactions as pending.
    fn post_batch(&mut self, first: usize, chunk: &[(SignedTx, &'static str)]) -> Result<()> {
        let raw: Vec<bytes::Bytes> = chunk.iter().map(|(tx, _)| tx.to_bytes()).collect();
        let body = medspace_chain::engine::encode_tx_batch(&raw);
        let what = format!("a batch of {} transactions", chunk.len());
        let (url, answer) = self.post_with_failover(first, "/v1/txs", body, &what)?;
        let results = answer
            .get("results")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        if results.len() != chunk.len() {
            return Err(http(
                &what,
                format!("the node answered {} results", results.len()),
            ));
        }
        let mut refused = Vec::new();
        for ((tx, kind), r) in chunk.iter().zip(&results) {
            match r.get("error").and_then(|e| e.as_str()) {
                None => self.pending.push(Pending {
                    id: tx.id().0,
                    kind,
                    signer: tx.body.signer.clone(),
                    url: url.clone(),
                    dropped: None,
                }),
                Some(reason) => refused.push(format!("{kind}: {reason}")),
            }
        }
        if let Some(first_reason) = refused.first() {
            return Err(ClientError::Refused {
                what,
                status: 400,
                reason: format!(
                    "{} of {} transactions refused, first: {first_reason}",
                    refused.len(),
                    chunk.len()
                ),
            });
        }
        Ok(())
    }

    /// Posts an already signed transaction; the node's refusal becomes the error. All of one
    /// signer's transactions go to the same validator (the next ones only if it cannot be
    /// reached), so they are gossiped in nonce order.
    fn post(&mut self, tx: &SignedTx) -> Result<(Hash, String)> {
        let pick = tx.body.signer.as_ref().first().copied().unwrap_or(0) as usize;
        let (url, _) = self.post_with_failover(
            pick + self.next_url,
            "/v1/tx",
            tx.to_bytes(),
            tx.body.payload.kind(),
        )?;
        Ok((tx.id(), url))
    }

    /// Asks the validators holding still-unfinalized transactions whether their proposers
    /// dropped them (a transaction the state machine refuses never enters a block).
    fn poll_dropped(&mut self) {
        for p in self.pending.iter_mut() {
            if p.dropped.is_some() || self.follower.outcome(&p.id).is_some() {
                continue;
            }
            let client = self.client.clone();
            let url = format!("{}/v1/tx/{}", p.url, hex::encode(p.id));
            let status: Option<serde_json::Value> = self.runtime.block_on(async move {
                let r = client.get(url).send().await.ok()?;
                serde_json::from_slice(&r.bytes().await.ok()?).ok()
            });
            if let Some(v) = status
                && v.get("status").and_then(|s| s.as_str()) == Some("dropped")
            {
                p.dropped = Some(
                    v.get("reason")
                        .and_then(|r| r.as_str())
                        .unwrap_or("dropped by the proposer")
                        .to_string(),
                );
            }
        }
    }

    /// How many submitted transactions are neither finalized nor dropped.
    fn unfinalized(&self) -> usize {
        self.pending
            .iter()
            .filter(|p| p.dropped.is_none() && self.follower.outcome(&p.id).is_none())
            .count()
    }

    /// Waits until every submitted transaction is in a verified finalized block; returns each
    /// one's outcome in submission order.
    pub fn settle(&mut self) -> Result<Vec<(&'static str, Result<Receipt, String>)>> {
        // The finality timeout counts from the last newly finalized block: a large batch may
        // take many blocks, each of them progress.
        let mut started = Instant::now();
        let mut seen = self.height();
        let mut polled = Instant::now();
        loop {
            if self.height() > seen {
                seen = self.height();
                started = Instant::now();
            }
            if self
                .pending
                .iter()
                .all(|p| p.dropped.is_some() || self.follower.outcome(&p.id).is_some())
            {
                break;
            }
            if polled.elapsed() > Duration::from_millis(500) {
                self.poll_dropped();
                polled = Instant::now();
                continue;
            }
            if started.elapsed() > self.finality_timeout {
                return Err(ClientError::Timeout(format!(
                    "{} transaction(s) not in a finalized block, and no block finalized for {} s (last height {})",
                    self.unfinalized(),
                    self.finality_timeout.as_secs(),
                    self.height()
                )));
            }
            if let Err(e) = self.next_block() {
                let missing = self.unfinalized();
                return Err(match e {
                    ClientError::Timeout(why) => ClientError::Timeout(format!(
                        "{missing} transaction(s) not finalized: {why}"
                    )),
                    other => other,
                });
            }
        }
        let pending = std::mem::take(&mut self.pending);
        Ok(pending
            .into_iter()
            .map(|p| {
                let result = match (self.follower.outcome(&p.id), p.dropped) {
                    (Some(o), _) => o.result.clone().map_err(|e| e.to_string()),
                    (None, Some(reason)) => Err(reason),
                    (None, None) => Err("outcome forgotten".into()),
                };
                (p.kind, result)
            })
            .collect())
    }

    /// Waits for the submitted transactions and insists that all were accepted.
    pub fn must_block(&mut self) -> Result<Vec<Receipt>> {
        self.settle()?
            .into_iter()
            .map(|(kind, r)| r.map_err(|reason| ClientError::Transaction { kind, reason }))
            .collect()
    }

    /// Submits one transaction, waits for its block and insists that it was accepted.
    pub fn must(&mut self, key: &Keypair, payload: Payload) -> Result<Receipt> {
        self.submit(key, payload)?;
        self.must_block()?
            .pop()
            .ok_or_else(|| ClientError::Missing("no outcome for the transaction".into()))
    }

    /// Submits one transaction and returns the state machine's verdict: from its block, or the
    /// validators' refusal to put it in one.
    pub fn attempt(&mut self, key: &Keypair, payload: Payload) -> Result<Result<Receipt, String>> {
        self.submit(key, payload)?;
        self.settle()?
            .pop()
            .map(|(_, r)| r)
            .ok_or_else(|| ClientError::Missing("no outcome for the transaction".into()))
    }
}

/// What it costs a client to have the verified state of a running chain: started from a
/// validator's checkpoint (checked against the certified header of its height) and, as the
/// baseline, replayed block by block from genesis to the same height (`medspace bench sync`).
#[derive(Clone, Debug)]
pub struct SyncFigures {
    /// The height both reached.
    pub height: u64,
    /// The checkpoint's size in bytes.
    pub checkpoint_bytes: usize,
    /// Records in the state.
    pub records: usize,
    /// Fetching, checking and restoring the checkpoint.
    pub from_checkpoint: Duration,
    /// Fetching, verifying and re-executing every block from genesis.
    pub replay: Duration,
    /// A light start: a validator's pin, its height's certified header, and the reads of
    /// `query status latest` (the contracts, the latest's record, the jobs) in pieces.
    pub light: Duration,
    /// The pieces that took, and their bytes.
    pub light_pieces: (u64, u64),
}

impl std::fmt::Display for SyncFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ckpt, replay) = (
            self.from_checkpoint.as_secs_f64(),
            self.replay.as_secs_f64(),
        );
        writeln!(
            f,
            "chain at height {}: {} records, checkpoint {:.1} MB ({:.0} B/record)",
            self.height,
            self.records,
            self.checkpoint_bytes as f64 / 1e6,
            self.checkpoint_bytes as f64 / self.records.max(1) as f64
        )?;
        writeln!(
            f,
            "  from a checkpoint (fetch, certified header, rebuild, root check): {ckpt:>8.3} s"
        )?;
        writeln!(
            f,
            "  baseline, replay from genesis (every block verified and re-executed): {replay:>8.3} s"
        )?;
        writeln!(
            f,
            "  ratio: {:.3} of the replay ({:.1}x faster); both at the same state root",
            ckpt / replay.max(1e-9),
            replay / ckpt.max(1e-9)
        )?;
        let light = self.light.as_secs_f64();
        writeln!(
            f,
            "  light start (pin, certified header, `query status latest` read in {} pieces, {:.1} KiB): {light:>8.3} s; {:.4} of the checkpoint start",
            self.light_pieces.0,
            self.light_pieces.1 as f64 / 1024.0,
            light / ckpt.max(1e-9)
        )
    }
}

/// Measures [`SyncFigures`] against `genesis`'s validators, reading as `reader`. Both ways must
/// end at the same state root.
pub fn measure_sync(
    genesis: &medspace_chain::node::Genesis,
    reader: &Keypair,
) -> Result<SyncFigures> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ClientError::Runtime(e.to_string()))?;
    let source = HttpSource::from_genesis(genesis)
        .map_err(|e| ClientError::Runtime(e.to_string()))?
        .signed_by(std::sync::Arc::new(medspace_api::gate::KeySigner(
            reader.clone(),
        )));
    let client = medspace_chain::tls::client(genesis, Duration::from_secs(30))
        .map_err(|e| ClientError::Runtime(e.to_string()))?;
    let start = Instant::now();
    let (light_follower, started) =
        crate::pinned::start(&runtime, &client, genesis, &source, reader)?;
    let (Some(pieces), crate::pinned::Started::Pinned { .. }) =
        (light_follower.state().pieces().cloned(), &started)
    else {
        return Err(ClientError::Verification(format!(
            "no light start: {started}"
        )));
    };
    // The reads of `query status latest` (`study::status_lines`): the contracts, the latest
    // one's record, the jobs.
    let state = light_follower.state();
    if let Some(c) = state.contracts()?.into_iter().map(|c| c.id).max() {
        state.contract(c)?;
        state.jobs()?;
    }
    let light = start.elapsed();
    let light_pieces = (pieces.fetches(), pieces.bytes());
    runtime.block_on(async {
        let checkpoint_bytes = source.fetch_checkpoint().await?.map_or(0, |b| b.len());
        let start = Instant::now();
        let (synced, height) = Follower::start(genesis, &source).await?;
        let from_checkpoint = start.elapsed();
        if height == 0 {
            return Err(ClientError::Verification(
                "no validator offered a checkpoint that checks".into(),
            ));
        }
        let start = Instant::now();
        let mut replayed = Follower::new(genesis)?;
        replayed.sync_to(&source, height, |_| {}).await?;
        let replay = start.elapsed();
        if replayed.state().root() != synced.state().root() {
            return Err(ClientError::Verification(format!(
                "the checkpoint and the replay disagree at height={height}"
            )));
        }
        Ok(SyncFigures {
            height,
            checkpoint_bytes,
            records: synced.state().len(),
            from_checkpoint,
            replay,
            light,
            light_pieces,
        })
    })
}
