//! `medspace bench ledger`: four validators in one process on the tokio runtime, talking real
//! authenticated TCP over loopback, replicating an application's [`Workload`] (the binary runs the
//! ledger's; with feature `testing`, `bench_ledger` runs the counter application's). Measures
//! sustained finalized transactions per second and submission→finality latency (observed at
//! validator 0), plus the single-node apply rate (execute + commit) of the same application.
//! Transactions are offered on a fixed schedule in 10 ms slices; each validator receives its part
//! of a slice in one batch ([`Handle::submit_many`], what `POST /v1/txs` does for a gateway).

#[cfg(feature = "testing")]
use crate::testing::{CounterApp, sign_tx, test_key};
use crate::{
    config::{NodeConfig, NodeError},
    engine::Handle,
    genesis::{ConsortiumSpec, Genesis, SpecNode, init_consortium},
    node::start_node,
};
use bytes::Bytes;
use commonware_runtime::{Clock as _, Runner as _, Supervisor as _};
use futures::StreamExt as _;
use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

/// Benchmark parameters.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Number of validators.
    pub validators: usize,
    /// Transactions to submit.
    pub txs: usize,
    /// Submission rate (tx/s) across all validators.
    pub rate: u64,
    /// First loopback port (p2p ports are `base..base+n`, http `base+100..`); `0` lets the
    /// operating system choose free ports ([`free_ports`]).
    pub base_port: u16,
    /// Tokio worker threads.
    pub threads: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            validators: 4,
            txs: 80_000,
            rate: 8_000,
            base_port: 17_400,
            threads: 2,
        }
    }
}

/// Benchmark results.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Transactions finalized.
    pub finalized: usize,
    /// Submissions a validator refused (a full mempool under overload): not counted anywhere
    /// else, the client would retry them.
    pub refused: usize,
    /// Seconds from first submission to last finalization.
    pub seconds: f64,
    /// Finalized tx/s.
    pub tps: f64,
    /// Median submission→finality latency (ms).
    pub p50_ms: f64,
    /// 99th percentile latency (ms).
    pub p99_ms: f64,
    /// Blocks finalized.
    pub blocks: u64,
    /// Single-node apply rate (tx/s) of execute+commit.
    pub apply_tps: f64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "finalized={} refused={} seconds={:.2} tps={:.0} p50_ms={:.0} p99_ms={:.0} blocks={} apply_tps={:.0}",
            self.finalized,
            self.refused,
            self.seconds,
            self.tps,
            self.p50_ms,
            self.p99_ms,
            self.blocks,
            self.apply_tps
        )
    }
}

/// Errors running the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Setting up nodes failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Work directory problem.
    #[error("bench directory error: path={path} error={error}")]
    Dir {
        /// Path.
        path: String,
        /// Cause.
        error: String,
    },
    /// No free loopback port could be reserved, or the ports asked for do not exist.
    #[error("no free loopback port: error={0}")]
    Ports(String),
    /// The benchmark has no validator to run.
    #[error("bench needs at least one validator: validators=0")]
    NoValidators,
}

/// `n` distinct TCP ports that the operating system reports free on 127.0.0.1: each is bound
/// to port 0, and all are released together once every one is known (so none is handed out
/// twice). Another process may take one before it is used again; use them right away.
pub fn free_ports(n: usize) -> Result<Vec<u16>, BenchError> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BenchError::Ports(e.to_string()))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BenchError::Ports(e.to_string()))
}

/// The (p2p, http) loopback addresses of `n` validators: from `base_port` on, or free ports
/// chosen by the operating system when it is `0`.
fn node_addresses(base_port: u16, n: usize) -> Result<Vec<(SocketAddr, SocketAddr)>, BenchError> {
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    if base_port == 0 {
        let ports = free_ports(n.saturating_mul(2))?;
        let (p2p, http) = ports.split_at(n.min(ports.len()));
        return Ok(p2p
            .iter()
            .zip(http)
            .map(|(&p, &h)| (local(p), local(h)))
            .collect());
    }
    (0..n)
        .map(|i| {
            let p2p = u16::try_from(i).ok().and_then(|i| base_port.checked_add(i));
            match (p2p, p2p.and_then(|p| p.checked_add(100))) {
                (Some(p2p), Some(http)) => Ok((local(p2p), local(http))),
                _ => Err(BenchError::Ports(format!(
                    "no port above 65535: base_port={base_port} validators={n}"
                ))),
            }
        })
        .collect()
}

const CHAIN: &str = "medspace-bench";

#[cfg(feature = "testing")]
fn make_txs(count: usize, signers: u64) -> Vec<Bytes> {
    let keys: Vec<_> = (0..signers).map(test_key).collect();
    // Transaction `i` is signed by signer `i % signers`.
    keys.iter()
        .cycle()
        .take(count)
        .enumerate()
        .map(|(i, k)| sign_tx(k, CHAIN, i as u64, &format!("k{}", i % 64), 1))
        .collect()
}

/// What a benchmark run replicates and submits.
pub struct Workload<A> {
    /// Builds the application at genesis — once per validator and once for the apply-rate
    /// measurement, so no two share anything (state, caches).
    pub make_app: Box<dyn Fn() -> Result<A, Box<dyn std::error::Error + Send + Sync>> + Send>,
    /// Its genesis as the genesis file's `app` (what the nodes are initialised with).
    pub app_genesis: serde_json::Value,
    /// Encoded transactions in submission order.
    pub txs: Vec<Bytes>,
    /// For each transaction, which validator receives it (a signer's transactions go to one
    /// validator, as a client would send them, so they are gossiped in nonce order).
    pub route: Vec<usize>,
    /// For each transaction, the one (by index) that must be final before it is offered, as
    /// a client waits for its registration before it signs anything else (empty: none).
    pub after: Vec<Option<usize>>,
}

/// Transactions due but held until what they depend on is final ([`Workload::after`]).
#[derive(Debug, Default)]
pub struct Held {
    waiting: Vec<usize>,
}

impl Held {
    /// Of `due` (indices of transactions due now) and those held before, the ones to offer
    /// now — each once — given `is_final` (whether the transaction at an index is final); the
    /// rest stay held. Those held before are looked at again only when `changed` (something
    /// became final or was refused since the last call): the held list can be as long as the
    /// workload, and a benchmark's client must not spend the validators' CPU re-reading it.
    pub fn release(
        &mut self,
        due: std::ops::Range<usize>,
        after: &[Option<usize>],
        changed: bool,
        is_final: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut offer = Vec::new();
        let mut still = Vec::new();
        let again = if changed {
            std::mem::take(&mut self.waiting)
        } else {
            Vec::new()
        };
        for i in again.into_iter().chain(due) {
            match after.get(i).copied().flatten() {
                Some(j) if !is_final(j) => still.push(i),
                _ => offer.push(i),
            }
        }
        self.waiting.append(&mut still);
        offer
    }

    /// Transactions held.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// The chain id benchmark workloads sign for.
pub const BENCH_CHAIN: &str = CHAIN;

/// The counter application with `count` transactions from 256 signers (feature `testing`).
#[cfg(feature = "testing")]
pub fn counter_workload(count: usize) -> Workload<CounterApp> {
    let signers = 256u64;
    Workload {
        make_app: Box::new(|| Ok(CounterApp::new(CHAIN))),
        app_genesis: serde_json::Value::Null,
        txs: make_txs(count, signers),
        route: (0..count).map(|i| i % signers as usize).collect(),
        after: Vec::new(),
    }
}

/// How many times the apply rate is measured (the best counts).
const APPLY_PASSES: usize = 3;

/// Single-node apply rate of `app`: execute + commit `txs` in blocks of 2,000.
pub fn apply_rate<A: crate::Application>(mut app: A, txs: &[Bytes]) -> f64 {
    let start = Instant::now();
    for (h, chunk) in txs.chunks(2_000).enumerate() {
        let (diff, _, _) = app.execute(&[], h as u64 + 1, 1, chunk);
        app.commit(h as u64 + 1, &diff);
    }
    txs.len() as f64 / start.elapsed().as_secs_f64().max(1e-9)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or(0.0)
}

/// Runs the benchmark on the counter application in `work_dir` (created; must not hold a
/// previous run). Feature `testing`: the binary's `bench ledger` runs the ledger's own workload
/// through [`bench_workload`].
#[cfg(feature = "testing")]
pub fn bench_ledger(opts: &BenchOptions, work_dir: &Path) -> Result<BenchReport, BenchError> {
    bench_workload(opts, work_dir, counter_workload(opts.txs))
}

/// Runs the benchmark on any application's workload (`opts.txs` is ignored: the workload's
/// transactions are submitted).
pub fn bench_workload<A: crate::Application>(
    opts: &BenchOptions,
    work_dir: &Path,
    workload: Workload<A>,
) -> Result<BenchReport, BenchError> {
    let spec = ConsortiumSpec {
        chain_id: CHAIN.into(),
        nodes: node_addresses(opts.base_port, opts.validators)?
            .into_iter()
            .enumerate()
            .map(|(i, (p2p, http))| SpecNode {
                name: format!("v{i}"),
                validator: true,
                p2p,
                http,
            })
            .collect(),
        app: workload.app_genesis.clone(),
        // The validators here are driven through their handles, not over HTTP: no certificates.
        plain_http: true,
    };
    let configs = init_consortium(&spec, work_dir)?;
    let mut nodes = Vec::new();
    for path in &configs {
        let c = NodeConfig::load(path)?;
        let g = Genesis::load(&c.node.genesis_file)?;
        let k = c.load_node_key()?;
        nodes.push((c, g, k));
    }
    let Workload {
        make_app,
        txs,
        route,
        after,
        ..
    } = workload;
    let app = |what: &str| {
        make_app().map_err(|e| BenchError::Dir {
            path: what.to_string(),
            error: e.to_string(),
        })
    };
    // The best of three passes, each on a fresh application: a noisy moment of the shared
    // machine must not lower the ceiling the chain is compared with.
    let mut apply_tps: f64 = 0.0;
    for _ in 0..APPLY_PASSES {
        apply_tps = apply_tps.max(apply_rate(app("application genesis")?, &txs));
    }
    let mut apps = Vec::new();
    for _ in &nodes {
        apps.push(app("application genesis")?);
    }
    let runner = commonware_runtime::tokio::Runner::new(
        commonware_runtime::tokio::Config::new()
            .with_worker_threads(opts.threads)
            .with_storage_directory(work_dir.join("storage")),
    );
    let opts = opts.clone();
    runner.start(|context| async move {
        let mut handles: Vec<Handle<A>> = Vec::new();
        for ((c, g, k), app) in nodes.into_iter().zip(apps) {
            let h = start_node(context.child("node"), &c, &g, k, app).await?;
            handles.push(h);
        }
        // Wait for the first empty blocks so connections are up before timing.
        let first = handles.first().ok_or(BenchError::NoValidators)?;
        first.wait_for_height(2).await;
        let mut sub = first.subscribe();
        let mut submitted: HashMap<[u8; 32], Instant> = HashMap::with_capacity(txs.len());
        let start = Instant::now();
        let batch = (opts.rate / 100).max(1) as usize;
        let mut latencies = Vec::with_capacity(txs.len());
        let mut last_final = start;
        let mut blocks = 0u64;
        let mut sent = 0usize;
        let mut refused = 0usize;
        let total = txs.len();
        let mut pb = None;
        if total > 0 {
            let bar = indicatif::ProgressBar::new(total as u64);
            pb = Some(bar);
        }
        let index: HashMap<[u8; 32], usize> = txs
            .iter()
            .enumerate()
            .map(|(i, t)| (crate::block::tx_hash(t), i))
            .collect();
        let mut done = vec![false; total];
        let mut held = Held::default();
        // Whether anything became final or was refused since the held were last looked at.
        let mut changed = false;
        while latencies.len() < total {
            // Submit on schedule, holding what waits for another transaction's finality.
            let due = ((start.elapsed().as_secs_f64() * opts.rate as f64) as usize).min(total);
            let offer = held.release(sent..due, &after, changed, |j| {
                done.get(j).copied().unwrap_or(true)
            });
            changed = false;
            sent = due;
            for slice in offer.chunks(batch) {
                // Each validator gets its share of the slice in one call, as a gateway
                // forwarding its clients' transactions does (`POST /v1/txs`).
                let mut per_node: Vec<(Vec<usize>, Vec<Bytes>)> =
                    vec![Default::default(); handles.len()];
                for &i in slice {
                    let to = route.get(i).copied().unwrap_or(i);
                    if let (Some((at, list)), Some(tx)) = (
                        to.checked_rem(handles.len())
                            .and_then(|n| per_node.get_mut(n)),
                        txs.get(i),
                    ) {
                        at.push(i);
                        list.push(tx.clone());
                    }
                }
                for (h, (at, list)) in handles.iter().zip(&per_node) {
                    if list.is_empty() {
                        continue;
                    }
                    let now = Instant::now();
                    for (i, outcome) in at.iter().zip(h.submit_many(list)) {
                        match outcome {
                            Ok(id) => {
                                submitted.insert(id, now);
                            }
                            Err(_) => {
                                refused += 1;
                                // What waits for it is offered (and refused) rather than
                                // held forever.
                                if let Some(d) = done.get_mut(*i) {
                                    *d = true;
                                }
                                changed = true;
                            }
                        }
                    }
                }
            }
            // Drain finalized blocks.
            let next = futures::future::select(
                sub.next(),
                Box::pin(context.sleep(Duration::from_millis(5))),
            )
            .await;
            if let futures::future::Either::Left((Some(first), _)) = next {
                let now = Instant::now();
                // Take every block committed meanwhile, not one per turn of the loop.
                let mut committed = vec![first];
                while let Ok(c) = sub.try_recv() {
                    committed.push(c);
                }
                for c in committed {
                    blocks += 1;
                    for id in c.tx_ids.iter() {
                        if let Some(d) = index.get(id).and_then(|&i| done.get_mut(i)) {
                            *d = true;
                            changed = true;
                        }
                        if let Some(t) = submitted.remove(id) {
                            latencies.push(now.duration_since(t).as_secs_f64() * 1000.0);
                            last_final = now;
                        }
                    }
                }
                if let Some(bar) = &pb {
                    bar.set_position(latencies.len() as u64);
                }
            }
            if sent == total && submitted.is_empty() && held.is_empty() {
                break;
            }
            if start.elapsed() > Duration::from_secs(600) {
                break;
            }
        }
        if let Some(bar) = pb {
            bar.finish_and_clear();
        }
        latencies.sort_by(f64::total_cmp);
        let seconds = last_final.duration_since(start).as_secs_f64().max(1e-9);
        Ok(BenchReport {
            finalized: latencies.len(),
            refused,
            seconds,
            tps: latencies.len() as f64 / seconds,
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
            blocks,
            apply_tps,
        })
    })
}

/// Creates a fresh temporary work directory for a benchmark run ([`bench_workload`]).
pub fn temp_work_dir() -> Result<std::path::PathBuf, BenchError> {
    let dir = std::env::temp_dir().join(format!(
        "medspace-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Dir {
        path: dir.display().to_string(),
        error: e.to_string(),
    })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::Held;

    #[test]
    fn a_transaction_waits_for_the_one_it_depends_on_and_is_offered_once() {
        // 0 and 1 independent; 2 waits for 0, 3 for 1.
        let after = [None, None, Some(0), Some(1)];
        let mut held = Held::default();
        let mut fin = [false; 4];
        assert_eq!(held.release(0..4, &after, false, |j| fin[j]), vec![0, 1]);
        assert_eq!(held.len(), 2);
        fin[0] = true;
        // Nothing said to have changed: the held are not looked at.
        assert_eq!(
            held.release(4..4, &after, false, |j| fin[j]),
            Vec::<usize>::new()
        );
        assert_eq!(held.release(4..4, &after, true, |j| fin[j]), vec![2]);
        fin[1] = true;
        assert_eq!(held.release(4..4, &after, true, |j| fin[j]), vec![3]);
        assert!(held.is_empty());
        assert_eq!(
            held.release(4..4, &after, true, |j| fin[j]),
            Vec::<usize>::new()
        );
    }
}
