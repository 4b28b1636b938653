//! Data quality as governance: a request over data below the consortium's quality floor is
//! flagged with each failing check (the figure and the floor) for every reviewer, and always
//! needs the data owner's steward, even at a level that needs nobody; data above the floor,
//! or a purpose no floor names, is not flagged.

use super::fixture::*;
use medspace_state::records::{QualityCheck, QualityFlag};
use medspace_types::*;

/// hospital-a republishes its dataset with `year_of_birth` 60 % missing, `gender_concept_id`
/// 20 % unmapped, and its person table 2 % duplicates.
fn poor_quality(net: &mut Net) {
    let mut d = dataset_desc("hospital-a", 2);
    let mut tables = d.tables.as_slice().to_vec();
    let person = &mut tables[0];
    person.duplicate_ppm = 20_000;
    let mut fields = person.fields.as_slice().to_vec();
    fields[0].invalid_ppm = 200_000;
    fields[1].missing_ppm = 600_000;
    person.fields = list(fields);
    d.tables = list(tables);
    let s = net.user(&steward("hospital-a"));
    net.ok(&s, Payload::PublishDataset(PublishDataset { dataset: d }));
}

fn flags(net: &Net, c: ContractId) -> Vec<QualityFlag> {
    net.state
        .contract(c)
        .unwrap()
        .unwrap()
        .quality
        .as_slice()
        .to_vec()
}

fn research(net: &mut Net, level: Level) -> ContractId {
    net.research(Mode::Compute, &["hospital-a", "hospital-b"], level)
}

#[test]
fn a_request_over_data_below_the_floor_shows_its_failing_checks() {
    let mut net = Net::new();
    // Above the floor: nothing flagged.
    let c = research(&mut net, Level::L2);
    assert!(flags(&net, c).is_empty());
    poor_quality(&mut net);
    // The L2 field (year_of_birth) of hospital-a: 60 % missing against the default floor's
    // 50 %, and its table's duplicates; hospital-b's data is fine.
    let c = research(&mut net, Level::L2);
    let got = flags(&net, c);
    let want = |field: &str, check, value_ppm, max_ppm| QualityFlag {
        dataset: dataset_of("hospital-a"),
        table: text("person"),
        field: Text::new(field).unwrap(),
        check,
        value_ppm,
        max_ppm,
    };
    assert_eq!(
        got,
        vec![
            want("year_of_birth", QualityCheck::Missing, 600_000, 500_000),
            want("", QualityCheck::Duplicate, 20_000, 10_000),
        ]
    );
    // Another purpose: the default floor is research's only.
    let r = net.user(RESEARCHER);
    let teaching = request(
        Purpose::Teaching,
        Mode::Compute,
        &["hospital-a"],
        Level::L2,
        net.ctx.time_ms + DAY_MS,
        1_000,
        0,
    );
    let c = match net.ok(&r, teaching).created {
        Some(medspace_state::Created::Contract(c)) => c,
        other => panic!("{other:?}"),
    };
    assert!(flags(&net, c).is_empty());
}

#[test]
fn flagged_data_needs_its_owners_steward_even_where_nobody_else_reviews() {
    // A stricter floor for every purpose from L1: the unmapped gender codes (20 %) fail it.
    let mut net = Net::new_with(|g, _| {
        g.policy.quality_floors = list(vec![
            QualityFloor {
                purpose: None,
                level: Level::L1,
                max_missing_ppm: 900_000,
                max_invalid_ppm: 150_000,
                max_duplicate_ppm: 900_000,
                max_implausible_ppm: 900_000,
            },
            QualityFloor {
                purpose: Some(Purpose::Research),
                level: Level::L1,
                max_missing_ppm: 900_000,
                max_invalid_ppm: 100_000,
                max_duplicate_ppm: 900_000,
                max_implausible_ppm: 900_000,
            },
        ])
    });
    // L1 over good data: active at once.
    let c = research(&mut net, Level::L1);
    assert_eq!(
        net.state
            .contract(c)
            .unwrap()
            .unwrap()
            .status_at(net.ctx.time_ms),
        "active"
    );
    poor_quality(&mut net);
    let c = research(&mut net, Level::L1);
    let rec = net.state.contract(c).unwrap().unwrap();
    // The strictest applying floor (research's 10 %), once.
    assert_eq!(rec.quality.len(), 1, "{:?}", rec.quality);
    assert_eq!(
        {
            let q = &rec.quality.as_slice()[0];
            (q.check, q.value_ppm, q.max_ppm)
        },
        (QualityCheck::Invalid, 200_000, 100_000)
    );
    // Pending on hospital-a's steward only (hospital-b's data passed).
    assert_eq!(rec.status_at(net.ctx.time_ms), "pending");
    let slots: Vec<_> = rec
        .approvals
        .iter()
        .map(|a| (a.role, a.member.clone()))
        .collect();
    assert_eq!(slots, vec![(Role::Steward, Some(mid("hospital-a")))]);
    // hospital-b's steward cannot fill it; hospital-a's does, and the contract is active.
    let b = net.user(&steward("hospital-b"));
    net.refuse(&b, Payload::Approve(Approve { contract: c }));
    net.approve_all(c);
}
