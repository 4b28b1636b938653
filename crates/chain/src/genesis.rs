//! Making and loading a consortium: the spec an operator writes ([`ConsortiumSpec`]), the
//! genesis file every node and follower trusts ([`Genesis`]: chain id, validators, observers,
//! application genesis), and [`init_consortium`], which turns a spec into keys, a genesis file and
//! one node config per member.

use crate::{
    certs::{CERT_FILE, KEY_FILE, NodeCertificate},
    config::{HttpSection, NodeConfig, NodeError, NodeSection, P2pSection, io},
    engine::PublicKey,
};
use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_cryptography::{Signer as _, ed25519};
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// One member of a consortium spec.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SpecNode {
    /// Node name (institution), used for file names.
    pub name: String,
    /// Whether it votes.
    #[serde(default = "yes")]
    pub validator: bool,
    /// P2P address other nodes dial.
    pub p2p: SocketAddr,
    /// HTTP API address.
    pub http: SocketAddr,
}

fn yes() -> bool {
    true
}

/// Input of [`init_consortium`] (TOML or JSON).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConsortiumSpec {
    /// Chain id.
    pub chain_id: String,
    /// Nodes.
    pub nodes: Vec<SpecNode>,
    /// Initial members, users and policy, interpreted by the application.
    #[serde(default)]
    pub app: serde_json::Value,
    /// Make no TLS certificates: the nodes serve plain HTTP (their configs say
    /// `[http] allow_plain = true`). For development and for measuring what TLS costs.
    #[serde(default)]
    pub plain_http: bool,
}

/// A validator in the genesis file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GenesisValidator {
    /// Name.
    pub name: String,
    /// Hex ed25519 public key.
    pub public_key: String,
    /// P2P address.
    pub p2p: SocketAddr,
    /// HTTP address.
    pub http: SocketAddr,
    /// The node's TLS certificate (hex of the DER), pinned: clients accept this certificate,
    /// and only this one, from this node ([`crate::tls`]). Absent in genesis files made before
    /// TLS or with `plain_http`; such a node serves plain HTTP only if its config allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
}

impl GenesisValidator {
    /// The DER bytes of the node's pinned certificate, if the entry has one; an error if
    /// `tls_cert` is not hex.
    pub fn pinned_cert(&self) -> Result<Option<Vec<u8>>, String> {
        self.tls_cert
            .as_deref()
            .map(|h| hex::decode(h).map_err(|_| "tls_cert is not hex".to_string()))
            .transpose()
    }
}

/// Writes a node's TLS key, sealed under `passphrase` (an owner-only sealed key file of role
/// [`crate::certs::TLS_KEY_ROLE`]), and a PEM copy of its certificate into `dir`.
pub(crate) fn write_node_files(
    dir: &Path,
    cert: &NodeCertificate,
    passphrase: &medspace_seal::Passphrase,
    kdf_params: medspace_seal::KdfParams,
) -> Result<(), NodeError> {
    let key_path = dir.join(KEY_FILE);
    medspace_seal::SealedKey::seal(
        cert.key_pem.as_bytes(),
        crate::certs::TLS_KEY_ROLE,
        passphrase,
        kdf_params,
    )
    .and_then(|k| k.write(&key_path, false))
    .map_err(|source| NodeError::Key {
        path: key_path.display().to_string(),
        source,
    })?;
    let path = dir.join(CERT_FILE);
    std::fs::write(&path, &cert.cert_pem).map_err(|e| io(&path, e))
}

/// The genesis file (JSON).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Genesis {
    /// Chain id.
    pub chain_id: String,
    /// Validators.
    pub validators: Vec<GenesisValidator>,
    /// Observers (follow the chain; do not vote).
    #[serde(default)]
    pub observers: Vec<GenesisValidator>,
    /// Opaque application genesis (members, users, policy).
    #[serde(default)]
    pub app: serde_json::Value,
}

impl Genesis {
    /// Loads and validates a genesis file.
    pub fn load(path: &Path) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
        let g: Genesis = serde_json::from_str(&text).map_err(|e| NodeError::Invalid {
            what: "genesis",
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        if g.validators.is_empty() {
            return Err(NodeError::Invalid {
                what: "genesis",
                path: path.display().to_string(),
                error: "no validators".into(),
            });
        }
        for v in &g.validators {
            parse_public_key(&v.public_key).map_err(|error| NodeError::Invalid {
                what: "genesis",
                path: path.display().to_string(),
                error,
            })?;
        }
        for v in g.validators.iter().chain(&g.observers) {
            v.pinned_cert().map_err(|error| NodeError::Invalid {
                what: "genesis",
                path: path.display().to_string(),
                error: format!("node {}: {error}", v.name),
            })?;
        }
        Ok(g)
    }

    /// Validator public keys in file order.
    pub fn validator_keys(&self) -> Result<Vec<PublicKey>, String> {
        self.validators
            .iter()
            .map(|v| parse_public_key(&v.public_key))
            .collect()
    }
}

fn parse_public_key(hex_key: &str) -> Result<PublicKey, String> {
    let bytes =
        hex::decode(hex_key).map_err(|_| format!("public key is not hex: key={hex_key}"))?;
    PublicKey::decode(bytes::Bytes::from(bytes))
        .map_err(|_| format!("bad ed25519 public key: key={hex_key}"))
}

fn write_new(path: &Path, content: &str) -> Result<(), NodeError> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    f.write_all(content.as_bytes()).map_err(|e| io(path, e))
}

/// Writes `<out>/genesis.json`, and for each node `<out>/<name>/node.key` (sealed under a
/// generated passphrase), `<out>/<name>/node.pass` (that passphrase, owner-only),
/// `<out>/<name>/node.toml` and (unless the spec asks for plain HTTP) its TLS key
/// `<out>/<name>/tls.key` with a copy of its certificate `<out>/<name>/tls.crt`, the certificate
/// pinned in the node's genesis entry. Refuses to overwrite existing files. Returns the config
/// paths.
pub fn init_consortium(spec: &ConsortiumSpec, out_dir: &Path) -> Result<Vec<PathBuf>, NodeError> {
    let kdf_params = medspace_seal::KdfParams::DEFAULT;
    let invalid = |error: String| NodeError::Invalid {
        what: "consortium spec",
        path: out_dir.display().to_string(),
        error,
    };
    if spec.nodes.iter().filter(|n| n.validator).count() == 0 {
        return Err(invalid("no validators".into()));
    }
    let mut names = std::collections::HashSet::new();
    for n in &spec.nodes {
        if n.name.is_empty()
            || !n
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(format!("bad node name: name={}", n.name)));
        }
        if !names.insert(n.name.clone()) {
            return Err(invalid(format!("duplicate node name: name={}", n.name)));
        }
    }
    let genesis_path = out_dir.join("genesis.json");
    if genesis_path.exists() {
        return Err(io(&genesis_path, "already exists"));
    }
    let mut rng = rand::rng();
    let mut keys = Vec::new();
    for _ in &spec.nodes {
        let mut seed = [0u8; 32];
        rand::Rng::fill_bytes(&mut rng, &mut seed);
        let key = ed25519::PrivateKey::decode(bytes::Bytes::copy_from_slice(&seed))
            .map_err(|e| invalid(format!("key generation failed: {e}")))?;
        keys.push(key);
    }
    let mut certs = Vec::new();
    for n in &spec.nodes {
        certs.push(if spec.plain_http {
            None
        } else {
            Some(
                NodeCertificate::generate(&n.name, n.http.ip())
                    .map_err(|e| invalid(e.to_string()))?,
            )
        });
    }
    let entry =
        |n: &SpecNode, k: &ed25519::PrivateKey, c: &Option<NodeCertificate>| GenesisValidator {
            name: n.name.clone(),
            public_key: hex::encode(k.public_key().encode()),
            p2p: n.p2p,
            http: n.http,
            tls_cert: c.as_ref().map(NodeCertificate::genesis_hex),
        };
    let nodes = || spec.nodes.iter().zip(&keys).zip(&certs);
    let genesis = Genesis {
        chain_id: spec.chain_id.clone(),
        validators: nodes()
            .filter(|((n, _), _)| n.validator)
            .map(|((n, k), c)| entry(n, k, c))
            .collect(),
        observers: nodes()
            .filter(|((n, _), _)| !n.validator)
            .map(|((n, k), c)| entry(n, k, c))
            .collect(),
        app: spec.app.clone(),
    };
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir, e))?;
    let text = serde_json::to_string_pretty(&genesis).map_err(|e| invalid(e.to_string()))?;
    write_new(&genesis_path, &text)?;
    let mut configs = Vec::new();
    for ((n, k), cert) in nodes() {
        let dir = out_dir.join(&n.name);
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        // The key sealed under a fresh passphrase, kept beside it in an owner-only file (a
        // local consortium on one machine; a real deployment keeps the passphrase elsewhere).
        let passphrase = medspace_seal::Passphrase::generate();
        let pass_path = dir.join("node.pass");
        passphrase
            .write_new(&pass_path)
            .map_err(|e| io(&pass_path, e))?;
        let sealed = medspace_seal::SealedKey::seal(
            &k.encode(),
            crate::config::KEY_ROLE,
            &passphrase,
            kdf_params,
        )
        .map_err(|e| invalid(e.to_string()))?;
        let key_path = dir.join("node.key");
        sealed
            .write(&key_path, false)
            .map_err(|e| io(&key_path, e))?;
        if let Some(cert) = cert {
            write_node_files(&dir, cert, &passphrase, kdf_params)?;
        }
        let config = NodeConfig {
            node: NodeSection {
                name: n.name.clone(),
                data_dir: PathBuf::from("data"),
                key_file: PathBuf::from("node.key"),
                key_passphrase_file: Some(PathBuf::from("node.pass")),
                genesis_file: PathBuf::from("../genesis.json"),
                ..NodeSection::default()
            },
            p2p: P2pSection {
                listen: n.p2p,
                ..P2pSection::default()
            },
            http: HttpSection {
                listen: n.http,
                tls_key_file: PathBuf::from(KEY_FILE),
                allow_plain: spec.plain_http,
                ..HttpSection::default()
            },
            ..NodeConfig::default()
        };
        let text = toml::to_string_pretty(&config).map_err(|e| invalid(e.to_string()))?;
        let path = dir.join("node.toml");
        write_new(&path, &text)?;
        configs.push(path);
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_loadable_files_and_refuses_overwrite() {
        let dir = std::env::temp_dir().join(format!("medspace-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = ConsortiumSpec {
            chain_id: "c".into(),
            nodes: (0..4)
                .map(|i| SpecNode {
                    name: format!("h{i}"),
                    validator: i < 3,
                    p2p: SocketAddr::from(([127, 0, 0, 1], 7000 + i)),
                    http: SocketAddr::from(([127, 0, 0, 1], 8000 + i)),
                })
                .collect(),
            app: serde_json::json!({"policy": 1}),
            plain_http: false,
        };
        let configs = init_consortium(&spec, &dir).unwrap();
        assert_eq!(configs.len(), 4);
        let c = NodeConfig::load(&configs[0]).unwrap();
        let g = Genesis::load(&c.node.genesis_file).unwrap();
        assert_eq!(g.validators.len(), 3);
        assert_eq!(g.observers.len(), 1);
        let k = c.load_node_key().unwrap();
        assert_eq!(
            hex::encode(k.public_key().encode()),
            g.validators[0].public_key
        );
        // Every node's certificate is pinned, and its key is the one the node will load.
        for (path, entry) in configs.iter().zip(g.validators.iter().chain(&g.observers)) {
            let c = NodeConfig::load(path).unwrap();
            assert!(!c.http.allow_plain);
            assert!(crate::tls::for_node(&c, &g).unwrap().is_some());
            assert!(entry.tls_cert.is_some());
        }
        assert!(init_consortium(&spec, &dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
