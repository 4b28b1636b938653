//! Building blocks of the canonical encoding.
//!
//! Every type on the wire implements commonware-codec's `Read<Cfg = ()>`, so each decoder carries
//! its own bounds: [`Text`] and [`List`] name their maximum length in their type, and a decode
//! of more items or bytes than that fails before anything is allocated for them. `Decode` (used by
//! every entry point) rejects trailing bytes.
//!
//! Sizes: every length is at most its type's `MAX` (checked by the constructors and by the
//! decoders), all far below `u32::MAX`, so lengths fit the codec's `u32` length prefix (whose
//! writer would panic otherwise) and the encoded-size sums below cannot overflow `usize`.

use bytes::{Buf as _, BufMut};
use commonware_codec::{Buf, EncodeSize, Error, RangeCfg, Read, ReadRangeExt, Write};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A UTF-8 string of at most `MAX` bytes.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text<const MAX: usize>(String);

impl<const MAX: usize> Text<MAX> {
    /// Wraps `s`, refusing strings longer than `MAX` bytes.
    pub fn new(s: impl Into<String>) -> Result<Self, crate::TypeError> {
        let s = s.into();
        if s.len() > MAX {
            return Err(crate::TypeError::TooLong {
                what: "text",
                len: s.len(),
                max: MAX,
            });
        }
        Ok(Self(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for Text<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const MAX: usize> fmt::Display for Text<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> Write for Text<MAX> {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.len().write(buf);
        buf.put_slice(self.0.as_bytes());
    }
}

impl<const MAX: usize> EncodeSize for Text<MAX> {
    fn encode_size(&self) -> usize {
        self.0.len().encode_size() + self.0.len()
    }
}

impl<const MAX: usize> Read for Text<MAX> {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
        let bytes = Vec::<u8>::read_range(buf, 0..=MAX)?;
        String::from_utf8(bytes)
            .map(Self)
            .map_err(|_| Error::Invalid("text", "not utf-8"))
    }
}

impl<const MAX: usize> Serialize for Text<MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for Text<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// A list of at most `MAX` items.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct List<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> Default for List<T, MAX> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T, const MAX: usize> List<T, MAX> {
    /// Wraps `items`, refusing more than `MAX`.
    pub fn new(items: Vec<T>) -> Result<Self, crate::TypeError> {
        if items.len() > MAX {
            return Err(crate::TypeError::TooLong {
                what: "list",
                len: items.len(),
                max: MAX,
            });
        }
        Ok(Self(items))
    }

    /// Appends an item, refusing to grow past `MAX`.
    pub fn push(&mut self, item: T) -> Result<(), crate::TypeError> {
        if self.0.len() >= MAX {
            return Err(crate::TypeError::TooLong {
                what: "list",
                len: self.0.len().saturating_add(1),
                max: MAX,
            });
        }
        self.0.push(item);
        Ok(())
    }

    /// Keeps only the items `f` accepts.
    pub fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        self.0.retain(f);
    }

    /// Drops the oldest items so that at most `keep` remain.
    pub fn keep_last(&mut self, keep: usize) {
        let len = self.0.len();
        if len > keep {
            // INVARIANT: len > keep, checked above.
            self.0.drain(..len - keep);
        }
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// Mutable access to the items (the length cannot change through it).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.0
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the items.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// Unwraps the items.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<'a, T, const MAX: usize> IntoIterator for &'a List<T, MAX> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: Write, const MAX: usize> Write for List<T, MAX> {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.len().write(buf);
        for item in &self.0 {
            item.write(buf);
        }
    }
}

impl<T: EncodeSize, const MAX: usize> EncodeSize for List<T, MAX> {
    fn encode_size(&self) -> usize {
        self.0.len().encode_size() + self.0.iter().map(EncodeSize::encode_size).sum::<usize>()
    }
}

impl<T: Read<Cfg = ()>, const MAX: usize> Read for List<T, MAX> {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
        let items = Vec::<T>::read_cfg(buf, &(RangeCfg::from(0..=MAX), ()))?;
        Ok(Self(items))
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for List<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(d)?;
        Self::new(items).map_err(serde::de::Error::custom)
    }
}

/// Opaque bytes of at most `MAX` bytes (a query specification, a key): never patient data.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Blob<const MAX: usize>(Vec<u8>);

impl<const MAX: usize> Blob<MAX> {
    /// Wraps `bytes`, refusing more than `MAX`.
    pub fn new(bytes: Vec<u8>) -> Result<Self, crate::TypeError> {
        if bytes.len() > MAX {
            return Err(crate::TypeError::TooLong {
                what: "blob",
                len: bytes.len(),
                max: MAX,
            });
        }
        Ok(Self(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for Blob<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blob({} bytes)", self.0.len())
    }
}

impl<const MAX: usize> Write for Blob<MAX> {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.len().write(buf);
        buf.put_slice(&self.0);
    }
}

impl<const MAX: usize> EncodeSize for Blob<MAX> {
    fn encode_size(&self) -> usize {
        self.0.len().encode_size() + self.0.len()
    }
}

impl<const MAX: usize> Read for Blob<MAX> {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, Error> {
        Ok(Self(Vec::<u8>::read_range(buf, 0..=MAX)?))
    }
}

impl<const MAX: usize> Serialize for Blob<MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        hex::encode(&self.0).serialize(s)
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for Blob<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(s).map_err(serde::de::Error::custom)?;
        Self::new(bytes).map_err(serde::de::Error::custom)
    }
}

/// Reads one tag byte.
pub(crate) fn read_tag(buf: &mut impl Buf) -> Result<u8, Error> {
    if !buf.has_remaining() {
        return Err(Error::EndOfBuffer);
    }
    Ok(buf.get_u8())
}

/// Implements the canonical encoding of a struct, field by field, in declaration order.
/// Every field type must implement `Read<Cfg = ()>`.
#[macro_export]
macro_rules! codec_struct {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        impl ::commonware_codec::Write for $name {
            fn write(&self, _buf: &mut impl ::bytes::BufMut) {
                $( ::commonware_codec::Write::write(&self.$field, _buf); )*
            }
        }
        impl ::commonware_codec::EncodeSize for $name {
            fn encode_size(&self) -> usize {
                0 $( + ::commonware_codec::EncodeSize::encode_size(&self.$field) )*
            }
        }
        impl ::commonware_codec::Read for $name {
            type Cfg = ();
            fn read_cfg(
                _buf: &mut impl ::commonware_codec::Buf,
                _: &(),
            ) -> Result<Self, ::commonware_codec::Error> {
                Ok(Self { $( $field: <$ty as ::commonware_codec::ReadExt>::read(_buf)?, )* })
            }
        }
    };
}

/// Implements the canonical encoding of an enum whose variants each wrap one value, as a tag
/// byte followed by the value.
#[macro_export]
macro_rules! codec_enum {
    ($name:ident { $($tag:literal => $var:ident ( $ty:ty )),* $(,)? }) => {
        impl ::commonware_codec::Write for $name {
            fn write(&self, buf: &mut impl ::bytes::BufMut) {
                match self {
                    $( Self::$var(v) => {
                        ::bytes::BufMut::put_u8(buf, $tag);
                        ::commonware_codec::Write::write(v, buf);
                    } )*
                }
            }
        }
        impl ::commonware_codec::EncodeSize for $name {
            fn encode_size(&self) -> usize {
                match self {
                    $( Self::$var(v) => 1 + ::commonware_codec::EncodeSize::encode_size(v), )*
                }
            }
        }
        impl ::commonware_codec::Read for $name {
            type Cfg = ();
            fn read_cfg(
                buf: &mut impl ::commonware_codec::Buf,
                _: &(),
            ) -> Result<Self, ::commonware_codec::Error> {
                let tag = $crate::codec::read_tag_pub(buf)?;
                match tag {
                    $( $tag => Ok(Self::$var(<$ty as ::commonware_codec::ReadExt>::read(buf)?)), )*
                    other => Err(::commonware_codec::Error::InvalidEnum(other)),
                }
            }
        }
    };
}

/// Implements the canonical encoding (one byte) and the text form of a field-less enum.
#[macro_export]
macro_rules! unit_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $tag:literal => $var:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vmeta])* $var),* }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$var),*];
            /// The canonical text form.
            pub fn as_str(&self) -> &'static str {
                match self { $( Self::$var => $text, )* }
            }
        }
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl ::std::str::FromStr for $name {
            type Err = $crate::TypeError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok(Self::$var), )*
                    other => Err($crate::TypeError::Unknown {
                        what: stringify!($name),
                        value: other.chars().take(64).collect(),
                    }),
                }
            }
        }
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
        impl ::commonware_codec::Write for $name {
            fn write(&self, buf: &mut impl ::bytes::BufMut) {
                let tag: u8 = match self { $( Self::$var => $tag, )* };
                ::bytes::BufMut::put_u8(buf, tag);
            }
        }
        impl ::commonware_codec::FixedSize for $name {
            const SIZE: usize = 1;
        }
        impl ::commonware_codec::Read for $name {
            type Cfg = ();
            fn read_cfg(
                buf: &mut impl ::commonware_codec::Buf,
                _: &(),
            ) -> Result<Self, ::commonware_codec::Error> {
                match $crate::codec::read_tag_pub(buf)? {
                    $( $tag => Ok(Self::$var), )*
                    other => Err(::commonware_codec::Error::InvalidEnum(other)),
                }
            }
        }
    };
}

/// Reads one tag byte (for the macros).
#[doc(hidden)]
pub fn read_tag_pub(buf: &mut impl Buf) -> Result<u8, Error> {
    read_tag(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn text_bounds_are_enforced_on_decode() {
        let long = Text::<8>::new("12345678").unwrap().encode();
        assert!(Text::<8>::decode(long.clone()).is_ok());
        assert!(Text::<7>::decode(long).is_err());
        assert!(Text::<4>::new("12345").is_err());
    }

    #[test]
    fn list_bounds_are_enforced_on_decode() {
        let list = List::<u32, 3>::new(vec![1, 2, 3]).unwrap().encode();
        assert!(List::<u32, 3>::decode(list.clone()).is_ok());
        assert!(List::<u32, 2>::decode(list).is_err());
        let mut l = List::<u32, 1>::default();
        l.push(1).unwrap();
        assert!(l.push(2).is_err());
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let mut bytes = vec![2u8];
        bytes.extend_from_slice(&[0xff, 0xfe]);
        assert!(Text::<8>::decode(bytes).is_err());
    }
}
