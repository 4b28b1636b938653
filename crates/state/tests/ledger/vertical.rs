//! A vertical study (hospitals' cohort joined with an insurer's claims) covers one or more
//! hospitals and exactly one insurer, and the ledger lists the hospitals first and the insurer
//! last whatever the names: the first hospital aggregates, the insurer opens the total.

use super::fixture::*;
use medspace_types::*;

/// An insurer whose id sorts before every hospital's.
const INSURER: &str = "a-insurer";
const INSURER_STEWARD: &str = "a-insurer.steward";
/// A pharmaceutical company with data.
const PHARMA: &str = "b-pharma";
const PHARMA_STEWARD: &str = "b-pharma.steward";
const VERTICAL: &str = r#"{"version":1,"cohort":{"index_date":"2024-01-01"},"group_by":["sex"],"aggregate":{"claims":{"days":365,"max_claims":50,"max_paid":20000,"dp":false}}}"#;

fn net() -> Net {
    let mut net = Net::new_from(Net::genesis_with_members(|g, members, users| {
        for (i, (id, kind, steward)) in [
            (INSURER, MemberKind::Insurer, INSURER_STEWARD),
            (PHARMA, MemberKind::Pharma, PHARMA_STEWARD),
        ]
        .into_iter()
        .enumerate()
        {
            let k = Keypair::from_seed(3_001 + i as u64);
            g.members.push(GenesisMember {
                member: member_desc(id, kind, &k),
                balance: BALANCE,
            });
            members.insert(id.into(), k);
            let s = Keypair::from_seed(3_101 + i as u64);
            g.users.push(GenesisUser {
                id: uid(steward),
                member: mid(id),
                role: Role::Steward,
                key: s.public(),
            });
            users.insert(steward.into(), s);
        }
    }));
    for (owner, who) in [
        ("hospital-a", steward("hospital-a")),
        ("hospital-b", steward("hospital-b")),
        (INSURER, INSURER_STEWARD.to_string()),
        (PHARMA, PHARMA_STEWARD.to_string()),
    ] {
        let k = net.user(&who);
        net.ok(
            &k,
            Payload::PublishDataset(PublishDataset {
                dataset: cdm_desc(owner),
            }),
        );
    }
    net.next_block();
    net
}

/// `owner`'s dataset with the fields a vertical study reads.
fn cdm_desc(owner: &str) -> DatasetDescription {
    let mut d = dataset_desc(owner, if owner.starts_with("hospital") { 2 } else { 1 });
    d.tables = list(vec![
        table_desc(
            "person",
            20,
            vec![
                field_desc("person_id", Level::L1),
                field_desc("gender_source_value", Level::L2),
                field_desc("year_of_birth", Level::L2),
            ],
        ),
        table_desc(
            "visit_occurrence",
            40,
            vec![
                field_desc("person_id", Level::L1),
                field_desc("visit_occurrence_id", Level::L2),
                field_desc("visit_start_date", Level::L2),
            ],
        ),
        table_desc(
            "cost",
            40,
            vec![
                field_desc("cost_id", Level::L2),
                field_desc("cost_event_id", Level::L2),
                field_desc("total_paid", Level::L3),
            ],
        ),
    ]);
    d
}

/// The researcher's request for the vertical study over `owners`' data.
fn vertical_request(net: &Net, owners: &[&str]) -> Payload {
    let reads = [
        ("person", "person_id"),
        ("person", "gender_source_value"),
        ("person", "year_of_birth"),
        ("visit_occurrence", "person_id"),
        ("visit_occurrence", "visit_occurrence_id"),
        ("visit_occurrence", "visit_start_date"),
        ("cost", "cost_id"),
        ("cost", "cost_event_id"),
        ("cost", "total_paid"),
    ];
    Payload::SubmitRequest(SubmitRequest {
        purpose: Purpose::Research,
        mode: Mode::Compute,
        study: None,
        fields: list(
            owners
                .iter()
                .flat_map(|o| {
                    reads.iter().map(|(t, f)| FieldRef {
                        dataset: dataset_of(o),
                        table: text(t),
                        field: text(f),
                    })
                })
                .collect(),
        ),
        computation: Blob::new(VERTICAL.as_bytes().to_vec()).unwrap(),
        expiry_ms: net.ctx.time_ms + 30 * DAY_MS,
        epsilon_budget: 1_000_000,
        fee: 0,
    })
}

#[test]
fn a_vertical_study_lists_its_hospital_first_whatever_the_names() {
    let mut net = net();
    let c = net.submit(RESEARCHER, vertical_request(&net, &[INSURER, "hospital-a"]));
    let rec = net.state.contract(c).unwrap().unwrap();
    let owners: Vec<&str> = rec.owners.iter().map(|m| m.as_str()).collect();
    assert_eq!(owners, ["hospital-a", INSURER]);
    let c = net.submit(
        RESEARCHER,
        vertical_request(&net, &["hospital-b", INSURER, "hospital-a"]),
    );
    let rec = net.state.contract(c).unwrap().unwrap();
    let owners: Vec<&str> = rec.owners.iter().map(|m| m.as_str()).collect();
    assert_eq!(owners, ["hospital-a", "hospital-b", INSURER]);
    // It reads L3 amounts: every reviewer of that level, the insurer's steward among them.
    assert!(
        rec.approvals
            .iter()
            .any(|a| a.role == Role::Steward && a.member == Some(mid(INSURER)))
    );
}

#[test]
fn a_vertical_study_over_anything_but_hospitals_and_one_insurer_is_refused() {
    let mut net = net();
    let researcher = net.user(RESEARCHER);
    for owners in [
        vec!["hospital-a", "hospital-b"],
        vec![INSURER],
        vec!["hospital-a"],
        vec!["hospital-a", PHARMA],
        vec![INSURER, PHARMA],
    ] {
        let p = vertical_request(&net, &owners);
        let err = net.refuse(&researcher, p);
        assert!(
            matches!(&err, medspace_state::TxError::Invalid { field, .. } if *field == "computation"),
            "{owners:?}: {err}"
        );
        assert!(
            err.to_string().contains("exactly one insurer")
                || err
                    .to_string()
                    .contains("hospitals' data with an insurer's claims"),
            "{owners:?}: {err}"
        );
    }
}
