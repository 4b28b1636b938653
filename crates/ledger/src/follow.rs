//! Following the ledger without voting: a [`Follower`] holds the state rebuilt from finalized
//! blocks it verified itself (finality certificate of the genesis validators, parent links,
//! re-execution to the root in each header), with each transaction's outcome.
//!
//! Its users: the observer node (a regulator's node that follows the validators over HTTP and
//! serves the same read API with proofs), and clients that want the state they act on to be
//! the verified one, not a validator's word.

use crate::execute::{TxOutcome, execute_block};
use medspace_chain::follow::{ChainCheck, FollowError, HttpSource};
use medspace_chain::node::Genesis as ChainGenesis;
use medspace_chain::recent::Recent;
use medspace_state::{State, checkpoint};
use medspace_types::Genesis;

/// How many transaction outcomes a follower remembers (oldest forgotten first).
const OUTCOMES_KEPT: usize = 200_000;

/// One transaction's outcome as the follower executed it.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The block that carried it.
    pub height: u64,
    /// Its receipt, or why the state machine refused it.
    pub result: TxOutcome,
}

/// The state of the ledger rebuilt from verified finalized blocks.
pub struct Follower {
    check: ChainCheck,
    state: State,
    time_ms: u64,
    outcomes: Recent<Outcome>,
}

impl Follower {
    /// A follower at genesis (the application genesis is the chain genesis' `app`).
    pub fn new(genesis: &ChainGenesis) -> Result<Self, FollowError> {
        let app: Genesis = serde_json::from_value(genesis.app.clone())
            .map_err(|e| FollowError::Genesis(format!("application genesis: {e}")))?;
        let state = State::genesis(&app).map_err(|e| FollowError::Genesis(e.to_string()))?;
        let check = ChainCheck::new(genesis, state.root().0)?;
        Ok(Self {
            check,
            state,
            time_ms: app.time_ms,
            outcomes: Recent::new(OUTCOMES_KEPT),
        })
    }

    /// A follower that starts after a finalized block from a checkpoint of its state instead of
    /// replaying the chain: `header` is that block's certified header (the form of
    /// `medspace_chain::follow::encode_certified_header`), whose finality certificate must check
    /// against the genesis validators, and the checkpoint's records must hash to exactly the
    /// state root in it. From there it follows blocks like any follower.
    pub fn from_checkpoint(
        genesis: &ChainGenesis,
        checkpoint: &[u8],
        header: &[u8],
    ) -> Result<Self, FollowError> {
        let refused = |height: u64, reason: String| FollowError::Invalid {
            height,
            reason: format!("checkpoint refused: {reason}"),
        };
        let summary = checkpoint::summary(checkpoint).map_err(|e| refused(0, e.to_string()))?;
        let height = summary.height;
        let (check, header) = ChainCheck::from_certified(genesis, height, header)?;
        summary
            .expect(height, header.time_ms, &header.state_root)
            .map_err(|e| refused(height, e.to_string()))?;
        let restored =
            checkpoint::decode(checkpoint).map_err(|e| refused(height, e.to_string()))?;
        Ok(Self {
            check,
            state: restored.state,
            time_ms: header.time_ms,
            outcomes: Recent::new(OUTCOMES_KEPT),
        })
    }

    /// A follower of `source`'s chain that starts from a validator's checkpoint when one is
    /// offered and checks ([`Follower::from_checkpoint`]), and from genesis otherwise (no
    /// checkpoint, or one that is refused: a node's bad checkpoint costs only the replay).
    /// Returns the follower and the height it started from.
    pub async fn start(
        genesis: &ChainGenesis,
        source: &HttpSource,
    ) -> Result<(Self, u64), FollowError> {
        match Self::checkpointed(genesis, source).await {
            Ok(Some(f)) => {
                let height = f.height();
                Ok((f, height))
            }
            Ok(None) => Ok((Self::new(genesis)?, 0)),
            Err(e) => {
                tracing::warn!(error = %e, "ledger.follow: checkpoint refused, replaying from genesis");
                Ok((Self::new(genesis)?, 0))
            }
        }
    }

    async fn checkpointed(
        genesis: &ChainGenesis,
        source: &HttpSource,
    ) -> Result<Option<Self>, FollowError> {
        let Some(bytes) = source.fetch_checkpoint().await? else {
            return Ok(None);
        };
        let height = checkpoint::summary(&bytes)
            .map_err(|e| FollowError::Decode {
                height: 0,
                reason: e.to_string(),
            })?
            .height;
        if height == 0 {
            return Ok(None);
        }
        let Some(header) = source.fetch_header(height, 0).await? else {
            return Ok(None);
        };
        Self::from_checkpoint(genesis, &bytes, &header).map(Some)
    }

    /// Verifies and applies the next finalized block (in the wire form of
    /// `medspace_chain::follow::encode_finalized`). On error nothing changes.
    pub fn apply(&mut self, raw: &[u8]) -> Result<Vec<([u8; 32], Outcome)>, FollowError> {
        let h = self.check.height() + 1;
        let (block, fin) = self.check.decode(h, raw)?;
        self.check.check(&block, &fin)?;
        let mut next = self.state.clone();
        let results = execute_block(&mut next, h, block.header.time_ms, &block.txs);
        if next.root().0 != block.header.state_root {
            return Err(FollowError::Invalid {
                height: h,
                reason: format!(
                    "re-execution gives a different state root: header={} computed={}",
                    hex::encode(block.header.state_root),
                    next.root()
                ),
            });
        }
        self.state = next;
        self.time_ms = block.header.time_ms;
        self.check.advance(&block);
        let out: Vec<([u8; 32], Outcome)> = results
            .into_iter()
            .map(|(id, result)| (id, Outcome { height: h, result }))
            .collect();
        for (id, o) in &out {
            self.outcomes.insert(*id, o.clone());
        }
        Ok(out)
    }

    /// The verified state after the last applied block.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Height of the last applied block.
    pub fn height(&self) -> u64 {
        self.check.height()
    }

    /// Time of the last applied block (genesis time before the first).
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// A transaction's outcome, if the follower executed it (and still remembers it).
    pub fn outcome(&self, id: &[u8; 32]) -> Option<&Outcome> {
        self.outcomes.get(id)
    }

    /// Digest of the last applied block (its state root is [`Follower::state`]'s).
    pub fn last_digest(&self) -> String {
        self.check.last_digest().to_string()
    }

    /// Fetches and applies blocks from `source` until `height` is reached; `progress` is
    /// called after each block with its outcomes. Waits at the validators for blocks not yet
    /// finalized.
    pub async fn sync_to(
        &mut self,
        source: &HttpSource,
        height: u64,
        mut progress: impl FnMut(&[([u8; 32], Outcome)]),
    ) -> Result<(), FollowError> {
        while self.height() < height {
            let next = self.height() + 1;
            if let Some(raw) = source.fetch(next, 2_000).await? {
                let out = self.apply(&raw)?;
                progress(&out);
            }
        }
        Ok(())
    }
}
