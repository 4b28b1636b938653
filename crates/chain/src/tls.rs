//! TLS on every HTTP hop, with each node's certificate pinned in the genesis.
//!
//! There is no certificate authority. `medspace init` ([`crate::genesis::init_consortium`])
//! makes each node an ECDSA P-256 key and a self-signed certificate naming the node (a DNS name
//! such as `hospital-a`) and its HTTP address's IP ([`NodeCertificate::generate`]); the key
//! stays in the node's directory (`tls.key`, owner-only, sealed under the node's key
//! passphrase like its ledger keys, and opened in memory only: [`load_key`]), the certificate
//! goes into the node's
//! genesis entry (`tls_cert`, hex of the DER) and, for `curl --cacert`, into `tls.crt` beside
//! the key.
//!
//! - Servers: [`server_config`] builds a node's rustls configuration (TLS 1.3, the `ring`
//!   provider) from its key and its pinned certificate, refusing a key that is not the
//!   certificate's; [`for_node`] decides from the genesis and the node's config whether the node
//!   speaks TLS, or plain HTTP when its genesis entry pins nothing *and* its config allows it
//!   (`[http] allow_plain = true`, for development only); otherwise the node refuses to start.
//!   [`serve`] serves an axum router on a TCP port, each connection through the TLS handshake
//!   when configured — a plain-HTTP request to a TLS port gets no answer.
//! - Clients: [`client`] builds a `reqwest::Client` that trusts exactly the genesis
//!   certificates — never the system's roots — and reaches each node by name
//!   (`https://<node name>:<port>`, the name resolved to the genesis address). A server is
//!   accepted only if it presents, byte for byte, the certificate the genesis pins for the name
//!   (or IP) the client asked for, and proves it holds that certificate's key. [`node_url`] is
//!   the URL a client uses for a genesis entry: `https://name:port` when a certificate is pinned,
//!   `http://address` when the genesis pins none for it.
//!
//! Validator-to-validator consensus traffic does not go through here: it is commonware-p2p,
//! authenticated and encrypted with the validators' ed25519 keys from the same genesis.

pub use crate::certs::{CERT_FILE, KEY_FILE, NodeCertificate, TLS_KEY_ROLE, TlsError};
use crate::{
    certs::{invalid, provider},
    config::{NodeConfig, NodeError},
    genesis::{Genesis, GenesisValidator},
};
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject as _},
};
use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

/// The DER bytes of a genesis entry's pinned certificate, if it has one.
pub fn pinned_der(entry: &GenesisValidator) -> Result<Option<Vec<u8>>, TlsError> {
    entry
        .pinned_cert()
        .map_err(|e| invalid(format!("certificate of node {}", entry.name), e))
}

/// A node's server configuration from its private key (PKCS#8, SEC1 or PKCS#1 PEM) and its
/// certificate (DER): TLS 1.3 only, HTTP/1.1. Refuses a key that is not the certificate's.
pub fn server_config(
    key_pem: &[u8],
    cert_der: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("private key", e))?;
    let cert = CertificateDer::from(cert_der.to_vec());
    let provider = provider();
    let certified = rustls::sign::CertifiedKey::from_der(vec![cert], key, &provider)
        .map_err(|e| invalid("private key and pinned certificate", e))?;
    // Refuse outright when the two cannot be compared, rather than serving a key nobody pinned.
    certified
        .keys_match()
        .map_err(|e| invalid("private key and pinned certificate", e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| invalid("server configuration", e))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether the node described by `config` serves TLS, decided from its genesis entry: its
/// server configuration when the genesis pins its certificate (the key read from
/// `[http] tls_key_file`); `None` (plain HTTP) only when the genesis pins none for it and
/// `[http] allow_plain` is set. A node whose entry pins nothing and whose config does not allow
/// plain HTTP is refused.
pub fn for_node(
    config: &NodeConfig,
    genesis: &Genesis,
) -> Result<Option<Arc<rustls::ServerConfig>>, NodeError> {
    let name = &config.node.name;
    let refuse = |error: String| NodeError::Invalid {
        what: "tls",
        path: config.node.genesis_file.display().to_string(),
        error,
    };
    let entry = genesis
        .validators
        .iter()
        .chain(&genesis.observers)
        .find(|v| &v.name == name);
    let pinned = match entry {
        Some(e) => pinned_der(e).map_err(|e| refuse(e.to_string()))?,
        None => None,
    };
    let Some(cert) = pinned else {
        if config.http.allow_plain {
            tracing::warn!(name = %name, "chain.tls: no certificate pinned for this node; serving plain HTTP ([http] allow_plain = true, for development only)");
            return Ok(None);
        }
        return Err(refuse(format!(
            "the genesis pins no TLS certificate for node={name}; refusing to serve plain HTTP (set [http] allow_plain = true in its config for a development network)"
        )));
    };
    let path = &config.http.tls_key_file;
    let key = load_key(path, &config.key_unlock()?)?;
    server_config(&key, &cert)
        .map(Some)
        .map_err(|e| NodeError::Invalid {
            what: "tls key",
            path: path.display().to_string(),
            error: e.to_string(),
        })
}

/// A node's TLS private key (its PEM, in memory only) from the key file at `path`: a sealed key
/// file of role [`TLS_KEY_ROLE`] opened with `unlock`'s passphrase (the node's key
/// passphrase). A plain PEM key file is read only where `unlock` allows plain key files
/// (`[node] allow_plain_key`, development only); a wrong passphrase is [`NodeError::Key`] with
/// `SealError::WrongPassphrase`.
pub fn load_key(
    path: &std::path::Path,
    unlock: &medspace_seal::Unlock,
) -> Result<zeroize::Zeroizing<Vec<u8>>, NodeError> {
    let bytes =
        zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| crate::config::io(path, e))?);
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        if unlock.allow_plain {
            return Ok(bytes);
        }
        return Err(NodeError::Invalid {
            what: "tls key",
            path: path.display().to_string(),
            error: "a plain PEM private key: seal it under the node's key passphrase (or set [node] allow_plain_key = true, development only)".into(),
        });
    }
    let sealed_only = medspace_seal::Unlock {
        passphrase: unlock.passphrase.clone(),
        allow_plain: false,
    };
    medspace_seal::read_secret(path, TLS_KEY_ROLE, &sealed_only).map_err(|e| match e {
        medspace_seal::SealError::Io { source, .. } => crate::config::io(path, source),
        source => NodeError::Key {
            path: path.display().to_string(),
            source,
        },
    })
}

/// The base URL a client uses for a node: `https://<name>:<port>` when the genesis pins its
/// certificate (the client built by [`client`] resolves the name to the genesis address),
/// `http://<address>` when it pins none.
pub fn node_url(entry: &GenesisValidator) -> String {
    if entry.tls_cert.is_some() {
        format!(
            "https://{}:{}",
            entry.name.to_ascii_lowercase(),
            entry.http.port()
        )
    } else {
        format!("http://{}", entry.http)
    }
}

/// The validators' API base URLs, in genesis order ([`node_url`]).
pub fn validator_urls(genesis: &Genesis) -> Vec<String> {
    genesis.validators.iter().map(node_url).collect()
}

/// One pinned certificate: the node's name, its HTTP address, its certificate's DER.
#[derive(Debug, Clone)]
struct Pin {
    name: String,
    ip: IpAddr,
    der: Vec<u8>,
}

/// Accepts a server only if its certificate is, byte for byte, the one pinned for the name (or
/// IP) asked for, with no chain; the handshake signature is then checked against that
/// certificate's key as usual.
#[derive(Debug)]
struct PinnedVerifier {
    pins: Vec<Pin>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let asked = |p: &Pin| match server_name {
            ServerName::DnsName(d) => d.as_ref().eq_ignore_ascii_case(&p.name),
            ServerName::IpAddress(ip) => IpAddr::from(*ip) == p.ip,
            _ => false,
        };
        let pinned = self
            .pins
            .iter()
            .any(|p| asked(p) && p.der.as_slice() == end_entity.as_ref());
        if pinned && intermediates.is_empty() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn client_with_pins(
    pins: Vec<Pin>,
    resolve: Vec<(String, SocketAddr)>,
    timeout: Duration,
) -> Result<reqwest::Client, TlsError> {
    let provider = provider();
    let verifier = PinnedVerifier {
        pins,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Client(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .tcp_nodelay(true)
        .tls_backend_preconfigured(tls);
    for (name, addr) in resolve {
        builder = builder.resolve(&name, addr);
    }
    builder.build().map_err(|e| TlsError::Client(e.to_string()))
}

/// An HTTP client for the consortium of `genesis`: it trusts exactly the certificates the
/// genesis pins (no system roots), each only for its own node's name and IP, and resolves every
/// node's name to its genesis HTTP address. Nodes the genesis pins nothing for are reached over
/// plain HTTP ([`node_url`]). `timeout` bounds each request.
pub fn client(genesis: &Genesis, timeout: Duration) -> Result<reqwest::Client, TlsError> {
    let mut pins = Vec::new();
    let mut resolve = Vec::new();
    for entry in genesis.validators.iter().chain(&genesis.observers) {
        if let Some(der) = pinned_der(entry)? {
            let name = entry.name.to_ascii_lowercase();
            pins.push(Pin {
                name: name.clone(),
                ip: entry.http.ip(),
                der,
            });
            resolve.push((name, entry.http));
        }
    }
    client_with_pins(pins, resolve, timeout)
}

/// An HTTP client that trusts no certificate at all: plain `http://` URLs only (tests, tools
/// pointed at a development network). Every `https://` request fails.
pub fn plain_client(timeout: Duration) -> Result<reqwest::Client, TlsError> {
    client_with_pins(Vec::new(), Vec::new(), timeout)
}

/// Longest a connection may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listen` until the process stops: over TLS with `tls`, plain HTTP
/// without. Each accepted connection is handled on its own task (its handshake included), so a
/// slow or silent client holds up no other.
pub async fn serve(
    listen: SocketAddr,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(), std::io::Error> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    serve_on(listener, router, tls).await
}

/// [`serve`] on a listener already bound (tests bind port 0 and read the address first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(), std::io::Error> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, a connection reset before it was accepted: wait a
                // little and go on; the listener itself is still good.
                tracing::debug!(error = %e, "chain.tls.serve: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => serve_connection(tls_stream, router).await,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "chain.tls.serve: handshake refused")
                        }
                        Err(_) => tracing::debug!("chain.tls.serve: handshake timed out"),
                    }
                }
                None => serve_connection(stream, router).await,
            }
        });
    }
}

/// One HTTP/1.1 connection (keep-alive) answered by `router`.
async fn serve_connection<I>(io: I, router: axum::Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(router);
    // As axum's own `serve`: keep-alive, no timer (an idle pooled connection stays open for its
    // client).
    let served = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "chain.tls.serve: connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::config::{HttpSection, NodeSection};

    fn entry(name: &str, http: SocketAddr, cert: Option<&NodeCertificate>) -> GenesisValidator {
        GenesisValidator {
            name: name.into(),
            public_key: String::new(),
            p2p: SocketAddr::from(([127, 0, 0, 1], 1)),
            http,
            tls_cert: cert.map(NodeCertificate::genesis_hex),
        }
    }

    fn genesis(validators: Vec<GenesisValidator>) -> Genesis {
        Genesis {
            chain_id: "c".into(),
            validators,
            observers: Vec::new(),
            app: serde_json::Value::Null,
        }
    }

    fn local() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    /// A server on a free loopback port answering `GET /health` with "ok".
    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind((local(), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        tokio::spawn(serve_on(listener, router, tls));
        addr
    }

    fn tls_of(c: &NodeCertificate) -> Option<Arc<rustls::ServerConfig>> {
        Some(server_config(c.key_pem.as_bytes(), &c.cert_der).unwrap())
    }

    #[tokio::test]
    async fn a_tls_server_refuses_plain_http_and_answers_the_pinned_client() {
        let cert = NodeCertificate::generate("node-a", local()).unwrap();
        let addr = start(tls_of(&cert)).await;
        let g = genesis(vec![entry("node-a", addr, Some(&cert))]);
        let timeout = Duration::from_secs(5);
        // Plain HTTP to the TLS port: no answer.
        let plain = plain_client(timeout)
            .unwrap()
            .get(format!("http://{addr}/health"))
            .send()
            .await;
        assert!(plain.is_err(), "a plain request was answered: {plain:?}");
        // The pinned client, by name: answered.
        let url = node_url(&g.validators[0]);
        assert_eq!(url, format!("https://node-a:{}", addr.port()));
        let ok = client(&g, timeout)
            .unwrap()
            .get(format!("{url}/health"))
            .send()
            .await
            .unwrap();
        assert!(ok.status().is_success());
        assert_eq!(ok.text().await.unwrap(), "ok");
        // And by IP, which the certificate also names.
        let by_ip = client(&g, timeout)
            .unwrap()
            .get(format!("https://{addr}/health"))
            .send()
            .await
            .unwrap();
        assert!(by_ip.status().is_success());
    }

    #[tokio::test]
    async fn a_client_refuses_a_certificate_the_genesis_does_not_pin_for_that_node() {
        let timeout = Duration::from_secs(5);
        let cert_a = NodeCertificate::generate("node-a", local()).unwrap();
        let cert_b = NodeCertificate::generate("node-b", local()).unwrap();
        let addr_a = start(tls_of(&cert_a)).await;
        let addr_b = start(tls_of(&cert_b)).await;
        // The genesis places node-a at the address where node-b's server answers: node-b's
        // certificate is pinned, but for node-b only.
        let g = genesis(vec![
            entry("node-a", addr_b, Some(&cert_a)),
            entry("node-b", addr_a, Some(&cert_b)),
        ]);
        let c = client(&g, timeout).unwrap();
        for v in &g.validators {
            let r = c.get(format!("{}/health", node_url(v))).send().await;
            assert!(
                r.is_err(),
                "{} answered with another node's certificate",
                v.name
            );
        }
        // A freshly generated certificate, pinned nowhere, for the right name and IP.
        let fresh = NodeCertificate::generate("node-a", local()).unwrap();
        let addr_fresh = start(tls_of(&fresh)).await;
        let g = genesis(vec![entry("node-a", addr_fresh, Some(&cert_a))]);
        let r = client(&g, timeout)
            .unwrap()
            .get(format!("{}/health", node_url(&g.validators[0])))
            .send()
            .await;
        assert!(r.is_err(), "an unpinned certificate was accepted");
        // Control: the same client setup reaches the right servers.
        let g = genesis(vec![
            entry("node-a", addr_a, Some(&cert_a)),
            entry("node-b", addr_b, Some(&cert_b)),
        ]);
        let c = client(&g, timeout).unwrap();
        for v in &g.validators {
            let r = c
                .get(format!("{}/health", node_url(v)))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    }

    #[test]
    fn a_key_that_is_not_the_pinned_certificates_is_refused() {
        let a = NodeCertificate::generate("node-a", local()).unwrap();
        let b = NodeCertificate::generate("node-a", local()).unwrap();
        assert!(server_config(a.key_pem.as_bytes(), &a.cert_der).is_ok());
        assert!(server_config(b.key_pem.as_bytes(), &a.cert_der).is_err());
    }

    #[test]
    fn a_node_without_a_pinned_certificate_starts_only_when_plain_http_is_allowed() {
        let dir = std::env::temp_dir().join(format!("medspace-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cert = NodeCertificate::generate("node-a", local()).unwrap();
        let pass_path = dir.join("node.pass");
        let passphrase = medspace_seal::Passphrase::generate();
        passphrase.write_new(&pass_path).unwrap();
        crate::genesis::write_node_files(
            &dir,
            &cert,
            &passphrase,
            medspace_seal::KdfParams::INSECURE_FAST,
        )
        .unwrap();
        let addr = SocketAddr::from((local(), 7500));
        let mut config = NodeConfig {
            node: NodeSection {
                name: "node-a".into(),
                key_passphrase_file: Some(pass_path.clone()),
                ..NodeSection::default()
            },
            http: HttpSection {
                tls_key_file: dir.join(KEY_FILE),
                ..HttpSection::default()
            },
            ..NodeConfig::default()
        };
        let pinned = genesis(vec![entry("node-a", addr, Some(&cert))]);
        let unpinned = genesis(vec![entry("node-a", addr, None)]);
        assert!(for_node(&config, &pinned).unwrap().is_some());
        assert!(for_node(&config, &unpinned).is_err());
        config.http.allow_plain = true;
        assert!(for_node(&config, &unpinned).unwrap().is_none());
        // Allowing plain HTTP never turns TLS off for a node whose certificate is pinned.
        assert!(for_node(&config, &pinned).unwrap().is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_tls_key_is_sealed_on_disk_and_a_wrong_passphrase_is_refused() {
        let dir = std::env::temp_dir().join(format!("medspace-tls-seal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cert = NodeCertificate::generate("node-a", local()).unwrap();
        let passphrase = medspace_seal::Passphrase::generate();
        let pass_path = dir.join("node.pass");
        passphrase.write_new(&pass_path).unwrap();
        crate::genesis::write_node_files(
            &dir,
            &cert,
            &passphrase,
            medspace_seal::KdfParams::INSECURE_FAST,
        )
        .unwrap();
        // On disk: no PEM private key, not the key's bytes.
        let on_disk = std::fs::read(dir.join(KEY_FILE)).unwrap();
        let text = String::from_utf8_lossy(&on_disk);
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(PrivateKeyDer::from_pem_slice(&on_disk).is_err());
        let pem_body: String = cert
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(!text.contains(&pem_body[..40]));
        // The right passphrase opens it, in memory, to the key the certificate is pinned for.
        let unlock = medspace_seal::Unlock {
            passphrase: Some(passphrase),
            allow_plain: false,
        };
        let key = load_key(&dir.join(KEY_FILE), &unlock).unwrap();
        assert_eq!(key.as_slice(), cert.key_pem.as_bytes());
        assert!(server_config(&key, &cert.cert_der).is_ok());
        // A wrong passphrase: a clear error naming the file, never the key.
        let wrong = medspace_seal::Unlock {
            passphrase: Some(medspace_seal::Passphrase::new("not the passphrase").unwrap()),
            allow_plain: false,
        };
        let err = load_key(&dir.join(KEY_FILE), &wrong).unwrap_err();
        assert!(
            matches!(
                err,
                NodeError::Key {
                    source: medspace_seal::SealError::WrongPassphrase,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("tls.key"), "{msg}");
        assert!(!msg.contains(&pem_body[..40]), "{msg}");
        // No passphrase at all: refused too.
        let none = medspace_seal::Unlock::default();
        assert!(load_key(&dir.join(KEY_FILE), &none).is_err());
        // A plain PEM key file (as written before sealing) is refused unless plain key files
        // are allowed (development only).
        let plain = dir.join("plain.key");
        std::fs::write(&plain, &cert.key_pem).unwrap();
        let err = load_key(&plain, &unlock).unwrap_err();
        assert!(err.to_string().contains("plain PEM"), "{err}");
        let allow = medspace_seal::Unlock {
            passphrase: None,
            allow_plain: true,
        };
        assert!(load_key(&plain, &allow).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
