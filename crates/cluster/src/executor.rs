//! A Ballista executor that reads a hospital's vault.
//!
//! Plans reach an executor serialized, and DataFusion's plan serialization does not carry a
//! Parquet scan's decryption settings: a scan arrives unable to read an encrypted file. The
//! executor's engine ([`VaultStages`]) therefore gives every Parquet scan of every stage it
//! runs the vault's decryption factory before running it, and that factory refuses any file
//! outside the vault. The keys come from the vault's passphrase, unlocked by the executor
//! itself; they never travel.

use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::JobId;
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use medspace_vault::VaultKey;

use crate::ClusterError;

/// What an executor needs to run (`medspace vault executor`).
#[derive(Debug, clap::Args)]
pub struct ExecutorSettings {
    /// The node directory of the vault it reads (its passphrase as for `medspace ingest`).
    #[arg(long)]
    pub node: PathBuf,
    /// The scheduler, `df://host:port`.
    #[arg(long)]
    pub scheduler: String,
    /// The address this executor binds and advertises to the scheduler and the clients.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port of its Arrow Flight service (results and shuffle data are fetched there).
    #[arg(long, default_value_t = 50051)]
    pub flight_port: u16,
    /// The port of its gRPC service.
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Where it writes shuffle files (default: a temporary directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Tasks it runs at once (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub vcores: usize,
}

/// Runs an executor for the vault of `settings.node`, unlocked with `key`, until the process
/// ends, on a runtime of its own.
pub fn serve(settings: ExecutorSettings, key: &VaultKey) -> Result<(), ClusterError> {
    crate::runtime()?.block_on(run(settings, key))
}

/// Runs an executor for the vault of `settings.node`, unlocked with `key`, until the process
/// ends.
pub async fn run(settings: ExecutorSettings, key: &VaultKey) -> Result<(), ClusterError> {
    let crate::Engine::Ballista { scheduler } =
        crate::Engine::from_setting(Some(&settings.scheduler))?
    else {
        return Err(ClusterError::BadScheduler(settings.scheduler));
    };
    let (scheduler_host, scheduler_port) = scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| ClusterError::BadScheduler(settings.scheduler.clone()))?;
    let factory = medspace_vault::decryption_factory(&[(&settings.node, key)])?;
    let work_dir = settings.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("medspace-executor-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work_dir)?;
    let work_dir = work_dir.to_string_lossy().to_string();
    let runtime_factory = factory.clone();
    let runtime_dir = work_dir.clone();
    let config = ExecutorProcessConfig {
        scheduler_host,
        scheduler_port,
        bind_host: settings.host.clone(),
        external_host: Some(settings.host),
        port: settings.flight_port,
        grpc_port: settings.grpc_port,
        vcores: settings.vcores,
        work_dir: Some(work_dir),
        override_runtime_producer: Some(Arc::new(move |_config: &SessionConfig| {
            let env = RuntimeEnvBuilder::new()
                .with_temp_file_path(runtime_dir.clone())
                .build()?;
            env.register_parquet_encryption_factory(
                medspace_vault::FACTORY_ID,
                runtime_factory.clone(),
            );
            Ok(Arc::new(env))
        })),
        override_execution_engine: Some(Arc::new(VaultStages {
            inner: DefaultExecutionEngine::new(),
            factory,
        })),
        ..ExecutorProcessConfig::default()
    };
    tracing::info!("cluster.executor: starting");
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}

/// Ballista's execution engine, with the vault's decryption given to every Parquet scan.
pub struct VaultStages {
    inner: DefaultExecutionEngine,
    factory: Arc<dyn EncryptionFactory>,
}

impl ExecutionEngine for VaultStages {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> datafusion::error::Result<Arc<dyn QueryStageExecutor>> {
        let plan = with_decryption(plan, &self.factory)?;
        self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )
    }
}

/// `plan` with `factory` as the decryption of each of its Parquet scans.
pub fn with_decryption(
    plan: Arc<dyn ExecutionPlan>,
    factory: &Arc<dyn EncryptionFactory>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some(scan) = exec.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(Transformed::no(node));
        };
        let Some(parquet) = scan.file_source().downcast_ref::<ParquetSource>() else {
            return Ok(Transformed::no(node));
        };
        let source = parquet.clone().with_encryption_factory(factory.clone());
        let scan = FileScanConfigBuilder::from(scan.clone())
            .with_source(Arc::new(source))
            .build();
        Ok(Transformed::yes(
            DataSourceExec::from_data_source(scan) as Arc<dyn ExecutionPlan>
        ))
    })
    .map(|t| t.data)
}
