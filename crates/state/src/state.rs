//! The ledger state: typed access to the authenticated trie.

use crate::error::TxError;
use crate::key_cache::KeyCache;
use crate::records::keys;
use crate::records::*;
use crate::trie::disk::{Committed, NodeStore};
use crate::trie::{Proof, Trie};
use commonware_codec::{Decode, DecodeExt, Encode};
use medspace_types::{
    AccessId, ContractId, GrantId, Hash, JobId, MemberId, Name, PatientId, Policy, ProposalId,
    PublicKey, UserId,
};
use std::sync::Arc;

/// The whole ledger state. Cloning is O(1): the trie is persistent.
///
/// Besides the records, a state holds a [`KeyCache`] of decompressed signer keys for its
/// signature checks: not a record, not in the root, shared by the state's clones (the
/// snapshots a block executes on) and fresh in every [`State::genesis`].
#[derive(Clone, Debug, Default)]
pub struct State {
    pub(crate) trie: Trie,
    /// The chain id, fixed at genesis (a copy of the `META` record, kept at hand because every
    /// transaction checks it).
    pub(crate) chain_id: Option<std::sync::Arc<Name>>,
    /// Signer keys already decompressed: a memo, outside the state proper.
    pub(crate) key_cache: KeyCache,
}

/// The block a transaction executes in: the only clock the state machine reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockContext {
    /// Block height.
    pub height: u64,
    /// Block time, ms since the epoch (agreed by consensus).
    pub time_ms: u64,
}

pub(crate) fn decode<T: Decode<Cfg = ()>>(bytes: &[u8], table: u8) -> Result<T, TxError> {
    T::decode(bytes::Bytes::copy_from_slice(bytes)).map_err(|_| TxError::Corrupt { table })
}

impl State {
    /// The state root: commits to every record.
    pub fn root(&self) -> Hash {
        self.trie.root_hash()
    }

    /// The cache of decompressed signer keys this state (and every clone of it) verifies
    /// signatures with.
    pub fn key_cache(&self) -> &KeyCache {
        &self.key_cache
    }

    /// Replaces the key cache, e.g. with [`KeyCache::new`] to measure a cold start, or with a
    /// node's own cache to share it with admission. Changes no outcome and no root.
    pub fn set_key_cache(&mut self, cache: KeyCache) {
        self.key_cache = cache;
    }

    /// This state with `cache` as its key cache (see [`State::set_key_cache`]).
    pub fn with_key_cache(mut self, cache: KeyCache) -> Self {
        self.key_cache = cache;
        self
    }

    /// A state holding exactly `records` (raw keys and canonically encoded records, in
    /// strictly increasing key order), built in one pass. No rule runs: this is how a verified
    /// checkpoint is restored and how benchmarks build a large state; anything built this way
    /// is trusted only once its root matches a certified one.
    pub fn from_records<K, V>(
        records: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, crate::trie::TrieError>
    where
        K: AsRef<[u8]>,
        V: Into<std::sync::Arc<[u8]>>,
    {
        let mut state = State {
            trie: Trie::from_sorted(records)?,
            ..State::default()
        };
        state.chain_id = state
            .get::<Name>(&keys::chain_id())
            .ok()
            .flatten()
            .map(std::sync::Arc::new);
        Ok(state)
    }

    /// The state `store` had committed when it was opened, read lazily through the store's
    /// cache. Trusted only as far as the store is: a node restarting from its own store still
    /// compares the root with the certified block at that height.
    pub fn from_store(committed: Committed) -> Result<Self, TxError> {
        let mut state = State {
            trie: committed.trie,
            ..State::default()
        };
        state.chain_id = state
            .get::<Name>(&keys::chain_id())?
            .map(std::sync::Arc::new);
        Ok(state)
    }

    /// The state whose root is `root`, read (and written, for blocks executed on it) through
    /// pieces another node serves, each checked against that root ([`crate::trie::remote`]):
    /// a light client's state, whose cost is the records it touches, not the state's size.
    /// Trusted as far as `root` is: take it from a certified header. `len` is reported only.
    pub fn remote(
        root: Hash,
        len: usize,
        nodes: &Arc<crate::trie::remote::RemoteNodes>,
    ) -> Result<Self, TxError> {
        let mut state = State {
            trie: Trie::remote(root, len, nodes),
            ..State::default()
        };
        state.chain_id = state.get::<Name>(&keys::chain_id())?.map(Arc::new);
        Ok(state)
    }

    /// Like [`State::from_records`], but built straight into `store` and committed there at
    /// `height`: memory stays that of the store's cache, whatever the number of records.
    pub fn build_in<K, V>(
        store: &mut NodeStore,
        records: impl IntoIterator<Item = (K, V)>,
        height: u64,
    ) -> Result<Self, TxError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let trie = store.build(records.into_iter().map(Ok), height, None)?;
        Self::from_store(Committed { height, trie })
    }

    /// Writes this state to `store` as its committed state at `height` (only the records that
    /// changed since the state was last written there) and returns the same state — same root,
    /// key cache and chain id — held as one stub into the store, so its memory is the store's
    /// cache's.
    pub fn persist(&self, store: &mut NodeStore, height: u64) -> Result<Self, TxError> {
        Ok(State {
            trie: store.commit(&self.trie, height)?,
            chain_id: self.chain_id.clone(),
            key_cache: self.key_cache.clone(),
        })
    }

    /// Where a light client's state ([`State::remote`]) reads its pieces: how many it read
    /// and their bytes (`None` for a state held here or in a store).
    pub fn pieces(&self) -> Option<&Arc<crate::trie::remote::RemoteNodes>> {
        self.trie.source()
    }

    /// The piece of this state that `at` names, in the wire form a light client's
    /// [`State::remote`] reads.
    pub fn piece(&self, at: crate::trie::remote::Locate<'_>) -> Result<Vec<u8>, TxError> {
        Ok(self.trie.piece(at)?)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    /// Whether the state is empty (before genesis).
    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    /// The raw (canonically encoded) record under `key`.
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, TxError> {
        Ok(self.trie.get(key)?)
    }

    /// The raw record under `key` with its inclusion proof against [`State::root`].
    pub fn prove(&self, key: &[u8]) -> Result<Option<(Vec<u8>, Proof)>, TxError> {
        let Some(value) = self.trie.get(key)? else {
            return Ok(None);
        };
        Ok(self.trie.prove(key)?.map(|proof| (value.to_vec(), proof)))
    }

    /// Every raw record whose key starts with `prefix`, in key order.
    pub fn scan_raw(&self, prefix: &[u8]) -> Result<Vec<crate::trie::Entry>, TxError> {
        Ok(self.trie.scan_prefix(prefix)?)
    }

    /// Calls `f` with every raw record whose key starts with `prefix`, in key order, without
    /// collecting them; stops at the first error.
    pub fn visit_raw(
        &self,
        prefix: &[u8],
        f: impl FnMut(&[u8], &Arc<[u8]>) -> Result<(), TxError>,
    ) -> Result<(), TxError> {
        self.trie.visit_prefix(prefix, f)
    }

    pub(crate) fn get<T: Decode<Cfg = ()>>(&self, key: &[u8]) -> Result<Option<T>, TxError> {
        match self.trie.get(key)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes, key.first().copied().unwrap_or(0)).map(Some),
        }
    }

    /// Calls `f(i, record)` for every `keys[i]` present, reading them together
    /// ([`Trie::visit_many`]); all keys are of one table.
    pub(crate) fn visit_many<T: Decode<Cfg = ()>>(
        &self,
        keys: &[&[u8]],
        mut f: impl FnMut(usize, T),
    ) -> Result<(), TxError> {
        self.trie.visit_many(keys, |i, bytes| {
            let table = keys.get(i).and_then(|k| k.first()).copied().unwrap_or(0);
            f(i, decode(bytes, table)?);
            Ok::<(), TxError>(())
        })
    }

    pub(crate) fn put<T: Encode>(&mut self, key: &[u8], value: &T) -> Result<(), TxError> {
        let mut bytes = Vec::with_capacity(value.encode_size());
        value.write(&mut bytes);
        self.trie.insert(key, bytes).map_err(|_| TxError::Corrupt {
            table: key.first().copied().unwrap_or(0),
        })
    }

    pub(crate) fn delete(&mut self, key: &[u8]) -> Result<(), TxError> {
        self.trie.remove(key)?;
        Ok(())
    }

    pub(crate) fn scan<T: Decode<Cfg = ()>>(&self, prefix: &[u8]) -> Result<Vec<T>, TxError> {
        let mut out = Vec::new();
        self.trie.visit_prefix(prefix, |k, v| {
            out.push(decode(v, k.first().copied().unwrap_or(0))?);
            Ok::<(), TxError>(())
        })?;
        Ok(out)
    }

    /// The chain id.
    pub fn chain_id(&self) -> Result<Name, TxError> {
        self.get(&keys::chain_id())?
            .ok_or(TxError::Corrupt { table: tag::META })
    }

    /// The policy in force.
    pub fn policy(&self) -> Result<Policy, TxError> {
        self.get(&keys::policy())?
            .ok_or(TxError::Corrupt { table: tag::META })
    }

    /// Who a key belongs to.
    pub fn key_record(&self, key: &PublicKey) -> Result<Option<KeyRecord>, TxError> {
        self.get(&keys::principal(key))
    }

    /// The next nonce a key must use.
    pub fn next_nonce(&self, key: &PublicKey) -> Result<u64, TxError> {
        Ok(self.key_record(key)?.map_or(0, |r| r.nonce))
    }

    /// A member.
    pub fn member(&self, id: &MemberId) -> Result<Option<MemberRecord>, TxError> {
        self.get(&keys::member(id))
    }

    /// Every member, active or not.
    pub fn members(&self) -> Result<Vec<MemberRecord>, TxError> {
        self.scan(&[tag::MEMBER])
    }

    /// A member's credits.
    pub fn balance(&self, id: &MemberId) -> Result<u64, TxError> {
        Ok(self.get::<u64>(&keys::balance(id))?.unwrap_or(0))
    }

    /// A user.
    pub fn user(&self, id: &UserId) -> Result<Option<UserRecord>, TxError> {
        self.get(&keys::user(id))
    }

    /// Every user.
    pub fn users(&self) -> Result<Vec<UserRecord>, TxError> {
        self.scan(&[tag::USER])
    }

    /// A patient.
    pub fn patient(&self, id: &PatientId) -> Result<Option<PatientRecord>, TxError> {
        self.get(&keys::patient(id))
    }

    /// A grant.
    pub fn grant(&self, id: GrantId) -> Result<Option<GrantRecord>, TxError> {
        self.get(&keys::grant(id))
    }

    /// A catalog entry.
    pub fn dataset(
        &self,
        id: &medspace_types::DatasetId,
    ) -> Result<Option<DatasetRecord>, TxError> {
        self.get(&keys::dataset(id))
    }

    /// The whole catalog.
    pub fn datasets(&self) -> Result<Vec<DatasetRecord>, TxError> {
        self.scan(&[tag::DATASET])
    }

    /// A study's registration.
    pub fn study(&self, id: &medspace_types::StudyId) -> Result<Option<StudyRecord>, TxError> {
        self.get(&keys::study(id))
    }

    /// A dataset's lifetime epsilon account (empty before its first job).
    pub fn dataset_epsilon(
        &self,
        id: &medspace_types::DatasetId,
    ) -> Result<EpsilonAccount, TxError> {
        Ok(self.get(&keys::dataset_epsilon(id))?.unwrap_or_default())
    }

    /// A contract.
    pub fn contract(&self, id: ContractId) -> Result<Option<ContractRecord>, TxError> {
        self.get(&keys::contract(id))
    }

    /// Every contract.
    pub fn contracts(&self) -> Result<Vec<ContractRecord>, TxError> {
        self.scan(&[tag::CONTRACT])
    }

    /// A job.
    pub fn job(&self, id: JobId) -> Result<Option<JobRecord>, TxError> {
        self.get(&keys::job(id))
    }

    /// Every job.
    pub fn jobs(&self) -> Result<Vec<JobRecord>, TxError> {
        self.scan(&[tag::JOB])
    }

    /// An access record.
    pub fn access(&self, id: AccessId) -> Result<Option<AccessRecord>, TxError> {
        self.get(&keys::access(id))
    }

    /// A proposal.
    pub fn proposal(&self, id: ProposalId) -> Result<Option<ProposalRecord>, TxError> {
        self.get(&keys::proposal(id))
    }

    /// Every proposal.
    pub fn proposals(&self) -> Result<Vec<ProposalRecord>, TxError> {
        self.scan(&[tag::PROPOSAL])
    }
}
