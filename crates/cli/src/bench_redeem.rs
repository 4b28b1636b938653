//! `medspace bench redeem`: redeeming a patient's code at the holding hospital's node and
//! receiving the granted record, on a fresh devnet of real node processes. Prints the
//! holder's preparation time (checks, reading and scoping the record, hashing: everything but
//! the ledger), the wait for the access record's finality, the client's total, and the
//! redemptions per second one node sustains under concurrent requests.

use crate::bench_federated::percentile;
use crate::devnet::{self, Devnet, DevnetOptions};
use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use medspace_types::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `medspace bench redeem`.
#[derive(Args, Debug)]
pub struct BenchRedeemArgs {
    /// Generated patients per hospital.
    #[arg(long, default_value_t = 40)]
    pub patients: usize,
    /// One FHIR folder per hospital instead (e.g. the Synthea split).
    #[arg(long, num_args = 1.., value_name = "DIR")]
    pub fhir: Vec<PathBuf>,
    /// Sequential redemptions timed.
    #[arg(long, default_value_t = 30)]
    pub redemptions: usize,
    /// Concurrent clients for the rate.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Redemptions in the rate run.
    #[arg(long, default_value_t = 200)]
    pub rate_redemptions: usize,
    /// First loopback port of the devnet.
    #[arg(long, default_value_t = 27_800)]
    pub base_port: u16,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// One redemption's figures: (client total ms, holder prepare ms, holder finality ms, resources).
type Timing = (f64, f64, f64, usize);

async fn redeem_once(
    client: &reqwest::Client,
    url: &str,
    key: &Keypair,
    grant: GrantId,
    code: &str,
) -> anyhow::Result<Timing> {
    let body = serde_json::to_vec(&serde_json::json!({ "grant": grant, "code": code }))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let path = "/v1/records/redeem";
    let auth = medspace_api::auth::sign_request(key, "POST", path, now, &body);
    let t = Instant::now();
    let r = client
        .post(format!("{url}{path}"))
        .header("authorization", auth)
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let us = |name: &str| -> f64 {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1000.0
    };
    let (prepare, finality) = (us("x-medspace-prepare-us"), us("x-medspace-finality-us"));
    let bytes = r.bytes().await?;
    let total = t.elapsed().as_secs_f64() * 1000.0;
    if !status.is_success() {
        bail!(
            "redemption refused ({status}): {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    let n = v["entry"].as_array().map_or(0, Vec::len);
    Ok((total, prepare, finality, n))
}

/// Runs `medspace bench redeem`.
pub fn run(args: BenchRedeemArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("medspace-bench-redeem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut net = Devnet::start(
        &dir,
        &DevnetOptions {
            seed: args.seed,
            patients: args.patients,
            fhir: args.fhir.clone(),
            base_port: args.base_port,
        },
    )?;
    let outcome = bench(&net, &args);
    net.stop();
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn bench(net: &Devnet, args: &BenchRedeemArgs) -> anyhow::Result<()> {
    let mut ledger = net.client()?;
    devnet::publish_catalogs(net, &mut ledger, |_, _, _| {})?;
    devnet::register_patients(net, &mut ledger)?;
    let holder = net
        .hospitals
        .first()
        .context("the devnet has no hospital")?;
    // Every patient of hospital-a grants hospital-b all their resource types, unlimited uses.
    let vault = medspace_vault::Vault::open_read_only(&holder.dir)?;
    let mut sizes = Vec::new();
    let mut grants = Vec::new();
    for (i, (person, _, _)) in vault.persons().into_iter().enumerate() {
        let p = holder.patients.get(i).context("patient list out of step")?;
        let bundle = medspace_vault::export::export_patient(&vault, &person.to_string())?;
        let mut types: Vec<String> = bundle["entry"]
            .as_array()
            .map(|es| {
                es.iter()
                    .filter_map(|e| e["resource"]["resourceType"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        types.sort();
        types.dedup();
        types.truncate(32);
        let (payload, code) = crate::patient_cmd::GrantTerms {
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
        sizes.push(bundle["entry"].as_array().map_or(0, Vec::len));
        grants.push((p.key.public(), code.display()));
    }
    let receipts = ledger.must_block()?;
    let ids: Vec<GrantId> = receipts
        .iter()
        .filter_map(|r| match r.created {
            Some(medspace_state::Created::Grant(g)) => Some(g),
            _ => None,
        })
        .collect();
    if ids.len() != grants.len() {
        bail!("{} grants issued, {} expected", ids.len(), grants.len());
    }
    let largest = sizes
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .map(|(i, _)| i)
        .context("no patients")?;
    let url = crate::study::node_url(&net.genesis, &MemberId::new(&holder.member)?)?;
    let key = net.consortium.user_key("hospital-b.clinician")?.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;

    let bar = ProgressBar::new((args.redemptions + args.rate_redemptions) as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("redemptions");
    let mut seq = Vec::new();
    for _ in 0..args.redemptions {
        let (g, code) = (ids[largest], grants[largest].1.clone());
        seq.push(rt.block_on(redeem_once(&client, &url, &key, g, &code))?);
        bar.inc(1);
    }
    // The rate: concurrent clients, each on its own patients' grants.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.concurrency.max(1) {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        let mine: Vec<(GrantId, String)> = ids
            .iter()
            .zip(&grants)
            .enumerate()
            .filter(|(i, _)| i % args.concurrency.max(1) == c)
            .map(|(_, (g, (_, code)))| (*g, code.clone()))
            .collect();
        let n = args.rate_redemptions / args.concurrency.max(1);
        let bar = bar.clone();
        tasks.push(rt.spawn(async move {
            let mut out = Vec::new();
            for i in 0..n {
                if let Some((g, code)) = mine.get(i % mine.len().max(1)) {
                    out.push(redeem_once(&client, &url, &key, *g, code).await);
                    bar.inc(1);
                }
            }
            out
        }));
    }
    let mut done = 0usize;
    let mut conc = Vec::new();
    for t in tasks {
        for r in rt.block_on(t)? {
            conc.push(r?);
            done += 1;
        }
    }
    let rate_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let sorted = |f: &dyn Fn(&Timing) -> f64, v: &[Timing]| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x
    };
    let prep = sorted(&|t| t.1, &seq);
    let fin = sorted(&|t| t.2, &seq);
    let total = sorted(&|t| t.0, &seq);
    println!(
        "bench redeem: a devnet of 4 validator processes + observer; hospital-a holds {} patients ({} resources each on average, the largest {})",
        sizes.len(),
        sizes.iter().sum::<usize>() / sizes.len().max(1),
        sizes[largest]
    );
    println!(
        "{} sequential redemptions of the largest record ({} resources delivered each), ms: holder prepare p50 {:.1} p90 {:.1} | access-record finality p50 {:.0} | client total p50 {:.0} p90 {:.0}",
        seq.len(),
        seq.first().map_or(0, |t| t.3),
        percentile(&prep, 0.5),
        percentile(&prep, 0.9),
        percentile(&fin, 0.5),
        percentile(&total, 0.5),
        percentile(&total, 0.9),
    );
    let ctotal = sorted(&|t| t.0, &conc);
    println!(
        "{done} redemptions by {} concurrent clients over {} grants in {rate_s:.1} s: {:.1} redemptions/s at one node (client p50 {:.0} ms)",
        args.concurrency,
        ids.len(),
        done as f64 / rate_s.max(1e-9),
        percentile(&ctotal, 0.5)
    );
    let excl = sorted(&|t| t.0 - t.2, &seq);
    println!(
        "p50 redeem excluding the access record's finality (client total - finality) {:.1} ms (goal <= 200)",
        percentile(&excl, 0.5)
    );
    Ok(())
}
