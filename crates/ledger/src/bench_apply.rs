//! `medspace bench apply`: signed transactions applied per second on one core — batch
//! signature check, rules and state root — against raw ed25519 batch verification of the same
//! signatures, measured the same way.
//!
//! Both sides run over the same blocks, one block per batch, and each is measured twice:
//! - **cold keys**: every signer's public key is decompressed within the timed run (the apply
//!   side starts from an empty [`KeyCache`]; the raw side decodes each key per block), as for a
//!   validator seeing signers it has not met;
//! - **warm keys**: every key is already decompressed (the apply side's cache filled by an
//!   untimed pass; the raw side's keys decoded before timing), as for a validator whose signers
//!   are regulars.
//!
//! Each apply rate is compared with the raw rate of the same kind. The raw side verifies the
//! same messages with commonware's ed25519 batch verification; what the apply side adds is the
//! encoding of each body, the rules and the state root.

use crate::local::{Local, Refused};
use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::ed25519;
use commonware_cryptography::{BatchEntry, BatchVerifier as _};
use commonware_parallel::Sequential;
use medspace_consortium::{Consortium, HOSPITALS};
use medspace_state::{BlockContext, Created, KeyCache, TxError};
use medspace_types::*;
use std::time::Instant;

/// Options of the apply benchmark.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Transactions in the timed mix.
    pub txs: usize,
    /// Transactions per block.
    pub block: usize,
    /// Registered patients.
    pub patients: usize,
}

/// One measured apply pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApplyRate {
    /// Transactions per second, everything included.
    pub tx_per_s: f64,
    /// Share of the time in the batch signature check.
    pub signatures: f64,
    /// Share in the rules.
    pub rules: f64,
    /// Share in computing the state root.
    pub root: f64,
}

/// The benchmark's figures.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    /// Records in the final state.
    pub records: usize,
    /// Its root.
    pub root: Hash,
    /// Applying with cold keys.
    pub cold: ApplyRate,
    /// Applying with warm keys.
    pub warm: ApplyRate,
    /// Raw batch verification, keys decompressed per block (tx/s).
    pub raw_cold: f64,
    /// Raw batch verification, keys decompressed before timing (tx/s).
    pub raw_warm: f64,
}

/// The contracts' computation: a count of persons with a (not sensitive) condition, L3 like
/// the condition fields the contracts name.
const COMPUTATION: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":"count"}"#;

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Building the consortium failed.
    #[error(transparent)]
    Consortium(#[from] medspace_consortium::ConsortiumError),
    /// A value does not fit its type.
    #[error(transparent)]
    Type(#[from] TypeError),
    /// The genesis is not valid.
    #[error(transparent)]
    Genesis(#[from] medspace_state::GenesisError),
    /// The state could not be read.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// A setup transaction was refused.
    #[error(transparent)]
    Setup(#[from] Refused),
    /// The benchmark's own checks failed.
    #[error("benchmark check failed: {0}")]
    Check(String),
}

const T0: u64 = 1_767_225_600_000;
const REVIEWERS: [&str; 5] = [
    "hospital-a.steward",
    "hospital-b.steward",
    "hospital-c.steward",
    "hospital-a.data-committee",
    "hospital-b.ethics-committee",
];

fn condition_field(h: &str) -> Result<FieldRef, TypeError> {
    Ok(FieldRef {
        dataset: DatasetId::new(&format!("{h}.cdm"))?,
        table: Text::new("condition_occurrence")?,
        field: Text::new("condition_source_value")?,
    })
}

fn catalog_entry(h: &str) -> Result<DatasetDescription, TypeError> {
    let field = |name: &str, level| -> Result<FieldDesc, TypeError> {
        Ok(FieldDesc {
            name: Text::new(name)?,
            level,
            missing_ppm: 0,
            invalid_ppm: 0,
        })
    };
    Ok(DatasetDescription {
        id: DatasetId::new(&format!("{h}.cdm"))?,
        title: Text::new(format!("{h} common data model"))?,
        version: 1,
        tables: List::new(vec![TableDesc {
            name: Text::new("condition_occurrence")?,
            rows: 4000,
            duplicate_ppm: 0,
            implausible_ppm: 0,
            fields: List::new(vec![field("condition_source_value", Level::L3)?])?,
        }])?,
        content_hash: Hash::of(&[h.as_bytes()]),
    })
}

/// The untimed setup: catalog, patients, pending contracts, grants. Returns the ledger and the
/// contracts and grants the timed mix uses.
/// What the untimed setup leaves: the ledger, the patients, the pending contracts and the
/// reusable grants.
struct Setup {
    ledger: Local,
    patients: Vec<Keypair>,
    contracts: Vec<ContractId>,
    grants: Vec<(PatientId, GrantId)>,
}

fn setup(
    c: &Consortium,
    opts: &ApplyOptions,
    n_contracts: usize,
    n_granting: usize,
) -> Result<Setup, ApplyError> {
    let block = opts.block.max(1);
    let mut ledger = Local::new(&c.genesis)?;
    for h in HOSPITALS {
        ledger.submit(
            c.user_key(&format!("{h}.steward"))?,
            Payload::PublishDataset(PublishDataset {
                dataset: catalog_entry(h)?,
            }),
        )?;
    }
    ledger.must_block(1000)?;
    let patients: Vec<Keypair> = (0..opts.patients)
        .map(|i| Keypair::from_seed(1_000_000 + i as u64))
        .collect();
    for chunk in patients.chunks(block) {
        for k in chunk {
            let reg = c.patient_registration("hospital-a", &k.public())?;
            ledger.submit(k, Payload::RegisterPatient(reg))?;
        }
        ledger.must_block(1000)?;
    }
    let researcher = c.user_key("research-1.researcher")?;
    let fields: Vec<FieldRef> = HOSPITALS
        .iter()
        .map(|h| condition_field(h))
        .collect::<Result<_, _>>()?;
    let mut contracts = Vec::new();
    for chunk in (0..n_contracts).collect::<Vec<_>>().chunks(block) {
        for _ in chunk {
            ledger.submit(
                researcher,
                Payload::SubmitRequest(SubmitRequest {
                    purpose: Purpose::Research,
                    mode: Mode::Compute,
                    study: None,
                    fields: List::new(fields.clone())?,
                    computation: Blob::new(COMPUTATION.as_bytes().to_vec())?,
                    expiry_ms: T0 + 300 * 24 * 3600 * 1000,
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
    let mut grants = Vec::new();
    for chunk in patients
        .iter()
        .take(n_granting)
        .collect::<Vec<_>>()
        .chunks(block)
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
                    period_to_ms: T0,
                    expiry_ms: T0 + 300 * 24 * 3600 * 1000,
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
    Ok(Setup {
        ledger,
        patients,
        contracts,
        grants,
    })
}

/// The timed mix, signed up front (signing is the clients' cost, not the ledger's): 60%
/// consent updates, 20% approvals, 20% record-access audit records.
fn sign_mix(
    c: &Consortium,
    ledger: &Local,
    opts: &ApplyOptions,
    patients: &[Keypair],
    contracts: &[ContractId],
    grants: &[(PatientId, GrantId)],
) -> Result<Vec<SignedTx>, ApplyError> {
    let n_approve = opts.txs / 5;
    let n_access = opts.txs / 5;
    let holder = c.node_key("hospital-a")?;
    let missing = |what: &str| ApplyError::Check(format!("setup made no {what}"));
    let mut nonces: std::collections::HashMap<PublicKey, u64> = std::collections::HashMap::new();
    let mut sign = |key: &Keypair, payload: Payload| -> Result<SignedTx, ApplyError> {
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
            let contract = *contracts
                .get(ai / REVIEWERS.len())
                .ok_or_else(|| missing("contract"))?;
            let reviewer = REVIEWERS
                .get(ai % REVIEWERS.len())
                .ok_or_else(|| missing("reviewer"))?;
            txs.push(sign(
                c.user_key(reviewer)?,
                Payload::Approve(Approve { contract }),
            )?);
            ai += 1;
        } else if slot == 4 && gi < n_access {
            let (patient, grant) = grants
                .get(gi % grants.len().max(1))
                .ok_or_else(|| missing("grant"))?;
            txs.push(sign(
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
            let k = patients
                .get(ci % patients.len().max(1))
                .ok_or_else(|| missing("patient"))?;
            let purpose = Purpose::ALL
                .get(ci % Purpose::ALL.len())
                .copied()
                .unwrap_or(Purpose::Research);
            txs.push(sign(
                k,
                Payload::SetConsent(SetConsent {
                    purpose,
                    study: None,
                    decision: if ci % 3 == 0 {
                        Decision::Deny
                    } else {
                        Decision::Allow
                    },
                    l4_opt_in: false,
                }),
            )?);
            ci += 1;
        }
    }
    Ok(txs)
}

/// Applies `txs` block by block on a copy of `base` whose key cache is `cache`, timing the
/// batch signature check, the rules and the root. Refuses if any transaction is refused.
fn apply_pass(
    base: &Local,
    cache: KeyCache,
    txs: &[SignedTx],
    block: usize,
) -> Result<(ApplyRate, Local), ApplyError> {
    let mut ledger = Local::at(
        base.state.clone().with_key_cache(cache),
        base.chain_id.clone(),
        base.height,
        base.time_ms,
    );
    let (mut t_sig, mut t_apply, mut t_root) = (0f64, 0f64, 0f64);
    let mut refused = 0usize;
    for chunk in txs.chunks(block.max(1)) {
        ledger.height += 1;
        ledger.time_ms += 1000;
        let ctx = BlockContext {
            height: ledger.height,
            time_ms: ledger.time_ms,
        };
        let t = Instant::now();
        let valid = medspace_state::verify_signatures_with(ledger.state.key_cache(), chunk);
        t_sig += t.elapsed().as_secs_f64();
        if !valid.iter().all(|v| *v) {
            return Err(ApplyError::Check(
                "a signature failed the batch check".into(),
            ));
        }
        let t = Instant::now();
        for tx in chunk {
            refused += usize::from(ledger.state.apply_verified(tx, &ctx).is_err());
        }
        t_apply += t.elapsed().as_secs_f64();
        let t = Instant::now();
        std::hint::black_box(ledger.state.root());
        t_root += t.elapsed().as_secs_f64();
    }
    if refused > 0 {
        return Err(ApplyError::Check(format!(
            "{refused} transactions were refused"
        )));
    }
    let secs = (t_sig + t_apply + t_root).max(1e-9);
    Ok((
        ApplyRate {
            tx_per_s: txs.len() as f64 / secs,
            signatures: t_sig / secs,
            rules: t_apply / secs,
            root: t_root / secs,
        },
        ledger,
    ))
}

/// Raw batch verification of the same signatures, block by block: `cold` decodes every
/// signer's key within the timed run, warm before it.
fn raw_pass(txs: &[SignedTx], block: usize, cold: bool) -> Result<f64, ApplyError> {
    let bodies: Vec<Vec<u8>> = txs.iter().map(|t| t.body.encode().to_vec()).collect();
    let decode = |t: &SignedTx| {
        ed25519::PublicKey::decode(commonware_codec::Copying(t.body.signer.as_ref()))
            .map_err(|e| ApplyError::Check(format!("a signer key does not decode: {e}")))
    };
    let warm_keys: Vec<ed25519::PublicKey> = if cold {
        Vec::new()
    } else {
        txs.iter().map(decode).collect::<Result<_, _>>()?
    };
    let mut rng = rand::rng();
    let start = Instant::now();
    for (i, chunk) in txs.chunks(block.max(1)).enumerate() {
        let first = i * block.max(1);
        let cold_keys: Vec<ed25519::PublicKey> = if cold {
            chunk.iter().map(decode).collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let keys: &[ed25519::PublicKey] = if cold {
            &cold_keys
        } else {
            warm_keys.get(first..first + chunk.len()).unwrap_or(&[])
        };
        if keys.len() != chunk.len() {
            return Err(ApplyError::Check("raw pass out of step".into()));
        }
        let items: Vec<(usize, &SignedTx, &ed25519::PublicKey)> = (first..)
            .zip(chunk)
            .zip(keys)
            .map(|((i, tx), k)| (i, tx, k))
            .collect();
        let ok = ed25519::PublicKey::verify_batch(
            &mut rng,
            &items,
            |_, (i, tx, key)| BatchEntry {
                namespace: TX_NAMESPACE,
                message: bodies.get(*i).map_or(&[][..], |b| &b[..]),
                public_key: key,
                signature: &tx.signature.0,
            },
            &Sequential,
        );
        if !ok {
            return Err(ApplyError::Check(
                "a signature failed raw verification".into(),
            ));
        }
    }
    Ok(txs.len() as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Runs the benchmark (setup untimed).
pub fn apply(
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ApplyReport, ApplyError> {
    let c = Consortium::default_devnet(7, T0)?;
    let n_approve = opts.txs / 5;
    let n_access = opts.txs / 5;
    progress(&format!(
        "setting up: {} patients, catalog, pending contracts and grants (not timed)",
        opts.patients
    ));
    let Setup {
        ledger: base,
        patients,
        contracts,
        grants,
    } = setup(
        &c,
        opts,
        n_approve.div_ceil(REVIEWERS.len()),
        n_access.min(opts.patients).max(1),
    )?;
    progress(&format!("signing {} transactions", opts.txs));
    let txs = sign_mix(&c, &base, opts, &patients, &contracts, &grants)?;
    progress("timing: cold keys, warm keys, raw batch verification");
    let (cold, after) = apply_pass(&base, KeyCache::new(), &txs, opts.block)?;
    // Warm: a cache that has decompressed every signer of the mix (an untimed pass fills it).
    let warm_cache = KeyCache::new();
    medspace_state::verify_signatures_with(&warm_cache, &txs);
    let (warm, _) = apply_pass(&base, warm_cache, &txs, opts.block)?;
    let raw_cold = raw_pass(&txs, opts.block, true)?;
    let raw_warm = raw_pass(&txs, opts.block, false)?;
    Ok(ApplyReport {
        records: after.state.len(),
        root: after.state.root(),
        cold,
        warm,
        raw_cold,
        raw_warm,
    })
}
