//! `medspace audit verify`: a stopped node's stored chain re-verified from genesis with the
//! ledger state machine — a validator's finalized-block archives or an observer's block log.

use crate::{LedgerApp, LedgerError};
use medspace_chain::audit::{AuditReport, audit_verify};
use medspace_chain::node::{Genesis, NodeConfig};

/// Why the audit could not run (a fault it finds is in the report, not here).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The node's config or genesis could not be loaded.
    #[error(transparent)]
    Node(#[from] medspace_chain::node::NodeError),
    /// The application genesis is not valid.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The stored chain could not be read.
    #[error("audit: {0}")]
    Audit(String),
}

/// Re-verifies the stored chain of the node configured at `config`.
pub fn audit(config: &std::path::Path) -> Result<AuditReport, AuditError> {
    let cfg = NodeConfig::load(config)?;
    let genesis = Genesis::load(&cfg.node.genesis_file)?;
    let app = LedgerApp::from_chain_genesis(&genesis.app)?;
    audit_verify(&cfg.node.data_dir, &cfg.node.name, &genesis, app)
        .map_err(|e| AuditError::Audit(e.to_string()))
}
