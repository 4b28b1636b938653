//! A hospital's de-identified release for the open pool, built from its vault.
//!
//! Who is in it: the persons linked to a ledger pseudonym whose consent allows every purpose the
//! release is for (at L1, at the ledger height the release records). Unlinked persons, and
//! anyone who has not consented, never enter it.
//!
//! What is in it, under a [`ReleaseSpec`] (approved as the contract's computation):
//! - `person`: one row per released person: a per-release pseudonym
//!   ([`medspace_deid::pseudonym::Pseudonymizer`]; unlinkable across releases unless the spec
//!   says `linkable`), the quasi-identifiers at the generalization the lattice search chose
//!   ([`medspace_deid::plan`]), and the declared sensitive attributes. Persons of classes that
//!   fail k, l or t are suppressed (within the spec's budget), with all their rows.
//! - every other table the spec lists, with the columns it lists (OMOP CDM names): the person
//!   id replaced by the pseudonym, row ids renumbered in the extract, visit references mapped to
//!   the renumbered visits (or emptied when visits are not released), every date shifted by the
//!   person's offset (`dates: {"shift_days": n}`) or cut to its month or year, code columns kept
//!   only when they look like codes, free text scrubbed of the input's direct identifiers
//!   ([`medspace_deid::identifiers::Scrubber`]). `person_source_value` (the ledger pseudonym)
//!   and the vault's raw person columns are never released.
//! - `data_dictionary.json` (each column and what was done to it), `risk_report.json` and
//!   `risk_report.html` (k, l, t, the prosecutor, journalist and marketer risks, the loss),
//!   every table as Parquet and CSV, and `manifest.json`: each file's size and SHA-256. The
//!   manifest's hash is the catalog entry's `content_hash`, so a recipient checks every byte
//!   against the ledger.
//!
//! The quasi-identifiers and sensitive attributes a spec may name are person-level values the
//! vault derives ([`FIELDS`]). The guarantees cover the declared quasi-identifiers; event-level
//! detail (dates, rare codes) is limited by shifting or generalizing dates, which the
//! dictionary states.

mod persons;
mod tables;

pub use persons::patient_identifiers;
use persons::*;
use tables::*;

use crate::links::Links;
use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use medspace_deid::identifiers::Scrubber;
use medspace_deid::pseudonym::Pseudonymizer;
use medspace_deid::spec::Dates;
use medspace_deid::{Microdata, Parents, Plan, Progress, Record, ReleaseSpec, Report, Value};
use medspace_state::State;
use medspace_types::cdm::{ColumnType, table as cdm_table};
use medspace_types::{
    DatasetDescription, DatasetId, FieldDesc, Hash, Level, List, Purpose, ReleaseFigures,
    TableDesc, Text,
};
use medspace_vault::VaultKey;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The person-level values a spec may name as quasi-identifiers or sensitive attributes.
pub const FIELDS: [&str; 9] = [
    "year_of_birth",
    "birth_date",
    "gender",
    "race",
    "ethnicity",
    "death_date",
    "deceased",
    "condition",
    "zip",
];

/// The release's format, named in its manifest.
pub const FORMAT: &str = "medspace-release/1";

/// Why a release could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The vault could not be read.
    #[error("vault: {0}")]
    Vault(#[from] medspace_vault::VaultError),
    /// The links could not be read.
    #[error("links: {0}")]
    Links(#[from] crate::links::LinkError),
    /// The ledger state could not be read.
    #[error("ledger: {0}")]
    Ledger(#[from] medspace_state::TxError),
    /// The specification or the search refused.
    #[error("de-identification: {0}")]
    Deid(#[from] medspace_deid::DeidError),
    /// A query over the vault failed.
    #[error("query: {0}")]
    Query(String),
    /// The specification names something the vault cannot release.
    #[error("release specification: {0}")]
    Spec(String),
    /// Writing the files failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn query_err(e: impl std::fmt::Display) -> ReleaseError {
    ReleaseError::Query(e.to_string())
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ReleaseError + '_ {
    move |e| ReleaseError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// What the release is and is for.
pub struct Request<'a> {
    /// The release's own dataset id (its catalog entry).
    pub release: &'a DatasetId,
    /// The hospital's dataset it derives from.
    pub source: &'a DatasetId,
    /// The specification.
    pub spec: &'a ReleaseSpec,
    /// The purposes every released person consented to.
    pub purposes: &'a [Purpose],
    /// Parent codes for `tree` hierarchies (may be empty).
    pub parents: &'a Parents,
}

/// A file of the release, as its manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ManifestFile {
    /// The file name (no directories).
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// The release's manifest: what it is and every file with its hash.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The release's dataset id.
    pub dataset: String,
    /// The dataset it derives from.
    pub source: String,
    /// SHA-256 of the specification, hex.
    pub spec_hash: String,
    /// The ledger height whose consents selected the persons.
    pub consent_height: u64,
    /// The files.
    pub files: Vec<ManifestFile>,
}

/// A built release.
pub struct Built {
    /// Where its files are.
    pub dir: PathBuf,
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// Their hash: the catalog entry's `content_hash`.
    pub content_hash: Hash,
    /// The risk report.
    pub report: Report,
    /// What the ledger entry states.
    pub figures: ReleaseFigures,
    /// The catalog entry to publish (L1 fields, the next version).
    pub entry: DatasetDescription,
    /// Persons who could have been in it (linked and consenting).
    pub eligible: u64,
}

/// The directory of a node's release `dataset`.
pub fn release_dir(node_dir: &Path, dataset: &DatasetId) -> PathBuf {
    node_dir.join("releases").join(dataset.as_str())
}

/// Builds the release of `req` from the site's vault (its queries on the site's engine) for the persons linked and
/// consenting on `state`, writes it to [`release_dir`], and returns it (nothing is published).
pub fn build(
    vault: crate::federated::SiteVault<'_>,
    state: &State,
    height: u64,
    req: &Request<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Built, ReleaseError> {
    let (node_dir, key) = (vault.dir, vault.key);
    let spec = req.spec;
    check_spec(spec)?;
    if req.purposes.is_empty() {
        return Err(ReleaseError::Spec(
            "name at least one purpose its persons consented to".into(),
        ));
    }
    // Who may be in it: linked, and consenting to every purpose at L1 at this height.
    let links = Links::load(node_dir, key)?;
    let mut eligible = BTreeSet::new();
    for (person, patient) in links.iter() {
        let mut ok = true;
        for p in req.purposes {
            ok &= state.consent_allows(patient, *p, None, Level::L1, height)?;
        }
        if ok {
            eligible.insert(person);
        }
    }
    let session = vault.engine.session(node_dir, key).map_err(query_err)?;
    let ctx = session.ctx();
    let mut people = persons(ctx, &eligible)?;
    postal_codes(node_dir, key, &mut people)?;
    let secret = key.release_secret();
    let pseud = Pseudonymizer::new(
        &secret,
        req.source.as_str(),
        req.release.as_str(),
        spec.linkable,
    );
    let shift_days = match spec.dates {
        Dates::ShiftDays(n) => n,
        _ => 0,
    };
    let shift_of = |id: i64| pseud.date_shift(&id.to_string(), shift_days);
    // The microdata, dates of shifted releases shifted before the search.
    let data = Microdata {
        qi: spec
            .quasi_identifiers
            .iter()
            .map(|q| q.field.clone())
            .collect(),
        sensitive: spec.sensitive.clone(),
        rows: people
            .iter()
            .map(|p| {
                let shift = shift_of(p.id);
                let value = |f: &str| match p.values.get(f).cloned().unwrap_or(Value::Missing) {
                    Value::Date(d) if shift_days > 0 => Value::Date(d.saturating_add(shift)),
                    v => v,
                };
                Record {
                    qi: spec
                        .quasi_identifiers
                        .iter()
                        .map(|q| value(&q.field))
                        .collect(),
                    sensitive: spec.sensitive.iter().map(|s| shown(&value(s))).collect(),
                }
            })
            .collect(),
    };
    let plan = medspace_deid::plan(spec, &data, req.parents, progress)?;
    // The released persons, in the order of their pseudonyms (the plan's labels follow).
    let mut order: Vec<usize> = (0..plan.kept.len()).collect();
    let pseudonym_at = |j: usize| {
        plan.kept
            .get(j)
            .and_then(|&i| people.get(i))
            .map(|p| pseud.pseudonym(&p.id.to_string()))
            .unwrap_or_default()
    };
    order.sort_by_cached_key(|&j| pseudonym_at(j));
    let kept: Vec<&Person> = plan.kept.iter().filter_map(|&i| people.get(i)).collect();
    let dir = release_dir(node_dir, req.release);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut dictionary: BTreeMap<String, Vec<ColumnNote>> = BTreeMap::new();
    let mut tables: Vec<Written> = Vec::new();
    // The person table.
    let (batch, notes) = person_table(&plan, &data, &kept, &order, &pseud)?;
    tables.push(write_table(&dir, "person", &batch)?);
    dictionary.insert("person".into(), notes);
    // The event tables.
    let identifiers = direct_identifiers(node_dir, key, &kept)?;
    let scrubber = Scrubber::new(&identifiers)?;
    let listed: HashSet<String> = identifiers.iter().map(|s| s.to_lowercase()).collect();
    let kept_ids: HashMap<i64, (String, i32)> = kept
        .iter()
        .map(|p| (p.id, (pseud.pseudonym(&p.id.to_string()), shift_of(p.id))))
        .collect();
    let mut visits: HashMap<i64, i64> = HashMap::new();
    let mut order: Vec<&String> = spec.tables.keys().collect();
    // Visits first, so that the other tables' visit references follow their renumbering.
    order.sort_by_key(|t| (t.as_str() != "visit_occurrence", t.as_str()));
    for t in order {
        let cols = spec.tables.get(t).cloned().unwrap_or_default();
        let ev = Events {
            dates: &spec.dates,
            kept: &kept_ids,
            scrubber: &scrubber,
            listed: &listed,
            release_visits: spec.tables.contains_key("visit_occurrence"),
        };
        let (batch, notes) = ev.table(ctx, t, &cols, &mut visits)?;
        tables.push(write_table(&dir, t, &batch)?);
        dictionary.insert(t.clone(), notes);
    }
    let report = plan.report.clone();
    write_file(&dir, "risk_report.json", report.to_json().as_bytes())?;
    write_file(&dir, "risk_report.html", report.to_html().as_bytes())?;
    let dict = serde_json::to_vec_pretty(&serde_json::json!({
        "format": FORMAT,
        "dataset": req.release.as_str(),
        "layout": "OMOP CDM 5.4 table and column names; person is the release's person table",
        "tables": dictionary,
    }))
    .map_err(query_err)?;
    write_file(&dir, "data_dictionary.json", &dict)?;
    let manifest = manifest(&dir, req, spec, height)?;
    let content_hash = medspace_worker::releases::manifest_hash(&manifest);
    write_file(&dir, "manifest.json", &manifest)?;
    let figures = figures_of(&report, req, height)?;
    let entry = entry_of(state, req, &tables, content_hash)?;
    Ok(Built {
        dir,
        manifest,
        content_hash,
        report,
        figures,
        entry,
        eligible: eligible.len() as u64,
    })
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ReleaseError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(io_err(&path))
}

/// The manifest of the files in `dir`, sorted by name.
fn manifest(
    dir: &Path,
    req: &Request<'_>,
    spec: &ReleaseSpec,
    height: u64,
) -> Result<Vec<u8>, ReleaseError> {
    let mut files = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    for p in names {
        let Some(name) = p.file_name().and_then(|n| n.to_str()).map(String::from) else {
            continue;
        };
        if name == "manifest.json" {
            continue;
        }
        let bytes = std::fs::read(&p).map_err(io_err(&p))?;
        files.push(ManifestFile {
            name,
            bytes: bytes.len() as u64,
            sha256: hex::encode(Hash::of(&[&bytes]).0),
        });
    }
    let m = Manifest {
        format: FORMAT.into(),
        dataset: req.release.to_string(),
        source: req.source.to_string(),
        spec_hash: spec.hash_hex(),
        consent_height: height,
        files,
    };
    serde_json::to_vec_pretty(&m).map_err(query_err)
}

/// The hash a manifest lists for a file's bytes.
pub fn file_hash(bytes: &[u8]) -> String {
    hex::encode(Hash::of(&[bytes]).0)
}

fn ppm(x: f64) -> u32 {
    let v = (x * 1_000_000.0).round();
    if v.is_finite() && v >= 0.0 {
        (v as u64).min(1_000_000) as u32
    } else {
        0
    }
}

/// The figures the ledger entry states, from the report.
fn figures_of(
    report: &Report,
    req: &Request<'_>,
    height: u64,
) -> Result<ReleaseFigures, ReleaseError> {
    let f = &report.figures;
    let k = u32::try_from(f.k).unwrap_or(u32::MAX);
    let l = f
        .distinct_l()
        .map_or(0, |l| u32::try_from(l).unwrap_or(u32::MAX));
    let spec_hash = Hash(req.spec.hash());
    Ok(ReleaseFigures {
        source: req.source.clone(),
        purposes: List::new(req.purposes.to_vec())
            .map_err(|e| ReleaseError::Spec(e.to_string()))?,
        consent_height: height,
        spec_hash,
        k,
        l,
        persons: f.records,
        suppressed: report.suppressed,
        prosecutor_max_ppm: ppm(report.risk.prosecutor.highest),
        prosecutor_avg_ppm: ppm(report.risk.prosecutor.average),
        journalist_max_ppm: ppm(report.risk.journalist.highest),
        marketer_ppm: ppm(report.risk.marketer),
        at_risk_ppm: ppm(report.risk.prosecutor.records_at_risk),
    })
}

/// The catalog entry: every table and column at L1, with its rows and missing share, the next
/// version of the release's id.
fn entry_of(
    state: &State,
    req: &Request<'_>,
    tables: &[Written],
    content_hash: Hash,
) -> Result<DatasetDescription, ReleaseError> {
    let version = state
        .dataset(req.release)?
        .map_or(1, |d| d.description.version.saturating_add(1));
    let bad = |e: medspace_types::TypeError| ReleaseError::Spec(e.to_string());
    let mut descs = Vec::new();
    for Written {
        name,
        rows,
        missing: cols,
    } in tables
    {
        let fields = cols
            .iter()
            .map(|(c, missing)| {
                Ok(FieldDesc {
                    name: Text::new(c).map_err(bad)?,
                    level: Level::L1,
                    missing_ppm: u32::try_from(*missing).unwrap_or(1_000_000),
                    invalid_ppm: 0,
                })
            })
            .collect::<Result<Vec<_>, ReleaseError>>()?;
        descs.push(TableDesc {
            name: Text::new(name).map_err(bad)?,
            rows: *rows,
            duplicate_ppm: 0,
            implausible_ppm: 0,
            fields: List::new(fields).map_err(bad)?,
        });
    }
    Ok(DatasetDescription {
        id: req.release.clone(),
        title: Text::new(format!("De-identified release of {}", req.source)).map_err(bad)?,
        version,
        tables: List::new(descs).map_err(bad)?,
        content_hash,
    })
}
