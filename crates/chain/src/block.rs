//! Blocks: a header committing to parent, height, time, transactions and state root, plus the
//! ordered transactions themselves.
//!
//! The block digest is the SHA-256 of the encoded header. The header carries `tx_root`, the
//! SHA-256 over the SHA-256 of every transaction in order, and decoding rejects a block whose
//! transactions do not match it, so a digest commits to the full block.

use bytes::{BufMut, Bytes};
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write, varint::UInt};
use commonware_consensus::{Heightable, types::Height};
use commonware_cryptography::{Digestible, sha256::Digest};
use sha2::{Digest as _, Sha256};

/// Hash of one transaction (used for the tx root and as a fallback id).
pub fn tx_hash(tx: &[u8]) -> [u8; 32] {
    Sha256::digest(tx).into()
}

/// Hash committing to an ordered list of transactions.
pub fn tx_root(txs: &[Bytes]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((txs.len() as u64).to_be_bytes());
    for tx in txs {
        hasher.update(tx_hash(tx));
    }
    hasher.finalize().into()
}

/// Limits a decoded block must respect (the block codec configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLimits {
    /// Maximum number of transactions in one block.
    pub max_txs: usize,
    /// Maximum size of one encoded transaction, in bytes.
    pub max_tx_bytes: usize,
    /// Maximum total size of the transactions of one block, in bytes.
    pub max_block_bytes: usize,
}

impl Default for BlockLimits {
    fn default() -> Self {
        Self {
            max_txs: 10_000,
            max_tx_bytes: 64 * 1024,
            max_block_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Block header. Its encoding is what the block digest hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Digest of the parent block.
    pub parent: Digest,
    /// Height (genesis is 0).
    pub height: u64,
    /// Proposer's wall-clock time in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Hash of the ordered transactions ([`tx_root`]).
    pub tx_root: [u8; 32],
    /// State root after applying the block's transactions.
    pub state_root: [u8; 32],
}

/// Encoded size of a header (fixed width).
pub const HEADER_SIZE: usize = 32 + 8 + 8 + 32 + 32;

impl Header {
    /// Encodes the header in its fixed-width canonical form.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[..32].copy_from_slice(self.parent.as_ref());
        out[32..40].copy_from_slice(&self.height.to_be_bytes());
        out[40..48].copy_from_slice(&self.time_ms.to_be_bytes());
        out[48..80].copy_from_slice(&self.tx_root);
        out[80..].copy_from_slice(&self.state_root);
        out
    }

    /// The header of its fixed-width canonical form.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Self {
        let word = |at: usize| -> [u8; 32] {
            let mut w = [0u8; 32];
            for (i, x) in w.iter_mut().enumerate() {
                *x = b.get(at + i).copied().unwrap_or(0);
            }
            w
        };
        let num = |at: usize| -> u64 {
            let mut n = [0u8; 8];
            for (i, x) in n.iter_mut().enumerate() {
                *x = b.get(at + i).copied().unwrap_or(0);
            }
            u64::from_be_bytes(n)
        };
        Self {
            parent: Digest::from(word(0)),
            height: num(32),
            time_ms: num(40),
            tx_root: word(48),
            state_root: word(80),
        }
    }

    /// The block digest: SHA-256 of the encoded header.
    pub fn digest(&self) -> Digest {
        Digest::from(<[u8; 32]>::from(Sha256::digest(self.to_bytes())))
    }
}

/// A block: header plus ordered transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The header.
    pub header: Header,
    /// Ordered, opaque encoded transactions.
    pub txs: Vec<Bytes>,
    digest: Digest,
}

impl Block {
    /// Builds a block, computing the tx root from `txs`.
    pub fn new(
        parent: Digest,
        height: u64,
        time_ms: u64,
        txs: Vec<Bytes>,
        state_root: [u8; 32],
    ) -> Self {
        let header = Header {
            parent,
            height,
            time_ms,
            tx_root: tx_root(&txs),
            state_root,
        };
        let digest = header.digest();
        Self {
            header,
            txs,
            digest,
        }
    }

    /// The genesis block of a chain: height 0, no transactions, parent = SHA-256 of the chain id,
    /// state root = the root of the initial state.
    pub fn genesis(chain_id: &str, state_root: [u8; 32]) -> Self {
        Self::new(
            Digest::from(<[u8; 32]>::from(Sha256::digest(chain_id.as_bytes()))),
            0,
            0,
            Vec::new(),
            state_root,
        )
    }

    /// Total size of the transactions in bytes.
    pub fn tx_bytes(&self) -> usize {
        self.txs.iter().map(Bytes::len).sum()
    }
}

impl Write for Block {
    fn write(&self, writer: &mut impl BufMut) {
        writer.put_slice(&self.header.to_bytes());
        UInt(self.txs.len() as u64).write(writer);
        for tx in &self.txs {
            UInt(tx.len() as u64).write(writer);
            writer.put_slice(tx);
        }
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        HEADER_SIZE
            + UInt(self.txs.len() as u64).encode_size()
            + self
                .txs
                .iter()
                .map(|tx| UInt(tx.len() as u64).encode_size() + tx.len())
                .sum::<usize>()
    }
}

fn read_array<const N: usize>(reader: &mut impl Buf) -> Result<[u8; N], CodecError> {
    if reader.remaining() < N {
        return Err(CodecError::EndOfBuffer);
    }
    let mut out = [0u8; N];
    reader.copy_to_slice(&mut out);
    Ok(out)
}

impl Read for Block {
    type Cfg = BlockLimits;

    fn read_cfg(reader: &mut impl Buf, limits: &BlockLimits) -> Result<Self, CodecError> {
        let parent = Digest::read(reader)?;
        let height = u64::from_be_bytes(read_array::<8>(reader)?);
        let time_ms = u64::from_be_bytes(read_array::<8>(reader)?);
        let tx_root_field = read_array::<32>(reader)?;
        let state_root = read_array::<32>(reader)?;
        let count: u64 = UInt::<u64>::read(reader)?.into();
        let count = usize::try_from(count).map_err(|_| CodecError::InvalidUsize)?;
        if count > limits.max_txs {
            return Err(CodecError::InvalidLength(count));
        }
        let mut txs = Vec::with_capacity(count.min(reader.remaining()));
        let mut total = 0usize;
        for _ in 0..count {
            let len: u64 = UInt::<u64>::read(reader)?.into();
            let len = usize::try_from(len).map_err(|_| CodecError::InvalidUsize)?;
            if len > limits.max_tx_bytes {
                return Err(CodecError::InvalidLength(len));
            }
            total = total.saturating_add(len);
            if total > limits.max_block_bytes {
                return Err(CodecError::InvalidLength(total));
            }
            if reader.remaining() < len {
                return Err(CodecError::EndOfBuffer);
            }
            txs.push(reader.copy_to_bytes(len));
        }
        if tx_root(&txs) != tx_root_field {
            return Err(CodecError::Invalid(
                "block",
                "tx_root does not match transactions",
            ));
        }
        let header = Header {
            parent,
            height,
            time_ms,
            tx_root: tx_root_field,
            state_root,
        };
        let digest = header.digest();
        Ok(Self {
            header,
            txs,
            digest,
        })
    }
}

impl Digestible for Block {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        self.digest
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        Height::new(self.header.height)
    }
}

impl commonware_consensus::Block for Block {
    fn parent(&self) -> Digest {
        self.header.parent
    }
}

impl commonware_consensus::BoundedBlock for Block {
    fn max_encode_size(limits: &BlockLimits) -> usize {
        HEADER_SIZE
            + UInt(limits.max_txs as u64).encode_size()
            + limits
                .max_txs
                .saturating_mul(UInt(limits.max_tx_bytes as u64).encode_size())
            + limits.max_block_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{Decode as _, Encode as _};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(txs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
                     height in any::<u64>(), time in any::<u64>(), root in any::<[u8; 32]>()) {
            let txs: Vec<Bytes> = txs.into_iter().map(Bytes::from).collect();
            let b = Block::new(Digest::from([9u8; 32]), height, time, txs, root);
            let enc = b.encode();
            let d = Block::decode_cfg(enc.clone(), &BlockLimits::default()).unwrap();
            prop_assert_eq!(&d, &b);
            prop_assert_eq!(d.digest(), b.digest());
            prop_assert_eq!(d.encode(), enc);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Block::decode_cfg(Bytes::from(bytes), &BlockLimits::default());
        }
    }

    #[test]
    fn tampered_tx_is_rejected() {
        let b = Block::new(
            Digest::from([9u8; 32]),
            1,
            2,
            vec![Bytes::from_static(b"hello")],
            [7; 32],
        );
        let mut enc = b.encode().to_vec();
        let last = enc.len() - 1;
        enc[last] ^= 1;
        assert!(Block::decode_cfg(Bytes::from(enc), &BlockLimits::default()).is_err());
    }

    #[test]
    fn limits_are_enforced() {
        let b = Block::new(
            Digest::from([9u8; 32]),
            1,
            2,
            vec![Bytes::from(vec![0u8; 100])],
            [7; 32],
        );
        let limits = BlockLimits {
            max_tx_bytes: 99,
            ..BlockLimits::default()
        };
        assert!(Block::decode_cfg(b.encode(), &limits).is_err());
        let limits = BlockLimits {
            max_txs: 0,
            ..BlockLimits::default()
        };
        assert!(Block::decode_cfg(b.encode(), &limits).is_err());
    }
}
