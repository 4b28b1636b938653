//! `medspace devnet`: the whole default consortium on this machine — five validators (three
//! hospitals, a research institute and an insurer) and the regulator's observer — as real
//! `medspace node` processes talking over loopback TCP, with the hospitals' vaults and the
//! insurer's claims vault filled and their catalog published on the chain.
//!
//! The first start creates everything under the devnet directory (keys, genesis, node
//! configs, each hospital's vault and patient links) and, once the chain runs, publishes each
//! hospital's catalog entry and registers its patients with their consents. Later starts resume
//! from disk: the nodes replay their stored chain, nothing is re-created.

use crate::hospitals;
use crate::{Context, Result, fail};
use medspace_chain::node::{ConsortiumSpec, Genesis as ChainGenesis, SpecNode};
use medspace_client::Remote;
use medspace_compute::publish;
use medspace_consortium::{Consortium, GENESIS_MS, HOSPITALS};
use medspace_types::*;
use medspace_worker::config::{NODE_KEY_FILE, NODE_KEY_ROLE};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The validators of the default consortium, in genesis order, then the observer.
pub const VALIDATORS: [&str; 5] = [
    "hospital-a",
    "hospital-b",
    "hospital-c",
    "research-1",
    hospitals::INSURER,
];
/// The observer node.
pub const OBSERVER: &str = "regulator";

/// How a devnet is made (kept in `devnet.json` so a restart uses the same choices).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DevnetOptions {
    /// Seed of every key and generated patient.
    pub seed: u64,
    /// Generated patients per hospital (when no FHIR folders are given).
    pub patients: usize,
    /// One FHIR R4 folder per hospital instead of generated patients.
    pub fhir: Vec<PathBuf>,
    /// First port: p2p on `base_port + i`, HTTP on `base_port + 100 + i`.
    pub base_port: u16,
    /// Plain HTTP instead of TLS (no certificates pinned; the nodes allow plain HTTP): for
    /// development and for measuring what TLS costs. Off by default.
    #[serde(default)]
    pub plain_http: bool,
}

/// What `devnet.json` records.
#[derive(Serialize, Deserialize)]
struct Recorded {
    options: DevnetOptions,
    /// Catalog published and patients registered.
    bootstrapped: bool,
}

/// A running devnet: its node processes (stopped on drop).
pub struct Devnet {
    /// Its directory.
    pub dir: PathBuf,
    /// The chain genesis.
    pub genesis: ChainGenesis,
    /// The consortium's parties and keys.
    pub consortium: Consortium,
    /// Each hospital's node directory and patients.
    pub hospitals: Vec<hospitals::Hospital>,
    /// The insurer's node directory and its members who are patients here.
    pub insurer: hospitals::Hospital,
    /// The options it was made with.
    pub options: DevnetOptions,
    children: Vec<(String, Child)>,
    bootstrapped: bool,
    probe: Probe,
}

/// Asks the nodes' `/v1/health` over HTTPS with the client that pins the genesis
/// certificates, from a small runtime of its own (the devnet's callers are not async).
struct Probe {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Probe {
    fn new(genesis: &ChainGenesis) -> Result<Self> {
        Ok(Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            client: medspace_chain::tls::client(genesis, Duration::from_secs(2))?,
        })
    }

    /// The height a node's `/v1/health` reports; `None` while it does not answer.
    fn height(&self, url: &str) -> Option<u64> {
        self.runtime.block_on(async {
            let answer = self
                .client
                .get(format!("{url}/v1/health"))
                .send()
                .await
                .ok()?;
            if !answer.status().is_success() {
                return None;
            }
            let body = answer.bytes().await.ok()?;
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()?
                .get("height")?
                .as_u64()
        })
    }
}

fn spec(c: &Consortium, base_port: u16, plain_http: bool) -> Result<ConsortiumSpec> {
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let nodes = VALIDATORS
        .iter()
        .map(|n| (*n, true))
        .chain([(OBSERVER, false)])
        .enumerate()
        .map(|(i, (name, validator))| {
            let i = i as u16;
            SpecNode {
                name: name.to_string(),
                validator,
                p2p: addr(base_port + i),
                http: addr(base_port + 100 + i),
            }
        })
        .collect();
    Ok(ConsortiumSpec {
        chain_id: c.genesis.chain_id.to_string(),
        nodes,
        app: serde_json::to_value(&c.genesis)?,
        plain_http,
    })
}

/// Gives a hospital's node its compute worker: the member's node key and X25519 secret in
/// sealed key files, the `[worker]` section of its config and the `[vault]` section naming
/// the vault's passphrase file (once). The member key is never written into a node's
/// directory: the CLI derives it from the devnet's seed (`--key` takes a file elsewhere).
fn ensure_worker(dir: &Path, c: &Consortium, seed: u64, member: &str) -> Result<()> {
    let secret = medspace_consortium::agreement_secret(seed, member);
    let section = format!(
        "\n[worker]\nmember = \"{member}\"\nnode_key_file = \"{NODE_KEY_FILE}\"\nagreement_key_file = \"agreement.key\"\nshare_timeout_ms = {WORKER_SHARE_TIMEOUT_MS}\n\n[vault]\npassphrase_file = \"{}\"\n",
        hospitals::VAULT_PASSPHRASE_FILE
    );
    add_section(
        &dir.join(member),
        "[worker]",
        &section,
        &[
            (NODE_KEY_FILE, NODE_KEY_ROLE, node_secret(c, member)?),
            (
                "agreement.key",
                medspace_worker::config::AGREEMENT_KEY_ROLE,
                zeroize::Zeroizing::new(secret.to_bytes().to_vec()),
            ),
        ],
    )
}

/// The raw secret of a member's node key.
fn node_secret(c: &Consortium, member: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let hex = zeroize::Zeroizing::new(c.node_key(member)?.secret_hex());
    hex::decode(hex.as_str())
        .map(zeroize::Zeroizing::new)
        .map_err(|_| crate::DevnetError::Failed("a node key is not hex".into()))
}

/// Gives the observer's node its member's node key (it reads the validators' blocks with it)
/// and the `[observer]` section of its config (once).
fn ensure_observer(dir: &Path, c: &Consortium, member: &str) -> Result<()> {
    add_section(
        &dir.join(member),
        "[observer]",
        &format!("\n[observer]\nnode_key_file = \"{NODE_KEY_FILE}\"\n"),
        &[(NODE_KEY_FILE, NODE_KEY_ROLE, node_secret(c, member)?)],
    )
}

/// A secret to write as a sealed key file: (file name, role, secret).
type Secret<'a> = (&'a str, &'a str, zeroize::Zeroizing<Vec<u8>>);

/// Appends `section` (headed `head`) to `node`'s config unless it has one, after sealing each
/// of `secrets` into its owner-only key file (unless present) under the node's key passphrase
/// (`node.pass`, written by `init_consortium`).
fn add_section(node: &Path, head: &str, section: &str, secrets: &[Secret<'_>]) -> Result<()> {
    use medspace_vault::seal::{KdfParams, Passphrase, SealedKey};
    let config = node.join("node.toml");
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    if text.lines().any(|l| l.trim() == head) {
        return Ok(());
    }
    let pass_path = node.join(NODE_PASSPHRASE_FILE);
    let passphrase = Passphrase::from_file(&pass_path)
        .map_err(|e| crate::DevnetError::Failed(format!("node key passphrase: {e}")))?;
    for (file, role, secret) in secrets {
        let path = node.join(file);
        if !path.exists() {
            SealedKey::seal(secret, role, &passphrase, KdfParams::DEFAULT)
                .and_then(|k| k.write(&path, false))
                .map_err(|e| crate::DevnetError::Failed(format!("{file}: {e}")))?;
        }
    }
    let tmp = node.join("node.toml.tmp");
    std::fs::write(&tmp, format!("{text}{section}"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &config).with_context(|| format!("writing {}", config.display()))
}

/// The file beside each node's config holding the passphrase of its key files.
pub const NODE_PASSPHRASE_FILE: &str = "node.pass";

/// How long a devnet aggregator waits for a hospital's share before dropping it.
pub const WORKER_SHARE_TIMEOUT_MS: u64 = 5_000;

impl Devnet {
    /// Creates the devnet under `dir` if it does not exist yet, then starts its nodes and waits
    /// until each answers. An existing devnet keeps the options it was made with.
    pub fn start(dir: &Path, requested: &DevnetOptions) -> Result<Self> {
        let record_path = dir.join("devnet.json");
        let recorded: Option<Recorded> = match std::fs::read(&record_path) {
            Ok(b) => Some(
                serde_json::from_slice(&b)
                    .with_context(|| format!("reading {}", record_path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", record_path.display())),
        };
        let (options, bootstrapped) = match recorded {
            Some(r) => {
                if r.options != *requested {
                    eprintln!(
                        "devnet: {} exists; resuming it with the options it was made with (seed {}, {} patients per hospital{}); remove the directory to start afresh",
                        dir.display(),
                        r.options.seed,
                        r.options.patients,
                        if r.options.fhir.is_empty() {
                            String::new()
                        } else {
                            ", FHIR folders".into()
                        }
                    );
                }
                (r.options, r.bootstrapped)
            }
            None => {
                if dir.join("genesis.json").exists() {
                    fail!(
                        "{} holds a consortium that is not a devnet (no devnet.json); choose another --dir",
                        dir.display()
                    );
                }
                (requested.clone(), false)
            }
        };
        let consortium = Consortium::default_devnet(options.seed, GENESIS_MS)?;
        if !dir.join("genesis.json").exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            medspace_chain::node::init_consortium(
                &spec(&consortium, options.base_port, options.plain_http)?,
                dir,
            )?;
        }
        if ChainGenesis::load(&dir.join("genesis.json"))?.app
            != serde_json::to_value(&consortium.genesis)?
        {
            fail!(
                "{} was made by another version of medspace (its genesis is not this version's default consortium); remove the directory to start afresh",
                dir.display()
            );
        }
        let source = if options.fhir.is_empty() {
            hospitals::Source::Generated {
                per_hospital: options.patients as u64,
            }
        } else {
            hospitals::Source::Fhir(&options.fhir)
        };
        let hospitals = hospitals::prepare(dir, &HOSPITALS, options.seed, &source)?;
        let insurer = hospitals::prepare_insurer(dir, options.seed, &source)?;
        for member in HOSPITALS.iter().chain([&hospitals::INSURER]) {
            ensure_worker(dir, &consortium, options.seed, member)?;
        }
        ensure_observer(dir, &consortium, OBSERVER)?;
        let genesis = ChainGenesis::load(&dir.join("genesis.json"))?;
        if !options.plain_http
            && genesis
                .validators
                .iter()
                .chain(&genesis.observers)
                .any(|v| v.tls_cert.is_none())
        {
            fail!(
                "{} was made before its nodes had TLS certificates (its genesis pins none); remove the directory to start afresh",
                dir.display()
            );
        }
        let probe = Probe::new(&genesis)?;
        let mut devnet = Self {
            dir: dir.to_path_buf(),
            genesis,
            consortium,
            hospitals,
            insurer,
            options,
            children: Vec::new(),
            bootstrapped,
            probe,
        };
        devnet.record()?;
        devnet.spawn_all()?;
        devnet.wait_healthy(Duration::from_secs(120))?;
        Ok(devnet)
    }

    fn record(&self) -> Result<()> {
        let path = self.dir.join("devnet.json");
        let tmp = self.dir.join("devnet.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&Recorded {
                options: self.options.clone(),
                bootstrapped: self.bootstrapped,
            })?,
        )?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Every node's name, in genesis order (validators, then the observer).
    pub fn node_names(&self) -> Vec<String> {
        self.genesis
            .validators
            .iter()
            .chain(&self.genesis.observers)
            .map(|v| v.name.clone())
            .collect()
    }

    /// A node's config file.
    pub fn config(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("node.toml")
    }

    /// Whether the genesis names `name` among the observers.
    pub fn is_observer(&self, name: &str) -> bool {
        self.genesis.observers.iter().any(|o| o.name == name)
    }

    /// A node's HTTP API address.
    pub fn http(&self, name: &str) -> Option<SocketAddr> {
        self.genesis
            .validators
            .iter()
            .chain(&self.genesis.observers)
            .find(|v| v.name == name)
            .map(|v| v.http)
    }

    /// The base URL clients use for a node's API: `https://<name>:<port>` (its certificate
    /// pinned in the genesis; [`medspace_chain::tls::node_url`]).
    pub fn url(&self, name: &str) -> Option<String> {
        self.genesis
            .validators
            .iter()
            .chain(&self.genesis.observers)
            .find(|v| v.name == name)
            .map(medspace_chain::tls::node_url)
    }

    /// The console's address at a node, as a browser opens it: the node's loopback address
    /// (the browser does not know the pinned certificate: accept it for this address) and, in
    /// the fragment, the SHA-256 of this devnet's genesis file, which the page checks before it
    /// trusts the validator keys the node serves ([`medspace_console`]).
    pub fn console_url(&self, name: &str) -> Option<String> {
        let genesis = std::fs::read(self.dir.join("genesis.json")).ok()?;
        let addr = self.http(name)?;
        let scheme = if self.options.plain_http {
            "http"
        } else {
            "https"
        };
        Some(medspace_console::url(
            &format!("{scheme}://{addr}"),
            &genesis,
        ))
    }

    /// A node's pinned certificate as a PEM file, for `curl --cacert`.
    pub fn cert_file(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(medspace_chain::tls::CERT_FILE)
    }

    fn spawn_all(&mut self) -> Result<()> {
        for name in self.node_names() {
            self.spawn(&name)?;
        }
        Ok(())
    }

    /// Starts one node process (its output goes to `<dir>/<name>/node.log`).
    pub fn spawn(&mut self, name: &str) -> Result<()> {
        let exe = std::env::current_exe().context("locating the medspace binary")?;
        let log_path = self.dir.join(name).join("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = Command::new(exe)
            .arg("node")
            .arg("--config")
            .arg(self.config(name))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {name}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    /// Waits until every node answers its health check.
    pub fn wait_healthy(&mut self, within: Duration) -> Result<()> {
        let started = Instant::now();
        for name in self.node_names() {
            let addr = self.http(&name).context("node without address")?;
            let url = self.url(&name).context("node without address")?;
            loop {
                if let Some((n, child)) = self.children.iter_mut().find(|(n, _)| *n == name)
                    && let Some(status) = child.try_wait()?
                {
                    fail!(
                        "node {n} exited ({status}); see {}",
                        self.dir.join(&name).join("node.log").display()
                    );
                }
                if self.probe.height(&url).is_some() {
                    break;
                }
                if started.elapsed() > within {
                    fail!(
                        "node {name} did not answer on {addr} within {}s; see {}",
                        within.as_secs(),
                        self.dir.join(&name).join("node.log").display()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Waits until the observer has verified `height` (its `/v1/health`).
    pub fn wait_observer(&self, height: u64, within: Duration) -> Result<()> {
        let url = self.url(OBSERVER).context("no observer")?;
        let started = Instant::now();
        loop {
            if self.probe.height(&url).is_some_and(|h| h >= height) {
                return Ok(());
            }
            if started.elapsed() > within {
                fail!(
                    "the observer did not reach height {height} within {}s",
                    within.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A verifying client of this devnet, reading the chain as the regulator (a member: the
    /// validators serve it whole blocks). It holds the whole state ([`Remote::connect_replica`]):
    /// the bootstrap, the demo and the benchmarks submit and follow thousands of transactions.
    pub fn client(&self) -> Result<Remote> {
        Ok(Remote::connect_replica(
            &self.genesis,
            self.consortium.member_key(OBSERVER)?,
        )?)
    }

    /// Whether the hospitals' catalog and patients are on the chain already.
    pub fn bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// Records that the bootstrap transactions are final.
    pub fn mark_bootstrapped(&mut self) -> Result<()> {
        self.bootstrapped = true;
        self.record()
    }

    /// Stops every node: SIGTERM, then SIGKILL for any still running after five seconds.
    pub fn stop(&mut self) {
        for (_, child) in &self.children {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Each hospital's catalog entry, built from its vault (no data: tables, fields, counts,
/// quality, content hash), submitted by its data steward.
pub fn publish_catalogs(
    devnet: &Devnet,
    ledger: &mut Remote,
    mut report: impl FnMut(&str, &medspace_vault::catalog::DatasetDescription, u64),
) -> Result<()> {
    for node in devnet.hospitals.iter().chain([&devnet.insurer]) {
        // Quality figures "as of" the devnet's genesis day (days since 1970-01-01).
        let vault_desc = medspace_vault::catalog::describe_node(
            &node.dir,
            &node.key,
            (GENESIS_MS / 86_400_000) as i32,
        )?;
        let desc = publish::next_entry(ledger.state(), &node.member, &vault_desc)?;
        let rows: u64 = desc.tables.iter().map(|t| t.rows).sum();
        // A bootstrap resumed after a failure does not publish the same content again.
        if !matches!(published(ledger, &desc)?, Some((_, true))) {
            ledger.submit(
                devnet
                    .consortium
                    .user_key(&format!("{}.steward", node.member))?,
                Payload::PublishDataset(PublishDataset { dataset: desc }),
            )?;
        }
        report(&node.member, &vault_desc, rows);
    }
    // A non-hospital source for public health: pharma-1's pharmacy sales per region and day,
    // aggregate counts published as a catalog entry whose hash the agency checks.
    let (mut desc, _) = crate::health::write_sales(&devnet.dir, devnet.options.seed)?;
    match published(ledger, &desc)? {
        Some((_, true)) => {}
        known => {
            if let Some((version, _)) = known {
                desc.version = version.saturating_add(1);
            }
            ledger.submit(
                devnet.consortium.member_key("pharma-1")?,
                Payload::PublishDataset(PublishDataset { dataset: desc }),
            )?;
        }
    }
    ledger.must_block()?;
    Ok(())
}

/// The published version of `desc`'s dataset, and whether it holds the same content.
fn published(ledger: &Remote, desc: &DatasetDescription) -> Result<Option<(u32, bool)>> {
    Ok(ledger.state().dataset(&desc.id)?.map(|d| {
        (
            d.description.version,
            d.description.content_hash == desc.content_hash,
        )
    }))
}

/// Registers every hospital's patients on the ledger (their pseudonymous keys only), each
/// registration attested by the hospital that holds the patient's record.
pub fn register_patients(devnet: &Devnet, ledger: &mut Remote) -> Result<usize> {
    let mut batch = Vec::new();
    for (_, member, p) in crate::hospitals::distinct_patients(&devnet.hospitals) {
        if ledger.state().next_nonce(&p.key.public())? == 0 {
            let reg = devnet
                .consortium
                .patient_registration(member, &p.key.public())?;
            batch.push((&p.key, Payload::RegisterPatient(reg)));
        }
    }
    let n = ledger.submit_many(batch)?.len();
    ledger.must_block()?;
    Ok(n)
}

/// The `n`-th simulated patient's research decision: six in seven allow.
pub fn research_decision(n: usize) -> Decision {
    if n % 7 == 3 {
        Decision::Deny
    } else {
        Decision::Allow
    }
}

/// A research consent (for all studies, or one), without L4 opt-in.
pub fn research_consent(study: Option<StudyId>, decision: Decision) -> Payload {
    Payload::SetConsent(SetConsent {
        purpose: Purpose::Research,
        study,
        decision,
        l4_opt_in: false,
    })
}

/// A consent to drug-safety monitoring (pharmacovigilance), without L4 opt-in.
pub fn drug_safety_consent(decision: Decision) -> Payload {
    Payload::SetConsent(SetConsent {
        purpose: Purpose::DrugSafety,
        study: None,
        decision,
        l4_opt_in: false,
    })
}

/// The devnet's patients decide on research consent, deterministically: six in seven allow
/// research in general, the others deny it (as the patients of a real consortium would, each
/// with their own key), and decide drug-safety monitoring the same way. Run once, at the
/// devnet's bootstrap. Returns (allow, deny).
pub fn simulate_consents(devnet: &Devnet, ledger: &mut Remote) -> Result<(usize, usize)> {
    let (mut allow, mut deny) = (0, 0);
    let mut i = 0usize;
    let mut batch = Vec::new();
    for (_, _, p) in crate::hospitals::distinct_patients(&devnet.hospitals) {
        i += 1;
        let decision = research_decision(i);
        if decision == Decision::Allow {
            allow += 1;
        } else {
            deny += 1;
        }
        // A bootstrap resumed after a failure does not set a consent twice.
        let patient = PatientId::from_key(&p.key.public());
        if !ledger.state().consents_of(&patient)?.is_empty() {
            continue;
        }
        batch.push((&p.key, research_consent(None, decision)));
        batch.push((&p.key, drug_safety_consent(decision)));
    }
    ledger.submit_many(batch)?;
    ledger.must_block()?;
    Ok((allow, deny))
}
