//! The worker's own files, one folder per job. What a site computed and committed to is written
//! once and never replaced, so a restart serves exactly what was served before: the same noised
//! vector and secrets (fresh noise for the same job would let an aggregator average it away),
//! the same `U1` and masked vector (a site masks for one set of dealers only, ever). Files are
//! written to a temporary name, synced and renamed, so a crash leaves the previous state.

use crate::WorkerError;
use crate::wire::{DealingMsg, Hex, MaskedMsg, StepMsg};
use medspace_types::{GrantId, JobId};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};

/// What a site computed for a job: its noised local vector, cohort size and round secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRecord {
    /// The site's secrets ([`medspace_privacy::secagg::SiteSecrets`] bytes).
    pub secrets: Hex,
    /// The noised local vector in the query's layout.
    pub vector: Vec<i64>,
    /// Consenting patients the query ran on.
    pub cohort: u64,
    /// The earlier sites this site matched its patients with (see
    /// [`crate::compute::once`]); its dealing says so.
    #[serde(default)]
    pub counted_once_with: Vec<medspace_types::MemberId>,
}

/// What a site committed to when it answered the mask request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskCommitment {
    /// `U1` as site indices.
    pub u1: Vec<usize>,
    /// Its share of each dealer of `U1` ([`medspace_privacy::secagg::HeldShare`] bytes).
    pub held: Vec<(usize, Hex)>,
    /// The signed masked vector it answered.
    pub answer: MaskedMsg,
}

/// What the aggregator collected, so that a restart continues the same round.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Collected {
    /// The dealings that define `U1` (contract order).
    pub dealings: Vec<DealingMsg>,
    /// The masked vectors that define `U2` (contract order).
    pub masked: Vec<MaskedMsg>,
    /// Sites left out, with why.
    pub dropped: Vec<(String, String)>,
    /// A model's job: the sites' signed contributions from their last step (the round's
    /// survivors, contract order).
    #[serde(default)]
    pub contributions: Vec<medspace_types::SignedContribution>,
    /// A model's job: every finished iteration's answers, so a restarted aggregator continues
    /// the same fit (the sites see the same coefficients again) instead of starting another.
    #[serde(default)]
    pub steps: Vec<Vec<StepMsg>>,
}

/// The last step of a model's job a site answered: it answers each iteration once, for one
/// set of coefficients, and never goes back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The iteration.
    pub iteration: u32,
    /// The signed answer (its binding names the coefficients).
    pub answer: StepMsg,
}

/// Per-job files under one directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> WorkerError {
    WorkerError::Io {
        path: path.display().to_string(),
        error: e.to_string(),
    }
}

impl Store {
    /// Opens (creating) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self, WorkerError> {
        let jobs = dir.join("jobs");
        std::fs::create_dir_all(&jobs).map_err(|e| io(&jobs, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, job: JobId, name: &str) -> PathBuf {
        self.dir.join("jobs").join(job.to_string()).join(name)
    }

    fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WorkerError> {
        use std::io::Write as _;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))
    }

    fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, WorkerError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path, e)),
        }
    }

    fn read<T: DeserializeOwned>(&self, job: JobId, name: &str) -> Result<Option<T>, WorkerError> {
        let path = self.path(job, name);
        match Self::read_bytes(&path)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| WorkerError::Invalid {
                    what: "stored record",
                    error: format!("{e}: path={}", path.display()),
                }),
        }
    }

    /// Writes `value` unless the file exists (first write wins). Returns what is stored.
    fn put_once<T: Serialize + DeserializeOwned + Clone>(
        &self,
        job: JobId,
        name: &str,
        value: &T,
    ) -> Result<T, WorkerError> {
        if let Some(kept) = self.read(job, name)? {
            return Ok(kept);
        }
        let bytes = serde_json::to_vec(value).map_err(|e| WorkerError::Invalid {
            what: "record",
            error: e.to_string(),
        })?;
        Self::write_atomic(&self.path(job, name), &bytes)?;
        Ok(value.clone())
    }

    /// Keeps what the site computed (never replaced); returns what is kept.
    pub fn put_site(&self, job: JobId, rec: &SiteRecord) -> Result<SiteRecord, WorkerError> {
        self.put_once(job, "site.json", rec)
    }

    /// What the site computed, if it did.
    pub fn site(&self, job: JobId) -> Result<Option<SiteRecord>, WorkerError> {
        self.read(job, "site.json")
    }

    /// Replaces the site's last answered step of a model's job (the caller checks that the
    /// iteration goes forward).
    pub fn put_step(&self, job: JobId, rec: &StepRecord) -> Result<(), WorkerError> {
        let bytes = serde_json::to_vec(rec).map_err(|e| WorkerError::Invalid {
            what: "record",
            error: e.to_string(),
        })?;
        Self::write_atomic(&self.path(job, "step.json"), &bytes)
    }

    /// The site's last answered step of a model's job.
    pub fn step(&self, job: JobId) -> Result<Option<StepRecord>, WorkerError> {
        self.read(job, "step.json")
    }

    /// Keeps the hash of the first count-once set site `index` sent for `job` (never
    /// replaced); returns what is kept.
    pub fn put_psi_request(
        &self,
        job: JobId,
        index: usize,
        hash: &medspace_types::Hash,
    ) -> Result<medspace_types::Hash, WorkerError> {
        self.put_once(job, &format!("psi-{index}.json"), hash)
    }

    /// Keeps why the site refused the job (never replaced).
    pub fn put_refusal(&self, job: JobId, reason: &str) -> Result<String, WorkerError> {
        self.put_once(job, "refused.json", &reason.to_string())
    }

    /// Why the site refused the job, if it did.
    pub fn refusal(&self, job: JobId) -> Result<Option<String>, WorkerError> {
        self.read(job, "refused.json")
    }

    /// Keeps the site's mask commitment (never replaced); returns what is kept, which may be an
    /// earlier commitment to another `U1`.
    pub fn put_commitment(
        &self,
        job: JobId,
        c: &MaskCommitment,
    ) -> Result<MaskCommitment, WorkerError> {
        self.put_once(job, "mask.json", c)
    }

    /// The site's mask commitment, if it made one.
    pub fn commitment(&self, job: JobId) -> Result<Option<MaskCommitment>, WorkerError> {
        self.read(job, "mask.json")
    }

    /// Keeps (replacing) what the aggregator collected so far.
    pub fn put_collected(&self, job: JobId, c: &Collected) -> Result<(), WorkerError> {
        let bytes = serde_json::to_vec(c).map_err(|e| WorkerError::Invalid {
            what: "collected",
            error: e.to_string(),
        })?;
        Self::write_atomic(&self.path(job, "collected.json"), &bytes)
    }

    /// What the aggregator collected, if anything.
    pub fn collected(&self, job: JobId) -> Result<Option<Collected>, WorkerError> {
        self.read(job, "collected.json")
    }

    /// Keeps the exact bytes of a result this site released (never replaced); returns the
    /// bytes kept.
    pub fn put_result(&self, job: JobId, bytes: &[u8]) -> Result<Vec<u8>, WorkerError> {
        let path = self.path(job, "result.json");
        if let Some(kept) = Self::read_bytes(&path)? {
            return Ok(kept);
        }
        Self::write_atomic(&path, bytes)?;
        Ok(bytes.to_vec())
    }

    /// The bytes of a released result.
    pub fn result(&self, job: JobId) -> Result<Option<Vec<u8>>, WorkerError> {
        Self::read_bytes(&self.path(job, "result.json"))
    }

    fn wrong_codes_path(&self, grant: GrantId) -> PathBuf {
        self.dir.join("grants").join(format!("{grant}.wrong-codes"))
    }

    /// Wrong codes tried for `grant` at this node, ever.
    pub fn wrong_codes(&self, grant: GrantId) -> Result<u32, WorkerError> {
        let path = self.wrong_codes_path(grant);
        match Self::read_bytes(&path)? {
            None => Ok(0),
            // A count that does not read back locks the grant rather than resetting it.
            Some(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| WorkerError::Invalid {
                    what: "wrong-code count",
                    error: format!("unreadable: path={}", path.display()),
                }),
        }
    }

    /// Counts one more wrong code for `grant` (synced before it returns); the new count. The
    /// caller serializes calls for one grant.
    pub fn add_wrong_code(&self, grant: GrantId) -> Result<u32, WorkerError> {
        let n = self.wrong_codes(grant)?.saturating_add(1);
        Self::write_atomic(&self.wrong_codes_path(grant), n.to_string().as_bytes())?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "medspace-worker-store-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn first_write_wins_and_survives_reopening() {
        let d = dir("once");
        let store = Store::open(&d).unwrap();
        assert!(store.site(JobId(1)).unwrap().is_none());
        let first = SiteRecord {
            secrets: Hex(vec![1; 96]),
            vector: vec![3, 4],
            cohort: 7,
            counted_once_with: Vec::new(),
        };
        assert_eq!(store.put_site(JobId(1), &first).unwrap(), first);
        let second = SiteRecord {
            vector: vec![9, 9],
            ..first.clone()
        };
        assert_eq!(store.put_site(JobId(1), &second).unwrap(), first);
        let again = Store::open(&d).unwrap();
        assert_eq!(again.site(JobId(1)).unwrap(), Some(first));
        assert_eq!(again.put_result(JobId(1), b"r1").unwrap(), b"r1");
        assert_eq!(again.put_result(JobId(1), b"r2").unwrap(), b"r1");
        std::fs::write(again.path(JobId(2), "site.json"), b"{").unwrap_or_else(|_| {
            std::fs::create_dir_all(again.path(JobId(2), "")).unwrap();
            std::fs::write(again.path(JobId(2), "site.json"), b"{").unwrap();
        });
        assert!(again.site(JobId(2)).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn wrong_codes_are_counted_across_restarts_and_a_damaged_count_locks() {
        let d = dir("codes");
        let g = GrantId(5);
        let store = Store::open(&d).unwrap();
        assert_eq!(store.wrong_codes(g).unwrap(), 0);
        assert_eq!(store.add_wrong_code(g).unwrap(), 1);
        assert_eq!(store.add_wrong_code(g).unwrap(), 2);
        let again = Store::open(&d).unwrap();
        assert_eq!(
            again.wrong_codes(g).unwrap(),
            2,
            "a restart does not reset the count"
        );
        assert_eq!(again.wrong_codes(GrantId(6)).unwrap(), 0);
        std::fs::write(again.wrong_codes_path(g), b"two").unwrap();
        assert!(
            again.wrong_codes(g).is_err(),
            "an unreadable count is not zero"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
