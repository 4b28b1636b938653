//! TLS on a node's HTTP API, end to end from `init_consortium`'s files: the node serves the
//! certificate its genesis entry pins and nothing else; a client trusts exactly the genesis's
//! certificates; a plain-HTTP request to the port gets no HTTP answer; a node whose genesis
//! pins no certificate refuses to start unless its config allows plain HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_chain::{
    node::{ConsortiumSpec, Genesis, NodeConfig, SpecNode, init_consortium},
    tls,
};
use std::{net::SocketAddr, path::Path, time::Duration};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TIMEOUT: Duration = Duration::from_secs(10);

/// `medspace init` of two nodes `n0`, `n1` at the given HTTP ports into `dir`: their configs and
/// the genesis.
fn consortium(dir: &Path, http: &[u16], plain_http: bool) -> (Vec<NodeConfig>, Genesis) {
    let p2p = medspace_chain::bench::free_ports(http.len()).unwrap();
    let spec = ConsortiumSpec {
        chain_id: "medspace-tls".into(),
        nodes: http
            .iter()
            .zip(&p2p)
            .enumerate()
            .map(|(i, (h, p))| SpecNode {
                name: format!("n{i}"),
                validator: true,
                p2p: SocketAddr::from(([127, 0, 0, 1], *p)),
                http: SocketAddr::from(([127, 0, 0, 1], *h)),
            })
            .collect(),
        app: serde_json::Value::Null,
        plain_http,
    };
    let configs = init_consortium(&spec, dir)
        .unwrap()
        .iter()
        .map(|p| NodeConfig::load(p).unwrap())
        .collect();
    (configs, Genesis::load(&dir.join("genesis.json")).unwrap())
}

/// Serves `/v1/health` as the node of `config` would: on its listen address, over TLS exactly
/// when [`tls::for_node`] says so.
async fn start(config: &NodeConfig, genesis: &Genesis) {
    let server = tls::for_node(config, genesis).unwrap();
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .unwrap();
    let router =
        axum::Router::new().route("/v1/health", axum::routing::get(|| async { "{\"ok\":1}" }));
    tokio::spawn(tls::serve_on(listener, router, server));
}

async fn health(client: &reqwest::Client, url: &str) -> Result<String, reqwest::Error> {
    client
        .get(format!("{url}/v1/health"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

/// What a raw plain-HTTP/1.1 request to `addr` reads back before the server closes.
async fn raw_plain_request(addr: SocketAddr) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /v1/health HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The server closes the connection: the read ends (an error, such as a reset, counts too).
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut answer))
        .await
        .expect("the TLS port neither answered nor closed the connection");
    answer
}

#[tokio::test]
async fn a_node_serves_tls_only_and_only_with_its_pinned_certificate() {
    let dir = medspace_chain::bench::temp_work_dir().unwrap();
    let ports = medspace_chain::bench::free_ports(2).unwrap();
    // Two consortia with the same names and addresses: their certificates differ.
    let (configs, genesis) = consortium(&dir.join("real"), &ports, false);
    let (_, impostor_genesis) = consortium(&dir.join("impostor"), &ports, false);
    let urls = tls::validator_urls(&genesis);
    assert_eq!(urls[0], format!("https://n0:{}", ports[0]));
    assert!(urls.iter().all(|u| u.starts_with("https://")), "{urls:?}");
    // Each node's TLS private key is sealed on disk (no PEM private key in the file), opened
    // in memory with the node's key passphrase; the nodes serve TLS with it below.
    for c in &configs {
        let on_disk = std::fs::read_to_string(&c.http.tls_key_file).unwrap();
        assert!(!on_disk.contains("PRIVATE KEY"), "{on_disk}");
        assert!(!on_disk.contains("-----BEGIN"), "{on_disk}");
    }
    for c in &configs {
        start(c, &genesis).await;
    }
    let pinned = tls::client(&genesis, TIMEOUT).unwrap();
    for url in &urls {
        assert_eq!(health(&pinned, url).await.unwrap(), "{\"ok\":1}", "{url}");
    }
    // A client pinning another certificate for the same node names and addresses: refused.
    let other = tls::client(&impostor_genesis, TIMEOUT).unwrap();
    for url in &urls {
        let r = health(&other, url).await;
        assert!(
            r.is_err(),
            "{url} trusted by a client pinning another certificate"
        );
    }
    // A client that pins nothing: refused too (no system roots, no CA).
    let unpinned = tls::plain_client(TIMEOUT).unwrap();
    for url in &urls {
        assert!(health(&unpinned, url).await.is_err(), "{url}");
    }
    // Plain HTTP to a TLS port: no HTTP answer at all.
    for c in &configs {
        let addr = c.http.listen;
        let answer = raw_plain_request(addr).await;
        assert!(
            !answer.starts_with(b"HTTP/"),
            "{addr} answered plain HTTP: {:?}",
            String::from_utf8_lossy(&answer)
        );
        assert!(
            health(&unpinned, &format!("http://{addr}")).await.is_err(),
            "{addr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_client_refuses_a_server_presenting_a_certificate_other_than_the_pinned_one() {
    let dir = medspace_chain::bench::temp_work_dir().unwrap();
    let ports = medspace_chain::bench::free_ports(2).unwrap();
    let (_, genesis) = consortium(&dir.join("real"), &ports, false);
    // The impostor's nodes (same names, same addresses, their own keys and certificates) take
    // the real nodes' ports.
    let (impostor_configs, impostor_genesis) = consortium(&dir.join("impostor"), &ports, false);
    for c in &impostor_configs {
        start(c, &impostor_genesis).await;
    }
    let impostors = tls::client(&impostor_genesis, TIMEOUT).unwrap();
    let pinned = tls::client(&genesis, TIMEOUT).unwrap();
    for url in tls::validator_urls(&genesis) {
        // Control: the servers are up and answer the clients that pin their certificates.
        assert!(health(&impostors, &url).await.is_ok(), "{url}");
        let r = health(&pinned, &url).await;
        assert!(
            r.is_err(),
            "{url}: a certificate the genesis does not pin was accepted"
        );
    }
    // Another node's pinned certificate is no better: n1's server where n0 should be.
    let swapped = dir.join("swapped");
    let swap_ports = medspace_chain::bench::free_ports(2).unwrap();
    let (swap_configs, swap_genesis) = consortium(&swapped, &swap_ports, false);
    let mut n1_at_n0 = swap_configs[1].clone();
    n1_at_n0.http.listen = swap_configs[0].http.listen;
    start(&n1_at_n0, &swap_genesis).await;
    let r = health(
        &tls::client(&swap_genesis, TIMEOUT).unwrap(),
        &tls::node_url(&swap_genesis.validators[0]),
    )
    .await;
    assert!(r.is_err(), "n1's certificate accepted for n0");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_without_a_pinned_certificate_refuses_to_start_unless_plain_http_is_allowed() {
    let dir = medspace_chain::bench::temp_work_dir().unwrap();
    let ports = medspace_chain::bench::free_ports(1).unwrap();
    let (configs, genesis) = consortium(&dir, &ports, true);
    assert!(genesis.validators.iter().all(|v| v.tls_cert.is_none()));
    assert_eq!(
        tls::node_url(&genesis.validators[0]),
        format!("http://127.0.0.1:{}", ports[0])
    );
    let mut config = configs[0].clone();
    // `init` allowed plain HTTP for a plain spec; a config without it refuses the node.
    assert!(config.http.allow_plain);
    assert!(tls::for_node(&config, &genesis).unwrap().is_none());
    config.http.allow_plain = false;
    assert!(tls::for_node(&config, &genesis).is_err());
    // The node itself refuses to start, before opening anything.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = medspace_chain::node::run_node(
            config,
            |_| None,
            |_| {
                Ok::<_, std::convert::Infallible>(medspace_chain::testing::CounterApp::new(
                    "medspace-tls",
                ))
            },
            |_, _| medspace_chain::node::Services {
                routes: axum::Router::new(),
                gate: std::sync::Arc::new(medspace_chain::api::OpenGate),
            },
        );
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    let refused = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the node started without TLS and without allow_plain");
    let error = refused.expect_err("the node started without TLS and without allow_plain");
    assert!(error.contains("allow_plain"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
