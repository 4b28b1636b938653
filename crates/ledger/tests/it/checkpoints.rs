//! Validators of the real ledger write checkpoints of their committed state and restart from
//! them, replaying only the blocks after; a torn, stale or forged checkpoint is refused and the
//! validator falls back to an older one or to genesis, ending with the same chain and root as
//! the others. A validator with no chain joins by state sync from a peer's checkpoint (forged
//! ones refused, nothing written); pruning validators drop old blocks and still restart while an
//! archive keeps the chain verifiable from genesis; the cost of joining by state sync is
//! measured against replaying. Four validators on commonware's deterministic runtime and
//! simulated network.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use bytes::Bytes;
use commonware_runtime::{Blob as _, Runner as _, Storage as _, Supervisor as _, WriteOptions};
use medspace_chain::engine::SyncedState;
use medspace_chain::{
    Application as _,
    engine::Handle,
    testing::sim::{self, Ctx, Sim, Validator},
};
use medspace_ledger::LedgerApp;
use medspace_types::*;
use std::time::Duration;

pub(crate) const CHAIN: &str = "medspace-ckpt";
pub(crate) const N: usize = 4;
pub(crate) const EVERY: u64 = 4;
const HOSPITAL_SEED: u64 = 77;

pub(crate) fn genesis() -> Genesis {
    medspace_consortium::GenesisBuilder::new(CHAIN)
        .unwrap()
        .member(
            "hospital-a",
            MemberKind::Hospital,
            &Keypair::from_seed(HOSPITAL_SEED),
        )
        .unwrap()
        .build()
}

pub(crate) fn app() -> LedgerApp {
    LedgerApp::new(&genesis()).expect("genesis")
}

/// Registers patients `from..to` through the running validators and waits until they applied.
pub(crate) async fn register(vals: &[&Handle<LedgerApp>], from: u64, to: u64) {
    let chain = Name::new(CHAIN).unwrap();
    let mut ids = Vec::new();
    for (i, seed) in (from..to).enumerate() {
        let p = Keypair::from_seed(10_000 + seed);
        let reg = RegisterPatient::attested(
            &chain,
            &p.public(),
            MemberId::new("hospital-a").unwrap(),
            &Keypair::from_seed(HOSPITAL_SEED),
        );
        let tx: Bytes = SignedTx::new(&chain, &p, 0, Payload::RegisterPatient(reg)).to_bytes();
        ids.push(vals[i % vals.len()].submit(tx).expect("admitted"));
    }
    for v in vals {
        sim::wait_applied(v, &ids).await.expect("running");
    }
}

/// The heights of validator `i`'s stored checkpoints, newest first.
async fn checkpoints(ctx: &Ctx, i: usize) -> Vec<u64> {
    let mut h: Vec<u64> = ctx
        .scan(&format!("validator-{i}-checkpoints"))
        .await
        .unwrap_or_default()
        .iter()
        .map(|n| u64::from_be_bytes(n.as_slice().try_into().unwrap()))
        .collect();
    h.sort_unstable_by(|a, b| b.cmp(a));
    h
}

async fn read(ctx: &Ctx, i: usize, height: u64) -> Vec<u8> {
    let (blob, len) = ctx
        .open(&format!("validator-{i}-checkpoints"), &height.to_be_bytes())
        .await
        .unwrap();
    let bufs = blob
        .read_at(0, len as usize, Default::default())
        .await
        .unwrap();
    bufs.coalesce().as_ref().to_vec()
}

async fn overwrite(ctx: &Ctx, i: usize, height: u64, bytes: Vec<u8>) {
    let (blob, _) = ctx
        .open(&format!("validator-{i}-checkpoints"), &height.to_be_bytes())
        .await
        .unwrap();
    let len = bytes.len() as u64;
    blob.write_at(0, bytes, WriteOptions::default())
        .await
        .unwrap();
    blob.resize(len).await.unwrap();
    blob.sync().await.unwrap();
}

/// Crashes validator 3, lets the others go on, applies `tamper` to its stored checkpoints, then
/// restarts it; returns the height it restored from (0: genesis) once it caught up and agrees.
async fn crash_tamper_restart<F, Fut>(
    ctx: &Ctx,
    sim: &Sim,
    vals: &mut Vec<Validator<LedgerApp>>,
    incarnation: u32,
    next_patient: &mut u64,
    tamper: F,
) -> u64
where
    F: FnOnce(Ctx, Vec<u64>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let crashed = vals.pop().expect("validator 3");
    crashed.task.abort();
    let alive: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
    register(&alive, *next_patient, *next_patient + 6).await;
    *next_patient += 6;
    let stored = checkpoints(ctx, 3).await;
    assert!(!stored.is_empty(), "validator 3 wrote no checkpoint");
    assert!(stored.len() <= 2, "old checkpoints are removed: {stored:?}");
    assert!(stored.iter().all(|h| h.is_multiple_of(EVERY)), "{stored:?}");
    tamper(ctx.child("tamper"), stored).await;
    relaunch(ctx, sim, vals, (incarnation, app()), next_patient).await
}

/// Starts validator 3 again with `app`, registers more patients through all four, and returns
/// the height it started from once it caught up and agrees with the others.
pub(crate) async fn relaunch(
    ctx: &Ctx,
    sim: &Sim,
    vals: &mut Vec<Validator<LedgerApp>>,
    (incarnation, app): (u32, LedgerApp),
    next_patient: &mut u64,
) -> u64 {
    let restarted = sim.launch(ctx, 3, incarnation, app).await.expect("restart");
    let from = restarted.handle.finalized_from();
    vals.push(restarted);
    let all: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
    register(&all, *next_patient, *next_patient + 4).await;
    *next_patient += 4;
    sim::converge(&all).await;
    sim::check_consistent(&all).expect("validators agree");
    let roots: Vec<[u8; 32]> = all.iter().map(|v| v.with_app(|a| a.root())).collect();
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "roots differ");
    from
}

#[test]
fn a_validator_restarts_from_its_newest_sound_checkpoint_and_refuses_bad_ones() {
    sim::runner(5, Duration::from_secs(600)).start(|ctx| async move {
        let mut sim = Sim::new(&ctx, CHAIN, N).await;
        sim.checkpoint_every = EVERY;
        sim.link_all().await;
        let mut vals = Vec::new();
        for i in 0..N {
            vals.push(sim.launch(&ctx, i, 0, app()).await.expect("start"));
        }
        {
            let all: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
            register(&all, 0, 12).await;
            for v in &all {
                v.wait_for_height(3 * EVERY + 1).await;
            }
        }

        let mut next = 12u64;
        // A clean crash: the validator restores its newest checkpoint and replays the rest.
        let from = crash_tamper_restart(
            &ctx,
            &sim,
            &mut vals,
            1,
            &mut next,
            |ctx, stored| async move {
                let _ = (ctx, stored);
            },
        )
        .await;
        assert!(
            from > 0 && from.is_multiple_of(EVERY),
            "restored from {from}"
        );

        // The newest checkpoint torn mid-write (a flipped byte inside it): the one before is used.
        let mut expected = 0;
        let from = crash_tamper_restart(&ctx, &sim, &mut vals, 2, &mut next, |ctx, stored| {
            expected = stored.get(1).copied().unwrap_or(0);
            async move {
                let mut bytes = read(&ctx, 3, stored[0]).await;
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0xff;
                overwrite(&ctx, 3, stored[0], bytes).await;
            }
        })
        .await;
        assert_eq!(from, expected, "the torn newest checkpoint was not refused");

        // A stale checkpoint under the newest one's name (intact, checksummed, but the state of
        // another height), and the older one torn to its first half: nothing qualifies, the
        // validator replays from genesis and still agrees.
        let from = crash_tamper_restart(
            &ctx,
            &sim,
            &mut vals,
            3,
            &mut next,
            |ctx, stored| async move {
                assert_eq!(stored.len(), 2, "two checkpoints kept");
                let older = read(&ctx, 3, stored[1]).await;
                overwrite(&ctx, 3, stored[0], older.clone()).await;
                overwrite(&ctx, 3, stored[1], older[..older.len() / 2].to_vec()).await;
            },
        )
        .await;
        assert_eq!(
            from, 0,
            "a stale or torn checkpoint was taken for the chain's state"
        );
    });
}

/// The chain genesis a follower of the simulated consortium trusts: its validators' keys
/// (addresses are never dialled here) and the application genesis.
fn chain_genesis(sim: &Sim) -> medspace_chain::node::Genesis {
    use commonware_codec::Encode as _;
    medspace_chain::node::Genesis {
        chain_id: CHAIN.into(),
        validators: sim
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| medspace_chain::genesis::GenesisValidator {
                name: format!("validator-{i}"),
                public_key: hex::encode(p.encode()),
                p2p: "127.0.0.1:1".parse().unwrap(),
                http: "127.0.0.1:1".parse().unwrap(),
                tls_cert: None,
            })
            .collect(),
        observers: Vec::new(),
        app: serde_json::to_value(genesis()).unwrap(),
    }
}

#[test]
fn a_follower_starts_from_a_certified_checkpoint_and_refuses_any_other() {
    use medspace_chain::follow::{encode_certified_header, encode_finalized};
    use medspace_ledger::Follower;
    use medspace_state::checkpoint;
    sim::runner(9, Duration::from_secs(300)).start(|ctx| async move {
        let sim = Sim::new(&ctx, CHAIN, N).await;
        sim.link_all().await;
        let mut vals = Vec::new();
        for i in 0..N {
            vals.push(sim.launch(&ctx, i, 0, app()).await.expect("start").handle);
        }
        let all: Vec<&Handle<LedgerApp>> = vals.iter().collect();
        register(&all, 0, 6).await;
        let v = &vals[0];
        // A checkpoint and the certified header of the height it was taken at.
        let (bytes, height) = loop {
            let h = v.height();
            let bytes = v.checkpoint().expect("the ledger keeps checkpoints");
            if checkpoint::summary(&bytes).unwrap().height == h {
                break (bytes, h);
            }
        };
        let certified = |h: u64| async move {
            let (block, fin) = v.block(h).await.expect("stored");
            (block.clone(), fin.clone().expect("certified"))
        };
        let (block, fin) = certified(height).await;
        let header = encode_certified_header(&block.header, &fin);
        let cg = chain_genesis(&sim);

        let mut follower = Follower::from_checkpoint(&cg, &bytes, &header).expect("sound");
        assert_eq!(follower.height(), height);
        assert_eq!(follower.state().root().0, block.header.state_root);
        assert_eq!(follower.state().len(), v.with_app(|a| a.state().len()));
        // It follows the next block like any follower (re-execution to the header's root).
        v.wait_for_height(height + 1).await;
        let (next, next_fin) = certified(height + 1).await;
        follower
            .apply(&encode_finalized(&next, &next_fin))
            .expect("next block");
        assert_eq!(follower.state().root().0, next.header.state_root);

        // The header of another height.
        let other = encode_certified_header(&next.header, &next_fin);
        assert!(Follower::from_checkpoint(&cg, &bytes, &other).is_err());
        // A header whose certificate is for another block.
        let miscertified = encode_certified_header(&block.header, &next_fin);
        assert!(Follower::from_checkpoint(&cg, &bytes, &miscertified).is_err());
        // One record altered and the checkpoint re-sealed with its new root: a forger's.
        let restored = checkpoint::decode(&bytes).unwrap();
        let mut records: Vec<(Vec<u8>, Vec<u8>)> = restored
            .state
            .scan_raw(&[])
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let last = records.last_mut().unwrap();
        last.1.push(0);
        let forged = medspace_state::State::from_records(records).unwrap();
        let forged = checkpoint::encode(&forged, height, block.header.time_ms).unwrap();
        assert!(Follower::from_checkpoint(&cg, &forged, &header).is_err());
        // Torn in transit.
        assert!(Follower::from_checkpoint(&cg, &bytes[..bytes.len() - 1], &header).is_err());
        // A validator set the genesis does not name.
        let mut strangers = chain_genesis(&sim);
        strangers.validators.truncate(1);
        assert!(Follower::from_checkpoint(&strangers, &bytes, &header).is_err());
    });
}

/// Partitions a validator's engine creates when it opens its storage.
const OPENED: [&str; 3] = [
    "finalized-blocks-metadata",
    "finalizations-by-height-metadata",
    "simplex",
];

/// Whether validator `i` has any of the storage its engine opens at start.
async fn has_storage(ctx: &Ctx, i: usize) -> bool {
    for name in OPENED {
        if ctx.scan(&format!("validator-{i}-{name}")).await.is_ok() {
            return true;
        }
    }
    false
}

/// A state sync from `from` whose checkpoint's certificate is stored.
async fn state_sync(from: &Handle<LedgerApp>) -> medspace_chain::engine::StateSync {
    loop {
        if let Some(sync) = from.state_sync().await {
            return sync;
        }
        from.wait_for_height(from.height() + 1).await;
    }
}

/// `sync` with one record of its checkpoint altered and the checkpoint re-sealed (checksum and
/// root recomputed): a forger's, intact as a file.
fn with_forged_records(
    sync: &medspace_chain::engine::StateSync,
) -> medspace_chain::engine::StateSync {
    use medspace_state::checkpoint;
    let restored = checkpoint::decode(bytes(sync)).unwrap();
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = restored
        .state
        .scan_raw(&[])
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect();
    records.last_mut().unwrap().1.push(0);
    let forged = medspace_state::State::from_records(records).unwrap();
    let mut out = sync.clone();
    out.checkpoint = SyncedState::Bytes(
        checkpoint::encode(&forged, sync.header.height, sync.header.time_ms).unwrap(),
    );
    out
}

/// The checkpoint a state sync made by a handle carries.
fn bytes(sync: &medspace_chain::engine::StateSync) -> &Vec<u8> {
    match &sync.checkpoint {
        SyncedState::Bytes(bytes) => bytes,
        SyncedState::Restored => panic!("a handle's state sync carries its checkpoint"),
    }
}

#[test]
fn a_fresh_validator_joins_by_state_sync_and_forged_checkpoints_are_refused() {
    use medspace_chain::engine::EngineError;
    use medspace_chain::testing::sim::SimError;
    sim::runner(21, Duration::from_secs(600)).start(|ctx| async move {
        let mut sim = Sim::new(&ctx, CHAIN, N).await;
        sim.checkpoint_every = EVERY;
        sim.link_all().await;
        // Validator 3 is offline from genesis: the other three (a quorum) make the chain.
        let mut vals = Vec::new();
        for i in 0..N - 1 {
            vals.push(sim.launch(&ctx, i, 0, app()).await.expect("start"));
        }
        let three: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
        register(&three, 0, 8).await;
        three[0].wait_for_height(6 * EVERY).await;
        let sync = state_sync(three[0]).await;
        let height = sync.header.height;
        assert!(height >= 6 * EVERY);

        // Forged: records altered and re-sealed; a certificate over another block; the header
        // and certificate of another height; torn in transit. Each is refused before anything
        // is written.
        three[0].wait_for_height(height + 1).await;
        let next = state_sync(three[0]).await;
        assert!(next.header.height > height);
        let mut other_block = sync.clone();
        other_block.finalization = next.finalization.clone();
        let mut other_height = next.clone();
        other_height.checkpoint = sync.checkpoint.clone();
        let mut torn = sync.clone();
        let whole = bytes(&sync);
        torn.checkpoint = SyncedState::Bytes(whole[..whole.len() - 1].to_vec());
        // Said to be restored already, by an application still at genesis.
        let mut claimed = sync.clone();
        claimed.checkpoint = SyncedState::Restored;
        for (what, forged) in [
            ("records altered", with_forged_records(&sync)),
            ("certificate over another block", other_block),
            ("checkpoint of another height", other_height),
            ("torn in transit", torn),
            ("claimed restored", claimed),
        ] {
            match sim.launch_synced(&ctx, 3, 0, app(), Some(forged)).await {
                Err(SimError::Start(EngineError::StateSync { .. })) => {}
                Err(e) => panic!("{what}: refused for another reason: {e}"),
                Ok(_) => panic!("{what}: a forged checkpoint was taken"),
            }
            assert!(!has_storage(&ctx, 3).await, "{what}: storage written");
        }

        // The sound one: validator 3 restores it, starts at its block, never holds block 1.
        let joined = sim
            .launch_synced(&ctx, 3, 1, app(), Some(sync))
            .await
            .expect("joins");
        assert!(has_storage(&ctx, 3).await, "the storage check sees storage");
        assert_eq!(joined.handle.finalized_from(), height);
        vals.push(joined);
        let all: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
        register(&all, 8, 14).await;
        sim::converge(&all).await;
        sim::check_consistent(&all).expect("validators agree");
        assert!(all[3].block(1).await.is_none(), "block 1 was fetched");

        // It votes: with validator 2 down, 0, 1 and 3 are the only quorum and keep finalizing.
        let down = vals.remove(2);
        down.task.abort();
        let quorum: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
        let before = quorum[2].height();
        register(&quorum, 14, 18).await;
        sim::converge(&quorum).await;
        sim::check_consistent(&quorum).expect("validators agree");
        assert!(quorum[2].height() > before);
        let roots: Vec<[u8; 32]> = quorum.iter().map(|v| v.with_app(|a| a.root())).collect();
        assert!(roots.windows(2).all(|w| w[0] == w[1]), "roots differ");
    });
}

#[test]
fn pruning_validators_drop_old_blocks_restart_from_checkpoints_and_an_archive_still_verifies() {
    use medspace_ledger::Follower;
    pub(crate) const EVERY: u64 = 16;
    sim::runner(33, Duration::from_secs(1200)).start(|ctx| async move {
        let mut sim = Sim::new(&ctx, CHAIN, N).await;
        sim.checkpoint_every = EVERY;
        sim.link_all().await;
        // Validator 0 is an archive; 1, 2 and 3 prune.
        let mut vals = Vec::new();
        for i in 0..N {
            sim.prune = i > 0;
            vals.push(sim.launch(&ctx, i, 0, app()).await.expect("start"));
        }
        let all: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
        register(&all, 0, 8).await;
        // Past two checkpoints above the first section of 64 heights, every pruning validator
        // has dropped block 1 (pruning follows the checkpoint writer, so allow a few blocks).
        all[0].wait_for_height(7 * EVERY).await;
        for v in &all[1..] {
            let mut waited = 0;
            while v.block(1).await.is_some() {
                assert!(waited < 4 * EVERY, "block 1 not pruned");
                v.wait_for_height(v.height() + 1).await;
                waited += 1;
            }
            assert!(v.block(v.height()).await.is_some(), "the tip is kept");
        }
        assert!(all[0].block(1).await.is_some(), "the archive pruned");

        // A pruned validator restarts from its checkpoint and agrees.
        let crashed = vals.pop().expect("validator 3");
        crashed.task.abort();
        let three: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
        register(&three, 8, 12).await;
        let restarted = sim.launch(&ctx, 3, 1, app()).await.expect("restart");
        let from = restarted.handle.finalized_from();
        assert!(
            from > 0 && from.is_multiple_of(EVERY),
            "restored from {from}"
        );
        vals.push(restarted);
        let all: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
        register(&all, 12, 16).await;
        let tip = sim::converge(&all).await;
        sim::check_consistent(&all).expect("validators agree");

        // A follower verifies the archive's chain from genesis to the same root.
        let mut follower = Follower::new(&chain_genesis(&sim)).expect("genesis");
        for h in 1..=tip {
            let (block, fin) = all[0]
                .block(h)
                .await
                .expect("the archive keeps every block");
            let fin = fin.expect("certified");
            follower
                .apply(&medspace_chain::follow::encode_finalized(&block, &fin))
                .unwrap_or_else(|e| panic!("height {h}: {e}"));
        }
        assert_eq!(
            follower.state().root().0,
            all[0].finalized(tip).expect("tip").1
        );
    });
}

/// Builds a chain of `height` blocks on validators 0-2 (with validator 3 offline from genesis),
/// then starts validator 3 — by state sync from validator 0 or by fetching and replaying every
/// block — and returns the simulated milliseconds until it committed the first block after the
/// others' tip of when it started, how many blocks it executed to get there, and the wall-clock
/// time of that phase (the whole simulation's work, not only validator 3's).
fn join(seed: u64, height: u64, by_state_sync: bool) -> (u64, u64, Duration) {
    use commonware_runtime::Clock as _;
    sim::runner(seed, Duration::from_secs(3600)).start(|ctx| async move {
        let mut sim = Sim::new(&ctx, CHAIN, N).await;
        sim.checkpoint_every = EVERY;
        sim.link_all().await;
        let mut vals = Vec::new();
        for i in 0..N - 1 {
            vals.push(sim.launch(&ctx, i, 0, app()).await.expect("start"));
        }
        let three: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
        register(&three, 0, 24).await;
        three[0].wait_for_height(height).await;
        let started = ctx.current();
        let wall = std::time::Instant::now();
        let sync = if by_state_sync {
            Some(state_sync(three[0]).await)
        } else {
            None
        };
        let tip = three[0].height();
        let joined = sim
            .launch_synced(&ctx, 3, 0, app(), sync)
            .await
            .expect("joins");
        joined.handle.wait_for_height(tip + 1).await;
        let wall = wall.elapsed();
        let ms = ctx
            .current()
            .duration_since(started)
            .unwrap_or_default()
            .as_millis();
        let executed = tip + 1 - joined.handle.finalized_from();
        let all = [three[0], three[1], three[2], &joined.handle];
        sim::converge(&all).await;
        sim::check_consistent(&all).expect("validators agree");
        (u64::try_from(ms).unwrap(), executed, wall)
    })
}

#[test]
fn joining_by_state_sync_costs_the_state_not_the_chain() {
    const HEIGHT: u64 = 160;
    let (replay_ms, replayed, replay_wall) = join(41, HEIGHT, false);
    let (sync_ms, synced, sync_wall) = join(41, HEIGHT, true);
    eprintln!(
        "join at height {HEIGHT}: by replay {replay_ms} ms simulated, {replayed} blocks \
         executed, {replay_wall:?} wall; by state sync {sync_ms} ms simulated, {synced} blocks \
         executed, {sync_wall:?} wall"
    );
    assert!(replayed > HEIGHT);
    assert!(
        synced <= EVERY,
        "executed {synced} blocks after the checkpoint"
    );
    assert!(sync_ms < replay_ms);
}

#[test]
fn a_follower_takes_blocks_finalized_through_a_later_certificate_and_nothing_else() {
    use medspace_chain::follow::{encode_finalized, encode_linked};
    use medspace_ledger::Follower;
    sim::runner(41, Duration::from_secs(600)).start(|ctx| async move {
        let sim = Sim::new(&ctx, CHAIN, N).await;
        sim.link_all().await;
        let mut vals = Vec::new();
        for i in 0..N {
            vals.push(sim.launch(&ctx, i, 0, app()).await.expect("start"));
        }
        let all: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
        for round in 0..8 {
            register(&all, round, round + 1).await;
        }
        let tip = sim::converge(&all).await;
        assert!(tip >= 6, "tip {tip}");
        let mut blocks = Vec::new();
        for h in 1..=tip {
            let (block, fin) = all[0].block(h).await.expect("stored");
            blocks.push((block, fin.expect("certified")));
        }
        let certified = |h: u64| {
            let (b, f) = &blocks[h as usize - 1];
            encode_finalized(b, f)
        };
        // Heights 2 to 4 as a validator serves a block simplex finalized through a later
        // block's certificate: the block alone.
        let alone = |h: u64| encode_linked(&blocks[h as usize - 1].0);
        let cg = chain_genesis(&sim);

        let mut f = Follower::new(&cg).expect("genesis");
        f.apply_entry(&certified(1)).expect("height 1");
        for h in 2..=4 {
            let applied = f.apply_entry(&alone(h)).expect("held");
            assert!(applied.entries.is_empty(), "a block alone is not applied");
            assert_eq!(f.height(), 1);
            assert_eq!(f.next_height(), h + 1);
        }
        let applied = f.apply_entry(&certified(5)).expect("certified after them");
        assert_eq!(
            applied.entries,
            vec![alone(2), alone(3), alone(4), certified(5)]
        );
        assert_eq!(f.height(), 5);
        for h in 6..=tip {
            f.apply_entry(&certified(h)).expect("the rest");
        }
        assert_eq!(f.state().root().0, all[0].finalized(tip).expect("tip").1);

        // A follower starts from a state it holds (an observer's store, a client's pinned
        // root) only at the certified root of that height.
        let header = |h: u64| {
            let (b, f) = &blocks[h as usize - 1];
            medspace_chain::follow::encode_certified_header(&b.header, f)
        };
        let resumed = Follower::from_state(&cg, f.state().clone(), &header(tip), tip)
            .expect("the certified root");
        assert_eq!(resumed.height(), tip);
        assert!(Follower::from_state(&cg, f.state().clone(), &header(tip - 1), tip - 1).is_err());
        assert!(Follower::from_state(&cg, f.state().clone(), &header(tip), tip - 1).is_err());

        // An observer logs the entries as they became final; the audit verifies such a log,
        // and one that ends with a block no certificate proves yet reports that tail.
        let dir = std::env::temp_dir().join(format!("medspace-linked-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(medspace_chain::audit::OBSERVED_LOG);
        let (mut log, _) = medspace_chain::follow::BlockLog::open(&path).unwrap();
        log.append(&certified(1)).unwrap();
        for e in &applied.entries {
            log.append(e).unwrap();
        }
        for h in 6..=tip {
            log.append(&certified(h)).unwrap();
        }
        let report = medspace_chain::audit::audit_verify(&dir, "observer", &cg, app()).unwrap();
        assert_eq!((report.verified_height, report.fault.clone()), (tip, None));
        assert_eq!(report.root, all[0].finalized(tip).expect("tip").1);
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let (mut log, _) = medspace_chain::follow::BlockLog::open(&path).unwrap();
        for e in [certified(1), alone(2), alone(3)] {
            log.append(&e).unwrap();
        }
        let report = medspace_chain::audit::audit_verify(&dir, "observer", &cg, app()).unwrap();
        assert_eq!(
            (report.verified_height, report.unproven_tail, report.fault),
            (1, Some(2), None)
        );
        let _ = std::fs::remove_dir_all(&dir);

        // A block alone that is not the chain's (another block's txs under its header, or a
        // block that does not link) is refused, and so is a certified block after blocks that
        // do not lead to it; nothing is applied and what was held is dropped.
        let mut f = Follower::new(&cg).expect("genesis");
        f.apply_entry(&certified(1)).expect("height 1");
        let root = f.state().root();
        assert!(f.apply_entry(&alone(3)).is_err(), "a gap");
        assert_eq!(f.next_height(), 2);
        let mut forged = blocks[1].0.clone();
        forged.header.time_ms += 1;
        f.apply_entry(&encode_linked(&forged))
            .expect("links to height 1, held");
        assert!(
            f.apply_entry(&alone(3)).is_err(),
            "does not link to the forged block"
        );
        assert_eq!(
            (f.height(), f.next_height(), f.state().root()),
            (1, 2, root)
        );
        f.apply_entry(&encode_linked(&forged)).expect("held again");
        assert!(
            f.apply_entry(&certified(3)).is_err(),
            "a certified block whose parent is not the held one"
        );
        assert_eq!(
            (f.height(), f.next_height(), f.state().root()),
            (1, 2, root)
        );
        // Blocks alone with no certified block after them are never applied.
        for h in 2..=tip {
            f.apply_entry(&alone(h)).expect("held");
        }
        assert_eq!((f.height(), f.state().root()), (1, root));
        // Garbage after a block is refused and drops what was held.
        let mut garbage = alone(tip + 1 - 1);
        garbage.push(7);
        assert!(f.apply_entry(&garbage).is_err());
        assert_eq!(f.next_height(), 2);
    });
}
