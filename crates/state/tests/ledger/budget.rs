//! Property: the epsilon budget of a compute contract is never exceeded, including with
//! concurrent jobs — several jobs submitted in one block, jobs running across blocks, results
//! posted in the same block as new jobs, on two contracts at once.
//!
//! Random blocks of `SubmitJob` (random epsilons, including exactly what is left and just over
//! it), `CloseRound` and `PostResult` (by the aggregator or another owner, claiming the job's
//! reservation, nothing, or something else) are applied with `apply_block`. An independent model
//! of the contracts (budget, jobs running with their reservations and whether their round is
//! closed, jobs done and what they spent) predicts each outcome; the state machine must agree
//! with it, a refused job must be `BudgetExceeded` naming the contract, its budget and what it
//! had spent and reserved, and after every block each contract's spent + reserved, the sum over
//! its accepted jobs of what each holds (reserved while running, spent once done), stays within
//! its budget.
//!
//! What a job holds is what counts against the budget: a job whose round never closed released
//! nothing and gives its reservation back, so the epsilons *asked* by all jobs over time may add
//! up to more than the budget, never what they hold or spent.

use super::fixture::*;
use medspace_state::records::JobStatus;
use medspace_state::{Created, State, TxError};
use medspace_types::*;
use proptest::collection::vec;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// How much a job asks for.
#[derive(Clone, Copy, Debug)]
enum Ask {
    /// This many millionths of the contract's budget.
    Share(u32),
    /// Exactly what is left of the budget (as the ledger says before the transaction).
    Rest,
    /// What is left plus this much.
    Over(u64),
    /// Far more than any budget.
    Huge(u64),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// The researcher submits a job under contract `contract % 2`.
    Submit { contract: u8, ask: Ask },
    /// The aggregator closes the round of a running job (picked among those running).
    Close { pick: prop::sample::Index },
    /// An owner's node posts the result of a running job, claiming `percent` % of its
    /// reservation as spent (100: exactly it; 0: nothing).
    Post {
        pick: prop::sample::Index,
        percent: u8,
        owner: u8,
    },
}

fn ask_s() -> impl Strategy<Value = Ask> {
    prop_oneof![
        6 => (0u32..=350_000).prop_map(Ask::Share),
        2 => Just(Ask::Rest),
        2 => (1u64..=3).prop_map(Ask::Over),
        1 => (0u64..=3).prop_map(|d| Ask::Huge(u64::MAX - d)),
    ]
}

fn op_s() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u8>(), ask_s()).prop_map(|(contract, ask)| Op::Submit { contract, ask }),
        1 => any::<prop::sample::Index>().prop_map(|pick| Op::Close { pick }),
        2 => (any::<prop::sample::Index>(), prop_oneof![Just(0u8), Just(100u8), 0u8..=120], any::<u8>())
            .prop_map(|(pick, percent, owner)| Op::Post { pick, percent, owner }),
    ]
}

const OWNERS: [&str; 2] = ["hospital-a", "hospital-b"];
/// A job's per-site epsilon is charged once per site (a patient at both is counted twice).
const SITES: u64 = OWNERS.len() as u64;

/// The fixture policy's per-job cap: a job asking for nothing or for more is refused whatever
/// its contract's budget.
const JOB_CAP: u64 = FIXTURE_JOB_CAP;

/// The test's own account of a contract.
#[derive(Clone, Debug, Default)]
struct Model {
    budget: u64,
    /// Jobs running: per-site epsilon (the reservation is `SITES` times it), and whether
    /// their round is closed.
    running: BTreeMap<JobId, (u64, bool)>,
    /// Jobs done: epsilon charged.
    done: BTreeMap<JobId, u64>,
}

impl Model {
    fn held(&self) -> u64 {
        SITES * self.running.values().map(|(r, _)| r).sum::<u64>() + self.done.values().sum::<u64>()
    }
}

/// An active compute contract over hospitals a and b with the given budget.
fn contract(net: &mut Net, budget: u64) -> ContractId {
    let p = request(
        Purpose::Research,
        Mode::Compute,
        &OWNERS,
        Level::L2,
        net.ctx.time_ms + 30 * DAY_MS,
        budget,
        1_000,
    );
    let c = net.submit(RESEARCHER, p);
    net.approve_all(c);
    c
}

/// What a transaction in a block is, for judging its outcome.
#[derive(Clone, Copy, Debug)]
enum Did {
    Submit {
        c: usize,
        epsilon: u64,
    },
    Close {
        c: usize,
        job: JobId,
    },
    Post {
        c: usize,
        job: JobId,
        spent: u64,
        aggregator: bool,
    },
}

/// Checks an outcome against the model (and updates it): accepted exactly when the model
/// allows it; a refused job is a `BudgetExceeded` that names the contract, its budget and its
/// spent and reserved epsilon before the transaction, a refused result names what is wrong.
fn judge(
    models: &mut [Model],
    ids: &[ContractId],
    before: &State,
    did: Did,
    out: &Result<medspace_state::Receipt, TxError>,
) -> Result<(), TestCaseError> {
    let c = match did {
        Did::Submit { c, .. } | Did::Close { c, .. } | Did::Post { c, .. } => c,
    };
    let m = &models[c];
    let allowed = match did {
        Did::Submit { epsilon, .. } => {
            epsilon > 0
                && epsilon
                    .checked_mul(SITES)
                    .is_some_and(|e| e <= JOB_CAP && e <= m.budget - m.held())
        }
        Did::Close { job, .. } => m.running.get(&job).is_some_and(|(_, closed)| !closed),
        Did::Post {
            job,
            spent,
            aggregator,
            ..
        } => {
            aggregator
                && m.running
                    .get(&job)
                    .is_some_and(|(r, closed)| spent == if *closed { *r } else { 0 })
        }
    };
    match out {
        Ok(r) => {
            prop_assert!(allowed, "{did:?} accepted against the model {m:?}");
            match did {
                Did::Submit { epsilon, .. } => {
                    let Some(Created::Job(job)) = r.created else {
                        return Err(TestCaseError::fail(format!("no job created: {r:?}")));
                    };
                    models[c].running.insert(job, (epsilon, false));
                }
                Did::Close { job, .. } => {
                    if let Some(entry) = models[c].running.get_mut(&job) {
                        entry.1 = true;
                    }
                }
                Did::Post { job, spent, .. } => {
                    models[c].running.remove(&job);
                    models[c].done.insert(job, spent * SITES);
                }
            }
        }
        Err(e) => {
            prop_assert!(
                !allowed,
                "{did:?} refused ({e}) though the model {m:?} allows it"
            );
            match did {
                Did::Submit { epsilon, .. }
                    if epsilon == 0 || epsilon.checked_mul(SITES).is_none_or(|e| e > JOB_CAP) =>
                {
                    prop_assert!(
                        matches!(
                            e,
                            TxError::Invalid {
                                field: "epsilon",
                                ..
                            }
                        ),
                        "{e:?}"
                    );
                }
                Did::Submit { epsilon, .. } => {
                    let rec = before.contract(ids[c]).unwrap().unwrap();
                    let expected = TxError::BudgetExceeded {
                        contract: ids[c].to_string(),
                        budget: m.budget,
                        spent: rec.epsilon_spent,
                        reserved: rec.epsilon_reserved,
                        requested: epsilon * SITES,
                    };
                    prop_assert_eq!(e, &expected);
                    let msg = e.to_string();
                    prop_assert!(msg.starts_with("epsilon budget exceeded"), "{msg}");
                    let named = format!("contract={} budget={}", ids[c], m.budget);
                    prop_assert!(msg.contains(&named), "{msg}");
                }
                Did::Close { .. } => {
                    prop_assert!(matches!(e, TxError::Forbidden { .. }), "{e:?}");
                }
                Did::Post { aggregator, .. } => {
                    if aggregator {
                        prop_assert!(
                            matches!(
                                e,
                                TxError::Invalid {
                                    field: "epsilon_spent",
                                    ..
                                }
                            ),
                            "{e:?}"
                        );
                    } else {
                        prop_assert!(matches!(e, TxError::Forbidden { .. }), "{e:?}");
                    }
                }
            }
        }
    }
    Ok(())
}

/// After a block: the ledger's account of each contract equals the model's and stays within
/// the budget, and so does the sum over the ledger's own job records.
fn check_contracts(net: &Net, ids: &[ContractId], models: &[Model]) -> Result<(), TestCaseError> {
    for (id, m) in ids.iter().zip(models) {
        let rec = net.state.contract(*id).unwrap().unwrap();
        prop_assert_eq!(rec.epsilon_budget, m.budget);
        prop_assert!(
            rec.epsilon_spent + rec.epsilon_reserved <= rec.epsilon_budget,
            "contract {}: spent {} + reserved {} > budget {}",
            id,
            rec.epsilon_spent,
            rec.epsilon_reserved,
            rec.epsilon_budget
        );
        prop_assert_eq!(
            rec.epsilon_reserved,
            SITES * m.running.values().map(|(r, _)| r).sum::<u64>()
        );
        prop_assert_eq!(rec.epsilon_spent, m.done.values().sum::<u64>());
        let mut held: u64 = 0;
        for job in m.running.keys().chain(m.done.keys()) {
            let j = net.state.job(*job).unwrap().unwrap();
            prop_assert_eq!(j.contract, *id);
            held += match (j.status, &j.result) {
                (JobStatus::Submitted, None) => SITES * j.epsilon_reserved,
                (JobStatus::Done, Some(r)) => {
                    prop_assert!(r.epsilon_spent <= SITES * j.epsilon_reserved);
                    r.epsilon_spent
                }
                other => return Err(TestCaseError::fail(format!("job {job}: {other:?}"))),
            };
        }
        prop_assert!(
            held <= m.budget,
            "accepted jobs hold {held} > budget {}",
            m.budget
        );
        prop_assert_eq!(net.state.budget_left(*id).unwrap(), Some(m.budget - held));
    }
    // Both contracts name both hospitals' datasets: each dataset's lifetime account holds what
    // the jobs of both hold, reserved while running and spent once done.
    let reserved: u64 = SITES
        * models
            .iter()
            .flat_map(|m| m.running.values().map(|(r, _)| *r))
            .sum::<u64>();
    let spent: u64 = models.iter().flat_map(|m| m.done.values().copied()).sum();
    for h in OWNERS {
        let acc = net.state.dataset_epsilon(&dataset_of(h)).unwrap();
        prop_assert_eq!(acc.reserved, reserved, "{} reserved", h);
        prop_assert_eq!(acc.spent, spent, "{} spent", h);
    }
    Ok(())
}

/// What a history did.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    jobs_accepted: usize,
    jobs_refused: usize,
    results_accepted: usize,
    results_refused: usize,
    rounds_closed: usize,
    /// Most jobs accepted in one block.
    max_jobs_in_a_block: usize,
    /// Most jobs running at once after a block.
    max_running: usize,
}

/// Every running job under the model: (contract, job, reservation, round closed).
fn running_jobs(models: &[Model]) -> Vec<(usize, JobId, u64, bool)> {
    models
        .iter()
        .enumerate()
        .flat_map(|(c, m)| m.running.iter().map(move |(j, (r, k))| (c, *j, *r, *k)))
        .collect()
}

fn run(budgets: [u64; 2], blocks: &[Vec<Op>]) -> Result<Stats, TestCaseError> {
    let mut stats = Stats::default();
    let mut net = Net::new();
    let ids = [
        contract(&mut net, budgets[0]),
        contract(&mut net, budgets[1]),
    ];
    let mut models: Vec<Model> = budgets
        .iter()
        .map(|b| Model {
            budget: *b,
            ..Model::default()
        })
        .collect();
    let researcher = net.user(RESEARCHER);
    for block in blocks {
        net.next_block();
        let ctx = net.ctx;
        // Build the block as a proposer would: each transaction with its signer's next nonce
        // after the ones before it in the block (a refused one leaves its nonce to the next).
        let mut scratch = net.state.clone();
        let mut txs = Vec::new();
        let mut expected = Vec::new();
        let mut jobs_in_block = 0;
        for op in block {
            let (key, payload, did) = match *op {
                Op::Submit { contract, ask } => {
                    let c = usize::from(contract % 2);
                    let budget = models[c].budget;
                    let left = scratch.budget_left(ids[c]).unwrap().unwrap();
                    let epsilon = match ask {
                        Ask::Share(ppm) => budget * u64::from(ppm) / 1_000_000,
                        Ask::Rest => left / SITES,
                        Ask::Over(d) => left / SITES + d,
                        Ask::Huge(e) => e,
                    };
                    (
                        researcher.clone(),
                        submit_job(ids[c], epsilon),
                        Did::Submit { c, epsilon },
                    )
                }
                Op::Close { pick } => {
                    let running = running_jobs(&models);
                    if running.is_empty() {
                        continue;
                    }
                    let (c, job, _, _) = running[pick.index(running.len())];
                    (
                        net.node(OWNERS[0]),
                        close_round(job, &OWNERS, &OWNERS),
                        Did::Close { c, job },
                    )
                }
                Op::Post {
                    pick,
                    percent,
                    owner,
                } => {
                    let running = running_jobs(&models);
                    if running.is_empty() {
                        continue;
                    }
                    let (c, job, reserved, closed) = running[pick.index(running.len())];
                    let mut spent = reserved * u64::from(percent) / 100;
                    if percent > 100 {
                        spent = spent.max(reserved + 1);
                    }
                    let owner = OWNERS[usize::from(owner) % OWNERS.len()];
                    // What a closed round's survivors contributed; nothing before.
                    let contributions: Vec<(&str, u64)> = if closed {
                        OWNERS.iter().map(|o| (*o, u64::from(percent))).collect()
                    } else {
                        Vec::new()
                    };
                    (
                        net.node(owner),
                        post_result(job, spent, &contributions),
                        Did::Post {
                            c,
                            job,
                            spent,
                            aggregator: owner == OWNERS[0],
                        },
                    )
                }
            };
            let nonce = scratch.next_nonce(&key.public()).unwrap();
            let tx = SignedTx::new(&net.chain, &key, nonce, payload);
            let before = scratch.clone();
            let out = scratch.apply(&tx, &ctx);
            judge(&mut models, &ids, &before, did, &out)?;
            if out.is_err() {
                prop_assert_eq!(scratch.root(), before.root(), "a refusal changed the root");
            }
            match (did, out.is_ok()) {
                (Did::Submit { .. }, true) => {
                    stats.jobs_accepted += 1;
                    jobs_in_block += 1;
                }
                (Did::Submit { .. }, false) => stats.jobs_refused += 1,
                (Did::Post { .. }, true) => stats.results_accepted += 1,
                (Did::Post { .. }, false) => stats.results_refused += 1,
                (Did::Close { .. }, true) => stats.rounds_closed += 1,
                (Did::Close { .. }, false) => {}
            }
            txs.push(tx);
            expected.push(out);
        }
        // The block as the chain applies it: one signature batch, then each in order.
        let outs = net.state.apply_block(&ctx, &txs);
        prop_assert_eq!(&outs, &expected);
        prop_assert_eq!(net.state.root(), scratch.root());
        check_contracts(&net, &ids, &models)?;
        stats.max_jobs_in_a_block = stats.max_jobs_in_a_block.max(jobs_in_block);
        let running = models.iter().map(|m| m.running.len()).sum::<usize>();
        stats.max_running = stats.max_running.max(running);
    }
    Ok(stats)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn epsilon_budget_is_never_exceeded(
        budgets in [1u64..=1_000_000, 1u64..=1_000_000],
        blocks in vec(vec(op_s(), 1..8), 1..12),
    ) {
        run(budgets, &blocks)?;
    }
}

/// The property's histories are not trivial: a long fixed-seed history accepts and refuses
/// jobs and results, accepts several jobs in one block, and has several jobs running at once.
#[test]
fn budget_histories_exercise_acceptance_and_refusal() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let blocks = vec(vec(op_s(), 4..8), 40)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    let stats = run([1_000_000, 300_000], &blocks).unwrap();
    assert!(stats.jobs_accepted >= 10, "{stats:?}");
    assert!(stats.jobs_refused >= 10, "{stats:?}");
    assert!(stats.results_accepted >= 5, "{stats:?}");
    assert!(stats.results_refused >= 1, "{stats:?}");
    assert!(stats.max_jobs_in_a_block >= 2, "{stats:?}");
    assert!(stats.max_running >= 3, "{stats:?}");
    assert!(stats.rounds_closed >= 3, "{stats:?}");
}
