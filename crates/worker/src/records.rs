//! Record sharing at the holding hospital's node: a grantee redeems a patient's authorization
//! code, and the node delivers exactly the granted FHIR resources after the access is on the
//! ledger; a patient downloads their own complete record.
//!
//! `POST /v1/records/redeem` with `{"grant": "g-…", "code": "XXXX-XXXX-…"}`, signed (see
//! `medspace_api::auth`) by the grantee institution's member key, its node key or one of its users' keys. The
//! node checks, in order: the request is signed and not a replay; the grant is held here and
//! is for the caller's institution; the caller has not made too many wrong guesses lately; the
//! code matches the hash on the ledger (a wrong code is counted); only then whether the grant
//! is live (`medspace_state::policy::grant_live`, the ledger's own rule), so a guesser learns
//! nothing about it; and no other redemption of it is in flight. It then reads the patient's
//! record through its [`RecordSource`], keeps only the granted resource types whose clinical
//! date lies in the grant's period, records `RecordAccess` (who, whose pseudonym, the grant, the
//! types, the count and the SHA-256 of exactly the bytes delivered) with the node key, and
//! only once that transaction is final answers with the Bundle. Anything refused delivers
//! nothing and changes nothing.

use crate::WorkerError;
use crate::compute::PlaneRefusal;
use crate::submit::Submitter;
use commonware_runtime::{Clock, Spawner};
use medspace_ledger::Ledger;
use medspace_state::State;
use medspace_state::records::{GrantRecord, Principal};
use medspace_types::{
    AccessBasis, GrantId, Hash, List, MemberId, PatientId, Payload, PublicKey, RecordAccess, Text,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

/// Failed code attempts a caller key may make within [`GUESS_WINDOW_MS`].
pub const MAX_GUESSES: usize = 5;
/// The window of the per-key guess limit.
pub const GUESS_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Wrong codes a grant tolerates at a holder, ever (counted on disk, so a restart does not
/// reset it); then the grant is locked there and the patient issues a new one.
pub const MAX_WRONG_CODES_PER_GRANT: u32 = 5;
/// Domain of a delivery's content hash.
pub const DELIVERY_DOMAIN: &[u8] = b"medspace/delivery/v1";

/// The hash recorded on the ledger for delivered bytes.
pub fn delivery_hash(bytes: &[u8]) -> Hash {
    Hash::of(&[DELIVERY_DOMAIN, bytes])
}

/// Where a hospital's patient records come from: its vault, through its confirmed links from
/// ledger pseudonyms to local records (`medspace-compute`), or a scripted one in tests.
pub trait RecordSource: Send + Sync + 'static {
    /// The patient's complete record here as a FHIR R4 Bundle, if this hospital holds one
    /// linked to the pseudonym. Blocking.
    fn patient_bundle(&self, patient: &PatientId) -> Result<Option<Value>, PlaneRefusal>;

    /// What the hospital's steward sees of the vault: its ingests, its rows per CDM table, its
    /// persons and how many are linked to a ledger pseudonym. Blocking. `None`: no vault here.
    fn vault_summary(&self) -> Result<Option<Value>, PlaneRefusal> {
        Ok(None)
    }

    /// The catalog entry `member`'s vault would publish now on the ledger `state` of block
    /// time `time_ms` (the next version, the classification in force, quality as of that day).
    /// Blocking. `None`: no vault here.
    fn catalog_entry(
        &self,
        state: &State,
        time_ms: u64,
        member: &MemberId,
    ) -> Result<Option<medspace_types::DatasetDescription>, PlaneRefusal> {
        let _ = (state, time_ms, member);
        Ok(None)
    }

    /// The ledger pseudonym linked to the person this hospital knows by `local_id` (a FHIR
    /// Patient id), for the steward who verifies a patient in person. Blocking.
    fn pseudonym_of(&self, local_id: &str) -> Result<Option<PatientId>, PlaneRefusal> {
        let _ = local_id;
        Ok(None)
    }

    /// The manifest of this hospital's open-pool release `dataset` as kept here (its bytes hash
    /// to the catalog entry's `content_hash`). Blocking. `None`: not kept here.
    fn release_manifest(
        &self,
        dataset: &medspace_types::DatasetId,
    ) -> Result<Option<Vec<u8>>, PlaneRefusal> {
        let _ = dataset;
        Ok(None)
    }

    /// Builds (or plans again) this hospital's open-pool release from its vault, as its steward
    /// asks in `request` (`{"spec": <release specification>, "purposes": [..], "release":
    /// "<dataset id>"}`) over the ledger `state` at `height`: the files are written beside the
    /// node and the answer is `{"entry", "figures", "report", "eligible"}` for the steward to
    /// read and sign (`PublishRelease`). Blocking. `None`: this node holds no vault.
    fn build_release(
        &self,
        state: &State,
        height: u64,
        member: &MemberId,
        request: &Value,
    ) -> Result<Option<Value>, PlaneRefusal> {
        let _ = (state, height, member, request);
        Ok(None)
    }

    /// A file of the release that its manifest lists. Blocking. `None`: no such file.
    fn release_file(
        &self,
        dataset: &medspace_types::DatasetId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, PlaneRefusal> {
        let _ = (dataset, name);
        Ok(None)
    }
}

/// What a redemption delivers, and how long its two phases took at the holder.
pub struct Delivery {
    /// The Bundle's bytes.
    pub bytes: Vec<u8>,
    /// Checks, reading and scoping the record, hashing (everything but the ledger).
    pub prepare: std::time::Duration,
    /// From submitting `RecordAccess` to its finality.
    pub finality: std::time::Duration,
}

/// A redemption request's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    /// The grant.
    pub grant: GrantId,
    /// The code the patient handed over.
    pub code: String,
    /// The finalized height at which the caller saw the grant: the holder's node waits (at
    /// most [`CATCH_UP`]) until its own ledger has reached it, so a grant just issued is found.
    #[serde(default)]
    pub after_height: u64,
}

/// How long a redemption waits for the holder's ledger to reach the caller's height.
pub const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a request was refused: an HTTP status and a lowercase reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// Why.
    pub reason: String,
}

fn refused(status: u16, reason: impl Into<String>) -> Refused {
    Refused {
        status,
        reason: reason.into(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// In-memory guards of the redemption route (replays are refused for every route by the
/// HTTP layer's [`medspace_api::auth::ReplayGuard`]).
#[derive(Default)]
pub(crate) struct Guards {
    /// Failed code attempts per caller key, with their times.
    failures: Mutex<HashMap<PublicKey, Vec<u64>>>,
    /// Held while a grant's wrong-code count is read and written.
    counting: Mutex<()>,
    /// Grants with a redemption in flight.
    in_flight: Mutex<HashSet<GrantId>>,
}

impl Guards {
    fn recent_failures(&self, key: &PublicKey, now_ms: u64) -> usize {
        let mut f = lock(&self.failures);
        let list = f.entry(key.clone()).or_default();
        list.retain(|t| now_ms.saturating_sub(*t) < GUESS_WINDOW_MS);
        list.len()
    }

    fn fail(&self, key: &PublicKey, now_ms: u64) {
        lock(&self.failures)
            .entry(key.clone())
            .or_default()
            .push(now_ms);
    }
}

/// Releases a grant's in-flight mark when the redemption ends, whatever the outcome.
struct InFlight<'a> {
    guards: &'a Guards,
    grant: GrantId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.guards.in_flight).remove(&self.grant);
    }
}

/// The institution a caller acts for.
fn institution(state: &State, who: &Principal) -> Result<MemberId, Refused> {
    match who {
        // The member key, or the member's node acting for it.
        Principal::Member(m) | Principal::Node(m) => Ok(m.clone()),
        Principal::User(u) => state
            .user(u)
            .map_err(|e| refused(500, e.to_string()))?
            .map(|r| r.member)
            .ok_or_else(|| refused(403, format!("user {u} is not registered"))),
        Principal::Patient(_) => Err(refused(
            403,
            "a patient cannot redeem a grant: the grantee institution does",
        )),
    }
}

/// Whose grant it is: held here, for the caller's institution.
fn check_parties(grant: &GrantRecord, me: &MemberId, caller: &MemberId) -> Result<(), Refused> {
    let t = &grant.terms;
    if t.holder != *me {
        return Err(refused(
            404,
            format!(
                "grant {} is for records held by {}, not {me}",
                grant.id, t.holder
            ),
        ));
    }
    if t.grantee != *caller {
        return Err(refused(
            403,
            format!("grant {} is for {}, not {caller}", grant.id, t.grantee),
        ));
    }
    Ok(())
}

/// Whether the grant is still live, by the ledger's own rule (checked only once the code
/// matched, so a guesser learns nothing about it).
fn check_live(grant: &GrantRecord, now_ms: u64) -> Result<(), Refused> {
    medspace_state::policy::grant_live(grant, now_ms).map_err(|e| refused(403, e.to_string()))
}

/// Milliseconds since the epoch (negative before 1970) of a FHIR date or dateTime (`YYYY`,
/// `YYYY-MM`, `YYYY-MM-DD`, with or without a time, read as UTC midnight of its day).
pub fn fhir_date_ms(s: &str) -> Option<i64> {
    let mut parts = s.get(..10).unwrap_or(s).split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next().map_or(Some(1), |p| p.parse().ok())?;
    let d: i64 = parts.next().map_or(Some(1), |p| p.parse().ok())?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (proleptic Gregorian), Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days.checked_mul(86_400_000)
}

/// The clinical date of a resource (the first of the usual date elements present).
fn clinical_date_ms(resource: &Value) -> Option<i64> {
    const FIELDS: [&str; 12] = [
        "effectiveDateTime",
        "onsetDateTime",
        "performedDateTime",
        "authoredOn",
        "recordedDate",
        "issued",
        "occurrenceDateTime",
        "date",
        "created",
        "effectivePeriod",
        "performedPeriod",
        "period",
    ];
    for f in FIELDS {
        match resource.get(f) {
            Some(Value::String(s)) => return fhir_date_ms(s),
            Some(Value::Object(p)) => {
                if let Some(Value::String(s)) = p.get("start") {
                    return fhir_date_ms(s);
                }
            }
            _ => {}
        }
    }
    if let Some(Value::Object(p)) = resource.get("billablePeriod")
        && let Some(Value::String(s)) = p.get("start")
    {
        return fhir_date_ms(s);
    }
    None
}

/// Keeps only the entries of `bundle` whose type is granted and whose clinical date (if it
/// has one) lies within `[from_ms, to_ms]` (`from_ms` 0: from the beginning, also before 1970). Returns the types delivered and the count.
pub fn scope_bundle(
    bundle: &mut Value,
    types: &[&str],
    from_ms: u64,
    to_ms: u64,
) -> (Vec<String>, u64) {
    let mut delivered: Vec<String> = Vec::new();
    let mut count = 0u64;
    if let Some(Value::Array(entries)) = bundle.get_mut("entry") {
        entries.retain(|e| {
            let Some(r) = e.get("resource") else {
                return false;
            };
            let Some(rt) = r.get("resourceType").and_then(Value::as_str) else {
                return false;
            };
            if !types.contains(&rt) {
                return false;
            }
            let (from, to) = (i64::try_from(from_ms), i64::try_from(to_ms));
            let in_period = clinical_date_ms(r).is_none_or(|t| {
                from.is_ok_and(|f| t >= f || from_ms == 0) && to.is_ok_and(|u| t <= u)
            });
            if in_period {
                count += 1;
                if !delivered.iter().any(|d| d == rt) {
                    delivered.push(rt.to_string());
                }
            }
            in_period
        });
    }
    delivered.sort();
    (delivered, count)
}

/// The record-sharing service of a hospital's node.
pub struct RecordSharing<E, L, R> {
    ctx: E,
    member: MemberId,
    ledger: Arc<L>,
    source: Arc<R>,
    submitter: Arc<Submitter<L>>,
    store: crate::store::Store,
    pub(crate) guards: Guards,
}

impl<E, L, R> RecordSharing<E, L, R> {
    /// The worker runtime's clock.
    pub(crate) fn clock(&self) -> &E {
        &self.ctx
    }

    /// This node's member.
    pub(crate) fn member(&self) -> &MemberId {
        &self.member
    }

    /// The ledger as this node follows it.
    pub(crate) fn ledger(&self) -> &L {
        &self.ledger
    }

    /// The node's transaction submitter.
    pub(crate) fn submitter(&self) -> &Submitter<L> {
        &self.submitter
    }
}

impl<E, L, R> RecordSharing<E, L, R>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    /// The service of `member`'s node.
    pub fn new(
        ctx: E,
        member: MemberId,
        ledger: Arc<L>,
        source: Arc<R>,
        submitter: Arc<Submitter<L>>,
        store: crate::store::Store,
    ) -> Self {
        Self {
            ctx,
            member,
            ledger,
            source,
            submitter,
            store,
            guards: Guards::default(),
        }
    }

    /// `f` over the record source, off the async runtime (the source blocks).
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&R) -> Result<T, PlaneRefusal> + Send + 'static,
    ) -> Result<T, Refused> {
        let source = self.source.clone();
        self.ctx
            .child("records")
            .shared(true)
            .spawn(move |_| async move { f(&source) })
            .await
            .map_err(|e| refused(500, e.to_string()))?
            .map_err(|e| refused(500, e.to_string()))
    }

    /// The patient's bundle, read off the async runtime.
    async fn bundle(&self, patient: PatientId) -> Result<Option<Value>, Refused> {
        self.blocking(move |s| s.patient_bundle(&patient)).await
    }

    /// Whether `who` is this hospital itself (its member key) or one of its stewards: the
    /// only callers of the vault's own pages.
    pub(crate) fn is_own_steward(&self, who: &Principal) -> Result<(), Refused> {
        let ok = match who {
            Principal::Member(m) => *m == self.member,
            Principal::User(u) => self
                .ledger
                .snapshot()
                .state
                .user(u)
                .map_err(|e| refused(500, e.to_string()))?
                .is_some_and(|u| {
                    u.role == medspace_types::Role::Steward && u.member == self.member
                }),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(refused(
                403,
                format!(
                    "only {}'s stewards (or its member key) see its vault",
                    self.member
                ),
            ))
        }
    }

    /// The vault as its steward sees it ([`RecordSource::vault_summary`]), read off the async
    /// runtime; refused to anyone but this hospital's stewards.
    pub async fn vault_summary(&self, who: &Principal) -> Result<Value, Refused> {
        self.is_own_steward(who)?;
        self.blocking(|s| s.vault_summary())
            .await?
            .ok_or_else(|| refused(404, "this node holds no vault"))
    }

    /// The catalog entry the vault would publish now ([`RecordSource::catalog_entry`]), on the
    /// ledger as this node sees it. For this hospital's stewards only; the steward signs it.
    pub async fn catalog_entry(
        &self,
        who: &Principal,
    ) -> Result<medspace_types::DatasetDescription, Refused> {
        self.is_own_steward(who)?;
        let (snap, member) = (self.ledger.snapshot(), self.member.clone());
        self.blocking(move |s| s.catalog_entry(&snap.state, snap.time_ms, &member))
            .await?
            .ok_or_else(|| refused(404, "this node holds no vault"))
    }

    /// A release built from the vault ([`RecordSource::build_release`]) over the ledger as this
    /// node sees it. For this hospital's stewards (and its member key) only; the steward signs
    /// what it answers.
    pub async fn build_release(&self, who: &Principal, request: Value) -> Result<Value, Refused> {
        self.is_own_steward(who)?;
        let (snap, member) = (self.ledger.snapshot(), self.member.clone());
        self.blocking(move |s| s.build_release(&snap.state, snap.height, &member, &request))
            .await?
            .ok_or_else(|| refused(404, "this node holds no vault"))
    }

    /// The pseudonym linked to a local patient id ([`RecordSource::pseudonym_of`]), for this
    /// hospital's stewards only; `None` when the person is unknown here or not linked.
    pub async fn pseudonym_of(
        &self,
        who: &Principal,
        local_id: String,
    ) -> Result<Option<PatientId>, Refused> {
        self.is_own_steward(who)?;
        self.blocking(move |s| s.pseudonym_of(&local_id)).await
    }

    /// Redeems a grant for `caller` (the verified signer of the request): every check, then
    /// the scoped Bundle, the access record on the ledger, and only then the bytes.
    pub async fn redeem(
        &self,
        caller: &PublicKey,
        req: &Redeem,
        now_ms: u64,
    ) -> Result<Delivery, Refused> {
        let started = self.ctx.current();
        self.submitter
            .reached(&self.ctx, req.after_height, CATCH_UP)
            .await;
        let state = self.ledger.snapshot().state;
        let who = match state.key_record(caller) {
            Ok(Some(r)) if !r.retired => r.principal,
            Ok(_) => {
                return Err(refused(
                    403,
                    format!("key={} is not registered on the ledger", caller.to_hex()),
                ));
            }
            Err(e) => return Err(refused(500, e.to_string())),
        };
        let caller_member = institution(&state, &who)?;
        let grant = state
            .grant(req.grant)
            .map_err(|e| refused(500, e.to_string()))?
            .ok_or_else(|| refused(404, format!("grant not found: id={}", req.grant)))?;
        check_parties(&grant, &self.member, &caller_member)?;
        if self.guards.recent_failures(caller, now_ms) >= MAX_GUESSES {
            return Err(refused(
                429,
                format!(
                    "too many wrong codes from key={}: wait {} minutes",
                    caller.to_hex(),
                    GUESS_WINDOW_MS / 60_000
                ),
            ));
        }
        let locked = || {
            refused(
                429,
                format!(
                    "grant {} is locked after {MAX_WRONG_CODES_PER_GRANT} wrong codes: ask the patient for a new grant",
                    grant.id
                ),
            )
        };
        // Serialized for all grants (wrong codes are rare): no two wrong tries race the count.
        let counting = lock(&self.guards.counting);
        let wrong = |e: crate::WorkerError| refused(500, e.to_string());
        if self.store.wrong_codes(grant.id).map_err(wrong)? >= MAX_WRONG_CODES_PER_GRANT {
            return Err(locked());
        }
        if medspace_types::code_hash(&grant.patient, &req.code) != grant.terms.code_hash {
            self.guards.fail(caller, now_ms);
            let n = self.store.add_wrong_code(grant.id).map_err(wrong)?;
            if n >= MAX_WRONG_CODES_PER_GRANT {
                return Err(locked());
            }
            return Err(refused(403, format!("wrong code for grant {}", grant.id)));
        }
        drop(counting);
        check_live(&grant, now_ms)?;
        if !lock(&self.guards.in_flight).insert(grant.id) {
            return Err(refused(
                409,
                format!("a redemption of grant {} is in progress", grant.id),
            ));
        }
        let _release = InFlight {
            guards: &self.guards,
            grant: grant.id,
        };
        let (bytes, types, count) = self.scoped_record(&grant).await?;
        let content_hash = delivery_hash(&bytes);
        let to_list = |v: &[String]| -> Result<List<Text<48>, 32>, Refused> {
            let texts = v
                .iter()
                .map(|t| Text::new(t).map_err(|e| refused(500, e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            List::new(texts).map_err(|e| refused(500, e.to_string()))
        };
        let payload = Payload::RecordAccess(RecordAccess {
            patient: grant.patient,
            recipient: caller_member.clone(),
            basis: AccessBasis::Grant(grant.id),
            resource_types: to_list(&types)?,
            resource_count: u32::try_from(count).unwrap_or(u32::MAX),
            content_hash,
        });
        let elapsed = |from: std::time::SystemTime| {
            self.ctx.current().duration_since(from).unwrap_or_default()
        };
        let prepared = elapsed(started);
        self.submitter
            .submit_and_wait(&self.ctx, payload, &|_| true)
            .await
            .map_err(|e| match e {
                WorkerError::Ledger(reason) => {
                    refused(403, format!("the ledger refused the access: {reason}"))
                }
                other => refused(500, other.to_string()),
            })?;
        tracing::info!(grant = %grant.id, recipient = %caller_member, resources = count, "records.redeem: delivered");
        Ok(Delivery {
            bytes,
            prepare: prepared,
            finality: elapsed(started).saturating_sub(prepared),
        })
    }

    /// A patient's complete record at this hospital, for the patient themself (the verified
    /// signer of the request): their Bundle as the vault exports it.
    pub async fn export_for(&self, caller: &PublicKey) -> Result<Vec<u8>, Refused> {
        let state = self.ledger.snapshot().state;
        let patient = match state.key_record(caller) {
            Ok(Some(r)) if !r.retired => match r.principal {
                Principal::Patient(p) => p,
                _ => return Err(refused(403, "only the patient may export their own record")),
            },
            Ok(_) => {
                return Err(refused(
                    403,
                    format!("key={} is not registered on the ledger", caller.to_hex()),
                ));
            }
            Err(e) => return Err(refused(500, e.to_string())),
        };
        let bundle = self.bundle(patient).await?.ok_or_else(|| {
            refused(
                404,
                format!("{} holds no record linked to this patient", self.member),
            )
        })?;
        serde_json::to_vec(&bundle).map_err(|e| refused(500, e.to_string()))
    }

    /// The patient's record at this hospital, scoped to the grant: canonical bytes, the types
    /// delivered, and the resource count.
    async fn scoped_record(
        &self,
        grant: &GrantRecord,
    ) -> Result<(Vec<u8>, Vec<String>, u64), Refused> {
        let mut bundle = self.bundle(grant.patient).await?.ok_or_else(|| {
            refused(
                500,
                format!(
                    "the grant's patient is not linked to a record at {}",
                    self.member
                ),
            )
        })?;
        let types: Vec<&str> = grant
            .terms
            .resource_types
            .iter()
            .map(|t| t.as_str())
            .collect();
        let (delivered, count) = scope_bundle(
            &mut bundle,
            &types,
            grant.terms.period_from_ms,
            grant.terms.period_to_ms,
        );
        let bytes = serde_json::to_vec(&bundle).map_err(|e| refused(500, e.to_string()))?;
        Ok((bytes, delivered, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_convert_to_epoch_ms() {
        assert_eq!(fhir_date_ms("1970-01-01"), Some(0));
        assert_eq!(
            fhir_date_ms("2026-01-01T10:00:00Z"),
            Some(1_767_225_600_000)
        );
        assert_eq!(fhir_date_ms("2000-03"), fhir_date_ms("2000-03-01"));
        assert_eq!(fhir_date_ms("2000-13-01"), None);
        assert_eq!(fhir_date_ms("garbage"), None);
        assert_eq!(fhir_date_ms("1969-12-31"), Some(-86_400_000));
    }

    #[test]
    fn scope_keeps_only_granted_types_in_the_period() {
        let mut b = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p"}},
            {"resource": {"resourceType": "Condition", "onsetDateTime": "2020-05-01"}},
            {"resource": {"resourceType": "Condition", "onsetDateTime": "2010-05-01"}},
            {"resource": {"resourceType": "Observation", "effectiveDateTime": "2020-06-01"}},
            {"resource": {"resourceType": "Claim", "billablePeriod": {"start": "2020-06-02"}}},
            {"resource": {"resourceType": "Condition"}},
        ]});
        let from = fhir_date_ms("2019-01-01").unwrap() as u64;
        let to = fhir_date_ms("2021-01-01").unwrap() as u64;
        let (types, n) = scope_bundle(&mut b, &["Condition", "Claim"], from, to);
        assert_eq!(types, vec!["Claim".to_string(), "Condition".to_string()]);
        assert_eq!(n, 3);
        let kept: Vec<&str> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert_eq!(kept, vec!["Condition", "Claim", "Condition"]);
    }

    fn grant(uses: u32, max_uses: u32, revoked: bool) -> GrantRecord {
        GrantRecord {
            id: GrantId(1),
            patient: medspace_types::PatientId([1; 32]),
            terms: medspace_types::IssueGrant {
                grantee: MemberId::new("hospital-b").unwrap(),
                holder: MemberId::new("hospital-a").unwrap(),
                purpose: medspace_types::Purpose::Treatment,
                resource_types: List::new(vec![Text::new("Condition").unwrap()]).unwrap(),
                period_from_ms: 0,
                period_to_ms: 1_000,
                expiry_ms: 5_000,
                max_uses,
                code_hash: Hash::default(),
            },
            issued_height: 1,
            uses,
            revoked,
        }
    }

    #[test]
    fn every_refusal_of_a_grant_names_why() {
        let (a, b, c) = (
            MemberId::new("hospital-a").unwrap(),
            MemberId::new("hospital-b").unwrap(),
            MemberId::new("hospital-c").unwrap(),
        );
        let g = grant(0, 1, false);
        check_parties(&g, &a, &b).unwrap();
        check_live(&g, 4_999).unwrap();
        let e = check_parties(&g, &c, &b).unwrap_err();
        assert_eq!(e.status, 404);
        assert!(e.reason.contains("held by hospital-a"), "{e:?}");
        let e = check_parties(&g, &a, &c).unwrap_err();
        assert!(
            e.reason.contains("is for hospital-b, not hospital-c"),
            "{e:?}"
        );
        assert!(
            check_live(&g, 5_000)
                .unwrap_err()
                .reason
                .contains("expired")
        );
        let e = check_live(&grant(1, 1, false), 0).unwrap_err();
        assert!(e.reason.contains("used up (1 of 1)"), "{e:?}");
        check_live(&grant(7, 0, false), 0).unwrap();
        assert!(
            check_live(&grant(0, 0, true), 0)
                .unwrap_err()
                .reason
                .contains("revoked")
        );
    }

    #[test]
    fn guesses_are_limited_per_key() {
        let g = Guards::default();
        let k = medspace_types::Keypair::from_seed(1).public();
        for i in 0..MAX_GUESSES {
            assert_eq!(g.recent_failures(&k, 10_000), i);
            g.fail(&k, 10_000);
        }
        assert_eq!(g.recent_failures(&k, 10_000), MAX_GUESSES);
        assert_eq!(g.recent_failures(&k, 10_000 + GUESS_WINDOW_MS), 0);
    }
}
