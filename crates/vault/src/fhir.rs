//! FHIR R4 JSON: resource checks, references, dates, and reading Bundle / NDJSON files.
//!
//! Parsing is done with `serde_json`; a Bundle is streamed entry by entry through a serde
//! visitor so that a large Bundle never sits in memory as a whole.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::VaultError;

/// Why one input resource (or file) was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum BadReason {
    /// The file holds no resource at all.
    EmptyFile,
    /// The file ends in the middle of a JSON value.
    Truncated,
    /// Not valid JSON, or valid JSON that is not a well-formed FHIR resource; names the field.
    Malformed(String),
    /// `resourceType` is not a FHIR R4 resource type.
    UnknownResourceType(String),
    /// The resource is of another FHIR version (STU3, R5 ...); says which marker showed it.
    NotR4(String),
    /// A reference points to a resource neither in this batch nor in the vault; names the field.
    DanglingReference(String),
    /// A resource with this type and id is already stored with different content (and the
    /// ingest is not an update feed).
    Conflict,
    /// A reference points to a resource of the batch that was refused; names the field and
    /// the target's type. The resource is refused with it.
    RefusedDependency(String, String),
    /// A reference points to a resource this batch deletes; names the field.
    DeletedReference(String),
    /// A delete names a resource that was never stored; names its type.
    NotStored(String),
    /// The stored resource (or one that would go with it) was written before versioning: its
    /// CDM rows are not known, so it can be neither updated nor deleted.
    NotVersioned,
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReason::EmptyFile => write!(f, "empty file"),
            BadReason::Truncated => write!(f, "truncated: input ends inside a json value"),
            BadReason::Malformed(d) => write!(f, "malformed: {d}"),
            BadReason::UnknownResourceType(t) => write!(f, "unknown resource type: type={t}"),
            BadReason::NotR4(d) => write!(f, "not fhir r4: {d}"),
            BadReason::DanglingReference(field) => {
                write!(
                    f,
                    "dangling reference: field={field} target not in batch or vault"
                )
            }
            BadReason::Conflict => write!(
                f,
                "conflict: same type and id already stored with different content (not an update feed: ingest with updates to store a new version)"
            ),
            BadReason::RefusedDependency(field, ty) => write!(
                f,
                "refused with what it refers to: field={field} target_type={ty} was refused in this batch"
            ),
            BadReason::DeletedReference(field) => {
                write!(f, "reference to a deleted resource: field={field}")
            }
            BadReason::NotStored(ty) => {
                write!(f, "delete of a resource that is not stored: type={ty}")
            }
            BadReason::NotVersioned => write!(
                f,
                "stored before versioning: its cdm rows are unknown, it cannot be updated or deleted"
            ),
        }
    }
}

/// All resource types of FHIR R4 (4.0.1).
const R4_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Resource types that exist in STU3 or R5 but not in R4: their presence marks another version.
const OTHER_VERSION_TYPES: &[&str] = &[
    // STU3
    "ProcedureRequest",
    "ReferralRequest",
    "DeviceComponent",
    "EligibilityRequest",
    "EligibilityResponse",
    "ProcessRequest",
    "ProcessResponse",
    "DataElement",
    "ImagingManifest",
    "ServiceDefinition",
    "ExpansionProfile",
    "Sequence",
    "BodySite",
    // R4B / R5
    "ActorDefinition",
    "AdministrableProductDefinition",
    "ArtifactAssessment",
    "BiologicallyDerivedProductDispense",
    "Citation",
    "ClinicalUseDefinition",
    "ConditionDefinition",
    "DeviceAssociation",
    "DeviceDispense",
    "DeviceUsage",
    "EncounterHistory",
    "EvidenceReport",
    "FormularyItem",
    "GenomicStudy",
    "ImagingSelection",
    "InventoryItem",
    "InventoryReport",
    "Ingredient",
    "ManufacturedItemDefinition",
    "MedicinalProductDefinition",
    "NutritionIntake",
    "NutritionProduct",
    "PackagedProductDefinition",
    "Permission",
    "RegulatedAuthorization",
    "Requirements",
    "SubscriptionStatus",
    "SubscriptionTopic",
    "TestPlan",
    "Transport",
];

/// Whether `t` is an R4 resource type.
pub fn is_r4_type(t: &str) -> bool {
    R4_TYPES.binary_search(&t).is_ok() || R4_TYPES.contains(&t)
}

/// Checks the shape of one resource; returns its type and id.
pub fn check_resource(v: &Value) -> Result<(&str, &str), BadReason> {
    let obj = v
        .as_object()
        .ok_or_else(|| BadReason::Malformed("resource is not a json object".into()))?;
    let rtype = match obj.get("resourceType") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(BadReason::Malformed(
                "field=resourceType is not a string".into(),
            ));
        }
        None => return Err(BadReason::Malformed("field=resourceType missing".into())),
    };
    if OTHER_VERSION_TYPES.contains(&rtype) {
        return Err(BadReason::NotR4(format!(
            "resource type {rtype} does not exist in r4"
        )));
    }
    if !is_r4_type(rtype) {
        let shown: String = rtype.chars().take(40).collect();
        return Err(BadReason::UnknownResourceType(shown));
    }
    if let Some(version) = obj.get("fhirVersion").and_then(Value::as_str)
        && !version.starts_with("4.0")
    {
        return Err(BadReason::NotR4(format!(
            "fhirVersion={}",
            version.chars().take(12).collect::<String>()
        )));
    }
    if let Some(profiles) = obj
        .get("meta")
        .and_then(|m| m.get("profile"))
        .and_then(Value::as_array)
    {
        for p in profiles.iter().filter_map(Value::as_str) {
            if p.contains("/fhir/5.0")
                || p.contains("/fhir/R5/")
                || p.contains("/fhir/STU3/")
                || p.contains("/fhir/3.0")
            {
                return Err(BadReason::NotR4(
                    "meta.profile names another fhir version".into(),
                ));
            }
        }
    }
    // Fields that only exist in other versions, on the resource types we map.
    let other_version_field = match rtype {
        "Observation" | "Condition" | "Procedure" | "DiagnosticReport" => {
            obj.contains_key("context").then_some("context")
        }
        "MedicationRequest" => obj
            .get("medication")
            .filter(|m| m.get("concept").is_some() || m.get("reference").is_some())
            .map(|_| "medication (CodeableReference)"),
        "Encounter" => obj
            .get("class")
            .filter(|c| c.is_array())
            .map(|_| "class as array"),
        "Patient" => obj.contains_key("animal").then_some("animal"),
        _ => None,
    };
    if let Some(field) = other_version_field {
        return Err(BadReason::NotR4(format!("field={field} is not r4")));
    }
    let id = match obj.get("id") {
        Some(Value::String(s)) if valid_id(s) => s.as_str(),
        Some(_) => {
            return Err(BadReason::Malformed(
                "field=id is not a valid fhir id".into(),
            ));
        }
        None => return Err(BadReason::Malformed("field=id missing".into())),
    };
    check_fields(rtype, obj)?;
    Ok((rtype, id))
}

/// FHIR `id`: 1 to 64 characters of `[A-Za-z0-9-.]`.
fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn check_fields(rtype: &str, obj: &Map<String, Value>) -> Result<(), BadReason> {
    let need_ref = |field: &str| -> Result<(), BadReason> {
        match obj
            .get(field)
            .and_then(|r| r.get("reference"))
            .and_then(Value::as_str)
        {
            Some(_) => Ok(()),
            None => Err(BadReason::Malformed(format!(
                "field={field}.reference missing"
            ))),
        }
    };
    let date_field = |field: &str| -> Result<(), BadReason> {
        match obj.get(field) {
            None => Ok(()),
            Some(Value::String(s)) if parse_date(s).is_some() => Ok(()),
            Some(_) => Err(BadReason::Malformed(format!(
                "field={field} is not a fhir date"
            ))),
        }
    };
    let codeable = |field: &str| -> Result<(), BadReason> {
        match obj.get(field) {
            Some(Value::Object(c)) => match c.get("coding") {
                None => Ok(()),
                Some(Value::Array(_)) => Ok(()),
                Some(_) => Err(BadReason::Malformed(format!(
                    "field={field}.coding is not an array"
                ))),
            },
            Some(_) => Err(BadReason::Malformed(format!(
                "field={field} is not a CodeableConcept"
            ))),
            None => Err(BadReason::Malformed(format!("field={field} missing"))),
        }
    };
    match rtype {
        "Patient" => {
            match obj.get("gender") {
                None => {}
                Some(Value::String(g))
                    if matches!(g.as_str(), "male" | "female" | "other" | "unknown") => {}
                Some(_) => {
                    return Err(BadReason::Malformed(
                        "field=gender is not male|female|other|unknown".into(),
                    ));
                }
            }
            date_field("birthDate")?;
            date_field("deceasedDateTime")?;
        }
        "Encounter" => {
            need_ref("subject")?;
            if let Some(p) = obj.get("period") {
                for k in ["start", "end"] {
                    if let Some(v) = p.get(k)
                        && v.as_str().and_then(parse_date).is_none()
                    {
                        return Err(BadReason::Malformed(format!(
                            "field=period.{k} is not a fhir dateTime"
                        )));
                    }
                }
            }
        }
        "Condition" => {
            need_ref("subject")?;
            codeable("code")?;
            date_field("onsetDateTime")?;
            date_field("abatementDateTime")?;
            date_field("recordedDate")?;
        }
        "Observation" => {
            need_ref("subject")?;
            codeable("code")?;
            date_field("effectiveDateTime")?;
            if let Some(q) = obj.get("valueQuantity")
                && q.get("value").is_some_and(|v| !v.is_number())
            {
                return Err(BadReason::Malformed(
                    "field=valueQuantity.value is not a number".into(),
                ));
            }
        }
        "MedicationRequest" => {
            need_ref("subject")?;
            date_field("authoredOn")?;
        }
        "Procedure" => {
            need_ref("subject")?;
            codeable("code")?;
            date_field("performedDateTime")?;
        }
        "Immunization" => {
            need_ref("patient")?;
            codeable("vaccineCode")?;
            date_field("occurrenceDateTime")?;
        }
        "AllergyIntolerance" => {
            need_ref("patient")?;
        }
        _ => {}
    }
    Ok(())
}

/// Parses a FHIR `date`, `dateTime` or `instant` (partial dates take the first day) into days
/// since 1970-01-01. The time of day and zone are ignored (the local calendar date is kept).
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = num(0..4)?;
    let (month, day) = match b.len() {
        4 => (1, 1),
        7 if b.get(4) == Some(&b'-') => (num(5..7)?, 1),
        n if n >= 10 && b.get(4) == Some(&b'-') && b.get(7) == Some(&b'-') => {
            if n > 10 && b.get(10) != Some(&b'T') {
                return None;
            }
            (num(5..7)?, num(8..10)?)
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year as i32, month) {
        return None;
    }
    i32::try_from(medspace_synth::days_from_civil(year as i32, month, day)).ok()
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Formats days since 1970-01-01 as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = medspace_synth::civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The target of a reference, as far as it can be resolved locally.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RefTarget {
    /// `urn:uuid:<id>` (or `urn:oid:`): any resource whose id is `<id>`.
    AnyType(String),
    /// `Type/id`, possibly absolute (`http://x/fhir/Type/id`) or versioned (`/_history/n`).
    Typed(String, String),
    /// A form that cannot be resolved locally (conditional reference, bare string ...).
    Unresolvable,
}

/// Parses a reference string; contained references (`#x`) give `None`.
pub fn parse_reference(r: &str) -> Option<RefTarget> {
    if r.starts_with('#') {
        return None;
    }
    if let Some(id) = r
        .strip_prefix("urn:uuid:")
        .or_else(|| r.strip_prefix("urn:oid:"))
    {
        return Some(RefTarget::AnyType(id.to_string()));
    }
    if r.contains('?') {
        return Some(RefTarget::Unresolvable);
    }
    let mut parts: Vec<&str> = r.split('/').collect();
    if parts.len() >= 4 && parts.get(parts.len() - 2) == Some(&"_history") {
        parts.truncate(parts.len() - 2);
    }
    let n = parts.len();
    match (n.checked_sub(2).and_then(|i| parts.get(i)), parts.last()) {
        (Some(t), Some(id)) if is_r4_type(t) && valid_id(id) => {
            Some(RefTarget::Typed((*t).to_string(), (*id).to_string()))
        }
        _ => Some(RefTarget::Unresolvable),
    }
}

/// Every reference in a resource: (json path of the field, target). Contained ones are left out.
pub fn references(v: &Value) -> Vec<(String, RefTarget)> {
    let mut out = Vec::new();
    walk_refs(v, &mut String::new(), &mut out);
    out
}

fn walk_refs(v: &Value, path: &mut String, out: &mut Vec<(String, RefTarget)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "contained" {
                    continue;
                }
                if k == "reference"
                    && let Value::String(s) = child
                {
                    if let Some(t) = parse_reference(s) {
                        out.push((path.clone(), t));
                    }
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk_refs(child, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk_refs(i, path, out)),
        _ => {}
    }
}

/// Rewrites every reference string in place with `f` (which returns the new string or `None`
/// to keep it).
pub fn rewrite_references(v: &mut Value, f: &mut dyn FnMut(&str) -> Option<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "reference"
                    && let Value::String(s) = child
                {
                    if let Some(n) = f(s) {
                        *s = n;
                    }
                    continue;
                }
                rewrite_references(child, f);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_references(i, f)),
        _ => {}
    }
}

/// Replaces every Reference whose `reference` string `f` picks by a Reference holding only
/// `display` (its identifier and display, which could name someone, are dropped too).
pub fn withhold_references(v: &mut Value, display: &str, f: &mut dyn FnMut(&str) -> bool) {
    match v {
        Value::Object(map) => {
            if map
                .get("reference")
                .and_then(Value::as_str)
                .is_some_and(&mut *f)
            {
                map.clear();
                map.insert("display".into(), Value::String(display.into()));
                return;
            }
            for child in map.values_mut() {
                withhold_references(child, display, f);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| withhold_references(i, display, f)),
        _ => {}
    }
}

/// The patient a resource belongs to (its compartment), from `subject` / `patient` /
/// `beneficiary`.
pub fn compartment_ref(v: &Value) -> Option<RefTarget> {
    ["subject", "patient", "beneficiary"].iter().find_map(|f| {
        v.get(f)
            .and_then(|r| r.get("reference"))
            .and_then(Value::as_str)
            .and_then(parse_reference)
    })
}

/// Whether a Bundle entry is a delete (`request.method = DELETE`).
fn is_delete_entry(e: &Map<String, Value>) -> bool {
    e.get("request")
        .and_then(|r| r.get("method"))
        .and_then(Value::as_str)
        == Some("DELETE")
}

/// A delete entry of a Bundle file as the one-entry transaction Bundle an NDJSON feed would
/// carry, so both reach the ingest in the same form.
fn delete_bundle(e: Map<String, Value>) -> Value {
    let request = e.get("request").cloned().unwrap_or(Value::Null);
    serde_json::json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [{"request": request}]})
}

/// One entry of a transaction or batch Bundle as the ingest applies it.
#[derive(Debug)]
pub enum TxEntry {
    /// A resource to store (create or update).
    Resource(Value),
    /// Delete `Type/id`, or why the request is not a valid delete.
    Delete(Result<(String, String), BadReason>),
}

/// The entries of a `transaction` or `batch` Bundle (`None` for any other resource, which is
/// stored as it is). A delete's `url` is `Type/id` (relative, or absolute ending so).
pub fn transaction_entries(v: &Value) -> Option<Vec<TxEntry>> {
    if v.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return None;
    }
    let ty = v.get("type").and_then(Value::as_str)?;
    if ty != "transaction" && ty != "batch" {
        return None;
    }
    let entries = v.get("entry").and_then(Value::as_array)?;
    Some(
        entries
            .iter()
            .map(|e| {
                let method = e
                    .get("request")
                    .and_then(|r| r.get("method"))
                    .and_then(Value::as_str);
                match (method, e.get("resource")) {
                    (Some("DELETE"), _) => TxEntry::Delete(delete_target(e)),
                    (_, Some(r)) => TxEntry::Resource(r.clone()),
                    _ => TxEntry::Delete(Err(BadReason::Malformed(
                        "transaction entry has neither a resource nor a delete".into(),
                    ))),
                }
            })
            .collect(),
    )
}

/// `Type/id` of a delete entry's `request.url`.
fn delete_target(e: &Value) -> Result<(String, String), BadReason> {
    let url = e
        .get("request")
        .and_then(|r| r.get("url"))
        .and_then(Value::as_str)
        .ok_or_else(|| BadReason::Malformed("field=request.url missing on a delete".into()))?;
    match parse_reference(url) {
        Some(RefTarget::Typed(t, id)) => Ok((t, id)),
        _ => Err(BadReason::Malformed(
            "field=request.url of a delete is not Type/id".into(),
        )),
    }
}

/// Where in a file a resource was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// The whole file.
    File,
    /// 1-based line of an NDJSON file.
    Line(u64),
    /// 0-based entry index of a Bundle.
    Entry(u64),
    /// Line and column of a JSON syntax error.
    At(u64, u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::File => write!(f, "file"),
            Position::Line(l) => write!(f, "line {l}"),
            Position::Entry(e) => write!(f, "entry {e}"),
            Position::At(l, c) => write!(f, "line {l} column {c}"),
        }
    }
}

/// What a reader hands to the ingest for each item of a file.
pub type Item = Result<Value, BadReason>;

fn classify(e: &serde_json::Error) -> BadReason {
    if e.is_eof() {
        BadReason::Truncated
    } else {
        // Syntax errors: serde_json's messages describe the syntax ("expected value", "trailing
        // comma") and never echo the input. (Its type errors do quote the value; `read_json`
        // names their place instead.)
        BadReason::Malformed(format!("invalid json: {}", strip_position(&e.to_string())))
    }
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_string(),
        None => msg.to_string(),
    }
}

/// Reads one input file (NDJSON if it ends in `.ndjson` / `.jsonl`, otherwise a JSON Bundle or
/// single resource), calling `f` for each resource in order. I/O errors of the callback stop
/// the read and are returned.
pub fn read_file(
    path: &Path,
    f: &mut dyn FnMut(Position, Item) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    read_file_from(path, 0, f)
}

/// Whether a file is read as NDJSON (one resource per line) rather than as one JSON document.
pub fn is_ndjson(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".ndjson") || name.ends_with(".jsonl")
}

/// [`read_file`] without its first `skip` items (an interrupted ingest's committed part):
/// NDJSON lines are skipped unparsed; a Bundle's entries are parsed and dropped.
pub fn read_file_from(
    path: &Path,
    skip: u64,
    f: &mut dyn FnMut(Position, Item) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    let file = File::open(path).map_err(VaultError::io(path))?;
    let len = file.metadata().map_err(VaultError::io(path))?.len();
    if len == 0 {
        return f(Position::File, Err(BadReason::EmptyFile));
    }
    let reader = BufReader::with_capacity(1 << 20, file);
    if is_ndjson(path) {
        return read_ndjson(path, reader, skip, f);
    }
    let mut seen = 0u64;
    let mut f = |pos: Position, item: Item| -> Result<(), VaultError> {
        seen += 1;
        if seen <= skip {
            return Ok(());
        }
        f(pos, item)
    };
    if len <= SLURP_LIMIT {
        // Small enough to parse from memory, which is several times faster than from a reader;
        // larger Bundles are streamed entry by entry.
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        let mut reader = reader;
        reader.read_to_end(&mut buf).map_err(VaultError::io(path))?;
        read_json(serde_json::Deserializer::from_slice(&buf), &mut f)
    } else {
        read_json(serde_json::Deserializer::from_reader(reader), &mut f)
    }
}

/// Bundle files up to this size are read into memory before parsing.
const SLURP_LIMIT: u64 = 64 << 20;

/// Reads NDJSON lines; the first `skip` non-blank lines are counted (as the items they were)
/// but not parsed, and not passed to `f`.
fn read_ndjson(
    path: &Path,
    mut reader: impl BufRead,
    skip: u64,
    f: &mut dyn FnMut(Position, Item) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    let mut line = Vec::with_capacity(8192);
    let mut no = 0u64;
    let mut any = false;
    let mut skipped = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(VaultError::io(path))?;
        if n == 0 {
            break;
        }
        no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        any = true;
        if skipped < skip {
            skipped += 1;
            continue;
        }
        let item = serde_json::from_slice::<Value>(&line).map_err(|e| classify(&e));
        f(Position::Line(no), item)?;
    }
    if !any {
        return f(Position::File, Err(BadReason::EmptyFile));
    }
    Ok(())
}

/// State shared by the streaming Bundle visitor.
struct Sink<'a> {
    f: &'a mut dyn FnMut(Position, Item) -> Result<(), VaultError>,
    failure: Option<VaultError>,
    entries: u64,
    /// Reading the value of `entry` (for naming where a value of the wrong type was).
    in_entry: bool,
}

struct Top<'s, 'a>(&'s mut Sink<'a>);

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = Map<String, Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = Map<String, Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a fhir resource or bundle object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rest = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "entry" {
                self.0.in_entry = true;
                map.next_value_seed(Entries(&mut *self.0))?;
                self.0.in_entry = false;
            } else {
                let v: Value = map.next_value()?;
                rest.insert(key, v);
            }
        }
        Ok(rest)
    }
}

struct Entries<'s, 'a>(&'s mut Sink<'a>);

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of bundle entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(entry) = seq.next_element::<Value>()? {
            let pos = Position::Entry(self.0.entries);
            self.0.entries += 1;
            let item = match entry {
                Value::Object(e) if is_delete_entry(&e) => Ok(delete_bundle(e)),
                Value::Object(mut e) => match e.remove("resource") {
                    Some(r) => Ok(r),
                    None => Err(BadReason::Malformed("bundle entry has no resource".into())),
                },
                _ => Err(BadReason::Malformed("bundle entry is not an object".into())),
            };
            if let Err(err) = (self.0.f)(pos, item) {
                self.0.failure = Some(err);
                return Err(serde::de::Error::custom("ingest aborted"));
            }
        }
        Ok(())
    }
}

fn read_json<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    f: &mut dyn FnMut(Position, Item) -> Result<(), VaultError>,
) -> Result<(), VaultError> {
    let mut sink = Sink {
        f,
        failure: None,
        entries: 0,
        in_entry: false,
    };
    let top = Top(&mut sink).deserialize(&mut de);
    let top = match top.and_then(|t| de.end().map(|()| t)) {
        Ok(t) => t,
        Err(e) => {
            if let Some(failure) = sink.failure.take() {
                return Err(failure);
            }
            let reason = if e.is_data() {
                // A value of the wrong type: serde's message would quote the value (patient
                // data), so name the place instead.
                BadReason::Malformed(if sink.in_entry {
                    "invalid json: field=entry is not an array of bundle entries".into()
                } else {
                    "invalid json: expected a fhir resource or bundle object".into()
                })
            } else {
                classify(&e)
            };
            let pos = Position::At(e.line() as u64, e.column() as u64);
            return (sink.f)(pos, Err(reason));
        }
    };
    let is_bundle = top.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    if is_bundle {
        if sink.entries == 0 {
            return (sink.f)(Position::File, Err(BadReason::EmptyFile));
        }
        return Ok(());
    }
    if sink.entries > 0 {
        return (sink.f)(
            Position::File,
            Err(BadReason::Malformed(
                "field=entry on a resource that is not a Bundle".into(),
            )),
        );
    }
    (sink.f)(Position::Entry(0), Ok(Value::Object(top)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn r4_type_list_is_sorted_for_binary_search() {
        let mut sorted = R4_TYPES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, R4_TYPES);
        assert!(is_r4_type("Observation"));
        assert!(!is_r4_type("Banana"));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1970-01-02T10:00:00+02:00"), Some(1));
        assert_eq!(parse_date("1971"), Some(365));
        assert_eq!(parse_date("1970-02"), Some(31));
        assert_eq!(parse_date("2019-02-29"), None);
        assert_eq!(parse_date("20190101"), None);
        assert_eq!(parse_date("2019-01-01X"), None);
        assert_eq!(
            format_date(parse_date("2024-02-29").unwrap_or(0)),
            "2024-02-29"
        );
    }

    #[test]
    fn references_parse() {
        assert_eq!(parse_reference("#x"), None);
        assert_eq!(
            parse_reference("urn:uuid:abc"),
            Some(RefTarget::AnyType("abc".into()))
        );
        assert_eq!(
            parse_reference("http://h/fhir/Patient/p1/_history/2"),
            Some(RefTarget::Typed("Patient".into(), "p1".into()))
        );
        assert_eq!(
            parse_reference("Patient?identifier=x|1"),
            Some(RefTarget::Unresolvable)
        );
        let r = json!({"resourceType": "Condition", "subject": {"reference": "Patient/p"},
            "contained": [{"reference": "Patient/q"}], "x": [{"reference": "#c"}]});
        assert_eq!(
            references(&r),
            vec![(
                "subject".to_string(),
                RefTarget::Typed("Patient".into(), "p".into())
            )]
        );
    }

    #[test]
    fn wrong_json_types_are_named_not_quoted() {
        let reasons = |doc: &str| {
            let mut out = Vec::new();
            let de = serde_json::Deserializer::from_slice(doc.as_bytes());
            read_json(de, &mut |_, item| {
                out.extend(item.err().map(|r| r.to_string()));
                Ok(())
            })
            .unwrap_or_default();
            out
        };
        assert_eq!(
            reasons(r#""Jane Doe""#),
            ["malformed: invalid json: expected a fhir resource or bundle object"]
        );
        assert_eq!(
            reasons(r#"{"resourceType": "Bundle", "entry": "Jane Doe"}"#),
            ["malformed: invalid json: field=entry is not an array of bundle entries"]
        );
    }

    #[test]
    fn resource_checks() {
        assert!(
            check_resource(&json!({"resourceType": "Patient", "id": "p1", "gender": "female"}))
                .is_ok()
        );
        assert!(matches!(
            check_resource(&json!({"resourceType": "Banana", "id": "x"})),
            Err(BadReason::UnknownResourceType(_))
        ));
        assert!(matches!(
            check_resource(&json!({"resourceType": "ProcedureRequest", "id": "x"})),
            Err(BadReason::NotR4(_))
        ));
        assert!(matches!(
            check_resource(&json!({"resourceType": "Patient"})),
            Err(BadReason::Malformed(_))
        ));
        assert!(matches!(
            check_resource(
                &json!({"resourceType": "Patient", "id": "p", "birthDate": "1990-13-01"})
            ),
            Err(BadReason::Malformed(_))
        ));
        assert!(matches!(
            check_resource(&json!({"resourceType": "Condition", "id": "c", "code": {}})),
            Err(BadReason::Malformed(_))
        ));
    }
}
