//! Value: fees escrowed at request, split by contribution at settlement, refunds.

use super::fixture::*;
use medspace_state::{Event, TxError, split_fee};
use medspace_types::*;

fn l1_contract(net: &mut Net, owners: &[&str], fee: u64) -> ContractId {
    let p = request(
        Purpose::Research,
        Mode::Compute,
        owners,
        Level::L1,
        net.ctx.time_ms + 10 * DAY_MS,
        1_000_000,
        fee,
    );
    net.submit(RESEARCHER, p)
}

#[test]
fn fee_is_split_by_contribution_exactly() {
    let mut net = Net::new();
    let total = net.state.total_credits().unwrap();
    let c = l1_contract(&mut net, &["hospital-a", "hospital-b", "hospital-c"], 1_000);
    assert_eq!(net.state.contract(c).unwrap().unwrap().escrow, 1_000);
    assert_eq!(net.state.total_credits().unwrap(), total);
    let j = net.job(c, 100);
    let h = net.member("hospital-a");
    net.finish(
        j,
        &[("hospital-a", 10), ("hospital-b", 20), ("hospital-c", 3)],
    );
    let before = net.balances();
    // An owner may not settle a running contract; only its requester may.
    let err = net.refuse(&h, settle(c));
    assert!(
        matches!(
            err,
            TxError::ContractState {
                status: "active",
                ..
            }
        ),
        "{err:?}"
    );
    let s = net.user(&steward("hospital-b"));
    assert!(matches!(
        net.refuse(&s, settle(c)),
        TxError::ContractState { .. }
    ));
    let r = net.user(RESEARCHER);
    let receipt = net.ok(&r, settle(c));
    // 1000 * 10/33 = 303.03, * 20/33 = 606.06, * 3/33 = 90.90: floors give 999, the remaining
    // credit goes to the largest fractional part (hospital-c).
    let expected = vec![
        (mid("hospital-a"), 303),
        (mid("hospital-b"), 606),
        (mid("hospital-c"), 91),
    ];
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(split_fee(1_000, rec.contributions.as_slice()), expected);
    assert_eq!(
        receipt.events,
        vec![Event::Settled {
            contract: c,
            payouts: expected.clone()
        }]
    );
    let after = net.balances();
    for (m, amount) in &expected {
        assert_eq!(after[m.as_str()], before[m.as_str()] + amount, "{m}");
    }
    assert_eq!(after["research-1"], before["research-1"]);
    assert_eq!(after["regulator"], before["regulator"]);
    assert!(rec.settled);
    assert_eq!(rec.escrow, 0);
    assert_eq!(net.state.total_credits().unwrap(), total);
    // Never twice.
    let err = net.refuse(&r, settle(c));
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    net.advance(11 * DAY_MS);
    assert!(matches!(
        net.refuse(&h, settle(c)),
        TxError::Forbidden { .. }
    ));
}

#[test]
fn settle_refusals() {
    let mut net = Net::new();
    let c = l1_contract(&mut net, &["hospital-a"], 500);
    let j = net.job(c, 100);
    // Not a party to the contract.
    for k in [
        net.user(&steward("hospital-b")),
        net.user(&clinician("hospital-a")),
        net.member("hospital-c"),
        net.user(AUDITOR),
        net.patient(0),
    ] {
        let err = net.refuse(&k, settle(c));
        assert!(
            matches!(err, TxError::WrongSigner { kind: "settle", .. }),
            "{err:?}"
        );
    }
    let r = net.user(RESEARCHER);
    // Jobs without results.
    let err = net.refuse(&r, settle(c));
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    let err = net.refuse(&r, settle(ContractId(5)));
    assert!(matches!(err, TxError::NotFound { .. }));
    net.finish(j, &[("hospital-a", 4)]);
    // After expiry the owner's steward may settle.
    net.advance(10 * DAY_MS);
    let before = net.balances();
    let s = net.user(&steward("hospital-a"));
    net.ok(&s, settle(c));
    assert_eq!(net.balances()["hospital-a"], before["hospital-a"] + 500);
}

#[test]
fn refund_when_nobody_contributed() {
    let mut net = Net::new();
    let c = l1_contract(&mut net, &["hospital-a", "hospital-b"], 700);
    assert_eq!(net.balances()["research-1"], BALANCE - 700);
    let j = net.job(c, 100);
    let h = net.member("hospital-b");
    // A result with zero records from both sites.
    net.finish(j, &[("hospital-a", 0), ("hospital-b", 0)]);
    let r = net.user(RESEARCHER);
    net.ok(&r, terminate(c));
    let before = net.balances();
    let receipt = net.ok(&h, settle(c));
    assert_eq!(
        receipt.events,
        vec![Event::Settled {
            contract: c,
            payouts: vec![]
        }]
    );
    let after = net.balances();
    assert_eq!(after["research-1"], before["research-1"] + 700);
    assert_eq!(after["research-1"], BALANCE);
    assert_eq!(after["hospital-b"], before["hospital-b"]);
    let rec = net.state.contract(c).unwrap().unwrap();
    assert!(rec.settled);
    assert_eq!(rec.escrow, 0);
    assert!(matches!(
        net.refuse(&r, settle(c)),
        TxError::Forbidden { .. }
    ));
}

#[test]
fn split_fee_edge_cases() {
    let con = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(m, r)| Contribution {
                member: mid(m),
                records: *r,
            })
            .collect::<Vec<_>>()
    };
    assert!(split_fee(100, &[]).is_empty());
    assert!(split_fee(0, &con(&[("a", 1)])).is_empty());
    assert!(split_fee(100, &con(&[("a", 0), ("b", 0)])).is_empty());
    // Equal shares: the odd credit goes to the smaller id.
    assert_eq!(
        split_fee(3, &con(&[("b", 1), ("a", 1)])),
        vec![(mid("a"), 2), (mid("b"), 1)]
    );
    assert_eq!(
        split_fee(u64::MAX, &con(&[("a", u64::MAX), ("b", u64::MAX)])),
        vec![(mid("a"), u64::MAX / 2 + 1), (mid("b"), u64::MAX / 2)]
    );
}

/// Settling pays out (or refunds) the escrowed fee once; the code lets the requester settle an
/// active or pending contract ("ended (or settled by its requester)"), but the contract is not
/// ended by it: with no contribution yet the whole fee is refunded, and the requester then
/// gets approvals, runs jobs and receives results for free (the data holders are never paid,
/// since a second settlement is refused).
#[test]
fn requester_cannot_refund_the_fee_and_keep_using_the_contract() {
    let mut net = Net::new();
    // An active contract: settle at once, then run a job.
    let c = l1_contract(&mut net, &["hospital-a"], 1_000);
    let r = net.user(RESEARCHER);
    net.ok(&r, settle(c));
    assert_eq!(net.balances()["research-1"], BALANCE, "the fee came back");
    let err = net.refuse(&r, submit_job(c, 10));
    assert!(matches!(err, TxError::ContractState { .. }), "{err:?}");
}

#[test]
fn refunded_pending_contract_cannot_be_activated() {
    let mut net = Net::new();
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L2);
    let r = net.user(RESEARCHER);
    net.ok(&r, settle(c));
    assert_eq!(net.balances()["research-1"], BALANCE);
    let s = net.user(&steward("hospital-a"));
    let err = net.refuse(&s, approve(c));
    assert!(matches!(err, TxError::ContractState { .. }), "{err:?}");
}
