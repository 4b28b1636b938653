//! Node and chain subcommands: `init`, `node`, `audit verify`, `keygen`, `link`.

use anyhow::Context as _;
use clap::Args;
use std::path::{Path, PathBuf};

/// `medspace init`.
#[derive(Args)]
pub struct InitArgs {
    /// Consortium spec (TOML, or JSON if it ends in .json): chain_id, nodes (name, validator,
    /// p2p, http) and the application genesis `app` (members, users, policy).
    #[arg(long)]
    pub consortium: PathBuf,
    /// Output directory (genesis.json, <node>/node.key, <node>/node.toml).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `medspace init`.
pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.consortium)
        .with_context(|| format!("reading consortium spec {}", args.consortium.display()))?;
    let is_json = args
        .consortium
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let spec: medspace_chain::node::ConsortiumSpec = if is_json {
        serde_json::from_str(&text)
            .with_context(|| format!("parsing consortium spec {}", args.consortium.display()))?
    } else {
        toml::from_str(&text)
            .with_context(|| format!("parsing consortium spec {}", args.consortium.display()))?
    };
    let configs = medspace_chain::node::init_consortium(&spec, &args.out)?;
    println!("genesis: {}", args.out.join("genesis.json").display());
    for c in configs {
        println!("node config: {}", c.display());
    }
    if spec.plain_http {
        println!(
            "plain HTTP: no TLS certificates (the nodes' configs allow plain HTTP; development only)"
        );
    } else {
        println!(
            "tls: each node's certificate is pinned in the genesis (its key sealed under the node's key passphrase in <node dir>/{}, a copy of the certificate in <node dir>/{})",
            medspace_chain::tls::KEY_FILE,
            medspace_chain::tls::CERT_FILE
        );
    }
    Ok(())
}

/// `medspace rotate-node-key`.
#[derive(Args)]
pub struct RotateNodeKeyArgs {
    #[command(flatten)]
    who: crate::query_cmd::Who,
    /// The devnet member whose member key signs (without `--key`).
    #[arg(long)]
    member: Option<String>,
    /// The new node key file (`keygen --node-ledger`; sealed under `$MEDSPACE_KEY_PASSPHRASE`,
    /// or hex).
    #[arg(long)]
    new: PathBuf,
}

/// Runs `medspace rotate-node-key`: `RotateNodeKey` signed by the member key (`--key`, or the
/// devnet's key of `--member`), with the new key's proof of possession.
pub fn rotate_node_key(a: RotateNodeKeyArgs) -> anyhow::Result<()> {
    use medspace_types::{Payload, RotateNodeKey};
    let Some(member) = a.member.as_deref().or(a.who.key.as_ref().map(|_| "")) else {
        anyhow::bail!("give --key (the member key file) or --member (a devnet member)")
    };
    let key = crate::patient_cmd::member_key(&a.who, member)?;
    let (genesis, _) = crate::query_cmd::load(&a.who, "research-1.researcher")?;
    let unlock = medspace_worker::config::cli_unlock()?;
    let new = medspace_worker::config::load_node_key(&a.new, &unlock)
        .with_context(|| format!("new node key file {}", a.new.display()))?;
    let mut ledger = medspace_client::Remote::connect(&genesis, &key)?;
    let chain = medspace_types::Name::new(&genesis.chain_id)?;
    let nonce = ledger.state().next_nonce(&key.public())?;
    let rotation = RotateNodeKey::new(&chain, &key.public(), nonce, &new);
    ledger.must(&key, Payload::RotateNodeKey(rotation))?;
    println!(
        "node key replaced: {} (the old one is retired)",
        new.public()
    );
    Ok(())
}

/// Runs one node from its config (logs to stderr).
pub fn node(config: &Path) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    Ok(medspace_node::run(config)?)
}

/// Finds the node config for `audit verify --data-dir`.
fn node_config_for(dir: &Path) -> anyhow::Result<PathBuf> {
    let candidates = [
        dir.join("node.toml"),
        dir.parent()
            .map(|p| p.join("node.toml"))
            .unwrap_or_default(),
    ];
    candidates
        .into_iter()
        .find(|c| c.is_file())
        .with_context(|| format!("no node.toml in {} or its parent", dir.display()))
}

/// Runs `medspace audit verify`.
pub fn audit_verify(data_dir: &Path) -> anyhow::Result<()> {
    let report = medspace_ledger::audit(&node_config_for(data_dir)?)?;
    match report.fault {
        None => {
            println!(
                "audit verify: {} blocks verified from genesis, state root {}",
                report.verified_height,
                hex::encode(report.root)
            );
            if let Some(h) = report.unproven_tail {
                println!(
                    "audit verify: blocks from {h} on are stored without a certificate yet (the node stopped before storing it): not verified, not counted"
                );
            }
            Ok(())
        }
        Some((height, reason)) => anyhow::bail!(
            "audit verify: fault at height {height}: {reason} (blocks 1..={} verified)",
            report.verified_height
        ),
    }
}

/// Which key `keygen` writes.
#[derive(Clone, Copy, Debug)]
pub enum KeyRole {
    /// A node's consensus key (`[node] key_file`).
    Consensus,
    /// A member's (or user's) ledger key: the CLI's `--key`.
    Member,
    /// A member's node key: a worker's or observer's `node_key_file`.
    MemberNode,
}

/// Runs `medspace keygen`: the secret sealed under the passphrase of `passphrase_file` (else
/// `MEDSPACE_KEY_PASSPHRASE`) in the role of `role`, or plain hex when asked.
pub fn keygen(
    out: &Path,
    passphrase_file: Option<&Path>,
    plain: bool,
    role: KeyRole,
) -> anyhow::Result<()> {
    use medspace_vault::seal::{KdfParams, PassphraseSource, SealedKey};
    let key = medspace_types::Keypair::generate(rand::rng());
    if plain {
        medspace_devnet::write_secret(out, &key.secret_hex())?;
    } else {
        let source = PassphraseSource {
            file: passphrase_file.map(Path::to_path_buf),
            env: Some(medspace_chain::node::KEY_PASSPHRASE_ENV.into()),
        };
        let passphrase = source.resolve()?.with_context(|| {
            format!(
                "give --passphrase-file or set {} (or --plain for an unencrypted key file)",
                medspace_chain::node::KEY_PASSPHRASE_ENV
            )
        })?;
        let secret = zeroize::Zeroizing::new(hex::decode(key.secret_hex())?);
        let role = match role {
            KeyRole::Member => medspace_worker::config::MEMBER_KEY_ROLE,
            KeyRole::MemberNode => medspace_worker::config::NODE_KEY_ROLE,
            KeyRole::Consensus => medspace_chain::node::KEY_ROLE,
        };
        SealedKey::seal(&secret, role, &passphrase, KdfParams::DEFAULT)?.write(out, false)?;
    }
    println!("{}", key.public());
    Ok(())
}

/// Runs `medspace link`.
pub fn link(node: &Path, person: &str, patient: &str) -> anyhow::Result<()> {
    let key = crate::vault_cmd::vault_key(node)?;
    let vault = medspace_vault::Vault::open_read_only(node, &key)?;
    let person_id = vault
        .resolve_patient(person)
        .with_context(|| format!("no record of person={person} in {}", node.display()))?;
    let id: medspace_types::PatientId = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("bad pseudonym `{patient}`: {e}"))?;
    let mut links = medspace_compute::Links::load(node, &key)?;
    links.link(person_id, id)?;
    links.save(node, &key)?;
    println!(
        "linked record {person_id} of {} to patient {id}",
        node.display()
    );
    Ok(())
}

/// `medspace key export-browser`: the key of a sealed (or plain) member/user key file, unsealed
/// into a new owner-only JSON file the console imports. Prints a warning: the file is the key.
pub fn export_browser_key(key: &Path, out: &Path) -> anyhow::Result<()> {
    let unlock = medspace_worker::config::cli_unlock()?;
    let pair = medspace_worker::config::load_member_key(key, &unlock)
        .with_context(|| format!("key file {}", key.display()))?;
    let json = zeroize::Zeroizing::new(medspace_console::browser_key_json(
        &pair.secret_hex(),
        &pair.public().to_hex(),
    ));
    medspace_vault::seal::write_private(out, json.as_bytes(), false)
        .with_context(|| format!("creating {} (never overwritten)", out.display()))?;
    println!("wrote {} for public key {}", out.display(), pair.public());
    println!(
        "  WARNING: {} holds the key UNSEALED. Import it in the console (the browser keeps it as a non-extractable key), then delete the file.",
        out.display()
    );
    Ok(())
}
