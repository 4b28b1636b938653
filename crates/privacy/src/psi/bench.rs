//! `medspace bench psi`: ECDH-PSI of two sets of `n` national IDs, both parties in one
//! process, every message serialized to bytes and parsed back as it would cross the wire.
//!
//! CPU time is the process's `utime + stime` from `/proc/self/stat` (clock ticks of 1/100 s),
//! so it counts both parties' work on every thread; per element means per element of ONE side
//! (the CPU of the whole run divided by `n`), the way SecretFlow's published figure is
//! normalised (10M × 10M in 42 s on 32 cores = 42 · 32 / 10^7 s ≈ 134 core-µs per element).
//! The same run computes the plain intersection of the keyed identifiers with a `BTreeSet` as
//! its baseline and checks the PSI answer against it.
//!
//! The curve arithmetic is curve25519-dalek's. The variable-base scalar multiplication (four
//! per pair of elements) dominates. The workspace's `.cargo/config.toml` builds dalek with its
//! `avx512` backend on x86_64 Linux, which picks the AVX-512 IFMA field arithmetic at run time
//! when the CPU has it (about 40% less time per multiplication) and falls back to AVX2 or the
//! serial code otherwise; the report says which the CPU allows.

use super::{
    ContractKey, Identifier, Mode, PsiError, Receiver, Request, Response, Sender, identifier_key,
    parallel,
};
use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

/// The target: core-µs per element.
pub const TARGET_CORE_US: f64 = 80.0;
/// SecretFlow's published ECDH-PSI figure: 10M × 10M in 42 s on 32 cores.
pub const SECRETFLOW_CORE_US: f64 = 42.0 * 32.0 / 10_000_000.0 * 1e6;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Identifiers on each side.
    pub n: usize,
    /// Fraction of the receiver's identifiers the sender also holds.
    pub overlap: f64,
    /// Worker threads per party.
    pub threads: usize,
    /// The PSI mode.
    pub mode: Mode,
}

/// Wall and CPU time of one phase.
#[derive(Debug, Clone)]
pub struct Phase {
    /// What ran.
    pub name: &'static str,
    /// Elapsed time.
    pub wall: Duration,
    /// Process CPU time (all threads).
    pub cpu: Duration,
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The options run.
    pub options: BenchOptions,
    /// Whether CPU time is measured (`/proc/self/stat`) or estimated as wall × threads.
    pub cpu_measured: bool,
    /// Keying the raw IDs (both sides), then the three protocol phases.
    pub phases: Vec<Phase>,
    /// Bytes receiver → sender.
    pub bytes_to_sender: usize,
    /// Bytes sender → receiver.
    pub bytes_to_receiver: usize,
    /// The PSI answer's size.
    pub intersection: usize,
    /// The plain `BTreeSet` intersection's size.
    pub plain_intersection: usize,
    /// The plain intersection's own time (the in-run baseline).
    pub plain: Phase,
}

impl BenchReport {
    /// Total wall time of the keying and protocol phases.
    pub fn wall(&self) -> Duration {
        self.phases.iter().map(|p| p.wall).sum()
    }

    /// Total CPU time of the keying and protocol phases.
    pub fn cpu(&self) -> Duration {
        self.phases.iter().map(|p| p.cpu).sum()
    }

    /// CPU µs per element of one side.
    pub fn core_us_per_element(&self) -> f64 {
        self.cpu().as_secs_f64() * 1e6 / self.options.n.max(1) as f64
    }
}

/// Process CPU time (user + system, all threads) from `/proc/self/stat`, if readable.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on Linux for every architecture medspace runs on.
    Some(Duration::from_millis(
        utime.saturating_add(stime).saturating_mul(10),
    ))
}

struct Clock {
    threads: usize,
    measured: bool,
}

impl Clock {
    fn time<T>(
        &mut self,
        name: &'static str,
        progress: &mut dyn FnMut(&str),
        f: impl FnOnce() -> Result<T, PsiError>,
    ) -> Result<(T, Phase), PsiError> {
        progress(name);
        let cpu0 = process_cpu_time();
        let t0 = Instant::now();
        let out = f()?;
        let wall = t0.elapsed();
        let cpu = match (cpu0, process_cpu_time()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => {
                self.measured = false;
                wall.saturating_mul(u32::try_from(self.threads).unwrap_or(u32::MAX))
            }
        };
        progress(&format!(
            "  done in {:.2} s wall, {:.2} s CPU",
            wall.as_secs_f64(),
            cpu.as_secs_f64()
        ));
        Ok((out, Phase { name, wall, cpu }))
    }
}

fn national_id(i: usize) -> String {
    // A formatted 13-digit number, normalized away by `identifier_key`.
    let d = format!("{:013}", 7_560_000_000_000usize.saturating_add(i));
    let (a, rest) = d.split_at_checked(3).unwrap_or((&d, ""));
    let (b, rest) = rest.split_at_checked(4).unwrap_or((rest, ""));
    let (c, e) = rest.split_at_checked(4).unwrap_or((rest, ""));
    format!("{a}.{b}.{c}.{e}")
}

fn key_all(key: &ContractKey, raw: &[String], threads: usize) -> Result<Vec<Identifier>, PsiError> {
    let mut out = vec![Identifier([0u8; 32]); raw.len()];
    parallel(raw, &mut out, threads, |raw, out| {
        for (o, r) in out.iter_mut().zip(raw) {
            *o = identifier_key(key, r);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Runs the benchmark; `progress` gets a line per phase.
pub fn run(options: BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<BenchReport, PsiError> {
    let n = options.n;
    if n == 0 || n > super::MAX_ELEMENTS {
        return Err(PsiError::InvalidArgument(format!(
            "n = {n} must be in 1..={}",
            super::MAX_ELEMENTS
        )));
    }
    if !(0.0..=1.0).contains(&options.overlap) {
        return Err(PsiError::InvalidArgument(format!(
            "overlap {} must be in [0, 1]",
            options.overlap
        )));
    }
    let threads = options.threads.max(1);
    let mut rng = crate::dp::os_rng().map_err(|e| PsiError::OsRandom {
        reason: e.to_string(),
    })?;
    // INVARIANT: overlap ∈ [0, 1] and n ≤ 2^24, so the product is an exact small integer.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let common = ((n as f64) * options.overlap).round() as usize;
    progress(&format!(
        "generating 2 × {n} national IDs ({common} in common)"
    ));
    // The receiver holds IDs 0..n, the sender n - common .. 2n - common.
    let raw_receiver: Vec<String> = (0..n).map(national_id).collect();
    let raw_sender: Vec<String> = (n - common..2 * n - common).map(national_id).collect();
    let key = ContractKey::derive(b"bench consortium secret", b"bench contract");

    let mut clock = Clock {
        threads,
        measured: true,
    };
    let ((mine, theirs), keying) = clock.time(
        "keying: HMAC-SHA-256 of the normalized IDs, both sides",
        progress,
        || {
            Ok((
                key_all(&key, &raw_receiver, threads)?,
                key_all(&key, &raw_sender, threads)?,
            ))
        },
    )?;
    drop((raw_receiver, raw_sender));

    let (plain_indices, plain) = clock.time(
        "baseline: plain BTreeSet intersection of the keyed IDs",
        progress,
        || {
            let set: BTreeSet<&Identifier> = theirs.iter().collect();
            Ok(mine
                .iter()
                .enumerate()
                .filter(|(_, id)| set.contains(id))
                .map(|(i, _)| i)
                .collect::<Vec<usize>>())
        },
    )?;

    let mode = options.mode;
    let ((receiver, request_bytes), p1) = clock.time(
        "receiver: hash to ristretto255, blind, serialize the request",
        progress,
        || {
            let (receiver, request) = Receiver::new(&mut rng, &mine, mode, threads)?;
            Ok((receiver, request.to_bytes()?))
        },
    )?;
    let (response_bytes, p2) = clock.time(
        "sender: parse the request, blind its own set, reblind, serialize the response",
        progress,
        || {
            let request = Request::from_bytes(&request_bytes)?;
            let sender = Sender::new(&mut rng, &theirs, mode, threads)?;
            sender.respond(&request, &mut rng)?.to_bytes()
        },
    )?;
    let (output, p3) = clock.time(
        "receiver: parse the response, reblind the sender's set, compare",
        progress,
        || receiver.finish(&Response::from_bytes(&response_bytes)?),
    )?;

    let intersection = output.count();
    let agrees = match &output {
        super::PsiOutput::Linked(indices) => *indices == plain_indices,
        super::PsiOutput::Cardinality(count) => *count == plain_indices.len(),
    };
    if !agrees {
        return Err(PsiError::Mismatch {
            psi: intersection,
            plain: plain_indices.len(),
        });
    }
    Ok(BenchReport {
        options: BenchOptions { threads, ..options },
        cpu_measured: clock.measured,
        phases: vec![keying, p1, p2, p3],
        bytes_to_sender: request_bytes.len(),
        bytes_to_receiver: response_bytes.len(),
        intersection,
        plain_intersection: plain_indices.len(),
        plain,
    })
}

/// The CLI hook: runs with the defaults for `None`, progress to stderr, the report to stdout.
pub fn print(n: usize, overlap: f64, threads: Option<usize>) -> Result<(), PsiError> {
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    });
    let options = BenchOptions {
        n,
        overlap,
        threads,
        mode: Mode::Linked,
    };
    let report = run(options, &mut |line| eprintln!("psi: {line}"))?;
    println!("{report}");
    Ok(())
}

/// Which of dalek's field arithmetics this CPU allows (the build selects among them at run time).
fn simd_note() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "AVX-512 IFMA (used when the build has dalek's avx512 backend, as .cargo/config.toml sets)";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "AVX2 (no AVX-512 IFMA)";
        }
    }
    "serial field arithmetic (no AVX2)"
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let n = o.n.max(1) as f64;
        writeln!(
            f,
            "ECDH-PSI on ristretto255, {:?} mode: {} × {} identifiers, overlap {:.2}, {} threads per party",
            o.mode, o.n, o.n, o.overlap, o.threads
        )?;
        for p in &self.phases {
            writeln!(
                f,
                "  {:<80} {:>8.2} s wall {:>9.2} s CPU {:>7.2} core-µs/element",
                p.name,
                p.wall.as_secs_f64(),
                p.cpu.as_secs_f64(),
                p.cpu.as_secs_f64() * 1e6 / n
            )?;
        }
        let cpu_note = if self.cpu_measured {
            "process CPU, utime + stime from /proc/self/stat"
        } else {
            "ESTIMATED as wall × threads: /proc/self/stat unreadable"
        };
        writeln!(
            f,
            "total: {:.2} s wall, {:.2} s CPU ({cpu_note})",
            self.wall().as_secs_f64(),
            self.cpu().as_secs_f64()
        )?;
        let per = self.core_us_per_element();
        writeln!(f, "core-µs per element (both parties' CPU / n): {per:.1}")?;
        writeln!(
            f,
            "bytes receiver → sender: {} ({:.1} B/element); sender → receiver: {} ({:.1} B/element)",
            self.bytes_to_sender,
            self.bytes_to_sender as f64 / n,
            self.bytes_to_receiver,
            self.bytes_to_receiver as f64 / n
        )?;
        writeln!(
            f,
            "intersection: {} (plain BTreeSet intersection in the same run: {}, {}); baseline took {:.3} s wall, {:.3} s CPU",
            self.intersection,
            self.plain_intersection,
            if self.intersection == self.plain_intersection {
                "equal"
            } else {
                "DIFFERENT"
            },
            self.plain.wall.as_secs_f64(),
            self.plain.cpu.as_secs_f64()
        )?;
        writeln!(
            f,
            "curve arithmetic: curve25519-dalek, constant-time scalar multiplication; this CPU: {}",
            simd_note()
        )?;
        write!(
            f,
            "target ≤ {TARGET_CORE_US:.0} core-µs/element: {} ({:.2}× the target); SecretFlow ECDH-PSI (10M × 10M in 42 s on 32 cores ≈ {SECRETFLOW_CORE_US:.1} core-µs/element): {:.2}× its cost",
            if per <= TARGET_CORE_US {
                "met"
            } else {
                "NOT met"
            },
            per / TARGET_CORE_US,
            per / SECRETFLOW_CORE_US
        )
    }
}
