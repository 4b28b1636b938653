//! `medspace deid`: the open pool. A hospital's steward plans a de-identified release of the
//! node's vault (the lattice search and the risk report, nothing published) and releases it
//! (files beside the node, an L1 catalog entry on the ledger); a researcher asks for it,
//! fetches it from the owner's node (checked against the ledger) and attests its destruction.

use crate::query_cmd::{Who, connect, load, parse_contract};
use anyhow::Context;
use clap::{Args, Subcommand};
use medspace_client::openpool;
use medspace_compute::release;
use medspace_types::*;
use std::path::PathBuf;

/// `medspace deid` arguments.
#[derive(Args)]
pub struct DeidArgs {
    #[command(flatten)]
    who: Who,
    #[command(subcommand)]
    command: DeidCommand,
}

/// What the steward's two commands share.
#[derive(Args)]
struct Build {
    /// The hospital's node directory (its vault and links).
    #[arg(long)]
    node: PathBuf,
    /// The release specification (versioned JSON).
    #[arg(long)]
    spec: PathBuf,
    /// The release's dataset id (default: `<member>.open`).
    #[arg(long)]
    release: Option<String>,
    /// The purposes every released person consented to.
    #[arg(long, value_delimiter = ',', default_value = "research")]
    purpose: Vec<String>,
}

#[derive(Subcommand)]
enum DeidCommand {
    /// Search the generalization lattice and write the release beside the node, without
    /// publishing it: the chosen levels, k, l, t, the risks and the information loss.
    Plan(Build),
    /// Build the release and publish it in the open pool (an L1 catalog entry with its
    /// figures and the hash of its manifest), as the hospital's steward.
    Release(Build),
    /// Ask for open-pool releases (a contract the owners' stewards approve).
    Request {
        /// The releases.
        #[arg(long, value_delimiter = ',')]
        dataset: Vec<String>,
        /// The purpose.
        #[arg(long, default_value = "research")]
        purpose: String,
        /// Days until the contract ends (then the copy must be destroyed).
        #[arg(long, default_value_t = 30)]
        days: u64,
    },
    /// Fetch a release from its owner's node, verified against the ledger.
    Fetch {
        /// The open-pool contract (its id, or `latest`).
        #[arg(long)]
        contract: String,
        /// The release.
        #[arg(long)]
        dataset: String,
        /// Where to write its files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Attest that a delivered copy was destroyed.
    Destroy {
        /// The delivery (printed by `fetch`).
        #[arg(long)]
        delivery: String,
    },
}

/// Runs `medspace deid`.
pub fn run(args: DeidArgs) -> anyhow::Result<()> {
    let steward = matches!(args.command, DeidCommand::Plan(_) | DeidCommand::Release(_));
    let default_user = if steward {
        "hospital-a.steward"
    } else {
        "research-1.researcher"
    };
    let (genesis, key) = load(&args.who, default_user)?;
    let mut ledger = connect(&args.who, &genesis, &key)?;
    match args.command {
        DeidCommand::Plan(b) => build(&mut ledger, &key, &b, false),
        DeidCommand::Release(b) => build(&mut ledger, &key, &b, true),
        DeidCommand::Request {
            dataset,
            purpose,
            days,
        } => {
            let ids = dataset
                .iter()
                .map(|d| DatasetId::new(d))
                .collect::<Result<Vec<_>, _>>()?;
            let purpose: Purpose = purpose
                .parse()
                .map_err(|e| anyhow::anyhow!("bad purpose `{purpose}`: {e}"))?;
            let c = openpool::request(&mut ledger, &key, &ids, purpose, days, 0)?;
            let rec = ledger.state().contract(c)?.context("contract vanished")?;
            println!(
                "contract {c}: {} (approvals: {})",
                rec.status_at(ledger.time_ms()),
                rec.approvals
                    .iter()
                    .map(|a| format!(
                        "{}{}",
                        a.role,
                        a.member
                            .as_ref()
                            .map(|m| format!(" of {m}"))
                            .unwrap_or_default()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        DeidCommand::Fetch {
            contract,
            dataset,
            out,
        } => {
            let contract = parse_contract(&ledger, &contract)?;
            let f = openpool::fetch(
                &mut ledger,
                &key,
                contract,
                &DatasetId::new(&dataset)?,
                &out,
            )?;
            let bytes: u64 = f.files.iter().map(|(_, b)| b).sum();
            println!(
                "fetched {} version {} into {}: {} files, {bytes} bytes, each checked against the ledger's hash",
                f.dataset,
                f.version,
                out.display(),
                f.files.len()
            );
            for l in openpool::figure_lines(&f.figures) {
                println!("  {l}");
            }
            match f.delivery {
                Some(d) => println!(
                    "  delivery {d} on the ledger: attest its destruction with `medspace deid destroy --delivery {d}`"
                ),
                None => println!("  delivery not yet final on the ledger"),
            }
            Ok(())
        }
        DeidCommand::Destroy { delivery } => {
            let d: AccessId = delivery
                .parse()
                .map_err(|e| anyhow::anyhow!("bad delivery id `{delivery}`: {e}"))?;
            openpool::destroy(&mut ledger, &key, d)?;
            println!("destruction of {d} attested");
            Ok(())
        }
    }
}

/// Plans (and with `publish`, releases) the node's release.
fn build(
    ledger: &mut medspace_client::Remote,
    key: &Keypair,
    b: &Build,
    publish: bool,
) -> anyhow::Result<()> {
    let spec_json = std::fs::read_to_string(&b.spec)
        .with_context(|| format!("reading {}", b.spec.display()))?;
    let spec = medspace_deid::ReleaseSpec::from_json(&spec_json)?;
    let member = match ledger.state().key_record(&key.public())? {
        Some(r) => match r.principal {
            medspace_state::records::Principal::Member(m) => m,
            medspace_state::records::Principal::User(u) => {
                ledger.state().user(&u)?.context("user vanished")?.member
            }
            _ => anyhow::bail!("a release is made by a hospital or its steward"),
        },
        None => anyhow::bail!("the signing key is not on the ledger"),
    };
    let source = DatasetId::new(&spec.dataset)?;
    let id = DatasetId::new(&b.release.clone().unwrap_or(format!("{member}.open")))?;
    let purposes = b
        .purpose
        .iter()
        .map(|p| {
            p.parse()
                .map_err(|e| anyhow::anyhow!("bad purpose `{p}`: {e}"))
        })
        .collect::<anyhow::Result<Vec<Purpose>>>()?;
    let vault_key = crate::vault_cmd::vault_key(&b.node)?;
    // `tree` hierarchies roll codes up through the vocabulary (when there is one).
    let parents = crate::vault_cmd::load_vocab(None)?
        .map(|v| v.parents())
        .unwrap_or_default();
    let req = release::Request {
        release: &id,
        source: &source,
        spec: &spec,
        purposes: &purposes,
        parents: &parents,
    };
    let started = std::time::Instant::now();
    let built = release::build(
        medspace_compute::federated::SiteVault::embedded(&b.node, &vault_key),
        ledger.state(),
        ledger.height(),
        &req,
        &mut |p| {
            eprint!(
                "\r  search: {:?} {}/{} nodes   ",
                p.phase, p.evaluated, p.lattice
            )
        },
    )?;
    eprintln!();
    let r = &built.report;
    println!(
        "release {id} of {source}: {} of {} eligible persons released in {:.2} s ({} nodes of a lattice of {} evaluated)",
        built.figures.persons,
        built.eligible,
        started.elapsed().as_secs_f64(),
        r.nodes_evaluated,
        r.lattice_size
    );
    for l in &r.levels {
        println!("  {:<14} {}", l.field, l.name);
    }
    for l in openpool::figure_lines(&built.figures) {
        println!("  {l}");
    }
    println!(
        "  information loss: {} {:.1} ({:.1} % of the most general)",
        r.utility,
        r.information_loss,
        100.0 * r.information_loss_normalized
    );
    println!(
        "  files: {} (manifest hash {})",
        built.dir.display(),
        built.content_hash
    );
    if publish {
        ledger.must(
            key,
            Payload::PublishRelease(PublishRelease {
                dataset: built.entry.clone(),
                release: built.figures.clone(),
            }),
        )?;
        println!(
            "  published {id} version {} in the open pool",
            built.entry.version
        );
    }
    Ok(())
}
