//! A Ballista scheduler of the hospital: it receives a node's logical plans, splits them into
//! stages and hands the stages' tasks to the executors. It holds no keys and reads no vault
//! file: the plans it gets carry table paths and are planned without file statistics.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::net::TcpListener;

use crate::ClusterError;

/// Serves a scheduler on `listener` (bound by the caller, so a port 0 is known before it
/// starts) until the process ends. Cluster state is kept in memory: a restarted scheduler
/// starts empty and its executors register again.
pub async fn run(listener: TcpListener) -> Result<(), ClusterError> {
    let addr: SocketAddr = listener.local_addr()?;
    let config = SchedulerConfig {
        bind_host: addr.ip().to_string(),
        external_host: addr.ip().to_string(),
        bind_port: addr.port(),
        ..SchedulerConfig::default()
    };
    config.validate()?;
    let cluster = BallistaCluster::new_from_config(&config).await?;
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config)).await?;
    tracing::info!(%addr, "cluster.scheduler: listening");
    start_grpc_service_with_listener(listener, scheduler).await?;
    Ok(())
}

/// Binds `listen` (`host:port`, port 0 for any), tells `ready` the address bound, and serves a
/// scheduler there until the process ends, on a runtime of its own.
pub fn serve(listen: &str, ready: impl FnOnce(SocketAddr)) -> Result<(), ClusterError> {
    crate::runtime()?.block_on(async {
        let listener = TcpListener::bind(listen).await?;
        ready(listener.local_addr()?);
        run(listener).await
    })
}
