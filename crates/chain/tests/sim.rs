//! Deterministic simulations of a 4-validator consortium on commonware's deterministic runtime
//! and simulated p2p network, running the real engine with the counter application.
//!
//! `MEDSPACE_SIM_SEEDS` sets how many seeds the multi-seed test runs (default 50).

use bytes::Bytes;
use commonware_cryptography::{Signer as _, ed25519};
use commonware_macros::select;
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{Clock, Quota, Runner as _, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, NZUsize, probability};
use medspace_chain::{
    Application as _,
    block::BlockLimits,
    engine::{self, Channels, Config, Handle, PublicKey, TxStatus, channel},
    mempool::MempoolLimits,
    testing::{CounterApp, sign_tx, test_key},
};
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

fn keys() -> Vec<ed25519::PrivateKey> {
    (0..N as u64).map(ed25519::PrivateKey::from_seed).collect()
}

async fn network(ctx: &Ctx, peers: &[PublicKey]) -> Oracle<PublicKey, Ctx> {
    let (network, oracle) = Network::new_with_peers(
        ctx.child("network"),
        simulated::Config {
            max_size: 8 * 1024 * 1024,
            max_peers_per_set: NZUsize!(N),
            disconnect_on_block: true,
            tracked_peer_sets: NZUsize!(1),
        },
        peers.to_vec(),
    )
    .await;
    network.start();
    oracle
}

async fn link(oracle: &Oracle<PublicKey, Ctx>, peers: &[PublicKey], groups: &[&[usize]]) {
    for g in groups {
        for &a in g.iter() {
            for &b in g.iter() {
                if a != b {
                    let _ = oracle
                        .add_link(peers[a].clone(), peers[b].clone(), LINK)
                        .await;
                }
            }
        }
    }
}

async fn unlink_all(oracle: &Oracle<PublicKey, Ctx>, peers: &[PublicKey]) {
    for a in peers {
        for b in peers {
            if a != b {
                let _ = oracle.remove_link(a.clone(), b.clone()).await;
            }
        }
    }
}

struct Validator {
    handle: Handle<CounterApp>,
    task: commonware_runtime::Handle<()>,
}

async fn launch(
    ctx: &Ctx,
    oracle: &Oracle<PublicKey, Ctx>,
    keys: &[ed25519::PrivateKey],
    i: usize,
    incarnation: u32,
) -> Validator {
    let me = keys[i].public_key();
    let control = oracle.control(me.clone());
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
    let (tx, rx) = futures::channel::oneshot::channel();
    let task = ctx
        .child("validator")
        .with_attribute("index", i)
        .with_attribute("incarnation", incarnation)
        .spawn(move |ctx| async move {
            let handle = engine::start(ctx, config, CounterApp::new(CHAIN), channels)
                .await
                .expect("start validator");
            let _ = tx.send(handle);
            futures::future::pending::<()>().await;
        });
    let handle = rx.await.expect("validator started");
    Validator { handle, task }
}

/// Submits `count` counter transactions (signer `signer`, nonces from `first`) round-robin to
/// the given validators; returns their ids.
fn submit(vals: &[&Validator], signer: u64, first: u64, count: u64) -> Vec<[u8; 32]> {
    let key = test_key(signer);
    (first..first + count)
        .map(|n| {
            let tx = sign_tx(&key, CHAIN, n, &format!("k{}", n % 3), 1);
            let v = vals[(n as usize) % vals.len()];
            v.handle.submit(tx).expect("admitted")
        })
        .collect()
}

async fn wait_finalized(v: &Validator, ids: &[[u8; 32]]) {
    let mut sub = v.handle.subscribe();
    use futures::StreamExt as _;
    loop {
        if ids.iter().all(|id| {
            matches!(
                v.handle.status(id),
                TxStatus::Finalized {
                    outcome: Ok(()),
                    ..
                }
            )
        }) {
            return;
        }
        sub.next().await.expect("node running");
    }
}

/// Asserts every pair of validators agrees on the common prefix of their finalized chains and
/// that the committed root of each equals its header root at its height.
fn assert_consistent(vals: &[&Validator]) {
    let chains: Vec<_> = vals.iter().map(|v| v.handle.finalized_chain()).collect();
    for (i, a) in chains.iter().enumerate() {
        for b in &chains[i + 1..] {
            let n = a.len().min(b.len());
            assert_eq!(a[..n], b[..n], "finalized chains diverge");
        }
    }
    for v in vals {
        let chain = v.handle.finalized_chain();
        let (_, root) = chain.last().copied().expect("genesis");
        assert_eq!(v.handle.with_app(|a| a.root()), root);
        assert!(v.handle.halted().is_none());
    }
}

/// Honest run: all finalize the same blocks, roots, and all submitted transactions.
fn honest(
    seed: u64,
) -> (
    Vec<(commonware_cryptography::sha256::Digest, [u8; 32])>,
    String,
) {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(Duration::from_secs(300))),
    );
    runner.start(|ctx| async move {
        let keys = keys();
        let peers: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
        let oracle = network(&ctx, &peers).await;
        link(&oracle, &peers, &[&[0, 1, 2, 3]]).await;
        let mut vals = Vec::new();
        for i in 0..N {
            vals.push(launch(&ctx, &oracle, &keys, i, 0).await);
        }
        let refs: Vec<&Validator> = vals.iter().collect();
        let ids = submit(&refs, seed, 0, 24);
        for v in &vals {
            wait_finalized(v, &ids).await;
            v.handle.wait_for_height(6).await;
        }
        let target = vals.iter().map(|v| v.handle.height()).max().unwrap_or(0);
        for v in &vals {
            v.handle.wait_for_height(target).await;
        }
        assert_consistent(&refs);
        eprintln!(
            "seed={seed} height={target} sim_ms={:?}",
            ctx.current()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
        );
        for v in &vals {
            let total: i64 = (0..3)
                .map(|k| {
                    v.handle
                        .with_app(|a| a.counter(&format!("k{k}")).unwrap_or(0))
                })
                .sum();
            assert_eq!(total, 24, "every transaction applied exactly once");
        }
        (
            vals[0].handle.finalized_chain()[..=target as usize].to_vec(),
            ctx.auditor().state(),
        )
    })
}

fn seeds() -> u64 {
    std::env::var("MEDSPACE_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
}

#[test]
fn honest_validators_agree_over_many_seeds() {
    for seed in 0..seeds() {
        let (chain, _) = honest(seed);
        assert!(chain.len() > 1, "seed={seed}: nothing finalized");
    }
}

#[test]
fn same_seed_same_result() {
    let a = honest(7);
    let b = honest(7);
    assert_eq!(a, b);
}

#[test]
fn one_validator_cut_off_others_keep_finalizing() {
    for seed in 0..5 {
        deterministic::Runner::new(
            deterministic::Config::new()
                .with_seed(seed)
                .with_timeout(Some(Duration::from_secs(300))),
        )
        .start(|ctx| async move {
            let keys = keys();
            let peers: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
            let oracle = network(&ctx, &peers).await;
            link(&oracle, &peers, &[&[0, 1, 2]]).await;
            let mut vals = Vec::new();
            for i in 0..N {
                vals.push(launch(&ctx, &oracle, &keys, i, 0).await);
            }
            let live: Vec<&Validator> = vals[..3].iter().collect();
            let ids = submit(&live, 99, 0, 12);
            for v in &live {
                wait_finalized(v, &ids).await;
                v.handle.wait_for_height(5).await;
            }
            assert_eq!(
                vals[3].handle.height(),
                0,
                "isolated validator cannot finalize"
            );
            let all: Vec<&Validator> = vals.iter().collect();
            assert_consistent(&all);
        });
    }
}

#[test]
fn split_finalizes_nothing_then_heals_and_converges() {
    for seed in 0..5 {
        deterministic::Runner::new(
            deterministic::Config::new()
                .with_seed(seed)
                .with_timeout(Some(Duration::from_secs(600))),
        )
        .start(|ctx| async move {
            let keys = keys();
            let peers: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
            let oracle = network(&ctx, &peers).await;
            link(&oracle, &peers, &[&[0, 1], &[2, 3]]).await;
            let mut vals = Vec::new();
            for i in 0..N {
                vals.push(launch(&ctx, &oracle, &keys, i, 0).await);
            }
            let refs: Vec<&Validator> = vals.iter().collect();
            let ids = submit(&refs, 5, 0, 8);
            // A partition is a period of time: observe it for 30 simulated seconds.
            ctx.sleep(Duration::from_secs(30)).await;
            for v in &vals {
                assert_eq!(v.handle.height(), 0, "a 2/2 split must finalize nothing");
            }
            unlink_all(&oracle, &peers).await;
            link(&oracle, &peers, &[&[0, 1, 2, 3]]).await;
            for v in &vals {
                wait_finalized(v, &ids).await;
            }
            let target = vals.iter().map(|v| v.handle.height()).max().unwrap_or(0);
            for v in &vals {
                v.handle.wait_for_height(target).await;
            }
            assert_consistent(&refs);
        });
    }
}

#[test]
fn crashed_validator_restarts_loses_nothing_and_catches_up() {
    for seed in 0..3 {
        deterministic::Runner::new(
            deterministic::Config::new()
                .with_seed(seed)
                .with_timeout(Some(Duration::from_secs(600))),
        )
        .start(|ctx| async move {
            let keys = keys();
            let peers: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
            let oracle = network(&ctx, &peers).await;
            link(&oracle, &peers, &[&[0, 1, 2, 3]]).await;
            let mut vals = Vec::new();
            for i in 0..N {
                vals.push(launch(&ctx, &oracle, &keys, i, 0).await);
            }
            let refs: Vec<&Validator> = vals.iter().collect();
            let before = submit(&refs, 11, 0, 12);
            for v in &vals {
                wait_finalized(v, &before).await;
            }
            let crashed_at = vals[3].handle.height();
            assert!(crashed_at > 0);
            // Crash validator 3 (aborts every task it spawned; storage stays).
            let crashed = vals.pop().expect("validator 3");
            crashed.task.abort();
            let live: Vec<&Validator> = vals.iter().collect();
            let after = submit(&live, 12, 0, 12);
            for v in &vals {
                wait_finalized(v, &after).await;
            }
            let progressed = vals[0].handle.height();
            assert!(progressed > crashed_at);
            // Restart from its storage with a fresh in-memory state.
            let restarted = launch(&ctx, &oracle, &keys, 3, 1).await;
            assert!(
                restarted.handle.height() >= crashed_at,
                "replay restored finalized state"
            );
            restarted.handle.wait_for_height(progressed).await;
            for id in before.iter().chain(after.iter()) {
                assert!(matches!(
                    restarted.handle.status(id),
                    TxStatus::Finalized {
                        outcome: Ok(()),
                        ..
                    }
                ));
            }
            vals.push(restarted);
            let all: Vec<&Validator> = vals.iter().collect();
            let target = all.iter().map(|v| v.handle.height()).max().unwrap_or(0);
            for v in &all {
                v.handle.wait_for_height(target).await;
            }
            assert_consistent(&all);
            let total: i64 = (0..3)
                .map(|k| {
                    all[3]
                        .handle
                        .with_app(|a| a.counter(&format!("k{k}")).unwrap_or(0))
                })
                .sum();
            assert_eq!(total, 24);
        });
    }
}

#[test]
fn bad_transactions_are_refused_and_change_nothing() {
    deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(1)
            .with_timeout(Some(Duration::from_secs(60))),
    )
    .start(|ctx| async move {
        let keys = keys();
        let peers: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
        let oracle = network(&ctx, &peers).await;
        link(&oracle, &peers, &[&[0, 1, 2, 3]]).await;
        let v = launch(&ctx, &oracle, &keys, 0, 0).await;
        let key = test_key(1);
        assert!(v.handle.submit(Bytes::from_static(b"garbage")).is_err());
        assert!(
            v.handle
                .submit(sign_tx(&key, "other-chain", 0, "k", 1))
                .is_err()
        );
        let mut bad = sign_tx(&key, CHAIN, 0, "k", 1).to_vec();
        bad[30] ^= 1;
        assert!(v.handle.submit(Bytes::from(bad)).is_err());
        assert!(v.handle.submit(Bytes::from(vec![0u8; 100_000])).is_err());
        assert_eq!(v.handle.mempool_len(), 0);
        let ok = sign_tx(&key, CHAIN, 0, "k", 1);
        v.handle.submit(ok.clone()).expect("good tx admitted");
        assert!(v.handle.submit(ok).is_err(), "duplicate refused");
        assert_eq!(v.handle.mempool_len(), 1);
        select! {
            _ = ctx.sleep(Duration::from_millis(1)) => {},
        }
    });
}

#[test]
fn equivocating_leader_cannot_stop_honest_validators() {
    use commonware_consensus::{
        simplex::{elector::RoundRobin, mocks},
        types::Epoch,
    };
    use commonware_cryptography::{Sha256, sha256::Digest};
    use commonware_utils::ordered::Set;
    use std::sync::Arc;
    for seed in 0..3 {
        deterministic::Runner::new(
            deterministic::Config::new()
                .with_seed(seed)
                .with_timeout(Some(Duration::from_secs(600))),
        )
        .start(|ctx| async move {
            let keys = keys();
            let peers: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
            let oracle = network(&ctx, &peers).await;
            link(&oracle, &peers, &[&[0, 1, 2, 3]]).await;
            let mut vals = Vec::new();
            for i in 0..3 {
                vals.push(launch(&ctx, &oracle, &keys, i, 0).await);
            }
            // Validator 3 runs commonware's equivocator: as leader it sends different proposals
            // to different validators.
            let control = oracle.control(peers[3].clone());
            let votes = control
                .register(channel::VOTES, QUOTA)
                .await
                .expect("votes");
            let certs = control
                .register(channel::CERTIFICATES, QUOTA)
                .await
                .expect("certs");
            let scheme = engine::Scheme::signer(
                CHAIN.as_bytes(),
                Set::try_from(peers.clone()).expect("set"),
                keys[3].clone(),
            )
            .expect("signer");
            let equivocator = mocks::equivocator::Equivocator::<_, _, _, Sha256>::new(
                ctx.child("byzantine"),
                mocks::equivocator::Config {
                    scheme,
                    elector: RoundRobin::<Sha256>::default(),
                    epoch: Epoch::zero(),
                    relay: Arc::new(mocks::relay::Relay::<Digest, PublicKey>::new()),
                },
            );
            let _byzantine = equivocator.start(votes, certs);
            let refs: Vec<&Validator> = vals.iter().collect();
            let ids = submit(&refs, 77, 0, 12);
            for v in &vals {
                wait_finalized(v, &ids).await;
                v.handle.wait_for_height(8).await;
            }
            assert_consistent(&refs);
        });
    }
}
