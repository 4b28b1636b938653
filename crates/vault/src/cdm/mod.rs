//! The common-data-model tables (OMOP CDM 5.4 names), their Arrow schemas, Parquet writing, and
//! the mapping of FHIR R4 resources onto rows.
//!
//! Column names follow OMOP CDM 5.4 where a column applies; the `*_source_value` columns keep the
//! bare source code (SNOMED CT, LOINC, RxNorm, CVX) and are what queries filter on. Concept ids
//! come from the vocabulary subset and are 0 when a code is not covered.
//!
//! Module map:
//! * `tables` — the schema: every table and column (name, type, nullability). The one place
//!   tables and columns are defined; everything else derives from it.
//! * `writer` — Arrow schemas, row buffers, Parquet files.
//! * this file — `map_resource`, which hands a resource to the mapper of its family, and
//!   what the mappers share (row ids, reference resolution, the vocabulary).
//! * one mapper per resource family: `person` (Patient → person), `location` (Patient →
//!   location: the region of the person's address, the postal code cut to three characters),
//!   `death` (Patient → death),
//!   `visit` (Encounter → visit_occurrence), `condition` (Condition → condition_occurrence),
//!   `drug` (MedicationRequest / MedicationStatement / MedicationAdministration / Immunization →
//!   drug_exposure), `observation` (Observation → measurement or observation), `allergy`
//!   (AllergyIntolerance → observation), `procedure` (Procedure → procedure_occurrence),
//!   `cost` (ExplanationOfBenefit → cost: what the visit it bills cost, charged and paid).
//! * `extract` — reading codings, references, dates and extensions from a resource.

mod allergy;
mod condition;
mod cost;
mod death;
mod drug;
mod extract;
mod location;
mod observation;
mod person;
mod procedure;
pub mod tables;
mod visit;
mod writer;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::VaultError;
use crate::fhir::{RefTarget, parse_reference};
use crate::vocab::{CodeSystem, Mapped, Vocabulary};
use extract::ref_of;

pub use tables::{CDM, Column, ColumnType, TABLES, Table, columns};
pub use writer::schema;
pub(crate) use writer::{CdmWriter, Val};

/// "EHR" record type concept (OMOP type concept 32817).
const TYPE_EHR: i32 = 32817;

/// Next row id per table (persisted in the manifest).
pub(crate) type Counters = BTreeMap<String, i64>;

pub(crate) fn next_id(counters: &mut Counters, table: &str) -> i64 {
    let slot = counters.entry(table.to_string()).or_insert(1);
    let id = *slot;
    *slot += 1;
    id
}

/// Resolves references to local ids while mapping.
pub(crate) trait Resolve {
    /// person_id of the Patient a reference points to.
    fn person(&self, target: &RefTarget) -> Option<i64>;
    /// visit_occurrence_id of the Encounter a reference points to.
    fn visit(&self, target: &RefTarget) -> Option<i64>;
}

/// The CDM rows one resource produced: (table, first row id, count), a span per run of
/// consecutive ids in a table. The row id is a table's first column (`person_id` for `person`
/// and `death`, `location_id`, equal to the person's `person_id`, for `location`).
#[derive(Debug, Default)]
pub(crate) struct RowLog(pub Vec<(&'static str, i64, u32)>);

impl RowLog {
    /// Notes row `id` of `table` (one of [`TABLES`]: the writer refused any other before).
    fn note(&mut self, table: &str, id: i64) {
        if let Some(last) = self.0.last_mut()
            && last.0 == table
            && last.1.checked_add(i64::from(last.2)) == Some(id)
        {
            last.2 += 1;
            return;
        }
        if let Some(t) = medspace_types::cdm::table(table) {
            self.0.push((t.name, id, 1));
        }
    }
}

/// What every mapper works with: the vocabulary, reference resolution, row ids and the writer.
struct Mapping<'a> {
    vocab: &'a Vocabulary,
    resolve: &'a dyn Resolve,
    counters: &'a mut Counters,
    out: &'a mut CdmWriter,
    log: &'a mut RowLog,
}

impl Mapping<'_> {
    /// person_id of the Patient that `v.<field>` refers to.
    fn person_of(&self, v: &Value, field: &str) -> Option<i64> {
        ref_of(v, field)
            .and_then(parse_reference)
            .and_then(|t| self.resolve.person(&t))
    }

    /// visit_occurrence_id of the Encounter of `v` (see [`visit_of`]).
    fn visit_of(&self, v: &Value) -> Option<i64> {
        visit_of(v, self.resolve)
    }

    /// Concept ids of a coding (zeros when there is none).
    fn concepts(&self, code: Option<(CodeSystem, &str)>) -> Mapped {
        code.map(|(s, c)| self.vocab.map(s, c)).unwrap_or_default()
    }

    /// The next row id of `table`.
    fn next_id(&mut self, table: &str) -> i64 {
        next_id(self.counters, table)
    }

    fn push(&mut self, table: &str, row: &[Val<'_>]) -> Result<(), VaultError> {
        self.out.push(table, row)?;
        if let Some(Val::I64(Some(id))) = row.first() {
            self.log.note(table, *id);
        }
        Ok(())
    }
}

/// visit_occurrence_id of the Encounter a resource's rows refer to: its `encounter`, else its
/// `context`; a claim (Claim, ExplanationOfBenefit) without either, the first of its items'
/// `encounter` references that resolves. The mappers and the segment index (which takes what
/// refers to a deleted Encounter with it) read it alike.
pub(crate) fn visit_of(v: &Value, resolve: &dyn Resolve) -> Option<i64> {
    let visit = |r: &str| parse_reference(r).and_then(|t| resolve.visit(&t));
    if let Some(r) = ref_of(v, "encounter").or_else(|| ref_of(v, "context")) {
        return visit(r);
    }
    let claim = matches!(
        v.get("resourceType").and_then(Value::as_str),
        Some("Claim" | "ExplanationOfBenefit")
    );
    if !claim {
        return None;
    }
    v.get("item")?
        .as_array()?
        .iter()
        .filter_map(|i| i.get("encounter").and_then(Value::as_array))
        .flatten()
        .filter_map(|e| e.get("reference").and_then(Value::as_str))
        .find_map(visit)
}

/// Maps one stored resource to CDM rows. `own_row_id` is the person_id of a Patient or the
/// visit_occurrence_id of an Encounter. Resource types without a CDM table produce no rows.
/// The rows written are noted in `log`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn map_resource(
    v: &Value,
    own_row_id: Option<i64>,
    pseudonym: &dyn Fn(&str) -> String,
    vocab: &Vocabulary,
    resolve: &dyn Resolve,
    counters: &mut Counters,
    out: &mut CdmWriter,
    log: &mut RowLog,
) -> Result<(), VaultError> {
    let mut m = Mapping {
        vocab,
        resolve,
        counters,
        out,
        log,
    };
    match v.get("resourceType").and_then(Value::as_str).unwrap_or("") {
        "Patient" => {
            let Some(pid) = own_row_id else {
                return Ok(());
            };
            let location = location::map(v, pid, &mut m)?;
            person::map(v, pid, location, pseudonym, &mut m)?;
            death::map(v, pid, &mut m)
        }
        "Encounter" => visit::map(v, own_row_id, &mut m),
        "Condition" => condition::map(v, &mut m),
        rtype @ ("MedicationRequest"
        | "MedicationStatement"
        | "MedicationAdministration"
        | "Immunization") => drug::map(v, rtype, &mut m),
        "Procedure" => procedure::map(v, &mut m),
        "AllergyIntolerance" => allergy::map(v, &mut m),
        "Observation" => observation::map(v, &mut m),
        "ExplanationOfBenefit" => cost::map(v, &mut m),
        _ => Ok(()),
    }
}
