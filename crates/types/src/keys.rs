//! Signing keys: ed25519 from commonware-cryptography, with a text form for files and JSON.

use crate::TypeError;
use bytes::BufMut;
use commonware_codec::{Buf, DecodeExt, Encode, Error, FixedSize, Read, ReadExt, Write};
use commonware_cryptography::{Signer as _, Verifier as _, ed25519};
use commonware_math::algebra::Random;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An ed25519 public key, kept as its 32-byte encoding.
///
/// Decoding does not decompress the curve point: records that hold keys are read on every
/// transaction, and point decompression (a field square root) would dominate the state
/// machine's time. The point is decompressed, and so validated, where a key is used to verify a
/// signature ([`PublicKey::verify`], [`PublicKey::verifier`]) and where the ledger registers a
/// key ([`PublicKey::is_valid`]). Equality, order and hashing use the encoding.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The key from its 32-byte encoding (not validated: see [`PublicKey::is_valid`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The decompressed key, or `None` if the bytes are not a valid ed25519 point.
    pub fn verifier(&self) -> Option<ed25519::PublicKey> {
        ed25519::PublicKey::decode(bytes::Bytes::copy_from_slice(&self.0)).ok()
    }

    /// Whether the bytes encode a valid ed25519 public key.
    pub fn is_valid(&self) -> bool {
        self.verifier().is_some()
    }

    /// Checks `sig` over `msg` in the signing namespace `namespace`; false for an invalid key.
    pub fn verify(&self, namespace: &[u8], msg: &[u8], sig: &Signature) -> bool {
        self.verifier()
            .is_some_and(|k| k.verify(namespace, msg, &sig.0))
    }

    /// Lowercase hex of the 32 bytes.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<ed25519::PublicKey> for PublicKey {
    fn from(k: ed25519::PublicKey) -> Self {
        // INVARIANT: an ed25519 public key encodes to exactly 32 bytes, so every byte of `b` is
        // written (`zip` rather than `copy_from_slice`, which would panic on a length mismatch).
        let mut b = [0u8; 32];
        for (to, from) in b.iter_mut().zip(k.as_ref()) {
            *to = *from;
        }
        Self(b)
    }
}

impl AsRef<[u8]> for PublicKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for PublicKey {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s.trim()).map_err(|_| TypeError::Malformed {
            what: "public key",
            reason: "not hex",
        })?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| TypeError::Malformed {
            what: "public key",
            reason: "not 32 bytes",
        })?;
        let key = Self(arr);
        if !key.is_valid() {
            return Err(TypeError::Malformed {
                what: "public key",
                reason: "not a valid ed25519 point",
            });
        }
        Ok(key)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Write for PublicKey {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
}

impl FixedSize for PublicKey {
    const SIZE: usize = 32;
}

impl Read for PublicKey {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
        Ok(Self(<[u8; 32]>::read(buf)?))
    }
}

/// An ed25519 signature.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Signature(pub ed25519::Signature);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.as_ref()))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0.as_ref()))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)?;
        ed25519::Signature::decode(bytes)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

impl Write for Signature {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf)
    }
}

impl FixedSize for Signature {
    const SIZE: usize = 64;
}

impl Read for Signature {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
        Ok(Self(ed25519::Signature::read(buf)?))
    }
}

/// A signing key pair.
#[derive(Clone)]
pub struct Keypair {
    private: ed25519::PrivateKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.public())
    }
}

impl Keypair {
    /// A fresh key from a cryptographically secure RNG.
    pub fn generate(rng: impl rand_core::CryptoRng) -> Self {
        Self {
            private: ed25519::PrivateKey::random(rng),
        }
    }

    /// A deterministic key for tests, examples and the local devnet. Never for production.
    pub fn from_seed(seed: u64) -> Self {
        Self {
            private: ed25519::PrivateKey::from_seed(seed),
        }
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey::from(self.private.public_key())
    }

    /// Signs `msg` in `namespace`.
    pub fn sign(&self, namespace: &[u8], msg: &[u8]) -> Signature {
        Signature(self.private.sign(namespace, msg))
    }

    /// The secret as hex, for a key file readable only by its owner.
    pub fn secret_hex(&self) -> String {
        hex::encode(self.private.encode())
    }

    /// Reads a key from the hex of its secret.
    pub fn from_secret_hex(s: &str) -> Result<Self, TypeError> {
        let bytes = hex::decode(s.trim()).map_err(|_| TypeError::Malformed {
            what: "secret key",
            reason: "not hex",
        })?;
        ed25519::PrivateKey::decode(bytes)
            .map(|private| Self { private })
            .map_err(|_| TypeError::Malformed {
                what: "secret key",
                reason: "not 32 bytes",
            })
    }

    /// The underlying commonware key (for the consensus and p2p layers).
    pub fn inner(&self) -> &ed25519::PrivateKey {
        &self.private
    }
}

impl From<ed25519::PrivateKey> for Keypair {
    /// A commonware key as a ledger key pair (a validator's key signing its API requests).
    fn from(private: ed25519::PrivateKey) -> Self {
        Self { private }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_round_trips_and_signs() {
        let k = Keypair::from_seed(7);
        let k2 = Keypair::from_secret_hex(&k.secret_hex()).unwrap();
        assert_eq!(k.public(), k2.public());
        let sig = k2.sign(b"ns", b"msg");
        assert!(k.public().verify(b"ns", b"msg", &sig));
        assert!(!k.public().verify(b"ns2", b"msg", &sig));
        let pk: PublicKey = k.public().to_hex().parse().unwrap();
        assert_eq!(pk, k.public());
    }
}
