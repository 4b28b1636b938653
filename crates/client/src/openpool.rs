//! The open pool from a recipient's side: ask for releases (an open-pool contract, which the
//! owners' stewards approve), fetch one and check every byte against the ledger, and attest
//! the destruction of the copy when the contract ends.
//!
//! A fetch trusts no node: the manifest's hash must equal the `content_hash` of the release's
//! catalog entry in the state this client verified itself, and each file's size and SHA-256
//! must equal the manifest's. Files are written only once all of them verified.

use crate::records::error_reason;
use crate::remote::Remote;
use crate::{ClientError, Result};
use medspace_types::{
    AccessId, AttestDestruction, Blob, ContractId, DatasetId, FieldRef, Hash, Keypair, List,
    Payload, Purpose, ReleaseFigures, SubmitRequest,
};
use serde::Deserialize;
use std::path::Path;

/// One day in milliseconds.
const DAY_MS: u64 = 86_400_000;

/// A manifest as the owner's node serves it (the fields a recipient checks).
#[derive(Debug, Deserialize)]
struct Manifest {
    format: String,
    dataset: String,
    files: Vec<File>,
}

#[derive(Debug, Deserialize)]
struct File {
    name: String,
    bytes: u64,
    sha256: String,
}

/// A fetched release.
#[derive(Debug)]
pub struct Fetched {
    /// The release.
    pub dataset: DatasetId,
    /// Its version.
    pub version: u32,
    /// What its catalog entry states.
    pub figures: ReleaseFigures,
    /// The files written, with their sizes.
    pub files: Vec<(String, u64)>,
    /// The delivery on the ledger (attest its destruction by this id).
    pub delivery: Option<AccessId>,
}

/// Asks for the releases `datasets` for `purpose`: every field of their catalog entries, an
/// open-pool contract for `days` with `fee` in escrow. Returns the contract.
pub fn request(
    ledger: &mut Remote,
    key: &Keypair,
    datasets: &[DatasetId],
    purpose: Purpose,
    days: u64,
    fee: u64,
) -> Result<ContractId> {
    let mut fields = Vec::new();
    for id in datasets {
        let d = ledger
            .state()
            .dataset(id)?
            .ok_or_else(|| ClientError::Missing(format!("no release {id} in the catalog")))?;
        if d.release.is_none() {
            return Err(ClientError::Missing(format!(
                "{id} is not a release of the open pool"
            )));
        }
        for t in &d.description.tables {
            for f in &t.fields {
                fields.push(FieldRef {
                    dataset: id.clone(),
                    table: t.name.clone(),
                    field: f.name.clone(),
                });
            }
        }
    }
    fields.truncate(256);
    let expiry_ms = ledger.time_ms().saturating_add(days.saturating_mul(DAY_MS));
    let r = ledger.must(
        key,
        Payload::SubmitRequest(SubmitRequest {
            purpose,
            mode: medspace_types::Mode::OpenPool,
            study: None,
            fields: List::new(fields)?,
            computation: Blob::default(),
            expiry_ms,
            epsilon_budget: 0,
            fee,
        }),
    )?;
    match r.created {
        Some(medspace_state::Created::Contract(c)) => Ok(c),
        _ => Err(ClientError::Missing(
            "the request created no contract".into(),
        )),
    }
}

/// Fetches release `dataset` under `contract` from its owner's node into `out`, verifying
/// the manifest against the ledger and every file against the manifest.
pub fn fetch(
    ledger: &mut Remote,
    key: &Keypair,
    contract: ContractId,
    dataset: &DatasetId,
    out: &Path,
) -> Result<Fetched> {
    let entry = ledger
        .state()
        .dataset(dataset)?
        .ok_or_else(|| ClientError::Missing(format!("no release {dataset} in the catalog")))?;
    let figures = entry
        .release
        .clone()
        .ok_or_else(|| ClientError::Missing(format!("{dataset} is not a release")))?;
    let body = serde_json::json!({
        "contract": contract,
        "dataset": dataset,
        "after_height": ledger.height(),
    })
    .to_string();
    let what = format!("fetching {dataset}");
    let (status, manifest) = ledger.post_signed(
        &entry.owner,
        "/v1/worker/releases/deliver",
        body.as_bytes(),
        key,
    )?;
    if status != 200 {
        return Err(ClientError::Refused {
            what,
            status,
            reason: error_reason(&manifest),
        });
    }
    let hash = medspace_worker::releases::manifest_hash(&manifest);
    if hash != entry.description.content_hash {
        return Err(ClientError::Verification(format!(
            "the manifest of {dataset} hashes to {hash}, the catalog publishes {}",
            entry.description.content_hash
        )));
    }
    let m: Manifest = serde_json::from_slice(&manifest)
        .map_err(|e| ClientError::Verification(format!("the manifest: {e}")))?;
    if m.dataset != dataset.as_str() || !m.format.starts_with("medspace-release/") {
        return Err(ClientError::Verification(format!(
            "the manifest is of {} ({}), not of {dataset}",
            m.dataset, m.format
        )));
    }
    let mut files = Vec::new();
    for f in &m.files {
        let safe = !f.name.is_empty()
            && f.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && !f.name.starts_with('.');
        if !safe {
            return Err(ClientError::Verification(format!(
                "the manifest names a file `{}`",
                f.name
            )));
        }
        let path = format!("/v1/worker/releases/{dataset}/files/{}", f.name);
        let (status, bytes) = ledger.get_signed(&entry.owner, &path, key)?;
        if status != 200 {
            return Err(ClientError::Refused {
                what: format!("fetching {}", f.name),
                status,
                reason: error_reason(&bytes),
            });
        }
        let got = hex::encode(Hash::of(&[&bytes]).0);
        if bytes.len() as u64 != f.bytes || got != f.sha256 {
            return Err(ClientError::Verification(format!(
                "{} is not the file the manifest lists ({} bytes, sha256 {got})",
                f.name,
                bytes.len()
            )));
        }
        files.push((f.name.clone(), bytes));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| ClientError::Missing(format!("{}: {e}", out.display())))?;
    let write = |name: &str, bytes: &[u8]| {
        let p = out.join(name);
        std::fs::write(&p, bytes).map_err(|e| ClientError::Missing(format!("{}: {e}", p.display())))
    };
    for (name, bytes) in &files {
        write(name, bytes)?;
    }
    write("manifest.json", &manifest)?;
    // The delivery the owner's node recorded for this fetch (final before the manifest was
    // sent): the newest of this release to the caller's institution under the contract, once
    // this client has followed the chain that far.
    let member = ledger
        .state()
        .contract(contract)?
        .map(|c| c.requester_member)
        .ok_or_else(|| ClientError::Missing(format!("contract {contract}")))?;
    let mut delivery = None;
    for _ in 0..30 {
        delivery = ledger
            .state()
            .deliveries_to(&member)?
            .into_iter()
            .filter(|d| d.contract == contract && d.dataset == *dataset && d.content_hash == hash)
            .max_by_key(|d| d.height)
            .map(|d| d.id);
        if delivery.is_some() {
            break;
        }
        ledger.next_block()?;
    }
    Ok(Fetched {
        dataset: dataset.clone(),
        version: entry.description.version,
        figures,
        files: files
            .into_iter()
            .map(|(n, b)| (n, b.len() as u64))
            .collect(),
        delivery,
    })
}

/// Attests that the copy delivered as `delivery` was destroyed.
pub fn destroy(ledger: &mut Remote, key: &Keypair, delivery: AccessId) -> Result<()> {
    ledger.must(
        key,
        Payload::AttestDestruction(AttestDestruction { access: delivery }),
    )?;
    Ok(())
}

/// Lines describing a release's figures, for people.
pub fn figure_lines(f: &ReleaseFigures) -> Vec<String> {
    let pct = |ppm: u32| f64::from(ppm) / 10_000.0;
    vec![
        format!(
            "k = {}, l = {}, {} persons ({} suppressed), from {} for {}",
            f.k,
            f.l,
            f.persons,
            f.suppressed,
            f.source,
            f.purposes
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "re-identification risk: prosecutor highest {:.1} % (average {:.1} %), journalist highest {:.1} %, marketer {:.1} %, records at risk {:.1} %",
            pct(f.prosecutor_max_ppm),
            pct(f.prosecutor_avg_ppm),
            pct(f.journalist_max_ppm),
            pct(f.marketer_ppm),
            pct(f.at_risk_ppm)
        ),
    ]
}
