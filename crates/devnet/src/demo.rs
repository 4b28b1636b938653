//! `medspace demo`: the whole story on a real local consortium, step by step — the devnet's
//! node processes (five validators and the regulator's observer, over loopback TCP) and each
//! hospital's and the insurer's real vault (FHIR ingested into CDM tables, queried with DataFusion inside the
//! hospital). Every transaction goes through consensus; the demo acts on the state it verified
//! itself from finalized blocks.

use crate::devnet::{self, Devnet, DevnetOptions};
use crate::{Context, Result, fail};
use medspace_client::Remote;
use medspace_client::records::GrantTerms;
use medspace_client::study;
use medspace_consortium::HOSPITALS;
use medspace_state::{Created, Event};
use medspace_types::*;

/// Options of the demo.
pub struct DemoOptions {
    /// Where the consortium's node directories go (recreated on every run).
    pub dir: std::path::PathBuf,
    /// The consortium (seed of every key and choice, its patients, its ports).
    pub net: DevnetOptions,
}

struct Patient {
    key: Keypair,
    id: PatientId,
    hospital: usize,
}

/// The model study: the odds of hypertension by age, sex and BMI (its latest value before the
/// index date), a logistic regression fitted inside the hospitals.
pub const MODEL_SPEC: &str = r#"{"version":1,"cohort":{"age":{"min":18,"max":100},"index_date":"2025-01-01"},"aggregate":{"model":{"family":"logistic","outcome":{"condition":"38341003"},"covariates":["age","female",{"measurement":{"code":"39156-5","lower":12,"upper":60}}]}}}"#;
/// The survival study: time from 2020 to death over five years, by sex, in 30-day bins.
pub const SURVIVAL_SPEC: &str = r#"{"version":1,"cohort":{"index_date":"2020-01-01"},"group_by":["sex"],"aggregate":{"survival":{"event":"death","horizon_days":1825,"bin_days":30}}}"#;

/// The vertical study: the hospitals' adults split by a diabetes diagnosis before 2024, joined
/// with insurer-1's claims over 2024 (claims and amount paid per person). Exact values at
/// devnet scale (a cell below k withheld); `"dp": true` noises them at every side.
pub const VERTICAL_SPEC: &str = r#"{"version":1,"cohort":{"age":{"min":18,"max":100},"index_date":"2024-01-01"},"aggregate":{"claims":{"days":366,"max_claims":200,"max_paid":200000,"compare":{"name":"diabetes","codes":["44054006"]},"dp":false}}}"#;

/// How many adult patients each pair of hospitals both hold (a cardinality-only private set
/// intersection; exact at devnet scale, counts below k withheld).
pub const OVERLAP_SPEC: &str = r#"{"version":1,"cohort":{"age":{"min":18,"max":100},"index_date":"2025-01-01"},"aggregate":{"overlap":{"dp":false}}}"#;

/// The study's question as a federated query specification: persons with type 2 diabetes
/// (SNOMED 44054006) and an HbA1c (LOINC 4548-4) of at least 6.5 % by the index date, counted by
/// sex and age band. Each hospital compiles it to SQL locally and runs it over its consenting
/// patients only.
pub const STUDY_SPEC: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"measurement":{"code":"4548-4","op":">=","value":6.5},"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;

/// The open pool's release: persons by birth-year band, sex, race, ethnicity and the first
/// three characters of their postal code (the quasi-identifiers), their principal condition as the sensitive attribute, k = 5 and l = 2
/// with at most a fifth suppressed; conditions, visits and measurements with every date shifted
/// by up to 30 days per person.
pub const RELEASE_SPEC: &str = r#"{"version":1,"dataset":"hospital-a.cdm","tables":{"condition_occurrence":["condition_concept_id","condition_start_date","condition_source_value"],"visit_occurrence":["visit_concept_id","visit_start_date","visit_end_date"],"measurement":["measurement_source_value","measurement_date","value_as_number","unit_source_value"]},"quasi_identifiers":[{"field":"year_of_birth","hierarchy":{"kind":"interval","widths":[5,10,20,40]}},{"field":"gender","hierarchy":{"kind":"suppress"}},{"field":"race","hierarchy":{"kind":"suppress"}},{"field":"ethnicity","hierarchy":{"kind":"suppress"}},{"field":"zip","hierarchy":{"kind":"prefix","keep":[1]}}],"sensitive":["condition"],"k":5,"l":{"distinct":2},"max_suppression":0.2,"dates":{"shift_days":30}}"#;

fn step(n: &mut usize, text: &str) {
    *n += 1;
    println!("\n[{n}] {text}");
}

fn created(r: &medspace_state::Receipt) -> Result<&Created> {
    r.created
        .as_ref()
        .context("the transaction created nothing")
}

/// Runs the demo and prints what happens.
pub fn run(opts: &DemoOptions) -> Result<()> {
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
    let mut net = Devnet::start(&opts.dir, &opts.net)?;
    for name in net.node_names() {
        let role = if net.is_observer(&name) {
            "observer (follows and verifies every block)"
        } else {
            "validator"
        };
        println!(
            "    {name:<12} {:<24} {role}",
            net.url(&name).unwrap_or_default()
        );
    }
    println!(
        "    the console (patient portal): {}",
        net.console_url("hospital-a").unwrap_or_default()
    );
    if !opts.net.plain_http {
        println!(
            "    every HTTP API speaks TLS 1.3 with the certificate its node's genesis entry pins (clients trust those, no CA); the validators' consensus traffic is commonware-p2p, authenticated and encrypted with their ed25519 keys"
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
        let report = medspace_ledger::audit(&net.config(name)).context("audit")?;
        match &report.fault {
            None => println!(
                "    {name:<12} {} blocks verified, state root {}",
                report.verified_height,
                Hash(report.root)
            ),
            Some((h, why)) => fail!("audit of {name} failed at height {h}: {why}"),
        }
    }
    Ok(())
}

/// A logistic regression and Kaplan–Meier curves, each under its own approved contract: the
/// hospitals compute on their consenting patients and only masked statistics leave.
fn model_studies(
    ledger: &mut Remote,
    c: &medspace_consortium::Consortium,
    researcher: &Keypair,
    study: &StudyId,
    opts: &DemoOptions,
    n: &mut usize,
) -> Result<()> {
    step(
        n,
        "models run inside the hospitals: a logistic regression (many masked rounds) and survival curves",
    );
    for (what, spec, file) in [
        (
            "hypertension ~ age + female + BMI (logistic)",
            MODEL_SPEC,
            "study-model.svg",
        ),
        (
            "survival from 2020 to death by sex (Kaplan-Meier)",
            SURVIVAL_SPEC,
            "study-survival.svg",
        ),
    ] {
        let contract = study::propose(
            ledger,
            researcher,
            &study::Proposal {
                spec_json: spec,
                hospitals: &HOSPITALS,
                purpose: Purpose::Research,
                study: Some(study.clone()),
                budget_micro: 1_000_000,
                days: 90,
                fee: 0,
            },
        )?;
        let approvers = study::approve_all(ledger, c, contract)?;
        let run = study::run_job(
            ledger,
            researcher,
            contract,
            spec.as_bytes(),
            150_000,
            std::time::Duration::from_secs(180),
        )?;
        println!(
            "    {what}: contract {contract} approved by {} reviewers; job {} released by {} in {:.1} s, its hash on the ledger",
            approvers.len(),
            run.job,
            run.result.aggregator,
            run.latency.as_secs_f64()
        );
        // A model that cannot be fitted on these patients (too few rows at a site, a
        // separated outcome) releases nothing and says why; the story goes on.
        for l in study::result_lines(&run.result) {
            println!("      {l}");
        }
        let chart = opts.dir.join(file);
        std::fs::write(&chart, study::chart_svg(&run.result, what))
            .with_context(|| format!("writing {}", chart.display()))?;
        println!("    chart: {}", chart.display());
    }
    Ok(())
}

/// A vertical study: hospital-a's clinical cohort joined with insurer-1's claims on the
/// patients both hold, without either seeing the other's records.
fn vertical_study(
    ledger: &mut Remote,
    c: &medspace_consortium::Consortium,
    researcher: &Keypair,
    study: &StudyId,
    opts: &DemoOptions,
    n: &mut usize,
) -> Result<()> {
    step(
        n,
        "a vertical study: the hospitals' diabetes diagnoses joined with insurer-1's claims on the patients both hold (private set intersection; each hospital sums the insurer's encrypted values, the insurer opens only the total)",
    );
    let holders = [
        HOSPITALS[0],
        HOSPITALS[1],
        HOSPITALS[2],
        crate::hospitals::INSURER,
    ];
    let contract = study::propose(
        ledger,
        researcher,
        &study::Proposal {
            spec_json: VERTICAL_SPEC,
            hospitals: &holders,
            purpose: Purpose::Research,
            study: Some(study.clone()),
            budget_micro: 1_000_000,
            days: 90,
            fee: 0,
        },
    )?;
    let approvers = study::approve_all(ledger, c, contract)?;
    let run = study::run_job(
        ledger,
        researcher,
        contract,
        VERTICAL_SPEC.as_bytes(),
        200_000,
        std::time::Duration::from_secs(180),
    )?;
    println!(
        "    contract {contract} over the three hospitals and {} approved by {} reviewers; job {} released by {} in {:.1} s, its hash on the ledger",
        crate::hospitals::INSURER,
        approvers.len(),
        run.job,
        run.result.aggregator,
        run.latency.as_secs_f64()
    );
    for l in study::result_lines(&run.result) {
        println!("      {l}");
    }
    if let Some(v) = &run.result.vertical {
        let per_claim = |i: usize| {
            v.cells
                .get(i)
                .and_then(|c| Some(c.values.paid_mean? / c.values.claims_mean?))
        };
        if let (Some(with), Some(without)) = (per_claim(0), per_claim(1)) {
            println!(
                "    paid per claim: {with:.0} with diabetes, {without:.0} without ({:.2}x; the generator's known factor is {}x)",
                with / without,
                medspace_synth::claims::DIABETES_COST_FACTOR
            );
        }
    }
    let chart = opts.dir.join("study-vertical.svg");
    std::fs::write(
        &chart,
        study::chart_svg(&run.result, "paid per person in 2024, by diabetes"),
    )
    .with_context(|| format!("writing {}", chart.display()))?;
    println!("    chart: {}", chart.display());
    step(
        n,
        "how many patients do the hospitals share? a cardinality-only private set intersection between each pair, registered on the ledger like any job",
    );
    let contract = study::propose(
        ledger,
        researcher,
        &study::Proposal {
            spec_json: OVERLAP_SPEC,
            hospitals: &HOSPITALS,
            purpose: Purpose::Research,
            study: Some(study.clone()),
            budget_micro: 1_000_000,
            days: 90,
            fee: 0,
        },
    )?;
    study::approve_all(ledger, c, contract)?;
    let overlap = study::run_job(
        ledger,
        researcher,
        contract,
        OVERLAP_SPEC.as_bytes(),
        100_000,
        std::time::Duration::from_secs(180),
    )?;
    println!(
        "    job {} released by {} in {:.1} s: each later hospital learned only the size of its intersection with an earlier one",
        overlap.job,
        overlap.result.aggregator,
        overlap.latency.as_secs_f64()
    );
    for l in study::result_lines(&overlap.result) {
        println!("      {l}");
    }
    Ok(())
}

fn story(net: &Devnet, ledger: &mut Remote, opts: &DemoOptions, n: &mut usize) -> Result<()> {
    let c = &net.consortium;
    step(
        n,
        "genesis: three hospitals, a research institute, a regulator, an insurer, a public-health agency and a pharma company",
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
    let mut batch = Vec::new();
    for (hi, member, p) in crate::hospitals::distinct_patients(nodes) {
        let reg = net
            .consortium
            .patient_registration(member, &p.key.public())?;
        batch.push((&p.key, Payload::RegisterPatient(reg)));
        patients.push(Patient {
            key: p.key.clone(),
            id: p.id,
            hospital: hi,
        });
    }
    ledger.submit_many(batch)?;
    ledger.must_block()?;
    let study = StudyId::new("diabetes-outcomes-2026")?;
    let (mut allow, mut deny, mut study_decline) = (0, 0, 0);
    let mut batch = Vec::new();
    for (i, p) in patients.iter().enumerate() {
        // Most patients allow research; some deny; some accept research in general but
        // decline this one study (dynamic secondary consent).
        let decision = devnet::research_decision(i);
        batch.push((&p.key, devnet::research_consent(None, decision)));
        batch.push((&p.key, devnet::drug_safety_consent(decision)));
        if decision == Decision::Allow {
            allow += 1;
        } else {
            deny += 1;
        }
        if i % 11 == 5 && decision == Decision::Allow {
            batch.push((
                &p.key,
                devnet::research_consent(Some(study.clone()), Decision::Deny),
            ));
            study_decline += 1;
        }
    }
    ledger.submit_many(batch)?;
    ledger.must_block()?;
    println!(
        "    {} patients: {allow} allow research, {deny} deny, {study_decline} decline study `{study}`; each decides drug-safety monitoring the same way (public health needs no consent below L4)",
        patients.len()
    );

    step(
        n,
        "a researcher asks for an L3 research contract over the three hospitals",
    );
    let researcher = c.user_key("research-1.researcher")?;
    let query = STUDY_SPEC.as_bytes();
    let contract = study::propose(
        ledger,
        researcher,
        &study::Proposal {
            spec_json: STUDY_SPEC,
            hospitals: &HOSPITALS,
            purpose: Purpose::Research,
            study: Some(study.clone()),
            budget_micro: 1_000_000,
            days: 90,
            fee: 900,
        },
    )?;
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
    let run_job = |ledger: &mut Remote, eps: u64| -> Result<study::JobRun> {
        let run = study::run_job(
            ledger,
            researcher,
            contract,
            query,
            eps,
            std::time::Duration::from_secs(120),
        )?;
        println!(
            "    job {} finalized; each hospital's node saw it in a finalized block and computed its share itself",
            run.job
        );
        for (member, records) in &run.result.contributions {
            let linked = nodes
                .iter()
                .find(|h| h.member == member.as_str())
                .map_or(0, |h| h.patients.len());
            let sent = if *member == run.result.aggregator {
                "kept its own masked, noised vector (it aggregates)".to_string()
            } else {
                format!(
                    "sent only a masked, noised vector to {}",
                    run.result.aggregator
                )
            };
            println!("    {member:<12} {records} of {linked} linked patients consent; {sent}");
        }
        Ok(run)
    };
    // Each hospital releases its own noised counts, so a patient treated at all three is
    // counted three times: the ledger charges the per-site ε times three.
    let first = run_job(ledger, 150_000)?;
    let k = first.result.k;
    println!(
        "    {} summed the shares (masks cancel), suppressed cells below k={k}, posted the result on the ledger, and delivered it to the researcher alone ({:.1} s from submission):",
        first.result.aggregator,
        first.latency.as_secs_f64()
    );
    for l in study::result_lines(&first.result) {
        println!("      {l}");
    }
    let chart = opts.dir.join("study-result.svg");
    std::fs::write(
        &chart,
        study::chart_svg(
            &first.result,
            "Type 2 diabetes with HbA1c ≥ 6.5 %, three hospitals",
        ),
    )
    .with_context(|| format!("writing {}", chart.display()))?;
    println!("    chart: {}", chart.display());
    let records: usize = nodes.iter().map(|h| h.patients.len()).sum();
    println!(
        "    counted once: {} patients are held by two hospitals; before computing, each hospital ran a private set intersection (ECDH, ristretto255) of its consenting patients' pseudonyms with the hospitals before it and left out those they hold, learning nothing of the others",
        records.saturating_sub(patients.len())
    );
    println!(
        "    on the ledger: result hash {} (matches what was delivered), ε 0.15 per hospital charged {:.2} (the ledger cannot see where a patient counts, so it charges as if at all three), ε left {:.2}",
        first.record.result_hash,
        first.record.epsilon_spent as f64 / 1e6,
        ledger.state().budget_left(contract)?.unwrap_or(0) as f64 / 1e6
    );

    step(
        n,
        "a patient revokes research consent; the next job no longer counts them",
    );
    // Hospital a's own count of its consenting patients (the ledger holds only each site's
    // noised contribution, never this exact number).
    let consenting_at_a = |ledger: &Remote| {
        patients
            .iter()
            .filter(|p| {
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
            .collect::<Vec<_>>()
    };
    let consenting_before = consenting_at_a(ledger);
    let leaver = *consenting_before.first().context("no consenting patient")?;
    ledger.must(
        &leaver.key,
        Payload::RevokeConsent(RevokeConsent {
            purpose: Purpose::Research,
            study: None,
        }),
    )?;
    let second = run_job(ledger, 150_000)?;
    let cohort_a = |r: &study::JobRun| {
        r.record
            .contributions
            .iter()
            .find(|c| c.member.as_str() == "hospital-a")
            .map_or(0, |c| c.records)
    };
    println!(
        "    hospital-a consenting patients (its own count): {} -> {}",
        consenting_before.len(),
        consenting_at_a(ledger).len()
    );
    println!(
        "    on the ledger, hospital-a's contribution (the total of its noised counts): {} -> {}",
        cohort_a(&first),
        cohort_a(&second)
    );
    for l in study::result_lines(&second.result) {
        println!("      {l}");
    }
    match ledger.attempt(
        researcher,
        Payload::SubmitJob(SubmitJob {
            contract,
            computation: Blob::new(query.to_vec())?,
            epsilon: 50_000,
        }),
    )? {
        Err(e) => println!(
            "    a third job asking ε=0.05 per hospital (0.15 for three) is refused by the validators (it never enters a block): {e}"
        ),
        Ok(_) => fail!("a job over budget was accepted"),
    }

    model_studies(ledger, c, researcher, &study, opts, n)?;
    vertical_study(ledger, c, researcher, &study, opts, n)?;
    open_pool(net, ledger, researcher, opts, n)?;
    quality_governance(net, ledger, researcher, n)?;
    step(
        n,
        "public health: a standing surveillance contract, its daily windows run by the hospitals, outbreak detection, alerts on the ledger",
    );
    crate::health::demo_surveillance(ledger, c, &opts.dir)?;
    step(
        n,
        "drug safety: a disproportionality scan of new users' 2x2 tables across the hospitals",
    );
    crate::health::demo_drug_safety(ledger, c)?;

    step(
        n,
        "data follows the patient: a code for a remote consultation, redeemed node to node, recorded on the ledger",
    );
    let patient = patients
        .iter()
        .find(|p| p.hospital == 0)
        .context("no patient")?;
    let (payload, code) = GrantTerms {
        grantee: MemberId::new("hospital-b")?,
        holder: MemberId::new("hospital-a")?,
        purpose: Purpose::Treatment,
        types: ["Condition", "Observation", "MedicationRequest"]
            .map(String::from)
            .to_vec(),
        period_ms: (0, ledger.time_ms()),
        expiry_ms: ledger.time_ms() + 7 * 24 * 3600 * 1000,
        max_uses: 1,
    }
    .with_new_code(&patient.id)?;
    let r = ledger.must(&patient.key, payload)?;
    let Created::Grant(grant) = *created(&r)? else {
        fail!("expected a grant")
    };
    println!(
        "    patient issues grant {grant} to hospital-b for Condition, Observation, MedicationRequest, single use; code {} (only its hash is on the ledger)",
        code.display()
    );
    let clinician = c.user_key("hospital-b.clinician")?;
    let holder = MemberId::new("hospital-a")?;
    let redeem = |ledger: &Remote, code: &str| -> Result<(u16, Vec<u8>, f64)> {
        let t = std::time::Instant::now();
        let (status, bytes) =
            medspace_client::records::redeem_request(ledger, &holder, clinician, grant, code)?;
        Ok((status, bytes, t.elapsed().as_secs_f64() * 1000.0))
    };
    let (status, _, _) = redeem(ledger, "0000-0000-0000-0000")?;
    println!(
        "    a wrong code is refused by hospital-a's node (http {status}); nothing is delivered"
    );
    let (status, bundle, ms) = redeem(ledger, &code.display())?;
    if status != 200 {
        fail!(
            "redemption refused ({status}): {}",
            String::from_utf8_lossy(&bundle)
        );
    }
    let access = medspace_client::records::access_for(ledger, &patient.id, &bundle)?;
    println!(
        "    a clinician at hospital-b redeems it at hospital-a's node: {} resources delivered in {ms:.0} ms, after the access was final on the ledger (hash {} matches the bytes received)",
        access.resource_count, access.content_hash
    );
    let (status, _, _) = redeem(ledger, &code.display())?;
    println!("    the same code again is refused (http {status}: single use)");

    step(
        n,
        "an insurer settles a claim: the patient grants it only the Claim, ExplanationOfBenefit and Encounter of one stay",
    );
    insurer_claim(net, ledger, patient)?;
    step(
        n,
        "the patient lists who used their data, each entry proven against the state root",
    );
    for l in medspace_client::records::log(ledger.state(), &patient.id)? {
        println!(
            "    height {:>3}  {}  [proof ✓ {} steps]",
            l.height, l.what, l.proof_steps
        );
    }
    let holders = [MemberId::new("hospital-a")?];
    let counted = ledger
        .state()
        .jobs_that_may_have_counted(&patient.id, &holders)?;
    let jobs = medspace_client::records::job_lines(&ledger.state().root(), &counted)?;
    // A standing contract runs a job per window: two lines per contract, then how many more.
    let mut shown: std::collections::BTreeMap<ContractId, usize> = Default::default();
    for (l, c) in jobs.iter().zip(&counted) {
        let seen = shown.entry(c.contract.record.id).or_default();
        *seen += 1;
        if *seen <= 2 {
            println!(
                "    height {:>3}  {}  [proof ✓ {} steps]",
                l.height, l.what, l.proof_steps
            );
        }
    }
    for (c, seen) in shown.iter().filter(|(_, s)| **s > 2) {
        println!(
            "    … and {} more jobs under {c}, each proven the same way",
            seen - 2
        );
    }
    let jobs = jobs.len();
    println!(
        "    {jobs} aggregate jobs may have counted this patient (only while their consent allowed it); contract {contract} ran {} in all",
        ledger
            .state()
            .jobs()?
            .iter()
            .filter(|j| j.contract == contract)
            .count()
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

/// The open pool: hospital-a's steward releases a de-identified extract of its consenting
/// patients (the lattice search for k = 5, l = 2, the risk report, the files beside the node,
/// an L1 catalog entry with the figures and the manifest's hash); a researcher asks for it, the
/// steward approves, hospital-a's node delivers it once the delivery is on the ledger, and the
/// researcher checks every byte against the ledger and attests the copy's destruction.
fn open_pool(
    net: &Devnet,
    ledger: &mut Remote,
    researcher: &Keypair,
    opts: &DemoOptions,
    n: &mut usize,
) -> Result<()> {
    use medspace_client::openpool;
    step(
        n,
        "the open pool: hospital-a releases a k = 5, l = 2 de-identified extract; a researcher downloads it",
    );
    let h = net
        .hospitals
        .iter()
        .find(|h| h.member == "hospital-a")
        .context("no hospital-a")?;
    let spec = medspace_deid::ReleaseSpec::from_json(RELEASE_SPEC)?;
    let (source, id) = (
        DatasetId::new("hospital-a.cdm")?,
        DatasetId::new("hospital-a.open")?,
    );
    let started = std::time::Instant::now();
    let built = medspace_compute::release::build(
        medspace_compute::federated::SiteVault::embedded(&h.dir, &h.key),
        ledger.state(),
        ledger.height(),
        &medspace_compute::release::Request {
            release: &id,
            source: &source,
            spec: &spec,
            purposes: &[Purpose::Research],
            parents: &Default::default(),
        },
        &mut |_| {},
    )?;
    let r = &built.report;
    println!(
        "    {} of hospital-a's {} persons who consented to research released after a search of {} of {} generalizations ({:.2} s): {}",
        built.figures.persons,
        built.eligible,
        r.nodes_evaluated,
        r.lattice_size,
        started.elapsed().as_secs_f64(),
        r.levels
            .iter()
            .map(|l| format!("{} {}", l.field, l.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for l in openpool::figure_lines(&built.figures) {
        println!("    {l}");
    }
    let steward = net.consortium.user_key("hospital-a.steward")?;
    ledger.must(
        steward,
        Payload::PublishRelease(PublishRelease {
            dataset: built.entry.clone(),
            release: built.figures.clone(),
        }),
    )?;
    println!(
        "    published {id} in the open pool: every field L1, manifest hash {}",
        built.content_hash
    );
    let contract = openpool::request(
        ledger,
        researcher,
        std::slice::from_ref(&id),
        Purpose::Research,
        30,
        0,
    )?;
    ledger.must(steward, Payload::Approve(Approve { contract }))?;
    println!("    research-1 asks for it ({contract}); hospital-a's steward approves");
    let out = opts.dir.join("open-pool-download");
    let f = openpool::fetch(ledger, researcher, contract, &id, &out)?;
    let bytes: u64 = f.files.iter().map(|(_, b)| b).sum();
    println!(
        "    research-1 fetches it from hospital-a's node: {} files, {bytes} bytes (Parquet and CSV per table, data dictionary, risk report), each checked against the ledger's hash -> {}",
        f.files.len(),
        out.display()
    );
    let delivery = f.delivery.context("the delivery is not on the ledger")?;
    openpool::destroy(ledger, researcher, delivery)?;
    println!(
        "    the delivery {delivery} is on the ledger; research-1 attests the copy's destruction (overdue attestations would block its next requests)"
    );
    Ok(())
}

/// Data quality as governance: hospital-a's vault holds codes it could not map to standard
/// concepts (the devnet ingests without a vocabulary); a research request over them is
/// flagged with the failing check for its reviewers and waits for hospital-a's steward; the
/// steward sees the check with the codes and the fix, re-maps the vault through the OMOP
/// vocabulary (when the shared reference is beside the repository), publishes the catalog
/// entry again, and the same request is no longer flagged.
fn quality_governance(
    net: &Devnet,
    ledger: &mut Remote,
    researcher: &Keypair,
    n: &mut usize,
) -> Result<()> {
    step(
        n,
        "data quality as governance: a request over data below the consortium's floor is flagged for its reviewers; the steward fixes the data and publishes again",
    );
    let h = net
        .hospitals
        .iter()
        .find(|h| h.member == "hospital-a")
        .context("no hospital-a")?;
    let day = (medspace_consortium::GENESIS_MS / 86_400_000) as i32;
    let vocabulary = std::env::var_os("MEDSPACE_VOCAB")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain([std::path::PathBuf::from(
            "../shared/reference/omop-vocabulary-subset",
        )])
        .find(|d| d.join("CONCEPT.csv").exists())
        .map(|d| medspace_vault::Vocabulary::load(&d))
        .transpose()?
        .map(std::sync::Arc::new);
    let show_checks = |what: &str| -> Result<()> {
        let p = medspace_vault::quality::profile_node(&h.dir, &h.key, day)?;
        let unmapped = medspace_vault::checks::unmapped_codes(&h.dir, &h.key)?;
        let checks = medspace_vault::checks::checks(&p, &unmapped, vocabulary.as_deref());
        if let Some(c) = checks
            .iter()
            .find(|c| c.kind == "mapping" && c.table == "condition_occurrence")
        {
            println!(
                "    {what}: condition codes unmapped to standard concepts in {} rows ({:.1} %), e.g. {}",
                c.records,
                c.share * 100.0,
                c.codes
                    .iter()
                    .take(3)
                    .map(|x| format!("{} ({} rows)", x.code, x.rows))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        } else {
            println!("    {what}: every condition code maps to a standard concept");
        }
        Ok(())
    };
    let ask = |ledger: &mut Remote| -> Result<ContractId> {
        let r = ledger.must(
            researcher,
            Payload::SubmitRequest(SubmitRequest {
                purpose: Purpose::Research,
                mode: Mode::Compute,
                study: None,
                fields: List::new(vec![FieldRef {
                    dataset: DatasetId::new("hospital-a.cdm")?,
                    table: Text::new("condition_occurrence")?,
                    field: Text::new("condition_concept_id")?,
                }])?,
                computation: Blob::new(STUDY_SPEC.as_bytes().to_vec())?,
                expiry_ms: ledger.time_ms() + 30 * 86_400_000,
                epsilon_budget: 100_000,
                fee: 0,
            }),
        )?;
        match r.created {
            Some(Created::Contract(c)) => Ok(c),
            _ => fail!("the request created no contract"),
        }
    };
    show_checks("hospital-a's steward sees")?;
    let c = ask(ledger)?;
    let rec = ledger.state().contract(c)?.context("contract")?;
    println!("    research-1 asks for hospital-a's condition concepts ({c}); every reviewer sees:");
    for l in medspace_client::study::quality_lines(&rec) {
        println!("      {l}");
    }
    let Some(vocabulary) = vocabulary.clone() else {
        println!(
            "    (no OMOP vocabulary beside the repository: the fix is `medspace quality --node … --remap --vocab <dir>`)"
        );
        return Ok(());
    };
    let mut vault = medspace_vault::Vault::open(&h.dir, &h.key)?;
    let done = vault.remap(vocabulary, false)?;
    drop(vault);
    let remapped: u64 = done.batches.iter().map(|b| b.updated).sum();
    println!(
        "    hospital-a's steward re-maps the vault through the OMOP vocabulary: {remapped} resources mapped again (atomically, every original kept)"
    );
    show_checks("now")?;
    let vault_desc = medspace_vault::catalog::describe_node(&h.dir, &h.key, day)?;
    let desc = medspace_compute::publish::next_entry(ledger.state(), &h.member, &vault_desc)?;
    let version = desc.version;
    ledger.must(
        net.consortium.user_key("hospital-a.steward")?,
        Payload::PublishDataset(PublishDataset { dataset: desc }),
    )?;
    let c = ask(ledger)?;
    let rec = ledger.state().contract(c)?.context("contract")?;
    let lines = medspace_client::study::quality_lines(&rec);
    println!(
        "    hospital-a publishes catalog version {version}; the same request ({c}) {}",
        if lines.is_empty() {
            "meets the floor: no check to show".to_string()
        } else {
            format!("still shows: {}", lines.join("; "))
        }
    );
    Ok(())
}

/// `YYYY-MM-DD…` → ms since the epoch of that day's midnight (UTC); `None` before 1970.
fn day_start_ms(date: &str) -> Option<u64> {
    medspace_worker::records::fhir_date_ms(date).and_then(|ms| u64::try_from(ms).ok())
}

/// The insurer's use case: the patient downloads their own record, picks their latest stay,
/// and grants insurer-1 that stay's Claim, ExplanationOfBenefit and Encounter resources; the
/// insurer's claims officer redeems the code at the hospital's node and receives nothing else.
fn insurer_claim(net: &Devnet, ledger: &mut Remote, patient: &Patient) -> Result<()> {
    let c = &net.consortium;
    let holder = MemberId::new("hospital-a")?;
    let (status, bytes) = ledger.get_signed(&holder, "/v1/records/export", &patient.key)?;
    if status != 200 {
        fail!("the patient's own export failed ({status})");
    }
    let record: serde_json::Value = serde_json::from_slice(&bytes)?;
    let entries = record
        .get("entry")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text = |e: &serde_json::Value, path: &str| {
        e.pointer(path).and_then(|v| v.as_str()).map(String::from)
    };
    let stay = entries
        .iter()
        .filter(|e| text(e, "/resource/resourceType").as_deref() == Some("Encounter"))
        .filter_map(|e| {
            let start = text(e, "/resource/period/start")?;
            let end = text(e, "/resource/period/end").unwrap_or_else(|| start.clone());
            Some((
                day_start_ms(&start)?,
                day_start_ms(&end)? + 86_399_999,
                start,
            ))
        })
        .max_by_key(|(s, _, _)| *s)
        .context("the patient has no dated stay")?;
    println!(
        "    the patient downloads their own record from hospital-a ({} resources) and picks the stay of {}",
        entries.len(),
        stay.2.get(..10).unwrap_or(&stay.2)
    );
    let types = ["Claim", "ExplanationOfBenefit", "Encounter"];
    let (payload, code) = GrantTerms {
        grantee: MemberId::new("insurer-1")?,
        holder: holder.clone(),
        purpose: Purpose::InsuranceClaim,
        types: types.map(String::from).to_vec(),
        period_ms: (stay.0, stay.1),
        expiry_ms: ledger.time_ms() + 30 * 24 * 3600 * 1000,
        max_uses: 1,
    }
    .with_new_code(&patient.id)?;
    let r = ledger.must(&patient.key, payload)?;
    let Created::Grant(grant) = *created(&r)? else {
        fail!("expected a grant")
    };
    let (status, bytes) = medspace_client::records::redeem_request(
        ledger,
        &holder,
        c.user_key("insurer-1.claims")?,
        grant,
        &code.display(),
    )?;
    if status != 200 {
        fail!(
            "the insurer's redemption was refused ({status}): {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let delivered: serde_json::Value = serde_json::from_slice(&bytes)?;
    let mut by_type: std::collections::BTreeMap<String, usize> = Default::default();
    for e in delivered
        .get("entry")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let t = e
            .pointer("/resource/resourceType")
            .and_then(|v| v.as_str())
            .unwrap_or("?");
        if !types.contains(&t) {
            fail!("the insurer received a {t}, which was not granted");
        }
        *by_type.entry(t.to_string()).or_default() += 1;
    }
    medspace_client::records::access_for(ledger, &patient.id, &bytes)?;
    println!(
        "    insurer-1's claims officer redeems it at hospital-a's node and receives {} ({} of the patient's {} resources; nothing else), access recorded on the ledger",
        by_type
            .iter()
            .map(|(t, k)| format!("{k} {t}"))
            .collect::<Vec<_>>()
            .join(", "),
        by_type.values().sum::<usize>(),
        entries.len()
    );
    Ok(())
}
