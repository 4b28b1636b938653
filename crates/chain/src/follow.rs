//! Following the chain without voting: what an observer node (a regulator's, say), the audit and
//! a client that wants verified state all do.
//!
//! A follower trusts nothing but the genesis file. For each height it takes the finalized block
//! and its finalization certificate (from a validator's `GET /v1/blocks/{height}/raw`, or from
//! storage) and [`ChainCheck::check`]s that the block is the next one — height, parent digest,
//! time after its parent — and that the certificate is a quorum certificate of the genesis
//! validators over that block's digest. Re-executing the block to the root in its header is the
//! caller's part (it owns the application state), after which [`ChainCheck::advance`] moves on.
//!
//! The wire form of a finalized block is the block's encoding followed by the certificate's
//! ([`encode_finalized`] / [`ChainCheck::decode`]); decoding rejects trailing bytes.

use crate::{
    block::{Block, BlockLimits, HEADER_SIZE, Header},
    engine::{BlockFinalization, Scheme},
    genesis::Genesis,
};
use bytes::Bytes;
use commonware_codec::{Encode as _, Read as _};
use commonware_cryptography::certificate::Verifier as _;
use commonware_cryptography::sha256::Digest;
use commonware_parallel::Sequential;
use commonware_utils::ordered::Set;

/// Why a follower could not go on.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FollowError {
    /// The genesis file does not describe a usable validator set.
    #[error("invalid genesis: {0}")]
    Genesis(String),
    /// The bytes are not a finalized block.
    #[error("finalized block at height={height} does not decode: {reason}")]
    Decode {
        /// Height asked for.
        height: u64,
        /// Codec error.
        reason: String,
    },
    /// The block or its certificate is not the valid next block.
    #[error("finalized block at height={height} rejected: {reason}")]
    Invalid {
        /// Height of the block.
        height: u64,
        /// What is wrong.
        reason: String,
    },
    /// No source could be reached.
    #[error("no validator answered for height={height}: {reason}")]
    Unreachable {
        /// Height asked for.
        height: u64,
        /// The last transport error.
        reason: String,
    },
}

/// Encodes a finalized block for the wire or a log: block, then certificate.
pub fn encode_finalized(block: &Block, fin: &BlockFinalization) -> Vec<u8> {
    let mut out = block.encode().to_vec();
    out.extend_from_slice(&fin.encode());
    out
}

/// Encodes a finalized block that has no finality certificate of its own (simplex finalized it
/// through a later block's): the block alone. It is final once a later block with a valid
/// certificate links back to it ([`ChainCheck::decode_entry`] tells the two forms apart).
pub fn encode_linked(block: &Block) -> Vec<u8> {
    block.encode().to_vec()
}

/// Encodes a certified header for light clients: the header's fixed-width bytes, then the
/// finality certificate over its digest.
pub fn encode_certified_header(header: &Header, fin: &BlockFinalization) -> Vec<u8> {
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(&fin.encode());
    out
}

/// Checks single headers certified by the genesis validators: what a light client (a patient's
/// app) needs to trust a state root without the blocks' transactions. A header with a valid
/// finality certificate of a quorum of the genesis validators is final; the state root in it
/// then anchors inclusion proofs.
pub struct HeaderCheck {
    verifier: Scheme,
}

impl HeaderCheck {
    /// The check for `genesis`'s validators.
    pub fn new(genesis: &Genesis) -> Result<Self, FollowError> {
        let validators = genesis.validator_keys().map_err(FollowError::Genesis)?;
        let participants =
            Set::try_from(validators).map_err(|e| FollowError::Genesis(format!("{e:?}")))?;
        Ok(Self {
            verifier: Scheme::verifier(genesis.chain_id.as_bytes(), participants),
        })
    }

    /// The header at `height` in `raw` (the form of [`encode_certified_header`]), if its
    /// certificate is a quorum certificate of the genesis validators over it.
    pub fn verify(&self, height: u64, raw: &[u8]) -> Result<Header, FollowError> {
        self.verify_certified(height, raw).map(|(header, _)| header)
    }

    /// [`HeaderCheck::verify`], returning the certificate too (what a validator joining by
    /// state sync starts marshal and simplex from).
    pub fn verify_certified(
        &self,
        height: u64,
        raw: &[u8],
    ) -> Result<(Header, BlockFinalization), FollowError> {
        let err = |reason: String| FollowError::Decode { height, reason };
        let (head, rest) = raw
            .split_first_chunk::<HEADER_SIZE>()
            .ok_or_else(|| err(format!("{} bytes, shorter than a header", raw.len())))?;
        let header = Header::from_bytes(head);
        let mut buf = Bytes::copy_from_slice(rest);
        let fin = BlockFinalization::read_cfg(&mut buf, &self.verifier.certificate_codec_config())
            .map_err(|e| err(e.to_string()))?;
        if !buf.is_empty() {
            return Err(err(format!("{} trailing bytes", buf.len())));
        }
        let invalid = |reason: &str| FollowError::Invalid {
            height,
            reason: reason.into(),
        };
        if header.height != height {
            return Err(invalid("header of another height"));
        }
        if fin.proposal.payload != header.digest() {
            return Err(invalid("finality certificate is for a different block"));
        }
        if !fin.verify(&mut rand::rng(), &self.verifier, &Sequential) {
            return Err(invalid("finality certificate signature invalid"));
        }
        Ok((header, fin))
    }
}

/// The chain of blocks verified so far: the validator set, and the digest, time and height of
/// the last verified block.
#[derive(Clone)]
pub struct ChainCheck {
    verifier: Scheme,
    limits: BlockLimits,
    prev: Digest,
    prev_time: u64,
    height: u64,
}

impl ChainCheck {
    /// Starts at genesis: `genesis_root` is the application's state root at genesis.
    pub fn new(genesis: &Genesis, genesis_root: [u8; 32]) -> Result<Self, FollowError> {
        let validators = genesis.validator_keys().map_err(FollowError::Genesis)?;
        let participants =
            Set::try_from(validators).map_err(|e| FollowError::Genesis(format!("{e:?}")))?;
        let verifier = Scheme::verifier(genesis.chain_id.as_bytes(), participants);
        let genesis_block = Block::genesis(&genesis.chain_id, genesis_root);
        Ok(Self {
            verifier,
            // A follower accepts whatever the validators finalized; their own limits bounded it.
            limits: BlockLimits {
                max_txs: usize::MAX / 4,
                max_tx_bytes: usize::MAX / 4,
                max_block_bytes: usize::MAX / 4,
            },
            prev: genesis_block.header.digest(),
            prev_time: 0,
            height: 0,
        })
    }

    /// Starts after the block whose certified header is `raw` (the form of
    /// [`encode_certified_header`]) at `height`, once its certificate checks against the genesis
    /// validators: what a follower does that restores that block's state from a checkpoint
    /// instead of replaying the chain up to it. Returns the check and the header.
    pub fn from_certified(
        genesis: &Genesis,
        height: u64,
        raw: &[u8],
    ) -> Result<(Self, Header), FollowError> {
        let header = HeaderCheck::new(genesis)?.verify(height, raw)?;
        let mut check = Self::new(genesis, [0; 32])?;
        check.prev = header.digest();
        check.prev_time = header.time_ms;
        check.height = header.height;
        Ok((check, header))
    }

    /// Height of the last verified block (0 at genesis).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Digest of the last verified block.
    pub fn last_digest(&self) -> Digest {
        self.prev
    }

    /// The certificate codec configuration (for reading stored certificates).
    pub fn certificate_config(&self) -> <BlockFinalization as commonware_codec::Read>::Cfg {
        self.verifier.certificate_codec_config()
    }

    /// Decodes a finalized block in the form of [`encode_finalized`].
    pub fn decode(
        &self,
        height: u64,
        raw: &[u8],
    ) -> Result<(Block, BlockFinalization), FollowError> {
        match self.decode_entry(height, raw)? {
            (block, Some(fin)) => Ok((block, fin)),
            (_, None) => Err(FollowError::Decode {
                height,
                reason: "no finality certificate after the block".into(),
            }),
        }
    }

    /// Decodes a finalized block in either form a validator serves or an observer logs: with
    /// its certificate ([`encode_finalized`]) or alone ([`encode_linked`]). The block decodes
    /// first and exactly; what follows is its certificate, or nothing.
    pub fn decode_entry(
        &self,
        height: u64,
        raw: &[u8],
    ) -> Result<(Block, Option<BlockFinalization>), FollowError> {
        let err = |reason: String| FollowError::Decode { height, reason };
        let mut buf = Bytes::copy_from_slice(raw);
        let block = Block::read_cfg(&mut buf, &self.limits).map_err(|e| err(e.to_string()))?;
        if buf.is_empty() {
            return Ok((block, None));
        }
        let fin = BlockFinalization::read_cfg(&mut buf, &self.certificate_config())
            .map_err(|e| err(e.to_string()))?;
        if !buf.is_empty() {
            return Err(err(format!("{} trailing bytes", buf.len())));
        }
        Ok((block, Some(fin)))
    }

    /// Checks that `block`, certified by `fin`, is the next block of the chain (it does not
    /// execute it). Nothing changes.
    pub fn check(&self, block: &Block, fin: &BlockFinalization) -> Result<(), FollowError> {
        self.check_link(block)?;
        let invalid = |reason: String| FollowError::Invalid {
            height: self.height + 1,
            reason,
        };
        if fin.proposal.payload != block.header.digest() {
            return Err(invalid(
                "finality certificate is for a different block".into(),
            ));
        }
        if !fin.verify(&mut rand::rng(), &self.verifier, &Sequential) {
            return Err(invalid("finality certificate signature invalid".into()));
        }
        Ok(())
    }

    /// Checks that `block` links to the chain as its next block (height, parent digest, time),
    /// without a certificate of its own: it is final only once a later block that links back to
    /// it carries a valid finality certificate. Nothing changes.
    pub fn check_link(&self, block: &Block) -> Result<(), FollowError> {
        let h = self.height + 1;
        let invalid = |reason: String| FollowError::Invalid { height: h, reason };
        if block.header.height != h {
            return Err(invalid(format!("block has height={}", block.header.height)));
        }
        if block.header.parent != self.prev {
            return Err(invalid(
                "parent digest does not link to the previous block".into(),
            ));
        }
        if block.header.time_ms <= self.prev_time {
            return Err(invalid("block time not after parent".into()));
        }
        Ok(())
    }

    /// Records `block` (already checked and executed) as the last verified block.
    pub fn advance(&mut self, block: &Block) {
        self.prev = block.header.digest();
        self.prev_time = block.header.time_ms;
        self.height = block.header.height;
    }
}

/// How long one fetch of a block may take (its wait at the validator included).
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Signs a follower's requests to a node: the chain knows no identities, so the application's
/// client says who is asking (see [`crate::api::ReadGate`]).
pub trait RequestSigner: Send + Sync + 'static {
    /// The `authorization` header of a `GET` of `path_and_query` at the node named
    /// `audience`.
    fn authorization(&self, audience: &str, path_and_query: &str) -> String;
}

/// Fetches finalized blocks (or certified headers) from validators' HTTP APIs, trying each in
/// turn.
#[derive(Clone)]
pub struct HttpSource {
    /// `None` only if even a client trusting nothing could not be built: every fetch then
    /// fails as `Unreachable`.
    client: Option<reqwest::Client>,
    /// Each validator's name (the audience of signed requests) and API base URL.
    nodes: Vec<(String, String)>,
    signer: Option<std::sync::Arc<dyn RequestSigner>>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HttpSource {
    /// A source over the given plain-HTTP API base URLs (e.g. `http://127.0.0.1:7500`), whose
    /// requests are not signed, with a client that trusts no certificate
    /// ([`crate::tls::plain_client`]). Nodes whose certificates the genesis pins are followed
    /// with [`HttpSource::from_genesis`].
    pub fn new(urls: Vec<String>) -> Self {
        Self::named(urls.into_iter().map(|u| (String::new(), u)).collect())
    }

    /// A source over `(name, plain-HTTP base URL)` of each validator.
    pub fn named(nodes: Vec<(String, String)>) -> Self {
        // Building a client with no certificates reads nothing from outside; should it fail
        // anyway, the source answers every fetch with `Unreachable`.
        let client = crate::tls::plain_client(FETCH_TIMEOUT)
            .inspect_err(|e| tracing::error!(error = %e, "chain.follow: no http client"))
            .ok();
        Self {
            client,
            nodes,
            signer: None,
            next: Default::default(),
        }
    }

    /// A source over `(name, base URL)` of each validator through `client` (e.g. a
    /// [`crate::tls::client`] pinning the genesis certificates).
    pub fn with_client(client: reqwest::Client, nodes: Vec<(String, String)>) -> Self {
        Self {
            client: Some(client),
            nodes,
            signer: None,
            next: Default::default(),
        }
    }

    /// The validators of a genesis file, reached over TLS with the certificates it pins
    /// ([`crate::tls::client`], [`crate::tls::node_url`]).
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, FollowError> {
        let client = crate::tls::client(genesis, FETCH_TIMEOUT)
            .map_err(|e| FollowError::Genesis(e.to_string()))?;
        Ok(Self::with_client(
            client,
            genesis
                .validators
                .iter()
                .map(|v| (v.name.clone(), crate::tls::node_url(v)))
                .collect(),
        ))
    }

    /// The same source, its requests signed by `signer`.
    pub fn signed_by(mut self, signer: std::sync::Arc<dyn RequestSigner>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Makes the next fetch start at the next validator (after one served something invalid).
    pub fn skip(&self) {
        use std::sync::atomic::Ordering;
        let n = self.nodes.len().max(1);
        let cur = self.next.load(Ordering::Relaxed);
        self.next.store((cur + 1) % n, Ordering::Relaxed);
    }

    /// The finalized block at `height`, waiting up to `wait_ms` at the validator for it to be
    /// finalized. `Ok(None)`: not finalized yet at any reachable validator.
    pub async fn fetch(&self, height: u64, wait_ms: u64) -> Result<Option<Bytes>, FollowError> {
        self.fetch_part(height, "raw", wait_ms).await
    }

    /// The certified header at `height` ([`encode_certified_header`]), waiting as
    /// [`HttpSource::fetch`] does.
    pub async fn fetch_header(
        &self,
        height: u64,
        wait_ms: u64,
    ) -> Result<Option<Bytes>, FollowError> {
        self.fetch_part(height, "header", wait_ms).await
    }

    /// A validator's checkpoint of its committed state (`GET /v1/checkpoint`), unverified: the
    /// caller checks it against the certified header of its height. `None` when no validator
    /// keeps checkpoints.
    pub async fn fetch_checkpoint(&self) -> Result<Option<Bytes>, FollowError> {
        self.get(0, 0, |_| "/v1/checkpoint".to_string()).await
    }

    /// [`HttpSource::fetch_checkpoint`] as it arrives: the first validator that answers, its
    /// body read a chunk at a time ([`CheckpointStream`]), so that a joining node holds one
    /// chunk, not the checkpoint. The transfer may take as long as the state's size needs; a
    /// validator that sends nothing for [`FETCH_TIMEOUT`] ends it.
    pub async fn open_checkpoint(&self) -> Result<Option<CheckpointStream>, FollowError> {
        let path = |_| "/v1/checkpoint".to_string();
        Ok(self
            .ask(0, 0, path, Want::Response)
            .await?
            .and_then(|answer| match answer {
                Answer::Response(response, from) => Some(CheckpointStream { response, from }),
                Answer::Body(_) => None,
            }))
    }

    async fn fetch_part(
        &self,
        height: u64,
        part: &str,
        wait_ms: u64,
    ) -> Result<Option<Bytes>, FollowError> {
        self.get(height, wait_ms, |wait| {
            format!("/v1/blocks/{height}/{part}?wait_ms={wait}")
        })
        .await
    }

    /// `GET`s the path `path(wait)` from each validator in turn (waiting `wait_ms` at the first
    /// only) until one answers with a body; `height` only names what was asked in errors.
    async fn get(
        &self,
        height: u64,
        wait_ms: u64,
        path: impl Fn(u64) -> String,
    ) -> Result<Option<Bytes>, FollowError> {
        Ok(self
            .ask(height, wait_ms, path, Want::Body)
            .await?
            .and_then(|answer| match answer {
                Answer::Body(body) => Some(body),
                Answer::Response(..) => None,
            }))
    }

    /// [`HttpSource::get`], giving what `want` says: the body read whole (a validator whose body
    /// fails is passed over like one that does not answer), or the first successful response,
    /// its body unread.
    async fn ask(
        &self,
        height: u64,
        wait_ms: u64,
        path: impl Fn(u64) -> String,
        want: Want,
    ) -> Result<Option<Answer>, FollowError> {
        use std::sync::atomic::Ordering;
        let n = self.nodes.len().max(1);
        let start = self.next.load(Ordering::Relaxed);
        let mut last = String::from("no validator urls");
        let mut reached = false;
        let Some(client) = &self.client else {
            return Err(FollowError::Unreachable {
                height,
                reason: "no http client".into(),
            });
        };
        for i in 0..n {
            let Some((name, url)) = self.nodes.get((start + i) % n) else {
                break;
            };
            // Wait at the first validator only; the others are asked without waiting.
            let wait = if i == 0 { wait_ms } else { 0 };
            let path = path(wait);
            let mut req = client.get(format!("{url}{path}"));
            if let Some(s) = &self.signer {
                req = req.header("authorization", s.authorization(name, &path));
            }
            if want == Want::Response {
                req = req.timeout(STREAM_TIMEOUT);
            }
            let answer = req.send().await;
            match answer {
                Ok(r) if r.status().is_success() && want == Want::Response => {
                    self.next.store((start + i) % n, Ordering::Relaxed);
                    return Ok(Some(Answer::Response(r, url.clone())));
                }
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(b) => {
                        self.next.store((start + i) % n, Ordering::Relaxed);
                        return Ok(Some(Answer::Body(b)));
                    }
                    Err(e) => last = format!("{url}: {e}"),
                },
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => reached = true,
                Ok(r) => last = format!("{url}: status {}", r.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
            // Next time start with the next validator (spreads load, skips a dead one).
            self.next.store((start + i + 1) % n, Ordering::Relaxed);
        }
        if reached {
            Ok(None)
        } else {
            Err(FollowError::Unreachable {
                height,
                reason: last,
            })
        }
    }
}

/// What [`HttpSource::ask`] is to give.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Body,
    Response,
}

enum Answer {
    Body(Bytes),
    /// A successful response, its body unread, and the URL that gave it.
    Response(reqwest::Response, String),
}

/// The longest a streamed transfer may take in all (a checkpoint of a large state); each chunk
/// must still come within [`FETCH_TIMEOUT`] of the one before.
const STREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// A validator's checkpoint arriving ([`HttpSource::open_checkpoint`]), unverified.
pub struct CheckpointStream {
    response: reqwest::Response,
    from: String,
}

impl CheckpointStream {
    /// The next piece of the checkpoint, or `None` at its end. A validator that sends nothing
    /// for [`FETCH_TIMEOUT`], or whose transfer fails, ends it with an error.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FollowError> {
        let failed = |reason: String| FollowError::Unreachable { height: 0, reason };
        match tokio::time::timeout(FETCH_TIMEOUT, self.response.chunk()).await {
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(e)) => Err(failed(format!("{}: {e}", self.from))),
            Err(_) => Err(failed(format!(
                "{}: nothing received for {} s",
                self.from,
                FETCH_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// An observer's durable record of the chain: an append-only file of finalized blocks, one
/// entry per height in order (`u32 length | encode_finalized bytes | first 8 bytes of their
/// SHA-256`), synced after each append.
///
/// On open, an incomplete last entry (a crash mid-append) is cut off; any other damage is an
/// error naming the height, so a node never starts on a log it cannot trust. Every entry is
/// verified again (certificate, links, re-execution) when replayed, so the checksum only has to
/// tell a torn write from a complete one.
pub struct BlockLog {
    file: std::fs::File,
    path: std::path::PathBuf,
}

/// Why a block log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Reading or writing failed.
    #[error("block log {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        error: String,
    },
    /// An entry's checksum does not match its bytes.
    #[error("block log {path}: entry for height={height} is corrupt (checksum mismatch)")]
    Corrupt {
        /// The file.
        path: String,
        /// The height of the damaged entry.
        height: u64,
    },
}

const LOG_SUM: usize = 8;

fn log_sum(bytes: &[u8]) -> [u8; LOG_SUM] {
    use sha2::Digest as _;
    let d: [u8; 32] = sha2::Sha256::digest(bytes).into();
    let mut out = [0u8; LOG_SUM];
    out.copy_from_slice(&d[..LOG_SUM]);
    out
}

impl BlockLog {
    /// Opens (creating it if absent) the log at `path` and returns it with its entries in
    /// height order (entry `i` is height `i + 1`).
    pub fn open(path: &std::path::Path) -> Result<(Self, Vec<Vec<u8>>), LogError> {
        let io = |e: std::io::Error| LogError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let (entries, complete, corrupt) = Self::parse(&data);
        if let Some(height) = corrupt {
            return Err(LogError::Corrupt {
                path: path.display().to_string(),
                height,
            });
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if complete < data.len() {
            tracing::warn!(
                path = %path.display(),
                dropped = data.len() - complete,
                "chain.follow.log: incomplete last entry cut off"
            );
            file.set_len(complete as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
            },
            entries,
        ))
    }

    /// Reads a log without opening it for writing (for audits): the entries before any damage,
    /// and the height of the first damaged entry if there is one.
    pub fn read(path: &std::path::Path) -> Result<(Vec<Vec<u8>>, Option<u64>), LogError> {
        let data = std::fs::read(path).map_err(|e| LogError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        let (entries, _, corrupt) = Self::parse(&data);
        Ok((entries, corrupt))
    }

    /// Entries, the length of the complete prefix, and the height of a corrupt entry.
    fn parse(data: &[u8]) -> (Vec<Vec<u8>>, usize, Option<u64>) {
        let mut entries = Vec::new();
        let mut at = 0usize;
        while let Some(len) = data
            .get(at..at.saturating_add(4))
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
        {
            // An entry running past the end of the address space runs past the end of the
            // file: a torn entry, like one running past the end of the data.
            let body_at = at.saturating_add(4);
            let Some(sum_at) = body_at.checked_add(len) else {
                break;
            };
            let Some(end) = sum_at.checked_add(LOG_SUM) else {
                break;
            };
            let (Some(body), Some(sum)) = (data.get(body_at..sum_at), data.get(sum_at..end)) else {
                break;
            };
            if log_sum(body) != sum {
                let corrupt = entries.len() as u64 + 1;
                return (entries, at, Some(corrupt));
            }
            entries.push(body.to_vec());
            at = end;
        }
        (entries, at, None)
    }

    /// Appends the next finalized block and syncs it to disk.
    pub fn append(&mut self, raw: &[u8]) -> Result<(), LogError> {
        use std::io::Write as _;
        let io = |e: std::io::Error| LogError::Io {
            path: self.path.display().to_string(),
            error: e.to_string(),
        };
        let len = u32::try_from(raw.len()).map_err(|_| LogError::Io {
            path: self.path.display().to_string(),
            error: format!("entry too large: len={}", raw.len()),
        })?;
        let mut entry = Vec::with_capacity(4 + raw.len() + LOG_SUM);
        entry.extend_from_slice(&len.to_be_bytes());
        entry.extend_from_slice(raw);
        entry.extend_from_slice(&log_sum(raw));
        self.file.write_all(&entry).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries_after_append() -> Vec<Vec<u8>> {
        vec![
            b"first".to_vec(),
            b"second block".to_vec(),
            b"third".to_vec(),
        ]
    }

    #[test]
    fn block_log_round_trips_cuts_a_torn_tail_and_names_a_corrupt_entry() {
        let dir = std::env::temp_dir().join(format!("medspace-blocklog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("observed.log");
        let (mut log, entries) = BlockLog::open(&path).unwrap();
        assert!(entries.is_empty());
        log.append(b"first").unwrap();
        log.append(b"second block").unwrap();
        drop(log);
        // A crash mid-append: half an entry at the end.
        let mut data = std::fs::read(&path).unwrap();
        let full = data.len();
        data.extend_from_slice(&[0, 0, 0, 9, b'x']);
        std::fs::write(&path, &data).unwrap();
        let (mut log, entries) = BlockLog::open(&path).unwrap();
        assert_eq!(entries, vec![b"first".to_vec(), b"second block".to_vec()]);
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, full);
        log.append(b"third").unwrap();
        drop(log);
        assert_eq!(
            BlockLog::read(&path).unwrap(),
            (entries_after_append(), None)
        );
        // A flipped byte inside the second entry is named, not silently dropped.
        let mut data = std::fs::read(&path).unwrap();
        data[4 + 5 + LOG_SUM + 4 + 2] ^= 1;
        std::fs::write(&path, &data).unwrap();
        assert_eq!(
            BlockLog::read(&path).unwrap(),
            (vec![b"first".to_vec()], Some(2))
        );
        match BlockLog::open(&path) {
            Err(LogError::Corrupt { height, .. }) => assert_eq!(height, 2),
            other => panic!(
                "expected corrupt entry, got {:?}",
                other.map(|(_, e)| e.len())
            ),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
