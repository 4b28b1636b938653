//! The consortium's classification of data by privacy level (DESIGN §3), in one place:
//!
//! - the level of every field of the common data model ([`crate::cdm`]): pseudonymous
//!   record-level data is L2; dates, clinical codes and values (a cost's amounts among them:
//!   they identify a person in combination) and direct identifiers are L3;
//! - the codes that make data highly sensitive whatever the field (L4): HIV and other sexually
//!   transmitted infections, mental health, substance use, reproductive health, genetics.
//!
//! The classification is consortium policy: it is part of [`crate::Policy`], set in the genesis
//! and changed only by an `UpdatePolicy` vote — never a constant of a binary.
//! [`Classification::default`] is what a new consortium starts from. The ledger classifies
//! requests with it (a published field can be classified higher by its owner, never lower),
//! the query compiler counts a query's codes with it, the vault and the catalog show it.

use crate::cdm::{CDM, Table};
use crate::codec::{List, Text};
use crate::{Level, TypeError};

crate::unit_enum!(
    /// Why a code makes data highly sensitive (L4).
    Sensitive {
        /// HIV and other sexually transmitted infections.
        1 => HivSti = "hiv_sti",
        /// Mental health.
        2 => MentalHealth = "mental_health",
        /// Substance use.
        3 => SubstanceUse = "substance_use",
        /// Reproductive health (pregnancy, contraception, termination).
        4 => Reproductive = "reproductive",
        /// Genetic and genomic data.
        5 => Genetic = "genetic",
    }
);

/// The level of one field.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldLevel {
    /// The CDM table.
    pub table: Text<64>,
    /// The column.
    pub column: Text<64>,
    /// Its level.
    pub level: Level,
}
crate::codec_struct!(FieldLevel {
    table: Text<64>,
    column: Text<64>,
    level: Level,
});

/// A code (or every code starting with it) that makes the records carrying it L4.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SensitiveCode {
    /// The CDM table whose source codes it is found in (`condition_occurrence`, …).
    pub table: Text<64>,
    /// The source code (SNOMED CT, LOINC, RxNorm as the table stores them).
    pub code: Text<32>,
    /// Whether every code starting with `code` matches too.
    pub prefix: bool,
    /// Why it is sensitive.
    pub category: Sensitive,
}
crate::codec_struct!(SensitiveCode {
    table: Text<64>,
    code: Text<32>,
    prefix: bool,
    category: Sensitive,
});

/// The consortium's classification: field levels, sensitive codes, and the level of anything
/// not listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Classification {
    /// The level of each listed field.
    pub fields: List<FieldLevel, 256>,
    /// Codes that make data L4.
    pub sensitive: List<SensitiveCode, 256>,
    /// The level of a field that is not listed.
    pub unlisted: Level,
}
crate::codec_struct!(Classification {
    fields: List<FieldLevel, 256>,
    sensitive: List<SensitiveCode, 256>,
    unlisted: Level,
});

/// The default level of a CDM field: pseudonymous record-level data (row ids, concept ids,
/// sex, year and month of birth, the state of residence, a cost's domain) is L2; dates,
/// clinical source codes and values (a measured value, a dispensed quantity, the amounts of a
/// cost), race, ethnicity, the day of birth, the hospital's own patient identifier, every
/// field of a death record and the quasi-identifiers of a location (city, county, the postal
/// code's first three characters) are L3.
pub fn default_field_level(table: &str, column: &str) -> Level {
    if table == "location" {
        return match column {
            "city" | "county" | "zip" => Level::L3,
            _ => Level::L2,
        };
    }
    if table == "cost" {
        // The amounts are values of the record, as a measurement's value or a drug's quantity
        // (L3); the row id, the visit it is about, its domain and concept ids are L2.
        return match column {
            "total_charge" | "total_paid" | "paid_by_payer" | "paid_by_patient" => Level::L3,
            _ => Level::L2,
        };
    }
    match column {
        "person_source_value"
        | "birth_datetime"
        | "day_of_birth"
        | "race_source_value"
        | "ethnicity_source_value"
        | "race_concept_id"
        | "ethnicity_concept_id"
        | "quantity" => Level::L3,
        "person_id"
        | "location_id"
        | "gender_source_value"
        | "gender_concept_id"
        | "year_of_birth"
        | "month_of_birth" => Level::L2,
        c if c.ends_with("_date") || c.ends_with("_datetime") => Level::L3,
        c if c.ends_with("_source_value") || c.starts_with("value_as") => Level::L3,
        _ if table == "death" => Level::L3,
        _ => Level::L2,
    }
}

/// The default sensitive codes: (table, code, prefix, category). Codes as the vault stores
/// them: SNOMED CT for conditions, procedures and observations, LOINC for measurements,
/// RxNorm for drugs.
const DEFAULT_SENSITIVE: &[(&str, &str, bool, Sensitive)] = {
    use Sensitive::*;
    &[
        // HIV and sexually transmitted infections.
        ("condition_occurrence", "86406008", false, HivSti), // HIV infection
        ("condition_occurrence", "62479008", false, HivSti), // AIDS
        ("condition_occurrence", "165816005", false, HivSti), // HIV positive
        ("condition_occurrence", "76272004", false, HivSti), // syphilis
        ("condition_occurrence", "15628003", false, HivSti), // gonorrhea
        ("condition_occurrence", "240589008", false, HivSti), // chlamydia trachomatis infection
        ("condition_occurrence", "33839006", false, HivSti), // genital herpes simplex
        ("measurement", "7917-8", false, HivSti),            // HIV 1 antibody
        ("measurement", "75622-1", false, HivSti),           // HIV 1 and 2 antibody
        ("procedure_occurrence", "31676001", false, HivSti), // HIV antigen test
        ("procedure_occurrence", "165829005", false, HivSti), // gonorrhea infection titer test
        ("procedure_occurrence", "269828009", false, HivSti), // syphilis titer test
        ("procedure_occurrence", "310861008", false, HivSti), // chlamydia antigen test
        // Mental health.
        ("condition_occurrence", "35489007", false, MentalHealth), // depressive disorder
        ("condition_occurrence", "370143000", false, MentalHealth), // major depressive disorder
        ("condition_occurrence", "36923009", false, MentalHealth), // major depression, single episode
        ("condition_occurrence", "58214004", false, MentalHealth), // schizophrenia
        ("condition_occurrence", "13746004", false, MentalHealth), // bipolar disorder
        ("condition_occurrence", "197480006", false, MentalHealth), // anxiety disorder
        ("condition_occurrence", "47505003", false, MentalHealth), // post-traumatic stress disorder
        ("condition_occurrence", "225444004", false, MentalHealth), // at risk for suicide
        ("procedure_occurrence", "225337009", false, MentalHealth), // suicide risk assessment
        ("procedure_occurrence", "183401008", false, MentalHealth), // anti-suicide psychotherapy
        // Substance use.
        ("condition_occurrence", "7200002", false, SubstanceUse), // alcoholism
        ("condition_occurrence", "66590003", false, SubstanceUse), // alcohol dependence
        ("condition_occurrence", "5602001", false, SubstanceUse), // opioid abuse
        ("condition_occurrence", "55680006", false, SubstanceUse), // drug overdose
        ("condition_occurrence", "6525002", false, SubstanceUse), // dependent drug abuse
        ("procedure_occurrence", "56876005", false, SubstanceUse), // drug rehabilitation and detoxification
        ("procedure_occurrence", "61480009", false, SubstanceUse), // drug detoxification
        ("procedure_occurrence", "60112009", false, SubstanceUse), // drug addiction counseling
        ("procedure_occurrence", "266707007", false, SubstanceUse), // drug addiction therapy
        ("procedure_occurrence", "24165007", false, SubstanceUse), // alcoholism counseling
        ("procedure_occurrence", "313071005", false, SubstanceUse), // substance abuse counseling
        ("drug_exposure", "1010600", false, SubstanceUse),         // buprenorphine / naloxone
        // Reproductive health.
        ("condition_occurrence", "72892002", false, Reproductive), // normal pregnancy
        ("condition_occurrence", "79586000", false, Reproductive), // tubal pregnancy
        ("condition_occurrence", "19169002", false, Reproductive), // miscarriage in first trimester
        ("procedure_occurrence", "714812005", false, Reproductive), // induced termination of pregnancy
        ("procedure_occurrence", "386394001", false, Reproductive), // pregnancy termination care
        ("procedure_occurrence", "10383002", false, Reproductive), // counseling for termination of pregnancy
        ("procedure_occurrence", "252160004", false, Reproductive), // standard pregnancy test
        ("drug_exposure", "389221", false, Reproductive),          // etonogestrel drug implant
        // Genetics.
        ("measurement", "48018-6", false, Genetic), // gene studied
        ("measurement", "81247-9", false, Genetic), // genetic variant reporting panel
        ("measurement", "69548-6", false, Genetic), // genetic variant assessment
    ]
};

impl Classification {
    /// The level of `table.column`: listed, or the classification's level for anything not
    /// listed.
    pub fn field_level(&self, table: &str, column: &str) -> Level {
        self.fields
            .iter()
            .find(|f| f.table.as_str() == table && f.column.as_str() == column)
            .map_or(self.unlisted, |f| f.level)
    }

    /// Why `code`, found in `table`'s source codes, makes data highly sensitive, if it does.
    pub fn sensitive(&self, table: &str, code: &str) -> Option<Sensitive> {
        self.sensitive
            .iter()
            .find(|s| {
                s.table.as_str() == table
                    && if s.prefix {
                        code.starts_with(s.code.as_str())
                    } else {
                        code == s.code.as_str()
                    }
            })
            .map(|s| s.category)
    }

    /// The level a code lends what touches it: L4 when it is sensitive, L1 otherwise (the
    /// fields it is read from carry their own level).
    pub fn code_level(&self, table: &str, code: &str) -> Level {
        match self.sensitive(table, code) {
            Some(_) => Level::L4,
            None => Level::L1,
        }
    }

    /// The classification every new consortium starts from: [`default_field_level`] for every
    /// field of the CDM, the default sensitive codes, L3 for anything not listed.
    pub fn try_default() -> Result<Self, TypeError> {
        let mut fields = Vec::new();
        for Table { name, columns } in CDM {
            for c in *columns {
                fields.push(FieldLevel {
                    table: Text::new(*name)?,
                    column: Text::new(c.name)?,
                    level: default_field_level(name, c.name),
                });
            }
        }
        let sensitive = DEFAULT_SENSITIVE
            .iter()
            .map(|(table, code, prefix, category)| {
                Ok(SensitiveCode {
                    table: Text::new(*table)?,
                    code: Text::new(*code)?,
                    prefix: *prefix,
                    category: *category,
                })
            })
            .collect::<Result<Vec<_>, TypeError>>()?;
        Ok(Self {
            fields: List::new(fields)?,
            sensitive: List::new(sensitive)?,
            unlisted: Level::L3,
        })
    }
}

impl Default for Classification {
    /// [`Classification::try_default`]; it holds well within its bounds (checked by a test),
    /// so the fallback, an empty classification classifying everything L3, is never used.
    fn default() -> Self {
        Self::try_default().unwrap_or(Self {
            fields: List::default(),
            sensitive: List::default(),
            unlisted: Level::L3,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn the_default_lists_every_cdm_field_and_round_trips() {
        let c = Classification::try_default().unwrap();
        let n: usize = CDM.iter().map(|t| t.columns.len()).sum();
        assert_eq!(c.fields.len(), n);
        assert_eq!(Classification::default(), c);
        let bytes = c.encode();
        assert_eq!(Classification::decode(bytes).unwrap(), c);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Classification>(&json).unwrap(), c);
    }

    #[test]
    fn levels_follow_design() {
        let c = Classification::default();
        assert_eq!(c.field_level("person", "person_id"), Level::L2);
        assert_eq!(c.field_level("person", "year_of_birth"), Level::L2);
        assert_eq!(c.field_level("person", "birth_datetime"), Level::L3);
        assert_eq!(c.field_level("person", "person_source_value"), Level::L3);
        assert_eq!(
            c.field_level("condition_occurrence", "condition_source_value"),
            Level::L3
        );
        assert_eq!(c.field_level("measurement", "measurement_date"), Level::L3);
        assert_eq!(c.field_level("death", "death_type_concept_id"), Level::L3);
        assert_eq!(c.field_level("measurement", "measurement_id"), Level::L2);
        assert_eq!(c.field_level("banana", "peel"), Level::L3, "unlisted");
        // The region: the state is L2, what narrows it further a quasi-identifier (L3).
        assert_eq!(c.field_level("person", "location_id"), Level::L2);
        assert_eq!(c.field_level("location", "location_id"), Level::L2);
        assert_eq!(c.field_level("location", "state"), Level::L2);
        for col in ["zip", "city", "county"] {
            assert_eq!(c.field_level("location", col), Level::L3, "{col}");
        }
        // A cost: its ids as other event tables' (L2), its amounts as their values (L3).
        for col in [
            "cost_id",
            "cost_event_id",
            "cost_domain_id",
            "cost_type_concept_id",
            "currency_concept_id",
        ] {
            assert_eq!(c.field_level("cost", col), Level::L2, "{col}");
        }
        assert_eq!(
            c.field_level("cost", "cost_event_id"),
            c.field_level("measurement", "visit_occurrence_id")
        );
        for col in [
            "total_charge",
            "total_paid",
            "paid_by_payer",
            "paid_by_patient",
        ] {
            assert_eq!(c.field_level("cost", col), Level::L3, "{col}");
            assert_eq!(
                c.field_level("cost", col),
                c.field_level("measurement", "value_as_number")
            );
            assert_eq!(
                c.field_level("cost", col),
                c.field_level("drug_exposure", "quantity")
            );
        }
        assert_eq!(
            c.sensitive("condition_occurrence", "86406008"),
            Some(Sensitive::HivSti)
        );
        assert_eq!(c.code_level("condition_occurrence", "370143000"), Level::L4);
        assert_eq!(c.code_level("condition_occurrence", "44054006"), Level::L1);
        // A code is sensitive in the table it is listed for.
        assert_eq!(c.sensitive("measurement", "86406008"), None);
    }

    #[test]
    fn prefixes_match_every_code_they_start() {
        let mut c = Classification::default();
        let mut list = c.sensitive.as_slice().to_vec();
        list.push(SensitiveCode {
            table: Text::new("condition_occurrence").unwrap(),
            code: Text::new("F1").unwrap(),
            prefix: true,
            category: Sensitive::SubstanceUse,
        });
        c.sensitive = List::new(list).unwrap();
        assert_eq!(
            c.sensitive("condition_occurrence", "F10.2"),
            Some(Sensitive::SubstanceUse)
        );
        assert_eq!(c.sensitive("condition_occurrence", "E11"), None);
    }
}
