//! `audit verify` over a real node's storage: a clean chain verifies to the state the validators
//! committed; flipping one byte of one stored block is detected at exactly that block's height,
//! with the storage's checksum as the reason, and everything before it still verifies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use commonware_codec::Encode as _;
use commonware_runtime::{Runner as _, Supervisor as _};
use medspace_chain::{
    Application as _,
    audit::audit_verify,
    bench::{free_ports, temp_work_dir},
    engine::TxStatus,
    node::{ConsortiumSpec, Genesis, NodeConfig, SpecNode, init_consortium, start_node},
    testing::{CounterApp, sign_tx, sim::wait_applied, test_key},
};
use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
};

const CHAIN: &str = "medspace-audit";
/// Transactions submitted, each adding 1 to the counter `c`.
const TXS: u64 = 40;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// What the running validators committed, for checking the audit against.
struct Committed {
    /// Height of validator 0 when the nodes were stopped (the audit sees at least this much).
    height: u64,
    /// State root with every transaction applied (empty blocks after them do not change it).
    root: [u8; 32],
    /// The highest height holding transactions, the block the test damages.
    target: u64,
    /// The state root before `target`.
    root_before_target: [u8; 32],
    /// The encoding of the block at `target`.
    target_block: Vec<u8>,
}

/// Byte offsets at which `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn audit_verifies_clean_chain_and_detects_flipped_byte() {
    let dir = temp_work_dir().expect("dir");
    // Ports chosen by the operating system right before the validators start.
    let ports = free_ports(8).expect("free ports");
    let spec = ConsortiumSpec {
        chain_id: CHAIN.into(),
        nodes: ports
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| SpecNode {
                name: format!("n{i}"),
                validator: true,
                p2p: SocketAddr::from(([127, 0, 0, 1], pair[0])),
                http: SocketAddr::from(([127, 0, 0, 1], pair[1])),
            })
            .collect(),
        app: serde_json::Value::Null,
        plain_http: false,
    };
    let configs = init_consortium(&spec, &dir).expect("init");
    let data = dir.join("data");
    let runner = commonware_runtime::tokio::Runner::new(
        commonware_runtime::tokio::Config::new().with_storage_directory(data.join("storage")),
    );
    let committed = runner.start(|context| async move {
        let mut handles = Vec::new();
        for path in &configs {
            let c = NodeConfig::load(path).expect("config");
            let g = Genesis::load(&c.node.genesis_file).expect("genesis");
            let k = c.load_node_key().expect("key");
            handles.push(
                start_node(context.child("node"), &c, &g, k, CounterApp::new(CHAIN))
                    .await
                    .expect("node"),
            );
        }
        // Two waves, the second submitted once the first is applied everywhere: the last block
        // with transactions then starts from a state that already holds some.
        let key = test_key(9);
        let mut ids = Vec::new();
        for wave in [0..TXS / 2, TXS / 2..TXS] {
            for n in wave {
                let id = handles[(n % 4) as usize]
                    .submit(sign_tx(&key, CHAIN, n, "c", 1))
                    .expect("admitted");
                ids.push(id);
            }
            for h in &handles {
                wait_applied(h, &ids)
                    .await
                    .expect("every transaction applied");
            }
        }
        for h in &handles {
            assert_eq!(h.with_app(|a| a.counter("c")), Some(TXS as i64));
            assert_eq!(h.with_app(|a| a.applied_txs()), TXS as usize);
        }
        let heights: BTreeSet<u64> = ids
            .iter()
            .map(|id| match handles[0].status(id) {
                TxStatus::Finalized {
                    height,
                    outcome: Ok(()),
                } => height,
                other => panic!("transaction not applied: {other:?}"),
            })
            .collect();
        let target = *heights.last().expect("a block with transactions");
        // Blocks after the damaged one, so it is not the last entry of the archive (a damaged
        // last entry is what a crash mid-write leaves, and storage recovery drops it).
        handles[0].wait_for_height(target + 3).await;
        let (block, fin) = handles[0].block(target).await.expect("stored block");
        assert!(fin.is_some(), "finality certificate of height={target}");
        assert!(!block.txs.is_empty());
        let (_, root_before_target) = handles[0].finalized(target - 1).expect("parent");
        Committed {
            height: handles[0].height(),
            root: handles[0].with_app(|a| a.root()),
            target,
            root_before_target,
            target_block: block.encode().to_vec(),
        }
    });
    let genesis = Genesis::load(&dir.join("genesis.json")).expect("genesis");

    // The clean chain verifies up to where the nodes stopped, to the root they committed.
    let report = audit_verify(&data, "n0", &genesis, CounterApp::new(CHAIN)).expect("audit runs");
    assert_eq!(report.fault, None, "{report:?}");
    assert!(
        report.verified_height >= committed.height,
        "{report:?} height={}",
        committed.height
    );
    assert_eq!(report.root, committed.root, "{report:?}");
    assert_ne!(
        committed.root_before_target, committed.root,
        "the damaged block changes the state"
    );

    // Flip the last byte of the damaged block's last transaction where n0 stores it: its
    // encoding occurs exactly once in n0's finalized-block values.
    let mut all = Vec::new();
    files(&data.join("storage"), &mut all);
    let mut found: Vec<(PathBuf, usize)> = all
        .iter()
        .filter(|p| {
            p.display()
                .to_string()
                .contains("medspace-n0-finalized-blocks-freezer-value")
        })
        .flat_map(|p| {
            let bytes = std::fs::read(p).expect("read");
            occurrences(&bytes, &committed.target_block)
                .into_iter()
                .map(|at| (p.clone(), at))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "stored copies of height={}",
        committed.target
    );
    let (file, at) = found.pop().expect("one copy");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[at + committed.target_block.len() - 1] ^= 0x01;
    std::fs::write(&file, bytes).expect("write");

    // Detected at that height, by the storage checksum; everything before it verifies.
    let report = audit_verify(&data, "n0", &genesis, CounterApp::new(CHAIN))
        .expect("the audit opens the damaged storage and reports the fault");
    let (height, reason) = report.fault.clone().expect("tamper detected");
    assert_eq!(height, committed.target, "{report:?}");
    assert!(
        reason.starts_with("block unreadable: ") && reason.contains("checksum mismatch"),
        "{report:?}"
    );
    assert_eq!(report.verified_height, committed.target - 1, "{report:?}");
    assert_eq!(report.root, committed.root_before_target, "{report:?}");

    // A store in the pruning layout cannot be re-verified from genesis: refused, not reported
    // as a short clean chain.
    std::fs::create_dir_all(data.join("storage/medspace-n0-finalized-blocks-pruned-key"))
        .expect("mkdir");
    assert!(matches!(
        audit_verify(&data, "n0", &genesis, CounterApp::new(CHAIN)),
        Err(medspace_chain::audit::AuditError::Pruned { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
