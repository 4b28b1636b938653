//! The real ledger state machine replicated by the consortium chain: four validators on
//! commonware's deterministic runtime and simulated network finalize patients' registrations
//! and consents, and every validator ends with the same state root and the same records.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use bytes::Bytes;
use commonware_runtime::Runner as _;
use medspace_chain::{
    Application as _,
    engine::Handle,
    testing::sim::{self, Sim},
};
use medspace_ledger::LedgerApp;
use medspace_types::*;
use std::time::Duration;

const CHAIN: &str = "medspace-sim";
const N: usize = 4;

fn genesis() -> Genesis {
    medspace_consortium::GenesisBuilder::new(CHAIN)
        .unwrap()
        .member("hospital-a", MemberKind::Hospital, &Keypair::from_seed(77))
        .unwrap()
        .build()
}

/// Runs one seed; returns the finalized chain prefix and the final root.
fn run(
    seed: u64,
) -> (
    Vec<(commonware_cryptography::sha256::Digest, [u8; 32])>,
    [u8; 32],
) {
    sim::runner(seed, Duration::from_secs(300)).start(|ctx| async move {
        let sim = Sim::new(&ctx, CHAIN, N).await;
        sim.link_all().await;
        let mut vals: Vec<Handle<LedgerApp>> = Vec::new();
        for i in 0..N {
            let app = LedgerApp::new(&genesis()).expect("genesis");
            let v = sim.launch(&ctx, i, 0, app).await.expect("start validator");
            vals.push(v.handle);
        }
        // Eight patients register (to different validators) and set a research consent.
        let chain = Name::new(CHAIN).unwrap();
        let patients: Vec<Keypair> = (0..8)
            .map(|i| Keypair::from_seed(1_000 + seed * 100 + i))
            .collect();
        let mut ids = Vec::new();
        for (i, p) in patients.iter().enumerate() {
            let reg = RegisterPatient::attested(
                &chain,
                &p.public(),
                MemberId::new("hospital-a").unwrap(),
                &Keypair::from_seed(77),
            );
            let tx: Bytes = SignedTx::new(&chain, p, 0, Payload::RegisterPatient(reg)).to_bytes();
            ids.push(vals[i % N].submit(tx).expect("admitted"));
        }
        wait(&vals, &ids).await;
        let mut ids = Vec::new();
        for (i, p) in patients.iter().enumerate() {
            let tx: Bytes = SignedTx::new(
                &chain,
                p,
                1,
                Payload::SetConsent(SetConsent {
                    purpose: Purpose::Research,
                    study: None,
                    decision: Decision::Allow,
                    l4_opt_in: false,
                }),
            )
            .to_bytes();
            ids.push(vals[(i + 1) % N].submit(tx).expect("admitted"));
        }
        wait(&vals, &ids).await;
        let refs: Vec<&Handle<LedgerApp>> = vals.iter().collect();
        let target = sim::converge(&refs).await;
        sim::check_consistent(&refs).expect("validators agree");
        let roots: Vec<[u8; 32]> = vals.iter().map(|v| v.with_app(|a| a.root())).collect();
        assert!(
            roots.windows(2).all(|w| w[0] == w[1]),
            "validators disagree on the state root"
        );
        for v in &vals {
            v.with_app(|a| {
                for p in &patients {
                    let id = PatientId::from_key(&p.public());
                    assert!(
                        a.state()
                            .consent_allows(&id, Purpose::Research, None, Level::L3, a.height())
                            .unwrap(),
                        "consent missing on a validator"
                    );
                }
            });
        }
        let chain_prefix = vals[0].finalized_chain()[..=target as usize].to_vec();
        (chain_prefix, roots[0])
    })
}

async fn wait(vals: &[Handle<LedgerApp>], ids: &[[u8; 32]]) {
    for v in vals {
        sim::wait_applied(v, ids).await.expect("node running");
    }
}

#[test]
fn the_ledger_state_machine_replicates_over_seeds() {
    for seed in 0..5 {
        let (chain, _) = run(seed);
        assert!(chain.len() > 2, "seed={seed}: too little finalized");
    }
}

#[test]
fn a_seed_run_twice_gives_the_same_chain_and_root() {
    assert_eq!(run(11), run(11));
}
