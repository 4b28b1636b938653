//! Surveillance ground truth: acute syndromes seen at the hospital day by day over a period,
//! at a known background rate everywhere and, optionally, an injected outbreak of one syndrome
//! in one region (see [`crate::region`]), so that counts by region and day have a known answer.
//!
//! Like the drug-safety scenario, the injection never touches the patient's own random stream:
//! the generated record comes out unchanged and the cases are appended after it, drawn from a
//! stream of their own seeded by `(seed, hospital, index)` and a salt.
//!
//! Per patient, for each day `d` of the period and each syndrome `s`, in that order, one
//! uniform `u` is drawn; the patient has a case of `s` on day `d` when `u <
//! `[`OutbreakScenario::rate`]`(s, region, d)` — the syndrome's background `daily_rate`, plus the
//! outbreak's extra rate that day when `s` is the outbreak's syndrome and the patient lives in
//! its region — and the patient is alive that day (born on or before it, not dead on or before
//! it). A case is an `Encounter` that day (ambulatory, or an emergency one time in four) at the
//! patient's hospital and a `Condition` with the syndrome's SNOMED CT code, its onset that day,
//! referring to the encounter; its details come from a stream of the case's own. So:
//!
//! * the expected number of cases of `s` on day `d` in region `r` is the number of patients of
//!   `r` alive on `d` times `rate(s, r, d)` — the truth a surveillance analysis estimates;
//! * the background cases are the same with or without an outbreak (the draws do not depend on
//!   the rates), and an outbreak only adds cases of its syndrome, in its region, on its days;
//! * days are independent: a patient may have the same syndrome twice in a period.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::AS_OF_YEAR;
use crate::calendar::{civil_from_days, datetime_str, day_of, days_from_civil};
use crate::codes::{SNOMED, codeable};
use crate::hospital::PRACTITIONERS;
use crate::ids::{next_id, organization_id, practitioner_id};
use crate::patient::patient_resources;
use crate::region::{region_of, region_zip3};
use crate::safety::prob;

/// Mixed into the cases' seed so their stream differs from the patient's other streams.
const SALT: u64 = 0x0B7B_4EA4_C0DE_5EED;

/// SNOMED CT under which the example records a case of influenza-like illness (Fever
/// (finding): a standard concept of the OMOP vocabulary, so a vault's mapping keeps it).
pub const ILI_SNOMED: &str = "386661006";
/// SNOMED CT under which the example records a case of acute gastroenteritis (Diarrhea
/// symptom (finding), a standard concept of the OMOP vocabulary).
pub const AGI_SNOMED: &str = "267060006";
/// SNOMED CT of fever with rash in the example (Eruption of skin (disorder)).
pub const RASH_SNOMED: &str = "271807003";
/// SNOMED CT of severe acute respiratory infection in the example (Pneumonia (disorder)).
pub const SARI_SNOMED: &str = "233604007";

/// A syndrome under surveillance and its background rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Syndrome {
    /// Its name (`influenza-like illness`, …).
    pub name: String,
    /// The SNOMED CT code of its Conditions.
    pub code: String,
    /// The code's display.
    pub display: String,
    /// Probability per person per day of a case, everywhere (clamped to [0, 1]).
    pub daily_rate: f64,
}

/// An outbreak of one syndrome in one region.
#[derive(Clone, Debug, PartialEq)]
pub struct Outbreak {
    /// The syndrome, an index into [`OutbreakScenario::syndromes`] (none when out of range).
    pub syndrome: usize,
    /// The region (see [`crate::region_of`], [`crate::region_zip3`]).
    pub region: u32,
    /// Its first day, counted from the period's first day (0).
    pub start_day: u32,
    /// Its length in days.
    pub days: u32,
    /// The extra probability per person of the region per day at the peak, the outbreak's last
    /// day: it ramps up linearly, `attack_rate · (k + 1) / days` on its day `k` (from 0).
    pub attack_rate: f64,
}

impl Outbreak {
    /// The extra probability per person of the region on day `day` of the period (0 outside
    /// the outbreak).
    pub fn extra_rate(&self, day: u32) -> f64 {
        match day.checked_sub(self.start_day) {
            Some(k) if k < self.days => {
                prob(self.attack_rate) * f64::from(k + 1) / f64::from(self.days)
            }
            _ => 0.0,
        }
    }
}

/// The syndromes of a surveillance period and the outbreak injected into it, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct OutbreakScenario {
    /// The period's first day (days since 1970-01-01).
    pub period_start: i64,
    /// Its length in days.
    pub period_days: u32,
    /// The syndromes.
    pub syndromes: Vec<Syndrome>,
    /// The injected outbreak.
    pub outbreak: Option<Outbreak>,
}

impl OutbreakScenario {
    /// The example: four syndromes (influenza-like illness, acute gastroenteritis, fever with
    /// rash, severe acute respiratory infection) at background rates that give three hospitals
    /// of 300 patients a few cases a day, over the 56 days ending on the last day before the
    /// generator's "as of" date (2024-11-06 to 2024-12-31), with an outbreak of influenza-like
    /// illness in region 3 (postal codes `013..`) from day 35 (2024-12-11) for 21 days, up to
    /// 5 % of the region's people a day at its peak. (The codes are real, the rates synthetic.)
    pub fn example() -> OutbreakScenario {
        let period_days = 56;
        let syndrome = |name: &str, code: &str, display: &str, daily_rate| Syndrome {
            name: name.into(),
            code: code.into(),
            display: display.into(),
            daily_rate,
        };
        OutbreakScenario {
            period_start: days_from_civil(AS_OF_YEAR, 1, 1) - i64::from(period_days),
            period_days,
            syndromes: vec![
                syndrome(
                    "influenza-like illness",
                    ILI_SNOMED,
                    "Fever (finding)",
                    0.004,
                ),
                syndrome(
                    "acute gastroenteritis",
                    AGI_SNOMED,
                    "Diarrhea symptom (finding)",
                    0.002,
                ),
                syndrome(
                    "fever with rash",
                    RASH_SNOMED,
                    "Eruption of skin (disorder)",
                    0.0007,
                ),
                syndrome(
                    "severe acute respiratory infection",
                    SARI_SNOMED,
                    "Pneumonia (disorder)",
                    0.001,
                ),
            ],
            outbreak: Some(Outbreak {
                syndrome: 0,
                region: 3,
                start_day: 35,
                days: 21,
                attack_rate: 0.05,
            }),
        }
    }

    /// The ground truth in words, one line each (for `medspace synth --outbreak`): the period,
    /// each syndrome's code and background rate, and the outbreak's syndrome, region (its
    /// postal code prefix), first day, length and peak rate.
    pub fn describe(&self) -> String {
        let date = |day: u32| {
            let (y, m, d) = civil_from_days(self.date_of(day));
            format!("{y:04}-{m:02}-{d:02}")
        };
        let mut out = format!(
            "surveillance period: {} to {} ({} days); background cases per person per day:\n",
            date(0),
            date(self.period_days.saturating_sub(1)),
            self.period_days
        );
        for s in &self.syndromes {
            out.push_str(&format!(
                "  {}: SNOMED CT {} ({}) {}\n",
                s.name, s.code, s.display, s.daily_rate
            ));
        }
        match &self.outbreak {
            Some(o) => out.push_str(&format!(
                "injected outbreak: {} in region {} (postal codes {}xx) from {} for {} days (days {}..{} of the period), rising linearly to {} extra cases per person per day on its last day\n",
                self.syndromes
                    .get(o.syndrome)
                    .map_or("no syndrome", |s| s.name.as_str()),
                o.region,
                region_zip3(o.region),
                date(o.start_day),
                o.days,
                o.start_day,
                o.start_day.saturating_add(o.days).saturating_sub(1),
                prob(o.attack_rate)
            )),
            None => out.push_str("no outbreak injected\n"),
        }
        out
    }

    /// The day count (since 1970-01-01) of day `day` of the period.
    pub fn date_of(&self, day: u32) -> i64 {
        self.period_start + i64::from(day)
    }

    /// The true probability that a person of `region` alive on day `day` of the period has a
    /// case of syndrome `syndrome` that day: the ground truth of the scenario.
    pub fn rate(&self, syndrome: usize, region: u32, day: u32) -> f64 {
        let background = self
            .syndromes
            .get(syndrome)
            .map_or(0.0, |s| prob(s.daily_rate));
        let extra = self
            .outbreak
            .as_ref()
            .filter(|o| o.syndrome == syndrome && o.region == region)
            .map_or(0.0, |o| o.extra_rate(day));
        prob(background + extra)
    }
}

/// Salt of the pharmacy sales' stream.
const SALES_SALT: u64 = 0x0A7C_5A1E_5EED_0F7C;
/// Mean units of antipyretics a region's pharmacies sell per day outside an outbreak.
pub const SALES_BASELINE: f64 = 40.0;
/// How strongly sales follow the outbreak: the baseline grows by this share for each
/// multiple of the syndrome's background rate that the outbreak adds (at the example's peak,
/// 12.5 times the background, sales are 2.25 times the baseline).
pub const SALES_RESPONSE: f64 = 0.1;
/// Days by which the sales lead the clinic visits.
pub const SALES_LEAD_DAYS: u32 = 2;

/// A non-hospital source of the same outbreak: the units of over-the-counter antipyretics the
/// pharmacies of each region sell per day of the period, as aggregate counts (no person in
/// them): Poisson with a mean of [`SALES_BASELINE`] (less on Sundays), in the outbreak's
/// region raised by [`SALES_RESPONSE`] per multiple of the syndrome's background rate the
/// outbreak adds, [`SALES_LEAD_DAYS`] days ahead of the clinic visits (people buy fever
/// medicine before they see a doctor). Rows `(day number, region, units)`, by day then region.
/// Deterministic in `seed`.
pub fn pharmacy_sales(seed: u64, scenario: &OutbreakScenario) -> Vec<(i64, u32, u64)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SALES_SALT);
    let mut out = Vec::new();
    for d in 0..scenario.period_days {
        let day = scenario.date_of(d);
        // 1970-01-01 was a Thursday: day % 7 == 3 is a Sunday.
        let weekday = if day.rem_euclid(7) == 3 { 0.6 } else { 1.0 };
        for region in 0..crate::region::REGIONS {
            let multiple = scenario
                .outbreak
                .as_ref()
                .filter(|o| o.region == region)
                .map_or(0.0, |o| {
                    let background = scenario
                        .syndromes
                        .get(o.syndrome)
                        .map_or(0.0, |s| prob(s.daily_rate));
                    if background > 0.0 {
                        o.extra_rate(d + SALES_LEAD_DAYS) / background
                    } else {
                        0.0
                    }
                });
            let mean = SALES_BASELINE * weekday * (1.0 + SALES_RESPONSE * multiple);
            out.push((day, region, poisson(&mut rng, mean)));
        }
    }
    out
}

/// A Poisson draw by inversion (means here are below a few hundred).
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    if mean <= 0.0 || !mean.is_finite() {
        return 0;
    }
    // Split large means so `exp(-mean)` stays representable.
    if mean > 500.0 {
        let half = mean / 2.0;
        return poisson(rng, half) + poisson(rng, mean - half);
    }
    let limit = (-mean).exp();
    let mut product: f64 = rng.random();
    let mut n = 0u64;
    while product > limit {
        product *= rng.random::<f64>();
        n += 1;
    }
    n
}

/// The patient's resources ([`patient_resources`]) followed by the scenario's cases.
pub fn patient_resources_with_outbreak(
    seed: u64,
    hospital: u32,
    index: u64,
    scenario: &OutbreakScenario,
) -> Vec<Value> {
    let mut out = patient_resources(seed, hospital, index);
    let cases = inject(seed, hospital, index, scenario, &out);
    out.extend(cases);
    out
}

/// The scenario's cases for the patient whose generated record is `record` (its Patient
/// first).
pub(crate) fn inject(
    seed: u64,
    hospital: u32,
    index: u64,
    scenario: &OutbreakScenario,
    record: &[Value],
) -> Vec<Value> {
    let Some(patient) = record.first() else {
        return Vec::new();
    };
    let stream_seed =
        (seed ^ SALT).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(hospital) << 40) ^ index;
    let mut rng = ChaCha8Rng::seed_from_u64(stream_seed);
    let day_of_field = |f: &str| patient.get(f).and_then(Value::as_str).and_then(day_of);
    let birth = day_of_field("birthDate").unwrap_or(i64::MIN);
    let death = day_of_field("deceasedDateTime").unwrap_or(i64::MAX);
    let region = region_of(seed, hospital, index);
    let who = Who {
        seed,
        hospital,
        patient_ref: format!(
            "Patient/{}",
            patient.get("id").and_then(Value::as_str).unwrap_or("")
        ),
        org_ref: format!("Organization/{}", organization_id(seed, hospital)),
    };
    let mut out = Vec::new();
    for d in 0..scenario.period_days {
        let day = scenario.date_of(d);
        for (s, syndrome) in scenario.syndromes.iter().enumerate() {
            let u: f64 = rng.random();
            if u >= scenario.rate(s, region, d) || day < birth || day >= death {
                continue;
            }
            let case_seed = stream_seed
                ^ ((u64::from(d) << 32) | s as u64)
                    .wrapping_add(1)
                    .wrapping_mul(0xD1B5_4A32_D192_ED03);
            let mut case_rng = ChaCha8Rng::seed_from_u64(case_seed);
            let active = u64::from(d) + 14 >= u64::from(scenario.period_days);
            case(&mut case_rng, &who, syndrome, day, active, &mut out);
        }
    }
    out
}

/// What every case of a patient refers to.
struct Who {
    seed: u64,
    hospital: u32,
    patient_ref: String,
    org_ref: String,
}

/// One case: the Encounter on `day` and the Condition diagnosed at it (`active` when it is
/// recent at the end of the period, else resolved).
fn case(
    rng: &mut ChaCha8Rng,
    who: &Who,
    syndrome: &Syndrome,
    day: i64,
    active: bool,
    out: &mut Vec<Value>,
) {
    let emergency = rng.random_bool(0.25);
    let (class, type_code, type_display, minutes) = if emergency {
        (
            "EMER",
            "50849002",
            "Emergency room admission (procedure)",
            180,
        )
    } else {
        ("AMB", "185345009", "Encounter for symptom (procedure)", 30)
    };
    let start: i64 = rng.random_range(8 * 60..20 * 60);
    let practitioner = format!(
        "Practitioner/{}",
        practitioner_id(who.seed, who.hospital, rng.random_range(0..PRACTITIONERS))
    );
    let eid = next_id(rng);
    let cid = next_id(rng);
    let reason = codeable(SNOMED, &syndrome.code, &syndrome.display);
    out.push(json!({
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
        "type": [codeable(SNOMED, type_code, type_display)],
        "subject": {"reference": who.patient_ref},
        "participant": [{"individual": {"reference": practitioner}}],
        "period": {"start": datetime_str(day, start), "end": datetime_str(day, start + minutes)},
        "reasonCode": [reason],
        "serviceProvider": {"reference": who.org_ref},
    }));
    let when = datetime_str(day, start + 5);
    out.push(json!({
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": if active { "active" } else { "resolved" }}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
        "code": reason,
        "subject": {"reference": who.patient_ref},
        "encounter": {"reference": format!("Encounter/{eid}")},
        "onsetDateTime": when,
        "recordedDate": when,
    }));
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use super::*;
    use crate::codes::{ACUTE, CHRONIC};
    use crate::region::REGIONS;

    #[test]
    fn pharmacy_sales_rise_ahead_in_the_outbreak_region_only() {
        let scenario = OutbreakScenario::example();
        let o = scenario.outbreak.clone().unwrap();
        let sales = pharmacy_sales(5, &scenario);
        assert_eq!(sales, pharmacy_sales(5, &scenario));
        assert_eq!(sales.len(), (scenario.period_days * REGIONS) as usize);
        let total = |region: u32, days: std::ops::Range<u32>| -> u64 {
            sales
                .iter()
                .filter(|(d, r, _)| {
                    *r == region && days.contains(&((*d - scenario.period_start) as u32))
                })
                .map(|(_, _, n)| n)
                .sum()
        };
        let before = o.start_day - 14..o.start_day - 4;
        let during = o.start_day + o.days - 12..o.start_day + o.days - 2;
        // The outbreak region's sales climb; another region's do not.
        assert!(total(o.region, during.clone()) > total(o.region, before.clone()) + 200);
        let other = (o.region + 1) % REGIONS;
        let (a, b) = (total(other, before) as f64, total(other, during) as f64);
        assert!((a - b).abs() < 0.25 * a, "{a} {b}");
    }

    /// Cases as (syndrome code, region by the Patient's postal code, day of the period,
    /// Condition id), of 3 hospitals × `per_hospital` patients.
    fn cases(
        scenario: &OutbreakScenario,
        per_hospital: u64,
    ) -> BTreeSet<(String, u32, i64, String)> {
        let mut out = BTreeSet::new();
        for hospital in 0..3 {
            for i in 0..per_hospital {
                let resources = patient_resources_with_outbreak(11, hospital, i, scenario);
                let zip = resources[0]["address"][0]["postalCode"].as_str().unwrap();
                let region = (0..REGIONS)
                    .find(|r| zip.starts_with(&region_zip3(*r)))
                    .unwrap();
                assert_eq!(region, region_of(11, hospital, i));
                for r in &resources {
                    if r["resourceType"] != "Condition" {
                        continue;
                    }
                    let code = r["code"]["coding"][0]["code"].as_str().unwrap();
                    if scenario.syndromes.iter().any(|s| s.code == code) {
                        let day = day_of(r["onsetDateTime"].as_str().unwrap()).unwrap();
                        let id = r["id"].as_str().unwrap().to_string();
                        out.insert((code.to_string(), region, day - scenario.period_start, id));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_example_period_ends_before_the_as_of_date() {
        let s = OutbreakScenario::example();
        let as_of = days_from_civil(AS_OF_YEAR, 1, 1);
        assert_eq!(s.date_of(s.period_days - 1), as_of - 1);
        assert_eq!(crate::civil_from_days(s.period_start), (2024, 11, 6));
        let o = s.outbreak.as_ref().unwrap();
        assert_eq!(
            crate::civil_from_days(s.date_of(o.start_day)),
            (2024, 12, 11)
        );
        assert_eq!(o.start_day + o.days, s.period_days);
        // The ramp: nothing before, the peak on its last day, nothing after.
        assert_eq!(o.extra_rate(34), 0.0);
        assert!((o.extra_rate(35) - 0.05 / 21.0).abs() < 1e-12);
        assert!((o.extra_rate(55) - 0.05).abs() < 1e-12);
        assert_eq!(o.extra_rate(56), 0.0);
        assert!((s.rate(0, 3, 55) - 0.054).abs() < 1e-12);
        assert_eq!(s.rate(0, 4, 55), 0.004);
        assert_eq!(s.rate(1, 3, 55), 0.002);
        assert_eq!(s.rate(9, 3, 55), 0.0);
        let codes: Vec<&str> = s.syndromes.iter().map(|s| s.code.as_str()).collect();
        assert_eq!(codes, [ILI_SNOMED, AGI_SNOMED, RASH_SNOMED, SARI_SNOMED]);
        assert_eq!(codes, ["386661006", "267060006", "271807003", "233604007"]);
        let text = s.describe();
        assert!(text.starts_with("surveillance period: 2024-11-06 to 2024-12-31 (56 days)"));
        assert!(text.contains(
            "injected outbreak: influenza-like illness in region 3 (postal codes 013xx) from 2024-12-11 for 21 days (days 35..55"
        ), "{text}");
        // The generator's own conditions never use them.
        for c in codes {
            assert!(CHRONIC.iter().all(|x| x.snomed != c));
            assert!(ACUTE.iter().all(|x| x.0 != c));
        }
    }

    #[test]
    fn the_record_is_unchanged_and_cases_are_well_formed() {
        let s = OutbreakScenario::example();
        for i in 0..60 {
            let base = patient_resources(4, 0, i);
            let with = patient_resources_with_outbreak(4, 0, i, &s);
            assert_eq!(with[..base.len()], base[..]);
            assert_eq!(patient_resources_with_outbreak(4, 0, i, &s), with);
            let patient = &base[0];
            let birth = day_of(patient["birthDate"].as_str().unwrap()).unwrap();
            let death = patient["deceasedDateTime"].as_str().and_then(day_of);
            let added = &with[base.len()..];
            assert_eq!(added.len() % 2, 0);
            for pair in added.chunks(2) {
                let (e, c) = (&pair[0], &pair[1]);
                assert_eq!(e["resourceType"], "Encounter");
                assert_eq!(c["resourceType"], "Condition");
                assert_eq!(
                    c["encounter"]["reference"].as_str().unwrap(),
                    format!("Encounter/{}", e["id"].as_str().unwrap())
                );
                let subject = format!("Patient/{}", patient["id"].as_str().unwrap());
                assert_eq!(e["subject"]["reference"], subject.as_str());
                assert_eq!(c["subject"]["reference"], subject.as_str());
                assert_eq!(
                    e["serviceProvider"]["reference"],
                    format!("Organization/{}", organization_id(4, 0)).as_str()
                );
                let day = day_of(c["onsetDateTime"].as_str().unwrap()).unwrap();
                assert_eq!(day, day_of(e["period"]["start"].as_str().unwrap()).unwrap());
                assert_eq!(day, day_of(e["period"]["end"].as_str().unwrap()).unwrap());
                assert!((s.period_start..s.period_start + 56).contains(&day));
                assert!(day >= birth && death.is_none_or(|d| day < d));
                assert!(matches!(e["class"]["code"].as_str(), Some("AMB" | "EMER")));
            }
        }
        // No syndromes, no period: nothing added.
        let none = OutbreakScenario {
            syndromes: vec![],
            ..s.clone()
        };
        assert_eq!(
            patient_resources_with_outbreak(4, 0, 1, &none),
            patient_resources(4, 0, 1)
        );
        // Out-of-range and NaN rates are clamped, never a panic.
        let mut wild = s.clone();
        wild.syndromes[0].daily_rate = f64::NAN;
        wild.syndromes[1].daily_rate = 7.0;
        wild.outbreak = Some(Outbreak {
            syndrome: 99,
            region: 3,
            start_day: u32::MAX,
            days: u32::MAX,
            attack_rate: -1.0,
        });
        let with = patient_resources_with_outbreak(4, 0, 2, &wild);
        let base = patient_resources(4, 0, 2);
        let agi = with[base.len()..]
            .iter()
            .filter(|r| r["code"]["coding"][0]["code"] == AGI_SNOMED)
            .count();
        let alive = (0..56)
            .filter(|d| {
                let day = wild.date_of(*d);
                day >= day_of(base[0]["birthDate"].as_str().unwrap()).unwrap()
                    && base[0]["deceasedDateTime"]
                        .as_str()
                        .and_then(day_of)
                        .is_none_or(|x| day < x)
            })
            .count();
        assert_eq!(agi, alive, "a rate above 1 is a case every day alive");
    }

    #[test]
    fn the_outbreak_stands_out_in_its_region_and_nowhere_else() {
        let scenario = OutbreakScenario::example();
        let with = cases(&scenario, 300);
        let quiet = OutbreakScenario {
            outbreak: None,
            ..scenario.clone()
        };
        let without = cases(&quiet, 300);
        // The background is the same with or without the outbreak; the outbreak only adds
        // influenza-like illness in region 3 on its days.
        assert!(without.is_subset(&with));
        let added: Vec<_> = with.difference(&without).collect();
        assert!(!added.is_empty());
        for (code, region, day, _) in &added {
            assert_eq!((code.as_str(), *region), (ILI_SNOMED, 3));
            assert!((35..56).contains(day), "{day}");
        }
        // Background: a few cases a day of each syndrome across all regions (900 patients).
        let mut per_syndrome: BTreeMap<&str, usize> = BTreeMap::new();
        for (code, ..) in &without {
            *per_syndrome.entry(code.as_str()).or_default() += 1;
        }
        for s in &scenario.syndromes {
            let n = per_syndrome.get(s.code.as_str()).copied().unwrap_or(0) as f64;
            let expected = 900.0 * 56.0 * s.daily_rate;
            assert!(
                (n - expected).abs() < 4.0 * expected.sqrt() + 4.0,
                "{}: {n} cases, {expected} expected",
                s.name
            );
        }
        // During the outbreak, influenza-like illness per region: region 3 well above its
        // background and above every other region.
        let mut ili: HashMap<u32, usize> = HashMap::new();
        for (code, region, day, _) in &with {
            if code == ILI_SNOMED && (35..56).contains(day) {
                *ili.entry(*region).or_default() += 1;
            }
        }
        let outbreak = ili.get(&3).copied().unwrap_or(0);
        // About 45 people per region: background 45 × 0.004 × 21 ≈ 4 cases, outbreak about
        // 45 × 0.05 × 11 ≈ 25 more.
        let background = 45.0 * 0.004 * 21.0;
        assert!(outbreak as f64 > 4.0 * background, "{outbreak} {ili:?}");
        let others: Vec<usize> = (0..REGIONS)
            .filter(|r| *r != 3)
            .map(|r| ili.get(&r).copied().unwrap_or(0))
            .collect();
        assert!(
            others.iter().all(|n| *n * 2 < outbreak),
            "{outbreak} {others:?}"
        );
        let mean = others.iter().sum::<usize>() as f64 / others.len() as f64;
        assert!(mean < 2.0 * background, "{mean}");
        // Before the outbreak, region 3 is like the others.
        let before = with
            .iter()
            .filter(|(c, r, d, _)| c == ILI_SNOMED && *r == 3 && *d < 35)
            .count();
        assert!((before as f64) < 3.0 * 45.0 * 0.004 * 35.0, "{before}");
    }
}
