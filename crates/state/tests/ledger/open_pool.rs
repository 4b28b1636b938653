//! The open pool: a release is published only with figures that meet the consortium's standard
//! and agree with each other; it is requested in open-pool mode only, with the owner's steward's
//! approval; only the owner's node records a delivery, of the published bytes; and a recipient
//! whose destruction attestation is overdue may not request anything new until it attests.

use super::fixture::*;
use medspace_state::{Created, TxError};
use medspace_types::*;

fn release_with(
    h: &str,
    edit: impl FnOnce(&mut DatasetDescription, &mut ReleaseFigures),
) -> Payload {
    let mut dataset = release_desc(h, 1);
    let mut release = release_figures(h);
    edit(&mut dataset, &mut release);
    Payload::PublishRelease(PublishRelease { dataset, release })
}

fn delivery(c: ContractId, h: &str, content_hash: Hash) -> Payload {
    Payload::DeliverRelease(DeliverRelease {
        contract: c,
        dataset: release_of(h),
        content_hash,
        bytes: 4_096,
    })
}

fn delivered(r: medspace_state::Receipt) -> AccessId {
    match r.created {
        Some(Created::Access(a)) => a,
        other => panic!("no delivery: {other:?}"),
    }
}

#[test]
fn a_release_is_published_only_to_the_standard() {
    let mut net = Net::new();
    let s = net.user(&steward("hospital-a"));
    // Below the consortium's k, l or risk; figures that contradict each other.
    let cheats: Vec<(&str, Payload)> = vec![
        (
            "k below 5",
            release_with("hospital-a", |_, r| {
                r.k = 3;
                r.prosecutor_max_ppm = 333_333;
            }),
        ),
        ("l below 2", release_with("hospital-a", |_, r| r.l = 1)),
        (
            "risk above 1/5",
            release_with("hospital-a", |_, r| {
                r.k = 4;
                r.prosecutor_max_ppm = 250_000;
            }),
        ),
        (
            "risk below 1/k",
            release_with("hospital-a", |_, r| r.prosecutor_max_ppm = 1_000),
        ),
        (
            "average above the highest",
            release_with("hospital-a", |_, r| r.prosecutor_avg_ppm = 300_000),
        ),
        ("l above k", release_with("hospital-a", |_, r| r.l = 6)),
        (
            "fewer persons than k",
            release_with("hospital-a", |_, r| r.persons = 4),
        ),
        (
            "a share above one",
            release_with("hospital-a", |_, r| r.at_risk_ppm = 1_000_001),
        ),
        // A field above L1 in a release.
        (
            "an L2 field",
            release_with("hospital-a", |d, _| {
                d.tables = list(vec![table_desc(
                    "person",
                    18,
                    vec![field_desc("year_of_birth", Level::L2)],
                )]);
            }),
        ),
        // Another hospital's dataset as the source; a source that does not exist; a release as
        // its own source.
        (
            "another's source",
            release_with("hospital-a", |_, r| r.source = dataset_of("hospital-b")),
        ),
        (
            "no such source",
            release_with("hospital-a", |_, r| r.source = did("hospital-a.none")),
        ),
        (
            "itself as source",
            release_with("hospital-a", |_, r| r.source = release_of("hospital-a")),
        ),
        // A release over the plain dataset's id.
        (
            "over the dataset",
            release_with("hospital-a", |d, _| {
                d.id = dataset_of("hospital-a");
                d.version = 9;
            }),
        ),
    ];
    for (what, p) in cheats {
        let e = net.refuse(&s, p);
        assert!(
            matches!(
                e,
                TxError::Forbidden { .. } | TxError::Invalid { .. } | TxError::NotFound { .. }
            ),
            "{what}: {e}"
        );
    }
    // Not the hospital's steward: a researcher, a clinician, another hospital's steward (who
    // may not release hospital-a's data), a node key.
    for who in [
        net.user(RESEARCHER),
        net.user(&clinician("hospital-a")),
        net.node("hospital-a"),
    ] {
        net.refuse(&who, publish_release("hospital-a", 1));
    }
    let other = net.user(&steward("hospital-b"));
    net.refuse(&other, publish_release("hospital-a", 1));
    // The standard release: L1 although `person.year_of_birth` is L2 in its source's entry.
    net.ok(&s, publish_release("hospital-a", 1));
    let rec = net
        .state
        .dataset(&release_of("hospital-a"))
        .unwrap()
        .unwrap();
    assert_eq!(rec.release, Some(release_figures("hospital-a")));
    // A release stays a release, a dataset a dataset; versions only go up.
    net.refuse(&s, publish_release("hospital-a", 1));
    net.refuse(
        &s,
        Payload::PublishDataset(PublishDataset {
            dataset: release_desc("hospital-a", 2),
        }),
    );
    net.ok(&s, publish_release("hospital-a", 2));
    // A release of a release is refused.
    let e = net.refuse(
        &s,
        release_with("hospital-a", |d, r| {
            d.id = did("hospital-a.open2");
            r.source = release_of("hospital-a");
        }),
    );
    assert!(e.to_string().contains("not from a release"), "{e}");
}

#[test]
fn the_open_pool_holds_releases_only_and_the_owner_approves() {
    let mut net = Net::new();
    net.release("hospital-a");
    let r = net.user(RESEARCHER);
    // The open pool over a plain dataset; a compute request over a release.
    let plain = request(
        Purpose::Research,
        Mode::OpenPool,
        &["hospital-a"],
        Level::L1,
        net.ctx.time_ms + DAY_MS,
        0,
        0,
    );
    assert!(matches!(net.refuse(&r, plain), TxError::OutOfScope { .. }));
    let mut compute = net.open_pool_request(&["hospital-a"]);
    if let Payload::SubmitRequest(p) = &mut compute {
        p.mode = Mode::Compute;
    }
    assert!(matches!(
        net.refuse(&r, compute),
        TxError::OutOfScope { .. }
    ));
    // L1, and pending on hospital-a's steward alone.
    let c = net.submit(RESEARCHER, net.open_pool_request(&["hospital-a"]));
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.level, Level::L1);
    assert_eq!(rec.status_at(net.ctx.time_ms), "pending");
    let needed: Vec<_> = rec
        .approvals
        .iter()
        .map(|a| (a.role, a.member.clone()))
        .collect();
    assert_eq!(needed, vec![(Role::Steward, Some(mid("hospital-a")))]);
    // Another hospital's steward cannot fill it.
    let b = net.user(&steward("hospital-b"));
    net.refuse(&b, Payload::Approve(Approve { contract: c }));
    net.approve_all(c);
}

#[test]
fn only_the_owners_node_delivers_the_published_bytes() {
    let mut net = Net::new();
    net.release("hospital-a");
    net.release("hospital-b");
    let c = net.submit(RESEARCHER, net.open_pool_request(&["hospital-a"]));
    let node = net.node("hospital-a");
    let published = release_desc("hospital-a", 1).content_hash;
    // Not yet approved.
    assert!(matches!(
        net.refuse(&node, delivery(c, "hospital-a", published)),
        TxError::ContractState { .. }
    ));
    net.approve_all(c);
    // Other bytes than the published extract; a release the contract does not name; another
    // owner's node; the member key or the steward instead of the node; a compute contract.
    let other_bytes = Hash::of(&[b"something else"]);
    assert!(matches!(
        net.refuse(&node, delivery(c, "hospital-a", other_bytes)),
        TxError::OutOfScope { .. }
    ));
    let b_node = net.node("hospital-b");
    let b_hash = release_desc("hospital-b", 1).content_hash;
    assert!(matches!(
        net.refuse(&b_node, delivery(c, "hospital-b", b_hash)),
        TxError::OutOfScope { .. }
    ));
    net.refuse(&b_node, delivery(c, "hospital-a", published));
    for key in [net.member("hospital-a"), net.user(&steward("hospital-a"))] {
        assert!(matches!(
            net.refuse(&key, delivery(c, "hospital-a", published)),
            TxError::WrongSigner { .. }
        ));
    }
    let compute = net.active(Mode::Compute, &["hospital-a"], Level::L1);
    assert!(matches!(
        net.refuse(&node, delivery(compute, "hospital-a", published)),
        TxError::OutOfScope { .. }
    ));
    // The delivery is recorded for the recipient, not yet destroyed.
    let id = delivered(net.ok(&node, delivery(c, "hospital-a", published)));
    let d = net.state.deliveries_to(&mid("research-1")).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].id, d[0].version, d[0].contract), (id, 1, c));
    assert_eq!(d[0].holder, mid("hospital-a"));
    assert_eq!(d[0].destroyed_height, None);
}

#[test]
fn an_overdue_destruction_blocks_new_requests_until_attested() {
    let mut net = Net::new();
    net.release("hospital-a");
    let c = net.submit(RESEARCHER, net.open_pool_request(&["hospital-a"]));
    net.approve_all(c);
    let node = net.node("hospital-a");
    let id = delivered(net.ok(
        &node,
        delivery(c, "hospital-a", release_desc("hospital-a", 1).content_hash),
    ));
    // The requester ends the contract early: the period runs from there.
    let r = net.user(RESEARCHER);
    net.ok(
        &r,
        Payload::Terminate(Terminate {
            contract: c,
            reason: text("study done"),
        }),
    );
    let ended = net.state.contract(c).unwrap().unwrap().end_ms();
    assert_eq!(ended, net.ctx.time_ms);
    let period = Policy::default().open_pool.destruction_ms;
    let d = net.state.deliveries_to(&mid("research-1")).unwrap();
    assert_eq!(
        net.state.destruction_due_ms(&d[0]).unwrap(),
        Some(ended + period)
    );
    // Within the period the recipient may still request.
    net.advance(period - 1);
    let again = net.submit(RESEARCHER, net.open_pool_request(&["hospital-a"]));
    assert!(net.state.contract(again).is_ok());
    // Past it: overdue, and every new request of research-1 is refused, in any mode.
    net.advance(2);
    let overdue = net
        .state
        .overdue_deliveries(&mid("research-1"), net.ctx.time_ms)
        .unwrap();
    assert_eq!(overdue.len(), 1);
    let e = net.refuse(&r, net.open_pool_request(&["hospital-a"]));
    assert!(e.to_string().contains("overdue"), "{e}");
    net.refuse(
        &r,
        request(
            Purpose::Research,
            Mode::Compute,
            &["hospital-a"],
            Level::L1,
            net.ctx.time_ms + DAY_MS,
            1_000,
            0,
        ),
    );
    // Only the recipient attests: another institution finds no such delivery.
    let other = net.member("hospital-b");
    assert!(matches!(
        net.refuse(
            &other,
            Payload::AttestDestruction(AttestDestruction { access: id })
        ),
        TxError::NotFound { .. }
    ));
    let inst = net.member("research-1");
    net.ok(
        &inst,
        Payload::AttestDestruction(AttestDestruction { access: id }),
    );
    net.refuse(
        &r,
        Payload::AttestDestruction(AttestDestruction { access: id }),
    );
    assert!(
        net.state
            .overdue_deliveries(&mid("research-1"), net.ctx.time_ms)
            .unwrap()
            .is_empty()
    );
    net.submit(RESEARCHER, net.open_pool_request(&["hospital-a"]));
}
