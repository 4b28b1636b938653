//! `medspace demo`: the whole story on an in-process ledger, step by step.

use crate::consortium::{Consortium, HOSPITALS, cdm_description};
use crate::local::Local;
use anyhow::{Context, bail};
use medspace_state::{Created, Event, records::PatientEvent};
use medspace_types::*;

/// Options of the demo.
pub struct DemoOptions {
    /// Patients per hospital.
    pub patients: usize,
    /// Seed of every key and choice.
    pub seed: u64,
}

struct Patient {
    key: Keypair,
    id: PatientId,
    hospital: usize,
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
    let t0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z, the devnet's genesis time
    let c = Consortium::default_devnet(opts.seed, t0)?;
    let mut ledger = Local::new(&c.genesis)?;
    let mut n = 0;
    println!(
        "medspace demo: an in-process consortium ledger (same state machine the chain replicates)"
    );

    step(
        &mut n,
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
    println!("    state root {}", ledger.state.root());

    step(
        &mut n,
        "each hospital publishes its dataset in the catalog (description only, never data)",
    );
    for h in HOSPITALS {
        let desc = cdm_description(
            h,
            opts.patients as u64,
            1,
            Hash::of(&[b"demo-content", h.as_bytes()]),
        )?;
        let tables = desc.tables.len();
        ledger.submit(
            c.user_key(&format!("{h}.steward"))?,
            Payload::PublishDataset(PublishDataset { dataset: desc }),
        )?;
        println!(
            "    {h}.cdm: {tables} tables, field levels L2..L4, {} persons",
            opts.patients
        );
    }
    ledger.must_block(1000)?;

    step(&mut n, "patients register their keys and set their consent");
    let mut patients = Vec::new();
    for (hi, _) in HOSPITALS.iter().enumerate() {
        for i in 0..opts.patients {
            let key = Keypair::from_seed(
                opts.seed.wrapping_mul(1_000_003) + 10_000 + (hi * 100_000 + i) as u64,
            );
            let id = PatientId::from_key(&key.public());
            ledger.submit(&key, Payload::RegisterPatient(RegisterPatient {}))?;
            patients.push(Patient {
                key,
                id,
                hospital: hi,
            });
        }
    }
    ledger.must_block(1000)?;
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
    ledger.must_block(1000)?;
    println!(
        "    {} patients: {allow} allow research, {deny} deny, {study_decline} decline study `{study}`",
        patients.len()
    );

    step(
        &mut n,
        "a researcher asks for an L3 research contract over the three hospitals",
    );
    let researcher = c.user_key("research-1.researcher")?;
    let mut fields = Vec::new();
    for h in HOSPITALS {
        for (t, f) in [
            ("person", "gender_source_value"),
            ("person", "year_of_birth"),
            ("condition_occurrence", "condition_source_value"),
            ("measurement", "value_as_number"),
        ] {
            fields.push(FieldRef {
                dataset: DatasetId::new(&format!("{h}.cdm"))?,
                table: Text::new(t)?,
                field: Text::new(f)?,
            });
        }
    }
    let query = br#"{"version":1,"cohort":{"conditions":["44054006"]},"aggregates":[{"count":{}}],"group_by":["sex"]}"#;
    let r = ledger.must(
        researcher,
        Payload::SubmitRequest(SubmitRequest {
            purpose: Purpose::Research,
            mode: Mode::Compute,
            study: Some(study.clone()),
            fields: List::new(fields)?,
            computation: Blob::new(query.to_vec())?,
            expiry_ms: ledger.time_ms + 90 * 24 * 3600 * 1000,
            epsilon_budget: 1_000_000,
            fee: 900,
        }),
    )?;
    let Created::Contract(contract) = *created(&r)? else {
        bail!("expected a contract")
    };
    let rec = ledger
        .state
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
        &mut n,
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
            .state
            .approvals_waiting_for(&UserId::new(u)?, ledger.time_ms)?;
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
        &mut n,
        "the researcher runs a job; each hospital checks consent at the job's block and contributes",
    );
    let job_count = |ledger: &mut Local, eps: u64| -> anyhow::Result<(JobId, Vec<Contribution>)> {
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
        let height = ledger
            .state
            .job(job)?
            .context("job missing")?
            .submitted_height;
        let mut contributions = Vec::new();
        for (hi, h) in HOSPITALS.iter().enumerate() {
            let mut count = 0u64;
            for p in patients.iter().filter(|p| p.hospital == hi) {
                if ledger.state.consent_allows(
                    &p.id,
                    Purpose::Research,
                    Some(&study),
                    Level::L3,
                    height,
                )? {
                    count += 1;
                }
            }
            contributions.push(Contribution {
                member: MemberId::new(h)?,
                records: count,
            });
        }
        Ok((job, contributions))
    };
    let (job, contributions) = job_count(&mut ledger, 500_000)?;
    for cb in &contributions {
        println!(
            "    {:<12} {} consenting patients in the cohort",
            cb.member, cb.records
        );
    }
    let result_hash = Hash::of(&[b"demo-result", &job.0.to_be_bytes()]);
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
        "    result posted: hash {}, ε spent 0.5, ε left {:.1}",
        result_hash,
        ledger.state.budget_left(contract)?.unwrap_or(0) as f64 / 1e6
    );

    step(
        &mut n,
        "a patient revokes research consent; the next job no longer counts them",
    );
    let leaver = patients
        .iter()
        .find(|p| {
            p.hospital == 0
                && ledger
                    .state
                    .consent_allows(
                        &p.id,
                        Purpose::Research,
                        Some(&study),
                        Level::L3,
                        ledger.height,
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
    let (job2, contributions2) = job_count(&mut ledger, 400_000)?;
    println!(
        "    hospital-a cohort: {} -> {}",
        contributions.first().map_or(0, |c| c.records),
        contributions2.first().map_or(0, |c| c.records)
    );
    ledger.must(
        c.member_key("hospital-a")?,
        Payload::PostResult(PostResult {
            job: job2,
            result_hash: Hash::of(&[b"demo-result", &job2.0.to_be_bytes()]),
            epsilon_spent: 400_000,
            contributions: List::new(contributions2)?,
        }),
    )?;
    let over = ledger.sign(
        researcher,
        Payload::SubmitJob(SubmitJob {
            contract,
            computation: Blob::new(query.to_vec())?,
            epsilon: 200_000,
        }),
    )?;
    let mut probe = ledger.state.clone();
    let refused = probe.apply(
        &over,
        &medspace_state::BlockContext {
            height: ledger.height + 1,
            time_ms: ledger.time_ms + 1000,
        },
    );
    match refused {
        Err(e) => println!("    a third job asking ε=0.2 is refused: {e}"),
        Ok(_) => bail!("a job over budget was accepted"),
    }

    step(
        &mut n,
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
            period_to_ms: ledger.time_ms,
            expiry_ms: ledger.time_ms + 7 * 24 * 3600 * 1000,
            max_uses: 1,
            code_hash: code_hash(&patient.id, code),
        }),
    )?;
    let Created::Grant(grant) = *created(&r)? else {
        bail!("expected a grant")
    };
    println!(
        "    patient issues grant {grant} to hospital-b (code handed over off-ledger; only its hash is on the ledger)"
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
        "    hospital-a delivers 42 resources to hospital-b and records the access (hash {delivered})"
    );

    step(
        &mut n,
        "the patient lists who used their data, each entry proven against the state root",
    );
    let root = ledger.state.root();
    for entry in ledger.state.patient_log(&patient.id)? {
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
                let rec = ledger.state.access(*a)?.context("access missing")?;
                format!(
                    "{} resources delivered by {} to {} under {:?}",
                    rec.resource_count, rec.holder, rec.recipient, rec.basis
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
    let jobs_with_me: Vec<_> = ledger
        .state
        .jobs()?
        .into_iter()
        .filter(|j| j.contract == contract)
        .collect();
    println!(
        "    contract {contract} ran {} aggregate jobs over hospital-a's consenting patients",
        jobs_with_me.len()
    );

    step(
        &mut n,
        "the contract is settled: the fee is split among the hospitals by contribution",
    );
    let r = ledger.must(researcher, Payload::Settle(Settle { contract }))?;
    for e in &r.events {
        if let Event::Settled { payouts, .. } = e {
            for (m, amount) in payouts {
                println!(
                    "    {m:<12} +{amount} credits (balance {})",
                    ledger.state.balance(m)?
                );
            }
        }
    }
    println!(
        "    credits in the system: {} (unchanged since genesis)",
        ledger.state.total_credits()?
    );

    println!(
        "\nfinal height {}, {} records, state root {}",
        ledger.height,
        ledger.state.len(),
        ledger.state.root()
    );
    Ok(())
}
