//! `medspace patient`: a patient's side of a running consortium — issue an authorization code
//! to an institution, revoke it, read their own access log with every entry proven — and the
//! grantee's side: redeem a code at the holding hospital's node and receive exactly the
//! granted FHIR resources.
//!
//! On the local devnet a patient is named by their hospital and their place in its records
//! (`--hospital hospital-a --index 0`); their key is the devnet's deterministic one for that
//! record. `--wallet <file>` uses a patient wallet instead.

use crate::query_cmd::{Who, load};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use medspace_client::light::LightClient;
use medspace_client::records::{self, GrantTerms, LogLine};
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
        /// Development only: write the key of this devnet hospital's patient (chosen by
        /// --devnet-index) instead of a new key, e.g. to sign in to the console as them.
        #[arg(long)]
        devnet_hospital: Option<String>,
        /// With --devnet-hospital: the patient's place among that hospital's records.
        #[arg(long, default_value_t = 0)]
        devnet_index: usize,
    },
    /// Register the wallet's key on the ledger (only the pseudonym becomes known), with the
    /// attestation of a hospital that verified the person.
    Register {
        /// The wallet.
        #[arg(long)]
        wallet: PathBuf,
        /// The hospital that verified the person.
        #[arg(long, default_value = "hospital-a")]
        hospital: String,
        /// The hospital's attestation (hex, from `medspace patient attest`); on a devnet it is
        /// made with the devnet's key of --hospital when left out.
        #[arg(long)]
        attestation: Option<String>,
    },
    /// As a hospital: attest a patient key whose holder the hospital has verified, with the
    /// hospital's member key (--key, or the devnet's key of --hospital); prints the
    /// attestation the patient registers with.
    Attest {
        /// The patient's public key (hex, as `medspace patient wallet` prints it).
        #[arg(long)]
        patient_key: String,
        /// The attesting hospital.
        #[arg(long, default_value = "hospital-a")]
        hospital: String,
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

/// The hospitals that hold the patient's records: the devnet patient's hospital; a wallet's
/// linked hospitals, or — for a wallet no hospital has linked yet — every hospital.
fn holders(p: &WhichPatient, light: &LightClient) -> anyhow::Result<Vec<MemberId>> {
    let Some(w) = &p.wallet else {
        return Ok(vec![MemberId::new(&p.hospital)?]);
    };
    let wallet = medspace_patient::Wallet::load(w)
        .with_context(|| format!("reading wallet {}", w.display()))?;
    if wallet.links.is_empty() {
        return Ok(light.hospitals()?);
    }
    Ok(wallet
        .links
        .iter()
        .map(|l| MemberId::new(&l.member))
        .collect::<Result<_, _>>()?)
}

/// The devnet key of a hospital's `index`-th patient, or a wallet's key.
fn patient_key(who: &Who, p: &WhichPatient) -> anyhow::Result<Keypair> {
    if let Some(w) = &p.wallet {
        return medspace_patient::Wallet::load(w)
            .and_then(|w| w.key())
            .with_context(|| format!("reading wallet {}", w.display()));
    }
    let seed = crate::query_cmd::devnet_seed(who)?;
    let node = who.devnet.join(&p.hospital);
    let vault = crate::vault_cmd::vault_key(&node)
        .and_then(|key| Ok(medspace_vault::Vault::open_read_only(&node, &key)?))
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
    Ok(medspace_consortium::patient_key(seed, fhir_id))
}

/// A member's key: the file of --key (sealed or hex), or the devnet's key of `member`.
pub(crate) fn member_key(who: &Who, member: &str) -> anyhow::Result<Keypair> {
    if let Some(path) = &who.key {
        return medspace_worker::config::load_member_key(
            path,
            &medspace_worker::config::cli_unlock()?,
        )
        .with_context(|| format!("key file {}", path.display()));
    }
    let seed = crate::query_cmd::devnet_seed(who)?;
    Ok(
        medspace_consortium::Consortium::default_devnet(seed, medspace_consortium::GENESIS_MS)?
            .member_key(member)?
            .clone(),
    )
}

fn day_ms(s: &str) -> anyhow::Result<u64> {
    let ms = medspace_worker::records::fhir_date_ms(s)
        .filter(|_| s.len() == 10)
        .ok_or_else(|| anyhow::anyhow!("expected a day YYYY-MM-DD: day={s}"))?;
    // Before 1970 is "from the beginning" (0) for a grant's period.
    Ok(u64::try_from(ms).unwrap_or(0))
}

fn print_lines(lines: &[LogLine]) {
    for l in lines {
        println!(
            "  height {:>3}  {}  [proof ✓ {} steps]",
            l.height, l.what, l.proof_steps
        );
    }
}

/// Runs `medspace patient`.
pub fn run(args: PatientArgs) -> anyhow::Result<()> {
    let who = args.who;
    let (genesis, signer) = load(&who, "hospital-b.clinician")?;
    // A patient acts through a light client with their own key: validators serve whole blocks
    // to the consortium only; the patient checks certified headers and proofs.
    let light = |key: &Keypair| LightClient::connect(&genesis, key);
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
            let ledger = light(&key)?;
            let id = ledger.pseudonym()?;
            let now_ms = ledger.latest()?.time_ms;
            let until_ms = match until {
                Some(d) => day_ms(&d)? + 86_399_999,
                None => now_ms,
            };
            let (payload, code) = GrantTerms {
                grantee: MemberId::new(&to)?,
                holder: MemberId::new(holder.as_deref().unwrap_or(&patient.hospital))?,
                purpose: purpose
                    .parse()
                    .map_err(|e| anyhow::anyhow!("bad purpose `{purpose}`: {e}"))?,
                types: types.clone(),
                period_ms: (day_ms(&from)?, until_ms),
                expiry_ms: now_ms + days * 24 * 3600 * 1000,
                max_uses: uses,
            }
            .with_new_code(&id)?;
            let Payload::IssueGrant(terms) = &payload else {
                bail!("not a grant")
            };
            let code_hash = terms.code_hash;
            ledger.must(payload)?;
            // The grant is the patient's with this code's hash, proven on the ledger.
            let Some(grant) = ledger
                .grants(&id)?
                .into_iter()
                .find(|g| g.terms.code_hash == code_hash)
                .map(|g| g.id)
            else {
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
        PatientCommand::Wallet {
            out,
            devnet_hospital,
            devnet_index,
        } => {
            let w = match devnet_hospital {
                Some(hospital) => medspace_patient::Wallet::from_key(&patient_key(
                    &who,
                    &WhichPatient {
                        hospital,
                        index: devnet_index,
                        wallet: None,
                    },
                )?),
                None => medspace_patient::Wallet::generate(),
            };
            w.create(&out)
                .with_context(|| format!("creating wallet {}", out.display()))?;
            println!("wallet {} for patient {}", out.display(), w.patient);
            println!(
                "  public key {} (a hospital attests it: `medspace patient attest --patient-key …`)",
                w.key()
                    .with_context(|| format!("reading wallet {}", out.display()))?
                    .public()
            );
            println!(
                "  next: `medspace patient register --wallet {}`, then ask each hospital treating you to link its record (`medspace link`)",
                out.display()
            );
            Ok(())
        }
        PatientCommand::Register {
            wallet,
            hospital,
            attestation,
        } => {
            let key = medspace_patient::Wallet::load(&wallet)
                .and_then(|w| w.key())
                .with_context(|| format!("reading wallet {}", wallet.display()))?;
            let chain = Name::new(&genesis.chain_id)?;
            let registration = match attestation {
                Some(hex) => RegisterPatient {
                    hospital: MemberId::new(&hospital)?,
                    attestation: serde_json::from_value(serde_json::Value::String(hex))
                        .context("--attestation is not a signature in hex")?,
                },
                None => RegisterPatient::attested(
                    &chain,
                    &key.public(),
                    MemberId::new(&hospital)?,
                    &member_key(&who, &hospital)?,
                ),
            };
            let ledger = light(&key)?;
            ledger.must(Payload::RegisterPatient(registration))?;
            println!(
                "patient {} registered at height {}",
                PatientId::from_key(&key.public()),
                ledger.latest()?.height
            );
            Ok(())
        }
        PatientCommand::Attest {
            patient_key,
            hospital,
        } => {
            let patient: PublicKey = patient_key
                .parse()
                .map_err(|e| anyhow::anyhow!("bad --patient-key: {e}"))?;
            let chain = Name::new(&genesis.chain_id)?;
            let reg = RegisterPatient::attested(
                &chain,
                &patient,
                MemberId::new(&hospital)?,
                &member_key(&who, &hospital)?,
            );
            println!(
                "{}",
                serde_json::to_value(&reg.attestation)?
                    .as_str()
                    .unwrap_or_default()
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
            let ledger = light(&key)?;
            ledger.must(payload)?;
            println!(
                "consent {purpose} {} {decision}{} at height {}: in force for every job and access after this block",
                study.map_or("(all studies)".to_string(), |s| s.to_string()),
                if l4 { " with L4 opt-in" } else { "" },
                ledger.latest()?.height
            );
            Ok(())
        }
        PatientCommand::Revoke { patient, grant } => {
            let key = patient_key(&who, &patient)?;
            let grant: GrantId = grant
                .parse()
                .map_err(|e| anyhow::anyhow!("bad grant id `{grant}`: {e}"))?;
            let ledger = light(&key)?;
            ledger.must(Payload::RevokeGrant(RevokeGrant { grant }))?;
            println!(
                "grant {grant} revoked at height {}",
                ledger.latest()?.height
            );
            Ok(())
        }
        PatientCommand::Log { patient } => {
            let key = patient_key(&who, &patient)?;
            let ledger = light(&key)?;
            let id = ledger.pseudonym()?;
            let head = ledger.latest()?;
            println!(
                "log of patient {id} at height {}, state root {} (a certified header; every entry proven against the root of the height it was read at):",
                head.height,
                hex::encode(head.state_root)
            );
            let log = ledger.log(&id)?;
            print_lines(&log);
            let holders = holders(&patient, &ledger)?;
            let jobs = ledger.jobs(&id, &holders)?;
            print_lines(&jobs);
            println!(
                "  {} entries and {} jobs, every proof checked",
                log.len(),
                jobs.len()
            );
            Ok(())
        }
        PatientCommand::Export { patient, out } => {
            let key = patient_key(&who, &patient)?;
            let ledger = light(&key)?;
            let rec =
                records::export_record(&|m, p| ledger.get_at(m, p), &holders(&patient, &ledger)?)?;
            std::fs::write(&out, serde_json::to_vec_pretty(&rec.bundle)?)
                .with_context(|| format!("writing {}", out.display()))?;
            let from: Vec<String> = rec
                .from
                .iter()
                .map(|(node, n)| format!("{node} ({n} resources)"))
                .collect();
            let total: usize = rec.from.iter().map(|(_, n)| n).sum();
            println!(
                "exported {total} resources from {} into {}",
                from.join(", "),
                out.display()
            );
            for u in &rec.unreachable {
                println!("  warning: could not reach {u}; any record held there is missing");
            }
            Ok(())
        }
        PatientCommand::Redeem { grant, code, out } => {
            let grant: GrantId = grant
                .parse()
                .map_err(|e| anyhow::anyhow!("bad grant id `{grant}`: {e}"))?;
            let mut ledger = crate::query_cmd::connect(&who, &genesis, &signer)?;
            let started = std::time::Instant::now();
            let (bytes, access) = records::redeem(&mut ledger, &signer, grant, &code)?;
            let took = started.elapsed();
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "received {} resources ({}) from {} in {:.0} ms; access recorded on the ledger (hash {} matches); saved {}",
                access.resource_count,
                access
                    .resource_types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                access.holder,
                took.as_secs_f64() * 1000.0,
                access.content_hash,
                out.display()
            );
            Ok(())
        }
    }
}
