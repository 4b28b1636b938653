//! Signed requests: every read of the ledger through the API names its caller by a key that the
//! ledger knows, and proves it with an ed25519 signature over the request.
//!
//! Header: `authorization: Medspace key=<hex>,ts=<unix ms>,sig=<hex>`; the signature (namespace
//! [`API_NAMESPACE`]) covers `METHOD \n PATH?QUERY \n TS \n hex(SHA-256(body))`. A request is
//! accepted within [`MAX_SKEW_MS`] of the node's clock.

use medspace_types::{Hash, Keypair, PublicKey, Signature};

/// Signing namespace of API requests.
pub const API_NAMESPACE: &[u8] = b"medspace/api/v1";
/// Largest accepted difference between a request's timestamp and the node's clock.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No authorization header.
    #[error("missing authorization header: sign the request with your key")]
    Missing,
    /// The header does not parse.
    #[error("malformed authorization header: {0}")]
    Malformed(&'static str),
    /// The timestamp is too far from the node's clock.
    #[error("request timestamp outside the accepted window: skew_ms={skew_ms}")]
    Skew {
        /// The difference.
        skew_ms: u64,
    },
    /// The signature does not verify.
    #[error("bad request signature for key={key}")]
    BadSignature {
        /// The key.
        key: String,
    },
}

/// The message a request signature covers.
pub fn request_message(method: &str, path_and_query: &str, ts_ms: u64, body: &[u8]) -> Vec<u8> {
    format!(
        "{method}\n{path_and_query}\n{ts_ms}\n{}",
        Hash::of(&[body]).to_hex()
    )
    .into_bytes()
}

/// The authorization header value for a request signed by `key` at `ts_ms`.
pub fn sign_request(
    key: &Keypair,
    method: &str,
    path_and_query: &str,
    ts_ms: u64,
    body: &[u8],
) -> String {
    let sig = key.sign(
        API_NAMESPACE,
        &request_message(method, path_and_query, ts_ms, body),
    );
    format!(
        "Medspace key={},ts={ts_ms},sig={}",
        key.public().to_hex(),
        hex::encode(commonware_sig_bytes(&sig))
    )
}

fn commonware_sig_bytes(sig: &Signature) -> Vec<u8> {
    sig.0.as_ref().to_vec()
}

/// Parses and verifies an authorization header; returns the caller's key.
pub fn verify_request(
    header: Option<&str>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<PublicKey, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    let rest = header
        .strip_prefix("Medspace ")
        .ok_or(AuthError::Malformed("expected scheme `Medspace`"))?;
    let (mut key, mut ts, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(AuthError::Malformed("expected key=value pairs"))?;
        match k {
            "key" => {
                key = Some(
                    v.parse::<PublicKey>()
                        .map_err(|_| AuthError::Malformed("key is not a valid public key"))?,
                )
            }
            "ts" => {
                ts = Some(
                    v.parse::<u64>()
                        .map_err(|_| AuthError::Malformed("ts is not a number"))?,
                )
            }
            "sig" => {
                let bytes = hex::decode(v).map_err(|_| AuthError::Malformed("sig is not hex"))?;
                sig = Some(decode_sig(bytes).ok_or(AuthError::Malformed("sig is not 64 bytes"))?);
            }
            _ => return Err(AuthError::Malformed("unknown field")),
        }
    }
    let (key, ts, sig) = match (key, ts, sig) {
        (Some(k), Some(t), Some(s)) => (k, t, s),
        _ => return Err(AuthError::Malformed("key, ts and sig are required")),
    };
    let skew_ms = now_ms.abs_diff(ts);
    if skew_ms > MAX_SKEW_MS {
        return Err(AuthError::Skew { skew_ms });
    }
    if !key.verify(
        API_NAMESPACE,
        &request_message(method, path_and_query, ts, body),
        &sig,
    ) {
        return Err(AuthError::BadSignature { key: key.to_hex() });
    }
    Ok(key)
}

fn decode_sig(bytes: Vec<u8>) -> Option<Signature> {
    use commonware_codec::DecodeExt;
    commonware_cryptography::ed25519::Signature::decode(bytes::Bytes::from(bytes))
        .ok()
        .map(Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_request_verifies_and_tampering_fails() {
        let k = Keypair::from_seed(3);
        let h = sign_request(&k, "GET", "/v1/status", 1000, b"");
        assert_eq!(
            verify_request(Some(&h), "GET", "/v1/status", b"", 2000).unwrap(),
            k.public()
        );
        assert!(matches!(
            verify_request(Some(&h), "GET", "/v1/catalog", b"", 2000),
            Err(AuthError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_request(Some(&h), "GET", "/v1/status", b"x", 2000),
            Err(AuthError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_request(Some(&h), "GET", "/v1/status", b"", 1000 + MAX_SKEW_MS + 1),
            Err(AuthError::Skew { .. })
        ));
        assert!(matches!(
            verify_request(None, "GET", "/", b"", 0),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            verify_request(Some("Bearer x"), "GET", "/", b"", 0),
            Err(AuthError::Malformed(_))
        ));
    }
}
