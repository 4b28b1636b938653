//! The node key's transactions (`CloseRound`, `PostResult`, `RecordAccess`): signed with
//! pipelined nonces, submitted through the node's validator and awaited until final. Shared by
//! the compute service and record sharing — the node key has one nonce sequence.

use crate::WorkerError;
use commonware_runtime::Clock;
use medspace_ledger::{Ledger, TxStatus};
use medspace_state::State;
use medspace_types::{Keypair, Name, Payload, SignedTx};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// How long a transaction may take to become final before the worker gives up on it.
const FINAL_WAIT: Duration = Duration::from_secs(30);
/// Attempts at one transaction (nonce races sign it again).
const ATTEMPTS: usize = 5;

/// Signs, submits and awaits the node key's transactions.
pub struct Submitter<L> {
    ledger: Arc<L>,
    key: Keypair,
    chain_id: Name,
    /// The next nonce to sign with: transactions are pipelined (several in flight, consecutive
    /// nonces); a nonce whose transaction never entered the chain is handed out again.
    next: Mutex<Option<u64>>,
    heights: watch::Receiver<u64>,
}

impl<L: Ledger> Submitter<L> {
    /// A submitter for `key` on `chain_id`, woken by committed heights.
    pub fn new(
        ledger: Arc<L>,
        key: Keypair,
        chain_id: Name,
        heights: watch::Receiver<u64>,
    ) -> Self {
        Self {
            ledger,
            key,
            chain_id,
            next: Mutex::new(None),
            heights,
        }
    }

    fn take_nonce(&self, state: &State) -> Result<u64, WorkerError> {
        let ledger_next = state.next_nonce(&self.key.public())?;
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let n = next.map_or(ledger_next, |x| x.max(ledger_next));
        *next = Some(n + 1);
        Ok(n)
    }

    /// `nonce` was not consumed by the chain: the next transaction signs with it (those after
    /// it, if any are in flight, fail on their nonce and are signed again).
    fn give_back(&self, nonce: u64) {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        if next.is_some_and(|x| x > nonce) {
            *next = Some(nonce);
        }
    }

    /// Waits (at most `limit`) until the node commits a block after `seen`; the new height.
    async fn next_height<E: Clock>(&self, clock: &E, seen: u64, limit: Duration) -> u64 {
        reached(clock, &self.heights, seen.saturating_add(1), limit).await
    }

    /// Waits (at most `limit`) until the node has committed `height`; the height reached.
    pub async fn reached<E: Clock>(&self, clock: &E, height: u64, limit: Duration) -> u64 {
        reached(clock, &self.heights, height, limit).await
    }

    /// Signs `payload` with the node key, submits it and waits until it is final: `Ok` once
    /// applied, the state machine's reason if refused. After a nonce race it is signed again,
    /// while `still_needed` holds.
    pub async fn submit_and_wait<E: Clock>(
        &self,
        clock: &E,
        payload: Payload,
        still_needed: &(dyn Fn(&State) -> bool + Send + Sync),
    ) -> Result<(), WorkerError> {
        let kind = payload.kind();
        let mut last = String::from("not attempted");
        for _ in 0..ATTEMPTS {
            let snap = self.ledger.snapshot();
            if !still_needed(&snap.state) {
                return Ok(());
            }
            let nonce = self.take_nonce(&snap.state)?;
            let tx = SignedTx::new(&self.chain_id, &self.key, nonce, payload.clone());
            let id = match self.ledger.submit(tx) {
                Ok(id) => id,
                Err(e) => {
                    self.give_back(nonce);
                    last = e.to_string();
                    self.next_height(clock, snap.height, FINAL_WAIT).await;
                    continue;
                }
            };
            let started = clock.current();
            let mut seen = snap.height;
            loop {
                match self.ledger.tx_status(&id) {
                    TxStatus::Finalized { .. } => return Ok(()),
                    TxStatus::Refused { reason, .. } | TxStatus::Dropped { reason } => {
                        self.give_back(nonce);
                        // Only a nonce race (a predecessor that never entered the chain) is
                        // worth signing again; any other refusal is the state machine's word.
                        if reason.contains("nonce") {
                            last = reason;
                            break;
                        }
                        return Err(WorkerError::Ledger(reason));
                    }
                    TxStatus::Pending | TxStatus::Unknown => {}
                }
                let waited = clock
                    .current()
                    .duration_since(started)
                    .unwrap_or(Duration::ZERO);
                if waited > FINAL_WAIT {
                    return Err(WorkerError::Ledger(format!(
                        "{kind} not finalized within {}s",
                        FINAL_WAIT.as_secs()
                    )));
                }
                seen = self.next_height(clock, seen, Duration::from_secs(1)).await;
            }
        }
        Err(WorkerError::Ledger(format!(
            "{kind} failed {ATTEMPTS} times: {last}"
        )))
    }
}

/// Waits (at most `limit`) until `heights` reaches `height`; the height then.
async fn reached<E: Clock>(
    clock: &E,
    heights: &watch::Receiver<u64>,
    height: u64,
    limit: Duration,
) -> u64 {
    let mut rx = heights.clone();
    let wait = async {
        while *rx.borrow_and_update() < height {
            if rx.changed().await.is_err() {
                // The node stopped telling heights (it is shutting down): wait out the limit
                // rather than return at once, so no caller's retry loop spins.
                std::future::pending::<()>().await;
            }
        }
    };
    let _ = crate::within(clock, limit, wait).await;
    *heights.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_runtime::{Runner as _, Spawner as _, Supervisor as _, deterministic};

    #[test]
    fn waits_for_a_height_and_no_longer_than_the_limit() {
        deterministic::Runner::default().start(|ctx| async move {
            let (tx, rx) = watch::channel(3u64);
            // Already there: no wait.
            assert_eq!(reached(&ctx, &rx, 2, Duration::from_secs(1)).await, 3);
            ctx.child("blocks").spawn(move |ctx| async move {
                for h in 4..=6 {
                    ctx.sleep(Duration::from_millis(100)).await;
                    tx.send_replace(h);
                }
                ctx.sleep(Duration::from_secs(60)).await;
            });
            let start = ctx.current();
            assert_eq!(reached(&ctx, &rx, 5, Duration::from_secs(10)).await, 5);
            let waited = ctx.current().duration_since(start).unwrap();
            assert!(
                waited >= Duration::from_millis(200) && waited < Duration::from_millis(300),
                "woken by the height, not the limit: {waited:?}"
            );
            // Height 9 never comes: the limit ends the wait.
            let start = ctx.current();
            assert_eq!(reached(&ctx, &rx, 9, Duration::from_secs(2)).await, 6);
            let waited = ctx.current().duration_since(start).unwrap();
            assert!(waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100));
        });
    }

    #[test]
    fn a_node_that_stopped_telling_heights_is_waited_out_not_spun_on() {
        deterministic::Runner::default().start(|ctx| async move {
            let (tx, rx) = watch::channel(3u64);
            drop(tx);
            let start = ctx.current();
            assert_eq!(reached(&ctx, &rx, 9, Duration::from_secs(2)).await, 3);
            let waited = ctx.current().duration_since(start).unwrap();
            assert!(
                waited >= Duration::from_secs(2),
                "returned at once: {waited:?}"
            );
        });
    }
}
