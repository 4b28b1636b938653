//! Drug-safety ground truth: drugs injected on top of a patient's generated record, one of
//! which causes an adverse event at a known excess risk, so a pharmacovigilance analysis has a
//! known answer.
//!
//! The injection never touches the patient's own random stream: the record of
//! [`patient_resources`](crate::patient_resources) comes out unchanged and the injected
//! resources are appended after it, drawn from a second stream seeded by
//! `(seed, hospital, index)` and a salt. Without a scenario (or with an empty one) nothing is
//! added, and every existing function's output is what it was.
//!
//! Per patient with at least one encounter, in this order of draws: an *index encounter*
//! (uniform among the patient's encounters); then per [`SafetySignal`], whether the patient is
//! exposed (probability `exposed_share`, independent across drugs) — an exposed patient gets a
//! `MedicationRequest` of the drug at the index encounter (`authoredOn` = the encounter's start);
//! then per distinct event, the background event (probability
//! [`SafetyScenario::background_risk`]) and, for each drug the patient is exposed to, the drug's
//! excess event (probability `excess_risk`). An event, background or excess, falls on a day
//! uniform in `index + 1 ..= index + window_days` (the background of an event uses the largest
//! window of the drugs with that event), so an exposed patient has the event in the window with
//! probability `1 − (1 − background)(1 − excess)` and everyone else with probability
//! `background`: the true risk ratio of the signal drug is
//! `(1 − (1 − p₀)(1 − e)) / p₀`, and 1 for a drug with `excess_risk = 0` (the null drug). The
//! patient gets one `Condition` per event (the earliest day drawn), unless that day is after the
//! end of the record (death or the "as of" date): then no event is recorded.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::AS_OF_YEAR;
use crate::calendar::{datetime_str, day_of, days_from_civil};
use crate::codes::{RXNORM, SNOMED, codeable};
use crate::ids::next_id;
use crate::patient::patient_resources;

/// Mixed into the injection's seed so its stream differs from the patient's own.
const SALT: u64 = 0x5AFE_7D0C_0DE5_1C4A;

/// One injected drug and the adverse event it may cause.
#[derive(Clone, Debug, PartialEq)]
pub struct SafetySignal {
    /// The drug's RxNorm code.
    pub drug_rxnorm: String,
    /// The drug's display.
    pub drug_display: String,
    /// The event's SNOMED CT code.
    pub event_snomed: String,
    /// The event's display.
    pub event_display: String,
    /// Share of patients prescribed the drug (clamped to [0, 1]).
    pub exposed_share: f64,
    /// Probability that an exposed patient has the event in the window because of the drug, on
    /// top of the background (clamped to [0, 1]; 0 for a drug without effect).
    pub excess_risk: f64,
    /// The risk window: the event falls 1 to `window_days` days after the prescription.
    pub window_days: u32,
}

/// The injected drugs and the background rate of their events.
#[derive(Clone, Debug, PartialEq)]
pub struct SafetyScenario {
    /// The drugs, each with its event (several drugs may share an event).
    pub signals: Vec<SafetySignal>,
    /// Probability that a patient has each event in the window after the index encounter
    /// whatever the drugs (clamped to [0, 1]).
    pub background_risk: f64,
}

/// RxNorm of the example signal drug (ibuprofen).
pub const SIGNAL_DRUG_RXNORM: &str = "310965";
/// RxNorm of the example null drug (acetaminophen).
pub const NULL_DRUG_RXNORM: &str = "313782";
/// SNOMED CT of the example event (Bleeding from anus (finding), a sign of gastrointestinal
/// bleeding and a standard concept of the OMOP vocabulary).
pub const SIGNAL_EVENT_SNOMED: &str = "6072007";

impl SafetyScenario {
    /// The example: ibuprofen causes gastrointestinal hemorrhage within 30 days with excess
    /// risk `excess_risk`, acetaminophen has no effect on it; each drug goes to
    /// `exposed_share` of the patients, and the event's background risk is `background_risk`.
    /// (The codes are real, the association and its size are synthetic.)
    pub fn example(exposed_share: f64, excess_risk: f64, background_risk: f64) -> SafetyScenario {
        let event = ("Bleeding from anus (finding)").to_string();
        SafetyScenario {
            signals: vec![
                SafetySignal {
                    drug_rxnorm: SIGNAL_DRUG_RXNORM.into(),
                    drug_display: "Ibuprofen 200 MG Oral Tablet".into(),
                    event_snomed: SIGNAL_EVENT_SNOMED.into(),
                    event_display: event.clone(),
                    exposed_share,
                    excess_risk,
                    window_days: 30,
                },
                SafetySignal {
                    drug_rxnorm: NULL_DRUG_RXNORM.into(),
                    drug_display: "Acetaminophen 325 MG Oral Tablet".into(),
                    event_snomed: SIGNAL_EVENT_SNOMED.into(),
                    event_display: event,
                    exposed_share,
                    excess_risk: 0.0,
                    window_days: 30,
                },
            ],
            background_risk,
        }
    }
}

impl SafetyScenario {
    /// The true risk ratio of `signal`'s drug for its event: the risk within the window after
    /// the index encounter of a patient exposed to it (and to no other drug with an effect on
    /// the event) over the risk of a patient not exposed, `(1 − (1 − p₀)(1 − e)) / p₀` with
    /// `p₀` the background risk and `e` the drug's excess risk, as the generator clamps them
    /// (a little less in the data: events after the end of a record are lost). `None` without
    /// a background risk.
    pub fn true_risk_ratio(&self, signal: &SafetySignal) -> Option<f64> {
        let p0 = prob(self.background_risk);
        let e = prob(signal.excess_risk);
        (p0 > 0.0).then(|| (1.0 - (1.0 - p0) * (1.0 - e)) / p0)
    }

    /// The ground truth in words, one line each (for `medspace synth --safety`): the
    /// background risk, and per drug its share of patients, its event, window and true risk
    /// ratio.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "injected drug safety: background risk of each event {} in the window after the index visit\n",
            prob(self.background_risk)
        );
        for s in &self.signals {
            let rr = self
                .true_risk_ratio(s)
                .map_or_else(|| "undefined".to_string(), |r| format!("{r:.2}"));
            out.push_str(&format!(
                "  {} (RxNorm {}) to {} of patients -> {} (SNOMED CT {}) within {} days: true risk ratio {rr}\n",
                s.drug_display,
                s.drug_rxnorm,
                prob(s.exposed_share),
                s.event_display,
                s.event_snomed,
                s.window_days
            ));
        }
        out
    }
}

pub(crate) fn prob(p: f64) -> f64 {
    if p >= 0.0 { p.min(1.0) } else { 0.0 }
}

/// The patient's resources ([`patient_resources`]) followed by the scenario's injected
/// MedicationRequests and Conditions.
pub fn patient_resources_with_safety(
    seed: u64,
    hospital: u32,
    index: u64,
    scenario: &SafetyScenario,
) -> Vec<Value> {
    let mut out = patient_resources(seed, hospital, index);
    if scenario.signals.is_empty() {
        return out;
    }
    let injected = inject(seed, hospital, index, scenario, &out);
    out.extend(injected);
    out
}

/// One encounter of the generated record.
struct Visit {
    enc_ref: String,
    day: i64,
    start: String,
}

/// The scenario's MedicationRequests and Conditions for the patient whose generated record
/// is `record` (its Patient first).
pub(crate) fn inject(
    seed: u64,
    hospital: u32,
    index: u64,
    scenario: &SafetyScenario,
    record: &[Value],
) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(
        (seed ^ SALT).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(hospital) << 40) ^ index,
    );
    let Some(patient) = record.first() else {
        return Vec::new();
    };
    let patient_ref = format!(
        "Patient/{}",
        patient.get("id").and_then(Value::as_str).unwrap_or("")
    );
    let end_day = patient
        .get("deceasedDateTime")
        .and_then(Value::as_str)
        .and_then(day_of)
        .unwrap_or_else(|| days_from_civil(AS_OF_YEAR, 1, 1));
    let visits: Vec<Visit> = record
        .iter()
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Encounter"))
        .filter_map(|r| {
            let start = r.pointer("/period/start").and_then(Value::as_str)?;
            Some(Visit {
                enc_ref: format!("Encounter/{}", r.get("id").and_then(Value::as_str)?),
                day: day_of(start)?,
                start: start.to_string(),
            })
        })
        .collect();
    if visits.is_empty() {
        return Vec::new();
    }
    let Some(visit) = visits.get(rng.random_range(0..visits.len())) else {
        return Vec::new();
    };
    let practitioner = record
        .iter()
        .find_map(|r| r.pointer("/participant/0/individual/reference"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut out = Vec::new();
    let mut exposed = Vec::with_capacity(scenario.signals.len());
    for s in &scenario.signals {
        let on = rng.random_bool(prob(s.exposed_share));
        exposed.push(on);
        if on {
            out.push(json!({
                "resourceType": "MedicationRequest",
                "id": next_id(&mut rng),
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": codeable(RXNORM, &s.drug_rxnorm, &s.drug_display),
                "subject": {"reference": patient_ref},
                "encounter": {"reference": visit.enc_ref},
                "authoredOn": visit.start,
                "requester": {"reference": practitioner},
            }));
        }
    }
    // Distinct events in first-appearance order.
    let mut events: Vec<&SafetySignal> = Vec::new();
    for s in &scenario.signals {
        if !events.iter().any(|e| e.event_snomed == s.event_snomed) {
            events.push(s);
        }
    }
    let lag = |rng: &mut ChaCha8Rng, window: u32| i64::from(rng.random_range(1..=window.max(1)));
    for ev in events {
        let window = scenario
            .signals
            .iter()
            .filter(|s| s.event_snomed == ev.event_snomed)
            .map(|s| s.window_days)
            .max()
            .unwrap_or(1);
        let mut first: Option<i64> = None;
        let mut note = |day: i64| first = Some(first.map_or(day, |f| f.min(day)));
        if rng.random_bool(prob(scenario.background_risk)) {
            note(visit.day + lag(&mut rng, window));
        }
        for (s, on) in scenario.signals.iter().zip(&exposed) {
            if *on && s.event_snomed == ev.event_snomed && rng.random_bool(prob(s.excess_risk)) {
                note(visit.day + lag(&mut rng, s.window_days));
            }
        }
        let minute: i64 = rng.random_range(0..24 * 60);
        if let Some(day) = first.filter(|d| *d <= end_day) {
            let when = datetime_str(day, minute);
            out.push(json!({
                "resourceType": "Condition",
                "id": next_id(&mut rng),
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "code": codeable(SNOMED, &ev.event_snomed, &ev.event_display),
                "subject": {"reference": patient_ref},
                "onsetDateTime": when,
                "recordedDate": when,
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::{ACUTE, CHRONIC, MEDS};

    /// Per patient: (first encounter day, start days of the drug, days of the event).
    fn histories(resources: &[Value], drug: &str, event: &str) -> Vec<(i64, Vec<i64>, Vec<i64>)> {
        let mut out: Vec<(String, i64, Vec<i64>, Vec<i64>)> = Vec::new();
        for r in resources {
            let subject = r
                .pointer("/subject/reference")
                .or_else(|| r.pointer("/patient/reference"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let code = |p: &str| r.pointer(p).and_then(Value::as_str).unwrap_or("");
            match r["resourceType"].as_str().unwrap() {
                "Patient" => {
                    out.push((format!("Patient/{}", code("/id")), i64::MAX, vec![], vec![]))
                }
                kind => {
                    // A patient's resources follow its Patient.
                    let me = out.last_mut().unwrap();
                    assert_eq!(me.0, subject);
                    match kind {
                        "Encounter" => me.1 = me.1.min(day_of(code("/period/start")).unwrap()),
                        "MedicationRequest"
                            if code("/medicationCodeableConcept/coding/0/code") == drug =>
                        {
                            me.2.push(day_of(code("/authoredOn")).unwrap())
                        }
                        "Condition" if code("/code/coding/0/code") == event => {
                            me.3.push(day_of(code("/onsetDateTime")).unwrap())
                        }
                        _ => {}
                    }
                }
            }
        }
        out.into_iter().map(|(_, a, b, c)| (a, b, c)).collect()
    }

    /// The 2×2 table by the risk-window rule (new users, event 1..=window days after the first
    /// prescription; unexposed: never prescribed), and its PRR.
    fn prr(resources: &[Value], drug: &str, event: &str, window: i64) -> (f64, [u64; 4]) {
        let mut t = [0u64; 4];
        for (_, exposures, events) in histories(resources, drug, event) {
            let cell = match exposures.iter().min() {
                Some(&s) => usize::from(!events.iter().any(|&e| e > s && e <= s + window)),
                None => 2 + usize::from(events.is_empty()),
            };
            t[cell] += 1;
        }
        let [a, b, c, d] = t.map(|x| x as f64);
        ((a / (a + b)) / (c / (c + d)), t)
    }

    fn population(n: u64, scenario: &SafetyScenario) -> Vec<Value> {
        (0..n)
            .flat_map(|i| patient_resources_with_safety(9, 2, i, scenario))
            .collect()
    }

    #[test]
    fn the_record_is_unchanged_and_only_appended_to() {
        let scenario = SafetyScenario::example(0.5, 0.5, 0.2);
        for i in 0..40 {
            let base = patient_resources(3, 1, i);
            let with = patient_resources_with_safety(3, 1, i, &scenario);
            assert_eq!(with[..base.len()], base[..]);
            let empty = SafetyScenario {
                signals: vec![],
                background_risk: 0.5,
            };
            assert_eq!(patient_resources_with_safety(3, 1, i, &empty), base);
            assert_eq!(patient_resources_with_safety(3, 1, i, &scenario), with);
        }
        // The example's codes are not used by the base generator.
        for code in [SIGNAL_DRUG_RXNORM, NULL_DRUG_RXNORM] {
            assert!(MEDS.iter().all(|m| m.1 != code));
        }
        assert!(CHRONIC.iter().all(|c| c.snomed != SIGNAL_EVENT_SNOMED));
        assert!(ACUTE.iter().all(|c| c.0 != SIGNAL_EVENT_SNOMED));
    }

    /// The 95 % CI of the PRR (Evans et al.: SE of ln PRR √(1/a − 1/(a+b) + 1/c − 1/(c+d))).
    fn prr_ci(prr: f64, t: [u64; 4]) -> (f64, f64) {
        let [a, b, c, d] = t.map(|x| x as f64);
        let se = (1.0 / a - 1.0 / (a + b) + 1.0 / c - 1.0 / (c + d)).sqrt();
        ((prr.ln() - 1.96 * se).exp(), (prr.ln() + 1.96 * se).exp())
    }

    #[test]
    fn the_injected_effect_is_in_the_data() {
        // True PRR of the signal drug: (1 − 0.95·0.7)/0.05 = 6.7 (a little less: events after
        // the end of a record are lost); of the null drug: 1 (over 8 × 1000 patients the pooled
        // PRRs came out 6.59 and 0.97).
        let scenario = SafetyScenario::example(0.3, 0.3, 0.05);
        let resources = population(800, &scenario);
        let (signal, ts) = prr(&resources, SIGNAL_DRUG_RXNORM, SIGNAL_EVENT_SNOMED, 30);
        let (null, tn) = prr(&resources, NULL_DRUG_RXNORM, SIGNAL_EVENT_SNOMED, 30);
        assert!(ts[0] >= 3 && tn[0] >= 3, "{ts:?} {tn:?}");
        let (lo, _) = prr_ci(signal, ts);
        assert!(signal > 4.0 && lo > 2.0, "signal drug PRR {signal} {ts:?}");
        let (lo, hi) = prr_ci(null, tn);
        assert!(
            lo < 1.0 && 1.0 < hi,
            "null drug PRR {null} [{lo}, {hi}] {tn:?}"
        );
        assert!((0.6..1.6).contains(&null), "null drug PRR {null} {tn:?}");
        // Exposure share as asked.
        let exposed = (ts[0] + ts[1]) as f64 / 800.0;
        assert!((0.24..0.36).contains(&exposed), "{exposed}");
        let rr = |i: usize| scenario.true_risk_ratio(&scenario.signals[i]).unwrap();
        assert!(
            (rr(0) - 6.7).abs() < 1e-9 && (rr(1) - 1.0).abs() < 1e-9,
            "{} {}",
            rr(0),
            rr(1)
        );
        let text = scenario.describe();
        assert!(
            text.contains("(RxNorm 310965) to 0.3 of patients -> Bleeding from anus (finding) (SNOMED CT 6072007) within 30 days: true risk ratio 6.70"),
            "{text}"
        );
        assert!(
            text.contains("(RxNorm 313782) to 0.3 of patients"),
            "{text}"
        );
        assert!(text.contains("true risk ratio 1.00"), "{text}");
        let none = SafetyScenario::example(0.3, 0.3, 0.0);
        assert_eq!(none.true_risk_ratio(&none.signals[0]), None);
    }

    #[test]
    fn no_excess_no_signal_and_edge_probabilities() {
        let mut scenario = SafetyScenario::example(0.4, 0.0, 0.1);
        let resources = population(500, &scenario);
        let (p, t) = prr(&resources, SIGNAL_DRUG_RXNORM, SIGNAL_EVENT_SNOMED, 30);
        assert!((0.5..1.8).contains(&p), "{p} {t:?}");
        // Out-of-range and NaN probabilities are clamped, never a panic.
        scenario.background_risk = f64::NAN;
        scenario.signals[0].exposed_share = 7.0;
        scenario.signals[0].excess_risk = -1.0;
        scenario.signals[1].window_days = 0;
        let resources = population(50, &scenario);
        let (_, t) = prr(&resources, SIGNAL_DRUG_RXNORM, SIGNAL_EVENT_SNOMED, 30);
        assert_eq!(t[0], 0);
        assert!(t[2] == 0 && t[3] == 0, "everyone is exposed: {t:?}");
    }
}
