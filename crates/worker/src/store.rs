//! The worker's own files: each job's share as this site computed it, and each result this site
//! released as aggregator. A share is computed once and kept: after a restart the node serves
//! the same share (fresh noise for the same job would let an aggregator average noise away).
//! Files are written to a temporary name, synced and renamed, so a crash leaves the old state.

use crate::WorkerError;
use crate::wire::Share;
use medspace_types::JobId;
use std::path::{Path, PathBuf};

/// Shares and results on disk under one directory.
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
        for sub in ["shares", "results", "reveals"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn share_path(&self, job: JobId) -> PathBuf {
        self.dir.join("shares").join(format!("{job}.json"))
    }

    fn result_path(&self, job: JobId) -> PathBuf {
        self.dir.join("results").join(format!("{job}.json"))
    }

    fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WorkerError> {
        use std::io::Write as _;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(path, e))
    }

    fn read(path: &Path) -> Result<Option<Vec<u8>>, WorkerError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path, e)),
        }
    }

    /// Keeps this site's share of a job (never replaced once written).
    pub fn put_share(&self, share: &Share) -> Result<(), WorkerError> {
        let path = self.share_path(share.job);
        if path.exists() {
            return Ok(());
        }
        let bytes = serde_json::to_vec(share).map_err(|e| WorkerError::Invalid {
            what: "share",
            error: e.to_string(),
        })?;
        Self::write_atomic(&path, &bytes)
    }

    /// This site's share of a job, if computed.
    pub fn share(&self, job: JobId) -> Result<Option<Share>, WorkerError> {
        let path = self.share_path(job);
        match Self::read(&path)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| WorkerError::Invalid {
                    what: "stored share",
                    error: format!("{e}: path={}", path.display()),
                }),
        }
    }

    /// Keeps the exact bytes of a result this site released (never replaced once written).
    pub fn put_result(&self, job: JobId, bytes: &[u8]) -> Result<(), WorkerError> {
        let path = self.result_path(job);
        if path.exists() {
            return Ok(());
        }
        Self::write_atomic(&path, bytes)
    }

    /// Records that this site reveals its masks with `dropped` for `job`. The first set named
    /// for a job is kept; the same set again is allowed, any other is refused, so an
    /// aggregator can never collect a site's masks one peer at a time.
    pub fn claim_reveal(
        &self,
        job: JobId,
        dropped: &[medspace_types::MemberId],
    ) -> Result<(), WorkerError> {
        let path = self.dir.join("reveals").join(format!("{job}.json"));
        let names: Vec<&str> = dropped.iter().map(|m| m.as_str()).collect();
        let wanted = serde_json::to_vec(&names).map_err(|e| WorkerError::Invalid {
            what: "reveal",
            error: e.to_string(),
        })?;
        match Self::read(&path)? {
            Some(kept) if kept == wanted => Ok(()),
            Some(kept) => Err(WorkerError::Invalid {
                what: "reveal",
                error: format!(
                    "masks of {job} were already revealed for dropped sites {}; refusing sites {}",
                    String::from_utf8_lossy(&kept),
                    String::from_utf8_lossy(&wanted)
                ),
            }),
            None => Self::write_atomic(&path, &wanted),
        }
    }

    /// The bytes of a released result.
    pub fn result(&self, job: JobId) -> Result<Option<Vec<u8>>, WorkerError> {
        Self::read(&self.result_path(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medspace_types::{Keypair, MemberId};

    #[test]
    fn a_share_is_kept_once_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = Keypair::from_seed(1);
        let m = MemberId::new("hospital-a").unwrap();
        assert!(store.share(JobId(1)).unwrap().is_none());
        let first = Share::sign(&k, JobId(1), m.clone(), 3, vec![1, 2]);
        store.put_share(&first).unwrap();
        store
            .put_share(&Share::sign(&k, JobId(1), m, 4, vec![5, 6]))
            .unwrap();
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.share(JobId(1)).unwrap(), Some(first));
        again.put_result(JobId(1), b"r1").unwrap();
        again.put_result(JobId(1), b"r2").unwrap();
        assert_eq!(store.result(JobId(1)).unwrap().as_deref(), Some(&b"r1"[..]));
        std::fs::write(
            dir.path().join("shares").join("j-0000000000000002.json"),
            b"{",
        )
        .unwrap();
        assert!(store.share(JobId(2)).is_err());
        let c = MemberId::new("hospital-c").unwrap();
        let b = MemberId::new("hospital-b").unwrap();
        store
            .claim_reveal(JobId(1), std::slice::from_ref(&c))
            .unwrap();
        store
            .claim_reveal(JobId(1), std::slice::from_ref(&c))
            .unwrap();
        let err = again.claim_reveal(JobId(1), &[b]).unwrap_err().to_string();
        assert!(err.contains("already revealed"), "{err}");
        assert!(store.share(JobId(2)).is_err());
    }
}
