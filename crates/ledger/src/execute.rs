//! Executing a block's raw transactions exactly as every validator, follower and auditor does.

use bytes::Bytes;
use medspace_state::{BlockContext, Receipt, State, TxError};
use medspace_types::{SignedTx, TypeError};
use std::collections::BTreeMap;

/// Why a transaction in a block changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its bytes are not a transaction.
    #[error(transparent)]
    Malformed(#[from] TypeError),
    /// The state machine's rules refused it.
    #[error(transparent)]
    Rules(#[from] TxError),
    /// It was not reached (never the case for a block executed to the end).
    #[error("not executed")]
    NotExecuted,
}

/// One transaction's outcome in a block: its receipt, or why it changed nothing.
pub type TxOutcome = Result<Receipt, Refusal>;

/// Orders each signer's transactions by nonce, keeping every signer's slots where they are, so
/// that a proposer's mempool order never makes a signer's later nonce run first. A pure
/// function of the block's list: every validator executes the same order.
fn nonce_order(txs: Vec<(usize, SignedTx)>) -> Vec<(usize, SignedTx)> {
    let mut by_signer: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
    for (slot, (_, tx)) in txs.iter().enumerate() {
        by_signer
            .entry(tx.body.signer.as_ref().to_vec())
            .or_default()
            .push(slot);
    }
    let mut out: Vec<Option<(usize, SignedTx)>> = txs.into_iter().map(Some).collect();
    for slots in by_signer.values() {
        let mut group: Vec<(usize, SignedTx)> = slots
            .iter()
            .filter_map(|s| out.get_mut(*s).and_then(Option::take))
            .collect();
        group.sort_by_key(|(_, tx)| tx.body.nonce);
        for (slot, item) in slots.iter().zip(group) {
            if let Some(place) = out.get_mut(*slot) {
                *place = Some(item);
            }
        }
    }
    out.into_iter().flatten().collect()
}

/// Executes a block's raw transactions on `state` exactly as every validator does: decode, each
/// signer's transactions in nonce order, one batch signature check, the rules. Returns, in block
/// order, each transaction's id and its receipt or refusal reason. Refusals change nothing.
pub fn execute_block(
    state: &mut State,
    height: u64,
    time_ms: u64,
    txs: &[Bytes],
) -> Vec<([u8; 32], TxOutcome)> {
    execute_block_with(state, height, time_ms, txs, &|_| false)
}

/// [`execute_block`] skipping the signature check of transactions `verified` says this node
/// already checked (same outcome, less work).
pub fn execute_block_with(
    state: &mut State,
    height: u64,
    time_ms: u64,
    txs: &[Bytes],
    verified: &dyn Fn(&[u8; 32]) -> bool,
) -> Vec<([u8; 32], TxOutcome)> {
    let mut outcomes: Vec<([u8; 32], TxOutcome)> = txs
        .iter()
        .map(|raw| {
            (
                medspace_chain::block::tx_hash(raw),
                Err(Refusal::NotExecuted),
            )
        })
        .collect();
    let mut decoded = Vec::with_capacity(txs.len());
    for (i, raw) in txs.iter().enumerate() {
        match SignedTx::from_bytes(raw.clone()) {
            Ok(tx) => decoded.push((i, tx)),
            Err(e) => {
                if let Some(o) = outcomes.get_mut(i) {
                    o.1 = Err(e.into());
                }
            }
        }
    }
    let ordered = nonce_order(decoded);
    let list: Vec<SignedTx> = ordered.iter().map(|(_, tx)| tx.clone()).collect();
    let pre: Vec<bool> = ordered
        .iter()
        .map(|(i, _)| outcomes.get(*i).is_some_and(|(id, _)| verified(id)))
        .collect();
    let results = state.apply_block_preverified(&BlockContext { height, time_ms }, &list, &pre);
    for ((i, _), r) in ordered.iter().zip(results) {
        if let Some(o) = outcomes.get_mut(*i) {
            o.1 = r.map_err(Refusal::from);
        }
    }
    outcomes
}
