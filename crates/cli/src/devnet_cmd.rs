//! `medspace devnet` and `medspace demo`: the embedded default consortium on this machine
//! (`medspace_devnet`), started, bootstrapped and shown; the demo's story run on it.

use anyhow::Context as _;
use clap::Args;
use medspace_devnet::devnet;
use medspace_devnet::{Devnet, DevnetOptions};
use std::path::PathBuf;

/// The patients of a devnet's hospitals, generated or read from FHIR folders.
#[derive(Args, Debug)]
pub struct HospitalData {
    /// Generated patients per hospital.
    #[arg(long, default_value_t = 200)]
    pub patients: usize,
    /// Seed of every key, generated patient and choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// One FHIR R4 folder per hospital (e.g. the Synthea split) instead of generated patients.
    #[arg(long, num_args = 1.., value_name = "DIR")]
    pub fhir: Vec<PathBuf>,
    /// Development only: the nodes' HTTP APIs without TLS (no certificates in the genesis).
    #[arg(long)]
    pub plain_http: bool,
}

impl HospitalData {
    /// The devnet these patients make, on ports from `base_port`.
    pub fn devnet(self, base_port: u16) -> DevnetOptions {
        DevnetOptions {
            seed: self.seed,
            patients: self.patients,
            fhir: self.fhir,
            base_port,
            plain_http: self.plain_http,
        }
    }
}

/// `medspace devnet`.
#[derive(Args, Debug)]
pub struct DevnetArgs {
    /// Where the devnet lives (created on first start, resumed afterwards).
    #[arg(long, default_value = ".medspace/devnet")]
    pub dir: PathBuf,
    /// Its hospitals' patients (first start).
    #[command(flatten)]
    pub data: HospitalData,
    /// First loopback port (p2p from here, HTTP from here + 100).
    #[arg(long, default_value_t = 7_400)]
    pub base_port: u16,
}

/// `medspace demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Its hospitals' patients.
    #[command(flatten)]
    pub data: HospitalData,
    /// Where the consortium's node directories go (recreated on every run).
    #[arg(long, default_value = ".medspace/demo")]
    pub dir: PathBuf,
    /// First loopback port of the demo's nodes (p2p from here, HTTP from here + 100).
    #[arg(long, default_value_t = 27_400)]
    pub base_port: u16,
}

/// Runs `medspace demo`.
pub fn demo(a: DemoArgs) -> anyhow::Result<()> {
    Ok(medspace_devnet::demo::run(
        &medspace_devnet::demo::DemoOptions {
            dir: a.dir,
            net: a.data.devnet(a.base_port),
        },
    )?)
}

/// Runs `medspace devnet` until Ctrl-C.
pub fn run(a: DevnetArgs) -> anyhow::Result<()> {
    let fresh = !a.dir.join("devnet.json").exists();
    println!(
        "medspace devnet: {} consortium under {}",
        if fresh { "creating a" } else { "resuming the" },
        a.dir.display()
    );
    let mut net = Devnet::start(&a.dir, &a.data.devnet(a.base_port))?;
    let mut ledger = net.client()?;
    if !net.bootstrapped() {
        devnet::publish_catalogs(&net, &mut ledger, |member, d, rows| {
            println!(
                "  {member:<12} {} persons, {} FHIR resources -> {rows} CDM rows; catalog entry {member}.cdm published",
                d.persons, d.resources
            );
        })?;
        let n = devnet::register_patients(&net, &mut ledger)?;
        println!("  {n} patients registered (pseudonymous keys; their records stay in the vaults)");
        let (allow, deny) = devnet::simulate_consents(&net, &mut ledger)?;
        println!("  research consent: {allow} patients allow, {deny} deny");
        net.mark_bootstrapped()?;
    }
    println!("\n  {:<12} {:<10} {:<24} data", "node", "role", "api");
    for name in net.node_names() {
        let role = if net.is_observer(&name) {
            "observer"
        } else {
            "validator"
        };
        println!(
            "  {name:<12} {role:<10} {:<24} {}",
            net.url(&name).unwrap_or_default(),
            net.dir.join(&name).display()
        );
    }
    println!("\n  the console (patient portal) of each node, the genesis pinned by its hash:");
    for name in net.node_names() {
        println!(
            "  {name:<12} {}",
            net.console_url(&name).unwrap_or_default()
        );
    }
    if !net.options.plain_http {
        println!(
            "  (the browser does not know the certificate pinned in the genesis: accept it for that address)"
        );
    }
    println!(
        "\n  chain {} at height {}, state root {}",
        net.genesis.chain_id,
        ledger.height(),
        ledger.state().root()
    );
    if !net.options.plain_http {
        println!(
            "  every API speaks TLS with the certificate pinned for its node in {} (no CA: trust that certificate, by the node's name)",
            net.dir.join("genesis.json").display()
        );
    }
    println!(
        "\n  try (each `$` line runs as printed, in this order; the study is signed by the devnet's users, `latest` is the newest contract):"
    );
    let hints = medspace_devnet::hints::hints(&net).context("writing the example query")?;
    for h in &hints.now {
        println!("  $ {h}");
    }
    for h in &hints.after_stop {
        println!("  after Ctrl-C: $ {h}");
    }
    println!("  Ctrl-C stops the consortium; `medspace devnet` again resumes it from disk.");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(tokio::signal::ctrl_c())
        .context("waiting for Ctrl-C")?;
    println!("\nstopping the nodes…");
    net.stop();
    Ok(())
}
