//! The end-to-end benchmarks that need a running consortium of real node processes:
//! [`jobs_end_to_end`] (a study's jobs from submission to the client's verified result) and
//! [`redeem`] (a patient's code redeemed at the holding hospital's node). They return their
//! figures; the command line prints them.

use crate::devnet::{self, Devnet, DevnetOptions};
use crate::{Context, Result, fail};
use medspace_types::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The `p` quantile (nearest rank) of sorted figures; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

/// The figures sorted ascending.
pub fn sorted(v: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut x: Vec<f64> = v.into_iter().collect();
    x.sort_by(f64::total_cmp);
    x
}

/// The end-to-end jobs benchmark.
#[derive(Clone, Debug)]
pub struct JobsOptions {
    /// The devnet.
    pub net: DevnetOptions,
    /// Jobs timed one after another.
    pub jobs: usize,
}

/// A fresh devnet of node processes with their workers under `dir`; every patient decides on
/// research; one L3 contract approved by its reviewers; `jobs` jobs one after another, each
/// timed from submission to the client's verified block holding its result. Milliseconds.
pub fn jobs_end_to_end(
    dir: &Path,
    opts: &JobsOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let mut net = Devnet::start(dir, &opts.net)?;
    let outcome = (|| -> Result<Vec<f64>> {
        let mut ledger = net.client()?;
        devnet::publish_catalogs(&net, &mut ledger, |_, _, _| {})?;
        devnet::register_patients(&net, &mut ledger)?;
        devnet::simulate_consents(&net, &mut ledger)?;
        let spec = crate::demo::STUDY_SPEC;
        let researcher = net.consortium.user_key("research-1.researcher")?.clone();
        let eps = 10_000;
        let contract = medspace_client::study::propose(
            &mut ledger,
            &researcher,
            &medspace_client::study::Proposal {
                spec_json: spec,
                hospitals: &medspace_consortium::HOSPITALS,
                purpose: Purpose::Research,
                study: None,
                // Each job is charged its epsilon once per hospital.
                budget_micro: eps
                    * medspace_consortium::HOSPITALS.len() as u64
                    * opts.jobs.max(1) as u64,
                days: 30,
                fee: 0,
            },
        )?;
        medspace_client::study::approve_all(&mut ledger, &net.consortium, contract)?;
        let mut ms = Vec::new();
        for done in 0..opts.jobs {
            let run = medspace_client::study::run_job(
                &mut ledger,
                &researcher,
                contract,
                spec.as_bytes(),
                eps,
                Duration::from_secs(120),
            )?;
            if run.result.contributions.len() != medspace_consortium::HOSPITALS.len() {
                fail!(
                    "job {} was answered without every hospital: {:?}",
                    run.job,
                    run.result.dropped
                );
            }
            ms.push(run.latency.as_secs_f64() * 1000.0);
            progress(done + 1, opts.jobs);
        }
        Ok(ms)
    })();
    net.stop();
    outcome
}

/// The redemption benchmark.
#[derive(Clone, Debug)]
pub struct RedeemOptions {
    /// The devnet.
    pub net: DevnetOptions,
    /// Sequential redemptions timed.
    pub redemptions: usize,
    /// Concurrent clients for the rate.
    pub concurrency: usize,
    /// Redemptions in the rate run.
    pub rate_redemptions: usize,
}

/// One redemption as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// The client's total, request to last byte (includes the access record's finality), ms.
    pub total_ms: f64,
    /// The holder's preparation (checks, reading and scoping the record, hashing), ms.
    pub prepare_ms: f64,
    /// The holder's wait for the access record's finality, ms.
    pub finality_ms: f64,
    /// Resources delivered.
    pub resources: usize,
}

/// The redemption benchmark's figures.
#[derive(Clone, Debug)]
pub struct RedeemReport {
    /// Resources per patient record of hospital-a.
    pub record_sizes: Vec<usize>,
    /// Sequential redemptions of the largest record.
    pub sequential: Vec<Timing>,
    /// Redemptions by concurrent clients.
    pub concurrent: Vec<Timing>,
    /// Wall time of the concurrent run, s.
    pub concurrent_s: f64,
    /// Grants redeemed in the concurrent run.
    pub grants: usize,
    /// The baseline: the same record read from the vault, scoped, serialized and hashed in
    /// this process (no network, no ledger), ms, once per sequential redemption.
    pub local_ms: Vec<f64>,
}

async fn redeem_once(
    client: &reqwest::Client,
    (holder, url): (&MemberId, &str),
    key: &Keypair,
    grant: GrantId,
    code: &str,
    after_height: u64,
) -> Result<Timing> {
    let body = serde_json::to_vec(
        &serde_json::json!({ "grant": grant, "code": code, "after_height": after_height }),
    )?;
    let path = "/v1/records/redeem";
    let auth = medspace_api::auth::Request {
        method: "POST",
        path_and_query: path,
        audience: holder.as_str(),
        body: &body,
    }
    .sign(key);
    let t = Instant::now();
    let r = client
        .post(format!("{url}{path}"))
        .header("authorization", auth)
        .body(body)
        .send()
        .await
        .context("redeem request")?;
    let status = r.status();
    let us = |name: &str| -> f64 {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1000.0
    };
    let (prepare_ms, finality_ms) = (us("x-medspace-prepare-us"), us("x-medspace-finality-us"));
    let bytes = r.bytes().await.context("redeem answer")?;
    let total_ms = t.elapsed().as_secs_f64() * 1000.0;
    if !status.is_success() {
        fail!(
            "redemption refused ({status}): {}",
            medspace_client::records::error_reason(&bytes)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    let resources = v
        .get("entry")
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    Ok(Timing {
        total_ms,
        prepare_ms,
        finality_ms,
        resources,
    })
}

/// Redeems codes on a fresh devnet: every patient of hospital-a grants hospital-b all their
/// resource types; the largest record is redeemed `redemptions` times one after another, then
/// `rate_redemptions` by `concurrency` clients at once.
pub fn redeem(
    opts: &RedeemOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RedeemReport> {
    let dir = std::env::temp_dir().join(format!("medspace-bench-redeem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut net = Devnet::start(&dir, &opts.net)?;
    let outcome = redeem_on(&net, opts, progress);
    net.stop();
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn redeem_on(
    net: &Devnet,
    opts: &RedeemOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RedeemReport> {
    let mut ledger = net.client()?;
    devnet::publish_catalogs(net, &mut ledger, |_, _, _| {})?;
    devnet::register_patients(net, &mut ledger)?;
    let holder = net
        .hospitals
        .first()
        .context("the devnet has no hospital")?;
    let vault = medspace_vault::Vault::open_read_only(&holder.dir, &holder.key)?;
    let mut sizes = Vec::new();
    let mut codes = Vec::new();
    let mut persons = Vec::new();
    let mut all_types = Vec::new();
    for (i, (person, _, _)) in vault.persons().into_iter().enumerate() {
        let p = holder.patients.get(i).context("patient list out of step")?;
        let bundle = medspace_vault::export::export_patient(&vault, &person.to_string())?;
        let entries = bundle
            .get("entry")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut types = types_of(&entries);
        types.truncate(32);
        let (payload, code) = medspace_client::records::GrantTerms {
            grantee: MemberId::new("hospital-b")?,
            holder: MemberId::new(&holder.member)?,
            purpose: Purpose::Treatment,
            types,
            period_ms: (0, u64::MAX / 2),
            expiry_ms: ledger.time_ms() + 24 * 3600 * 1000,
            max_uses: 0,
        }
        .with_new_code(&p.id)?;
        ledger.submit(&p.key, payload)?;
        sizes.push(entries.len());
        codes.push(code.display());
        persons.push(person.to_string());
        all_types.push(types_of(&entries));
    }
    let ids: Vec<GrantId> = ledger
        .must_block()?
        .iter()
        .filter_map(|r| match r.created {
            Some(medspace_state::Created::Grant(g)) => Some(g),
            _ => None,
        })
        .collect();
    if ids.len() != codes.len() {
        fail!("{} grants issued, {} expected", ids.len(), codes.len());
    }
    let grants: Vec<(GrantId, String)> = ids.into_iter().zip(codes).collect();
    let largest = sizes
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .map(|(i, _)| i)
        .context("no patients")?;
    let (big_grant, big_code) = grants.get(largest).cloned().context("no grant")?;
    let local_ms = local_reads(
        &vault,
        persons.get(largest).context("no person")?,
        all_types.get(largest).context("no types")?,
        opts.redemptions,
    )?;
    let after_height = ledger.height();
    let holder_id = MemberId::new(&holder.member)?;
    let url = ledger.node_url(&holder_id)?.to_string();
    let key = net.consortium.user_key("hospital-b.clinician")?.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Over TLS when the devnet's genesis pins the nodes' certificates, plain HTTP when not.
    let client = medspace_chain::tls::client(&net.genesis, Duration::from_secs(60))?;
    let total_steps = opts.redemptions + opts.rate_redemptions;
    let mut sequential = Vec::new();
    for i in 0..opts.redemptions {
        sequential.push(rt.block_on(redeem_once(
            &client,
            (&holder_id, &url),
            &key,
            big_grant,
            &big_code,
            after_height,
        ))?);
        progress(i + 1, total_steps);
    }
    // The rate: concurrent clients, each on its own patients' grants.
    let clients = opts.concurrency.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, url, key, holder) =
            (client.clone(), url.clone(), key.clone(), holder_id.clone());
        let mine: Vec<(GrantId, String)> = grants
            .iter()
            .enumerate()
            .filter(|(i, _)| i % clients == c)
            .map(|(_, g)| g.clone())
            .collect();
        let n = opts.rate_redemptions / clients;
        tasks.push(rt.spawn(async move {
            let mut out = Vec::new();
            for i in 0..n {
                if let Some((g, code)) = mine.get(i % mine.len().max(1)) {
                    out.push(
                        redeem_once(&client, (&holder, &url), &key, *g, code, after_height).await,
                    );
                }
            }
            out
        }));
    }
    let mut concurrent = Vec::new();
    for t in tasks {
        for r in rt.block_on(t).context("a client task")? {
            concurrent.push(r?);
            progress(opts.redemptions + concurrent.len(), total_steps);
        }
    }
    Ok(RedeemReport {
        record_sizes: sizes,
        sequential,
        concurrent,
        concurrent_s: started.elapsed().as_secs_f64(),
        grants: grants.len(),
        local_ms,
    })
}

/// The distinct resource types of a Bundle's entries, sorted.
fn types_of(entries: &[serde_json::Value]) -> Vec<String> {
    let mut types: Vec<String> = entries
        .iter()
        .filter_map(|e| {
            e.pointer("/resource/resourceType")
                .and_then(serde_json::Value::as_str)
                .map(String::from)
        })
        .collect();
    types.sort();
    types.dedup();
    types
}

/// The redemption benchmark's baseline: what the holder does for a redemption without the
/// network and the ledger — read the patient's record from the vault, keep the granted types,
/// serialize and hash it — `n` times, ms each.
fn local_reads(
    vault: &medspace_vault::Vault,
    person: &str,
    types: &[String],
    n: usize,
) -> Result<Vec<f64>> {
    let types: Vec<&str> = types.iter().map(String::as_str).collect();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let mut bundle = medspace_vault::export::export_patient(vault, person)?;
        medspace_worker::records::scope_bundle(&mut bundle, &types, 0, u64::MAX / 2);
        let bytes = serde_json::to_vec(&bundle)?;
        std::hint::black_box(medspace_worker::records::delivery_hash(&bytes));
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// The ledger benchmark with one OS process per validator.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// Transactions offered.
    pub txs: usize,
    /// Offered rate (tx/s).
    pub rate: u64,
    /// First loopback port (p2p from here, HTTP from here + 100).
    pub base_port: u16,
    /// The validators' APIs over TLS (certificates pinned in the genesis), or plain HTTP.
    pub tls: bool,
    /// The validators hold their ledger state whole in memory (`[state] store = "memory"`)
    /// instead of in their on-disk stores.
    pub state_in_memory: bool,
}

/// What the processes finalized.
#[derive(Clone, Debug, Default)]
pub struct LedgerReport {
    /// Transactions finalized.
    pub finalized: usize,
    /// Refused at admission for good (a full mempool under overload, or a signer still
    /// unregistered when the benchmark gives up).
    pub refused: usize,
    /// Why the first refused transaction was refused.
    pub first_refusal: Option<String>,
    /// From the first submission to the last finalization, s.
    pub seconds: f64,
    /// Submission (the batch's answer) to finality at validator 0, per finalized transaction.
    pub latencies_ms: Vec<f64>,
}

const LEDGER_VALIDATORS: usize = 4;

/// Four `medspace node` validator processes (`exe`) over loopback, the ledger benchmark's
/// workload ([`medspace_ledger::bench::workload`]) offered in 10 ms slices, each validator's
/// share of a slice as one `POST /v1/txs` batch; finality observed at validator 0 block by
/// block. The processes and their files are removed afterwards.
pub fn ledger_processes(
    exe: &Path,
    opts: &LedgerOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<LedgerReport> {
    let dir = std::env::temp_dir().join(format!("medspace-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let workload = medspace_ledger::bench::workload(opts.txs).context("workload")?;
    let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let nodes: Vec<medspace_chain::node::SpecNode> = (0..LEDGER_VALIDATORS as u16)
        .map(|i| medspace_chain::node::SpecNode {
            name: format!("v{i}"),
            validator: true,
            p2p: addr(opts.base_port + i),
            http: addr(opts.base_port + 100 + i),
        })
        .collect();
    medspace_chain::node::init_consortium(
        &medspace_chain::node::ConsortiumSpec {
            chain_id: medspace_chain::bench::BENCH_CHAIN.to_string(),
            nodes: nodes.clone(),
            app: workload.app_genesis.clone(),
            plain_http: !opts.tls,
        },
        &dir,
    )?;
    if opts.state_in_memory {
        for n in &nodes {
            let path = dir.join(&n.name).join("node.toml");
            let mut config = std::fs::read_to_string(&path)?;
            config.push_str("\n[state]\nstore = \"memory\"\n");
            std::fs::write(&path, config)?;
        }
    }
    let genesis = medspace_chain::node::Genesis::load(&dir.join("genesis.json"))?;
    let urls = medspace_chain::tls::validator_urls(&genesis);
    let mut children = Children(Vec::new());
    for n in &nodes {
        let log = std::fs::File::create(dir.join(&n.name).join("node.log"))?;
        children.0.push(
            std::process::Command::new(exe)
                .arg("node")
                .arg("--config")
                .arg(dir.join(&n.name).join("node.toml"))
                .env("RUST_LOG", "warn")
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting a validator process")?,
        );
    }
    progress("4 validator processes started; waiting for their APIs");
    let reader = (
        nodes.first().map(|n| n.name.clone()).unwrap_or_default(),
        medspace_ledger::bench::bench_member(),
    );
    let outcome = offer(&genesis, &urls, &reader, &workload, opts.rate, progress);
    // A run that did not finalize everything shows why: each validator's state and last words.
    if outcome.as_ref().map_or(true, |r| r.finalized < opts.txs) {
        for (n, child) in nodes.iter().zip(children.0.iter_mut()) {
            let state = match child.try_wait() {
                Ok(Some(status)) => format!("exited ({status})"),
                Ok(None) => "running".to_string(),
                Err(e) => format!("unknown ({e})"),
            };
            progress(&format!(
                "validator {} is {state}; the end of its log:",
                n.name
            ));
            let log =
                std::fs::read_to_string(dir.join(&n.name).join("node.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            for line in lines.iter().skip(lines.len().saturating_sub(15)) {
                progress(&format!("    {line}"));
            }
        }
    }
    drop(children);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// What one batch's answer said: refusals, the first reason, and what to offer again.
#[derive(Default)]
struct Offered {
    /// Indices of the transactions refused.
    failed: Vec<usize>,
    /// Indices of those to offer again (what they wait for is not final there yet).
    again: Vec<usize>,
    why: Option<String>,
}

/// Two runs' figures side by side: for each `(name, a, b, unit, decimals)`,
/// `name a/b (a / b unit)`, joined by commas (the comparison lines of the benchmarks that run
/// one workload two ways).
pub fn ratios(metrics: &[(&str, f64, f64, &str, usize)]) -> String {
    metrics
        .iter()
        .map(|(name, a, b, unit, d)| {
            format!(
                "{name} {:.3} ({a:.d$} / {b:.d$} {unit})",
                a / b.max(1e-9),
                d = *d
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn run_label(tls: bool, in_memory: bool) -> String {
    format!(
        "{}, state {}",
        if tls { "tls" } else { "plain http" },
        if in_memory { "in memory" } else { "on disk" }
    )
}

/// The processes mode of `medspace bench ledger`: [`ledger_processes`] once per entry of
/// `runs` (TLS or plain HTTP; the validators' state on disk or whole in memory), each run on
/// its own ports (the previous run's sockets may still linger), then, for every two runs that
/// differ in one setting, the ratio of their figures (TLS / plain; on disk / in memory).
pub fn ledger_process_runs(
    exe: &Path,
    first: LedgerOptions,
    runs: &[(bool, bool)],
    baseline_tps: Option<f64>,
    out: &mut dyn FnMut(String),
) -> Result<()> {
    // (tls, in memory, tx/s, p50 ms, p99 ms) of each run.
    let mut figures = Vec::new();
    for (run, &(tls, state_in_memory)) in runs.iter().enumerate() {
        let opts = LedgerOptions {
            base_port: first.base_port.saturating_add(200 * run as u16),
            tls,
            state_in_memory,
            ..first
        };
        let label = run_label(tls, state_in_memory);
        let r = ledger_processes(exe, &opts, &mut |line| out(format!("  [{label}] {line}")))?;
        let lat = sorted(r.latencies_ms.iter().copied());
        let tps = r.finalized as f64 / r.seconds.max(1e-9);
        let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
        out(format!(
            "bench ledger (processes, {label}): finalized {} of {} in {:.2} s = {tps:.0} tx/s; submission->finality p50 {p50:.0} ms p99 {p99:.0} ms; refused {}",
            r.finalized, opts.txs, r.seconds, r.refused
        ));
        if let Some(why) = &r.first_refusal {
            out(format!("  the first refusal: {why}"));
        }
        if let Some(base) = baseline_tps {
            out(format!(
                "  baseline, same run: the same workload in one process {base:.0} tx/s; processes/in-process ratio {:.2}",
                tps / base.max(1e-9)
            ));
        }
        figures.push((tls, state_in_memory, tps, p50, p99));
    }
    for (i, a) in figures.iter().enumerate() {
        for b in figures.iter().skip(i + 1) {
            // Only runs that differ in exactly one setting compare.
            if (a.0 != b.0) == (a.1 != b.1) {
                continue;
            }
            out(format!(
                "bench ledger (processes): {} / {}, same run: {}",
                run_label(a.0, a.1),
                run_label(b.0, b.1),
                ratios(&[
                    ("throughput", a.2, b.2, "tx/s", 0),
                    ("p50 latency", a.3, b.3, "ms", 0),
                    ("p99 latency", a.4, b.4, "ms", 0),
                ])
            ));
        }
    }
    Ok(())
}

/// The benchmark's validator processes, killed however the benchmark ends (an error, a panic).
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Offers the workload's transactions to the validators at `urls` at `rate` (each one that
/// waits for another once that one is final), watching validator 0's blocks as `reader` (its
/// name, and a member's key: validators serve blocks to members only).
fn offer(
    genesis: &medspace_chain::node::Genesis,
    urls: &[String],
    reader: &(String, Keypair),
    workload: &medspace_chain::bench::Workload<medspace_ledger::LedgerApp>,
    rate: u64,
    progress: &mut dyn FnMut(&str),
) -> Result<LedgerReport> {
    let (txs, route, after) = (&workload.txs, &workload.route, &workload.after);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // reqwest starts its timeout timer when a request is sent, inside the runtime's context.
    let _inside = rt.enter();
    // Over TLS when the genesis pins the validators' certificates, plain HTTP when not.
    let client = medspace_chain::tls::client(genesis, Duration::from_secs(30))?;
    // Every validator answers before anything is offered.
    let started = Instant::now();
    for url in urls {
        while rt
            .block_on(client.get(format!("{url}/health")).send())
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            if started.elapsed() > Duration::from_secs(60) {
                fail!("validator {url} did not answer within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The clock starts once the consortium finalizes (every validator past height 0): on a
    // loaded machine the first views may take a while, and that is not the workload's time.
    progress("waiting for the consortium's first finalized block");
    for url in urls {
        loop {
            let height = rt
                .block_on(async {
                    let r = client.get(format!("{url}/health")).send().await.ok()?;
                    let body = r.bytes().await.ok()?;
                    serde_json::from_slice::<serde_json::Value>(&body).ok()
                })
                .and_then(|v| v.get("height").and_then(serde_json::Value::as_u64))
                .unwrap_or(0);
            if height > 0 {
                break;
            }
            if started.elapsed() > Duration::from_secs(180) {
                fail!("validator {url} finalized nothing within 180 s of its start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    progress(&format!(
        "offering the workload ({:.1} s after the processes started)",
        started.elapsed().as_secs_f64()
    ));
    let offering = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let submitted = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        Instant,
    >::new()));
    let total = txs.len();
    let finalized = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Ids of the transactions validator 0 saw final, for those that wait for one.
    let done = std::sync::Arc::new(std::sync::Mutex::new(
        std::collections::HashSet::<String>::new(),
    ));
    // The watcher: validator 0's finalized blocks, one after another.
    let watcher = {
        let (client, url, submitted, finalized, done, offering) = (
            client.clone(),
            urls.first().cloned().unwrap_or_default(),
            submitted.clone(),
            finalized.clone(),
            done.clone(),
            offering.clone(),
        );
        let (audience, key) = reader.clone();
        let signed = move |path: &str| {
            medspace_api::auth::Request {
                method: "GET",
                path_and_query: path,
                audience: &audience,
                body: b"",
            }
            .sign(&key)
        };
        rt.spawn(async move {
            let mut latencies = Vec::new();
            let mut last = Instant::now();
            let mut height = 1u64;
            let mut failure: Option<String> = None;
            // Idle for this long after the offering ended (while it lasts, the offering's own
            // limit decides): what is still unseen will not come.
            let idle_limit = Duration::from_secs(30);
            let mut idle_since = Instant::now();
            while latencies.len() < total {
                if offering.load(std::sync::atomic::Ordering::Relaxed) {
                    idle_since = Instant::now();
                } else if idle_since.max(last).elapsed() >= idle_limit {
                    break;
                }
                // Waits at the validator for the height, then reads its transaction ids.
                let wait = format!("/v1/blocks/{height}/header?wait_ms=2000");
                let raw = client
                    .get(format!("{url}{wait}"))
                    .header("authorization", signed(&wait))
                    .send()
                    .await;
                match raw {
                    // Not found: the height is not final yet, or it was finalized through a
                    // descendant's certificate and has none of its own (simplex finalizes
                    // ancestors implicitly). Either way the block read below decides: waiting
                    // here for a certificate that never comes stalled the whole run.
                    Ok(r)
                        if r.status().is_success()
                            || r.status() == reqwest::StatusCode::NOT_FOUND => {}
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        failure.get_or_insert_with(|| format!("{status}: {body}"));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    Err(e) => {
                        failure.get_or_insert_with(|| e.to_string());
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
                let path = format!("/v1/blocks/{height}");
                let Ok(r) = client
                    .get(format!("{url}{path}"))
                    .header("authorization", signed(&path))
                    .send()
                    .await
                else {
                    continue;
                };
                if !r.status().is_success() {
                    // Read the same block again: skipping it would lose its transactions. Not
                    // found is "not final yet", not a failure.
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    if status != reqwest::StatusCode::NOT_FOUND {
                        failure.get_or_insert_with(|| format!("{status}: {body}"));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let Ok(body) = r.bytes().await else {
                    continue;
                };
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    continue;
                };
                let now = Instant::now();
                let ids = v
                    .get("tx_ids")
                    .and_then(serde_json::Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if !ids.is_empty() {
                    last = now;
                }
                if let Ok(mut d) = done.lock() {
                    d.extend(
                        ids.iter()
                            .filter_map(serde_json::Value::as_str)
                            .map(str::to_string),
                    );
                }
                if let Ok(sent) = submitted.lock() {
                    for id in ids.iter().filter_map(serde_json::Value::as_str) {
                        if let Some(t) = sent.get(id) {
                            latencies.push(now.duration_since(*t).as_secs_f64() * 1000.0);
                        }
                    }
                }
                finalized.store(latencies.len(), std::sync::atomic::Ordering::Relaxed);
                height += 1;
            }
            (latencies, last, failure)
        })
    };
    let start = Instant::now();
    let mut sent = 0usize;
    let mut refused = 0usize;
    let mut first_refusal = None;
    let n = urls.len().max(1);
    let tx_ids: Vec<String> = txs
        .iter()
        .map(|t| hex::encode(medspace_chain::block::tx_hash(t)))
        .collect();
    // Transactions refused here: what waits for one is offered (and refused) rather than
    // held forever.
    let mut failed = vec![false; total];
    let mut held = medspace_chain::bench::Held::default();
    // (transactions seen final, refused) when the held were last looked at.
    let mut last_seen = (usize::MAX, 0);
    let give_up = Duration::from_secs(300);
    let mut shown = Instant::now();
    let mut again: std::collections::VecDeque<(Instant, usize)> = Default::default();
    while sent < total || !held.is_empty() || !again.is_empty() {
        if shown.elapsed() >= Duration::from_secs(2) {
            shown = Instant::now();
            let accepted = submitted.lock().map_or(0, |m| m.len());
            progress(&format!(
                "{:>5.1} s: offered {}/{total}, accepted {accepted}, finalized {}",
                start.elapsed().as_secs_f64(),
                sent - held.len(),
                finalized.load(std::sync::atomic::Ordering::Relaxed),
            ));
        }
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        let mut offer = {
            // Read under the lock (the watcher adds to it block by block), never copied: the
            // set grows to the whole workload and this runs every 10 ms.
            let done = done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let seen = (done.len(), refused);
            let changed = seen != last_seen;
            last_seen = seen;
            held.release(sent..due, after, changed, |j| {
                failed.get(j).copied().unwrap_or(true)
                    || tx_ids.get(j).is_none_or(|id| done.contains(id))
            })
        };
        let now = Instant::now();
        while again.front().is_some_and(|(at, _)| *at <= now) {
            offer.extend(again.pop_front().map(|(_, i)| i));
        }
        sent = due;
        if offer.is_empty() {
            if start.elapsed() > give_up {
                refused += held.len() + again.len();
                first_refusal.get_or_insert_with(|| {
                    "gave up waiting for the transactions these depend on".to_string()
                });
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let mut per_node: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in offer {
            let to = route.get(i).copied().unwrap_or(i) % n;
            if let Some(list) = per_node.get_mut(to) {
                list.push(i);
            }
        }
        // A batch holds at most `GOSSIP_BATCH_TXS` transactions.
        let posts = per_node
            .into_iter()
            .zip(urls)
            .flat_map(|(list, url)| {
                list.chunks(medspace_chain::engine::GOSSIP_BATCH_TXS)
                    .map(|c| (c.to_vec(), url))
                    .collect::<Vec<_>>()
            })
            .map(|(list, url)| {
                let (client, submitted) = (client.clone(), submitted.clone());
                let batch: Vec<bytes::Bytes> =
                    list.iter().filter_map(|i| txs.get(*i).cloned()).collect();
                let body = medspace_chain::engine::encode_tx_batch(&batch);
                let ids: Vec<String> = list
                    .iter()
                    .filter_map(|i| tx_ids.get(*i).cloned())
                    .collect();
                let url = format!("{url}/v1/txs");
                async move {
                    let mut outcome = Offered::default();
                    let answer = client.post(url).body(body).send().await;
                    let now = Instant::now();
                    let v: serde_json::Value = match answer {
                        Ok(r) if r.status().is_success() => r
                            .bytes()
                            .await
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or_default(),
                        Ok(r) => {
                            outcome.why = Some(format!(
                                "{}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            ));
                            outcome.failed = list;
                            return outcome;
                        }
                        Err(e) => {
                            outcome.why = Some(e.to_string());
                            outcome.failed = list;
                            return outcome;
                        }
                    };
                    let results = v
                        .get("results")
                        .and_then(serde_json::Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if let Ok(mut m) = submitted.lock() {
                        for (k, (id, at)) in ids.into_iter().zip(&list).enumerate() {
                            match results.get(k).map(|r| r.get("error")) {
                                Some(None) => {
                                    m.insert(id, now);
                                }
                                // Final at validator 0, not yet at the validator it was
                                // sent to: offered again shortly, as the client would.
                                Some(Some(e))
                                    if after.get(*at).copied().flatten().is_some()
                                        && e.to_string().contains("unknown signer") =>
                                {
                                    outcome.again.push(*at);
                                }
                                Some(Some(e)) => {
                                    outcome.failed.push(*at);
                                    outcome.why.get_or_insert_with(|| e.to_string());
                                }
                                None => {
                                    outcome.failed.push(*at);
                                    outcome.why.get_or_insert_with(|| {
                                        "the batch's answer has no result for it".into()
                                    });
                                }
                            }
                        }
                    }
                    outcome
                }
            });
        let later = Instant::now() + Duration::from_millis(200);
        for o in rt.block_on(futures::future::join_all(posts)) {
            again.extend(o.again.into_iter().map(|i| (later, i)));
            refused += o.failed.len();
            for i in o.failed {
                if let Some(f) = failed.get_mut(i) {
                    *f = true;
                }
            }
            if first_refusal.is_none() {
                first_refusal = o.why;
            }
        }
    }
    offering.store(false, std::sync::atomic::Ordering::Relaxed);
    let (latencies, last, failure) = rt.block_on(watcher).context("watching the blocks")?;
    if let Some(f) = failure {
        progress(&format!(
            "validator 0 refused a block read at least once (read again): {f}"
        ));
    }
    Ok(LedgerReport {
        finalized: latencies.len(),
        refused,
        first_refusal,
        seconds: last.duration_since(start).as_secs_f64(),
        latencies_ms: latencies,
    })
}
