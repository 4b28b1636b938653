//! Deterministic simulations of a 4-validator consortium on commonware's deterministic runtime
//! and simulated p2p network, running the real engine with the counter application.
//!
//! `MEDSPACE_SIM_SEEDS` sets how many seeds the multi-seed test runs (default 50).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use bytes::Bytes;
use commonware_macros::select;
use commonware_runtime::{Clock, Runner as _, Supervisor as _};
use medspace_chain::{
    engine::{FaultKind, Handle, TxStatus, channel},
    testing::{
        CounterApp, sign_tx,
        sim::{self, Sim},
        test_key,
    },
};
use std::time::Duration;

const CHAIN: &str = "medspace-sim";
const N: usize = 4;

type Validator = sim::Validator<CounterApp>;

async fn start(ctx: &sim::Ctx, groups: &[&[usize]], launch: &[usize]) -> (Sim, Vec<Validator>) {
    let sim = Sim::new(ctx, CHAIN, N).await;
    sim.link(groups).await.expect("link");
    let mut vals = Vec::new();
    for &i in launch {
        vals.push(launch_one(ctx, &sim, i, 0).await);
    }
    (sim, vals)
}

async fn launch_one(ctx: &sim::Ctx, sim: &Sim, i: usize, incarnation: u32) -> Validator {
    sim.launch(ctx, i, incarnation, CounterApp::new(CHAIN))
        .await
        .expect("start validator")
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
    sim::wait_applied(&v.handle, ids)
        .await
        .expect("node running");
}

fn handles<'a>(vals: &[&'a Validator]) -> Vec<&'a Handle<CounterApp>> {
    vals.iter().map(|v| &v.handle).collect()
}

/// Asserts every pair of validators agrees on the common prefix of their finalized chains and
/// that the committed root of each equals its header root at its height.
fn assert_consistent(vals: &[&Validator]) {
    if let Err(e) = sim::check_consistent(&handles(vals)) {
        panic!("{e}");
    }
}

async fn converge(vals: &[&Validator]) -> u64 {
    sim::converge(&handles(vals)).await
}

/// Honest run: all finalize the same blocks, roots, and all submitted transactions.
fn honest(
    seed: u64,
) -> (
    Vec<(commonware_cryptography::sha256::Digest, [u8; 32])>,
    String,
) {
    sim::runner(seed, Duration::from_secs(300)).start(|ctx| async move {
        let (_sim, vals) = start(&ctx, &[&[0, 1, 2, 3]], &[0, 1, 2, 3]).await;
        let refs: Vec<&Validator> = vals.iter().collect();
        let ids = submit(&refs, seed, 0, 24);
        for v in &vals {
            wait_finalized(v, &ids).await;
            v.handle.wait_for_height(6).await;
        }
        let target = converge(&refs).await;
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
            assert_eq!(v.handle.fault_count(), 0, "honest run reports no fault");
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
    assert_ne!(a, honest(8), "a different seed gives a different run");
    let a = conflicting_voter(7);
    let b = conflicting_voter(7);
    assert_eq!(
        a, b,
        "the Byzantine run, its faults included, is reproducible"
    );
}

#[test]
fn one_validator_cut_off_others_keep_finalizing() {
    for seed in 0..5 {
        sim::runner(seed, Duration::from_secs(300)).start(|ctx| async move {
            let (_sim, vals) = start(&ctx, &[&[0, 1, 2]], &[0, 1, 2, 3]).await;
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
        sim::runner(seed, Duration::from_secs(600)).start(|ctx| async move {
            let (sim, vals) = start(&ctx, &[&[0, 1], &[2, 3]], &[0, 1, 2, 3]).await;
            let refs: Vec<&Validator> = vals.iter().collect();
            let ids = submit(&refs, 5, 0, 8);
            // A partition is a period of time: observe it for 30 simulated seconds.
            ctx.sleep(Duration::from_secs(30)).await;
            for v in &vals {
                assert_eq!(v.handle.height(), 0, "a 2/2 split must finalize nothing");
            }
            sim.unlink_all().await;
            sim.link_all().await;
            for v in &vals {
                wait_finalized(v, &ids).await;
            }
            converge(&refs).await;
            assert_consistent(&refs);
        });
    }
}

#[test]
fn crashed_validator_restarts_loses_nothing_and_catches_up() {
    for seed in 0..3 {
        sim::runner(seed, Duration::from_secs(600)).start(|ctx| async move {
            let (sim, mut vals) = start(&ctx, &[&[0, 1, 2, 3]], &[0, 1, 2, 3]).await;
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
            let restarted = launch_one(&ctx, &sim, 3, 1).await;
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
            converge(&all).await;
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
    sim::runner(1, Duration::from_secs(60)).start(|ctx| async move {
        let (_sim, vals) = start(&ctx, &[&[0, 1, 2, 3]], &[0]).await;
        let v = &vals[0];
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

/// Validator 3 runs commonware's equivocator: as leader it sends one proposal (with its notarize
/// vote) to one validator and a different one to the other two. No single honest validator sees
/// both votes, so this is not provable evidence; the test is about liveness and safety.
#[test]
fn equivocating_leader_cannot_stop_honest_validators() {
    use commonware_consensus::{
        simplex::{elector::RoundRobin, mocks},
        types::Epoch,
    };
    use commonware_cryptography::{Sha256, sha256::Digest};
    use medspace_chain::engine::PublicKey;
    use std::sync::Arc;
    for seed in 0..3 {
        sim::runner(seed, Duration::from_secs(600)).start(|ctx| async move {
            let (sim, vals) = start(&ctx, &[&[0, 1, 2, 3]], &[0, 1, 2]).await;
            let votes = sim.register(3, channel::VOTES).await.expect("votes");
            let certs = sim.register(3, channel::CERTIFICATES).await.expect("certs");
            let equivocator = mocks::equivocator::Equivocator::<_, _, _, Sha256>::new(
                ctx.child("byzantine"),
                mocks::equivocator::Config {
                    scheme: sim.scheme(3).expect("signer"),
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

/// What one Byzantine run produced: the agreed finalized chain, each honest validator's recorded
/// faults (kind, offender, view), and the runtime's audit state.
type ConflictRun = (
    Vec<(commonware_cryptography::sha256::Digest, [u8; 32])>,
    Vec<Vec<(FaultKind, String, u64)>>,
    String,
);

/// Validators 0..3 are honest; validator 3 runs commonware's conflicter: for every notarize or
/// finalize vote it receives it signs and sends two votes for different proposals of the same
/// view (a random one and the real one). Every honest validator must record that as a proven
/// fault naming validator 3, and block it, while the three keep finalizing and agree.
fn conflicting_voter(seed: u64) -> ConflictRun {
    use commonware_codec::Decode as _;
    use commonware_consensus::simplex::{mocks, types::Activity};
    use commonware_cryptography::{Sha256, certificate::Verifier as _, sha256::Digest};
    use commonware_parallel::Sequential;
    use commonware_utils::ordered::Set;
    use medspace_chain::engine::Scheme;
    sim::runner(seed, Duration::from_secs(600)).start(|mut ctx| async move {
        let (sim, vals) = start(&ctx, &[&[0, 1, 2, 3]], &[0, 1, 2]).await;
        let votes = sim.register(3, channel::VOTES).await.expect("votes");
        let conflicter = mocks::conflicter::Conflicter::<_, _, Sha256>::new(
            ctx.child("byzantine"),
            mocks::conflicter::Config {
                scheme: sim.scheme(3).expect("signer"),
            },
        );
        let _byzantine = conflicter.start(votes);
        let refs: Vec<&Validator> = vals.iter().collect();
        let ids = submit(&refs, 77, 0, 12);
        for v in &vals {
            wait_finalized(v, &ids).await;
            v.handle.wait_for_height(8).await;
        }
        let target = converge(&refs).await;
        assert_consistent(&refs);

        let byzantine = sim.peers[3].clone();
        let verifier = Scheme::verifier(
            CHAIN.as_bytes(),
            Set::try_from(sim.peers.clone()).expect("validator set"),
        );
        let mut recorded = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            let faults = v.handle.faults();
            assert!(
                !faults.is_empty(),
                "seed={seed}: validator {i} did not report the conflicting voter"
            );
            assert_eq!(v.handle.fault_count(), faults.len() as u64);
            // `GET /v1/faults` says the same, with evidence a third party decodes and verifies.
            let json = medspace_chain::api::faults_json(v.handle.fault_count(), &faults);
            assert_eq!(json["total"], faults.len() as u64);
            for (f, j) in faults.iter().zip(json["faults"].as_array().unwrap()) {
                assert_eq!(j["kind"], f.kind.as_str());
                assert_eq!(
                    j["validator"],
                    hex::encode(commonware_codec::Encode::encode(&byzantine))
                );
                assert_eq!(j["view"], f.view);
                let evidence = hex::decode(j["evidence"].as_str().unwrap()).unwrap();
                let activity = Activity::<Scheme, Digest>::decode_cfg(
                    bytes::Bytes::from(evidence),
                    &verifier.certificate_codec_config(),
                )
                .expect("the served evidence decodes");
                assert!(activity.verify(&mut ctx, &verifier, &Sequential));
            }
            for f in &faults {
                assert_eq!(
                    f.validator, byzantine,
                    "seed={seed}: only validator 3 is faulty"
                );
                assert!(
                    matches!(
                        f.kind,
                        FaultKind::ConflictingNotarize | FaultKind::ConflictingFinalize
                    ),
                    "seed={seed}: unexpected fault kind {}",
                    f.kind
                );
                // The evidence convinces a third party that knows only the validator set.
                let activity = Activity::<Scheme, Digest>::decode_cfg(
                    f.evidence.clone(),
                    &verifier.certificate_codec_config(),
                )
                .expect("evidence decodes");
                assert!(activity.verify(&mut ctx, &verifier, &Sequential));
            }
            recorded.push(
                faults
                    .iter()
                    .map(|f| (f.kind, f.validator.to_string(), f.view))
                    .collect(),
            );
        }
        // Simplex blocked the offender on every honest validator, and only the offender.
        let blocked = sim.oracle.blocked().await.expect("blocked list");
        for honest in &sim.peers[..3] {
            assert!(
                blocked.contains(&(honest.clone(), byzantine.clone())),
                "seed={seed}: an honest validator did not block the conflicting voter"
            );
        }
        assert!(blocked.iter().all(|(_, b)| b == &byzantine));
        eprintln!(
            "seed={seed} height={target} faults={:?}",
            recorded.iter().map(Vec::len).collect::<Vec<_>>()
        );
        (
            vals[0].handle.finalized_chain()[..=target as usize].to_vec(),
            recorded,
            ctx.auditor().state(),
        )
    })
}

#[test]
fn conflicting_voter_is_reported_and_honest_validators_keep_finalizing() {
    for seed in 0..10 {
        let (chain, faults, _) = conflicting_voter(seed);
        assert!(chain.len() > 8, "seed={seed}: too little finalized");
        assert_eq!(faults.len(), 3);
    }
}
