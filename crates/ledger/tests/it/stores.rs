//! A validator that keeps its committed state in a store on its own disk resumes from it after
//! a crash, replaying only the finalized blocks after the store's height; a store that is not
//! the state of the node's finalized block at its height (altered, or the chain's storage
//! wiped under it) is set aside for genesis and the node still ends with the others' root; a
//! store of another chain is refused at open. Four validators on commonware's deterministic
//! runtime and simulated network; validator 3's store is a real directory.

use crate::checkpoints::{CHAIN, EVERY, N, app, genesis, register, relaunch};
use commonware_runtime::Runner as _;
use medspace_chain::{
    Application as _,
    engine::Handle,
    testing::sim::{self, Sim, Validator},
};
use medspace_ledger::LedgerApp;
use medspace_state::State;
use medspace_state::trie::disk::NodeStore;
use std::path::Path;
use std::time::Duration;

const CACHE: usize = 1 << 20;

fn stored_app(dir: &Path) -> LedgerApp {
    app().with_store(dir, CACHE).expect("store opens")
}

/// Crashes validator 3, lets the others finalize more, runs `tamper` on its store, restarts it
/// on the same store; returns the height it resumed from once it caught up and agrees.
async fn crash_and_resume(
    ctx: &sim::Ctx,
    sim: &Sim,
    vals: &mut Vec<Validator<LedgerApp>>,
    dir: &Path,
    incarnation: u32,
    next: &mut u64,
    tamper: impl FnOnce(&Path),
) -> u64 {
    let crashed = vals.pop().expect("validator 3");
    crashed.task.abort();
    // As the process's death would, give back the store's lock.
    drop(crashed);
    let alive: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
    register(&alive, *next, *next + 6).await;
    *next += 6;
    tamper(dir);
    relaunch(ctx, sim, vals, (incarnation, stored_app(dir)), next).await
}

/// The height the store in `dir` last committed.
fn store_height(dir: &Path) -> u64 {
    let (store, _) = NodeStore::open(dir, CACHE).unwrap();
    store.height()
}

#[test]
fn a_validator_resumes_from_its_own_store_and_sets_aside_one_that_is_not_the_chains() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("validator-3-state");
    sim::runner(11, Duration::from_secs(600)).start(|ctx| async move {
        let mut sim = Sim::new(&ctx, CHAIN, N).await;
        sim.checkpoint_every = EVERY;
        sim.link_all().await;
        let mut vals = Vec::new();
        for i in 0..N - 1 {
            vals.push(sim.launch(&ctx, i, 0, app()).await.expect("start"));
        }
        vals.push(
            sim.launch(&ctx, 3, 0, stored_app(&store))
                .await
                .expect("start"),
        );
        {
            let all: Vec<&Handle<LedgerApp>> = vals.iter().map(|v| &v.handle).collect();
            register(&all, 0, 12).await;
            for v in &all {
                v.wait_for_height(2 * EVERY + 1).await;
            }
        }
        let mut next = 12;

        // A crash: the validator opens its store at the last block it committed and replays
        // only what the others finalized since.
        let mut at_crash = 0;
        let from = crash_and_resume(&ctx, &sim, &mut vals, &store, 1, &mut next, |dir| {
            at_crash = store_height(dir);
        })
        .await;
        assert!(at_crash > 2 * EVERY, "the store kept up: {at_crash}");
        assert_eq!(
            from, at_crash,
            "resumed from the store, not a checkpoint or genesis"
        );

        // The store altered behind the node's back — a record changed and committed at the same
        // height, so its root is not the chain's: set aside, the node restores a checkpoint and
        // still agrees.
        let mut forged_at = 0;
        let from = crash_and_resume(&ctx, &sim, &mut vals, &store, 2, &mut next, |dir| {
            let (mut s, committed) = NodeStore::open(dir, CACHE).unwrap();
            let committed = committed.unwrap();
            forged_at = committed.height;
            let state = State::from_store(committed).unwrap();
            let mut records: Vec<(Vec<u8>, Vec<u8>)> = state
                .scan_raw(&[])
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            records.last_mut().unwrap().1.push(0);
            let forged = State::from_records(records).unwrap();
            forged.persist(&mut s, forged_at).unwrap();
        })
        .await;
        assert!(forged_at > 0);
        assert!(
            from < forged_at && from.is_multiple_of(EVERY),
            "the forged store was not set aside: resumed from {from}, forged at {forged_at}"
        );
        // Afterwards the store holds the chain's state again, and a crash resumes from it.
        let from = crash_and_resume(&ctx, &sim, &mut vals, &store, 3, &mut next, |_| {}).await;
        assert!(from > forged_at, "resumed from {from}");
    });
}

#[test]
fn a_store_of_another_chain_is_refused_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let other = medspace_consortium::GenesisBuilder::new("another-chain")
        .unwrap()
        .member(
            "hospital-a",
            medspace_types::MemberKind::Hospital,
            &medspace_types::Keypair::from_seed(1),
        )
        .unwrap()
        .build();
    let mut theirs = LedgerApp::new(&other)
        .unwrap()
        .with_store(dir.path(), CACHE)
        .unwrap();
    let (diff, _, _) = theirs.execute(&[], 1, 1_000, &[]);
    theirs.commit(1, &diff);
    drop(theirs);
    let err = LedgerApp::new(&genesis())
        .unwrap()
        .with_store(dir.path(), CACHE)
        .unwrap_err();
    assert!(err.to_string().contains("another-chain"), "{err}");
    // Nothing was changed: the other chain's node still opens it.
    let reopened = LedgerApp::new(&other)
        .unwrap()
        .with_store(dir.path(), CACHE)
        .unwrap();
    assert_eq!(reopened.resumed().map(|(h, _)| h), Some(1));
}

/// The engine's order under load, on a stored application: each block executes on the
/// unfinalized one before it while that one commits (and is written to the store), and every
/// transaction of the workload is accepted in its block, as without a store.
#[test]
fn blocks_on_unfinalized_parents_commit_into_a_store_with_nothing_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = medspace_ledger::bench::workload(6_000).unwrap();
    let app = (w.make_app)().unwrap();
    // Written every other block, as a validator with `[state] commit_every = 2` would.
    let mut stored = app
        .clone()
        .with_store(dir.path(), 64 << 10)
        .unwrap()
        .store_every(2);
    let mut plain = app;
    for app in [&mut stored, &mut plain] {
        let mut parent: Option<std::sync::Arc<medspace_ledger::BlockState>> = None;
        for (i, block) in w.txs.chunks(500).enumerate() {
            let height = i as u64 + 1;
            let pending: Vec<&std::sync::Arc<medspace_ledger::BlockState>> =
                parent.iter().collect();
            let (diff, _, outcomes) = app.execute(&pending, height, 1_000 * height, block);
            let refused: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
            assert!(
                refused.is_empty(),
                "block {height}: {} refused, first: {}",
                refused.len(),
                refused[0]
            );
            if let Some(p) = parent.replace(diff) {
                app.commit(height - 1, &p);
            }
        }
        let last = parent.take().unwrap();
        app.commit(w.txs.len().div_ceil(500) as u64, &last);
    }
    assert_eq!(stored.root(), plain.root());
    drop(stored);
    let (store, committed) = NodeStore::open(dir.path(), CACHE).unwrap();
    assert_eq!(store.height(), 12, "the last even height of 12 blocks");
    assert_eq!(committed.unwrap().trie.len(), plain.state().len());
}

/// A validator with a store restores a checkpoint (a state sync, or its own checkpoint at a
/// restart) into that store rather than into memory. The store then holds the checkpoint's
/// state at its height. A checkpoint whose header is not the certified one, or whose records
/// do not hash to its root, leaves the store as it was. Restoring the same checkpoint again
/// (the engine checks a state sync before it restores it) writes nothing more.
#[test]
fn a_checkpoint_is_restored_into_the_store_and_a_refused_one_changes_nothing() {
    let w = medspace_ledger::bench::workload(600).unwrap();
    let mut source = (w.make_app)().unwrap();
    for (i, block) in w.txs.chunks(100).enumerate() {
        let height = i as u64 + 1;
        let (diff, _, _) = source.execute(&[], height, 1_000 * height, block);
        source.commit(height, &diff);
    }
    let height = w.txs.len().div_ceil(100) as u64;
    let time = 1_000 * height;
    let root = source.root();
    let bytes = source.checkpoint(height, time).unwrap();
    // Streamed as it is encoded (what the checkpoint route serves), the same bytes.
    let mut streamed = Vec::new();
    let written = source.write_checkpoint(height, time, &mut streamed);
    assert_eq!(written.unwrap().unwrap(), bytes.len() as u64);
    assert!(streamed == bytes);
    assert!(
        source
            .write_checkpoint(height + 1, time, &mut Vec::new())
            .is_none()
    );
    let dir = tempfile::tempdir().unwrap();
    let joining = (w.make_app)()
        .unwrap()
        .with_store(dir.path(), CACHE)
        .unwrap();
    // The store's files: each one's name and length, and HEAD's bytes.
    let size = || {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        files.sort();
        (files, std::fs::read(dir.path().join("HEAD")).ok())
    };
    let before = size();
    // Refused: another height, time or root than the certified header's; a record altered.
    let mut altered = bytes.clone();
    let at = altered.len() / 2;
    altered[at] ^= 1;
    for (bytes, height, time, root) in [
        (&bytes, height + 1, time, root),
        (&bytes, height, time + 1, root),
        (&bytes, height, time, [7u8; 32]),
        (&altered, height, time, root),
    ] {
        assert!(joining.restore(bytes, height, time, root).is_err());
        assert_eq!(size(), before, "a refused checkpoint wrote to the store");
    }
    let restored = joining.restore(&bytes, height, time, root).unwrap();
    assert_eq!(restored.root(), root);
    assert_eq!(restored.state().len(), source.state().len());
    let written = size();
    assert_ne!(written, before);
    // Again, as the engine restores a state sync it checked: nothing more is written.
    let again = joining.restore(&bytes, height, time, root).unwrap();
    assert_eq!(again.root(), root);
    assert_eq!(size(), written);
    // The store reopens at the checkpoint's state.
    drop((joining, restored, again));
    assert_eq!(store_height(dir.path()), height);
    let reopened = (w.make_app)()
        .unwrap()
        .with_store(dir.path(), CACHE)
        .unwrap();
    assert_eq!(reopened.resumed(), Some((height, root)));
}
