//! Identifiers and digests.

use crate::TypeError;
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error, FixedSize, Read, ReadExt, Write};
use commonware_cryptography::{Hasher, Sha256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A SHA-256 digest: state roots, content hashes, transaction ids, authorization-code hashes.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// SHA-256 over the concatenation of `parts`.
    pub fn of(parts: &[&[u8]]) -> Self {
        let mut h = Sha256::default();
        for p in parts {
            h.update(p);
        }
        let (_, d) = h.finalize();
        Self(d.0)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl FromStr for Hash {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|_| TypeError::Malformed {
            what: "hash",
            reason: "not hex",
        })?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| TypeError::Malformed {
            what: "hash",
            reason: "not 32 bytes",
        })?;
        Ok(Self(arr))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Write for Hash {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
}

impl FixedSize for Hash {
    const SIZE: usize = 32;
}

impl Read for Hash {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
        Ok(Self(<[u8; 32]>::read(buf)?))
    }
}

/// The longest name of a member, user, dataset or study.
pub const MAX_NAME: usize = 64;

/// A human-chosen name: 1 to 64 bytes of `[a-z0-9._-]`, starting with a letter or digit.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// Validates `s` as a name.
    pub fn new(s: &str) -> Result<Self, TypeError> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        let first_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if s.is_empty() || s.len() > MAX_NAME || !first_ok || !s.chars().all(ok_char) {
            return Err(TypeError::BadName {
                value: s.chars().take(MAX_NAME + 1).collect(),
            });
        }
        Ok(Self(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl Write for Name {
    fn write(&self, buf: &mut impl BufMut) {
        // INVARIANT: a name is at most 64 bytes, so its length fits one byte.
        buf.put_u8(self.0.len() as u8);
        buf.put_slice(self.0.as_bytes());
    }
}

impl EncodeSize for Name {
    fn encode_size(&self) -> usize {
        1 + self.0.len()
    }
}

impl Read for Name {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
        let len = usize::from(u8::read(buf)?);
        if len > MAX_NAME || buf.remaining() < len {
            return Err(Error::Invalid("name", "bad length"));
        }
        let mut bytes = vec![0u8; len];
        buf.copy_to_slice(&mut bytes);
        let s = String::from_utf8(bytes).map_err(|_| Error::Invalid("name", "not utf-8"))?;
        Self::new(&s).map_err(|_| Error::Invalid("name", "bad characters"))
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

macro_rules! name_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Name);

        impl $name {
            /// Validates `s` as this identifier.
            pub fn new(s: &str) -> Result<Self, TypeError> {
                Name::new(s).map(Self)
            }
            /// The identifier's text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.0.as_str())
            }
        }
        impl FromStr for $name {
            type Err = TypeError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
        impl Write for $name {
            fn write(&self, buf: &mut impl BufMut) {
                self.0.write(buf)
            }
        }
        impl EncodeSize for $name {
            fn encode_size(&self) -> usize {
                self.0.encode_size()
            }
        }
        impl Read for $name {
            type Cfg = ();
            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
                Ok(Self(Name::read(buf)?))
            }
        }
    };
}

name_id!(
    /// A member institution (hospital, insurer, research institute, regulator...).
    MemberId
);
name_id!(
    /// A user of a member institution, unique in the consortium (e.g. `hospital-a.steward`).
    UserId
);
name_id!(
    /// A dataset in the catalog, owned by one member (e.g. `hospital-a.cdm`).
    DatasetId
);
name_id!(
    /// A research study, the unit of dynamic secondary consent.
    StudyId
);

macro_rules! number_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{:016x}", $prefix, self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{:016x}", $prefix, self.0)
            }
        }
        impl FromStr for $name {
            type Err = TypeError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let hex = s.strip_prefix($prefix).unwrap_or(s);
                u64::from_str_radix(hex, 16).map(Self).map_err(|_| TypeError::Malformed {
                    what: stringify!($name),
                    reason: "expected 16 hex digits",
                })
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Write for $name {
            fn write(&self, buf: &mut impl BufMut) {
                self.0.write(buf)
            }
        }
        impl FixedSize for $name {
            const SIZE: usize = 8;
        }
        impl Read for $name {
            type Cfg = ();
            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
                Ok(Self(u64::read(buf)?))
            }
        }
    };
}

number_id!(
    /// A data-use contract.
    ContractId,
    "c-"
);
number_id!(
    /// A job run under a contract.
    JobId,
    "j-"
);
number_id!(
    /// A patient's authorization grant.
    GrantId,
    "g-"
);
number_id!(
    /// A record-level access (delivery of records to another party).
    AccessId,
    "a-"
);
number_id!(
    /// A governance proposal.
    ProposalId,
    "p-"
);

/// A patient's pseudonym: the only way a patient appears on the ledger.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PatientId(pub [u8; 32]);

impl PatientId {
    /// The pseudonym a patient's first public key maps to.
    pub fn from_key(key: &crate::PublicKey) -> Self {
        Self(Hash::of(&[b"medspace/patient/v1", key.as_ref()]).0)
    }
}

impl fmt::Debug for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pt-{}", hex::encode(self.0))
    }
}

impl fmt::Display for PatientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pt-{}", hex::encode(self.0))
    }
}

impl FromStr for PatientId {
    type Err = TypeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let h: Hash = s.strip_prefix("pt-").unwrap_or(s).parse()?;
        Ok(Self(h.0))
    }
}

impl Serialize for PatientId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for PatientId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Write for PatientId {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }
}

impl FixedSize for PatientId {
    const SIZE: usize = 32;
}

impl Read for PatientId {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
        Ok(Self(<[u8; 32]>::read(buf)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(Name::new("hospital-a").is_ok());
        assert!(Name::new("hospital-a.steward").is_ok());
        assert!(Name::new("").is_err());
        assert!(Name::new("Hospital").is_err());
        assert!(Name::new("-x").is_err());
        assert!(Name::new(&"a".repeat(65)).is_err());
        assert!(Name::new("a b").is_err());
    }

    #[test]
    fn number_ids_round_trip_as_text() {
        let c = ContractId(0xdead_beef);
        assert_eq!(c.to_string(), "c-00000000deadbeef");
        assert_eq!("c-00000000deadbeef".parse::<ContractId>().unwrap(), c);
        assert!("c-zz".parse::<ContractId>().is_err());
    }
}
