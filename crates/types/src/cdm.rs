//! The common data model every member's vault stores (a hospital's clinical record, an
//! insurer's claims): each table with its columns (name, type, nullability), in storage order —
//! OMOP CDM 5.4 names, a subset: person, visit_occurrence, condition_occurrence,
//! drug_exposure, measurement, observation, procedure_occurrence, death, location, cost.
//!
//! This list is the one definition of the tables. The vault's Parquet schemas, row buffers,
//! quality profile and catalog description derive from it, and so does the consortium's
//! default classification of every field ([`crate::classification`]). Names and types are those
//! of the Parquet files already written: a change here must keep them readable.

/// The type of a CDM column, named after the Arrow type it is stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// 64-bit integer: row ids and references to them.
    Int64,
    /// 32-bit integer: concept ids, parts of dates.
    Int32,
    /// 64-bit float: values and quantities.
    Float64,
    /// UTF-8 string: source values.
    Utf8,
    /// Days since 1970-01-01.
    Date32,
}

/// One column of a CDM table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name (OMOP CDM 5.4 where the column exists there).
    pub name: &'static str,
    /// Stored type.
    pub ty: ColumnType,
    /// Whether a cell may be null.
    pub nullable: bool,
}

/// One CDM table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    /// Table name (OMOP CDM 5.4).
    pub name: &'static str,
    /// Columns in storage order (the order of a row's cells).
    pub columns: &'static [Column],
}

use ColumnType::{Date32, Float64, Int32, Int64, Utf8};

/// A nullable column.
const fn col(name: &'static str, ty: ColumnType) -> Column {
    Column {
        name,
        ty,
        nullable: true,
    }
}

/// A non-null row id or reference.
const fn key(name: &'static str) -> Column {
    Column {
        name,
        ty: Int64,
        nullable: false,
    }
}

/// The CDM tables, in a fixed order, with their columns.
pub const CDM: &[Table] = &[
    Table {
        name: "person",
        columns: &[
            key("person_id"),
            col("gender_concept_id", Int32),
            col("year_of_birth", Int32),
            col("month_of_birth", Int32),
            col("day_of_birth", Int32),
            col("birth_datetime", Date32),
            col("race_concept_id", Int32),
            col("ethnicity_concept_id", Int32),
            col("person_source_value", Utf8),
            col("gender_source_value", Utf8),
            col("race_source_value", Utf8),
            col("ethnicity_source_value", Utf8),
            // Appended after the columns of earlier versions so their positions stay; a person
            // row of an earlier file reads it as null.
            col("location_id", Int64),
        ],
    },
    Table {
        name: "visit_occurrence",
        columns: &[
            key("visit_occurrence_id"),
            key("person_id"),
            col("visit_concept_id", Int32),
            col("visit_start_date", Date32),
            col("visit_end_date", Date32),
            col("visit_type_concept_id", Int32),
            col("visit_source_value", Utf8),
            col("visit_source_concept_id", Int32),
        ],
    },
    Table {
        name: "condition_occurrence",
        columns: &[
            key("condition_occurrence_id"),
            key("person_id"),
            col("condition_concept_id", Int32),
            col("condition_start_date", Date32),
            col("condition_end_date", Date32),
            col("condition_type_concept_id", Int32),
            col("condition_status_source_value", Utf8),
            col("visit_occurrence_id", Int64),
            col("condition_source_value", Utf8),
            col("condition_source_concept_id", Int32),
        ],
    },
    Table {
        name: "drug_exposure",
        columns: &[
            key("drug_exposure_id"),
            key("person_id"),
            col("drug_concept_id", Int32),
            col("drug_exposure_start_date", Date32),
            col("drug_exposure_end_date", Date32),
            col("drug_type_concept_id", Int32),
            col("quantity", Float64),
            col("visit_occurrence_id", Int64),
            col("drug_source_value", Utf8),
            col("drug_source_concept_id", Int32),
        ],
    },
    Table {
        name: "measurement",
        columns: &[
            key("measurement_id"),
            key("person_id"),
            col("measurement_concept_id", Int32),
            col("measurement_date", Date32),
            col("measurement_type_concept_id", Int32),
            col("value_as_number", Float64),
            col("unit_concept_id", Int32),
            col("visit_occurrence_id", Int64),
            col("measurement_source_value", Utf8),
            col("measurement_source_concept_id", Int32),
            col("unit_source_value", Utf8),
            col("value_source_value", Utf8),
        ],
    },
    Table {
        name: "observation",
        columns: &[
            key("observation_id"),
            key("person_id"),
            col("observation_concept_id", Int32),
            col("observation_date", Date32),
            col("observation_type_concept_id", Int32),
            col("value_as_number", Float64),
            col("value_as_string", Utf8),
            col("value_as_concept_id", Int32),
            col("unit_source_value", Utf8),
            col("visit_occurrence_id", Int64),
            col("observation_source_value", Utf8),
            col("observation_source_concept_id", Int32),
        ],
    },
    Table {
        name: "procedure_occurrence",
        columns: &[
            key("procedure_occurrence_id"),
            key("person_id"),
            col("procedure_concept_id", Int32),
            col("procedure_date", Date32),
            col("procedure_end_date", Date32),
            col("procedure_type_concept_id", Int32),
            col("visit_occurrence_id", Int64),
            col("procedure_source_value", Utf8),
            col("procedure_source_concept_id", Int32),
        ],
    },
    Table {
        name: "death",
        columns: &[
            key("person_id"),
            col("death_date", Date32),
            col("death_type_concept_id", Int32),
            col("cause_source_value", Utf8),
        ],
    },
    // The person's region, for counts by region (public-health surveillance). One row per
    // person with an address, `location_id` = the person's `person_id`. `zip` holds only the
    // first three characters of the postal code (HIPAA Safe Harbor: a full postal code is an
    // identifier); `county` is FHIR `address.district`. No street lines, no full postal code.
    Table {
        name: "location",
        columns: &[
            key("location_id"),
            col("city", Utf8),
            col("state", Utf8),
            col("zip", Utf8),
            col("county", Utf8),
        ],
    },
    // What an encounter cost, from a payer's adjudicated claim (FHIR ExplanationOfBenefit): one
    // row per claim, about the visit it bills (`cost_event_id` = its `visit_occurrence_id`,
    // `cost_domain_id` = "Visit"). `cost_type_concept_id` 32810 is "Claim", `currency_concept_id`
    // 44818668 is USD. `total_charge` is what was submitted, `total_paid` what the payer paid
    // (all of it, so `paid_by_payer` = `total_paid`), `paid_by_patient` the rest of the charge.
    // The two concept ids are Int64 here, where other tables' concept ids are Int32.
    Table {
        name: "cost",
        columns: &[
            key("cost_id"),
            key("cost_event_id"),
            col("cost_domain_id", Utf8),
            col("cost_type_concept_id", Int64),
            col("currency_concept_id", Int64),
            col("total_charge", Float64),
            col("total_paid", Float64),
            col("paid_by_payer", Float64),
            col("paid_by_patient", Float64),
        ],
    },
];

/// The CDM table names, in the order of [`CDM`].
pub const TABLES: [&str; 10] = table_names(CDM);

const fn table_names<const N: usize>(tables: &[Table]) -> [&'static str; N] {
    assert!(tables.len() == N, "TABLES must name every table of CDM");
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        // INVARIANT: i < N == tables.len() (asserted above); this runs at compile time, where an
        // out-of-bounds index would fail the build.
        #[allow(clippy::indexing_slicing)]
        {
            names[i] = tables[i].name;
        }
        i += 1;
    }
    names
}

/// A table by name.
pub fn table(name: &str) -> Option<&'static Table> {
    CDM.iter().find(|t| t.name == name)
}

/// The columns of a table (none for an unknown name).
pub fn columns(table_name: &str) -> &'static [Column] {
    table(table_name).map(|t| t.columns).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_a_key_and_unique_columns() {
        assert_eq!(TABLES.len(), CDM.len());
        for t in CDM {
            assert!(
                t.columns
                    .first()
                    .is_some_and(|c| !c.nullable && c.ty == Int64),
                "{}",
                t.name
            );
            let mut names: Vec<&str> = t.columns.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), t.columns.len(), "{}", t.name);
        }
        assert!(columns("banana").is_empty());
    }

    #[test]
    fn new_tables_are_appended_and_person_refers_to_location() {
        // Tables are appended, so the order of earlier ones stays.
        assert_eq!(TABLES.get(8), Some(&"location"));
        assert_eq!(TABLES.last(), Some(&"cost"));
        let person = columns("person");
        assert_eq!(
            person.last().map(|c| (c.name, c.ty, c.nullable)),
            Some(("location_id", Int64, true)),
            "appended, so earlier columns keep their positions"
        );
        let names: Vec<&str> = columns("location").iter().map(|c| c.name).collect();
        assert_eq!(names, ["location_id", "city", "state", "zip", "county"]);
    }

    #[test]
    fn cost_refers_to_a_visit_and_holds_amounts() {
        let cost: Vec<(&str, ColumnType, bool)> = columns("cost")
            .iter()
            .map(|c| (c.name, c.ty, c.nullable))
            .collect();
        assert_eq!(
            cost,
            [
                ("cost_id", Int64, false),
                ("cost_event_id", Int64, false),
                ("cost_domain_id", Utf8, true),
                ("cost_type_concept_id", Int64, true),
                ("currency_concept_id", Int64, true),
                ("total_charge", Float64, true),
                ("total_paid", Float64, true),
                ("paid_by_payer", Float64, true),
                ("paid_by_patient", Float64, true),
            ]
        );
    }
}
