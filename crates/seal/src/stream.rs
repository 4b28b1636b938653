//! Sealed files of any size, and the keys they are sealed under.
//!
//! ```text
//! header  "MSSEAL01" (8 bytes) | nonce prefix (19 random bytes)
//! chunks  XChaCha20-Poly1305 of 64 KiB of plaintext each, + 16-byte tag; the last chunk
//!         (possibly empty) is sealed with STREAM's "last" flag
//! ```
//! The nonce of chunk *i* is the prefix, *i* as 32-bit big-endian, and the last-chunk flag
//! (aead-stream's `StreamBE32`). Every chunk's associated data is the header followed by the
//! file's *role* — what the caller says the file is and where it belongs (for a vault file,
//! its path inside the vault) — so a chunk cannot be moved to another file, a file cannot be
//! swapped for another, reordered, truncated or extended without failing to open.
//!
//! With a random 152-bit prefix per file, files sealed under one key never share a nonce; the
//! 192-bit nonce of XChaCha20 is what makes random prefixes safe.

use std::io::{self, Read, Write};

use aead_stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{KeyInit, Payload};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::SealError;

const MAGIC: &[u8; 8] = b"MSSEAL01";
const PREFIX: usize = 19;
const HEADER: usize = MAGIC.len() + PREFIX;
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// A 256-bit key, wiped when dropped and never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> DataKey {
        DataKey(rand::random())
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey(bytes)
    }

    /// A key from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<DataKey> {
        <[u8; 32]>::try_from(bytes).ok().map(DataKey)
    }

    /// The key's bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// An independent subkey for `label` (HKDF-SHA256 with this key as the pseudorandom key).
    pub fn derive(&self, label: &str) -> DataKey {
        let mut out = [0u8; 32];
        // INVARIANT: a 32-byte key is a valid HKDF PRK for SHA-256 and 32 bytes is far below
        // HKDF's output limit, so neither step can fail; the fallback is never taken.
        match Hkdf::<Sha256>::from_prk(&self.0) {
            Ok(h) => {
                if h.expand(label.as_bytes(), &mut out).is_err() {
                    out = [0u8; 32];
                }
            }
            Err(_) => out = [0u8; 32],
        }
        DataKey(out)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }
}

fn tampered() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, SealError::Tampered)
}

fn aad(header: &[u8], role: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(header.len() + role.len());
    v.extend_from_slice(header);
    v.extend_from_slice(role.as_bytes());
    v
}

/// Seals everything written to it into `inner`. [`SealWriter::finish`] must be called: a file
/// whose writer was dropped without it has no last chunk and will not open.
pub struct SealWriter<W: Write> {
    inner: W,
    enc: Option<EncryptorBE32<XChaCha20Poly1305>>,
    aad: Vec<u8>,
    buf: Zeroizing<Vec<u8>>,
}

impl<W: Write> SealWriter<W> {
    /// Starts a sealed file for `role` under `key`: writes the header.
    pub fn new(mut inner: W, key: &DataKey, role: &str) -> io::Result<SealWriter<W>> {
        let prefix: [u8; PREFIX] = rand::random();
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&prefix);
        inner.write_all(&header)?;
        let enc = EncryptorBE32::from_aead(key.cipher(), (&prefix).into());
        Ok(SealWriter {
            inner,
            enc: Some(enc),
            aad: aad(&header, role),
            buf: Zeroizing::new(Vec::with_capacity(CHUNK)),
        })
    }

    fn seal_full_chunks(&mut self) -> io::Result<()> {
        // Keep up to one full chunk: it may be the last.
        while self.buf.len() > CHUNK {
            let enc = self.enc.as_mut().ok_or_else(tampered)?;
            let ct = enc
                .encrypt_next(Payload {
                    msg: self.buf.get(..CHUNK).unwrap_or_default(),
                    aad: &self.aad,
                })
                .map_err(|_| io::Error::other(SealError::Tampered))?;
            self.inner.write_all(&ct)?;
            self.buf.drain(..CHUNK);
        }
        Ok(())
    }

    /// Seals the last chunk, flushes, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal_full_chunks()?;
        let enc = self.enc.take().ok_or_else(tampered)?;
        let ct = enc
            .encrypt_last(Payload {
                msg: &self.buf,
                aad: &self.aad,
            })
            .map_err(|_| io::Error::other(SealError::Tampered))?;
        self.inner.write_all(&ct)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.seal_full_chunks()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Sealed chunks are written as they fill; the rest waits for `finish`.
        self.inner.flush()
    }
}

/// Opens a sealed file while reading it. Each chunk is authenticated before any of its bytes
/// are returned; a failure is an [`io::ErrorKind::InvalidData`] error carrying
/// [`SealError::Tampered`] (see [`SealError::in_io`]).
pub struct OpenReader<R: Read> {
    inner: R,
    dec: Option<DecryptorBE32<XChaCha20Poly1305>>,
    aad: Vec<u8>,
    /// Ciphertext read ahead.
    pending: Vec<u8>,
    /// Plaintext of the current chunk, and how much of it was returned.
    plain: Zeroizing<Vec<u8>>,
    pos: usize,
    eof: bool,
}

impl<R: Read> OpenReader<R> {
    /// Reads the header of a sealed file for `role` under `key`.
    pub fn new(mut inner: R, key: &DataKey, role: &str) -> io::Result<OpenReader<R>> {
        let mut header = [0u8; HEADER];
        inner.read_exact(&mut header).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    SealError::Format("shorter than a sealed file's header".into()),
                )
            } else {
                e
            }
        })?;
        let (magic, prefix) = header.split_at(MAGIC.len());
        if magic != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                SealError::Format("not a sealed file (bad magic)".into()),
            ));
        }
        let prefix: &[u8; PREFIX] = prefix.try_into().map_err(|_| tampered())?;
        let dec = DecryptorBE32::from_aead(key.cipher(), prefix.into());
        Ok(OpenReader {
            inner,
            dec: Some(dec),
            aad: aad(&header, role),
            pending: Vec::with_capacity(CHUNK + TAG + 1),
            plain: Zeroizing::new(Vec::new()),
            pos: 0,
            eof: false,
        })
    }

    /// Reads and opens the next chunk into `plain`; false at the end of the file.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.dec.is_none() {
            return Ok(false);
        }
        // Read one byte past a full chunk to know whether this chunk is the last.
        while !self.eof && self.pending.len() <= CHUNK + TAG {
            let start = self.pending.len();
            self.pending.resize(CHUNK + TAG + 1, 0);
            let n = match self
                .inner
                .read(self.pending.get_mut(start..).unwrap_or_default())
            {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    self.pending.truncate(start);
                    return Err(e);
                }
            };
            self.pending.truncate(start + n);
            if n == 0 {
                self.eof = true;
            }
        }
        let opened = if self.pending.len() > CHUNK + TAG {
            let dec = self.dec.as_mut().ok_or_else(tampered)?;
            let pt = dec
                .decrypt_next(Payload {
                    msg: self.pending.get(..CHUNK + TAG).unwrap_or_default(),
                    aad: &self.aad,
                })
                .map_err(|_| tampered())?;
            self.pending.drain(..CHUNK + TAG);
            pt
        } else {
            let dec = self.dec.take().ok_or_else(tampered)?;
            let pt = dec
                .decrypt_last(Payload {
                    msg: &self.pending,
                    aad: &self.aad,
                })
                .map_err(|_| tampered())?;
            self.pending.clear();
            pt
        };
        self.plain = Zeroizing::new(opened);
        self.pos = 0;
        Ok(true)
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.plain.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let avail = self.plain.get(self.pos..).unwrap_or_default();
        let n = avail.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

/// Seals a whole byte string for `role` (the same format as [`SealWriter`]).
pub fn seal_bytes(key: &DataKey, role: &str, plaintext: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(plaintext.len() + HEADER + TAG * (1 + plaintext.len() / CHUNK));
    // Writing into a Vec cannot fail, and sealing fails only past 2^32 chunks (256 TiB).
    let sealed = SealWriter::new(out, key, role).and_then(|mut w| {
        w.write_all(plaintext)?;
        w.finish()
    });
    sealed.unwrap_or_default()
}

/// Opens a whole sealed byte string for `role`.
pub fn open_bytes(
    key: &DataKey,
    role: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let mut r = OpenReader::new(sealed, key, role).map_err(into_seal_error)?;
    let mut out = Zeroizing::new(Vec::with_capacity(sealed.len()));
    r.read_to_end(&mut out).map_err(into_seal_error)?;
    Ok(out)
}

fn into_seal_error(e: io::Error) -> SealError {
    match e.into_inner().map(|inner| inner.downcast::<SealError>()) {
        Some(Ok(s)) => *s,
        _ => SealError::Tampered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_around_chunk_boundaries_round_trip() {
        let key = DataKey::generate();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal_bytes(&key, "role", &data);
            let chunks = len.div_ceil(CHUNK).max(1);
            assert_eq!(sealed.len(), HEADER + len + TAG * chunks, "len={len}");
            assert_eq!(
                open_bytes(&key, "role", &sealed).unwrap().as_slice(),
                &data[..]
            );
            // Truncated by a whole chunk, or by a byte: refused.
            if len > CHUNK {
                let cut = &sealed[..HEADER + CHUNK + TAG];
                assert!(matches!(
                    open_bytes(&key, "role", cut),
                    Err(SealError::Tampered)
                ));
            }
            let cut = &sealed[..sealed.len() - 1];
            assert!(matches!(
                open_bytes(&key, "role", cut),
                Err(SealError::Tampered)
            ));
        }
    }

    #[test]
    fn role_key_and_format_are_checked() {
        let key = DataKey::generate();
        let sealed = seal_bytes(&key, "a", b"hello");
        assert!(matches!(
            open_bytes(&key, "b", &sealed),
            Err(SealError::Tampered)
        ));
        let other = DataKey::generate();
        assert!(matches!(
            open_bytes(&other, "a", &sealed),
            Err(SealError::Tampered)
        ));
        assert!(matches!(
            open_bytes(&key, "a", b"plain text file"),
            Err(SealError::Format(_))
        ));
        assert!(matches!(
            open_bytes(&key, "a", b"MSS"),
            Err(SealError::Format(_))
        ));
        // The same plaintext seals differently each time.
        assert_ne!(sealed, seal_bytes(&key, "a", b"hello"));
        assert_ne!(key.derive("x"), key.derive("y"));
        assert_eq!(key.derive("x"), key.derive("x"));
        assert_eq!(format!("{key:?}"), "DataKey(..)");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_flipped_byte_is_detected(len in 0usize..3 * CHUNK, at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let key = DataKey::from_bytes([7; 32]);
            let data: Vec<u8> = (0..len).map(|i| (i % 13) as u8).collect();
            let mut sealed = seal_bytes(&key, "r", &data);
            let i = at.index(sealed.len());
            sealed[i] ^= 1 << bit;
            prop_assert!(open_bytes(&key, "r", &sealed).is_err());
        }

        #[test]
        fn small_reads_and_writes_agree(parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40_000), 0..6), step in 1usize..70_000) {
            let key = DataKey::from_bytes([9; 32]);
            let mut w = SealWriter::new(Vec::new(), &key, "r").unwrap();
            let mut all = Vec::new();
            for p in &parts {
                w.write_all(p).unwrap();
                all.extend_from_slice(p);
            }
            let sealed = w.finish().unwrap();
            let mut r = OpenReader::new(&sealed[..], &key, "r").unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; step];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 { break; }
                got.extend_from_slice(&buf[..n]);
            }
            prop_assert_eq!(got, all);
        }
    }
}
