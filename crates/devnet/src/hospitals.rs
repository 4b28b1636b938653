//! The hospitals' nodes of a local consortium: each hospital's vault filled with its own
//! patients (generated, or FHIR files given on the command line), each patient given a key that
//! registers on the ledger, and the hospital's confirmed link from its local record to that
//! pseudonym.

use crate::{Context, Result};
use medspace_compute::Links;
use medspace_types::{Keypair, PatientId};
use medspace_vault::seal::{KdfParams, Passphrase};
use medspace_vault::{IngestOptions, OnError, Vault, VaultKey};
use std::path::{Path, PathBuf};

/// One patient of a hospital, as the local consortium knows them.
pub struct Patient {
    /// Their key (the patient's wallet).
    pub key: Keypair,
    /// Their ledger pseudonym.
    pub id: PatientId,
}

/// A hospital's node directory and its patients.
pub struct Hospital {
    /// Member id.
    pub member: String,
    /// Node directory (vault, links).
    pub dir: PathBuf,
    /// The vault's keys (unlocked once from the node's `vault.pass`).
    pub key: VaultKey,
    /// Its patients.
    pub patients: Vec<Patient>,
}

/// Where the patients come from.
pub enum Source<'a> {
    /// `n` generated patients per hospital.
    Generated { per_hospital: u64 },
    /// One folder (or file) of FHIR R4 per hospital, in hospital order.
    Fhir(&'a [PathBuf]),
}

/// The insurer whose node holds a claims vault.
pub const INSURER: &str = "insurer-1";

/// The file beside a hospital's node config holding its vault's passphrase.
pub const VAULT_PASSPHRASE_FILE: &str = "vault.pass";

/// The keys of the vault in the node directory `dir`, unlocked with its passphrase file; on
/// first use, a generated passphrase (written owner-only) and new vault keys.
pub fn vault_key(dir: &Path) -> Result<VaultKey> {
    let pass_path = dir.join(VAULT_PASSPHRASE_FILE);
    if !pass_path.exists() {
        Passphrase::generate()
            .write_new(&pass_path)
            .map_err(|e| crate::DevnetError::Failed(format!("vault passphrase: {e}")))?;
    }
    let passphrase = Passphrase::from_file(&pass_path)
        .map_err(|e| crate::DevnetError::Failed(format!("vault passphrase: {e}")))?;
    Ok(VaultKey::unlock_or_create(
        dir,
        &passphrase,
        KdfParams::DEFAULT,
    )?)
}

/// Fills each hospital's vault (if it is empty) and links its patients.
pub fn prepare(
    base: &Path,
    members: &[&str],
    seed: u64,
    source: &Source<'_>,
) -> Result<Vec<Hospital>> {
    let mut out = Vec::new();
    for (h, member) in members.iter().enumerate() {
        let dir = base.join(member);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let key = vault_key(&dir)?;
        let mut vault = Vault::open(&dir, &key)?;
        if vault.resource_count() == 0 {
            let opts = IngestOptions {
                on_error: OnError::Skip,
                progress: true,
                vocabulary: None,
                ..IngestOptions::default()
            };
            let report = match source {
                Source::Generated { per_hospital } => {
                    let k = h as u32;
                    let n = members.len() as u32;
                    // Its own patients, then the copies of those the previous hospital
                    // referred here (one in ten, see `medspace_synth::is_shared`).
                    // With the ground truths of public health injected: an outbreak in one
                    // region and a drug that causes an adverse event (`crate::health`).
                    let scenarios = crate::health::scenarios();
                    let shared = medspace_synth::shared_resources_with(
                        seed,
                        k,
                        n,
                        *per_hospital,
                        &scenarios,
                    );
                    let resources = medspace_synth::hospital_resources(seed, k)
                        .into_iter()
                        .chain((0..*per_hospital).flat_map(move |i| {
                            medspace_synth::patient_resources_with(seed, k, i, &scenarios)
                        }))
                        .chain(shared);
                    vault.ingest_values(
                        &format!("synth:seed={seed}:hospital={member}"),
                        resources,
                        &opts,
                    )?
                }
                Source::Fhir(dirs) => {
                    let path = dirs
                        .get(h)
                        .with_context(|| format!("no FHIR folder given for {member}"))?;
                    vault.ingest_paths(std::slice::from_ref(path), &opts)?
                }
            };
            eprintln!("{member}: {}", report.summary_line());
        }
        let mut links = Links::load(&dir, &key)?;
        let mut patients = Vec::new();
        for (person_id, fhir_id, _) in vault.persons() {
            // The key follows the person: a patient held by two hospitals (the same Patient
            // id) is one ledger pseudonym, linked at both.
            let key = medspace_consortium::patient_key(seed, &fhir_id);
            let id = PatientId::from_key(&key.public());
            if links.link(person_id, id).is_err() {
                // Links from a version that keyed patients otherwise (per hospital).
                crate::fail!(
                    "{} was made by another version of medspace (its patient links differ); remove the directory to start afresh",
                    base.display()
                );
            }
            patients.push(Patient { key, id });
        }
        links.save(&dir, &key)?;
        drop(vault);
        out.push(Hospital {
            member: member.to_string(),
            dir,
            key,
            patients,
        });
    }
    Ok(out)
}

/// Every patient once, with the first hospital holding their record (its index and member):
/// a patient two hospitals hold is one person, with one key that registers and consents once.
pub fn distinct_patients(hospitals: &[Hospital]) -> Vec<(usize, &str, &Patient)> {
    let mut seen = std::collections::BTreeSet::new();
    hospitals
        .iter()
        .enumerate()
        .flat_map(|(h, node)| {
            node.patients
                .iter()
                .map(move |p| (h, node.member.as_str(), p))
        })
        .filter(|(_, _, p)| seen.insert(p.id))
        .collect()
}

/// Fills the insurer's claims vault (if it is empty) and links its members who are patients of
/// the devnet's hospitals to their ledger pseudonyms (the patient's key follows the person, as
/// at the hospitals). Generated patients: every covered patient of every hospital
/// ([`medspace_synth::claims::covered`]) and as many members again who are nobody's patients
/// here; FHIR folders: only such members (the insurer knows none of those patients).
pub fn prepare_insurer(base: &Path, seed: u64, source: &Source<'_>) -> Result<Hospital> {
    let dir = base.join(INSURER);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = vault_key(&dir)?;
    let mut vault = Vault::open(&dir, &key)?;
    let hospitals = medspace_consortium::HOSPITALS.len() as u32;
    let per_hospital = match source {
        Source::Generated { per_hospital } => *per_hospital,
        Source::Fhir(_) => 0,
    };
    // The hospital's Patient id of each covered patient, by the insurer's member id.
    let mut patient_of = std::collections::BTreeMap::new();
    for h in 0..hospitals {
        for i in 0..per_hospital {
            if medspace_synth::claims::covered(seed, h, i) {
                patient_of.insert(
                    medspace_synth::claims::member_id(seed, h, i),
                    medspace_synth::patient_id(seed, h, i),
                );
            }
        }
    }
    if vault.resource_count() == 0 {
        let opts = IngestOptions {
            on_error: OnError::Skip,
            progress: true,
            vocabulary: None,
            ..IngestOptions::default()
        };
        let members = (0..hospitals)
            .flat_map(|h| (0..per_hospital).map(move |i| (h, i)))
            .filter_map(|(h, i)| medspace_synth::claims::insurer_resources(seed, h, i))
            .flatten();
        let others = medspace_synth::claims::insurer_only_members(seed, per_hospital.max(20))
            .into_iter()
            .flatten();
        let report = vault.ingest_values(
            &format!("synth:seed={seed}:insurer={INSURER}"),
            members.chain(others),
            &opts,
        )?;
        eprintln!("{INSURER}: {}", report.summary_line());
    }
    let mut links = Links::load(&dir, &key)?;
    let mut patients = Vec::new();
    for (person_id, member_id, _) in vault.persons() {
        let Some(fhir_id) = patient_of.get(&member_id) else {
            // A member who is no patient of these hospitals: no pseudonym to link.
            continue;
        };
        let key = medspace_consortium::patient_key(seed, fhir_id);
        let id = PatientId::from_key(&key.public());
        if links.link(person_id, id).is_err() {
            crate::fail!(
                "{} was made by another version of medspace (its patient links differ); remove the directory to start afresh",
                base.display()
            );
        }
        patients.push(Patient { key, id });
    }
    links.save(&dir, &key)?;
    drop(vault);
    Ok(Hospital {
        member: INSURER.to_string(),
        dir,
        key,
        patients,
    })
}
