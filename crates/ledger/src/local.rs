//! An in-process ledger: the state machine driven block by block on this machine, with no
//! consensus. The benchmarks use it; the chain replicates exactly the same `apply_block`
//! across validators.

use medspace_state::{BlockContext, Receipt, State, TxError};
use medspace_types::*;

/// A single-process ledger that seals one block per [`Local::block`] call.
pub struct Local {
    /// The state after the last block.
    pub state: State,
    /// The chain id transactions are signed for.
    pub chain_id: Name,
    /// Height of the last block.
    pub height: u64,
    /// Time of the last block.
    pub time_ms: u64,
    pending: Vec<SignedTx>,
}

/// A transaction of a sealed block was refused.
#[derive(Debug, thiserror::Error)]
#[error("transaction {index} of block {height} refused: {error}")]
pub struct Refused {
    /// Its place in the block.
    pub index: usize,
    /// The block.
    pub height: u64,
    /// Why.
    pub error: TxError,
}

impl Local {
    /// Starts from genesis.
    pub fn new(genesis: &Genesis) -> Result<Self, medspace_state::GenesisError> {
        Ok(Self {
            state: State::genesis(genesis)?,
            chain_id: genesis.chain_id.clone(),
            height: 0,
            time_ms: genesis.time_ms,
            pending: Vec::new(),
        })
    }

    /// A ledger at `state`, the last block at `height` and `time_ms`, nothing queued.
    pub fn at(state: State, chain_id: Name, height: u64, time_ms: u64) -> Self {
        Self {
            state,
            chain_id,
            height,
            time_ms,
            pending: Vec::new(),
        }
    }

    /// Signs a transaction with the signer's next nonce (counting pending ones).
    pub fn sign(&self, key: &Keypair, payload: Payload) -> Result<SignedTx, TxError> {
        let pk = key.public();
        let queued = self.pending.iter().filter(|t| t.body.signer == pk).count() as u64;
        let nonce = self.state.next_nonce(&pk)? + queued;
        Ok(SignedTx::new(&self.chain_id, key, nonce, payload))
    }

    /// Queues a transaction for the next block.
    pub fn submit(&mut self, key: &Keypair, payload: Payload) -> Result<Hash, TxError> {
        let tx = self.sign(key, payload)?;
        let id = tx.id();
        self.pending.push(tx);
        Ok(id)
    }

    /// Seals the queued transactions into a block `step_ms` after the previous one.
    pub fn block(&mut self, step_ms: u64) -> Vec<Result<Receipt, TxError>> {
        self.height += 1;
        self.time_ms += step_ms;
        let ctx = BlockContext {
            height: self.height,
            time_ms: self.time_ms,
        };
        let txs = std::mem::take(&mut self.pending);
        self.state.apply_block(&ctx, &txs)
    }

    /// Seals the queued transactions and insists that all are accepted.
    pub fn must_block(&mut self, step_ms: u64) -> Result<Vec<Receipt>, Refused> {
        let height = self.height + 1;
        self.block(step_ms)
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                r.map_err(|error| Refused {
                    index,
                    height,
                    error,
                })
            })
            .collect()
    }
}
