//! `audit verify` over a real node's storage: a clean chain verifies; flipping a byte of a stored
//! block file is detected and the faulty height is named.

use commonware_runtime::{Runner as _, Supervisor as _};
use medspace_chain::{
    audit::audit_verify,
    node::{ConsortiumSpec, Genesis, NodeConfig, SpecNode, init_consortium, load_key, start_node},
    testing::{CounterApp, sign_tx, test_key},
};
use std::{net::SocketAddr, path::Path};

const CHAIN: &str = "medspace-audit";

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
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

#[test]
fn audit_verifies_clean_chain_and_detects_flipped_byte() {
    let dir = medspace_chain::bench::temp_work_dir().expect("dir");
    // Ports chosen by the operating system right before the validators start.
    let ports = medspace_chain::bench::free_ports(8).expect("free ports");
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
    };
    let configs = init_consortium(&spec, &dir).expect("init");
    let data = dir.join("data");
    let runner = commonware_runtime::tokio::Runner::new(
        commonware_runtime::tokio::Config::new().with_storage_directory(data.join("storage")),
    );
    let height = runner.start(|context| async move {
        let mut handles = Vec::new();
        for path in &configs {
            let c = NodeConfig::load(path).expect("config");
            let g = Genesis::load(&c.node.genesis_file).expect("genesis");
            let k = load_key(&c.node.key_file).expect("key");
            handles.push(
                start_node(context.child("node"), &c, &g, k, CounterApp::new(CHAIN))
                    .await
                    .expect("node"),
            );
        }
        let key = test_key(9);
        for n in 0..40u64 {
            handles[(n % 4) as usize]
                .submit(sign_tx(&key, CHAIN, n, "c", 1))
                .expect("admitted");
        }
        handles[0].wait_for_height(12).await;
        let h = handles[0].height();
        assert!(handles[0].with_app(|a| a.counter("c")) == Some(40) || h > 0);
        h
    });
    let genesis = Genesis::load(&dir.join("genesis.json")).expect("genesis");
    let report = audit_verify(&data, "n0", &genesis, CounterApp::new(CHAIN)).expect("audit runs");
    assert_eq!(report.fault, None, "{report:?}");
    assert!(
        report.verified_height >= height,
        "{report:?} height={height}"
    );

    // Flip one byte in the middle of n0's finalized-block value journal.
    let mut all = Vec::new();
    files(&data.join("storage"), &mut all);
    let target = all
        .iter()
        .filter(|p| {
            let s = p.display().to_string();
            s.contains("medspace-n0-finalized-blocks-freezer-value")
        })
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("block value file")
        .clone();
    let mut bytes = std::fs::read(&target).expect("read");
    let mid = bytes.len().saturating_sub(200);
    bytes[mid] ^= 0x01;
    std::fs::write(&target, bytes).expect("write");
    let report = audit_verify(&data, "n0", &genesis, CounterApp::new(CHAIN));
    match report {
        Ok(r) => {
            let (h, reason) = r.fault.expect("tamper detected");
            eprintln!("tamper detected at height={h}: {reason}");
            assert!(h >= 1);
        }
        Err(e) => eprintln!("tamper detected when opening storage: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
