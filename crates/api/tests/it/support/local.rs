//! An in-process ledger for the API's tests: every submitted transaction is a block of its
//! own, applied to a plain `State`.

use medspace_api::{Ledger, Snapshot, SubmitError, TxStatus};
use medspace_state::{BlockContext, State};
use medspace_types::*;
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Local {
    pub inner: Mutex<(State, u64, HashMap<Hash, TxStatus>)>,
}

impl Ledger for Local {
    fn snapshot(&self) -> Snapshot {
        let g = self.inner.lock().unwrap();
        Snapshot {
            state: g.0.clone(),
            height: g.1,
            time_ms: 1_000_000 + g.1,
            anchor: (g.1 > 0).then(|| medspace_api::Anchor {
                height: g.1,
                digest: "test".into(),
                state_root: g.0.root(),
                finality: medspace_ledger::Finality::Certificate,
            }),
        }
    }
    fn submit(&self, tx: SignedTx) -> Result<Hash, SubmitError> {
        let mut g = self.inner.lock().unwrap();
        g.0.check_tx(&tx)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let id = tx.id();
        g.1 += 1;
        let ctx = BlockContext {
            height: g.1,
            time_ms: 1_000_000 + g.1,
        };
        let status = match g.0.apply(&tx, &ctx) {
            Ok(r) => TxStatus::Finalized {
                height: ctx.height,
                receipt: Some(r),
            },
            Err(e) => TxStatus::Refused {
                height: ctx.height,
                reason: e.to_string(),
            },
        };
        g.2.insert(id, status);
        Ok(id)
    }
    fn tx_status(&self, id: &Hash) -> TxStatus {
        self.inner
            .lock()
            .unwrap()
            .2
            .get(id)
            .cloned()
            .unwrap_or(TxStatus::Unknown)
    }
}
