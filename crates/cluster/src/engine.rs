//! Where a vault's queries run, and the session they run in.

use std::path::Path;
use std::sync::Arc;

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use medspace_vault::{ScratchTable, VaultKey};

use crate::ClusterError;

/// Where a node's vault queries run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// DataFusion inside the node's process.
    #[default]
    Embedded,
    /// The hospital's Ballista scheduler at `host:port`, whose executors read the vault.
    Ballista {
        /// `host:port` of the scheduler's gRPC service.
        scheduler: String,
    },
}

impl Engine {
    /// The engine a `[vault] scheduler` setting names: none is [`Engine::Embedded`]; else it
    /// must be `df://host:port`.
    pub fn from_setting(scheduler: Option<&str>) -> Result<Engine, ClusterError> {
        let Some(s) = scheduler else {
            return Ok(Engine::Embedded);
        };
        let bad = || ClusterError::BadScheduler(s.to_string());
        let hostport = s.strip_prefix("df://").ok_or_else(bad)?;
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty()
            || port.parse::<u16>().map_or(true, |p| p == 0)
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        {
            return Err(bad());
        }
        Ok(Engine::Ballista {
            scheduler: hostport.to_string(),
        })
    }

    /// A session over the vault of `node_dir` (unlocked with `key`) whose queries run on this
    /// engine.
    pub fn session(&self, node_dir: &Path, key: &VaultKey) -> Result<VaultSession, ClusterError> {
        let ctx = match self {
            Engine::Embedded => medspace_vault::open_session(node_dir, key)?,
            Engine::Ballista { scheduler } => {
                // The scheduler plans without the vault's keys: it must not read the encrypted
                // footers for statistics.
                //
                // Ballista's adaptive planner is off: in 55.0 it re-plans some multi-join
                // plans (a survival curve's) without end, thousands of stages for one query;
                // the static distributed planner runs the same plans to the same answers.
                let config = medspace_vault::session_config()
                    .upgrade_for_ballista()
                    .set_bool("datafusion.execution.collect_statistics", false)
                    .set_bool(
                        ballista_core::config::BALLISTA_ADAPTIVE_PLANNER_ENABLED,
                        false,
                    );
                let state = SessionStateBuilder::new()
                    .with_config(config)
                    .with_default_features()
                    .build()
                    .upgrade_for_ballista(format!("http://{scheduler}"))?;
                let ctx = SessionContext::new_with_state(state);
                medspace_vault::register_vaults(&ctx, &[(node_dir, key)])?;
                ctx
            }
        };
        Ok(VaultSession {
            ctx,
            node_dir: node_dir.to_path_buf(),
            key: key.clone(),
            remote: matches!(self, Engine::Ballista { .. }),
            scratch: Vec::new(),
        })
    }
}

/// A DataFusion session over one vault's CDM tables, its queries run by an [`Engine`].
pub struct VaultSession {
    ctx: SessionContext,
    node_dir: std::path::PathBuf,
    key: VaultKey,
    remote: bool,
    /// Scratch tables registered in this session; their files go with the session.
    scratch: Vec<ScratchTable>,
}

impl std::fmt::Debug for VaultSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSession")
            .field("node_dir", &self.node_dir)
            .field("remote", &self.remote)
            .finish()
    }
}

impl VaultSession {
    /// The session, to run SQL in.
    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    /// Whether the session's plans run on a Ballista cluster.
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// Registers `batch` as the table `name`: in memory when the engine is embedded, else as
    /// an encrypted scratch table in the vault, which the executors read like the vault's
    /// own tables (a plan carries no rows).
    pub fn register_rows(&mut self, name: &str, batch: RecordBatch) -> Result<(), ClusterError> {
        if self.remote {
            let table = ScratchTable::write(&self.node_dir, &self.key, name, &batch)?;
            self.ctx.register_table(name, table.provider())?;
            self.scratch.push(table);
        } else {
            let mem = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
            self.ctx.register_table(name, Arc::new(mem))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_settings_are_checked() {
        assert_eq!(Engine::from_setting(None).unwrap(), Engine::Embedded);
        assert_eq!(
            Engine::from_setting(Some("df://10.0.0.5:50050")).unwrap(),
            Engine::Ballista {
                scheduler: "10.0.0.5:50050".into()
            }
        );
        for bad in [
            "10.0.0.5:50050",
            "http://h:1",
            "df://h",
            "df://:50050",
            "df://h:0",
            "df://h:99999",
            "df://h/x:1",
        ] {
            assert!(Engine::from_setting(Some(bad)).is_err(), "{bad}");
        }
    }
}
