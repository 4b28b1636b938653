//! The ledger's benchmark workloads.

use crate::{LedgerApp, LedgerError};
use medspace_types::*;

/// The ledger benchmark's workload: the real state machine, and patients who each register
/// their key (attested by the hospital, whose signature the state machine checks too) and then
/// set a research consent (two signed transactions per patient, the registrations first; a
/// patient's two go to the same validator, the consent once the registration is final).
pub fn workload(txs: usize) -> Result<medspace_chain::bench::Workload<LedgerApp>, WorkloadError> {
    let member = bench_member();
    let genesis = medspace_consortium::GenesisBuilder::new(medspace_chain::bench::BENCH_CHAIN)?
        .member("hospital-a", MemberKind::Hospital, &member)?
        .build();
    let chain = genesis.chain_id.clone();
    let app_genesis =
        serde_json::to_value(&genesis).map_err(|e| LedgerError::AppGenesis(e.to_string()))?;
    // All registrations first, then the consents of the same patients in the same order: a
    // validator admits a patient's consent only once the registration is committed, so each
    // consent is offered after its registration is final (`after`).
    let patients = txs.div_ceil(2);
    let keys: Vec<Keypair> = (0..patients)
        .map(|i| Keypair::from_seed(1 << 32 | i as u64))
        .collect();
    let mut out = Vec::with_capacity(txs);
    let mut route = Vec::with_capacity(txs);
    let mut after = Vec::with_capacity(txs);
    let hospital = MemberId::new("hospital-a")?;
    for (i, key) in keys.iter().enumerate() {
        let reg = RegisterPatient::attested(&chain, &key.public(), hospital.clone(), &member);
        out.push(SignedTx::new(&chain, key, 0, Payload::RegisterPatient(reg)).to_bytes());
        route.push(i);
        after.push(None);
    }
    for (i, key) in keys.iter().enumerate().take(txs - patients) {
        out.push(
            SignedTx::new(
                &chain,
                key,
                1,
                Payload::SetConsent(SetConsent {
                    purpose: Purpose::Research,
                    study: None,
                    decision: Decision::Allow,
                    l4_opt_in: false,
                }),
            )
            .to_bytes(),
        );
        route.push(i);
        // The patient's app signs its consent once its registration is final.
        after.push(Some(i));
    }
    Ok(medspace_chain::bench::Workload {
        make_app: Box::new(move || Ok(LedgerApp::new(&genesis)?)),
        app_genesis,
        txs: out,
        route,
        after,
    })
}

/// The key of the workload's one member: it reads the benchmark chain's blocks (validators
/// serve whole blocks to members only).
pub fn bench_member() -> Keypair {
    Keypair::from_seed(u64::MAX)
}

/// Why a workload could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A name or text did not fit its type.
    #[error(transparent)]
    Type(#[from] TypeError),
    /// The genesis is not valid.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The consortium could not be built.
    #[error(transparent)]
    Consortium(#[from] medspace_consortium::ConsortiumError),
}
