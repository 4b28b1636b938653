//! The common-data-model tables (OMOP CDM 5.4 names), their Arrow schemas, Parquet writing, and
//! the mapping of FHIR R4 resources onto rows.
//!
//! Column names follow OMOP CDM 5.4 where a column applies; the `*_source_value` columns keep the
//! bare source code (SNOMED CT, LOINC, RxNorm, CVX) and are what queries filter on. Concept ids
//! come from the vocabulary subset and are 0 when a code is not covered.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

use crate::error::VaultError;
use crate::fhir::{RefTarget, parse_date, parse_reference};
use crate::vocab::{CodeSystem, Vocabulary};

/// The CDM tables, in a fixed order.
pub const TABLES: [&str; 8] = [
    "person",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "measurement",
    "observation",
    "procedure_occurrence",
    "death",
];

/// "EHR" record type concept (OMOP type concept 32817).
const TYPE_EHR: i32 = 32817;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    I64,
    I32,
    F64,
    Str,
    Date,
}

pub(crate) struct Col {
    pub name: &'static str,
    pub ty: Ty,
    pub nullable: bool,
}

const fn c(name: &'static str, ty: Ty) -> Col {
    Col {
        name,
        ty,
        nullable: true,
    }
}
const fn key(name: &'static str) -> Col {
    Col {
        name,
        ty: Ty::I64,
        nullable: false,
    }
}

const PERSON: &[Col] = &[
    key("person_id"),
    c("gender_concept_id", Ty::I32),
    c("year_of_birth", Ty::I32),
    c("month_of_birth", Ty::I32),
    c("day_of_birth", Ty::I32),
    c("birth_datetime", Ty::Date),
    c("race_concept_id", Ty::I32),
    c("ethnicity_concept_id", Ty::I32),
    c("person_source_value", Ty::Str),
    c("gender_source_value", Ty::Str),
    c("race_source_value", Ty::Str),
    c("ethnicity_source_value", Ty::Str),
];
const VISIT: &[Col] = &[
    key("visit_occurrence_id"),
    key("person_id"),
    c("visit_concept_id", Ty::I32),
    c("visit_start_date", Ty::Date),
    c("visit_end_date", Ty::Date),
    c("visit_type_concept_id", Ty::I32),
    c("visit_source_value", Ty::Str),
    c("visit_source_concept_id", Ty::I32),
];
const CONDITION: &[Col] = &[
    key("condition_occurrence_id"),
    key("person_id"),
    c("condition_concept_id", Ty::I32),
    c("condition_start_date", Ty::Date),
    c("condition_end_date", Ty::Date),
    c("condition_type_concept_id", Ty::I32),
    c("condition_status_source_value", Ty::Str),
    c("visit_occurrence_id", Ty::I64),
    c("condition_source_value", Ty::Str),
    c("condition_source_concept_id", Ty::I32),
];
const DRUG: &[Col] = &[
    key("drug_exposure_id"),
    key("person_id"),
    c("drug_concept_id", Ty::I32),
    c("drug_exposure_start_date", Ty::Date),
    c("drug_exposure_end_date", Ty::Date),
    c("drug_type_concept_id", Ty::I32),
    c("quantity", Ty::F64),
    c("visit_occurrence_id", Ty::I64),
    c("drug_source_value", Ty::Str),
    c("drug_source_concept_id", Ty::I32),
];
const MEASUREMENT: &[Col] = &[
    key("measurement_id"),
    key("person_id"),
    c("measurement_concept_id", Ty::I32),
    c("measurement_date", Ty::Date),
    c("measurement_type_concept_id", Ty::I32),
    c("value_as_number", Ty::F64),
    c("unit_concept_id", Ty::I32),
    c("visit_occurrence_id", Ty::I64),
    c("measurement_source_value", Ty::Str),
    c("measurement_source_concept_id", Ty::I32),
    c("unit_source_value", Ty::Str),
    c("value_source_value", Ty::Str),
];
const OBSERVATION: &[Col] = &[
    key("observation_id"),
    key("person_id"),
    c("observation_concept_id", Ty::I32),
    c("observation_date", Ty::Date),
    c("observation_type_concept_id", Ty::I32),
    c("value_as_number", Ty::F64),
    c("value_as_string", Ty::Str),
    c("value_as_concept_id", Ty::I32),
    c("unit_source_value", Ty::Str),
    c("visit_occurrence_id", Ty::I64),
    c("observation_source_value", Ty::Str),
    c("observation_source_concept_id", Ty::I32),
];
const PROCEDURE: &[Col] = &[
    key("procedure_occurrence_id"),
    key("person_id"),
    c("procedure_concept_id", Ty::I32),
    c("procedure_date", Ty::Date),
    c("procedure_end_date", Ty::Date),
    c("procedure_type_concept_id", Ty::I32),
    c("visit_occurrence_id", Ty::I64),
    c("procedure_source_value", Ty::Str),
    c("procedure_source_concept_id", Ty::I32),
];
const DEATH: &[Col] = &[
    key("person_id"),
    c("death_date", Ty::Date),
    c("death_type_concept_id", Ty::I32),
    c("cause_source_value", Ty::Str),
];

pub(crate) fn columns(table: &str) -> &'static [Col] {
    match table {
        "person" => PERSON,
        "visit_occurrence" => VISIT,
        "condition_occurrence" => CONDITION,
        "drug_exposure" => DRUG,
        "measurement" => MEASUREMENT,
        "observation" => OBSERVATION,
        "procedure_occurrence" => PROCEDURE,
        "death" => DEATH,
        _ => &[],
    }
}

/// The Arrow schema of a CDM table (empty schema for an unknown name).
pub fn schema(table: &str) -> SchemaRef {
    let fields: Vec<Field> = columns(table)
        .iter()
        .map(|c| {
            let dt = match c.ty {
                Ty::I64 => DataType::Int64,
                Ty::I32 => DataType::Int32,
                Ty::F64 => DataType::Float64,
                Ty::Str => DataType::Utf8,
                Ty::Date => DataType::Date32,
            };
            Field::new(c.name, dt, c.nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// One cell of a row being appended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Val<'a> {
    I64(Option<i64>),
    I32(Option<i32>),
    F64(Option<f64>),
    Str(Option<&'a str>),
    Date(Option<i32>),
}

enum Builder {
    I64(Int64Builder),
    I32(Int32Builder),
    F64(Float64Builder),
    Str(StringBuilder),
    Date(Date32Builder),
}

/// Rows of one table, buffered before they go to Parquet.
struct TableBuf {
    table: &'static str,
    builders: Vec<Builder>,
    rows: usize,
}

impl TableBuf {
    fn new(table: &'static str) -> TableBuf {
        let builders = columns(table)
            .iter()
            .map(|c| match c.ty {
                Ty::I64 => Builder::I64(Int64Builder::new()),
                Ty::I32 => Builder::I32(Int32Builder::new()),
                Ty::F64 => Builder::F64(Float64Builder::new()),
                Ty::Str => Builder::Str(StringBuilder::new()),
                Ty::Date => Builder::Date(Date32Builder::new()),
            })
            .collect();
        TableBuf {
            table,
            builders,
            rows: 0,
        }
    }

    fn push(&mut self, row: &[Val<'_>]) -> Result<(), VaultError> {
        if row.len() != self.builders.len() {
            return Err(VaultError::storage(self.table)(format!(
                "row has {} cells, table has {} columns",
                row.len(),
                self.builders.len()
            )));
        }
        // Check every cell's type first so a bad row never leaves the builders uneven.
        for (b, v) in self.builders.iter().zip(row) {
            let ok = matches!(
                (b, v),
                (Builder::I64(_), Val::I64(_))
                    | (Builder::I32(_), Val::I32(_))
                    | (Builder::F64(_), Val::F64(_))
                    | (Builder::Str(_), Val::Str(_))
                    | (Builder::Date(_), Val::Date(_))
            );
            if !ok {
                return Err(VaultError::storage(self.table)(
                    "cell type does not match column".into(),
                ));
            }
        }
        for (b, v) in self.builders.iter_mut().zip(row) {
            match (b, v) {
                (Builder::I64(b), Val::I64(x)) => b.append_option(*x),
                (Builder::I32(b), Val::I32(x)) => b.append_option(*x),
                (Builder::F64(b), Val::F64(x)) => b.append_option(*x),
                (Builder::Str(b), Val::Str(x)) => b.append_option(*x),
                (Builder::Date(b), Val::Date(x)) => b.append_option(*x),
                _ => {}
            }
        }
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch, VaultError> {
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::I64(b) => Arc::new(b.finish()),
                    Builder::I32(b) => Arc::new(b.finish()),
                    Builder::F64(b) => Arc::new(b.finish()),
                    Builder::Str(b) => Arc::new(b.finish()),
                    Builder::Date(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(schema(self.table), arrays)
            .map_err(|e| VaultError::storage(self.table)(e.to_string()))
    }
}

const FLUSH_ROWS: usize = 64 * 1024;

/// Writes the CDM rows of one segment into `<dir>/<table>.parquet`, bounded in memory.
pub(crate) struct CdmWriter {
    dir: PathBuf,
    bufs: Vec<TableBuf>,
    writers: Vec<Option<ArrowWriter<File>>>,
    /// Rows written per table.
    pub counts: BTreeMap<String, u64>,
}

impl CdmWriter {
    pub fn new(dir: &Path) -> Result<CdmWriter, VaultError> {
        std::fs::create_dir_all(dir).map_err(VaultError::io(dir))?;
        Ok(CdmWriter {
            dir: dir.to_path_buf(),
            bufs: TABLES.iter().map(|t| TableBuf::new(t)).collect(),
            writers: TABLES.iter().map(|_| None).collect(),
            counts: BTreeMap::new(),
        })
    }

    pub fn push(&mut self, table: &str, row: &[Val<'_>]) -> Result<(), VaultError> {
        let Some(i) = TABLES.iter().position(|t| *t == table) else {
            return Err(VaultError::storage(table)("unknown table".into()));
        };
        let full = match self.bufs.get_mut(i) {
            Some(buf) => {
                buf.push(row)?;
                buf.rows >= FLUSH_ROWS
            }
            None => false,
        };
        *self.counts.entry(table.to_string()).or_insert(0) += 1;
        if full {
            self.flush(i)?;
        }
        Ok(())
    }

    fn flush(&mut self, i: usize) -> Result<(), VaultError> {
        let (Some(buf), Some(slot)) = (self.bufs.get_mut(i), self.writers.get_mut(i)) else {
            return Ok(());
        };
        if buf.rows == 0 {
            return Ok(());
        }
        let table = buf.table;
        let batch = buf.finish()?;
        if slot.is_none() {
            let path = self.dir.join(format!("{table}.parquet"));
            let file = File::create(&path).map_err(VaultError::io(&path))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .set_max_row_group_row_count(Some(256 * 1024))
                .build();
            let w = ArrowWriter::try_new(file, schema(table), Some(props))
                .map_err(|e| VaultError::storage(table)(e.to_string()))?;
            *slot = Some(w);
        }
        if let Some(w) = slot.as_mut() {
            w.write(&batch)
                .map_err(|e| VaultError::storage(table)(e.to_string()))?;
        }
        Ok(())
    }

    /// Flushes and closes every file; returns the tables that got a file.
    pub fn finish(mut self) -> Result<Vec<String>, VaultError> {
        for i in 0..TABLES.len() {
            self.flush(i)?;
        }
        let mut written = Vec::new();
        for (i, slot) in self.writers.into_iter().enumerate() {
            if let Some(w) = slot {
                let table = TABLES.get(i).copied().unwrap_or("");
                let file = w
                    .into_inner()
                    .map_err(|e| VaultError::storage(table)(e.to_string()))?;
                file.sync_all()
                    .map_err(VaultError::io(self.dir.join(format!("{table}.parquet"))))?;
                written.push(table.to_string());
            }
        }
        Ok(written)
    }
}

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

/// The first coding of a CodeableConcept: (system, code).
fn first_coding(cc: Option<&Value>) -> Option<(CodeSystem, &str)> {
    let codings = cc?.get("coding")?.as_array()?;
    // Prefer a coding from a system we map; else the first with a code.
    let known = codings.iter().find_map(|c| {
        let sys = CodeSystem::from_uri(c.get("system")?.as_str()?);
        let code = c.get("code")?.as_str()?;
        (sys != CodeSystem::Other).then_some((sys, code))
    });
    known.or_else(|| {
        codings.iter().find_map(|c| {
            let code = c.get("code")?.as_str()?;
            Some((CodeSystem::Other, code))
        })
    })
}

fn ref_of<'v>(v: &'v Value, field: &str) -> Option<&'v str> {
    v.get(field)?.get("reference")?.as_str()
}

fn date_of(v: &Value, fields: &[&str]) -> Option<i32> {
    fields.iter().find_map(|f| {
        let mut cur = v;
        for part in f.split('.') {
            cur = cur.get(part)?;
        }
        parse_date(cur.as_str()?)
    })
}

fn ext_code<'v>(patient: &'v Value, url: &str) -> Option<&'v str> {
    patient
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))?
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some("ombCategory"))?
        .get("valueCoding")?
        .get("code")?
        .as_str()
}

/// Maps one stored resource to CDM rows. `person_id` is set for a Patient; `visit_id` for an
/// Encounter. Resource types without a CDM table produce no rows.
pub(crate) fn map_resource(
    v: &Value,
    own_row_id: Option<i64>,
    pseudonym: &dyn Fn(&str) -> String,
    vocab: &Vocabulary,
    resolve: &dyn Resolve,
    counters: &mut Counters,
    out: &mut CdmWriter,
) -> Result<(), VaultError> {
    let rtype = v.get("resourceType").and_then(Value::as_str).unwrap_or("");
    let person_of = |field: &str| {
        ref_of(v, field)
            .and_then(parse_reference)
            .and_then(|t| resolve.person(&t))
    };
    let visit = ref_of(v, "encounter")
        .or_else(|| ref_of(v, "context"))
        .and_then(parse_reference)
        .and_then(|t| resolve.visit(&t));
    match rtype {
        "Patient" => {
            let Some(pid) = own_row_id else { return Ok(()) };
            let id = v.get("id").and_then(Value::as_str).unwrap_or("");
            let gender = v.get("gender").and_then(Value::as_str);
            let gender_concept = match gender {
                Some("male") => Some(8507),
                Some("female") => Some(8532),
                _ => Some(0),
            };
            let birth = v.get("birthDate").and_then(Value::as_str);
            let birth_days = birth.and_then(parse_date);
            let (y, m, d) = match birth_days {
                Some(days) => {
                    let (y, m, d) = medspace_synth::civil_from_days(i64::from(days));
                    (Some(y), i32::try_from(m).ok(), i32::try_from(d).ok())
                }
                None => (None, None, None),
            };
            // Partial birth dates ("1980" or "1980-05") keep only what was given.
            let precision = birth.map(str::len).unwrap_or(0);
            let race = ext_code(
                v,
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            );
            let eth = ext_code(
                v,
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
            );
            let race_concept = match race {
                Some("2106-3") => 8527,
                Some("2054-5") => 8516,
                Some("2028-9") => 8515,
                Some("1002-5") => 8657,
                Some("2076-8") => 8557,
                _ => 0,
            };
            let eth_concept = match eth {
                Some("2135-2") => 38_003_563,
                Some("2186-5") => 38_003_564,
                _ => 0,
            };
            let pseudo = pseudonym(id);
            out.push(
                "person",
                &[
                    Val::I64(Some(pid)),
                    Val::I32(gender_concept),
                    Val::I32(y),
                    Val::I32(if precision >= 7 { m } else { None }),
                    Val::I32(if precision >= 10 { d } else { None }),
                    Val::Date(if precision >= 10 { birth_days } else { None }),
                    Val::I32(Some(race_concept)),
                    Val::I32(Some(eth_concept)),
                    Val::Str(Some(&pseudo)),
                    Val::Str(gender),
                    Val::Str(race),
                    Val::Str(eth),
                ],
            )?;
            if let Some(death) = date_of(v, &["deceasedDateTime"]) {
                out.push(
                    "death",
                    &[
                        Val::I64(Some(pid)),
                        Val::Date(Some(death)),
                        Val::I32(Some(TYPE_EHR)),
                        Val::Str(None),
                    ],
                )?;
            } else if v.get("deceasedBoolean").and_then(Value::as_bool) == Some(true) {
                out.push(
                    "death",
                    &[
                        Val::I64(Some(pid)),
                        Val::Date(None),
                        Val::I32(Some(TYPE_EHR)),
                        Val::Str(None),
                    ],
                )?;
            }
        }
        "Encounter" => {
            let (Some(vid), Some(pid)) = (own_row_id, person_of("subject")) else {
                return Ok(());
            };
            let class = v
                .get("class")
                .and_then(|c| c.get("code"))
                .and_then(Value::as_str);
            let visit_concept = match class {
                Some("AMB") | Some("outpatient") | Some("ambulatory") | Some("wellness") => 9202,
                Some("EMER") | Some("emergency") => 9203,
                Some("IMP") | Some("inpatient") | Some("ACUTE") => 9201,
                _ => 0,
            };
            let ty = first_coding(v.get("type").and_then(|t| t.get(0)));
            let src = ty.map(|(_, c)| c);
            let mapped = ty.map(|(s, c)| vocab.map(s, c)).unwrap_or_default();
            out.push(
                "visit_occurrence",
                &[
                    Val::I64(Some(vid)),
                    Val::I64(Some(pid)),
                    Val::I32(Some(visit_concept)),
                    Val::Date(date_of(v, &["period.start"])),
                    Val::Date(date_of(v, &["period.end", "period.start"])),
                    Val::I32(Some(TYPE_EHR)),
                    Val::Str(src),
                    Val::I32(Some(mapped.source_concept_id)),
                ],
            )?;
        }
        "Condition" => {
            let Some(pid) = person_of("subject") else {
                return Ok(());
            };
            let code = first_coding(v.get("code"));
            let mapped = code.map(|(s, c)| vocab.map(s, c)).unwrap_or_default();
            let status = v
                .get("clinicalStatus")
                .and_then(|s| first_coding(Some(s)))
                .map(|(_, c)| c);
            let id = next_id(counters, "condition_occurrence");
            out.push(
                "condition_occurrence",
                &[
                    Val::I64(Some(id)),
                    Val::I64(Some(pid)),
                    Val::I32(Some(mapped.concept_id)),
                    Val::Date(date_of(
                        v,
                        &["onsetDateTime", "onsetPeriod.start", "recordedDate"],
                    )),
                    Val::Date(date_of(v, &["abatementDateTime", "abatementPeriod.end"])),
                    Val::I32(Some(TYPE_EHR)),
                    Val::Str(status),
                    Val::I64(visit),
                    Val::Str(code.map(|(_, c)| c)),
                    Val::I32(Some(mapped.source_concept_id)),
                ],
            )?;
        }
        "MedicationRequest"
        | "MedicationStatement"
        | "MedicationAdministration"
        | "Immunization" => {
            let field = if rtype == "Immunization" {
                "patient"
            } else {
                "subject"
            };
            let Some(pid) = person_of(field) else {
                return Ok(());
            };
            let code = if rtype == "Immunization" {
                first_coding(v.get("vaccineCode"))
            } else {
                first_coding(v.get("medicationCodeableConcept"))
            };
            let mapped = code.map(|(s, c)| vocab.map(s, c)).unwrap_or_default();
            let start = date_of(
                v,
                &[
                    "authoredOn",
                    "occurrenceDateTime",
                    "effectiveDateTime",
                    "effectivePeriod.start",
                    "dispenseRequest.validityPeriod.start",
                ],
            );
            let end = date_of(
                v,
                &["dispenseRequest.validityPeriod.end", "effectivePeriod.end"],
            );
            let quantity = v
                .get("dispenseRequest")
                .and_then(|d| d.get("quantity"))
                .and_then(|q| q.get("value"))
                .and_then(Value::as_f64);
            let id = next_id(counters, "drug_exposure");
            out.push(
                "drug_exposure",
                &[
                    Val::I64(Some(id)),
                    Val::I64(Some(pid)),
                    Val::I32(Some(mapped.concept_id)),
                    Val::Date(start),
                    Val::Date(end),
                    Val::I32(Some(if rtype == "MedicationRequest" {
                        32838
                    } else {
                        TYPE_EHR
                    })),
                    Val::F64(quantity),
                    Val::I64(visit),
                    Val::Str(code.map(|(_, c)| c)),
                    Val::I32(Some(mapped.source_concept_id)),
                ],
            )?;
        }
        "Procedure" => {
            let Some(pid) = person_of("subject") else {
                return Ok(());
            };
            let code = first_coding(v.get("code"));
            let mapped = code.map(|(s, c)| vocab.map(s, c)).unwrap_or_default();
            let id = next_id(counters, "procedure_occurrence");
            out.push(
                "procedure_occurrence",
                &[
                    Val::I64(Some(id)),
                    Val::I64(Some(pid)),
                    Val::I32(Some(mapped.concept_id)),
                    Val::Date(date_of(v, &["performedDateTime", "performedPeriod.start"])),
                    Val::Date(date_of(v, &["performedPeriod.end"])),
                    Val::I32(Some(TYPE_EHR)),
                    Val::I64(visit),
                    Val::Str(code.map(|(_, c)| c)),
                    Val::I32(Some(mapped.source_concept_id)),
                ],
            )?;
        }
        "AllergyIntolerance" => {
            let Some(pid) = person_of("patient") else {
                return Ok(());
            };
            let code = first_coding(v.get("code"));
            let mapped = code.map(|(s, c)| vocab.map(s, c)).unwrap_or_default();
            let id = next_id(counters, "observation");
            out.push(
                "observation",
                &[
                    Val::I64(Some(id)),
                    Val::I64(Some(pid)),
                    Val::I32(Some(mapped.concept_id)),
                    Val::Date(date_of(v, &["onsetDateTime", "recordedDate"])),
                    Val::I32(Some(TYPE_EHR)),
                    Val::F64(None),
                    Val::Str(Some("allergy")),
                    Val::I32(None),
                    Val::Str(None),
                    Val::I64(visit),
                    Val::Str(code.map(|(_, c)| c)),
                    Val::I32(Some(mapped.source_concept_id)),
                ],
            )?;
        }
        "Observation" => {
            let Some(pid) = person_of("subject") else {
                return Ok(());
            };
            map_observation(v, pid, visit, vocab, counters, out)?;
        }
        _ => {}
    }
    Ok(())
}

fn map_observation(
    v: &Value,
    pid: i64,
    visit: Option<i64>,
    vocab: &Vocabulary,
    counters: &mut Counters,
    out: &mut CdmWriter,
) -> Result<(), VaultError> {
    let date = date_of(
        v,
        &[
            "effectiveDateTime",
            "effectivePeriod.start",
            "effectiveInstant",
            "issued",
        ],
    );
    let category = v
        .get("category")
        .and_then(Value::as_array)
        .and_then(|cats| {
            cats.iter()
                .filter_map(|c| first_coding(Some(c)))
                .map(|(_, code)| code)
                .find(|code| matches!(*code, "laboratory" | "vital-signs"))
        });
    // Multi-component observations (blood pressure panels) give one row per component.
    if let Some(components) = v.get("component").and_then(Value::as_array) {
        for comp in components {
            map_observation_value(
                comp,
                pid,
                visit,
                date,
                category.is_some(),
                vocab,
                counters,
                out,
            )?;
        }
        if !has_value(v) {
            return Ok(());
        }
    }
    map_observation_value(
        v,
        pid,
        visit,
        date,
        category.is_some(),
        vocab,
        counters,
        out,
    )
}

fn has_value(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.keys().any(|k| k.starts_with("value")))
}

#[allow(clippy::too_many_arguments)]
fn map_observation_value(
    v: &Value,
    pid: i64,
    visit: Option<i64>,
    date: Option<i32>,
    measurement_category: bool,
    vocab: &Vocabulary,
    counters: &mut Counters,
    out: &mut CdmWriter,
) -> Result<(), VaultError> {
    let code = first_coding(v.get("code"));
    let mapped = code.map(|(s, c)| vocab.map(s, c)).unwrap_or_default();
    let quantity = v.get("valueQuantity");
    let number = quantity
        .and_then(|q| q.get("value"))
        .and_then(Value::as_f64)
        .or_else(|| v.get("valueInteger").and_then(Value::as_f64));
    let unit = quantity
        .and_then(|q| q.get("code").or_else(|| q.get("unit")))
        .and_then(Value::as_str);
    let concept_value = first_coding(v.get("valueCodeableConcept"));
    let string_value = v
        .get("valueString")
        .and_then(Value::as_str)
        .or(concept_value.map(|(_, c)| c));
    let value_concept = concept_value.map(|(s, c)| vocab.map(s, c).concept_id);
    if quantity.is_some() || (measurement_category && concept_value.is_none()) {
        let id = next_id(counters, "measurement");
        let unit_concept = unit.map(|u| match u {
            "%" => 8554,
            "mg/dL" => 8840,
            "mm[Hg]" => 8876,
            "kg/m2" => 9531,
            "kg" => 9529,
            "cm" => 8582,
            "/min" => 8541,
            _ => 0,
        });
        out.push(
            "measurement",
            &[
                Val::I64(Some(id)),
                Val::I64(Some(pid)),
                Val::I32(Some(mapped.concept_id)),
                Val::Date(date),
                Val::I32(Some(TYPE_EHR)),
                Val::F64(number),
                Val::I32(unit_concept),
                Val::I64(visit),
                Val::Str(code.map(|(_, c)| c)),
                Val::I32(Some(mapped.source_concept_id)),
                Val::Str(unit),
                Val::Str(string_value),
            ],
        )?;
    } else {
        let id = next_id(counters, "observation");
        out.push(
            "observation",
            &[
                Val::I64(Some(id)),
                Val::I64(Some(pid)),
                Val::I32(Some(mapped.concept_id)),
                Val::Date(date),
                Val::I32(Some(TYPE_EHR)),
                Val::F64(number),
                Val::Str(string_value),
                Val::I32(value_concept),
                Val::Str(unit),
                Val::I64(visit),
                Val::Str(code.map(|(_, c)| c)),
                Val::I32(Some(mapped.source_concept_id)),
            ],
        )?;
    }
    Ok(())
}
