//! Value: settling a contract's escrowed fee among the contributing institutions.

use super::{Event, Receipt, Signer, forbidden, invalid, not_found};
use crate::error::TxError;
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::*;

impl State {
    pub(super) fn settle(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &Settle,
    ) -> Result<Receipt, TxError> {
        let mut c = self
            .contract(p.contract)?
            .ok_or_else(|| not_found("contract", p.contract))?;
        if !may_settle(&signer, &c) {
            return Err(TxError::WrongSigner {
                kind: "settle",
                need: "the requester or a data owner",
                have: signer.describe(),
            });
        }
        if c.settled {
            return Err(forbidden(format!("contract {} is already settled", c.id)));
        }
        if c.is_active(ctx.time_ms) && !matches!(&signer, Signer::User(u) if u.id == c.requester) {
            return Err(TxError::ContractState {
                id: c.id.to_string(),
                status: "active",
                need: "ended (or settled by its requester)",
            });
        }
        if c.epsilon_reserved > 0 && c.is_active(ctx.time_ms) {
            return Err(forbidden(format!(
                "contract {} has jobs without results",
                c.id
            )));
        }
        // Settling ends the contract: nothing more can run under a contract whose fee is paid
        // out (or refunded).
        if matches!(c.status, ContractStatus::Pending | ContractStatus::Active) {
            c.status = ContractStatus::Terminated;
            c.epsilon_reserved = 0;
            c.closing_reason =
                Text::new("settled").map_err(|e| invalid("reason", e.to_string()))?;
        }
        let payouts = split_fee(c.escrow, c.contributions.as_slice());
        if payouts.is_empty() {
            self.refund(&mut c)?;
        } else {
            self.pay_out(&mut c, &payouts)?;
        }
        self.put(&keys::contract(c.id), &c)?;
        let mut receipt = Receipt::new("settle");
        receipt.events.push(Event::Settled {
            contract: c.id,
            payouts,
        });
        Ok(receipt)
    }

    /// Credits each member its share of the escrow, which is then empty.
    fn pay_out(
        &mut self,
        c: &mut ContractRecord,
        payouts: &[(MemberId, u64)],
    ) -> Result<(), TxError> {
        for (m, amount) in payouts {
            let bal = self.balance(m)?;
            self.put(&keys::balance(m), &bal.saturating_add(*amount))?;
        }
        c.escrow = 0;
        c.settled = true;
        Ok(())
    }
}

/// Who may settle a contract: its requester, a steward of a data owner, a data owner itself or
/// the requester's institution.
fn may_settle(signer: &Signer, c: &ContractRecord) -> bool {
    match signer {
        Signer::User(u) => {
            u.id == c.requester
                || (u.role == Role::Steward && c.owners.iter().any(|o| *o == u.member))
        }
        Signer::Member(m) => {
            c.owners.iter().any(|o| *o == m.member.id) || m.member.id == c.requester_member
        }
        _ => false,
    }
}

/// Splits `fee` in proportion to records contributed, exactly: each gets the floor of its
/// share and the remainder goes one credit at a time to the largest fractional parts (ties to
/// the smaller member id). Returns nothing when nobody contributed.
pub fn split_fee(fee: u64, contributions: &[Contribution]) -> Vec<(MemberId, u64)> {
    let total: u128 = contributions.iter().map(|c| u128::from(c.records)).sum();
    if total == 0 || fee == 0 {
        return Vec::new();
    }
    let mut parts: Vec<(MemberId, u64, u128)> = contributions
        .iter()
        .map(|c| {
            let num = u128::from(fee) * u128::from(c.records);
            // INVARIANT: num / total <= fee, which fits u64.
            (
                c.member.clone(),
                u64::try_from(num / total).unwrap_or(0),
                num % total,
            )
        })
        .collect();
    let given: u64 = parts.iter().map(|p| p.1).sum();
    let mut rest = fee - given;
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (&parts[a], &parts[b]);
        pb.2.cmp(&pa.2).then_with(|| pa.0.cmp(&pb.0))
    });
    for i in order {
        if rest == 0 {
            break;
        }
        if let Some(p) = parts.get_mut(i) {
            p.1 += 1;
            rest -= 1;
        }
    }
    let mut out: Vec<(MemberId, u64)> = parts.into_iter().map(|(m, a, _)| (m, a)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
