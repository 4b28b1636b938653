//! `medspace bench apply`: signed transactions applied per second on one core, signature checks
//! and state roots included, with the raw ed25519 verification rate measured in the same run.

use crate::consortium::{Consortium, HOSPITALS, cdm_description};
use crate::local::Local;
use anyhow::Context;
use medspace_state::Created;
use medspace_types::*;
use std::time::Instant;

/// Options of the apply benchmark.
pub struct ApplyBench {
    /// Transactions in the timed mix.
    pub txs: usize,
    /// Transactions per block.
    pub block: usize,
    /// Registered patients.
    pub patients: usize,
}

/// Runs the benchmark and prints its figures.
pub fn apply(opts: &ApplyBench) -> anyhow::Result<()> {
    let t0 = 1_767_225_600_000;
    let c = Consortium::default_devnet(7, t0)?;
    let mut ledger = Local::new(&c.genesis)?;
    println!(
        "setting up: {} patients, catalog, pending contracts and grants (not timed)",
        opts.patients
    );
    for h in HOSPITALS {
        let desc = cdm_description(h, 1000, 1, Hash::of(&[h.as_bytes()]))?;
        ledger.submit(
            c.user_key(&format!("{h}.steward"))?,
            Payload::PublishDataset(PublishDataset { dataset: desc }),
        )?;
    }
    ledger.must_block(1000)?;
    let patients: Vec<Keypair> = (0..opts.patients)
        .map(|i| Keypair::from_seed(1_000_000 + i as u64))
        .collect();
    for chunk in patients.chunks(opts.block.max(1)) {
        for k in chunk {
            ledger.submit(k, Payload::RegisterPatient(RegisterPatient {}))?;
        }
        ledger.must_block(1000)?;
    }
    // The timed mix: 60% consent updates, 20% approvals, 20% record-access audit records.
    let n_approve = opts.txs / 5;
    let n_access = opts.txs / 5;
    let n_consent = opts.txs - n_approve - n_access;
    let reviewers = [
        "hospital-a.steward",
        "hospital-b.steward",
        "hospital-c.steward",
        "hospital-a.data-committee",
        "hospital-b.ethics-committee",
    ];
    let researcher = c.user_key("research-1.researcher")?;
    let n_contracts = n_approve.div_ceil(reviewers.len());
    let mut contracts = Vec::new();
    let fields: Vec<FieldRef> = HOSPITALS
        .iter()
        .map(|h| -> anyhow::Result<FieldRef> {
            Ok(FieldRef {
                dataset: DatasetId::new(&format!("{h}.cdm"))?,
                table: Text::new("condition_occurrence")?,
                field: Text::new("condition_source_value")?,
            })
        })
        .collect::<Result<_, _>>()?;
    for chunk in (0..n_contracts)
        .collect::<Vec<_>>()
        .chunks(opts.block.max(1))
    {
        for _ in chunk {
            ledger.submit(
                researcher,
                Payload::SubmitRequest(SubmitRequest {
                    purpose: Purpose::Research,
                    mode: Mode::Compute,
                    study: None,
                    fields: List::new(fields.clone())?,
                    computation: Blob::new(b"{}".to_vec())?,
                    expiry_ms: t0 + 300 * 24 * 3600 * 1000,
                    epsilon_budget: 1_000_000,
                    fee: 0,
                }),
            )?;
        }
        for r in ledger.must_block(1000)? {
            if let Some(Created::Contract(id)) = r.created {
                contracts.push(id);
            }
        }
    }
    // One reusable grant per patient that will have records delivered.
    let holder = c.member_key("hospital-a")?;
    let n_granting = n_access.min(patients.len()).max(1);
    let mut grants = Vec::new();
    for chunk in patients
        .iter()
        .take(n_granting)
        .collect::<Vec<_>>()
        .chunks(opts.block.max(1))
    {
        for k in chunk {
            ledger.submit(
                k,
                Payload::IssueGrant(IssueGrant {
                    grantee: MemberId::new("hospital-b")?,
                    holder: MemberId::new("hospital-a")?,
                    purpose: Purpose::Treatment,
                    resource_types: List::new(vec![Text::new("Observation")?])?,
                    period_from_ms: 0,
                    period_to_ms: t0,
                    expiry_ms: t0 + 300 * 24 * 3600 * 1000,
                    max_uses: 0,
                    code_hash: Hash::of(&[k.public().as_ref()]),
                }),
            )?;
        }
        for (r, k) in ledger.must_block(1000)?.into_iter().zip(chunk) {
            if let Some(Created::Grant(g)) = r.created {
                grants.push((PatientId::from_key(&k.public()), g));
            }
        }
    }
    // Sign the timed transactions up front (signing is the clients' cost, not the ledger's).
    println!(
        "signing {} transactions ({n_consent} consent, {n_approve} approvals, {n_access} access records)",
        opts.txs
    );
    let mut nonces: std::collections::HashMap<PublicKey, u64> = std::collections::HashMap::new();
    let mut sign = |ledger: &Local, key: &Keypair, payload: Payload| -> anyhow::Result<SignedTx> {
        let pk = key.public();
        let nonce = match nonces.get(&pk) {
            Some(n) => *n,
            None => ledger.state.next_nonce(&pk)?,
        };
        nonces.insert(pk, nonce + 1);
        Ok(SignedTx::new(&ledger.chain_id, key, nonce, payload))
    };
    let mut txs = Vec::with_capacity(opts.txs);
    let (mut ci, mut ai, mut gi) = (0usize, 0usize, 0usize);
    for i in 0..opts.txs {
        let slot = i % 5;
        if slot == 3 && ai < n_approve {
            let contract = *contracts.get(ai / reviewers.len()).context("contract")?;
            let reviewer = reviewers.get(ai % reviewers.len()).context("reviewer")?;
            txs.push(sign(
                &ledger,
                c.user_key(reviewer)?,
                Payload::Approve(Approve { contract }),
            )?);
            ai += 1;
        } else if slot == 4 && gi < n_access {
            let (patient, grant) = grants.get(gi % grants.len()).context("grant")?;
            txs.push(sign(
                &ledger,
                holder,
                Payload::RecordAccess(RecordAccess {
                    patient: *patient,
                    recipient: MemberId::new("hospital-b")?,
                    basis: AccessBasis::Grant(*grant),
                    resource_types: List::new(vec![Text::new("Observation")?])?,
                    resource_count: 17,
                    content_hash: Hash::of(&[&gi.to_be_bytes()]),
                }),
            )?);
            gi += 1;
        } else {
            let k = patients.get(ci % patients.len()).context("patient")?;
            let decision = if ci % 3 == 0 {
                Decision::Deny
            } else {
                Decision::Allow
            };
            let purpose = Purpose::ALL
                .get(ci % Purpose::ALL.len())
                .copied()
                .unwrap_or(Purpose::Research);
            txs.push(sign(
                &ledger,
                k,
                Payload::SetConsent(SetConsent {
                    purpose,
                    study: None,
                    decision,
                    l4_opt_in: false,
                }),
            )?);
            ci += 1;
        }
    }
    // Timed: apply block by block, batch signature check and state root included.
    // Same work as `State::apply_block`, timed in its three parts.
    let (mut t_sig, mut t_apply, mut t_root) = (0f64, 0f64, 0f64);
    let mut refused = 0usize;
    for block in txs.chunks(opts.block.max(1)) {
        ledger.height += 1;
        ledger.time_ms += 1000;
        let ctx = medspace_state::BlockContext {
            height: ledger.height,
            time_ms: ledger.time_ms,
        };
        let t = Instant::now();
        let valid = medspace_state::verify_signatures(block);
        t_sig += t.elapsed().as_secs_f64();
        anyhow::ensure!(
            valid.iter().all(|v| *v),
            "a benchmark signature failed the batch check"
        );
        let t = Instant::now();
        for tx in block {
            refused += usize::from(ledger.state.apply_verified(tx, &ctx).is_err());
        }
        t_apply += t.elapsed().as_secs_f64();
        let t = Instant::now();
        std::hint::black_box(ledger.state.root());
        t_root += t.elapsed().as_secs_f64();
    }
    let secs = t_sig + t_apply + t_root;
    let rate = txs.len() as f64 / secs;
    // Raw ed25519 verification on the same machine, one by one.
    let sample = txs.len().min(20_000);
    let start = Instant::now();
    let mut ok = 0usize;
    for tx in txs.iter().take(sample) {
        ok += usize::from(tx.verify_signature());
    }
    let verify_rate = sample as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(
        ok == sample,
        "a signature failed to verify in the benchmark"
    );
    anyhow::ensure!(
        refused == 0,
        "{refused} benchmark transactions were refused"
    );
    println!(
        "state: {} records, root {}",
        ledger.state.len(),
        ledger.state.root()
    );
    println!("apply (one core, signatures + state root): {rate:.0} tx/s");
    println!(
        "  time split: batch signature check {:.0}%, rules {:.0}%, state root {:.0}%",
        100.0 * t_sig / secs,
        100.0 * t_apply / secs,
        100.0 * t_root / secs
    );
    println!("raw ed25519 verify (one by one):            {verify_rate:.0} tx/s");
    println!("ratio apply / raw verify: {:.2}", rate / verify_rate);
    Ok(())
}
