//! The vault on Apache Ballista: one scheduler and two executor processes on loopback run a
//! hospital's federated queries, its models' rows and a de-identified release, and every
//! answer equals the embedded engine's. The processes are this test binary started again in
//! the role of a scheduler or an executor (`cluster_process`), running the same library code
//! as `medspace vault scheduler` and `medspace vault executor`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_cluster::Engine;
use medspace_compute::Links;
use medspace_compute::federated::{SiteVault, model_rows};
use medspace_compute::local::{self, CONSENTED};
use medspace_privacy::query::{compile_sql, parse};
use medspace_types::{DatasetId, Purpose};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support;
use support::*;

/// The role a child process of this test plays, and the vault an executor reads.
const ROLE: &str = "MEDSPACE_TEST_CLUSTER_ROLE";
const NODE: &str = "MEDSPACE_TEST_CLUSTER_NODE";
const SCHEDULER: &str = "MEDSPACE_TEST_CLUSTER_SCHEDULER";
const PORTS: &str = "MEDSPACE_TEST_CLUSTER_PORTS";

/// Every compiled query shape the sites run: counts, a mean, a survival curve, drug safety,
/// an overlap's cohort.
const QUERIES: [&str; 6] = [
    SPEC,
    r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#,
    r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":{"mean":{"measurement":"4548-4","lower":0,"upper":20}},"group_by":["sex"]}"#,
    r#"{"version":1,"cohort":{"index_date":"2016-01-01"},"group_by":["sex"],"aggregate":{"survival":{"event":{"condition":"444814009"},"horizon_days":3000,"bin_days":1}}}"#,
    r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":{"drug_safety":{"drugs":[{"name":"ibuprofen","codes":["310965"]},{"name":"acetaminophen","codes":["313782"]}],"events":[{"name":"bronchitis","codes":["10509002"]}],"window_days":30,"washout_days":180}}}"#,
    r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":{"overlap":{"dp":false}}}"#,
];

/// The three model families' rows.
const MODELS: [&str; 3] = [
    r#"{"version":1,"cohort":{"index_date":"2022-01-01"},"aggregate":{"model":{"family":"logistic","outcome":{"condition":"44054006"},"covariates":["age","female",{"measurement":{"code":"39156-5","lower":10,"upper":60}},{"condition":"38341003"}]}}}"#,
    r#"{"version":1,"cohort":{"index_date":"2019-01-01"},"aggregate":{"model":{"family":"poisson","outcome":{"count_within":{"code":"444814009","days":1825}},"covariates":["age","female",{"condition":"38341003"}]}}}"#,
    r#"{"version":1,"cohort":{"index_date":"2022-01-01"},"aggregate":{"model":{"family":"linear","outcome":{"measurement":{"code":"39156-5","lower":10,"upper":60}},"covariates":["age","female",{"condition":"44054006"}]}}}"#,
];

const RELEASE: &str = r#"{"version":1,"dataset":"hospital-a.cdm","tables":{"condition_occurrence":["condition_concept_id","condition_start_date","condition_source_value"],"measurement":["measurement_source_value","measurement_date","value_as_number"]},"quasi_identifiers":[{"field":"year_of_birth","hierarchy":{"kind":"interval","widths":[5,10,20,40]}},{"field":"gender","hierarchy":{"kind":"suppress"}}],"sensitive":["condition"],"k":5,"l":{"distinct":2},"max_suppression":0.2,"dates":{"shift_days":30}}"#;

/// Not a test of its own: the body of a child process (a scheduler or an executor) when
/// [`ROLE`] is set; returns at once otherwise.
#[test]
fn cluster_process() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    // The cluster's own log (Ballista logs through `log`), on this process's stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    match role.as_str() {
        "scheduler" => medspace_cluster::scheduler::serve("127.0.0.1:0", |a| {
            println!("scheduler listening on {a}");
        })
        .unwrap(),
        "executor" => {
            let node = PathBuf::from(std::env::var(NODE).unwrap());
            let ports = std::env::var(PORTS).unwrap();
            let (flight, grpc) = ports.split_once(',').unwrap();
            let settings = medspace_cluster::executor::ExecutorSettings {
                work_dir: Some(node.join(format!("executor-{flight}"))),
                node: node.clone(),
                scheduler: std::env::var(SCHEDULER).unwrap(),
                host: "127.0.0.1".into(),
                flight_port: flight.parse().unwrap(),
                grpc_port: grpc.parse().unwrap(),
                vcores: 1,
            };
            medspace_cluster::executor::serve(settings, &vkey(&node)).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

/// The child processes, killed when dropped.
struct Cluster {
    children: Vec<Child>,
    scheduler: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn child(role: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "ballista::cluster_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, role)
    .env(
        "RUST_LOG",
        std::env::var("MEDSPACE_TEST_CLUSTER_LOG").unwrap_or("warn".into()),
    )
    .stdin(Stdio::null());
    c
}

/// A free loopback port (bound and released: the executor binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    /// One scheduler and two executors reading the vault of `node`.
    fn start(node: &Path) -> Cluster {
        let mut scheduler = child("scheduler").stdout(Stdio::piped()).spawn().unwrap();
        let out = BufReader::new(scheduler.stdout.take().unwrap());
        let mut cluster = Cluster {
            children: vec![scheduler],
            scheduler: String::new(),
        };
        for line in out.lines() {
            let line = line.unwrap();
            // The test harness may print the test's name on the same line first.
            if let Some((_, a)) = line.split_once("scheduler listening on ") {
                cluster.scheduler = format!("df://{a}");
                break;
            }
        }
        assert!(!cluster.scheduler.is_empty(), "the scheduler did not start");
        let mut pids = vec![cluster.children[0].id()];
        for _ in 0..2 {
            let ports = format!("{},{}", free_port(), free_port());
            let e = child("executor")
                .env(NODE, node)
                .env(SCHEDULER, &cluster.scheduler)
                .env(PORTS, ports)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            pids.push(e.id());
            cluster.children.push(e);
        }
        // A cluster that never answers fails the test in bounded time and leaves no process
        // behind (a hung query would otherwise hold the test, and its children, forever).
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(600));
            for pid in pids {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
            eprintln!("the cluster did not answer within 600 s");
            std::process::exit(1);
        });
        cluster
    }
}

fn sorted(mut rows: Vec<local::Row>) -> Vec<local::Row> {
    rows.sort_by(|a, b| (&a.key, &a.values).cmp(&(&b.key, &b.values)));
    rows
}

/// A model's rows as a sorted list of (x row, y, offset) bit patterns: the engines may return
/// rows in different orders, never different rows.
fn row_set(m: &medspace_worker::compute::ModelRows) -> Vec<Vec<u64>> {
    let mut out: Vec<Vec<u64>> = (0..m.y.len())
        .map(|i| {
            let mut r: Vec<u64> = m.x[i * m.p..(i + 1) * m.p]
                .iter()
                .map(|v| v.to_bits())
                .collect();
            r.push(m.y[i].to_bits());
            if let Some(o) = &m.offset {
                r.push(o[i].to_bits());
            }
            r
        })
        .collect();
    out.sort();
    out
}

#[test]
fn ballista_gives_the_embedded_engines_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let w = World::new(tmp.path());
    let site = &w.dirs[0];
    let key = vkey(site);
    let cluster = Cluster::start(site);
    let engine = Engine::from_setting(Some(&cluster.scheduler)).unwrap();
    let embedded = SiteVault::embedded(site, &key);
    let remote = SiteVault {
        dir: site,
        key: &key,
        engine: &engine,
    };
    let links = Links::load(site, &key).unwrap();
    let cohort: BTreeSet<i64> = links.iter().map(|(person, _)| person).collect();
    assert!(cohort.len() > 50, "{} linked persons", cohort.len());

    for q in QUERIES {
        let spec = parse(q).unwrap().0;
        let sql = compile_sql(&spec, CONSENTED).unwrap();
        let here = sorted(local::run_at(embedded, &cohort, &sql).unwrap());
        let there = sorted(local::run_at(remote, &cohort, &sql).unwrap());
        assert!(!here.is_empty(), "{q}: no rows");
        assert_eq!(here, there, "{q}");
    }
    // A smaller cohort gives other answers, on both engines alike: the cohort reaches the
    // executors.
    let half: BTreeSet<i64> = cohort.iter().copied().step_by(2).collect();
    let sql = compile_sql(&parse(SPEC).unwrap().0, CONSENTED).unwrap();
    let all = sorted(local::run_at(remote, &cohort, &sql).unwrap());
    let some = sorted(local::run_at(remote, &half, &sql).unwrap());
    assert_ne!(all, some);
    assert_eq!(some, sorted(local::run_at(embedded, &half, &sql).unwrap()));

    for m in MODELS {
        let spec = parse(m).unwrap().0;
        let here = model_rows(embedded, &cohort, &spec, 5).unwrap();
        let there = model_rows(remote, &cohort, &spec, 5).unwrap();
        assert!(here.y.len() > 20, "{m}: {} rows", here.y.len());
        assert_eq!((here.p, here.cohort), (there.p, there.cohort), "{m}");
        assert_eq!(row_set(&here), row_set(&there), "{m}");
    }

    let spec = medspace_deid::ReleaseSpec::from_json(RELEASE).unwrap();
    let (source, id) = (
        DatasetId::new("hospital-a.cdm").unwrap(),
        DatasetId::new("hospital-a.open").unwrap(),
    );
    let release = |vault: SiteVault<'_>| {
        medspace_compute::release::build(
            vault,
            &w.state,
            w.height,
            &medspace_compute::release::Request {
                release: &id,
                source: &source,
                spec: &spec,
                purposes: &[Purpose::Research],
                parents: &Default::default(),
            },
            &mut |_| {},
        )
        .unwrap()
    };
    let here = release(embedded);
    let there = release(remote);
    assert!(here.figures.persons > 0);
    assert_eq!(here.content_hash, there.content_hash);
    assert_eq!(here.manifest, there.manifest);

    // A client's plan that reads a file outside the vault is refused by the executors, which
    // decrypt only the vault's own files.
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = rt.block_on(async {
        let plain = datafusion::prelude::SessionContext::new();
        plain
            .sql("SELECT 1 AS x")
            .await
            .unwrap()
            .write_parquet(
                outside.join("x.parquet").to_str().unwrap(),
                datafusion::dataframe::DataFrameWriteOptions::new(),
                None,
            )
            .await
            .unwrap();
        let session = engine.session(site, &key).unwrap();
        session
            .ctx()
            .register_parquet(
                "outside",
                outside.to_str().unwrap(),
                datafusion::prelude::ParquetReadOptions::default(),
            )
            .await
            .unwrap();
        session
            .ctx()
            .sql("SELECT * FROM outside")
            .await
            .unwrap()
            .collect()
            .await
    });
    let err = refused
        .expect_err("a file outside the vault was read")
        .to_string();
    assert!(err.contains("outside the session's vaults"), "{err}");

    // The scratch tables that carried the cohorts are gone.
    let scratch = medspace_vault::at_rest::vault_dir(site).join("scratch");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    drop(cluster);
}
