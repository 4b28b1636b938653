//! `medspace bench join`: a vertical study's join of `n` hospital patients with `n` insurer
//! members (half of them shared), three values per member (the person, claims, paid) summed in
//! four cells — both parties in one process, every message through its bytes. CPU time is the
//! process's, as `medspace bench psi` measures it (`psi::bench::process_cpu_time`); per element
//! is the CPU of the whole run over `n`. The same run computes the plain join (a `BTreeMap` from
//! identifier to values, summed per cell) as its baseline, checks the opened sums against it
//! and prints the ratio.

use super::{Holder, JoinError, Offer, Sums, sum_groups};
use crate::psi::bench::process_cpu_time;
use crate::psi::{ContractKey, Identifier, Mode, Receiver, Request, pseudonym_identifier};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Cells of the benchmark's study.
const CELLS: usize = 4;
/// Values per member.
const MEASURES: usize = 3;

/// One phase's wall and CPU time.
#[derive(Debug, Clone)]
pub struct Phase {
    /// What ran.
    pub name: &'static str,
    /// Elapsed.
    pub wall: Duration,
    /// Process CPU (all threads).
    pub cpu: Duration,
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct JoinReport {
    /// Elements on each side.
    pub n: usize,
    /// Threads per party.
    pub threads: usize,
    /// Each protocol phase.
    pub phases: Vec<Phase>,
    /// The plain join's time (the baseline).
    pub plain: Phase,
    /// Bytes hospital → insurer (its set, then its sums).
    pub bytes_to_insurer: usize,
    /// Bytes insurer → hospital (its answer).
    pub bytes_to_hospital: usize,
    /// Whether the opened sums equal the plain join's.
    pub equal: bool,
}

fn timed<T>(
    name: &'static str,
    progress: &mut dyn FnMut(&str),
    f: impl FnOnce() -> Result<T, JoinError>,
) -> Result<(T, Phase), JoinError> {
    progress(name);
    let cpu0 = process_cpu_time();
    let t0 = Instant::now();
    let out = f()?;
    let wall = t0.elapsed();
    let cpu = match (cpu0, process_cpu_time()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => wall,
    };
    Ok((out, Phase { name, wall, cpu }))
}

/// Member `i`'s values: the person, `i % 7` claims, `37·i mod 5000` paid.
fn values_of(i: usize) -> [u64; MEASURES] {
    [1, (i % 7) as u64, ((37 * i) % 5000) as u64]
}

/// Runs the benchmark.
pub fn run(
    n: usize,
    threads: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<JoinReport, JoinError> {
    let mut rng = crate::dp::os_rng().map_err(|_| JoinError::Measures(0))?;
    let key = ContractKey::from_bytes([7u8; 32]);
    let id = |i: usize| pseudonym_identifier(&key, &(i as u64).to_be_bytes());
    // The hospital holds 0..n, the insurer n/2..3n/2: n/2 shared.
    let hospital: Vec<Identifier> = (0..n).map(id).collect();
    let members: Vec<usize> = (n / 2..n / 2 + n).collect();
    let insurer: Vec<Identifier> = members.iter().map(|i| id(*i)).collect();
    let values: Vec<u64> = members.iter().flat_map(|i| values_of(*i)).collect();
    let cells: Vec<Option<u32>> = (0..n).map(|i| Some((i % CELLS) as u32)).collect();
    let mut phases = Vec::new();

    let ((receiver, request), p) = timed("hospital: hash and blind its set", progress, || {
        Ok(Receiver::new(&mut rng, &hospital, Mode::Linked, threads)?)
    })?;
    phases.push(p);
    let request_bytes = request.to_bytes()?;
    let (holder, p) = timed(
        "insurer: hash and blind its members, encrypt their values",
        progress,
        || Holder::new(&mut rng, &insurer, &values, MEASURES, threads),
    )?;
    phases.push(p);
    let (offer_bytes, p) = timed("insurer: answer the hospital's set", progress, || {
        let request = Request::from_bytes(&request_bytes)?;
        holder.respond(&request, &mut rng)?.to_bytes()
    })?;
    phases.push(p);
    let ((_, sums_bytes), p) = timed(
        "hospital: match, sum per cell, re-randomize",
        progress,
        || {
            let offer = Offer::from_bytes(&offer_bytes)?;
            let (counts, sums) = sum_groups(&receiver, &offer, &cells, CELLS, &[], &mut rng)?;
            Ok((counts, sums.to_bytes()?))
        },
    )?;
    phases.push(p);
    let (opened, p) = timed("insurer: open the sums", progress, || {
        holder.open(&Sums::from_bytes(&sums_bytes)?, 0)
    })?;
    phases.push(p);

    let (plain, plain_phase) = timed("baseline: the plain join", progress, || {
        let by_id: BTreeMap<&Identifier, [u64; MEASURES]> = insurer
            .iter()
            .zip(&members)
            .map(|(x, i)| (x, values_of(*i)))
            .collect();
        let mut out = vec![0i64; CELLS * MEASURES];
        for (x, cell) in hospital.iter().zip(&cells) {
            if let (Some(v), Some(c)) = (by_id.get(x), cell) {
                for (k, value) in v.iter().enumerate() {
                    if let Some(o) = out.get_mut(*c as usize * MEASURES + k) {
                        *o += *value as i64;
                    }
                }
            }
        }
        Ok(out)
    })?;
    Ok(JoinReport {
        n,
        threads,
        phases,
        plain: plain_phase,
        bytes_to_insurer: request_bytes.len() + sums_bytes.len(),
        bytes_to_hospital: offer_bytes.len(),
        equal: opened == plain,
    })
}

/// The CLI hook: progress to stderr, the report to stdout.
pub fn print(n: usize, threads: Option<usize>) -> Result<(), JoinError> {
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    let report = run(n, threads, &mut |line| eprintln!("join: {line}"))?;
    println!("{report}");
    Ok(())
}

impl JoinReport {
    /// CPU of the protocol's phases.
    pub fn cpu(&self) -> Duration {
        self.phases.iter().map(|p| p.cpu).sum()
    }

    /// Wall time of the protocol's phases.
    pub fn wall(&self) -> Duration {
        self.phases.iter().map(|p| p.wall).sum()
    }
}

impl fmt::Display for JoinReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.n.max(1) as f64;
        writeln!(
            f,
            "vertical join (linked ECDH-PSI + exponential ElGamal on ristretto255): {} hospital patients x {} insurer members ({} shared), {MEASURES} values each in {CELLS} cells, {} threads per party",
            self.n,
            self.n,
            self.n - self.n / 2,
            self.threads
        )?;
        for p in &self.phases {
            writeln!(
                f,
                "  {:<60} {:>8.2} s wall {:>9.2} s CPU {:>8.1} core-µs/element",
                p.name,
                p.wall.as_secs_f64(),
                p.cpu.as_secs_f64(),
                p.cpu.as_secs_f64() * 1e6 / n
            )?;
        }
        let per = self.cpu().as_secs_f64() * 1e6 / n;
        writeln!(
            f,
            "total: {:.2} s wall, {:.2} s CPU: {per:.1} core-µs per element",
            self.wall().as_secs_f64(),
            self.cpu().as_secs_f64()
        )?;
        writeln!(
            f,
            "bytes hospital -> insurer: {} ({:.1} B/element); insurer -> hospital: {} ({:.1} B/element)",
            self.bytes_to_insurer,
            self.bytes_to_insurer as f64 / n,
            self.bytes_to_hospital,
            self.bytes_to_hospital as f64 / n
        )?;
        let base = self.plain.wall.as_secs_f64().max(1e-9);
        write!(
            f,
            "baseline (the plain join in one process, no privacy): {:.3} s wall; the join takes {:.0}x its time; opened sums {} the plain join's",
            self.plain.wall.as_secs_f64(),
            self.wall().as_secs_f64() / base,
            if self.equal { "equal" } else { "DIFFER FROM" }
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_small_run_opens_the_plain_join() {
        let r = super::run(64, 1, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.equal, "{r}");
        assert_eq!(r.phases.len(), 5);
    }
}
