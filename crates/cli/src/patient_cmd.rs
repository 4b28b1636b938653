//! `medspace patient`: a patient's side of a running consortium — issue an authorization code
//! to an institution, revoke it, read their own access log with every entry proven — and the
//! grantee's side: redeem a code at the holding hospital's node and receive exactly the
//! granted FHIR resources.
//!
//! On the local devnet a patient is named by their hospital and their place in its records
//! (`--hospital hospital-a --index 0`); their key is the devnet's deterministic one for that
//! record. `--wallet <file>` uses a patient wallet instead.

use crate::query_cmd::{Who, load};
use crate::remote::Remote;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use medspace_state::State;
use medspace_state::records::PatientEvent;
use medspace_types::*;
use std::path::PathBuf;

/// Which patient acts.
#[derive(Args, Clone)]
pub struct WhichPatient {
    /// The hospital holding the patient's record (devnet).
    #[arg(long, default_value = "hospital-a")]
    hospital: String,
    /// The patient's place among that hospital's records (devnet).
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// A patient wallet file instead of a devnet patient.
    #[arg(long)]
    wallet: Option<PathBuf>,
}

/// `medspace patient` arguments.
#[derive(Args)]
pub struct PatientArgs {
    #[command(flatten)]
    who: Who,
    #[command(subcommand)]
    command: PatientCommand,
}

#[derive(Subcommand)]
enum PatientCommand {
    /// Create a patient wallet (the patient's own key) in a new file; prints the pseudonym the
    /// ledger will know.
    Wallet {
        /// The new wallet file (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Register the wallet's key on the ledger (only the pseudonym becomes known).
    Register {
        /// The wallet.
        #[arg(long)]
        wallet: PathBuf,
    },
    /// Issue an authorization code to an institution for records a hospital holds.
    Grant {
        #[command(flatten)]
        patient: WhichPatient,
        /// The institution that may redeem it.
        #[arg(long)]
        to: String,
        /// The hospital whose records it opens (default: --hospital).
        #[arg(long)]
        holder: Option<String>,
        /// Resource types granted.
        #[arg(long, value_delimiter = ',', default_values_t = ["Condition".to_string(), "Observation".to_string(), "MedicationRequest".to_string()])]
        types: Vec<String>,
        /// Purpose of use (treatment, insurance_claim, …).
        #[arg(long, default_value = "treatment")]
        purpose: String,
        /// Only resources dated from this day (YYYY-MM-DD; 1970-01-01 or earlier: all).
        #[arg(long, default_value = "1970-01-01")]
        from: String,
        /// Only resources dated up to this day (YYYY-MM-DD; default: the chain's today).
        #[arg(long)]
        until: Option<String>,
        /// Days until the code expires.
        #[arg(long, default_value_t = 7)]
        days: u64,
        /// Redemptions allowed (0: unlimited until expiry).
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Write the code as a QR image (SVG) here.
        #[arg(long)]
        qr: Option<PathBuf>,
    },
    /// Set a consent: per purpose, for all studies or one (dynamic consent), with or without
    /// the explicit opt-in that L4 data needs; or revoke it.
    Consent {
        #[command(flatten)]
        patient: WhichPatient,
        /// The purpose (research, public_health, drug_safety, teaching, …).
        #[arg(long, default_value = "research")]
        purpose: String,
        /// allow, deny or revoke.
        #[arg(long)]
        decision: String,
        /// One study only (a study invitation accepted or declined).
        #[arg(long)]
        study: Option<String>,
        /// Explicit opt-in for L4 data (genomics, mental health, …).
        #[arg(long)]
        l4: bool,
    },
    /// Revoke a grant (effective for every redemption after the block that carries it).
    Revoke {
        #[command(flatten)]
        patient: WhichPatient,
        /// The grant.
        #[arg(long)]
        grant: String,
    },
    /// The patient's log: consents, grants, every access, each proven against the state root.
    Log {
        #[command(flatten)]
        patient: WhichPatient,
    },
    /// Download the patient's complete record from every hospital holding one, as one FHIR R4
    /// Bundle.
    Export {
        #[command(flatten)]
        patient: WhichPatient,
        /// Where to write the Bundle.
        #[arg(long)]
        out: PathBuf,
    },
    /// Redeem a code at the holding hospital (as the grantee institution, e.g. `--as
    /// hospital-b.clinician`), saving the delivered FHIR Bundle.
    Redeem {
        /// The grant.
        #[arg(long)]
        grant: String,
        /// The code the patient handed over.
        #[arg(long)]
        code: String,
        /// Where to write the delivered Bundle.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The devnet key of a hospital's `index`-th patient, or a wallet's key.
fn patient_key(who: &Who, p: &WhichPatient) -> anyhow::Result<Keypair> {
    if let Some(w) = &p.wallet {
        return medspace_patient::Wallet::load(w)
            .and_then(|w| w.key())
            .with_context(|| format!("reading wallet {}", w.display()));
    }
    let seed = crate::query_cmd::devnet_seed(who)?;
    let vault = medspace_vault::Vault::open_read_only(&who.devnet.join(&p.hospital))
        .with_context(|| format!("no hospital {} in {}", p.hospital, who.devnet.display()))?;
    let persons = vault.persons();
    let (_, fhir_id, _) = persons.get(p.index).with_context(|| {
        format!(
            "{} holds {} patients; no index {}",
            p.hospital,
            persons.len(),
            p.index
        )
    })?;
    Ok(crate::hospitals::patient_key(seed, &p.hospital, fhir_id))
}

fn day_ms(s: &str) -> anyhow::Result<u64> {
    let ms = medspace_worker::records::fhir_date_ms(s)
        .filter(|_| s.len() == 10)
        .ok_or_else(|| anyhow::anyhow!("expected a day YYYY-MM-DD: day={s}"))?;
    // Before 1970 is "from the beginning" (0) for a grant's period.
    Ok(u64::try_from(ms).unwrap_or(0))
}

/// Redeems `code` for `grant` at the holding hospital's node (`holder_url`), signed by the
/// grantee's `key`: the node's status and body (the Bundle, or why it refused).
pub fn redeem_request(
    ledger: &Remote,
    holder_url: &str,
    key: &Keypair,
    grant: GrantId,
    code: &str,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let body = serde_json::to_vec(&serde_json::json!({ "grant": grant, "code": code }))?;
    ledger.post_signed(holder_url, "/v1/records/redeem", &body, key)
}

/// The access record on the ledger for `delivered` bytes of `patient`'s record (after
/// catching up): a delivery without one is refused.
pub fn access_for(
    ledger: &mut Remote,
    patient: &PatientId,
    delivered: &[u8],
) -> anyhow::Result<medspace_state::records::AccessRecord> {
    let hash = medspace_worker::records::delivery_hash(delivered);
    ledger.catch_up()?;
    ledger
        .state()
        .accesses_of(patient)?
        .into_iter()
        .find(|a| a.record.content_hash == hash)
        .map(|a| a.record)
        .context("no access record on the ledger matches what was delivered")
}

/// Prints `patient`'s log from the verified `state`, checking each entry's proof against its
/// root; returns how many entries there are.
pub fn print_log(state: &State, patient: &PatientId, indent: &str) -> anyhow::Result<usize> {
    let root = state.root();
    let entries = state.patient_log(patient)?;
    for entry in &entries {
        entry
            .verify(&root)
            .context("a log entry failed its proof")?;
        let what = match &entry.record.event {
            PatientEvent::Consent(c) => format!(
                "consent {} {} {}",
                c.purpose,
                c.study
                    .as_ref()
                    .map_or("(all studies)".into(), |s| s.to_string()),
                c.state
            ),
            PatientEvent::GrantIssued(g) => format!("grant {g} issued"),
            PatientEvent::GrantRevoked(g) => format!("grant {g} revoked"),
            PatientEvent::Accessed(a) => {
                let rec = state.access(*a)?.context("access missing")?;
                format!(
                    "records delivered by {} to {} under {:?} ({} resources, hash {})",
                    rec.holder, rec.recipient, rec.basis, rec.resource_count, rec.content_hash
                )
            }
            PatientEvent::Destroyed(a) => format!("copy of {a} destroyed"),
        };
        println!(
            "{indent}height {:>3}  {what}  [proof ✓ {} steps]",
            entry.record.height,
            entry.proof.path.len()
        );
    }
    Ok(entries.len())
}

/// Prints the aggregate jobs that may have counted `patient`: jobs under contracts covering
/// one of `holders` (the hospitals holding the patient's records) whose purpose, study and level
/// the patient's consent allowed at the job's height (the ledger never learns who was in a
/// cohort; only aggregates left the hospitals). Each job record is proven against the root.
/// Returns how many.
pub fn print_jobs(
    state: &State,
    patient: &PatientId,
    holders: &[MemberId],
    indent: &str,
) -> anyhow::Result<usize> {
    let root = state.root();
    let mut n = 0;
    for job in state.jobs()? {
        let Some(c) = state.contract(job.contract)? else {
            continue;
        };
        let Some(at) = c.owners.iter().find(|o| holders.contains(o)) else {
            continue;
        };
        if !state.consent_allows(
            patient,
            c.purpose,
            c.study.as_ref(),
            c.level,
            job.submitted_height,
        )? {
            continue;
        }
        let key = medspace_state::records::keys::job(job.id);
        let (value, proof) = state.prove(&key).context("a job without its record")?;
        proof
            .verify(&root, &key, &value)
            .context("a job record failed its proof")?;
        let outcome = match &job.result {
            Some(r) => format!(
                "aggregate result {} posted by {}, {} institutions contributed",
                r.result_hash,
                r.posted_by,
                r.contributions.len()
            ),
            None => "running".to_string(),
        };
        println!(
            "{indent}height {:>3}  job {} under {} ({} {}) may have counted you at {at}: your consent allowed it; {outcome}  [proof ✓ {} steps]",
            job.submitted_height,
            job.id,
            c.id,
            c.purpose,
            c.study
                .as_ref()
                .map_or("(no study)".into(), |s| s.to_string()),
            proof.path.len()
        );
        n += 1;
    }
    Ok(n)
}

/// What a patient grants; the authorization code is made by [`GrantTerms::with_new_code`].
pub struct GrantTerms {
    /// Who may fetch.
    pub grantee: MemberId,
    /// The hospital holding the records.
    pub holder: MemberId,
    /// Why.
    pub purpose: Purpose,
    /// FHIR resource types covered.
    pub types: Vec<String>,
    /// Records dated within (ms since the epoch, inclusive).
    pub period_ms: (u64, u64),
    /// The grant ends at this block time.
    pub expiry_ms: u64,
    /// Redemptions allowed (0 = unlimited until expiry).
    pub max_uses: u32,
}

impl GrantTerms {
    /// The grant with a fresh authorization code: the payload `patient` signs, carrying only
    /// the code's hash (all the ledger ever sees of it), and the code to hand over.
    pub fn with_new_code(
        self,
        patient: &PatientId,
    ) -> anyhow::Result<(Payload, medspace_patient::AuthCode)> {
        let code = medspace_patient::AuthCode::generate();
        let types = self
            .types
            .iter()
            .map(|t| Text::new(t.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let payload = Payload::IssueGrant(IssueGrant {
            grantee: self.grantee,
            holder: self.holder,
            purpose: self.purpose,
            resource_types: List::new(types)?,
            period_from_ms: self.period_ms.0,
            period_to_ms: self.period_ms.1,
            expiry_ms: self.expiry_ms,
            max_uses: self.max_uses,
            code_hash: code.hash(patient),
        });
        Ok((payload, code))
    }
}

/// Runs `medspace patient`.
pub fn run(args: PatientArgs) -> anyhow::Result<()> {
    let who = args.who;
    let (genesis, signer) = load(&who, "hospital-b.clinician")?;
    let mut ledger = Remote::connect(&genesis)?;
    match args.command {
        PatientCommand::Grant {
            patient,
            to,
            holder,
            types,
            purpose,
            from,
            until,
            days,
            uses,
            qr,
        } => {
            let key = patient_key(&who, &patient)?;
            let id = PatientId::from_key(&key.public());
            let until_ms = match until {
                Some(d) => day_ms(&d)? + 86_399_999,
                None => ledger.time_ms(),
            };
            let (payload, code) = GrantTerms {
                grantee: MemberId::new(&to)?,
                holder: MemberId::new(holder.as_deref().unwrap_or(&patient.hospital))?,
                purpose: purpose
                    .parse()
                    .map_err(|e| anyhow::anyhow!("bad purpose `{purpose}`: {e}"))?,
                types: types.clone(),
                period_ms: (day_ms(&from)?, until_ms),
                expiry_ms: ledger.time_ms() + days * 24 * 3600 * 1000,
                max_uses: uses,
            }
            .with_new_code(&id)?;
            let r = ledger.must(&key, payload)?;
            let Some(medspace_state::Created::Grant(grant)) = r.created else {
                bail!("the grant was not created")
            };
            println!("grant {grant}");
            println!("code  {}", code.display());
            println!(
                "  for {to}: {} from {from}, {} use(s), expires in {days} days; only the code's hash is on the ledger",
                types.join(", "),
                if uses == 0 {
                    "unlimited".to_string()
                } else {
                    uses.to_string()
                }
            );
            if let Some(path) = qr {
                std::fs::write(&path, code.qr_svg(&grant.to_string())?)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("  QR code: {}", path.display());
            }
            Ok(())
        }
        PatientCommand::Wallet { out } => {
            let w = medspace_patient::Wallet::generate();
            w.create(&out)
                .with_context(|| format!("creating wallet {}", out.display()))?;
            println!("wallet {} for patient {}", out.display(), w.patient);
            println!(
                "  next: `medspace patient register --wallet {}`, then ask each hospital treating you to link its record (`medspace link`)",
                out.display()
            );
            Ok(())
        }
        PatientCommand::Register { wallet } => {
            let key = medspace_patient::Wallet::load(&wallet)
                .and_then(|w| w.key())
                .with_context(|| format!("reading wallet {}", wallet.display()))?;
            ledger.must(&key, Payload::RegisterPatient(RegisterPatient {}))?;
            println!(
                "patient {} registered at height {}",
                PatientId::from_key(&key.public()),
                ledger.height()
            );
            Ok(())
        }
        PatientCommand::Consent {
            patient,
            purpose,
            decision,
            study,
            l4,
        } => {
            let key = patient_key(&who, &patient)?;
            let purpose: Purpose = purpose
                .parse()
                .map_err(|e| anyhow::anyhow!("bad purpose `{purpose}`: {e}"))?;
            let study = study.as_deref().map(StudyId::new).transpose()?;
            let payload = match decision.as_str() {
                "revoke" => Payload::RevokeConsent(RevokeConsent {
                    purpose,
                    study: study.clone(),
                }),
                "allow" | "deny" => Payload::SetConsent(SetConsent {
                    purpose,
                    study: study.clone(),
                    decision: if decision == "allow" {
                        Decision::Allow
                    } else {
                        Decision::Deny
                    },
                    l4_opt_in: l4,
                }),
                other => bail!("--decision must be allow, deny or revoke: decision={other}"),
            };
            ledger.must(&key, payload)?;
            println!(
                "consent {purpose} {} {decision}{} at height {}: in force for every job and access after this block",
                study.map_or("(all studies)".to_string(), |s| s.to_string()),
                if l4 { " with L4 opt-in" } else { "" },
                ledger.height()
            );
            Ok(())
        }
        PatientCommand::Revoke { patient, grant } => {
            let key = patient_key(&who, &patient)?;
            let grant: GrantId = grant
                .parse()
                .map_err(|e| anyhow::anyhow!("bad grant id `{grant}`: {e}"))?;
            ledger.must(&key, Payload::RevokeGrant(RevokeGrant { grant }))?;
            println!("grant {grant} revoked at height {}", ledger.height());
            Ok(())
        }
        PatientCommand::Log { patient } => {
            let key = patient_key(&who, &patient)?;
            let id = PatientId::from_key(&key.public());
            println!(
                "log of patient {id} at height {}, state root {} (verified from finalized blocks):",
                ledger.height(),
                ledger.state().root()
            );
            let n = print_log(ledger.state(), &id, "  ")?;
            // The hospitals holding this patient's records: the devnet patient's, or (wallet)
            // any hospital of the consortium.
            let holders: Vec<MemberId> = if patient.wallet.is_some() {
                crate::consortium::HOSPITALS
                    .iter()
                    .map(|h| MemberId::new(h))
                    .collect::<Result<_, _>>()?
            } else {
                vec![MemberId::new(&patient.hospital)?]
            };
            let jobs = print_jobs(ledger.state(), &id, &holders, "  ")?;
            println!("  {n} entries and {jobs} jobs, every proof checked");
            Ok(())
        }
        PatientCommand::Export { patient, out } => {
            let key = patient_key(&who, &patient)?;
            let mut entries: Vec<serde_json::Value> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            let mut from = Vec::new();
            let mut unreachable = Vec::new();
            for node in genesis.validators.iter().chain(&genesis.observers) {
                let url = format!("http://{}", node.http);
                let (status, bytes) = match ledger.get_signed(&url, "/v1/records/export", &key) {
                    Ok(answer) => answer,
                    Err(e) => {
                        unreachable.push(format!("{}: {e:#}", node.name));
                        continue;
                    }
                };
                if status != 200 {
                    continue; // no record there (or no record service)
                }
                let bundle: serde_json::Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} sent a malformed Bundle", node.name))?;
                let mut n = 0;
                for e in bundle["entry"].as_array().into_iter().flatten() {
                    let url = e["fullUrl"].as_str().unwrap_or_default().to_string();
                    if url.is_empty() || seen.insert(url) {
                        entries.push(e.clone());
                        n += 1;
                    }
                }
                from.push(format!("{} ({n} resources)", node.name));
            }
            if from.is_empty() {
                bail!("no hospital holds a record of this patient");
            }
            let bundle = serde_json::json!({
                "resourceType": "Bundle",
                "type": "collection",
                "entry": entries,
            });
            std::fs::write(&out, serde_json::to_vec_pretty(&bundle)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "exported {} resources from {} into {}",
                entries.len(),
                from.join(", "),
                out.display()
            );
            for u in &unreachable {
                println!("  warning: could not reach {u}; any record held there is missing");
            }
            Ok(())
        }
        PatientCommand::Redeem { grant, code, out } => {
            let grant: GrantId = grant
                .parse()
                .map_err(|e| anyhow::anyhow!("bad grant id `{grant}`: {e}"))?;
            let rec = ledger
                .state()
                .grant(grant)?
                .with_context(|| format!("grant {grant} is not on the ledger"))?;
            let url = crate::study::node_url(&genesis, &rec.terms.holder)?;
            let started = std::time::Instant::now();
            let (status, bytes) = redeem_request(&ledger, &url, &signer, grant, &code)?;
            let took = started.elapsed();
            if status != 200 {
                let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
                bail!(
                    "{} refused the redemption ({status}): {reason}",
                    rec.terms.holder
                );
            }
            let access = access_for(&mut ledger, &rec.patient, &bytes)?;
            let hash = access.content_hash;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "received {} resources ({}) from {} in {:.0} ms; access recorded on the ledger (hash {hash} matches); saved {}",
                access.resource_count,
                access
                    .resource_types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                rec.terms.holder,
                took.as_secs_f64() * 1000.0,
                out.display()
            );
            Ok(())
        }
    }
}
