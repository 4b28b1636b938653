//! A node's TLS identity, knowing nothing of genesis files or configs: an ECDSA P-256 key and
//! the self-signed certificate naming the node ([`NodeCertificate`]), the files they are kept in,
//! and the cryptography every TLS endpoint uses. [`crate::genesis`] pins the certificates,
//! [`crate::tls`] serves and trusts them.

use rustls::crypto::CryptoProvider;
use std::{net::IpAddr, sync::Arc};

/// The file, in a node's directory, holding its TLS private key: a sealed key file (role
/// [`TLS_KEY_ROLE`]) under the node's key passphrase, owner-only; the PEM exists only in
/// memory.
pub const KEY_FILE: &str = "tls.key";
/// The role of a node's TLS private key (its PKCS#8 PEM) in a sealed key file.
pub const TLS_KEY_ROLE: &str = "tls-p256-pkcs8-pem";
/// The file, in a node's directory, holding a copy of its pinned certificate (PEM), for tools
/// such as `curl --cacert`. The genesis entry is what clients trust; this is a convenience.
pub const CERT_FILE: &str = "tls.crt";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A key or certificate could not be made.
    #[error("tls key generation failed: {0}")]
    Generate(String),
    /// A key or certificate does not parse, or they do not belong together.
    #[error("tls {what}: {error}")]
    Invalid {
        /// What was being read.
        what: String,
        /// Why it was refused.
        error: String,
    },
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
}

pub(crate) fn invalid(what: impl Into<String>, error: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        what: what.into(),
        error: error.to_string(),
    }
}

/// The cryptography every TLS endpoint here uses: rustls's `ring` provider.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A freshly generated node key and its self-signed certificate.
pub struct NodeCertificate {
    /// The certificate, DER (what the genesis pins).
    pub cert_der: Vec<u8>,
    /// The certificate, PEM (the `tls.crt` copy).
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM (the `tls.key` file).
    pub key_pem: String,
}

impl NodeCertificate {
    /// Generates an ECDSA P-256 key and a self-signed certificate whose subject alternative
    /// names are the node's `name` (a DNS name) and `ip` (the address clients reach it at).
    pub fn generate(name: &str, ip: IpAddr) -> Result<Self, TlsError> {
        let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_string(), ip.to_string()])
            .map_err(gen_err)?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, name);
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The certificate as the genesis carries it (hex of the DER).
    pub fn genesis_hex(&self) -> String {
        hex::encode(&self.cert_der)
    }
}
