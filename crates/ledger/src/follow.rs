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

/// How many blocks without a certificate of their own a follower holds while it waits for a
/// certified block to link back to them.
pub const MAX_LINKED: usize = 1024;

/// What one entry made final ([`Follower::apply_entry`]).
#[derive(Debug, Default)]
pub struct Applied {
    /// The entries applied, in height order: the blocks that waited for a certificate, then
    /// the certified one (none while the entry waits itself).
    pub entries: Vec<Vec<u8>>,
    /// Each applied transaction's outcome.
    pub outcomes: Vec<([u8; 32], Outcome)>,
}

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
    /// Blocks finalized through a later block's certificate, waiting for it (entry, block).
    linked: Vec<(Vec<u8>, medspace_chain::block::Block)>,
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
            linked: Vec::new(),
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
            linked: Vec::new(),
        })
    }

    /// A follower that starts after a finalized block from a state whose root the caller
    /// holds but not its records — a light client's [`State::remote`], read piece by piece
    /// from a node — once `header` (that block's certified header) checks against the genesis
    /// validators and names exactly that root. It executes the blocks after it on that state,
    /// loading only what they touch.
    pub fn from_state(
        genesis: &ChainGenesis,
        state: State,
        header: &[u8],
        height: u64,
    ) -> Result<Self, FollowError> {
        let (check, header) = ChainCheck::from_certified(genesis, height, header)?;
        if state.root().0 != header.state_root {
            return Err(FollowError::Invalid {
                height,
                reason: format!(
                    "the state's root {} is not the certified root {}",
                    state.root(),
                    hex::encode(header.state_root)
                ),
            });
        }
        Ok(Self {
            check,
            state,
            time_ms: header.time_ms,
            outcomes: Recent::new(OUTCOMES_KEPT),
            linked: Vec::new(),
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
        Ok(self.apply_entry(raw)?.outcomes)
    }

    /// The height of the next entry to give [`Follower::apply_entry`]: past the applied blocks
    /// and those waiting for a certificate.
    pub fn next_height(&self) -> u64 {
        self.check.height() + self.linked.len() as u64 + 1
    }

    /// Takes the next finalized block in either form a validator serves: with its finality
    /// certificate (`encode_finalized`), or alone (`encode_linked`: simplex finalized it through
    /// a later block's certificate). A block alone is held, not applied, until a certified block
    /// links back to it; then the held blocks and the certified one are checked (links, times,
    /// the certificate), executed in order (each to its header's root) and applied together.
    /// On error nothing changes, and the held blocks are dropped (to be fetched again).
    pub fn apply_entry(&mut self, raw: &[u8]) -> Result<Applied, FollowError> {
        let h = self.next_height();
        let decoded = self.check.decode_entry(h, raw);
        let (block, fin) = match decoded {
            Ok(d) => d,
            Err(e) => {
                self.linked.clear();
                return Err(e);
            }
        };
        let Some(fin) = fin else {
            let parent = self
                .linked
                .last()
                .map_or(self.check.last_digest(), |(_, b)| b.header.digest());
            let refused = if block.header.height != h {
                Some(format!("block has height={}", block.header.height))
            } else if block.header.parent != parent {
                Some("parent digest does not link to the previous block".into())
            } else if self.linked.len() >= MAX_LINKED {
                Some(format!(
                    "{MAX_LINKED} blocks without a certificate and none certified after them"
                ))
            } else {
                None
            };
            if let Some(reason) = refused {
                self.linked.clear();
                return Err(FollowError::Invalid { height: h, reason });
            }
            self.linked.push((raw.to_vec(), block));
            return Ok(Applied::default());
        };
        let linked = std::mem::take(&mut self.linked);
        let mut check = self.check.clone();
        let mut state = self.state.clone();
        let mut results = Vec::new();
        let mut time_ms = self.time_ms;
        let certified = linked
            .iter()
            .map(|(_, b)| (b, None))
            .chain([(&block, Some(&fin))]);
        for (b, fin) in certified {
            let height = check.height() + 1;
            match fin {
                Some(fin) => check.check(b, fin)?,
                None => check.check_link(b)?,
            }
            let out = execute_block(&mut state, height, b.header.time_ms, &b.txs);
            if state.root().0 != b.header.state_root {
                return Err(FollowError::Invalid {
                    height,
                    reason: format!(
                        "re-execution gives a different state root: header={} computed={}",
                        hex::encode(b.header.state_root),
                        state.root()
                    ),
                });
            }
            check.advance(b);
            time_ms = b.header.time_ms;
            results.extend(
                out.into_iter()
                    .map(|(id, result)| (id, Outcome { height, result })),
            );
        }
        self.check = check;
        self.state = state;
        self.time_ms = time_ms;
        for (id, o) in &results {
            self.outcomes.insert(*id, o.clone());
        }
        let mut entries: Vec<Vec<u8>> = linked.into_iter().map(|(raw, _)| raw).collect();
        entries.push(raw.to_vec());
        Ok(Applied {
            entries,
            outcomes: results,
        })
    }

    /// Writes the verified state to `store` as its committed state at this follower's height
    /// (only what changed since it was last written there) and goes on from the same state held
    /// as one stub into the store: its memory is then the store's cache. A store written this
    /// way is trusted at a restart only once [`Follower::from_state`] checked it against the
    /// certified header of its height.
    pub fn persist(
        &mut self,
        store: &mut medspace_state::trie::disk::NodeStore,
    ) -> Result<(), medspace_state::TxError> {
        self.state = self.state.persist(store, self.height())?;
        Ok(())
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
            let next = self.next_height();
            if let Some(raw) = source.fetch(next, 2_000).await? {
                let applied = self.apply_entry(&raw)?;
                progress(&applied.outcomes);
            }
        }
        Ok(())
    }
}
