//! The hospital's vault behind the node's services: [`VaultPlane`] is the compute service's
//! data plane (a job planned from the ledger, run on the consenting patients, noised), and
//! [`VaultRecords`] is record sharing's source (a patient's record through the hospital's
//! confirmed link from the ledger pseudonym).

use crate::federated::run_site;
use crate::links::Links;
use medspace_privacy::release::Protection;
use medspace_state::State;
use medspace_types::{JobId, MemberId, PatientId};
use medspace_vault::VaultKey;
use medspace_worker::compute::{DataPlane, JoinInput, ModelRows, PlaneRefusal, SiteVector};
use medspace_worker::records::RecordSource;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Runs `f` on a thread of its own and waits for it: the vault's DataFusion work starts a
/// runtime, which tokio forbids on a thread that belongs to a runtime (the node's blocking
/// tasks do).
fn outside_runtime<T: Send>(
    f: impl FnOnce() -> Result<T, PlaneRefusal> + Send,
) -> Result<T, PlaneRefusal> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|_| Err(PlaneRefusal("the vault's computation failed".into())))
    })
}

/// The compute service's data plane over a hospital's vault and patient links.
pub struct VaultPlane {
    /// The node directory holding the vault and the links.
    pub dir: PathBuf,
    /// The vault's keys, unlocked once when the node starts.
    pub key: VaultKey,
    /// Where the vault's queries run (`[vault] scheduler`).
    pub engine: medspace_cluster::Engine,
}

impl VaultPlane {
    fn site(&self) -> crate::federated::SiteVault<'_> {
        crate::federated::SiteVault {
            dir: &self.dir,
            key: &self.key,
            engine: &self.engine,
        }
    }
}

impl DataPlane for VaultPlane {
    fn site_vector(
        &self,
        state: &State,
        job: JobId,
        member: &MemberId,
        leave_out: &BTreeSet<PatientId>,
    ) -> Result<SiteVector, PlaneRefusal> {
        let refuse = |e: &dyn std::fmt::Display| PlaneRefusal(e.to_string());
        // The links are read afresh for every job: a patient linked since the last one counts
        // (unless an earlier site counts them).
        let links = Links::load(&self.dir, &self.key)
            .map_err(|e| refuse(&e))?
            .without(leave_out);
        let k = state.policy().map_err(|e| refuse(&e))?.min_cell_k;
        let mut rng = medspace_privacy::dp::os_rng().map_err(|e| refuse(&e))?;
        let started = std::time::Instant::now();
        // DataFusion runs on a runtime of its own, which cannot start inside the node's: the
        // query runs on a thread outside it (the caller is a blocking task and may wait).
        let (values, cohort) = outside_runtime(|| {
            run_site(
                state,
                job,
                member,
                self.site(),
                &links,
                Protection::Full { k },
                &mut rng,
            )
            .map_err(|e| refuse(&e))
        })?;
        tracing::info!(job = %job, cohort, ms = started.elapsed().as_millis() as u64, "compute.site: vector computed");
        Ok(SiteVector { values, cohort })
    }

    fn model_rows(
        &self,
        state: &State,
        job: JobId,
        member: &MemberId,
        leave_out: &BTreeSet<PatientId>,
    ) -> Result<ModelRows, PlaneRefusal> {
        let refuse = |e: &dyn std::fmt::Display| PlaneRefusal(e.to_string());
        let links = Links::load(&self.dir, &self.key)
            .map_err(|e| refuse(&e))?
            .without(leave_out);
        let started = std::time::Instant::now();
        let rows = outside_runtime(|| {
            crate::federated::run_model_site(state, job, member, self.site(), &links)
                .map_err(|e| refuse(&e))
        })?;
        tracing::info!(job = %job, cohort = rows.cohort, ms = started.elapsed().as_millis() as u64, "compute.site: model rows read");
        Ok(rows)
    }

    fn join_input(
        &self,
        state: &State,
        job: JobId,
        member: &MemberId,
    ) -> Result<JoinInput, PlaneRefusal> {
        let refuse = |e: &dyn std::fmt::Display| PlaneRefusal(e.to_string());
        let links = Links::load(&self.dir, &self.key).map_err(|e| refuse(&e))?;
        let started = std::time::Instant::now();
        let input = outside_runtime(|| {
            crate::vertical::run_join_site(state, job, member, self.site(), &links)
                .map_err(|e| refuse(&e))
        })?;
        let persons = match &input {
            JoinInput::Clinical { patients, .. } | JoinInput::Claims { patients, .. } => {
                patients.len()
            }
        };
        tracing::info!(job = %job, persons, ms = started.elapsed().as_millis() as u64, "compute.site: vertical study's rows read");
        Ok(input)
    }

    fn job_patients(
        &self,
        state: &State,
        job: JobId,
        member: &MemberId,
    ) -> Result<Option<Vec<PatientId>>, PlaneRefusal> {
        let refuse = |e: &dyn std::fmt::Display| PlaneRefusal(e.to_string());
        let links = Links::load(&self.dir, &self.key).map_err(|e| refuse(&e))?;
        let overlap = crate::federated::job_spec(state, job)
            .is_ok_and(|s| matches!(s.aggregate, medspace_privacy::query::Aggregate::Overlap(_)));
        if overlap {
            // An overlap counts its cohort's persons: the query selects them here.
            return outside_runtime(|| {
                crate::federated::overlap_patients(state, job, member, self.site(), &links)
                    .map(Some)
                    .map_err(|e| refuse(&e))
            });
        }
        crate::federated::job_patients(state, job, member, &links)
            .map(Some)
            .map_err(|e| refuse(&e))
    }
}

/// Record sharing's source over a hospital's vault and patient links.
pub struct VaultRecords {
    /// The node directory holding the vault and the links.
    pub dir: PathBuf,
    /// The vault's keys, unlocked once when the node starts.
    pub key: VaultKey,
    /// Where the vault's queries run (`[vault] scheduler`).
    pub engine: medspace_cluster::Engine,
}

impl VaultRecords {
    fn site(&self) -> crate::federated::SiteVault<'_> {
        crate::federated::SiteVault {
            dir: &self.dir,
            key: &self.key,
            engine: &self.engine,
        }
    }
}

impl RecordSource for VaultRecords {
    fn patient_bundle(
        &self,
        patient: &PatientId,
    ) -> Result<Option<serde_json::Value>, PlaneRefusal> {
        let refuse = |e: &dyn std::fmt::Display| PlaneRefusal(e.to_string());
        let links = Links::load(&self.dir, &self.key).map_err(|e| refuse(&e))?;
        let Some(person) = links.person_of(patient) else {
            return Ok(None);
        };
        outside_runtime(|| {
            let vault = medspace_vault::Vault::open_read_only(&self.dir, &self.key)
                .map_err(|e| refuse(&e))?;
            medspace_vault::export::export_patient(&vault, &person.to_string())
                .map(Some)
                .map_err(|e| refuse(&e))
        })
    }

    fn vault_summary(&self) -> Result<Option<serde_json::Value>, PlaneRefusal> {
        let refuse = |e: &dyn std::fmt::Display| PlaneRefusal(e.to_string());
        let links = Links::load(&self.dir, &self.key).map_err(|e| refuse(&e))?;
        outside_runtime(|| {
            let vault = medspace_vault::Vault::open_read_only(&self.dir, &self.key)
                .map_err(|e| refuse(&e))?;
            let ingests = vault.ingests();
            let mut tables = std::collections::BTreeMap::<String, u64>::new();
            for i in &ingests {
                for (t, n) in &i.tables {
                    *tables.entry(t.clone()).or_insert(0) += n;
                }
            }
            Ok(Some(serde_json::json!({
                "ingests": ingests,
                "tables": tables,
                "resources": vault.counts_by_type(),
                "persons": vault.persons().len(),
                "linked": links.len(),
            })))
        })
    }

    fn catalog_entry(
        &self,
        state: &State,
        time_ms: u64,
        member: &MemberId,
    ) -> Result<Option<medspace_types::DatasetDescription>, PlaneRefusal> {
        let refuse = |e: &dyn std::fmt::Display| PlaneRefusal(e.to_string());
        // Quality "as of" the ledger's day, as the devnet's first entries are.
        let day = i32::try_from(time_ms / 86_400_000).unwrap_or(i32::MAX);
        outside_runtime(|| {
            let v = medspace_vault::catalog::describe_node(&self.dir, &self.key, day)
                .map_err(|e| refuse(&e))?;
            crate::publish::next_entry(state, member.as_str(), &v)
                .map(Some)
                .map_err(|e| refuse(&e))
        })
    }

    fn build_release(
        &self,
        state: &State,
        height: u64,
        member: &MemberId,
        request: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, PlaneRefusal> {
        let refuse = |e: &dyn std::fmt::Display| PlaneRefusal(e.to_string());
        let spec_json = request
            .get("spec")
            .filter(|s| s.is_object())
            .ok_or_else(|| PlaneRefusal("the release specification is missing".into()))?
            .to_string();
        let spec = medspace_deid::ReleaseSpec::from_json(&spec_json).map_err(|e| refuse(&e))?;
        let purposes: Vec<medspace_types::Purpose> =
            serde_json::from_value(request.get("purposes").cloned().unwrap_or_default())
                .map_err(|e| refuse(&format!("purposes: {e}")))?;
        let source = medspace_types::DatasetId::new(&spec.dataset).map_err(|e| refuse(&e))?;
        // Only this hospital's own dataset is released from its vault.
        match state.dataset(&source).map_err(|e| refuse(&e))? {
            Some(d) if d.owner == *member && d.release.is_none() => {}
            _ => {
                return Err(PlaneRefusal(format!(
                    "{source} is not a dataset of {member} in the catalog"
                )));
            }
        }
        let id = match request.get("release").and_then(|r| r.as_str()) {
            Some(r) if !r.trim().is_empty() => r.trim().to_string(),
            _ => format!("{member}.open"),
        };
        let id = medspace_types::DatasetId::new(&id).map_err(|e| refuse(&e))?;
        let started = std::time::Instant::now();
        let built = outside_runtime(|| {
            crate::release::build(
                self.site(),
                state,
                height,
                &crate::release::Request {
                    release: &id,
                    source: &source,
                    spec: &spec,
                    purposes: &purposes,
                    parents: &Default::default(),
                },
                &mut |_| {},
            )
            .map_err(|e| refuse(&e))
        })?;
        tracing::info!(release = %id, persons = built.figures.persons, eligible = built.eligible, ms = started.elapsed().as_millis() as u64, "release.plan: built");
        Ok(Some(serde_json::json!({
            "entry": built.entry,
            "figures": built.figures,
            "report": built.report,
            "eligible": built.eligible,
        })))
    }

    fn release_manifest(
        &self,
        dataset: &medspace_types::DatasetId,
    ) -> Result<Option<Vec<u8>>, PlaneRefusal> {
        let path = crate::release::release_dir(&self.dir, dataset).join("manifest.json");
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PlaneRefusal(format!("{}: {e}", path.display()))),
        }
    }

    fn release_file(
        &self,
        dataset: &medspace_types::DatasetId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, PlaneRefusal> {
        // Only a file the manifest lists (never a path of the caller's choosing).
        let Some(manifest) = self.release_manifest(dataset)? else {
            return Ok(None);
        };
        let m: crate::release::Manifest = serde_json::from_slice(&manifest)
            .map_err(|e| PlaneRefusal(format!("the release's manifest: {e}")))?;
        if name == "manifest.json" {
            return Ok(Some(manifest));
        }
        if !m.files.iter().any(|f| f.name == name) {
            return Ok(None);
        }
        let path = crate::release::release_dir(&self.dir, dataset).join(name);
        std::fs::read(&path)
            .map(Some)
            .map_err(|e| PlaneRefusal(format!("{}: {e}", path.display())))
    }

    fn pseudonym_of(&self, local_id: &str) -> Result<Option<PatientId>, PlaneRefusal> {
        let refuse = |e: &dyn std::fmt::Display| PlaneRefusal(e.to_string());
        let links = Links::load(&self.dir, &self.key).map_err(|e| refuse(&e))?;
        outside_runtime(|| {
            let vault = medspace_vault::Vault::open_read_only(&self.dir, &self.key)
                .map_err(|e| refuse(&e))?;
            Ok(vault
                .person_id_for_patient_id(local_id)
                .and_then(|person| links.patient_of(person).copied()))
        })
    }
}
