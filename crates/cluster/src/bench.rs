//! `medspace bench cohort --cluster`: the cohort benchmark's query over one vault, on the
//! embedded engine and on a Ballista scheduler with two executors, each a child process of the
//! `medspace` binary (`medspace vault scheduler`, `medspace vault executor`), measured the same
//! way in the same run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use medspace_vault::bench::{CohortBench, build_cohort_vault, time_cohort};
use medspace_vault::seal::Passphrase;

use crate::{ClusterError, Engine};

/// Both runs of the cohort benchmark.
#[derive(Debug)]
pub struct ClusterCohort {
    /// On DataFusion in this process.
    pub embedded: CohortBench,
    /// On the scheduler and its two executors.
    pub cluster: CohortBench,
    /// Peak resident memory of each executor, KiB.
    pub executors_peak_rss_kib: Vec<Option<u64>>,
    /// Tasks each executor takes at once.
    pub vcores: usize,
}

impl std::fmt::Display for ClusterCohort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (e, c) = (&self.embedded, &self.cluster);
        let runs = |b: &CohortBench| {
            b.runs_ms
                .iter()
                .map(|m| format!("{m:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let rss: Vec<String> = self
            .executors_peak_rss_kib
            .iter()
            .map(|k| format!("{} MiB", k.unwrap_or(0) / 1024))
            .collect();
        writeln!(
            f,
            "ballista (1 scheduler, {} executors x {} vcores, loopback): median {:.0} ms  runs {}  executors' peak RSS {}",
            self.executors_peak_rss_kib.len(),
            self.vcores,
            c.median_ms,
            runs(c),
            rss.join(", ")
        )?;
        writeln!(
            f,
            "embedded (this process, 2 partitions): median {:.0} ms  runs {}  peak RSS {} MiB",
            e.median_ms,
            runs(e),
            e.peak_rss_kib.unwrap_or(0) / 1024
        )?;
        write!(
            f,
            "ratio ballista/embedded {:.2}; both found {} persons in {} groups",
            c.median_ms / e.median_ms.max(1e-9),
            c.cohort_persons,
            c.groups
        )
    }
}

/// The child processes of a local cluster, killed when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free loopback port: bound, then released for the executor to bind.
fn free_port() -> Result<u16, ClusterError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Builds the benchmark's vault of `persons` in `work_dir`, times the query `runs` times
/// embedded, then on a scheduler and two executors started from `exe` (the `medspace`
/// binary), with `vcores` task slots each. `progress` hears each step.
pub fn cohort(
    exe: &Path,
    work_dir: &Path,
    persons: u64,
    seed: u64,
    runs: usize,
    vcores: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<ClusterCohort, ClusterError> {
    let passphrase = Passphrase::generate();
    progress("building the vault");
    let vault = build_cohort_vault(work_dir, &passphrase, persons, seed)?;
    progress("timing the embedded engine");
    // Each engine gets one untimed run first, so both are timed the same way: files in the
    // page cache, and (for the cluster) the executors registered.
    let embedded = {
        let ctx = medspace_vault::open_session(&vault.node, &vault.key)?;
        time_cohort(&vault, &ctx, 1)?;
        time_cohort(&vault, &ctx, runs)?
    };
    progress("starting the scheduler and two executors");
    let mut children = Children(Vec::new());
    let mut scheduler = Command::new(exe)
        .args(["vault", "scheduler", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let out = scheduler.stdout.take();
    children.0.push(scheduler);
    let address = out
        .and_then(|o| {
            BufReader::new(o)
                .lines()
                .map_while(Result::ok)
                .find_map(|l| {
                    l.strip_prefix("scheduler listening on ")
                        .map(str::to_string)
                })
        })
        .ok_or_else(|| ClusterError::Ballista("the scheduler did not start".into()))?;
    let scheduler = format!("df://{address}");
    let phrase = String::from_utf8_lossy(passphrase.expose()).to_string();
    for i in 0..2 {
        let work: PathBuf = work_dir.join(format!("executor-{i}"));
        let child = Command::new(exe)
            .args(["vault", "executor", "--node"])
            .arg(&vault.node)
            .args(["--scheduler", &scheduler, "--work-dir"])
            .arg(&work)
            .args(["--flight-port", &free_port()?.to_string()])
            .args(["--grpc-port", &free_port()?.to_string()])
            .args(["--vcores", &vcores.to_string()])
            .env(medspace_vault::at_rest::PASSPHRASE_ENV, &phrase)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        children.0.push(child);
    }
    let session = Engine::from_setting(Some(&scheduler))?.session(&vault.node, &vault.key)?;
    progress("timing the cluster");
    time_cohort(&vault, session.ctx(), 1)?;
    let cluster = time_cohort(&vault, session.ctx(), runs)?;
    if (cluster.cohort_persons, cluster.groups) != (embedded.cohort_persons, embedded.groups) {
        return Err(ClusterError::Ballista(format!(
            "the cluster found {} persons in {} groups, the embedded engine {} in {}",
            cluster.cohort_persons, cluster.groups, embedded.cohort_persons, embedded.groups
        )));
    }
    let executors_peak_rss_kib = children
        .0
        .iter()
        .skip(1)
        .map(|c| medspace_vault::bench::peak_rss_kib_of(c.id()))
        .collect();
    Ok(ClusterCohort {
        embedded,
        cluster,
        executors_peak_rss_kib,
        vcores,
    })
}
