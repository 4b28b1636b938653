//! The real ledger state machine replicated by the consortium chain: four validators on
//! commonware's deterministic runtime and simulated network finalize patients' registrations
//! and consents, and every validator ends with the same state root and the same records.

use bytes::Bytes;
use commonware_cryptography::{Signer as _, ed25519};
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{Quota, Runner as _, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize, probability};
use medspace_chain::{
    Application as _,
    block::BlockLimits,
    engine::{self, Channels, Config, Handle, PublicKey, TxStatus, channel},
    mempool::MempoolLimits,
};
use medspace_node::LedgerApp;
use medspace_types::*;
use std::time::Duration;

const CHAIN: &str = "medspace-sim";
const N: usize = 4;
const QUOTA: Quota = Quota::per_second(NZU32!(10_000));
const LINK: Link = Link {
    latency: Duration::from_millis(20),
    jitter: Duration::from_millis(5),
    success_rate: probability!(1.0),
};

type Ctx = deterministic::Context;

fn genesis() -> Genesis {
    Genesis {
        chain_id: Name::new(CHAIN).unwrap(),
        time_ms: 0,
        members: vec![GenesisMember {
            member: Member {
                id: MemberId::new("hospital-a").unwrap(),
                name: Text::new("A").unwrap(),
                kind: MemberKind::Hospital,
                key: Keypair::from_seed(77).public(),
                agreement_key: Hash::default(),
            },
            balance: 0,
        }],
        users: vec![],
        policy: Policy::default(),
    }
}

async fn launch(
    ctx: &Ctx,
    oracle: &Oracle<PublicKey, Ctx>,
    keys: &[ed25519::PrivateKey],
    i: usize,
) -> Handle<LedgerApp> {
    let control = oracle.control(keys[i].public_key());
    let mut regs = Vec::new();
    for ch in [
        channel::VOTES,
        channel::CERTIFICATES,
        channel::RESOLVER,
        channel::BACKFILL,
        channel::BLOCKS,
        channel::TXS,
    ] {
        regs.push(control.register(ch, QUOTA).await.expect("register channel"));
    }
    let mut regs = regs.into_iter();
    let mut next = || regs.next().expect("channel");
    let channels = Channels {
        votes: next(),
        certificates: next(),
        resolver: next(),
        backfill: next(),
        blocks: next(),
        txs: next(),
    };
    let config = Config {
        chain_id: CHAIN.to_string(),
        signer: keys[i].clone(),
        validators: keys.iter().map(|k| k.public_key()).collect(),
        partition_prefix: format!("validator-{i}"),
        blocker: control.clone(),
        peer_provider: oracle.manager(),
        block_limits: BlockLimits::default(),
        mempool_limits: MempoolLimits::default(),
        max_future_ms: 5_000,
        leader_timeout: Duration::from_secs(1),
        certification_timeout: Duration::from_secs(2),
        timeout_retry: Duration::from_secs(5),
        fetch_timeout: Duration::from_secs(1),
        mailbox_size: NZUsize!(1024),
    };
    let app = LedgerApp::new(&genesis()).expect("genesis");
    let (tx, rx) = futures::channel::oneshot::channel();
    ctx.child("validator")
        .with_attribute("index", i)
        .spawn(move |ctx| async move {
            let handle = engine::start(ctx, config, app, channels)
                .await
                .expect("start validator");
            let _ = tx.send(handle);
            futures::future::pending::<()>().await;
        });
    rx.await.expect("validator started")
}

/// Runs one seed; returns the finalized chain prefix and the final root.
fn run(
    seed: u64,
) -> (
    Vec<(commonware_cryptography::sha256::Digest, [u8; 32])>,
    [u8; 32],
) {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(300))),
    );
    runner.start(|ctx| async move {
        let keys: Vec<ed25519::PrivateKey> =
            (0..N as u64).map(ed25519::PrivateKey::from_seed).collect();
        let peers: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
        let (network, oracle) = Network::new_with_peers(
            ctx.child("network"),
            simulated::Config {
                max_size: 8 * 1024 * 1024,
                max_peers_per_set: NZUsize!(N),
                disconnect_on_block: true,
                tracked_peer_sets: NZUsize!(1),
            },
            peers.clone(),
        )
        .await;
        network.start();
        for a in &peers {
            for b in &peers {
                if a != b {
                    let _ = oracle.add_link(a.clone(), b.clone(), LINK).await;
                }
            }
        }
        let mut vals = Vec::new();
        for i in 0..N {
            vals.push(launch(&ctx, &oracle, &keys, i).await);
        }
        // Eight patients register (to different validators) and set a research consent.
        let chain = Name::new(CHAIN).unwrap();
        let patients: Vec<Keypair> = (0..8)
            .map(|i| Keypair::from_seed(1_000 + seed * 100 + i))
            .collect();
        let mut ids = Vec::new();
        for (i, p) in patients.iter().enumerate() {
            let tx: Bytes =
                SignedTx::new(&chain, p, 0, Payload::RegisterPatient(RegisterPatient {}))
                    .to_bytes();
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
        let target = vals.iter().map(|v| v.height()).max().unwrap_or(0);
        for v in &vals {
            v.wait_for_height(target).await;
        }
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
    use futures::StreamExt as _;
    for v in vals {
        let mut sub = v.subscribe();
        loop {
            let done = ids.iter().all(|id| {
                matches!(
                    v.status(id),
                    TxStatus::Finalized {
                        outcome: Ok(()),
                        ..
                    }
                )
            });
            if done {
                break;
            }
            sub.next().await.expect("node running");
        }
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
