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
pub const FIELDS: [&str; 8] = [
    "year_of_birth",
    "birth_date",
    "gender",
    "race",
    "ethnicity",
    "death_date",
    "deceased",
    "condition",
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

/// One person's derived values and identity.
struct Person {
    id: i64,
    values: BTreeMap<&'static str, Value>,
}

fn text(v: Option<&str>) -> Value {
    match v {
        Some(s) if !s.is_empty() => Value::Text(s.to_string()),
        _ => Value::Missing,
    }
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, ReleaseError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ReleaseError::Query(format!("column {name} missing or mistyped")))
}

fn run(
    ctx: &datafusion::prelude::SessionContext,
    q: &str,
) -> Result<Vec<RecordBatch>, ReleaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(query_err)?;
    rt.block_on(medspace_vault::sql(ctx, q))
        .map_err(ReleaseError::Vault)
}

/// The person-level values of the vault's persons in `eligible`, by person id.
fn persons(
    ctx: &datafusion::prelude::SessionContext,
    eligible: &BTreeSet<i64>,
) -> Result<Vec<Person>, ReleaseError> {
    let mut out: BTreeMap<i64, Person> = BTreeMap::new();
    let q = "SELECT p.person_id, p.year_of_birth, p.birth_datetime, p.gender_source_value, \
             p.race_source_value, p.ethnicity_source_value, d.death_date \
             FROM person p LEFT JOIN death d ON p.person_id = d.person_id";
    for b in run(ctx, q)? {
        let ids = col::<Int64Array>(&b, "person_id")?;
        let yob = col::<Int32Array>(&b, "year_of_birth")?;
        let birth = col::<Date32Array>(&b, "birth_datetime")?;
        let gender = col::<StringArray>(&b, "gender_source_value")?;
        let race = col::<StringArray>(&b, "race_source_value")?;
        let eth = col::<StringArray>(&b, "ethnicity_source_value")?;
        let death = col::<Date32Array>(&b, "death_date")?;
        for i in 0..b.num_rows() {
            let id = ids.value(i);
            if !eligible.contains(&id) {
                continue;
            }
            fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
                (!a.is_null(i)).then(|| a.value(i))
            }
            let mut values = BTreeMap::new();
            values.insert(
                "year_of_birth",
                if yob.is_null(i) {
                    Value::Missing
                } else {
                    Value::Int(i64::from(yob.value(i)))
                },
            );
            values.insert(
                "birth_date",
                if birth.is_null(i) {
                    Value::Missing
                } else {
                    Value::Date(birth.value(i))
                },
            );
            values.insert("gender", text(opt_str(gender, i)));
            values.insert("race", text(opt_str(race, i)));
            values.insert("ethnicity", text(opt_str(eth, i)));
            let dead = !death.is_null(i);
            values.insert(
                "death_date",
                if dead {
                    Value::Date(death.value(i))
                } else {
                    Value::Missing
                },
            );
            values.insert(
                "deceased",
                Value::Text(if dead { "yes" } else { "no" }.into()),
            );
            values.insert("condition", Value::Text("none".into()));
            out.insert(id, Person { id, values });
        }
    }
    // The principal condition: the code recorded most often (ties: the smallest code).
    let q = "SELECT person_id, condition_source_value AS code, COUNT(*) AS n \
             FROM condition_occurrence WHERE condition_source_value IS NOT NULL GROUP BY 1, 2";
    let mut best: HashMap<i64, (i64, String)> = HashMap::new();
    for b in run(ctx, q)? {
        let ids = col::<Int64Array>(&b, "person_id")?;
        let codes = col::<StringArray>(&b, "code")?;
        let n = col::<Int64Array>(&b, "n")?;
        for i in 0..b.num_rows() {
            let (id, code, n) = (ids.value(i), codes.value(i), n.value(i));
            let better = best
                .get(&id)
                .is_none_or(|(bn, bc)| n > *bn || (n == *bn && code < bc.as_str()));
            if better {
                best.insert(id, (n, code.to_string()));
            }
        }
    }
    for (id, (_, code)) in best {
        if let Some(p) = out.get_mut(&id) {
            p.values.insert("condition", Value::Text(code));
        }
    }
    Ok(out.into_values().collect())
}

/// The displayed form of a sensitive value.
fn shown(v: &Value) -> String {
    medspace_deid::hierarchy::display(v)
}

/// Checks the spec's fields and tables against what the vault can release.
fn check_spec(spec: &ReleaseSpec) -> Result<(), ReleaseError> {
    for f in spec
        .quasi_identifiers
        .iter()
        .map(|q| q.field.as_str())
        .chain(spec.sensitive.iter().map(String::as_str))
    {
        if !FIELDS.contains(&f) {
            return Err(ReleaseError::Spec(format!(
                "`{f}` is not a person-level value of the vault; choose from {}",
                FIELDS.join(", ")
            )));
        }
    }
    for (t, cols) in &spec.tables {
        if t == "person" {
            return Err(ReleaseError::Spec(
                "the person table is the search's output (pseudonym, quasi-identifiers, sensitive attributes): list only event tables".into(),
            ));
        }
        let table =
            cdm_table(t).ok_or_else(|| ReleaseError::Spec(format!("`{t}` is not a CDM table")))?;
        for c in cols {
            if !table.columns.iter().any(|x| x.name == c.as_str()) {
                return Err(ReleaseError::Spec(format!("`{t}.{c}` is not a CDM column")));
            }
            if c == "person_id" {
                return Err(ReleaseError::Spec(format!(
                    "`{t}.person_id` is always released as the pseudonym: do not list it"
                )));
            }
        }
    }
    Ok(())
}

/// What happened to a released column, for the dictionary.
#[derive(Clone, Debug, Serialize)]
struct ColumnNote {
    name: String,
    #[serde(rename = "type")]
    ty: &'static str,
    treatment: String,
}

/// A column being built.
enum Out {
    I64(Vec<Option<i64>>),
    I32(Vec<Option<i32>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
    Date(Vec<Option<i32>>),
}

impl Out {
    fn array(self) -> ArrayRef {
        match self {
            Out::I64(v) => Arc::new(Int64Array::from(v)),
            Out::I32(v) => Arc::new(Int32Array::from(v)),
            Out::F64(v) => Arc::new(Float64Array::from(v)),
            Out::Str(v) => Arc::new(StringArray::from(v)),
            Out::Date(v) => Arc::new(Date32Array::from(v)),
        }
    }
}

/// Whether `s` looks like a code (SNOMED CT, LOINC, RxNorm, a unit): kept as is; anything
/// else in a code column is removed.
fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 24
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '-' | '/' | '[' | ']' | '%' | '{' | '}' | '*' | '^')
        })
}

/// How a date is released.
fn date_out(dates: &Dates, shift: i32, d: i32) -> i32 {
    match dates {
        Dates::ShiftDays(_) => d.saturating_add(shift),
        Dates::Month => {
            let (y, m, _) = medspace_deid::hierarchy::civil_from_days(d);
            medspace_deid::hierarchy::days_from_civil(y, m, 1)
        }
        Dates::Year => {
            let (y, _, _) = medspace_deid::hierarchy::civil_from_days(d);
            medspace_deid::hierarchy::days_from_civil(y, 1, 1)
        }
    }
}

fn date_note(dates: &Dates) -> String {
    match dates {
        Dates::ShiftDays(n) => format!("shifted by the person's offset, uniform in ±{n} days"),
        Dates::Month => "cut to the first day of its month".into(),
        Dates::Year => "cut to the first day of its year".into(),
    }
}

/// Builds the release of `req` from the vault at `node_dir` for the persons linked and
/// consenting on `state`, writes it to [`release_dir`], and returns it (nothing is published).
pub fn build(
    node_dir: &Path,
    key: &VaultKey,
    state: &State,
    height: u64,
    req: &Request<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Built, ReleaseError> {
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
    let ctx = medspace_vault::open_session(node_dir, key)?;
    let people = persons(&ctx, &eligible)?;
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
        let (batch, notes) = ev.table(&ctx, t, &cols, &mut visits)?;
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

/// The person table: pseudonym, generalized quasi-identifiers, sensitive values.
fn person_table(
    plan: &Plan,
    data: &Microdata,
    kept: &[&Person],
    order: &[usize],
    pseud: &Pseudonymizer,
) -> Result<(RecordBatch, Vec<ColumnNote>), ReleaseError> {
    let mut fields = vec![Field::new("person_id", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(
        order
            .iter()
            .filter_map(|&j| kept.get(j))
            .map(|p| pseud.pseudonym(&p.id.to_string()))
            .collect::<Vec<_>>(),
    ))];
    let mut notes = vec![ColumnNote {
        name: "person_id".into(),
        ty: "string",
        treatment: "per-release keyed pseudonym (HMAC-SHA-256)".into(),
    }];
    let labels = plan.labels();
    for (q, name) in plan.fields.iter().enumerate() {
        fields.push(Field::new(name, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(
            order
                .iter()
                .map(|&j| labels.get(j).and_then(|row| row.get(q).cloned()))
                .collect::<Vec<_>>(),
        )));
        notes.push(ColumnNote {
            name: name.clone(),
            ty: "string",
            treatment: format!(
                "quasi-identifier, generalized: {}",
                plan.node.names.get(q).cloned().unwrap_or_default()
            ),
        });
    }
    let sensitive = plan.sensitive(data);
    for (s, name) in data.sensitive.iter().enumerate() {
        fields.push(Field::new(name, DataType::Utf8, true));
        columns.push(Arc::new(StringArray::from(
            order
                .iter()
                .map(|&j| sensitive.get(j).and_then(|row| row.get(s).cloned()))
                .collect::<Vec<_>>(),
        )));
        notes.push(ColumnNote {
            name: name.clone(),
            ty: "string",
            treatment: "sensitive attribute, as recorded (l-diversity and t-closeness hold over it)"
                .into(),
        });
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(query_err)?;
    Ok((batch, notes))
}

/// The direct identifiers of the released persons as the vault's Patient resources record
/// them: names, addresses, telecoms, identifiers (every one is searched for and removed from
/// free text).
fn direct_identifiers(
    node_dir: &Path,
    key: &VaultKey,
    kept: &[&Person],
) -> Result<Vec<String>, ReleaseError> {
    let vault = medspace_vault::Vault::open_read_only(node_dir, key)?;
    let wanted: HashSet<i64> = kept.iter().map(|p| p.id).collect();
    let keys: Vec<String> = vault
        .persons()
        .into_iter()
        .filter(|(person, _, _)| wanted.contains(person))
        .map(|(_, id, _)| format!("Patient/{id}"))
        .collect();
    let mut out = Vec::new();
    for (_, r) in vault.load_resources(&keys)? {
        out.extend(patient_identifiers(&r));
    }
    Ok(out)
}

/// A Patient's direct identifiers: its id, every name part, address line, city and postal
/// code, telecom value and identifier value.
pub fn patient_identifiers(r: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(id) = r.get("id").and_then(|v| v.as_str()) {
        out.push(id.to_string());
    }
    let strings = |v: Option<&serde_json::Value>, out: &mut Vec<String>| match v {
        Some(serde_json::Value::String(s)) => out.push(s.clone()),
        Some(serde_json::Value::Array(a)) => {
            out.extend(a.iter().filter_map(|x| x.as_str().map(String::from)))
        }
        _ => {}
    };
    let list = |k: &str| {
        r.get(k)
            .and_then(|v| v.as_array())
            .cloned()
            .unwrap_or_default()
    };
    for n in list("name") {
        for k in ["family", "given", "text", "prefix", "suffix"] {
            strings(n.get(k), &mut out);
        }
    }
    for a in list("address") {
        for k in ["line", "city", "postalCode", "text"] {
            strings(a.get(k), &mut out);
        }
    }
    for t in list("telecom") {
        strings(t.get("value"), &mut out);
    }
    for i in list("identifier") {
        strings(i.get("value"), &mut out);
    }
    out.retain(|s| s.chars().filter(|c| c.is_alphanumeric()).count() >= 2);
    out
}

/// What an event table's rows become.
struct Events<'a> {
    dates: &'a Dates,
    kept: &'a HashMap<i64, (String, i32)>,
    scrubber: &'a Scrubber,
    listed: &'a HashSet<String>,
    release_visits: bool,
}

impl Events<'_> {
    fn table(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        name: &str,
        cols: &[String],
        visits: &mut HashMap<i64, i64>,
    ) -> Result<(RecordBatch, Vec<ColumnNote>), ReleaseError> {
        let table = cdm_table(name).ok_or_else(|| ReleaseError::Spec(format!("`{name}`")))?;
        let row_id = table
            .columns
            .first()
            .filter(|c| c.name != "person_id")
            .map(|c| c.name);
        let mut select: Vec<String> = vec!["person_id".into()];
        select.extend(row_id.map(String::from));
        select.extend(cols.iter().filter(|c| Some(c.as_str()) != row_id).cloned());
        let q = format!(
            "SELECT {} FROM {name} ORDER BY person_id{}",
            select.join(", "),
            row_id.map(|r| format!(", {r}")).unwrap_or_default()
        );
        let batches = run(ctx, &q)?;
        let mut out: Vec<(String, Out, ColumnNote)> = Vec::new();
        let note = |n: &str, ty: &'static str, t: String| ColumnNote {
            name: n.into(),
            ty,
            treatment: t,
        };
        out.push((
            "person_id".into(),
            Out::Str(Vec::new()),
            note("person_id", "string", "the person table's pseudonym".into()),
        ));
        for c in cols {
            let Some(def) = table.columns.iter().find(|x| x.name == c.as_str()) else {
                continue;
            };
            let (o, ty, t) = if Some(c.as_str()) == row_id {
                (
                    Out::I64(Vec::new()),
                    "int64",
                    "renumbered in the extract".to_string(),
                )
            } else if c == "visit_occurrence_id" {
                (
                    Out::I64(Vec::new()),
                    "int64",
                    if self.release_visits {
                        "the renumbered visit".into()
                    } else {
                        "empty: visits are not released".into()
                    },
                )
            } else {
                match def.ty {
                    ColumnType::Int64 => (Out::I64(Vec::new()), "int64", "as recorded".into()),
                    ColumnType::Int32 => (Out::I32(Vec::new()), "int32", "as recorded".into()),
                    ColumnType::Float64 => (Out::F64(Vec::new()), "float64", "as recorded".into()),
                    ColumnType::Date32 => (Out::Date(Vec::new()), "date", date_note(self.dates)),
                    ColumnType::Utf8 if free_text(c) => (
                        Out::Str(Vec::new()),
                        "string",
                        "free text, direct identifiers removed".into(),
                    ),
                    ColumnType::Utf8 => (
                        Out::Str(Vec::new()),
                        "string",
                        "code as recorded; anything that is not a code is removed".into(),
                    ),
                }
            };
            out.push((c.clone(), o, note(c, ty, t)));
        }
        // Rows in the order of the persons' pseudonyms (then as recorded): nothing of the
        // vault's own order (its person ids, its ingest order) shows in the extract.
        let mut rows: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
        for (bi, b) in batches.iter().enumerate() {
            let pid = col::<Int64Array>(b, "person_id")?;
            for i in 0..b.num_rows() {
                if let Some((pseudonym, _)) = self.kept.get(&pid.value(i)) {
                    rows.entry(pseudonym.as_str()).or_default().push((bi, i));
                }
            }
        }
        let mut next_row = 0i64;
        for (bi, i) in rows.into_values().flatten() {
            let Some(b) = batches.get(bi) else { continue };
            let pid = col::<Int64Array>(b, "person_id")?;
            let Some((pseudonym, shift)) = self.kept.get(&pid.value(i)) else {
                continue;
            };
            next_row += 1;
            if name == "visit_occurrence"
                && let Some(r) = row_id
            {
                visits.insert(col::<Int64Array>(b, r)?.value(i), next_row);
            }
            for (c, o, _) in out.iter_mut() {
                let arr = b
                    .column_by_name(c)
                    .ok_or_else(|| ReleaseError::Query(format!("column {c} missing")))?;
                self.push(
                    c,
                    o,
                    arr.as_ref(),
                    i,
                    pseudonym,
                    *shift,
                    row_id,
                    next_row,
                    visits,
                )?;
            }
        }
        let mut fields = Vec::new();
        let mut arrays = Vec::new();
        let mut notes = Vec::new();
        for (c, o, n) in out {
            let a = o.array();
            fields.push(Field::new(&c, a.data_type().clone(), true));
            arrays.push(a);
            notes.push(n);
        }
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(query_err)?;
        Ok((batch, notes))
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        c: &str,
        o: &mut Out,
        arr: &dyn Array,
        i: usize,
        pseudonym: &str,
        shift: i32,
        row_id: Option<&str>,
        next_row: i64,
        visits: &HashMap<i64, i64>,
    ) -> Result<(), ReleaseError> {
        let null = arr.is_null(i);
        let mistyped = || ReleaseError::Query(format!("column {c} mistyped"));
        match o {
            Out::Str(v) if c == "person_id" => v.push(Some(pseudonym.to_string())),
            Out::I64(v) if Some(c) == row_id => v.push(Some(next_row)),
            Out::I64(v) if c == "visit_occurrence_id" => {
                let a = arr
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(mistyped)?;
                v.push(if null || !self.release_visits {
                    None
                } else {
                    visits.get(&a.value(i)).copied()
                });
            }
            Out::I64(v) => {
                let a = arr
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(mistyped)?;
                v.push((!null).then(|| a.value(i)));
            }
            Out::I32(v) => {
                let a = arr
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .ok_or_else(mistyped)?;
                v.push((!null).then(|| a.value(i)));
            }
            Out::F64(v) => {
                let a = arr
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or_else(mistyped)?;
                v.push((!null).then(|| a.value(i)));
            }
            Out::Date(v) => {
                let a = arr
                    .as_any()
                    .downcast_ref::<Date32Array>()
                    .ok_or_else(mistyped)?;
                v.push((!null).then(|| date_out(self.dates, shift, a.value(i))));
            }
            Out::Str(v) => {
                let a = arr
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(mistyped)?;
                v.push((!null).then(|| {
                    let s = a.value(i);
                    if free_text(c) {
                        self.scrubber.scrub(s).into_owned()
                    } else if is_code(s) && !self.listed.contains(&s.to_lowercase()) {
                        s.to_string()
                    } else {
                        medspace_deid::identifiers::REMOVED.to_string()
                    }
                }));
            }
        }
        Ok(())
    }
}

/// Columns that hold free text rather than codes.
fn free_text(c: &str) -> bool {
    matches!(c, "value_as_string" | "value_source_value")
}

/// A written table: its name, rows and each column's missing share in ppm.
struct Written {
    name: String,
    rows: u64,
    missing: Vec<(String, u64)>,
}

/// Writes `batch` as `<name>.parquet` and `<name>.csv`.
fn write_table(dir: &Path, name: &str, batch: &RecordBatch) -> Result<Written, ReleaseError> {
    let path = dir.join(format!("{name}.parquet"));
    let file = std::fs::File::create(&path).map_err(io_err(&path))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).map_err(query_err)?;
    w.write(batch).map_err(query_err)?;
    w.close().map_err(query_err)?;
    let csv = to_csv(batch)?;
    write_file(dir, &format!("{name}.csv"), csv.as_bytes())?;
    let rows = batch.num_rows() as u64;
    let missing = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| {
            let ppm = (c.null_count() as u64 * 1_000_000)
                .checked_div(rows)
                .unwrap_or(0);
            (f.name().clone(), ppm)
        })
        .collect();
    Ok(Written {
        name: name.to_string(),
        rows,
        missing,
    })
}

/// RFC 4180 CSV of a batch: a header, then one line per row; dates as `YYYY-MM-DD`, nulls
/// empty.
fn to_csv(batch: &RecordBatch) -> Result<String, ReleaseError> {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let schema = batch.schema();
    let mut out = schema
        .fields()
        .iter()
        .map(|f| quote(f.name()))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    let cols = batch.columns();
    for i in 0..batch.num_rows() {
        let mut cells = Vec::with_capacity(cols.len());
        for c in cols {
            if c.is_null(i) {
                cells.push(String::new());
                continue;
            }
            let any = c.as_any();
            let cell = if let Some(a) = any.downcast_ref::<StringArray>() {
                quote(a.value(i))
            } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                a.value(i).to_string()
            } else if let Some(a) = any.downcast_ref::<Int32Array>() {
                a.value(i).to_string()
            } else if let Some(a) = any.downcast_ref::<Float64Array>() {
                a.value(i).to_string()
            } else if let Some(a) = any.downcast_ref::<Date32Array>() {
                let (y, m, d) = medspace_deid::hierarchy::civil_from_days(a.value(i));
                format!("{y:04}-{m:02}-{d:02}")
            } else {
                return Err(ReleaseError::Query("unexpected column type".into()));
            };
            cells.push(cell);
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    Ok(out)
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
