//! `medspace bench state`: the ledger state at registry scale — bytes per record in memory
//! and on disk, peak memory, restart and state-sync time from a checkpoint — and a worker's
//! plan of a job over a million linked patients on that state.
//!
//! The state starts as a real consortium (the default devnet's genesis) moved forward by
//! signed transactions through [`State::apply`]: `hospital-a` publishes its CDM catalog entry,
//! the research institute's request for a study (a research compute contract over that
//! entry) is approved by every reviewer its level needs, and a job is submitted under it.
//!
//! The bulk is then written directly, as the rules would have written it, with the real record
//! types and keys: per patient the records `RegisterPatient` writes (the patient and its key's
//! principal) and three consents (research broad allow, research for the contract's study —
//! one patient in five denies it — and public health), each with the log entry `SetConsent`
//! appends; per grant the grant and its `GrantIssued` log entry; per access the access record
//! and its `Accessed` log entry, its grant's use counted. Every bulk transaction happened in a
//! block before the job's. The records of each table are produced in key order and merged
//! with the consortium's records into one stream that [`State::from_records`] builds in one
//! pass, so what stays in memory is the state (and one sorted index of the patients while it
//! builds).
//!
//! Measured: the build, the resident memory it added (`VmRSS` after minus before), the
//! checkpoint ([`checkpoint::encode`]), its write with fsync, and restoring it — reading the file
//! and [`checkpoint::decode`], which checks the checksum, rebuilds the trie and verifies the root:
//! what a validator does on restart and a follower on state sync — against reading the same
//! file raw. On the restored state, `hospital-a` links patients to local person ids and plans
//! the job ([`plan_job`]: contract, scope and each linked patient's consent at the job's height)
//! against the same loop of raw consent lookups without decoding or policy.

use crate::links::{LinkError, Links};
use crate::plan::{PlanError, plan_job, side_reads};
use medspace_consortium::{Consortium, ConsortiumError, GENESIS_MS};
use medspace_state::checkpoint::{self, CheckpointError};
use medspace_state::records::{
    AccessRecord, ConsentChange, ConsentEvent, ConsentRecord, ConsentState, ContractStatus,
    GrantRecord, KeyRecord, LogEntry, PatientEvent, PatientRecord, Principal, encode_record, keys,
    tag,
};
use medspace_state::trie::TrieError;
use medspace_state::trie::disk::NodeStore;
use medspace_state::{BlockContext, Created, GenesisError, State, TxError};
use medspace_types::classification::Classification;
use medspace_types::query::{self, QueryError, QuerySpec};
use medspace_types::{
    AccessBasis, AccessId, Approve, Blob, DatasetDescription, DatasetId, FieldDesc, FieldRef,
    GrantId, Hash, IssueGrant, JobId, Keypair, List, MemberId, Mode, Name, PatientId, Payload,
    PublicKey, PublishDataset, Purpose, SignedTx, StudyId, SubmitJob, SubmitRequest, TableDesc,
    Text, TypeError, UserId,
};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The hospital whose patients the bulk is, and whose worker plans the job.
pub const HOSPITAL: &str = "hospital-a";
/// The hospital the grants and accesses deliver records to.
const RECIPIENT: &str = "hospital-b";
/// The contract's study (its study-specific consents are what one patient in five denies).
const STUDY: &str = "t2d-outcomes-2026";
/// The job: persons with type 2 diabetes by sex and 10-year age band.
pub const SPEC: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex","age_band"]}"#;
/// The purpose of each patient's third consent.
const THIRD_PURPOSE: Purpose = Purpose::PublicHealth;
/// The issue's sizes, for the extrapolated line.
pub const ISSUE_PATIENTS: u64 = 10_000_000;
/// The issue's grants.
pub const ISSUE_GRANTS: u64 = 1_000_000;
/// The issue's accesses.
pub const ISSUE_ACCESSES: u64 = 10_000_000;
/// The plan's target: 1 s for 1,000,000 linked patients.
pub const PLAN_TARGET_S: f64 = 1.0;
/// Linked patients the target is stated for.
pub const PLAN_TARGET_LINKED: u64 = 1_000_000;
/// Timed runs of the plan and of its baseline.
const PLAN_RUNS: usize = 3;
/// Policy decodes timed for the plan's breakdown.
pub const POLICY_SAMPLES: u32 = 10_000;
/// Records between two progress reports of the build.
const PROGRESS_EVERY: u64 = 1 << 20;
/// The checkpoint's file name under the work directory.
pub const CHECKPOINT_FILE: &str = "state.ckpt";

const DAY_MS: u64 = 24 * 3600 * 1000;
/// Consortium seed (the default devnet's keys).
const SEED: u64 = 1;

/// The key a light client reads the state as (a researcher of the default devnet).
const LIGHT_READER: &str = "research-1.researcher";

/// What to build and measure.
#[derive(Clone, Debug)]
pub struct StateOptions {
    /// Registered patients (three consents each).
    pub patients: u64,
    /// Grants, spread over the patients.
    pub grants: u64,
    /// Record accesses, each under a grant.
    pub accesses: u64,
    /// Patients linked to local person ids at `hospital-a` (the plan's linked patients; at most
    /// `patients`).
    pub linked: u64,
    /// Where the checkpoint (and, on disk, the state stores) are written.
    pub dir: PathBuf,
    /// `Some(cache bytes)`: the state is built into an on-disk store ([`NodeStore`]) and read
    /// through a node cache of that size, as a validator keeps it; `None`: whole in memory.
    pub store_cache: Option<usize>,
}

/// A light client's command on the built state, over a node's read API (measured by the
/// caller's probe, which serves the state and reads it in pieces; see [`LightProbe`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LightFigures {
    /// What the command is.
    pub command: String,
    /// Its runs, seconds each (a fresh client every run: pin, then reads in pieces).
    pub runs: Vec<f64>,
    /// Pieces one run fetched.
    pub pieces: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Measures [`LightFigures`] on a state at a height, reading as a key of the consortium.
pub type LightProbe<'a> = dyn Fn(&State, u64, &Keypair) -> Result<LightFigures, String> + 'a;

/// What the on-disk run measures beyond the in-memory one.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredFigures {
    /// The node cache the state is read through, bytes (the setting that bounds memory).
    pub cache_bytes: usize,
    /// The store's node file after the build, bytes.
    pub store_bytes: u64,
    /// Seconds to open the store again and read the state's chain id: a validator's restart
    /// before it replays the blocks after the store's height.
    pub restart_s: f64,
    /// The synced store's node file, bytes (the state sync's build).
    pub synced_bytes: u64,
    /// Resident memory (KiB) just before the checkpoint's stream-out, and its peak over it
    /// (VmHWM reset at its start), when the kernel reports them.
    pub write_memory_kib: Option<(u64, u64)>,
    /// The same for the state sync (the checkpoint streamed into a new store).
    pub sync_memory_kib: Option<(u64, u64)>,
    /// Nodes read from the file and found in the cache by the plan's runs.
    pub plan_reads: (u64, u64),
}

/// Why the benchmark could not run (or its checks failed).
#[derive(Debug, thiserror::Error)]
pub enum BenchStateError {
    /// The options are out of range.
    #[error("invalid option: {0}")]
    Options(String),
    /// Building the consortium failed.
    #[error(transparent)]
    Consortium(#[from] ConsortiumError),
    /// A value does not fit its type.
    #[error(transparent)]
    Type(#[from] TypeError),
    /// The genesis is not valid.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// A setup transaction was refused, or the state could not be read.
    #[error("{step}: {source}")]
    Ledger {
        /// What was being done.
        step: &'static str,
        /// The refusal.
        source: TxError,
    },
    /// The job's specification is not valid.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The records do not build a trie (out of order or repeated keys).
    #[error("building the state: {0}")]
    Trie(#[from] TrieError),
    /// The checkpoint was refused.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Writing or reading the checkpoint failed.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Linking the patients failed.
    #[error(transparent)]
    Links(#[from] LinkError),
    /// The worker refused to plan the job.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A figure the benchmark checks is wrong.
    #[error("benchmark check failed: {0}")]
    Check(String),
}

fn ledger(step: &'static str) -> impl FnOnce(TxError) -> BenchStateError {
    move |source| BenchStateError::Ledger { step, source }
}

/// The records of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindFigures {
    /// What they are.
    pub name: &'static str,
    /// The table's tag (first key byte).
    pub tag: u8,
    /// Records written in bulk.
    pub bulk: u64,
    /// Their checkpoint bytes (key, record and the two 4-byte lengths).
    pub bulk_bytes: u64,
}

impl KindFigures {
    /// Checkpoint bytes per bulk record of this kind.
    pub fn bytes_per_record(&self) -> f64 {
        self.bulk_bytes as f64 / (self.bulk.max(1)) as f64
    }
}

/// The plan of the job at `hospital-a` and its baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanFigures {
    /// Linked patients.
    pub linked: u64,
    /// Linked patients consenting at the job's height (the cohort).
    pub cohort: u64,
    /// Linked patients left out.
    pub excluded: u64,
    /// Fields the job reads, checked against the contract.
    pub reads: usize,
    /// Seconds to link the patients (untimed setup: a hospital's links are loaded once).
    pub link_s: f64,
    /// Each timed plan, seconds.
    pub plan_s: Vec<f64>,
    /// Each timed baseline (the raw consent lookups of the same patients), seconds.
    pub raw_s: Vec<f64>,
    /// Median of `plan_s`.
    pub plan_median_s: f64,
    /// Median of `raw_s`.
    pub raw_median_s: f64,
    /// Bytes of the policy record, which the plan decodes once ([`State::consents_allow`]).
    pub policy_bytes: usize,
    /// One decode of the policy, microseconds (the mean of [`POLICY_SAMPLES`]).
    pub policy_decode_us: f64,
    /// For comparison: the raw lookups in the links' own order (no sort), seconds.
    pub raw_link_order_s: f64,
}

impl PlanFigures {
    /// The plan's median scaled to the target's linked count (linear in linked patients).
    pub fn at_target_s(&self) -> f64 {
        self.plan_median_s * PLAN_TARGET_LINKED as f64 / (self.linked.max(1)) as f64
    }

    /// Whether the plan meets the target (scaled to 1,000,000 linked if the run has another
    /// count).
    pub fn target_met(&self) -> bool {
        self.at_target_s() <= PLAN_TARGET_S
    }
}

/// The benchmark's figures.
#[derive(Clone, Debug)]
pub struct StateReport {
    /// Registered patients.
    pub patients: u64,
    /// Consents (three per patient).
    pub consents: u64,
    /// Grants.
    pub grants: u64,
    /// Record accesses.
    pub accesses: u64,
    /// Records of the consortium's setup (genesis, catalog, contract, job).
    pub setup_records: u64,
    /// Their checkpoint bytes.
    pub setup_bytes: u64,
    /// The bulk records by table.
    pub kinds: Vec<KindFigures>,
    /// Records in the state.
    pub records: u64,
    /// Seconds to set up the consortium through signed transactions (not part of the build).
    pub setup_s: f64,
    /// Seconds to derive and sort the patients' pseudonyms (the build's first step).
    pub sort_s: f64,
    /// Seconds from the first record to the built trie (generating, encoding, merging and
    /// linking the records in; no hashing).
    pub build_s: f64,
    /// Of `build_s`, seconds spent generating and encoding the records.
    pub generate_s: f64,
    /// Seconds to hash the trie to its root.
    pub root_s: f64,
    /// The built state's root.
    pub root: Hash,
    /// Resident memory before the bulk, KiB.
    pub rss_before_kib: Option<u64>,
    /// Resident memory after the build (index dropped), KiB.
    pub rss_after_kib: Option<u64>,
    /// Peak resident memory up to the end of the build, KiB (VmHWM).
    pub peak_build_kib: Option<u64>,
    /// Seconds to encode the checkpoint.
    pub encode_s: f64,
    /// The checkpoint's size.
    pub checkpoint_bytes: u64,
    /// Where it was written.
    pub checkpoint_path: PathBuf,
    /// Seconds to write it (create, write, fsync).
    pub write_s: f64,
    /// Seconds of the first read after the write (an untimed warm-up for both sides).
    pub first_read_s: f64,
    /// Seconds to read the file raw (the baseline).
    pub raw_read_s: f64,
    /// Seconds to read the file and restore it (checksum, records, trie, root verified).
    pub restore_s: f64,
    /// Of `restore_s`, the decode alone.
    pub decode_s: f64,
    /// The restored state's root.
    pub restored_root: Hash,
    /// The plan.
    pub plan: PlanFigures,
    /// Peak resident memory of the whole run, KiB (VmHWM).
    pub peak_kib: Option<u64>,
    /// The on-disk run's own figures (`None` for a state in memory).
    pub stored: Option<StoredFigures>,
    /// A light client's command on the state (`None` without a probe).
    pub light: Option<LightFigures>,
}

impl StateReport {
    /// Bulk records.
    pub fn bulk_records(&self) -> u64 {
        self.kinds.iter().map(|k| k.bulk).sum()
    }

    /// Checkpoint bytes of the bulk records.
    pub fn bulk_bytes(&self) -> u64 {
        self.kinds.iter().map(|k| k.bulk_bytes).sum()
    }

    /// Resident memory the bulk added, bytes.
    pub fn memory_bytes(&self) -> Option<u64> {
        Some(
            self.rss_after_kib?
                .saturating_sub(self.rss_before_kib?)
                .saturating_mul(1024),
        )
    }

    /// Resident bytes per bulk record.
    pub fn memory_per_record(&self) -> Option<f64> {
        Some(self.memory_bytes()? as f64 / (self.bulk_records().max(1)) as f64)
    }

    /// Checkpoint bytes per record (the whole file over every record).
    pub fn disk_per_record(&self) -> f64 {
        self.checkpoint_bytes as f64 / (self.records.max(1)) as f64
    }

    /// Whether this run is at the issue's size.
    pub fn at_issue_size(&self) -> bool {
        self.patients == ISSUE_PATIENTS
            && self.grants == ISSUE_GRANTS
            && self.accesses == ISSUE_ACCESSES
    }

    /// The figures as `medspace bench state` prints them.
    pub fn report(&self) -> String {
        use std::fmt::Write as _;
        let r = self;
        let mut o = String::new();
        let gib = |b: f64| b / (1u64 << 30) as f64;
        let mib_kib = |k: Option<u64>| {
            k.map_or("n/a".to_string(), |k| {
                format!("{:.0} MiB", k as f64 / 1024.0)
            })
        };
        let _ = writeln!(
            o,
            "bench state: {} patients x 3 consents ({} consents), {} grants, {} accesses on the default consortium ({} setup records through signed transactions in {:.2} s: {HOSPITAL}'s catalog entry, an active research compute contract for study {STUDY}, a submitted job)",
            r.patients, r.consents, r.grants, r.accesses, r.setup_records, r.setup_s
        );
        let _ = writeln!(
            o,
            "records by kind (bulk, as the rules write them; checkpoint bytes per record = key + record + 8):"
        );
        for k in &r.kinds {
            let _ = writeln!(
                o,
                "  {:<50} {:>12}  {:>6.1} B/record",
                k.name,
                k.bulk,
                k.bytes_per_record()
            );
        }
        let _ = writeln!(
            o,
            "  {:<50} {:>12}  {:>6.1} B/record",
            "consortium setup (genesis, catalog, contract, job)",
            r.setup_records,
            r.setup_bytes as f64 / (r.setup_records.max(1)) as f64
        );
        let _ = writeln!(
            o,
            "  {:<50} {:>12}",
            "total records in the state", r.records
        );
        let _ = writeln!(
            o,
            "build (one core): pseudonyms derived and sorted {:.2} s; records generated, merged and built into the trie in one pass {:.2} s (of which generating, sorting the key, grant and access tables and encoding records {:.2} s); root hashed {:.2} s; total {:.2} s",
            r.sort_s,
            r.build_s,
            r.generate_s,
            r.root_s,
            r.sort_s + r.build_s + r.root_s
        );
        let bounded = r.stored.as_ref().map_or(String::new(), |st| {
            format!(
                " — the state is on disk, read through a node cache of {:.0} MiB (the setting that bounds it)",
                st.cache_bytes as f64 / f64::from(1u32 << 20)
            )
        });
        match (r.memory_bytes(), r.memory_per_record()) {
            (Some(m), Some(per)) => {
                let _ = writeln!(
                    o,
                    "in memory: {:.2} GiB resident added by the bulk (VmRSS {} before, {} after) = {per:.1} B/record{bounded}",
                    gib(m as f64),
                    mib_kib(r.rss_before_kib),
                    mib_kib(r.rss_after_kib)
                );
            }
            _ => {
                let _ = writeln!(o, "in memory: n/a (no /proc/self/status)");
            }
        }
        if let Some(st) = &r.stored {
            let _ = writeln!(
                o,
                "on disk: the state store's node file {:.2} GiB = {:.1} B/record (each record's leaf and its branch, with the child hashes)",
                gib(st.store_bytes as f64),
                st.store_bytes as f64 / (r.records.max(1)) as f64
            );
            let _ = writeln!(
                o,
                "restart (open the store at its last commit and read through it; a validator then replays only the blocks after): {:.3} s",
                st.restart_s
            );
        }
        let _ = writeln!(
            o,
            "checkpoint (state sync's transfer): {:.2} GiB ({} bytes) = {:.1} B/record; {} in {:.2} s, fsync {:.2} s, to {}",
            gib(r.checkpoint_bytes as f64),
            r.checkpoint_bytes,
            r.disk_per_record(),
            if r.stored.is_some() {
                "streamed from the store to the file"
            } else {
                "encoded"
            },
            r.encode_s,
            r.write_s,
            r.checkpoint_path.display()
        );
        if let Some(st) = &r.stored {
            for (what, memory) in [
                ("checkpoint stream-out", st.write_memory_kib),
                ("state sync", st.sync_memory_kib),
            ] {
                if let Some((before, peak)) = memory {
                    let _ = writeln!(
                        o,
                        "{what} memory: peak {} over the step, {} before it: {} added for a {} checkpoint (node cache {})",
                        mib_kib(Some(peak)),
                        mib_kib(Some(before)),
                        mib_kib(Some(peak.saturating_sub(before))),
                        mib_kib(Some(r.checkpoint_bytes / 1024)),
                        mib_kib(Some(st.cache_bytes as u64 / 1024)),
                    );
                }
            }
        }
        let restore = if r.stored.is_some() {
            "state sync (stream the checkpoint into a new store: checksum, records, one-pass build written as it goes, root verified)"
        } else {
            "restart / state sync (read the checkpoint + decode: checksum, records, one-pass trie, root verified)"
        };
        let _ = writeln!(
            o,
            "{restore}: {:.2} s (read {:.2} s, decode {:.2} s); baseline, same run: reading the same file raw {:.2} s; ratio {:.1}",
            r.restore_s,
            r.restore_s - r.decode_s,
            r.decode_s,
            r.raw_read_s,
            r.restore_s / r.raw_read_s.max(1e-9)
        );
        let _ = writeln!(
            o,
            "  (both timed reads come from the page cache, after a first read of the file {:.2} s; a follower's download is not included; restored root {} = built root)",
            r.first_read_s, r.restored_root
        );
        let p = &r.plan;
        let _ = writeln!(
            o,
            "plan at {HOSPITAL} on the {} state: job over {} linked patients ({} fields read, checked against the contract): cohort {} consenting, {} excluded (study consent denied), as expected",
            if r.stored.is_some() {
                "state-synced on-disk"
            } else {
                "restored"
            },
            p.linked,
            p.reads,
            p.cohort,
            p.excluded
        );
        if let Some(st) = &r.stored {
            let _ = writeln!(
                o,
                "  nodes over all runs of the plan and its baseline: {} read from the file, {} found in the cache",
                st.plan_reads.0, st.plan_reads.1
            );
        }
        let list = |v: &[f64]| {
            v.iter()
                .map(|s| format!("{:.0}", s * 1000.0))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            o,
            "  plan_job (contract, scope, the patients sorted into key order, each one's broad and study consent decoded and judged at the job's height; on all cores) runs (ms): {}",
            list(&p.plan_s)
        );
        let _ = writeln!(
            o,
            "  baseline, same run: the same patients sorted the same way and their two raw consent lookups (state.get_raw, no decoding or policy; one thread) runs (ms): {}",
            list(&p.raw_s)
        );
        let _ = writeln!(
            o,
            "  median plan {:.3} s, raw lookups {:.3} s; ratio {:.2}",
            p.plan_median_s,
            p.raw_median_s,
            p.plan_median_s / p.raw_median_s.max(1e-9)
        );
        let _ = writeln!(
            o,
            "  the policy record ({} bytes) is decoded once per plan ({:.2} us; per patient it would be {:.3} s of a plan)",
            p.policy_bytes,
            p.policy_decode_us,
            p.policy_decode_us * p.linked as f64 / 1e6
        );
        let _ = writeln!(
            o,
            "  for comparison, not the baseline: the same raw lookups in the links' own order (random in the trie, no sort) {:.3} s",
            p.raw_link_order_s
        );
        let verdict = if p.target_met() { "met" } else { "NOT met" };
        if p.linked == PLAN_TARGET_LINKED {
            let _ = writeln!(
                o,
                "  target <= {PLAN_TARGET_S:.0} s for {PLAN_TARGET_LINKED} linked patients: {verdict} ({:.3} s)",
                p.plan_median_s
            );
        } else {
            let _ = writeln!(
                o,
                "  target <= {PLAN_TARGET_S:.0} s for {PLAN_TARGET_LINKED} linked patients: {verdict} (scaled linearly from {} linked: {:.3} s)",
                p.linked,
                p.at_target_s()
            );
        }
        if let Some(l) = &r.light {
            let mut runs = l.runs.clone();
            runs.sort_by(f64::total_cmp);
            let median = runs.get(runs.len() / 2).copied().unwrap_or(0.0);
            let _ = writeln!(
                o,
                "light client on this state: `{}` over the node's read API (loopback HTTP; a fresh client each run: pin, then the state held as its root and read in pieces checked against it) runs (ms): {}",
                l.command,
                list(&l.runs)
            );
            let _ = writeln!(
                o,
                "  median {:.4} s, {} pieces ({:.1} KiB) per run; baseline, same run: starting from the checkpoint (the state sync above) {:.2} s; ratio {:.5}",
                median,
                l.pieces,
                l.bytes as f64 / 1024.0,
                r.restore_s,
                median / r.restore_s.max(1e-9)
            );
        }
        let _ = writeln!(
            o,
            "peak memory (VmHWM): {} by the end of the build (the pseudonym index included), {} over the run (checkpoint encode and decode included)",
            mib_kib(r.peak_build_kib),
            mib_kib(r.peak_kib)
        );
        if !r.at_issue_size() {
            let e = r.extrapolate(ISSUE_PATIENTS, ISSUE_GRANTS, ISSUE_ACCESSES);
            let _ = writeln!(
                o,
                "EXTRAPOLATED, not measured — to {ISSUE_PATIENTS} patients ({} consents), {ISSUE_GRANTS} grants, {ISSUE_ACCESSES} accesses = {} records, from this run's per-record figures (bytes per record of each kind; memory overhead per record; times linear in records): in memory {}, checkpoint {:.1} GiB, peak memory {}, build {:.0} s, checkpoint encode {:.0} s, restart / state sync {:.0} s",
                ISSUE_PATIENTS * 3,
                e.records,
                e.memory_bytes
                    .map_or("n/a".to_string(), |m| format!("{:.1} GiB", gib(m))),
                gib(e.disk_bytes),
                e.peak_bytes
                    .map_or("n/a".to_string(), |m| format!("{:.1} GiB", gib(m))),
                e.build_s,
                e.encode_s,
                e.restore_s
            );
        }
        o
    }

    /// The run's per-record figures carried to another size (see [`Extrapolated`]).
    pub fn extrapolate(&self, patients: u64, grants: u64, accesses: u64) -> Extrapolated {
        let target = bulk_counts(patients, grants, accesses);
        let mut disk = self.setup_bytes as f64;
        let mut records = self.setup_records;
        for k in &self.kinds {
            let n = target
                .iter()
                .find(|(t, _)| *t == k.tag)
                .map_or(0, |(_, n)| *n);
            disk += k.bytes_per_record() * n as f64;
            records += n;
        }
        let scale = records as f64 / (self.records.max(1)) as f64;
        // Resident bytes per record beyond the record's own bytes (nodes, hashes, allocator),
        // measured here; the records' own bytes are those of the target's mix.
        let memory_bytes = self.memory_bytes().map(|m| {
            let overhead =
                (m as f64 - self.bulk_bytes() as f64) / (self.bulk_records().max(1)) as f64;
            overhead * (records - self.setup_records) as f64 + (disk - self.setup_bytes as f64)
        });
        Extrapolated {
            records,
            memory_bytes,
            disk_bytes: disk,
            // What the process held before the bulk, plus the run's growth above it scaled.
            peak_bytes: self.peak_kib.map(|peak| {
                let base = self.rss_before_kib.unwrap_or(0).min(peak) as f64;
                (base + (peak as f64 - base) * scale) * 1024.0
            }),
            build_s: (self.sort_s + self.build_s + self.root_s) * scale,
            encode_s: self.encode_s * scale,
            restore_s: self.restore_s * scale,
        }
    }
}

/// A run's figures carried to another size: record bytes per kind and memory overhead per
/// record as measured, times linear in records. Not measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Extrapolated {
    /// Records.
    pub records: u64,
    /// Resident memory of the state, bytes.
    pub memory_bytes: Option<f64>,
    /// Checkpoint bytes.
    pub disk_bytes: f64,
    /// Peak resident memory (the run's peak above the process's memory before the bulk,
    /// scaled by records), bytes.
    pub peak_bytes: Option<f64>,
    /// Build seconds.
    pub build_s: f64,
    /// Checkpoint encode seconds.
    pub encode_s: f64,
    /// Restart / state-sync seconds.
    pub restore_s: f64,
}

/// A `/proc/self/status` figure, KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The process's peak resident memory (VmHWM) step by step: reset at a step's start, so that
/// the next reading is that step's peak, while the run's own peak is kept across the resets.
#[derive(Default)]
struct Peaks {
    /// The highest VmHWM read before a reset (KiB).
    earlier: u64,
}

impl Peaks {
    /// Starts a step: what is resident now (KiB), or `None` where the kernel offers neither.
    fn start(&mut self) -> Option<u64> {
        if let Some(peak) = status_kib("VmHWM:") {
            self.earlier = self.earlier.max(peak);
        }
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        status_kib("VmRSS:")
    }

    /// Resident memory before the step begun with `before` and the peak over it (KiB).
    fn step(before: Option<u64>) -> Option<(u64, u64)> {
        Some((before?, status_kib("VmHWM:")?))
    }

    /// The peak over the whole run, across the resets.
    fn run(&self) -> Option<u64> {
        status_kib("VmHWM:").map(|now| now.max(self.earlier))
    }
}

/// The block at `height` (one block a second from the genesis).
fn block(height: u64) -> BlockContext {
    BlockContext {
        height,
        time_ms: GENESIS_MS.saturating_add(height.saturating_mul(1000)),
    }
}

/// Blocks of the bulk: registrations (four transactions a patient, 500 patients a block), then
/// grants, then accesses (2,000 a block); the job after them all.
#[derive(Clone, Copy, Debug)]
struct Heights {
    patients: u64,
    grants: u64,
    accesses: u64,
    job: u64,
}

const PATIENTS_PER_BLOCK: u64 = 500;
const TXS_PER_BLOCK: u64 = 2000;
/// The setup takes the blocks below this one.
const FIRST_BULK_HEIGHT: u64 = 100;

impl Heights {
    fn new(patients: u64, grants: u64, accesses: u64) -> Self {
        let p = FIRST_BULK_HEIGHT;
        let g = p + patients / PATIENTS_PER_BLOCK + 1;
        let a = g + grants / TXS_PER_BLOCK + 1;
        let job = a + accesses / TXS_PER_BLOCK + 1;
        Heights {
            patients: p,
            grants: g,
            accesses: a,
            job,
        }
    }
}

/// Records each bulk table gets, by tag.
fn bulk_counts(patients: u64, grants: u64, accesses: u64) -> [(u8, u64); 6] {
    [
        (tag::KEY, patients),
        (tag::PATIENT, patients),
        (tag::CONSENT, 3 * patients),
        (tag::GRANT, grants),
        (tag::ACCESS, accesses),
        (tag::PATIENT_LOG, 3 * patients + grants + accesses),
    ]
}

fn kind_name(t: u8) -> &'static str {
    match t {
        tag::KEY => "patient keys (principal, nonce)",
        tag::PATIENT => "patients",
        tag::CONSENT => "consents",
        tag::GRANT => "grants",
        tag::ACCESS => "record accesses",
        tag::PATIENT_LOG => "patient log entries (consents, grants, accesses)",
        _ => "other",
    }
}

/// The consortium's setup: a state with a published catalog entry, an active research compute
/// contract for a study and a submitted job, all through signed transactions.
struct Setup {
    state: State,
    job: JobId,
    spec: QuerySpec,
    study: StudyId,
}

fn apply(
    state: &mut State,
    chain: &Name,
    key: &Keypair,
    height: u64,
    payload: Payload,
    step: &'static str,
) -> Result<Option<Created>, BenchStateError> {
    let nonce = state.next_nonce(&key.public()).map_err(ledger(step))?;
    let tx = SignedTx::new(chain, key, nonce, payload);
    Ok(state
        .apply(&tx, &block(height))
        .map_err(ledger(step))?
        .created)
}

/// `hospital-a`'s catalog entry: the tables and fields the job reads (and every table's
/// `person_id`), each at its default classification level.
fn catalog_entry(reads: &[(String, String)]) -> Result<DatasetDescription, TypeError> {
    let classification = Classification::default();
    let mut tables: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (t, f) in reads {
        tables.entry(t).or_default().push(f);
    }
    for fields in tables.values_mut() {
        if !fields.contains(&"person_id") {
            fields.insert(0, "person_id");
        }
    }
    let tables = tables
        .into_iter()
        .map(|(table, fields)| {
            Ok(TableDesc {
                name: Text::new(table)?,
                rows: 1_000_000,
                duplicate_ppm: 0,
                implausible_ppm: 0,
                fields: List::new(
                    fields
                        .into_iter()
                        .map(|f| {
                            Ok(FieldDesc {
                                name: Text::new(f)?,
                                level: classification.field_level(table, f),
                                missing_ppm: 0,
                                invalid_ppm: 0,
                            })
                        })
                        .collect::<Result<_, TypeError>>()?,
                )?,
            })
        })
        .collect::<Result<_, TypeError>>()?;
    Ok(DatasetDescription {
        id: DatasetId::new(&format!("{HOSPITAL}.cdm"))?,
        title: Text::new(format!("{HOSPITAL} common data model"))?,
        version: 1,
        tables: List::new(tables)?,
        content_hash: Hash::of(&[b"medspace/bench/state/catalog"]),
    })
}

fn setup(job_height: u64) -> Result<Setup, BenchStateError> {
    let c = Consortium::default_devnet(SEED, GENESIS_MS)?;
    let chain = c.genesis.chain_id.clone();
    let mut state = State::genesis(&c.genesis)?;
    let (spec, validated) = query::parse(SPEC)?;
    let mut reads: Vec<(String, String)> = validated
        .reads
        .iter()
        .map(|(t, f)| (t.to_string(), f.to_string()))
        .collect();
    reads.push(("person".into(), "person_id".into()));
    let dataset = catalog_entry(&reads)?;
    let mut height = 1;
    apply(
        &mut state,
        &chain,
        c.user_key(&format!("{HOSPITAL}.steward"))?,
        height,
        Payload::PublishDataset(PublishDataset {
            dataset: dataset.clone(),
        }),
        "publishing the catalog entry",
    )?;
    let mut fields = Vec::new();
    for t in dataset.tables.iter() {
        for f in t.fields.iter() {
            fields.push(FieldRef {
                dataset: dataset.id.clone(),
                table: t.name.clone(),
                field: Text::new(f.name.as_str())?,
            });
        }
    }
    let study = StudyId::new(STUDY)?;
    height += 1;
    let researcher = c.user_key("research-1.researcher")?;
    let created = apply(
        &mut state,
        &chain,
        researcher,
        height,
        Payload::SubmitRequest(SubmitRequest {
            purpose: Purpose::Research,
            mode: Mode::Compute,
            study: Some(study.clone()),
            fields: List::new(fields)?,
            computation: Blob::new(SPEC.as_bytes().to_vec())?,
            expiry_ms: GENESIS_MS + 365 * DAY_MS,
            epsilon_budget: 1_000_000,
            fee: 0,
        }),
        "submitting the contract",
    )?;
    let Some(Created::Contract(contract)) = created else {
        return Err(BenchStateError::Check(
            "the request created no contract".into(),
        ));
    };
    // Every approval the contract's level needs, each by a reviewer of the right role.
    let mut by: Vec<UserId> = Vec::new();
    loop {
        let rec = state
            .contract(contract)
            .map_err(ledger("reading the contract"))?
            .ok_or_else(|| BenchStateError::Check("the contract is not on the ledger".into()))?;
        let Some(slot) = rec.missing_approvals().next().cloned() else {
            break;
        };
        let (user, key) = c
            .reviewer(slot.role, slot.member.as_ref(), &by)
            .ok_or_else(|| {
                BenchStateError::Check(format!("no reviewer for {}", slot.role.as_str()))
            })?;
        height += 1;
        apply(
            &mut state,
            &chain,
            key,
            height,
            Payload::Approve(Approve { contract }),
            "approving the contract",
        )?;
        by.push(user.clone());
    }
    let rec = state
        .contract(contract)
        .map_err(ledger("reading the contract"))?
        .ok_or_else(|| BenchStateError::Check("the contract is not on the ledger".into()))?;
    if rec.status != ContractStatus::Active {
        return Err(BenchStateError::Check(format!(
            "the contract is {} after every approval",
            rec.status
        )));
    }
    if height >= FIRST_BULK_HEIGHT {
        return Err(BenchStateError::Check(
            "the setup ran into the bulk's blocks".into(),
        ));
    }
    let created = apply(
        &mut state,
        &chain,
        researcher,
        job_height,
        Payload::SubmitJob(SubmitJob {
            contract,
            computation: Blob::new(SPEC.as_bytes().to_vec())?,
            epsilon: 100_000,
        }),
        "submitting the job",
    )?;
    let Some(Created::Job(job)) = created else {
        return Err(BenchStateError::Check("the job was not created".into()));
    };
    Ok(Setup {
        state,
        job,
        spec,
        study,
    })
}

/// A raw record: key and encoded value.
type Rec = (Vec<u8>, Vec<u8>);

/// A bijection of `u64` (xor-shifts and odd multipliers, each invertible): distinct inputs
/// give distinct, evenly spread ids, as the ledger's hashed ids are, without collisions.
fn scramble(mut x: u64) -> u64 {
    x ^= x >> 32;
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xd6e8_feb8_6659_fd93);
    x ^ (x >> 32)
}

/// Patient `i`'s key. Not a key anyone holds: 32 hashed bytes standing for one. Deriving real
/// ed25519 keys (`Keypair::from_seed`, a scalar multiplication each) would take minutes for ten
/// million patients, and nothing here verifies a patient's signature; the records hold 32 bytes
/// either way, so their sizes are those of real keys. The pseudonym is derived from it as the
/// ledger derives it ([`PatientId::from_key`]).
fn patient_key(i: u32) -> PublicKey {
    PublicKey::from_bytes(Hash::of(&[b"medspace/bench/state/patient-key", &i.to_be_bytes()]).0)
}

fn patient_id(i: u32) -> PatientId {
    PatientId::from_key(&patient_key(i))
}

/// How many of `0..n` are `r` modulo `m`.
fn residues(n: u32, m: u32, r: u32) -> u32 {
    if m == 0 || r >= n {
        0
    } else {
        (n - r - 1) / m + 1
    }
}

/// Whether patient `i` denies the study (one in five): the plan leaves them out.
fn denies_study(i: u32) -> bool {
    i % 5 == 4
}

/// The bulk: who each record is and what the rules would have written.
struct Bulk {
    patients: u32,
    grants: u32,
    accesses: u32,
    heights: Heights,
    hospital: MemberId,
    recipient: MemberId,
    study: StudyId,
    resource_types: List<Text<48>, 32>,
    /// A consent with one change, allow and deny (the height is set per patient).
    allow: ConsentRecord,
    deny: ConsentRecord,
}

impl Bulk {
    fn new(
        patients: u32,
        grants: u32,
        accesses: u32,
        heights: Heights,
        study: StudyId,
    ) -> Result<Self, TypeError> {
        let one = |state| -> Result<ConsentRecord, TypeError> {
            Ok(ConsentRecord {
                history: List::new(vec![ConsentChange {
                    height: 0,
                    state,
                    l4_opt_in: false,
                }])?,
                trimmed: false,
            })
        };
        Ok(Bulk {
            patients,
            grants,
            accesses,
            heights,
            hospital: MemberId::new(HOSPITAL)?,
            recipient: MemberId::new(RECIPIENT)?,
            study,
            resource_types: List::new(vec![Text::new("Observation")?])?,
            allow: one(ConsentState::Allow)?,
            deny: one(ConsentState::Deny)?,
        })
    }

    fn registered(&self, p: u32) -> BlockContext {
        block(self.heights.patients + u64::from(p) / PATIENTS_PER_BLOCK)
    }

    fn issued(&self, g: u32) -> BlockContext {
        block(self.heights.grants + u64::from(g) / TXS_PER_BLOCK)
    }

    fn accessed(&self, a: u32) -> BlockContext {
        block(self.heights.accesses + u64::from(a) / TXS_PER_BLOCK)
    }

    /// Patient `p`'s grants: `p`, `p + patients`, …
    fn grants_of(&self, p: u32) -> impl Iterator<Item = u32> {
        (p..self.grants).step_by(self.patients.max(1) as usize)
    }

    /// Grant `g`'s accesses: `g`, `g + grants`, …
    fn accesses_of(&self, g: u32) -> impl Iterator<Item = u32> {
        (g..self.accesses).step_by(self.grants.max(1) as usize)
    }

    fn grant_patient(&self, g: u32) -> u32 {
        g.checked_rem(self.patients).unwrap_or(0)
    }

    fn access_grant(&self, a: u32) -> u32 {
        a.checked_rem(self.grants).unwrap_or(0)
    }

    fn grant_id(g: u32) -> GrantId {
        GrantId(scramble(u64::from(g) ^ 0x6772_616e_7473_0000))
    }

    fn access_id(a: u32) -> AccessId {
        AccessId(scramble(u64::from(a) ^ 0x6163_6365_7373_0000))
    }

    fn consent(&self, p: u32, allow: bool) -> ConsentRecord {
        let mut rec = if allow {
            self.allow.clone()
        } else {
            self.deny.clone()
        };
        for c in rec.history.as_mut_slice() {
            c.height = self.registered(p).height;
        }
        rec
    }

    /// Patient `p`'s consents as `SetConsent` writes them, in the order they were given:
    /// (purpose, study, allowed).
    fn consents_given(&self, p: u32) -> [(Purpose, Option<&StudyId>, bool); 3] {
        [
            (Purpose::Research, None, true),
            (Purpose::Research, Some(&self.study), !denies_study(p)),
            (THIRD_PURPOSE, None, p.is_multiple_of(2)),
        ]
    }

    /// The key-table record of one patient key: its principal and next nonce (registration,
    /// three consents and its grants).
    fn key_record(&self, key: &PublicKey, p: u32) -> Rec {
        let nonce = 4 + u64::from(residues(self.grants, self.patients, p));
        (
            keys::principal(key),
            encode_record(&KeyRecord {
                principal: Principal::Patient(PatientId::from_key(key)),
                retired: false,
                nonce,
            }),
        )
    }

    /// The key table, in key order (sorted here, and the sort dropped with the table).
    fn key_table(&self) -> impl Iterator<Item = Rec> + '_ {
        let mut by_key: Vec<(PublicKey, u32)> =
            (0..self.patients).map(|p| (patient_key(p), p)).collect();
        by_key.sort_unstable();
        by_key
            .into_iter()
            .map(move |(key, p)| self.key_record(&key, p))
    }

    fn log_len(&self, p: u32) -> u64 {
        let accesses: u64 = self
            .grants_of(p)
            .map(|g| u64::from(residues(self.accesses, self.grants, g)))
            .sum();
        3 + u64::from(residues(self.grants, self.patients, p)) + accesses
    }

    fn patient_record(&self, id: &PatientId, p: u32) -> Rec {
        (
            keys::patient(id),
            encode_record(&PatientRecord {
                key: patient_key(p),
                registered_height: self.registered(p).height,
                log_len: self.log_len(p),
                hospital: self.hospital.clone(),
                rebinding: None,
            }),
        )
    }

    /// Patient `p`'s consent records, in key order.
    fn consent_records(&self, id: &PatientId, p: u32) -> Vec<Rec> {
        let mut out: Vec<Rec> = self
            .consents_given(p)
            .into_iter()
            .map(|(purpose, study, allow)| {
                (
                    keys::consent(id, purpose, study),
                    encode_record(&self.consent(p, allow)),
                )
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Patient `p`'s log: the three consents, the grants issued, the accesses under them.
    fn log_records(&self, id: &PatientId, p: u32) -> Vec<Rec> {
        let mut events: Vec<(BlockContext, PatientEvent)> = self
            .consents_given(p)
            .into_iter()
            .map(|(purpose, study, allow)| {
                (
                    self.registered(p),
                    PatientEvent::Consent(ConsentEvent {
                        purpose,
                        study: study.cloned(),
                        state: if allow {
                            ConsentState::Allow
                        } else {
                            ConsentState::Deny
                        },
                    }),
                )
            })
            .collect();
        let mut accesses = Vec::new();
        for g in self.grants_of(p) {
            events.push((self.issued(g), PatientEvent::GrantIssued(Self::grant_id(g))));
            accesses.extend(self.accesses_of(g));
        }
        accesses.sort_unstable();
        for a in accesses {
            events.push((self.accessed(a), PatientEvent::Accessed(Self::access_id(a))));
        }
        (0u64..)
            .zip(events)
            .map(|(seq, (ctx, event))| {
                (
                    keys::patient_log(id, seq),
                    encode_record(&LogEntry {
                        height: ctx.height,
                        time_ms: ctx.time_ms,
                        event,
                    }),
                )
            })
            .collect()
    }

    fn grant_record(&self, g: u32) -> Rec {
        let id = Self::grant_id(g);
        let issued = self.issued(g);
        (
            keys::grant(id),
            encode_record(&GrantRecord {
                id,
                patient: patient_id(self.grant_patient(g)),
                terms: IssueGrant {
                    grantee: self.recipient.clone(),
                    holder: self.hospital.clone(),
                    purpose: Purpose::Treatment,
                    resource_types: self.resource_types.clone(),
                    period_from_ms: 0,
                    period_to_ms: issued.time_ms,
                    expiry_ms: issued.time_ms + 365 * DAY_MS,
                    max_uses: 0,
                    code_hash: Hash::of(&[b"medspace/bench/state/code", &g.to_be_bytes()]),
                },
                issued_height: issued.height,
                uses: residues(self.accesses, self.grants, g),
                revoked: false,
            }),
        )
    }

    fn grant_table(&self) -> impl Iterator<Item = Rec> + '_ {
        let mut by_id: Vec<(GrantId, u32)> =
            (0..self.grants).map(|g| (Self::grant_id(g), g)).collect();
        by_id.sort_unstable();
        by_id.into_iter().map(move |(_, g)| self.grant_record(g))
    }

    fn access_record(&self, a: u32) -> Rec {
        let id = Self::access_id(a);
        let grant = self.access_grant(a);
        let ctx = self.accessed(a);
        (
            keys::access(id),
            encode_record(&AccessRecord {
                id,
                patient: patient_id(self.grant_patient(grant)),
                holder: self.hospital.clone(),
                recipient: self.recipient.clone(),
                basis: AccessBasis::Grant(Self::grant_id(grant)),
                resource_types: self.resource_types.clone(),
                resource_count: 1 + a % 40,
                content_hash: Hash::of(&[b"medspace/bench/state/content", &a.to_be_bytes()]),
                height: ctx.height,
                time_ms: ctx.time_ms,
                destroyed_height: None,
            }),
        )
    }

    fn access_table(&self) -> impl Iterator<Item = Rec> + '_ {
        let mut by_id: Vec<(AccessId, u32)> = (0..self.accesses)
            .map(|a| (Self::access_id(a), a))
            .collect();
        by_id.sort_unstable();
        by_id.into_iter().map(move |(_, a)| self.access_record(a))
    }

    /// Every bulk record in key order: the tables in tag order, each sorted. `by_id` is the
    /// patients in pseudonym order.
    fn records<'a>(&'a self, by_id: &'a [(PatientId, u32)]) -> impl Iterator<Item = Rec> + 'a {
        // Each sorted table is made when the stream reaches it and dropped when it is done.
        fn lazy<I: Iterator>(make: impl FnOnce() -> I) -> impl Iterator<Item = I::Item> {
            std::iter::once(make).flat_map(|f| f())
        }
        lazy(move || self.key_table())
            .chain(by_id.iter().map(move |(id, p)| self.patient_record(id, *p)))
            .chain(
                by_id
                    .iter()
                    .flat_map(move |(id, p)| self.consent_records(id, *p)),
            )
            .chain(lazy(move || self.grant_table()))
            .chain(lazy(move || self.access_table()))
            .chain(
                by_id
                    .iter()
                    .flat_map(move |(id, p)| self.log_records(id, *p)),
            )
    }
}

/// Two key-ordered streams as one (equal keys both pass: the build refuses them).
fn merge(a: impl Iterator<Item = Rec>, b: impl Iterator<Item = Rec>) -> impl Iterator<Item = Rec> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || {
        let take_a = match (a.peek(), b.peek()) {
            (Some((ka, _)), Some((kb, _))) => ka <= kb,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if take_a { a.next() } else { b.next() }
    })
}

/// The time spent inside `inner`'s `next`, added to `spent`.
struct Timed<'a, I> {
    inner: I,
    spent: &'a Cell<Duration>,
}

impl<I: Iterator> Iterator for Timed<'_, I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let t = Instant::now();
        let item = self.inner.next();
        self.spent.set(self.spent.get() + t.elapsed());
        item
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(0.0),
        n => {
            (v.get(n / 2 - 1).copied().unwrap_or(0.0) + v.get(n / 2).copied().unwrap_or(0.0)) / 2.0
        }
    }
}

fn fit_u32(name: &str, n: u64) -> Result<u32, BenchStateError> {
    u32::try_from(n)
        .map_err(|_| BenchStateError::Options(format!("{name}={n} exceeds {}", u32::MAX)))
}

/// The raw lookups of the plan's baseline: each linked patient's broad and study consent
/// records, fetched and not decoded. Returns how many were found.
fn raw_lookups<'a>(
    state: &State,
    patients: impl Iterator<Item = &'a PatientId>,
    study: &StudyId,
) -> usize {
    let mut found = 0usize;
    for patient in patients {
        let broad = keys::consent(patient, Purpose::Research, None);
        let specific = keys::consent(patient, Purpose::Research, Some(study));
        found += usize::from(matches!(
            std::hint::black_box(state.get_raw(&broad)),
            Ok(Some(_))
        ));
        found += usize::from(matches!(
            std::hint::black_box(state.get_raw(&specific)),
            Ok(Some(_))
        ));
    }
    found
}

/// Builds the state, measures it, checkpoints and restores it, and plans the job on it.
/// `progress` gets a line per step (and per million records while building).
pub fn state(
    opts: &StateOptions,
    light: Option<&LightProbe<'_>>,
    progress: &mut dyn FnMut(&str),
) -> Result<StateReport, BenchStateError> {
    let patients = fit_u32("patients", opts.patients)?;
    let grants = fit_u32("grants", opts.grants)?;
    let accesses = fit_u32("accesses", opts.accesses)?;
    let linked = fit_u32("linked", opts.linked.min(opts.patients))?;
    if patients == 0 {
        return Err(BenchStateError::Options(
            "patients must be at least 1".into(),
        ));
    }
    if accesses > 0 && grants == 0 {
        return Err(BenchStateError::Options(
            "accesses are made under grants: give at least one grant".into(),
        ));
    }
    let heights = Heights::new(opts.patients, opts.grants, opts.accesses);

    progress("setting up the consortium through signed transactions");
    let t = Instant::now();
    let Setup {
        state: small,
        job,
        spec,
        study,
    } = setup(heights.job)?;
    let setup_s = t.elapsed().as_secs_f64();
    let small_records: Vec<Rec> = small
        .scan_raw(&[])
        .map_err(ledger("reading the setup's records"))?
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    let setup_records = small_records.len() as u64;
    let setup_bytes: u64 = small_records
        .iter()
        .map(|(k, v)| (k.len() + v.len() + 8) as u64)
        .sum();
    // Per table: records and checkpoint bytes of the setup (subtracted to get the bulk's).
    let mut setup_by_tag = [(0u64, 0u64); 256];
    for (k, v) in &small_records {
        if let Some(e) = setup_by_tag.get_mut(usize::from(k.first().copied().unwrap_or(0))) {
            e.0 += 1;
            e.1 += (k.len() + v.len() + 8) as u64;
        }
    }
    drop(small);

    let rss_before_kib = status_kib("VmRSS:");
    let bulk = Bulk::new(patients, grants, accesses, heights, study.clone())?;
    progress("deriving and sorting the patients' pseudonyms");
    let t = Instant::now();
    let mut by_id: Vec<(PatientId, u32)> = (0..patients).map(|p| (patient_id(p), p)).collect();
    by_id.sort_unstable();
    let sort_s = t.elapsed().as_secs_f64();

    let expected = bulk_counts(opts.patients, opts.grants, opts.accesses);
    let total = setup_records + expected.iter().map(|(_, n)| n).sum::<u64>();
    let mut by_tag = [(0u64, 0u64); 256];
    let mut done = 0u64;
    let generating = Cell::new(Duration::ZERO);
    let store_dir = opts.dir.join("state");
    let synced_dir = opts.dir.join("synced");
    let mut store = match opts.store_cache {
        Some(cache) => Some(fresh_store(&store_dir, cache)?),
        None => None,
    };
    let t = Instant::now();
    let built = {
        let stream = merge(
            small_records.into_iter(),
            Timed {
                inner: bulk.records(&by_id),
                spent: &generating,
            },
        )
        .inspect(|(k, v)| {
            if let Some(e) = by_tag.get_mut(usize::from(k.first().copied().unwrap_or(0))) {
                e.0 += 1;
                e.1 += (k.len() + v.len() + 8) as u64;
            }
            done += 1;
            if done.is_multiple_of(PROGRESS_EVERY) {
                progress(&format!("building the state: {done}/{total} records"));
            }
        });
        match (&mut store, opts.store_cache) {
            (Some(store), _) => State::build_in(store, stream, heights.job)
                .map_err(ledger("building the state into its store"))?,
            (None, _) => State::from_records(stream)?,
        }
    };
    let build_s = t.elapsed().as_secs_f64();
    drop(by_id);
    progress("hashing the state to its root");
    let t = Instant::now();
    let root = built.root();
    let root_s = t.elapsed().as_secs_f64();
    let rss_after_kib = status_kib("VmRSS:");
    let peak_build_kib = status_kib("VmHWM:");
    let records = built.len() as u64;

    let mut kinds = Vec::new();
    for (t, want) in expected {
        let (all, all_bytes) = by_tag.get(usize::from(t)).copied().unwrap_or((0, 0));
        let (mine, mine_bytes) = setup_by_tag.get(usize::from(t)).copied().unwrap_or((0, 0));
        let k = KindFigures {
            name: kind_name(t),
            tag: t,
            bulk: all.saturating_sub(mine),
            bulk_bytes: all_bytes.saturating_sub(mine_bytes),
        };
        if k.bulk != want {
            return Err(BenchStateError::Check(format!(
                "{} records of {}, expected {want}",
                k.bulk, k.name
            )));
        }
        kinds.push(k);
    }
    if records != total {
        return Err(BenchStateError::Check(format!(
            "the state holds {records} records, expected {total}"
        )));
    }

    let ctx = block(heights.job);
    let path = opts.dir.join(CHECKPOINT_FILE);
    let io = |source| BenchStateError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&opts.dir).map_err(io)?;
    // On disk: what a validator's restart costs before it replays any block — open the store
    // and read through it (the state is never loaded whole).
    let (built, restart_s) = match (store.take(), opts.store_cache) {
        (Some(s), Some(cache)) => {
            drop((built, s));
            progress("restarting: opening the store again");
            let t = Instant::now();
            let (s, committed) = NodeStore::open(&store_dir, cache).map_err(store_failed)?;
            let committed = committed
                .ok_or_else(|| BenchStateError::Check("the store lost its commit".into()))?;
            let reopened = State::from_store(committed).map_err(ledger("reopening the state"))?;
            let restart_s = t.elapsed().as_secs_f64();
            store = Some(s);
            (reopened, Some(restart_s))
        }
        (s, _) => (built, s.map(|_| 0.0)),
    };
    let store_bytes = store.as_ref().map_or(0, |s| s.size().file_bytes);

    progress("encoding the checkpoint");
    let mut peaks = Peaks::default();
    let mut write_memory = None;
    let mut sync_memory = None;
    let t = Instant::now();
    let (checkpoint_bytes, encode_s, write_s) = if store.is_some() {
        // Streamed from the store to the file: memory stays the cache's.
        let mut f = std::fs::File::create(&path).map_err(io)?;
        let before = peaks.start();
        let n = checkpoint::write_to(&built, ctx.height, ctx.time_ms, &mut f)?;
        write_memory = Peaks::step(before);
        let encode_s = t.elapsed().as_secs_f64();
        progress("syncing the checkpoint (fsync)");
        let t = Instant::now();
        f.sync_all().map_err(io)?;
        (n, encode_s, t.elapsed().as_secs_f64())
    } else {
        let bytes = checkpoint::encode(&built, ctx.height, ctx.time_ms)
            .map_err(|e| ledger("encoding the checkpoint")(e.into()))?;
        let encode_s = t.elapsed().as_secs_f64();
        progress("writing the checkpoint (fsync)");
        let t = Instant::now();
        let mut f = std::fs::File::create(&path).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        (bytes.len() as u64, encode_s, t.elapsed().as_secs_f64())
    };
    // The plan runs on the restored state, as on a restarted or state-synced node: the built
    // one goes (on disk, with its store's files), so the run holds one state at a time.
    drop(built);
    if store.take().is_some() {
        let _ = std::fs::remove_dir_all(&store_dir);
    }

    // The first read after the write is a warm-up, not a figure of either side: both timed
    // reads below then start from the same page cache and the same free memory.
    progress("reading the checkpoint once (warm-up)");
    let t = Instant::now();
    read_through(&path).map_err(io)?;
    let first_read_s = t.elapsed().as_secs_f64();
    progress("reading the checkpoint raw (baseline)");
    let t = Instant::now();
    let raw_len = read_through(&path).map_err(io)?;
    let raw_read_s = t.elapsed().as_secs_f64();
    if raw_len != checkpoint_bytes {
        return Err(BenchStateError::Check(format!(
            "read {raw_len} bytes back, wrote {checkpoint_bytes}"
        )));
    }
    progress("restoring the checkpoint (read + decode, root verified)");
    let (summary, restored, restore_s, decode_s, synced_bytes) = match opts.store_cache {
        Some(cache) => {
            let mut synced = fresh_store(&synced_dir, cache)?;
            let t = Instant::now();
            let f = std::fs::File::open(&path).map_err(io)?;
            let before = peaks.start();
            let (summary, state) = checkpoint::restore_into(f, &mut synced)?;
            sync_memory = Peaks::step(before);
            let restore_s = t.elapsed().as_secs_f64();
            let synced_bytes = synced.size().file_bytes;
            store = Some(synced);
            (summary, state, restore_s, restore_s, synced_bytes)
        }
        None => {
            let t = Instant::now();
            let bytes = std::fs::read(&path).map_err(io)?;
            let d = Instant::now();
            let restored = checkpoint::decode(&bytes)?;
            let decode_s = d.elapsed().as_secs_f64();
            let restore_s = t.elapsed().as_secs_f64();
            (restored.summary, restored.state, restore_s, decode_s, 0)
        }
    };
    let restored_root = restored.root();
    if restored_root != root || summary.root != root {
        return Err(BenchStateError::Check(format!(
            "restored root {restored_root} differs from the built root {root}"
        )));
    }
    if summary.records != records || restored.len() as u64 != records {
        return Err(BenchStateError::Check(format!(
            "restored {} records, built {records}",
            restored.len()
        )));
    }
    summary.expect(ctx.height, ctx.time_ms, &root.0)?;
    let state = restored;
    let reads_before = store.as_ref().map(|s| s.file().reads());

    progress(&format!("linking {linked} patients at {HOSPITAL}"));
    let t = Instant::now();
    let mut links = Links::default();
    for p in 0..linked {
        links.link(i64::from(p) + 1, patient_id(p))?;
    }
    let link_s = t.elapsed().as_secs_f64();
    let member = MemberId::new(HOSPITAL)?;
    let reads: Vec<(String, String)> = side_reads(&state, &spec, &member)?
        .iter()
        .map(|(t, f)| (t.to_string(), f.to_string()))
        .collect();
    let want_cohort = u64::from(linked - residues(linked, 5, 4));
    let (mut plan_s, mut raw_s) = (Vec::new(), Vec::new());
    let mut plan = None;
    for run in 0..PLAN_RUNS {
        progress(&format!("planning the job: run {}/{PLAN_RUNS}", run + 1));
        let timed_plan = |plan_s: &mut Vec<f64>| {
            let t = Instant::now();
            let p = plan_job(&state, job, &member, &links, &reads);
            plan_s.push(t.elapsed().as_secs_f64());
            p
        };
        // The baseline reads what the plan reads in the order it reads it: the linked
        // patients sorted into pseudonym (key) order, then two raw consent lookups each.
        let timed_raw = |raw_s: &mut Vec<f64>| {
            let t = Instant::now();
            let mut in_key_order: Vec<&PatientId> = links.iter().map(|(_, p)| p).collect();
            in_key_order.sort_unstable();
            let found = raw_lookups(&state, in_key_order.iter().copied(), &study);
            raw_s.push(t.elapsed().as_secs_f64());
            found
        };
        let (p, found) = if run % 2 == 0 {
            let p = timed_plan(&mut plan_s)?;
            (p, timed_raw(&mut raw_s))
        } else {
            let found = timed_raw(&mut raw_s);
            (timed_plan(&mut plan_s)?, found)
        };
        if found != 2 * linked as usize {
            return Err(BenchStateError::Check(format!(
                "the raw lookups found {found} consents of {linked} patients, expected two each"
            )));
        }
        plan = Some(p);
    }
    let plan = plan.ok_or_else(|| BenchStateError::Check("no plan ran".into()))?;
    let cohort = plan.cohort.len() as u64;
    if cohort != want_cohort || plan.excluded as u64 != u64::from(linked) - want_cohort {
        return Err(BenchStateError::Check(format!(
            "the plan's cohort is {cohort} ({} excluded) of {linked} linked, expected {want_cohort}",
            plan.excluded
        )));
    }
    // What the plan pays per patient before any consent is read: the policy's decode.
    let policy_bytes = state
        .get_raw(&keys::policy())
        .map_err(ledger("reading the policy"))?
        .map_or(0, |p| p.len());
    let t = Instant::now();
    for _ in 0..POLICY_SAMPLES {
        std::hint::black_box(state.policy().map_err(ledger("reading the policy"))?);
    }
    let policy_decode_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(POLICY_SAMPLES);
    // For comparison, not the baseline: the same raw lookups in the links' own order (random
    // in the trie), which is how the plan read before it sorted.
    let t = Instant::now();
    let found = raw_lookups(&state, links.iter().map(|(_, p)| p), &study);
    let raw_link_order_s = t.elapsed().as_secs_f64();
    if found != 2 * linked as usize {
        return Err(BenchStateError::Check(format!(
            "the ordered raw lookups found {found} consents of {linked} patients"
        )));
    }
    let light = match light {
        Some(probe) => {
            progress("a light client's command over the read API");
            let consortium = Consortium::default_devnet(SEED, GENESIS_MS)?;
            let reader = consortium.user_key(LIGHT_READER)?;
            Some(probe(&state, ctx.height, reader).map_err(BenchStateError::Check)?)
        }
        None => None,
    };
    let plan = PlanFigures {
        raw_link_order_s,
        policy_bytes,
        policy_decode_us,
        linked: u64::from(linked),
        cohort,
        excluded: plan.excluded as u64,
        reads: reads.len(),
        link_s,
        plan_median_s: median(&plan_s),
        raw_median_s: median(&raw_s),
        plan_s,
        raw_s,
    };
    Ok(StateReport {
        patients: opts.patients,
        consents: 3 * opts.patients,
        grants: opts.grants,
        accesses: opts.accesses,
        setup_records,
        setup_bytes,
        kinds,
        records,
        setup_s,
        sort_s,
        build_s,
        generate_s: generating.get().as_secs_f64(),
        root_s,
        root,
        rss_before_kib,
        rss_after_kib,
        peak_build_kib,
        encode_s,
        checkpoint_bytes,
        checkpoint_path: path,
        write_s,
        first_read_s,
        raw_read_s,
        restore_s,
        decode_s,
        restored_root,
        plan,
        peak_kib: peaks.run(),
        stored: match (opts.store_cache, store, reads_before) {
            (Some(cache_bytes), Some(store), Some((loads, hits))) => {
                let (l, h) = store.file().reads();
                Some(StoredFigures {
                    cache_bytes,
                    store_bytes,
                    restart_s: restart_s.unwrap_or(0.0),
                    synced_bytes,
                    write_memory_kib: write_memory,
                    sync_memory_kib: sync_memory,
                    plan_reads: (l.saturating_sub(loads), h.saturating_sub(hits)),
                })
            }
            _ => None,
        },
        light,
    })
}

/// An empty store in `dir` (whatever was there removed first).
fn fresh_store(dir: &std::path::Path, cache: usize) -> Result<NodeStore, BenchStateError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BenchStateError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    Ok(NodeStore::open(dir, cache).map_err(store_failed)?.0)
}

fn store_failed(e: TrieError) -> BenchStateError {
    BenchStateError::Ledger {
        step: "opening the state store",
        source: e.into(),
    }
}

/// Reads the file at `path` through a small buffer, keeping nothing; returns its length.
fn read_through(path: &std::path::Path) -> std::io::Result<u64> {
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut std::io::sink())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_state_builds_restores_to_the_same_root_and_plans_the_consenting_cohort() {
        in_memory_or_on_disk(None);
    }

    #[test]
    fn a_small_state_on_disk_gives_the_same_figures_and_root() {
        let r = in_memory_or_on_disk(Some(1 << 20));
        let st = r.stored.as_ref().unwrap();
        assert!(st.store_bytes > r.records * 100, "{st:?}");
        assert!(
            st.plan_reads.0 + st.plan_reads.1 > 0,
            "the plan read through the store"
        );
        let report = r.report();
        assert!(report.contains("node cache of 1 MiB"), "{report}");
        assert!(report.contains("restart (open the store"), "{report}");
        assert_eq!(
            r.root,
            in_memory_or_on_disk(None).root,
            "the same state either way"
        );
    }

    fn in_memory_or_on_disk(store_cache: Option<usize>) -> StateReport {
        let dir = tempfile::tempdir().unwrap();
        let opts = StateOptions {
            patients: 200,
            grants: 50,
            accesses: 300,
            linked: 100,
            dir: dir.path().to_path_buf(),
            store_cache,
        };
        let mut steps = 0;
        let r = state(&opts, None, &mut |_| steps += 1).unwrap();
        assert!(steps > 5);
        let count = |t: u8| r.kinds.iter().find(|k| k.tag == t).unwrap().bulk;
        assert_eq!(count(tag::KEY), 200);
        assert_eq!(count(tag::PATIENT), 200);
        assert_eq!(count(tag::CONSENT), 600);
        assert_eq!(count(tag::GRANT), 50);
        assert_eq!(count(tag::ACCESS), 300);
        assert_eq!(count(tag::PATIENT_LOG), 600 + 50 + 300);
        assert_eq!(
            r.records,
            r.setup_records + 200 + 200 + 600 + 50 + 300 + 950
        );
        assert_eq!(r.restored_root, r.root);
        let bytes = std::fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(bytes.len() as u64, r.checkpoint_bytes);
        let c = checkpoint::decode(&bytes).unwrap();
        assert_eq!(c.state.root(), r.root);
        // One linked patient in five denies the study: 100 linked, 20 excluded.
        assert_eq!(r.plan.linked, 100);
        assert_eq!(r.plan.cohort, 80);
        assert_eq!(r.plan.excluded, 20);
        assert_eq!(r.plan.plan_s.len(), PLAN_RUNS);
        // The bulk is what the rules would have written: a patient's log matches its record,
        // and its key's nonce counts its transactions.
        let s = &c.state;
        let p = patient_id(3);
        let rec = s.patient(&p).unwrap().unwrap();
        assert_eq!(rec.log_len, 3 + 1 + 6);
        assert_eq!(s.scan_raw(&keys::patient_log_of(&p)).unwrap().len(), 10);
        assert_eq!(s.next_nonce(&patient_key(3)).unwrap(), 5);
        let g = s.grant(Bulk::grant_id(3)).unwrap().unwrap();
        assert_eq!((g.patient, g.uses), (p, 6));
        assert!(s.access(Bulk::access_id(53)).unwrap().is_some());
        let report = r.report();
        assert!(report.contains("EXTRAPOLATED"), "{report}");
        r
    }

    #[test]
    fn scrambled_ids_are_distinct() {
        let ids: std::collections::BTreeSet<u64> =
            (0u32..100_000).map(|g| Bulk::grant_id(g).0).collect();
        assert_eq!(ids.len(), 100_000);
    }
}
