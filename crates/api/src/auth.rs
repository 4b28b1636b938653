//! Signed requests: every read of the ledger through the API, and every request between nodes
//! and to a node's services, names its caller by a key that the ledger knows and proves it with
//! an ed25519 signature over the whole request.
//!
//! Header: `authorization: Medspace key=<hex>,ts=<unix ms>,nonce=<32 hex>,aud=<member>,sig=<hex>`.
//! The signature (namespace [`API_NAMESPACE`]) covers, one per line: a version tag, the method,
//! the path and query, the **audience** (the member whose node the request is for), the
//! timestamp, the nonce and the SHA-256 of the body. So a request is good at one node only: the
//! node it was sent to cannot replay it at another. A node accepts a request within
//! [`MAX_SKEW_MS`] of its clock and, through a [`ReplayGuard`], only once: the guard remembers
//! each `(key, nonce)` it accepted for as long as the timestamp is acceptable. The pair is part
//! of the signed message, so no re-encoding of the signature gets around it.

use medspace_types::{Hash, Keypair, PublicKey, Signature};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Signing namespace of API requests.
pub const API_NAMESPACE: &[u8] = b"medspace/api/v2";
/// Largest accepted difference between a request's timestamp and the node's clock.
pub const MAX_SKEW_MS: u64 = 60 * 1000;
/// Most accepted requests a [`ReplayGuard`] remembers; beyond it, requests are refused until
/// older ones expire.
pub const MAX_REMEMBERED: usize = 400_000;
/// Longest accepted authorization header.
pub const MAX_HEADER_LEN: usize = 512;
/// Bytes of a request nonce.
pub const NONCE_LEN: usize = 16;

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No authorization header.
    #[error("missing authorization header: sign the request with your key")]
    Missing,
    /// The header does not parse.
    #[error("malformed authorization header: {0}")]
    Malformed(&'static str),
    /// The request was signed for another node.
    #[error("request signed for another node: audience={got}, this node is {expected}")]
    Audience {
        /// This node's member.
        expected: String,
        /// The audience named in the request.
        got: String,
    },
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
    /// The same signed request was already accepted.
    #[error("replayed request: this signed request was already accepted")]
    Replay,
    /// The node remembers as many requests as it may; try again shortly.
    #[error("too many recent requests to remember: try again shortly")]
    Busy,
}

/// What a request signature covers, apart from the caller's key and the time.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `GET`, `POST`…
    pub method: &'a str,
    /// The path with its query string, as sent.
    pub path_and_query: &'a str,
    /// The member whose node the request is for.
    pub audience: &'a str,
    /// The body (empty for a `GET`).
    pub body: &'a [u8],
}

/// A request whose signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The caller's key.
    pub key: PublicKey,
    /// The request's timestamp (unix ms).
    pub ts_ms: u64,
    /// Its nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl Request<'_> {
    /// The message a signature over this request covers.
    pub fn message(&self, ts_ms: u64, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        format!(
            "medspace-request-v2\n{}\n{}\n{}\n{ts_ms}\n{}\n{}",
            self.method,
            self.path_and_query,
            self.audience,
            hex::encode(nonce),
            Hash::of(&[self.body]).to_hex()
        )
        .into_bytes()
    }

    /// The authorization header value for this request signed by `key` at `ts_ms` with
    /// `nonce`.
    pub fn sign_with(&self, key: &Keypair, ts_ms: u64, nonce: [u8; NONCE_LEN]) -> String {
        let sig = key.sign(API_NAMESPACE, &self.message(ts_ms, &nonce));
        format!(
            "Medspace key={},ts={ts_ms},nonce={},aud={},sig={}",
            key.public().to_hex(),
            hex::encode(nonce),
            self.audience,
            hex::encode(sig.0.as_ref())
        )
    }

    /// The authorization header value for this request signed by `key` now, with a fresh
    /// random nonce.
    pub fn sign(&self, key: &Keypair) -> String {
        use rand::Rng as _;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        self.sign_with(key, now_ms(), nonce)
    }

    /// Parses and verifies an authorization header for this request at a node whose clock
    /// reads `now_ms`: the caller's key, timestamp and nonce. Checks no replay: see
    /// [`ReplayGuard`].
    pub fn verify(&self, header: Option<&str>, now_ms: u64) -> Result<Verified, AuthError> {
        let h = parse_header(header.ok_or(AuthError::Missing)?)?;
        if h.audience != self.audience {
            return Err(AuthError::Audience {
                expected: self.audience.to_string(),
                got: h.audience.to_string(),
            });
        }
        let skew_ms = now_ms.abs_diff(h.ts_ms);
        if skew_ms > MAX_SKEW_MS {
            return Err(AuthError::Skew { skew_ms });
        }
        if !h
            .key
            .verify(API_NAMESPACE, &self.message(h.ts_ms, &h.nonce), &h.sig)
        {
            return Err(AuthError::BadSignature {
                key: h.key.to_hex(),
            });
        }
        Ok(Verified {
            key: h.key,
            ts_ms: h.ts_ms,
            nonce: h.nonce,
        })
    }
}

/// The fields of an authorization header.
struct Header<'a> {
    key: PublicKey,
    ts_ms: u64,
    nonce: [u8; NONCE_LEN],
    audience: &'a str,
    sig: Signature,
}

/// Parses an authorization header: every field exactly once, nothing else.
fn parse_header(header: &str) -> Result<Header<'_>, AuthError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(AuthError::Malformed("header too long"));
    }
    let rest = header
        .strip_prefix("Medspace ")
        .ok_or(AuthError::Malformed("expected scheme `Medspace`"))?;
    let (mut key, mut ts, mut nonce, mut aud, mut sig) = (None, None, None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(AuthError::Malformed("expected key=value pairs"))?;
        let slot_taken = match k {
            "key" => key
                .replace(
                    v.parse::<PublicKey>()
                        .map_err(|_| AuthError::Malformed("key is not a valid public key"))?,
                )
                .is_some(),
            "ts" => ts
                .replace(
                    v.parse::<u64>()
                        .map_err(|_| AuthError::Malformed("ts is not a number"))?,
                )
                .is_some(),
            "nonce" => {
                let mut n = [0u8; NONCE_LEN];
                hex::decode_to_slice(v, &mut n)
                    .map_err(|_| AuthError::Malformed("nonce is not 16 bytes of hex"))?;
                nonce.replace(n).is_some()
            }
            "aud" => {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                    return Err(AuthError::Malformed("aud is not a member id"));
                }
                aud.replace(v).is_some()
            }
            "sig" => {
                let bytes = hex::decode(v).map_err(|_| AuthError::Malformed("sig is not hex"))?;
                sig.replace(decode_sig(bytes).ok_or(AuthError::Malformed("sig is not 64 bytes"))?)
                    .is_some()
            }
            _ => return Err(AuthError::Malformed("unknown field")),
        };
        if slot_taken {
            return Err(AuthError::Malformed("a field appears twice"));
        }
    }
    match (key, ts, nonce, aud, sig) {
        (Some(key), Some(ts_ms), Some(nonce), Some(audience), Some(sig)) => Ok(Header {
            key,
            ts_ms,
            nonce,
            audience,
            sig,
        }),
        _ => Err(AuthError::Malformed(
            "key, ts, nonce, aud and sig are required",
        )),
    }
}

fn decode_sig(bytes: Vec<u8>) -> Option<Signature> {
    use commonware_codec::DecodeExt;
    commonware_cryptography::ed25519::Signature::decode(bytes::Bytes::from(bytes))
        .ok()
        .map(Signature)
}

/// Wall-clock milliseconds since the epoch (request timestamps only).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The requests a node accepted recently, so that each is accepted once: a `(key, nonce)` pair
/// is remembered until its timestamp leaves the accepted window, when it could not be accepted
/// again anyway.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<(PublicKey, [u8; NONCE_LEN]), u64>>,
}

impl ReplayGuard {
    /// Accepts `v` at `now_ms` unless the same request was accepted before.
    pub fn admit(&self, v: &Verified, now_ms: u64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, ts| now_ms.abs_diff(*ts) <= MAX_SKEW_MS);
            if seen.len() >= MAX_REMEMBERED {
                return Err(AuthError::Busy);
            }
        }
        match seen.entry((v.key.clone(), v.nonce)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(AuthError::Replay),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(v.ts_ms);
                Ok(())
            }
        }
    }

    /// Verifies `header` for `request` and accepts it once.
    pub fn check(
        &self,
        request: &Request<'_>,
        header: Option<&str>,
        now_ms: u64,
    ) -> Result<Verified, AuthError> {
        let v = request.verify(header, now_ms)?;
        self.admit(&v, now_ms)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Request<'static> = Request {
        method: "GET",
        path_and_query: "/v1/status",
        audience: "hospital-a",
        body: b"",
    };

    #[test]
    fn a_signed_request_verifies_and_every_change_is_refused() {
        let k = Keypair::from_seed(3);
        let h = GET.sign_with(&k, 1000, [7; NONCE_LEN]);
        assert_eq!(GET.verify(Some(&h), 2000).unwrap().key, k.public());
        let other = |f: &dyn Fn(&mut Request<'static>)| {
            let mut r = GET;
            f(&mut r);
            r.verify(Some(&h), 2000)
        };
        assert!(matches!(
            other(&|r| r.path_and_query = "/v1/catalog"),
            Err(AuthError::BadSignature { .. })
        ));
        assert!(matches!(
            other(&|r| r.method = "POST"),
            Err(AuthError::BadSignature { .. })
        ));
        assert!(matches!(
            other(&|r| r.body = b"x"),
            Err(AuthError::BadSignature { .. })
        ));
        assert!(matches!(
            other(&|r| r.audience = "hospital-b"),
            Err(AuthError::Audience { .. })
        ));
        // The audience field rewritten to the other node: the signature no longer matches.
        let moved = h.replace("aud=hospital-a", "aud=hospital-b");
        let mut at_b = GET;
        at_b.audience = "hospital-b";
        assert!(matches!(
            at_b.verify(Some(&moved), 2000),
            Err(AuthError::BadSignature { .. })
        ));
        assert!(matches!(
            GET.verify(Some(&h), 1000 + MAX_SKEW_MS + 1),
            Err(AuthError::Skew { .. })
        ));
        assert!(matches!(GET.verify(None, 0), Err(AuthError::Missing)));
        assert!(matches!(
            GET.verify(Some("Bearer x"), 0),
            Err(AuthError::Malformed(_))
        ));
        let twice = format!("{h},ts=1000");
        assert!(matches!(
            GET.verify(Some(&twice), 2000),
            Err(AuthError::Malformed("a field appears twice"))
        ));
    }

    #[test]
    fn a_request_is_accepted_once() {
        let k = Keypair::from_seed(3);
        let guard = ReplayGuard::default();
        let h = GET.sign_with(&k, 1000, [1; NONCE_LEN]);
        guard.check(&GET, Some(&h), 1000).unwrap();
        assert_eq!(guard.check(&GET, Some(&h), 1001), Err(AuthError::Replay));
        // Another nonce is another request.
        let h2 = GET.sign_with(&k, 1000, [2; NONCE_LEN]);
        guard.check(&GET, Some(&h2), 1001).unwrap();
        // A fresh signature over the same nonce (ed25519 signing is deterministic, so this is
        // the same bytes; a re-encoded copy would be refused by the nonce just the same).
        assert_eq!(guard.check(&GET, Some(&h), 1002), Err(AuthError::Replay));
    }
}
