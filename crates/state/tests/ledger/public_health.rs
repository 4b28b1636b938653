//! Public health: a surveillance definition only for public health with a budget for every
//! window it schedules, a drug-safety computation only for drug safety, the ledger's window
//! schedule of a surveillance contract (in order, each once, only after it ended, at exactly
//! the approved epsilon), and the alerts its holder states on a finished window.

use super::fixture::*;
use medspace_state::records::JobRecord;
use medspace_state::{Created, TxError};
use medspace_types::*;
use proptest::collection::vec;
use proptest::prelude::*;

/// A public-health agency, with two researchers.
const AGENCY: &str = "agency-1";
const PHA: &str = "agency-1.researcher";
const PHA_2: &str = "agency-1.analyst";
/// The data holders of every request here.
const OWNERS: [&str; 2] = ["hospital-a", "hospital-b"];
/// The first day of window 0: the day after genesis (T0 is 2023-11-14T22:13:20Z).
const START: &str = "2023-11-15";
/// [`START`] as days since 1970-01-01.
const START_DAY: u64 = 19_676;
/// What a surveillance definition reads.
const SURVEILLANCE_READS: [(&str, &str); 6] = [
    ("person", "location_id"),
    ("location", "location_id"),
    ("location", "zip"),
    ("condition_occurrence", "person_id"),
    ("condition_occurrence", "condition_source_value"),
    ("condition_occurrence", "condition_start_date"),
];
/// What a drug-safety computation reads.
const DRUG_SAFETY_READS: [(&str, &str); 8] = [
    ("visit_occurrence", "person_id"),
    ("visit_occurrence", "visit_start_date"),
    ("drug_exposure", "person_id"),
    ("drug_exposure", "drug_source_value"),
    ("drug_exposure", "drug_exposure_start_date"),
    ("condition_occurrence", "person_id"),
    ("condition_occurrence", "condition_source_value"),
    ("condition_occurrence", "condition_start_date"),
];
/// Warfarin → bleeding within 30 days, new users after 180 days.
const DRUG_SAFETY: &str = r#"{"version":1,"cohort":{"index_date":"2023-11-15"},"aggregate":{"drug_safety":{"drugs":[{"name":"warfarin","codes":["855332"]}],"events":[{"name":"bleeding","codes":["131148009"]}],"window_days":30,"washout_days":180}}}"#;
/// One window's charge: the per-window epsilon at each of the two sites.
const WINDOW_CHARGE: u64 = SURVEILLANCE_EPSILON * 2;

/// Block time from which window `w` of `window_days`-day windows from [`START`] may run: the
/// end of its last day (computed here, not by the library).
fn window_end(window_days: u64, w: u64) -> u64 {
    (START_DAY + (w + 1) * window_days) * DAY_MS
}

/// The fixture consortium with a public-health agency (two researchers), whose hospitals
/// a and b publish a version 2 of their dataset with the tables the public-health
/// computations read.
fn net() -> Net {
    let mut net = Net::new_from(Net::genesis_with_members(|g, members, users| {
        let k = Keypair::from_seed(2_001);
        g.members.push(GenesisMember {
            member: member_desc(AGENCY, MemberKind::PublicHealthAgency, &k),
            balance: BALANCE,
        });
        members.insert(AGENCY.into(), k);
        for (i, id) in [PHA, PHA_2].into_iter().enumerate() {
            let k = Keypair::from_seed(2_010 + i as u64);
            g.users.push(GenesisUser {
                id: uid(id),
                member: mid(AGENCY),
                role: Role::Researcher,
                key: k.public(),
            });
            users.insert(id.into(), k);
        }
    }));
    for h in OWNERS {
        let k = net.user(&steward(h));
        net.ok(
            &k,
            Payload::PublishDataset(PublishDataset {
                dataset: public_health_desc(h),
            }),
        );
    }
    net.next_block();
    net
}

/// Version 2 of `h`'s dataset: version 1's fields and those the public-health computations
/// read.
fn public_health_desc(h: &str) -> DatasetDescription {
    let mut d = dataset_desc(h, 2);
    d.tables = list(vec![
        table_desc(
            "person",
            20,
            vec![
                field_desc("gender_concept_id", Level::L1),
                field_desc("year_of_birth", Level::L2),
                field_desc("location_id", Level::L1),
            ],
        ),
        table_desc(
            "location",
            12,
            vec![
                field_desc("location_id", Level::L1),
                field_desc("zip", Level::L2),
            ],
        ),
        table_desc(
            "condition_occurrence",
            120,
            vec![
                field_desc("person_id", Level::L1),
                field_desc("condition_source_value", Level::L3),
                field_desc("condition_start_date", Level::L2),
            ],
        ),
        table_desc(
            "drug_exposure",
            80,
            vec![
                field_desc("person_id", Level::L1),
                field_desc("drug_source_value", Level::L3),
                field_desc("drug_exposure_start_date", Level::L2),
            ],
        ),
        table_desc(
            "visit_occurrence",
            60,
            vec![
                field_desc("person_id", Level::L1),
                field_desc("visit_start_date", Level::L2),
            ],
        ),
        table_desc("genomics", 20, vec![field_desc("hiv_status", Level::L4)]),
    ]);
    d
}

/// A compute request for `purpose` running `spec` over `reads` of both owners, for 90 days.
fn compute_request(
    net: &Net,
    purpose: Purpose,
    spec: &str,
    reads: &[(&str, &str)],
    epsilon_budget: u64,
) -> Payload {
    Payload::SubmitRequest(SubmitRequest {
        purpose,
        mode: Mode::Compute,
        study: None,
        fields: list(
            OWNERS
                .iter()
                .flat_map(|h| {
                    reads.iter().map(|(table, field)| FieldRef {
                        dataset: dataset_of(h),
                        table: text(table),
                        field: text(field),
                    })
                })
                .collect(),
        ),
        computation: Blob::new(spec.as_bytes().to_vec()).unwrap(),
        expiry_ms: net.ctx.time_ms + 90 * DAY_MS,
        epsilon_budget,
        fee: 1_000,
    })
}

/// `who`'s request, approved by every reviewer it needs.
#[track_caller]
fn active(net: &mut Net, who: &str, p: Payload) -> ContractId {
    let c = net.submit(who, p);
    net.approve_all(c);
    c
}

/// An active surveillance contract of the agency's researcher: `windows` daily windows from
/// [`START`], with a budget for `budget_windows` of them.
#[track_caller]
fn surveillance(net: &mut Net, windows: u32, budget_windows: u64) -> (ContractId, String) {
    let spec = surveillance_spec(START, 1, windows);
    let p = compute_request(
        net,
        Purpose::PublicHealth,
        &spec,
        &SURVEILLANCE_READS,
        budget_windows * WINDOW_CHARGE,
    );
    (active(net, PHA, p), spec)
}

/// `who` submits a job running `spec` under `c`.
#[track_caller]
fn job_by(net: &mut Net, who: &str, c: ContractId, spec: &str, epsilon: u64) -> JobId {
    let k = net.user(who);
    match net.ok(&k, submit_job_of(c, spec, epsilon)).created {
        Some(Created::Job(j)) => j,
        other => panic!("no job created: {other:?}"),
    }
}

/// A block at time `ms` (not earlier than the current one).
fn at(net: &mut Net, ms: u64) {
    assert!(ms >= net.ctx.time_ms, "time goes forward");
    net.ctx.height += 1;
    net.ctx.time_ms = ms;
}

fn job(net: &Net, j: JobId) -> JobRecord {
    net.state.job(j).unwrap().unwrap()
}

fn windows_run(net: &Net, c: ContractId) -> u32 {
    net.state.contract(c).unwrap().unwrap().windows_run
}

#[track_caller]
fn assert_invalid(err: &TxError, field: &str) {
    assert!(
        matches!(err, TxError::Invalid { field: f, .. } if *f == field),
        "expected Invalid {{ field: {field} }}: {err:?}"
    );
}

#[track_caller]
fn assert_out_of_scope(err: &TxError) {
    assert!(matches!(err, TxError::OutOfScope { .. }), "{err:?}");
}

#[test]
fn a_surveillance_definition_is_for_public_health_with_a_budget_for_every_window_at_every_site() {
    let mut net = net();
    let spec = surveillance_spec(START, 1, 3);
    // Three windows x 0.1 x two sites.
    let need = 3 * WINDOW_CHARGE;
    let pha = net.user(PHA);
    // A PHA researcher may ask for research, but not with a surveillance definition; nor for
    // drug safety.
    for purpose in [Purpose::Research, Purpose::DrugSafety] {
        let p = compute_request(&net, purpose, &spec, &SURVEILLANCE_READS, need);
        let err = net.refuse(&pha, p);
        assert_invalid(&err, "computation");
    }
    // A research institute's researcher never asks for public health.
    let r = net.user(RESEARCHER);
    let p = compute_request(
        &net,
        Purpose::PublicHealth,
        &spec,
        &SURVEILLANCE_READS,
        need,
    );
    let err = net.refuse(&r, p);
    assert!(matches!(err, TxError::WrongRole { .. }), "{err:?}");
    // A budget one micro-epsilon short of every window at every site.
    let p = compute_request(
        &net,
        Purpose::PublicHealth,
        &spec,
        &SURVEILLANCE_READS,
        need - 1,
    );
    let err = net.refuse(&pha, p);
    assert_invalid(&err, "epsilon_budget");
    // Exactly enough.
    let p = compute_request(
        &net,
        Purpose::PublicHealth,
        &spec,
        &SURVEILLANCE_READS,
        need,
    );
    let c = net.submit(PHA, p);
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.purpose, Purpose::PublicHealth);
    assert_eq!(rec.requester, uid(PHA));
    assert_eq!(rec.requester_member, mid(AGENCY));
    assert_eq!(rec.epsilon_budget, need);
    assert_eq!(rec.windows_run, 0);
    assert_eq!(rec.computation.as_bytes(), spec.as_bytes());
    assert_eq!(
        rec.owners.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        OWNERS
    );
    // It reads the conditions (L3): the owners' stewards and both committees review it.
    assert_eq!(rec.level, Level::L3);
    assert_eq!(rec.status_at(net.ctx.time_ms), "pending");
    net.approve_all(c);
    // Every field the definition reads is in the contract.
    for h in OWNERS {
        for (table, field) in SURVEILLANCE_READS {
            assert!(
                rec.fields.iter().any(|f| f.dataset == dataset_of(h)
                    && f.table.as_str() == table
                    && f.field.as_str() == field),
                "{h} {table}.{field}"
            );
        }
    }
    // The regulator's auditor may hold one too.
    let a = net.user(AUDITOR);
    let p = compute_request(
        &net,
        Purpose::PublicHealth,
        &spec,
        &SURVEILLANCE_READS,
        need,
    );
    let r = net.ok(&a, p);
    assert!(matches!(r.created, Some(Created::Contract(_))), "{r:?}");
}

#[test]
fn a_drug_safety_computation_is_for_drug_safety_only() {
    let mut net = net();
    let r = net.user(RESEARCHER);
    let pha = net.user(PHA);
    for purpose in [Purpose::Research, Purpose::Teaching] {
        let p = compute_request(&net, purpose, DRUG_SAFETY, &DRUG_SAFETY_READS, 1_000_000);
        let err = net.refuse(&r, p);
        assert_invalid(&err, "computation");
    }
    let p = compute_request(
        &net,
        Purpose::PublicHealth,
        DRUG_SAFETY,
        &DRUG_SAFETY_READS,
        1_000_000,
    );
    let err = net.refuse(&pha, p);
    assert_invalid(&err, "computation");
    // Under drug safety: the research institute's researcher, the agency's, the auditor.
    for who in [RESEARCHER, PHA, AUDITOR] {
        let p = compute_request(
            &net,
            Purpose::DrugSafety,
            DRUG_SAFETY,
            &DRUG_SAFETY_READS,
            1_000_000,
        );
        let c = net.submit(who, p);
        let rec = net.state.contract(c).unwrap().unwrap();
        assert_eq!(rec.purpose, Purpose::DrugSafety);
        assert_eq!(rec.requester, uid(who));
    }
    // Its jobs are not windows of a schedule.
    let p = compute_request(
        &net,
        Purpose::DrugSafety,
        DRUG_SAFETY,
        &DRUG_SAFETY_READS,
        1_000_000,
    );
    let c = active(&mut net, RESEARCHER, p);
    let j = net.job_of(c, DRUG_SAFETY, 50_000);
    assert_eq!(job(&net, j).window, None);
    assert_eq!(windows_run(&net, c), 0);
}

#[test]
fn surveillance_windows_run_in_order_each_once_after_they_end() {
    let mut net = net();
    // A budget for five windows: the schedule, not the budget, stops the fourth job.
    let (c, spec) = surveillance(&mut net, 3, 5);
    let k = net.user(PHA);
    let window_job = |c| submit_job_of(c, &spec, SURVEILLANCE_EPSILON);
    // Window 0 (2023-11-15) has not ended: not at genesis' time, not a millisecond before its
    // end.
    assert!(net.ctx.time_ms < window_end(1, 0));
    let err = net.refuse(&k, window_job(c));
    assert_out_of_scope(&err);
    at(&mut net, window_end(1, 0) - 1);
    let err = net.refuse(&k, window_job(c));
    assert_out_of_scope(&err);
    assert_eq!(windows_run(&net, c), 0);
    at(&mut net, window_end(1, 0));
    // Exactly the approved per-window epsilon: not less, not more.
    for epsilon in [SURVEILLANCE_EPSILON - 1, SURVEILLANCE_EPSILON + 1] {
        let err = net.refuse(&k, submit_job_of(c, &spec, epsilon));
        assert_invalid(&err, "epsilon");
    }
    // Only the holder.
    let other = net.user(PHA_2);
    let err = net.refuse(&other, window_job(c));
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    let j0 = job_by(&mut net, PHA, c, &spec, SURVEILLANCE_EPSILON);
    assert_eq!(job(&net, j0).window, Some(0));
    assert_eq!(job(&net, j0).epsilon_reserved, SURVEILLANCE_EPSILON);
    assert_eq!(windows_run(&net, c), 1);
    assert_eq!(
        net.state.budget_left(c).unwrap(),
        Some(4 * WINDOW_CHARGE),
        "a window reserves its epsilon at each site"
    );
    // In the same block, window 1 has not ended (a day later).
    let err = net.refuse(&k, window_job(c));
    assert_out_of_scope(&err);
    assert_eq!(windows_run(&net, c), 1);
    // Once windows 1 and 2 have ended, both run, in order, even in one block.
    at(&mut net, window_end(1, 2));
    let j1 = job_by(&mut net, PHA, c, &spec, SURVEILLANCE_EPSILON);
    let j2 = job_by(&mut net, PHA, c, &spec, SURVEILLANCE_EPSILON);
    assert_eq!(job(&net, j1).window, Some(1));
    assert_eq!(job(&net, j2).window, Some(2));
    assert_eq!(windows_run(&net, c), 3);
    // Every window ran: ten days later (every further day ended, budget left for two more
    // windows) the next job is still refused.
    at(&mut net, window_end(1, 2) + 10 * DAY_MS);
    assert_eq!(net.state.budget_left(c).unwrap(), Some(2 * WINDOW_CHARGE));
    let err = net.refuse(&k, window_job(c));
    assert_out_of_scope(&err);
    assert_eq!(windows_run(&net, c), 3);
    // A job outside a surveillance contract has no window.
    let other = net.active(Mode::Compute, &["hospital-a"], Level::L1);
    let j = net.job(other, 100_000);
    assert_eq!(job(&net, j).window, None);
    assert_eq!(windows_run(&net, other), 0);
}

#[test]
fn the_holder_states_an_alert_on_a_finished_window_of_its_definition() {
    let mut net = net();
    let (c, spec) = surveillance(&mut net, 3, 3);
    at(&mut net, window_end(1, 0));
    let j0 = job_by(&mut net, PHA, c, &spec, SURVEILLANCE_EPSILON);
    let pha = net.user(PHA);
    // No result yet.
    let err = net.refuse(&pha, record_alert(j0, "ili", "010", "c1"));
    assert_out_of_scope(&err);
    net.finish(j0, &[("hospital-a", 5), ("hospital-b", 7)]);
    net.next_block();
    // Nobody but the holder: not another user of its institution, nor another
    // institution's, nor the agency's member or node key, nor the aggregator's node, nor a
    // patient.
    let steward_a = steward("hospital-a");
    for who in [PHA_2, RESEARCHER, AUDITOR, steward_a.as_str()] {
        let k = net.user(who);
        let err = net.refuse(&k, record_alert(j0, "ili", "010", "c1"));
        assert!(matches!(err, TxError::Forbidden { .. }), "{who}: {err:?}");
    }
    for k in [
        net.member(AGENCY),
        net.node(AGENCY),
        net.node("hospital-a"),
        net.patient(0),
    ] {
        let err = net.refuse(&k, record_alert(j0, "ili", "010", "c1"));
        assert!(
            matches!(
                err,
                TxError::WrongSigner {
                    kind: "record_alert",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // Only the definition's syndromes and regions, a known detector, bounded figures.
    let err = net.refuse(&pha, record_alert(j0, "covid", "010", "c1"));
    assert_invalid(&err, "syndrome");
    let err = net.refuse(&pha, record_alert(j0, "ILI", "010", "c1"));
    assert_invalid(&err, "syndrome");
    let err = net.refuse(&pha, record_alert(j0, "ili", "011", "c1"));
    assert_invalid(&err, "region");
    let err = net.refuse(&pha, record_alert(j0, "ili", "010", "c4"));
    assert_invalid(&err, "method");
    let with = |edit: fn(&mut RecordAlert)| {
        let mut p = record_alert(j0, "ili", "010", "c1");
        if let Payload::RecordAlert(a) = &mut p {
            edit(a);
        }
        p
    };
    const MAX: i64 = 1_000_000_000_000;
    let err = net.refuse(&pha, with(|a| a.observed = MAX + 1));
    assert_invalid(&err, "observed");
    let err = net.refuse(&pha, with(|a| a.expected_milli = -MAX - 1));
    assert_invalid(&err, "expected_milli");
    let err = net.refuse(&pha, with(|a| a.score_milli = i64::MIN));
    assert_invalid(&err, "score_milli");
    let err = net.refuse(&pha, record_alert(JobId(u64::MAX), "ili", "010", "c1"));
    assert!(
        matches!(err, TxError::NotFound { what: "job", .. }),
        "{err:?}"
    );
    assert!(net.state.alerts_of(c).unwrap().is_empty());
    // The holder, after the result.
    net.ok(&pha, record_alert(j0, "ili", "010", "c1"));
    let (height, time_ms) = (net.ctx.height, net.ctx.time_ms);
    // The figures' bounds are inclusive.
    net.ok(
        &pha,
        with(|a| {
            a.method = text("c2");
            a.observed = MAX;
            a.expected_milli = -MAX;
            a.score_milli = MAX;
        }),
    );
    net.ok(&pha, record_alert(j0, "agi", "013", "seasonal"));
    // Once per window, syndrome, region and detector, whatever its figures.
    let err = net.refuse(&pha, with(|a| a.observed = 40));
    assert!(
        matches!(err, TxError::AlreadyExists { what: "alert", .. }),
        "{err:?}"
    );
    let alerts = net.state.alerts_of(c).unwrap();
    assert_eq!(alerts.len(), 3);
    let first = alerts
        .iter()
        .find(|a| a.method.as_str() == "c1")
        .expect("the c1 alert");
    assert_eq!(first.contract, c);
    assert_eq!(first.job, j0);
    assert_eq!(first.window, 0);
    assert_eq!(first.syndrome.as_str(), "ili");
    assert_eq!(first.region.as_str(), "010");
    assert_eq!(
        (first.observed, first.expected_milli, first.score_milli),
        (12, 4_500, 3_100)
    );
    assert_eq!(first.by, uid(PHA));
    assert_eq!((first.height, first.time_ms), (height, time_ms));
    // The next window (a result with no round is still a result): the same alert is new.
    at(&mut net, window_end(1, 1));
    let j1 = job_by(&mut net, PHA, c, &spec, SURVEILLANCE_EPSILON);
    let err = net.refuse(&pha, record_alert(j1, "ili", "010", "c1"));
    assert_out_of_scope(&err);
    net.finish(j1, &[]);
    net.ok(&pha, record_alert(j1, "ili", "010", "c1"));
    let alerts = net.state.alerts_of(c).unwrap();
    assert_eq!(
        alerts.iter().map(|a| (a.window, a.job)).collect::<Vec<_>>(),
        vec![(0, j0), (0, j0), (0, j0), (1, j1)],
        "listed by window"
    );
}

#[test]
fn an_alert_needs_a_surveillance_window() {
    let mut net = net();
    let pha = net.user(PHA);
    // The agency's own research and public-health contracts counting persons, and a
    // drug-safety contract of the research institute: each with a finished job.
    let mut cases = Vec::new();
    for purpose in [Purpose::Research, Purpose::PublicHealth] {
        let p = request(
            purpose,
            Mode::Compute,
            &["hospital-a"],
            Level::L1,
            net.ctx.time_ms + 30 * DAY_MS,
            1_000_000,
            1_000,
        );
        let c = active(&mut net, PHA, p);
        let j = job_by(&mut net, PHA, c, SPEC, 100_000);
        assert_eq!(job(&net, j).window, None);
        net.finish(j, &[("hospital-a", 4)]);
        cases.push((pha.clone(), c, j));
    }
    let p = compute_request(
        &net,
        Purpose::DrugSafety,
        DRUG_SAFETY,
        &DRUG_SAFETY_READS,
        1_000_000,
    );
    let c = active(&mut net, RESEARCHER, p);
    let j = net.job_of(c, DRUG_SAFETY, 100_000);
    net.finish(j, &[("hospital-a", 4), ("hospital-b", 2)]);
    cases.push((net.user(RESEARCHER), c, j));
    for (holder, c, j) in cases {
        let err = net.refuse(&holder, record_alert(j, "ili", "010", "c1"));
        assert_out_of_scope(&err);
        assert!(net.state.alerts_of(c).unwrap().is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whatever the block times, the ledger gives window `w` to the next job exactly when
    /// windows `0..w` ran, `w` is one of the definition's and has ended: windows in order, no
    /// gap, no repeat, never one still running, never more than the definition covers.
    #[test]
    fn surveillance_windows_are_scheduled_in_order_without_gaps(
        steps in vec(prop_oneof![Just(0u64), 0..3 * DAY_MS], 1..24),
    ) {
        const WINDOWS: u32 = 5;
        let mut net = net();
        // A budget for one more window than the definition: only the schedule refuses.
        let (c, spec) = surveillance(&mut net, WINDOWS, u64::from(WINDOWS) + 1);
        let k = net.user(PHA);
        let mut windows = Vec::new();
        for ms in steps {
            net.advance(ms);
            let now = net.ctx.time_ms;
            let root = net.state.root();
            let tx = net.tx(&k, submit_job_of(c, &spec, SURVEILLANCE_EPSILON));
            let next = windows.len() as u32;
            let due = next < WINDOWS && now >= window_end(1, u64::from(next));
            match net.apply_tx(&tx) {
                Ok(r) => {
                    let Some(Created::Job(j)) = r.created else {
                        panic!("no job: {r:?}")
                    };
                    let w = job(&net, j).window;
                    prop_assert_eq!(w, Some(next), "the next window, no gap, no repeat");
                    prop_assert!(next < WINDOWS, "window {} of {}", next, WINDOWS);
                    prop_assert!(
                        now >= window_end(1, u64::from(next)),
                        "window {} ran at {} before its end", next, now
                    );
                    windows.push(next);
                }
                Err(e) => {
                    prop_assert!(matches!(e, TxError::OutOfScope { .. }), "{:?}", e);
                    prop_assert_eq!(net.state.root(), root, "a refusal changed nothing");
                    prop_assert!(!due, "window {} had ended at {} but was refused: {}", next, now, e);
                }
            }
            let run = windows_run(&net, c);
            prop_assert_eq!(run as usize, windows.len());
            prop_assert!(run <= WINDOWS);
        }
        prop_assert_eq!(windows, (0..windows_run(&net, c)).collect::<Vec<_>>());
    }
}
