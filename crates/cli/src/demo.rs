//! `medspace demo`: the whole story on a real local consortium, step by step — the devnet's
//! node processes (four validators and the regulator's observer, over loopback TCP) and each
//! hospital's real vault (FHIR ingested into CDM tables, queried with DataFusion inside the
//! hospital). Every transaction goes through consensus; the demo acts on the state it verified
//! itself from finalized blocks.

use crate::consortium::HOSPITALS;
use crate::devnet::{self, Devnet, DevnetOptions};
use crate::remote::Remote;
use anyhow::{Context, bail};
use medspace_state::{Created, Event, records::PatientEvent};
use medspace_types::*;

/// Options of the demo.
pub struct DemoOptions {
    /// Generated patients per hospital.
    pub patients: usize,
    /// Seed of every key and choice.
    pub seed: u64,
    /// One FHIR folder per hospital instead of generated patients.
    pub fhir: Vec<std::path::PathBuf>,
    /// Where the consortium's node directories go (recreated on every run).
    pub dir: std::path::PathBuf,
    /// First loopback port of the demo's consortium.
    pub base_port: u16,
}

/// A job's outcome at the hospitals: the job, each hospital's contribution, the result table.
type JobOutcome = (JobId, Vec<Contribution>, Vec<(String, i64)>);

struct Patient {
    key: Keypair,
    id: PatientId,
    hospital: usize,
}

/// The study's question as a federated query specification: persons with type 2 diabetes
/// (SNOMED 44054006) and an HbA1c (LOINC 4548-4) of at least 6.5 % by the index date, counted by
/// sex and age band. Each hospital compiles it to SQL locally and runs it over its consenting
/// patients only.
const STUDY_SPEC: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"measurement":{"code":"4548-4","op":">=","value":6.5},"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;

/// Deterministic X25519 secret of a devnet member (its public key is in the genesis).
pub fn agreement_secret(seed: u64, member: &str) -> x25519_dalek::StaticSecret {
    x25519_dalek::StaticSecret::from(
        Hash::of(&[
            b"medspace/devnet/agreement",
            &seed.to_be_bytes(),
            member.as_bytes(),
        ])
        .0,
    )
}

fn step(n: &mut usize, text: &str) {
    *n += 1;
    println!("\n[{n}] {text}");
}

fn created(r: &medspace_state::Receipt) -> anyhow::Result<&Created> {
    r.created
        .as_ref()
        .context("the transaction created nothing")
}

/// Runs the demo and prints what happens.
pub fn run(opts: &DemoOptions) -> anyhow::Result<()> {
    let mut n = 0;
    println!(
        "medspace demo: a local consortium of real nodes under {}",
        opts.dir.display()
    );
    if opts.dir.exists() {
        std::fs::remove_dir_all(&opts.dir)
            .with_context(|| format!("cannot clear {}", opts.dir.display()))?;
    }
    step(
        &mut n,
        "each hospital fills its vault (the data never leaves it); the consortium's nodes start",
    );
    let mut net = Devnet::start(
        &opts.dir,
        &DevnetOptions {
            seed: opts.seed,
            patients: opts.patients,
            fhir: opts.fhir.clone(),
            base_port: opts.base_port,
        },
    )?;
    for name in net.node_names() {
        let role = if net.is_observer(&name) {
            "observer (follows and verifies every block)"
        } else {
            "validator"
        };
        println!(
            "    {name:<12} http://{:<17} {role}",
            net.http(&name).map(|a| a.to_string()).unwrap_or_default()
        );
    }
    let mut ledger = net.client()?;
    let outcome = story(&net, &mut ledger, opts, &mut n);
    // Let the regulator's observer verify everything the demo did before the nodes stop.
    if outcome.is_ok() {
        net.wait_observer(ledger.height(), std::time::Duration::from_secs(60))?;
    }
    println!("\nstopping the nodes…");
    net.stop();
    outcome?;
    step(
        &mut n,
        "audit: each stored chain re-verified from genesis (certificates, links, re-execution)",
    );
    for name in ["hospital-a", devnet::OBSERVER] {
        let report = medspace_node::audit(&net.config(name)).map_err(anyhow::Error::msg)?;
        match &report.fault {
            None => println!(
                "    {name:<12} {} blocks verified, state root {}",
                report.verified_height,
                Hash(report.root)
            ),
            Some((h, why)) => bail!("audit of {name} failed at height {h}: {why}"),
        }
    }
    Ok(())
}

fn story(
    net: &Devnet,
    ledger: &mut Remote,
    opts: &DemoOptions,
    n: &mut usize,
) -> anyhow::Result<()> {
    let c = &net.consortium;
    step(
        n,
        "genesis: three hospitals, a research institute and a regulator",
    );
    for m in &c.genesis.members {
        println!(
            "    member {:<12} {:<20} credits {}",
            m.member.id, m.member.kind, m.balance
        );
    }
    for u in &c.genesis.users {
        println!("    user   {:<30} {}", u.id, u.role);
    }
    step(
        n,
        "each hospital publishes a catalog entry through consensus (description only, no data)",
    );
    devnet::publish_catalogs(net, ledger, |member, d, rows| {
        println!(
            "    {member:<12} {} persons, {} FHIR resources -> {rows} CDM rows; published {member}.cdm",
            d.persons, d.resources
        );
    })?;
    println!(
        "    finalized at height {}, state root {}",
        ledger.height(),
        ledger.state().root()
    );
    let nodes = &net.hospitals;

    step(
        n,
        "patients register their keys, hospitals link them to their records, patients consent",
    );
    let mut patients = Vec::new();
    for (hi, node) in nodes.iter().enumerate() {
        for p in &node.patients {
            ledger.submit(&p.key, Payload::RegisterPatient(RegisterPatient {}))?;
            patients.push(Patient {
                key: p.key.clone(),
                id: p.id,
                hospital: hi,
            });
        }
    }
    ledger.must_block()?;
    let study = StudyId::new("diabetes-outcomes-2026")?;
    let (mut allow, mut deny, mut study_decline) = (0, 0, 0);
    for (i, p) in patients.iter().enumerate() {
        // Most patients allow research; some deny; some accept research in general but
        // decline this one study (dynamic secondary consent).
        let decision = if i % 7 == 3 {
            Decision::Deny
        } else {
            Decision::Allow
        };
        ledger.submit(
            &p.key,
            Payload::SetConsent(SetConsent {
                purpose: Purpose::Research,
                study: None,
                decision,
                l4_opt_in: false,
            }),
        )?;
        if decision == Decision::Allow {
            allow += 1;
        } else {
            deny += 1;
        }
        if i % 11 == 5 && decision == Decision::Allow {
            ledger.submit(
                &p.key,
                Payload::SetConsent(SetConsent {
                    purpose: Purpose::Research,
                    study: Some(study.clone()),
                    decision: Decision::Deny,
                    l4_opt_in: false,
                }),
            )?;
            study_decline += 1;
        }
    }
    ledger.must_block()?;
    println!(
        "    {} patients: {allow} allow research, {deny} deny, {study_decline} decline study `{study}`",
        patients.len()
    );

    step(
        n,
        "a researcher asks for an L3 research contract over the three hospitals",
    );
    let researcher = c.user_key("research-1.researcher")?;
    let (_, validated) = medspace_privacy::query::parse(STUDY_SPEC)?;
    let mut fields = Vec::new();
    for h in HOSPITALS {
        for (t, f) in validated
            .reads
            .iter()
            .chain([("person", "person_id")].iter())
        {
            fields.push(FieldRef {
                dataset: DatasetId::new(&format!("{h}.cdm"))?,
                table: Text::new(*t)?,
                field: Text::new(*f)?,
            });
        }
    }
    let query = STUDY_SPEC.as_bytes();
    let r = ledger.must(
        researcher,
        Payload::SubmitRequest(SubmitRequest {
            purpose: Purpose::Research,
            mode: Mode::Compute,
            study: Some(study.clone()),
            fields: List::new(fields)?,
            computation: Blob::new(query.to_vec())?,
            expiry_ms: ledger.time_ms() + 90 * 24 * 3600 * 1000,
            epsilon_budget: 1_000_000,
            fee: 900,
        }),
    )?;
    let Created::Contract(contract) = *created(&r)? else {
        bail!("expected a contract")
    };
    let rec = ledger
        .state()
        .contract(contract)?
        .context("contract missing")?;
    println!(
        "    contract {contract}: level {}, status {}, fee 900 credits in escrow, budget ε=1.0",
        rec.level, rec.status
    );
    for a in rec.approvals.iter() {
        println!(
            "      needs {:<17} {}",
            a.role.as_str(),
            a.member
                .as_ref()
                .map_or("(consortium)".to_string(), |m| format!("of {m}"))
        );
    }

    step(
        n,
        "reviewers approve: each hospital's steward, the data committee, the ethics committee",
    );
    for u in [
        "hospital-a.steward",
        "hospital-b.steward",
        "hospital-c.steward",
        "hospital-a.data-committee",
        "hospital-b.ethics-committee",
    ] {
        let waiting = ledger
            .state()
            .approvals_waiting_for(&UserId::new(u)?, ledger.time_ms())?;
        let r = ledger.must(c.user_key(u)?, Payload::Approve(Approve { contract }))?;
        let activated = r
            .events
            .iter()
            .any(|e| matches!(e, Event::ContractActivated(_)));
        println!(
            "    {u:<28} approves ({} waiting for them){}",
            waiting.len(),
            if activated { " -> contract ACTIVE" } else { "" }
        );
    }

    step(
        n,
        "the researcher runs a job; each hospital checks contract and consent at the job's block and computes locally",
    );
    let k = ledger.state().policy()?.min_cell_k;
    let secrets: Vec<x25519_dalek::StaticSecret> = nodes
        .iter()
        .map(|n| agreement_secret(opts.seed, &n.member))
        .collect();
    let peers: Vec<x25519_dalek::PublicKey> =
        secrets.iter().map(x25519_dalek::PublicKey::from).collect();
    let spec = medspace_privacy::query::parse(STUDY_SPEC)?.0;
    let run_job = |ledger: &mut Remote, eps: u64| -> anyhow::Result<JobOutcome> {
        let r = ledger.must(
            researcher,
            Payload::SubmitJob(SubmitJob {
                contract,
                computation: Blob::new(query.to_vec())?,
                epsilon: eps,
            }),
        )?;
        let Created::Job(job) = *created(&r)? else {
            bail!("expected a job")
        };
        let mut contributions = Vec::new();
        let mut shares = Vec::new();
        let mut rng = medspace_privacy::dp::os_rng()?;
        for (i, node) in nodes.iter().enumerate() {
            let member = MemberId::new(&node.member)?;
            let links = medspace_compute::Links::load(&node.dir)?;
            let keys = medspace_compute::federated::SiteKeys {
                me: i,
                secret: &secrets[i],
                peers: &peers,
            };
            let share = medspace_compute::federated::run_site(
                ledger.state(),
                job,
                &member,
                &node.dir,
                &links,
                &keys,
                medspace_compute::federated::Protection::Full { k },
                &mut rng,
            )?;
            println!(
                "    {:<12} {} of {} linked patients consent; sends a masked vector of {} cells (first word {:016x}…)",
                node.member,
                share.cohort,
                node.patients.len(),
                share.masked.len(),
                share.masked.first().copied().unwrap_or(0)
            );
            contributions.push(Contribution {
                member,
                records: share.cohort,
            });
            shares.push(share.masked);
        }
        let cells = medspace_compute::federated::release(
            &spec,
            &shares,
            &[],
            medspace_compute::federated::Protection::Full { k },
        )?;
        let table = cells
            .iter()
            .map(|c| {
                (
                    medspace_compute::federated::group_label(&c.group),
                    c.n.unwrap_or(-1),
                )
            })
            .collect();
        Ok((job, contributions, table))
    };
    let (job, contributions, table) = run_job(ledger, 500_000)?;
    println!(
        "    aggregator sums the shares (masks cancel), suppresses cells below k={k}; released to the researcher:"
    );
    for (g, v) in &table {
        if *v < 0 {
            println!("      {g:<8} suppressed (< {k})");
        } else {
            println!("      {g:<8} {v:>6}   (discrete Laplace noise, ε=0.5)");
        }
    }
    let result_hash = Hash::of(&[b"medspace/result/v1", format!("{table:?}").as_bytes()]);
    ledger.must(
        c.member_key("hospital-a")?,
        Payload::PostResult(PostResult {
            job,
            result_hash,
            epsilon_spent: 500_000,
            contributions: List::new(contributions.clone())?,
        }),
    )?;
    println!(
        "    result posted on the ledger: hash {result_hash}, ε spent 0.5, ε left {:.1}",
        ledger.state().budget_left(contract)?.unwrap_or(0) as f64 / 1e6
    );

    step(
        n,
        "a patient revokes research consent; the next job no longer counts them",
    );
    let leaver = patients
        .iter()
        .find(|p| {
            p.hospital == 0
                && ledger
                    .state()
                    .consent_allows(
                        &p.id,
                        Purpose::Research,
                        Some(&study),
                        Level::L3,
                        ledger.height(),
                    )
                    .unwrap_or(false)
        })
        .context("no consenting patient")?;
    ledger.must(
        &leaver.key,
        Payload::RevokeConsent(RevokeConsent {
            purpose: Purpose::Research,
            study: None,
        }),
    )?;
    let (job2, contributions2, table2) = run_job(ledger, 400_000)?;
    println!(
        "    hospital-a cohort: {} -> {}",
        contributions.first().map_or(0, |c| c.records),
        contributions2.first().map_or(0, |c| c.records)
    );
    let result_hash2 = Hash::of(&[b"medspace/result/v1", format!("{table2:?}").as_bytes()]);
    ledger.must(
        c.member_key("hospital-a")?,
        Payload::PostResult(PostResult {
            job: job2,
            result_hash: result_hash2,
            epsilon_spent: 400_000,
            contributions: List::new(contributions2)?,
        }),
    )?;
    match ledger.attempt(
        researcher,
        Payload::SubmitJob(SubmitJob {
            contract,
            computation: Blob::new(query.to_vec())?,
            epsilon: 200_000,
        }),
    )? {
        Err(e) => println!(
            "    a third job asking ε=0.2 is refused by the validators (it never enters a block): {e}"
        ),
        Ok(_) => bail!("a job over budget was accepted"),
    }

    step(
        n,
        "data follows the patient: a grant, a record-level delivery, and its audit record",
    );
    let patient = patients
        .iter()
        .find(|p| p.hospital == 0)
        .context("no patient")?;
    let code = "K7Q2-M9XD-4HTR-P8WC";
    let r = ledger.must(
        &patient.key,
        Payload::IssueGrant(IssueGrant {
            grantee: MemberId::new("hospital-b")?,
            holder: MemberId::new("hospital-a")?,
            purpose: Purpose::Treatment,
            resource_types: List::new(vec![
                Text::new("Condition")?,
                Text::new("Observation")?,
                Text::new("MedicationRequest")?,
            ])?,
            period_from_ms: 0,
            period_to_ms: ledger.time_ms(),
            expiry_ms: ledger.time_ms() + 7 * 24 * 3600 * 1000,
            max_uses: 1,
            code_hash: code_hash(&patient.id, code),
        }),
    )?;
    let Created::Grant(grant) = *created(&r)? else {
        bail!("expected a grant")
    };
    println!(
        "    patient issues grant {grant} to hospital-b (the code is handed over off-ledger; only its hash is on the ledger)"
    );
    let delivered = Hash::of(&[b"demo-bundle", &patient.id.0]);
    ledger.must(
        c.member_key("hospital-a")?,
        Payload::RecordAccess(RecordAccess {
            patient: patient.id,
            recipient: MemberId::new("hospital-b")?,
            basis: AccessBasis::Grant(grant),
            resource_types: List::new(vec![Text::new("Condition")?, Text::new("Observation")?])?,
            resource_count: 42,
            content_hash: delivered,
        }),
    )?;
    println!(
        "    hospital-a delivers the granted resources to hospital-b and records the access (hash {delivered})"
    );

    step(
        n,
        "the patient lists who used their data, each entry proven against the state root",
    );
    let root = ledger.state().root();
    for entry in ledger.state().patient_log(&patient.id)? {
        entry
            .verify(&root)
            .context("a log entry failed its proof")?;
        let what = match &entry.record.event {
            PatientEvent::Consent(c) => format!(
                "consent {} {} {}",
                c.purpose,
                c.study
                    .as_ref()
                    .map_or("(all studies)".into(), |s| s.to_string()),
                c.state
            ),
            PatientEvent::GrantIssued(g) => format!("grant {g} issued"),
            PatientEvent::GrantRevoked(g) => format!("grant {g} revoked"),
            PatientEvent::Accessed(a) => {
                let rec = ledger.state().access(*a)?.context("access missing")?;
                format!(
                    "records delivered by {} to {} under {:?}",
                    rec.holder, rec.recipient, rec.basis
                )
            }
            PatientEvent::Destroyed(a) => format!("copy of {a} destroyed"),
        };
        println!(
            "    height {:>3}  {what}  [proof ✓ {} steps]",
            entry.record.height,
            entry.proof.path.len()
        );
    }
    let jobs = ledger
        .state()
        .jobs()?
        .into_iter()
        .filter(|j| j.contract == contract)
        .count();
    println!(
        "    contract {contract}: {jobs} aggregate jobs over consenting patients of the three hospitals"
    );

    step(
        n,
        "the contract is settled: the fee is split among the hospitals by contribution",
    );
    let r = ledger.must(researcher, Payload::Settle(Settle { contract }))?;
    for e in &r.events {
        if let Event::Settled { payouts, .. } = e {
            for (m, amount) in payouts {
                println!(
                    "    {m:<12} +{amount} credits (balance {})",
                    ledger.state().balance(m)?
                );
            }
        }
    }
    println!(
        "    credits in the system: {} (unchanged since genesis)",
        ledger.state().total_credits()?
    );

    println!(
        "\nfinal height {}, {} records, state root {}",
        ledger.height(),
        ledger.state().len(),
        ledger.state().root()
    );
    Ok(())
}
