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
            c.ended_ms = ctx.time_ms;
            self.end_reservations(&mut c)?;
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
    // INVARIANT: a sum of u64 values in u128 cannot overflow (it would take 2^64 of them).
    let total: u128 = contributions.iter().map(|c| u128::from(c.records)).sum();
    if total == 0 || fee == 0 {
        return Vec::new();
    }
    let mut parts: Vec<Share> = contributions
        .iter()
        .enumerate()
        .map(|(at, c)| {
            // INVARIANT: a product of two u64 values fits u128.
            let num = u128::from(fee) * u128::from(c.records);
            // INVARIANT: num / total <= fee, which fits u64.
            Share {
                at,
                member: c.member.clone(),
                credits: u64::try_from(num / total).unwrap_or(0),
                remainder: num % total,
            }
        })
        .collect();
    // INVARIANT: the floors of the shares add up to at most `fee` (the records add up to
    // `total`), so neither this sum nor the subtraction overflows.
    let given: u64 = parts.iter().map(|p| p.credits).sum();
    let mut left = fee - given;
    // Largest remainder first, ties to the smaller member id (then contribution order: the
    // sort is stable).
    parts.sort_by(|a, b| {
        b.remainder
            .cmp(&a.remainder)
            .then_with(|| a.member.cmp(&b.member))
    });
    for p in &mut parts {
        if left == 0 {
            break;
        }
        // INVARIANT: credits + left <= fee, and left > 0.
        p.credits += 1;
        left -= 1;
    }
    // By member id (then contribution order).
    parts.sort_by(|a, b| a.member.cmp(&b.member).then(a.at.cmp(&b.at)));
    parts.into_iter().map(|p| (p.member, p.credits)).collect()
}

/// One contributor's share of a fee while it is split.
struct Share {
    /// Position among the contributions.
    at: usize,
    member: MemberId,
    /// Credits given so far.
    credits: u64,
    /// The fractional part of the exact share, times the total records.
    remainder: u128,
}
