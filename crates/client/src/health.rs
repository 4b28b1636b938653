//! Public health and drug safety on a running consortium: a surveillance contract's windows
//! run as the ledger's schedule allows, the released series rebuilt from every window's result
//! (each checked against its hash on the ledger), the agency's detectors over it, its alerts
//! stated on the ledger, and the tables and charts people read.

use crate::remote::Remote;
use crate::study::{JobRun, fetch_result, wait_result};
use crate::{ClientError, Result};
use medspace_privacy::aberration::{self, Method, Params, Point};
use medspace_privacy::query::{Aggregate, SurveillanceSpec};
use medspace_state::Created;
use medspace_state::records::AlertRecord;
use medspace_types::*;
use medspace_worker::wire::SurveillanceResult;
use std::time::{Duration, Instant};

/// A contract's surveillance definition (its approved computation).
pub fn definition(ledger: &Remote, contract: ContractId) -> Result<SurveillanceSpec> {
    let rec = ledger
        .state()
        .contract(contract)?
        .ok_or_else(|| ClientError::Missing(format!("contract {contract} is not on the ledger")))?;
    let (spec, _) = medspace_privacy::query::parse_bytes(rec.computation.as_bytes())?;
    match spec.aggregate {
        Aggregate::Surveillance(s) => Ok(s),
        _ => Err(ClientError::Missing(format!(
            "contract {contract} approved no surveillance definition"
        ))),
    }
}

/// The windows of `contract` that may run now: from the next unscheduled one to the last whose
/// end has passed in block time (at most `limit`).
pub fn due_windows(
    ledger: &Remote,
    contract: ContractId,
    limit: u32,
) -> Result<std::ops::Range<u32>> {
    let s = definition(ledger, contract)?;
    let rec = ledger
        .state()
        .contract(contract)?
        .ok_or_else(|| ClientError::Missing(format!("contract {contract} is not on the ledger")))?;
    let now = ledger.time_ms();
    let mut end = rec.windows_run;
    while end < s.windows
        && end - rec.windows_run < limit
        && s.window_end_ms(end).is_ok_and(|t| t <= now)
    {
        end += 1;
    }
    Ok(rec.windows_run..end)
}

/// Windows submitted together by [`run_due_windows`]: each is a secure aggregation round at
/// every hospital, and a site's rounds share its machine (too many at once and a site misses
/// a round's deadline, which ends that window with nothing released).
pub const WINDOWS_AT_ONCE: usize = 8;

/// Runs every due window of `contract` (at most `limit`), [`WINDOWS_AT_ONCE`] at a time: their
/// jobs are submitted together (the ledger gives each the next window in order), then each
/// result is awaited, fetched and checked. `progress(done, total)` is called as results arrive.
pub fn run_due_windows(
    ledger: &mut Remote,
    key: &Keypair,
    contract: ContractId,
    limit: u32,
    timeout: Duration,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<JobRun>> {
    let due = due_windows(ledger, contract, limit)?;
    let s = definition(ledger, contract)?;
    let rec = ledger
        .state()
        .contract(contract)?
        .ok_or_else(|| ClientError::Missing(format!("contract {contract} is not on the ledger")))?;
    let total = due.len();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let started = Instant::now();
        let batch = (total - out.len()).min(WINDOWS_AT_ONCE);
        let items: Vec<(&Keypair, Payload)> = (0..batch)
            .map(|_| {
                (
                    key,
                    Payload::SubmitJob(SubmitJob {
                        contract,
                        computation: rec.computation.clone(),
                        epsilon: s.epsilon_micro(),
                    }),
                )
            })
            .collect();
        ledger.submit_many(items)?;
        let mut jobs = Vec::new();
        for r in ledger.must_block()? {
            if let Some(Created::Job(job)) = r.created {
                jobs.push(job);
            }
        }
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            let record = wait_result(ledger, job, started, timeout)?;
            let result = fetch_result(ledger, key, job, &record)?;
            out.push(JobRun {
                job,
                result,
                record,
                latency: started.elapsed(),
            });
            progress(out.len(), total);
        }
    }
    Ok(out)
}

/// The released series of a surveillance contract: every window with a result, fetched from
/// its aggregator and checked against the ledger (a window whose job failed is `None`).
pub struct Series {
    /// The definition.
    pub spec: SurveillanceSpec,
    /// Per window, its released counts.
    pub windows: Vec<Option<SurveillanceResult>>,
    /// The suppression threshold of the results.
    pub k: u32,
}

impl Series {
    /// Fetches every window of `contract` that has a result (signed by the contract holder's
    /// `key`).
    pub fn fetch(ledger: &Remote, key: &Keypair, contract: ContractId) -> Result<Series> {
        let spec = definition(ledger, contract)?;
        let mut windows: Vec<Option<SurveillanceResult>> = Vec::new();
        let mut k = ledger.state().policy()?.min_cell_k;
        for job in ledger.state().jobs()? {
            let (Some(w), Some(result)) = (job.window, &job.result) else {
                continue;
            };
            if job.contract != contract {
                continue;
            }
            let doc = fetch_result(ledger, key, job.id, result)?;
            let idx = w as usize;
            if windows.len() <= idx {
                windows.resize(idx + 1, None);
            }
            k = doc.k;
            if let Some(slot) = windows.get_mut(idx) {
                *slot = doc.surveillance;
            }
        }
        Ok(Series { spec, windows, k })
    }

    /// The total of syndrome `s` in region `r` per window: `None` where the window has no
    /// result; a total withheld below `k` counts as `(k − 1) / 2`, the middle of what it can be
    /// (so a baseline of withheld days is still a baseline).
    pub fn totals(&self, s: usize, r: usize) -> Vec<Option<f64>> {
        let at = s * self.spec.regions.len() + r;
        self.windows
            .iter()
            .map(|w| {
                let w = w.as_ref()?;
                match w.totals.get(at)? {
                    Some(v) => Some(*v as f64),
                    None => Some(f64::from(self.k.saturating_sub(1)) / 2.0),
                }
            })
            .collect()
    }

    /// The first day of window `w`, `YYYY-MM-DD`.
    pub fn day(&self, w: usize) -> String {
        let first = self
            .spec
            .window_days_range(u32::try_from(w).unwrap_or(u32::MAX))
            .map(|(f, _)| f)
            .unwrap_or(0);
        medspace_privacy::query::date_of_day(first)
    }
}

/// One alert raised by a detector on a series.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// The syndrome's name.
    pub syndrome: String,
    /// The region.
    pub region: String,
    /// The window.
    pub window: u32,
    /// Its first day.
    pub day: String,
    /// The detector (`c1`, `c2`, `c3`, `seasonal`, or `combined` for [`combine`]).
    pub method: &'static str,
    /// What the detector saw.
    pub point: Point,
}

/// Every detector of `methods` over every syndrome × region total of `series`; the alerts (in
/// window order) and, per series, each method's evaluated points.
pub fn detect(
    series: &Series,
    methods: &[Method],
    params: &Params,
) -> Result<(Vec<Alert>, Vec<Track>)> {
    let mut alerts = Vec::new();
    let mut tracks = Vec::new();
    for (si, syndrome) in series.spec.syndromes.iter().enumerate() {
        for (ri, region) in series.spec.regions.iter().enumerate() {
            let totals = series.totals(si, ri);
            let mut track = Track {
                syndrome: syndrome.name.clone(),
                region: region.clone(),
                observed: totals.clone(),
                points: Vec::new(),
            };
            for &m in methods {
                let points = aberration::detect(m, &totals, params)
                    .map_err(|e| ClientError::Missing(format!("detector {m}: {e}")))?;
                for p in points.iter().filter(|p| p.alert) {
                    alerts.push(Alert {
                        syndrome: syndrome.name.clone(),
                        region: region.clone(),
                        window: u32::try_from(p.day).unwrap_or(u32::MAX),
                        day: series.day(p.day),
                        method: m.as_str(),
                        point: p.clone(),
                    });
                }
                track.points.push((m, points));
            }
            tracks.push(track);
        }
    }
    alerts.sort_by(|a, b| {
        (a.window, &a.syndrome, &a.region, a.method).cmp(&(
            b.window,
            &b.syndrome,
            &b.region,
            b.method,
        ))
    });
    Ok((alerts, tracks))
}

/// A second, non-hospital source published as a catalog dataset: daily counts per region
/// (e.g. pharmacies' sales of antipyretics), a CSV `day,region,count` (`YYYY-MM-DD`), checked
/// against the dataset's content hash on the ledger before any of it is used.
#[derive(Clone, Debug)]
pub struct OtherSource {
    /// The dataset.
    pub dataset: DatasetId,
    /// Count per (region, day number).
    pub counts: std::collections::BTreeMap<(String, i64), f64>,
}

impl OtherSource {
    /// Parses `csv` after checking it is the catalog's `dataset` (its content hash).
    pub fn verified(ledger: &Remote, dataset: &DatasetId, csv: &[u8]) -> Result<OtherSource> {
        let rec = ledger.state().dataset(dataset)?.ok_or_else(|| {
            ClientError::Missing(format!("dataset {dataset} is not in the catalog"))
        })?;
        if Hash::of(&[csv]) != rec.description.content_hash {
            return Err(ClientError::Verification(format!(
                "the file is not the catalog's {dataset} (its hash differs from the ledger's)"
            )));
        }
        let text = std::str::from_utf8(csv)
            .map_err(|_| ClientError::Verification(format!("{dataset} is not utf-8")))?;
        let mut counts = std::collections::BTreeMap::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            let bad = || {
                ClientError::Verification(format!("{dataset} line {}: not day,region,count", i + 1))
            };
            let mut parts = line.split(',');
            let (Some(day), Some(region), Some(n), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let day = medspace_privacy::query::index_day(day).map_err(|_| bad())?;
            let n: f64 = n.trim().parse().map_err(|_| bad())?;
            if !n.is_finite() {
                return Err(bad());
            }
            counts.insert((region.to_string(), day), n);
        }
        Ok(OtherSource {
            dataset: dataset.clone(),
            counts,
        })
    }

    /// Its series for `region` over the windows of `series` (a window's days summed; `None`
    /// for a window with no count).
    pub fn series(&self, series: &Series, region: &str) -> Vec<Option<f64>> {
        (0..series.windows.len())
            .map(|w| {
                let (first, end) = series
                    .spec
                    .window_days_range(u32::try_from(w).unwrap_or(u32::MAX))
                    .ok()?;
                let days: Vec<f64> = (first..end)
                    .filter_map(|d| self.counts.get(&(region.to_string(), d)).copied())
                    .collect();
                (!days.is_empty()).then(|| days.iter().sum())
            })
            .collect()
    }
}

/// The hospital series `hospital` and a second source's `other` in one detector: each
/// source's EARS C2 statistic, combined by Stouffer's rule, `z = (z₁ + z₂) / √2`, on the days
/// both have one; the day alerts when `z` exceeds the C2 threshold. A point's `observed` and
/// `expected` are the hospital's; its `threshold` is the hospital count at which the combined
/// statistic would reach the threshold, given the other source's; its `score` is `z`. Two
/// sources that rise together alert earlier than either alone, one noisy source alone less.
pub fn combine(
    hospital: &[Option<f64>],
    other: &[Option<f64>],
    params: &Params,
) -> Result<Vec<Point>> {
    let c2 = |s: &[Option<f64>]| {
        aberration::detect(Method::C2, s, params)
            .map_err(|e| ClientError::Missing(format!("detector c2: {e}")))
    };
    let (a, b) = (c2(hospital)?, c2(other)?);
    let t = params.ears.threshold;
    let by_day: std::collections::BTreeMap<usize, &Point> = b.iter().map(|p| (p.day, p)).collect();
    Ok(a.iter()
        .filter_map(|pa| {
            let pb = by_day.get(&pa.day)?;
            let z = (pa.score + pb.score) / std::f64::consts::SQRT_2;
            let sd = (pa.threshold - pa.expected) / t;
            Some(Point {
                day: pa.day,
                observed: pa.observed,
                expected: pa.expected,
                threshold: pa.expected + sd * (t * std::f64::consts::SQRT_2 - pb.score),
                score: z,
                alert: z > t,
            })
        })
        .collect())
}

/// The alerts of [`combine`] on `syndrome` in `region`, ready for [`record_alerts`].
pub fn combined_alerts(
    series: &Series,
    syndrome: &str,
    region: &str,
    points: &[Point],
) -> Vec<Alert> {
    points
        .iter()
        .filter(|p| p.alert)
        .map(|p| Alert {
            syndrome: syndrome.to_string(),
            region: region.to_string(),
            window: u32::try_from(p.day).unwrap_or(u32::MAX),
            day: series.day(p.day),
            method: "combined",
            point: p.clone(),
        })
        .collect()
}

/// One syndrome × region series with what each detector made of it.
#[derive(Clone, Debug)]
pub struct Track {
    /// The syndrome.
    pub syndrome: String,
    /// The region.
    pub region: String,
    /// The released totals per window.
    pub observed: Vec<Option<f64>>,
    /// Per method, its evaluated points.
    pub points: Vec<(Method, Vec<Point>)>,
}

fn milli(x: f64) -> i64 {
    if x.is_finite() {
        (x * 1000.0).round().clamp(-1e12, 1e12) as i64
    } else {
        0
    }
}

/// States `alerts` on the ledger as the agency (`key`, the contract's holder), skipping those
/// already recorded; returns how many were recorded now.
pub fn record_alerts(
    ledger: &mut Remote,
    key: &Keypair,
    contract: ContractId,
    alerts: &[Alert],
) -> Result<usize> {
    let recorded = ledger.state().alerts_of(contract)?;
    let jobs: Vec<(u32, JobId)> = ledger
        .state()
        .jobs()?
        .into_iter()
        .filter(|j| j.contract == contract && j.result.is_some())
        .filter_map(|j| j.window.map(|w| (w, j.id)))
        .collect();
    let mut items: Vec<(&Keypair, Payload)> = Vec::new();
    for a in alerts {
        let known = recorded.iter().any(|r| {
            r.window == a.window
                && r.syndrome.as_str() == a.syndrome
                && r.region.as_str() == a.region
                && r.method.as_str() == a.method
        });
        let Some((_, job)) = jobs.iter().find(|(w, _)| *w == a.window) else {
            continue;
        };
        if known {
            continue;
        }
        items.push((
            key,
            Payload::RecordAlert(RecordAlert {
                job: *job,
                syndrome: Text::new(&a.syndrome)?,
                region: Text::new(&a.region)?,
                method: Text::new(a.method)?,
                observed: a.point.observed.round() as i64,
                expected_milli: milli(a.point.expected),
                score_milli: milli(a.point.score),
            }),
        ));
    }
    let n = items.len();
    if n > 0 {
        ledger.submit_many(items)?;
        ledger.must_block()?;
    }
    Ok(n)
}

/// A contract's alerts on the ledger, one line each.
pub fn alert_lines(alerts: &[AlertRecord], series: Option<&Series>) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            let day = series
                .map(|s| s.day(a.window as usize))
                .unwrap_or_else(|| format!("window {}", a.window));
            format!(
                "{day}  {:<10} region {}  {:<8} observed {:>5}  expected {:>7.1}  score {:>6.2}  (job {}, by {} at height {})",
                a.syndrome.as_str(),
                a.region.as_str(),
                a.method.as_str(),
                a.observed,
                a.expected_milli as f64 / 1000.0,
                a.score_milli as f64 / 1000.0,
                a.job,
                a.by,
                a.height
            )
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A series chart (SVG): the released totals per window, the detector's expected count and
/// its alert threshold as a band, and its alerts marked.
pub fn series_svg(series: &Series, track: &Track, method: Method, title: &str) -> String {
    let (w, h, left, right, top, bottom) = (760.0_f64, 320.0_f64, 50.0, 20.0, 40.0, 40.0);
    let n = track.observed.len().max(2);
    let points = track
        .points
        .iter()
        .find(|(m, _)| *m == method)
        .map(|(_, p)| p.as_slice())
        .unwrap_or(&[]);
    let max = track
        .observed
        .iter()
        .flatten()
        .copied()
        .chain(points.iter().map(|p| p.threshold).filter(|t| t.is_finite()))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let x = |i: usize| left + (w - left - right) * i as f64 / (n - 1) as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (v.max(0.0) / max).min(1.0));
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\">{}</text>\n",
        escape(title)
    );
    // The band between the expected count and the alert threshold.
    let band: Vec<&Point> = points.iter().filter(|p| p.threshold.is_finite()).collect();
    if band.len() > 1 {
        let upper: Vec<String> = band
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.day), y(p.threshold)))
            .collect();
        let lower: Vec<String> = band
            .iter()
            .rev()
            .map(|p| format!("{:.1},{:.1}", x(p.day), y(p.expected)))
            .collect();
        svg.push_str(&format!(
            "<polygon points=\"{} {}\" fill=\"#dbe7f7\" stroke=\"none\"/>\n",
            upper.join(" "),
            lower.join(" ")
        ));
        let expected: Vec<String> = band
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.day), y(p.expected)))
            .collect();
        svg.push_str(&format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#7a9cc6\" stroke-dasharray=\"4 3\"/>\n",
            expected.join(" ")
        ));
    }
    let observed: Vec<String> = track
        .observed
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
        .collect();
    svg.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#1d4f91\" stroke-width=\"2\"/>\n",
        observed.join(" ")
    ));
    for p in points.iter().filter(|p| p.alert) {
        svg.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"#c0392b\"><title>alert {}: observed {:.0}, expected {:.1}</title></circle>\n",
            x(p.day),
            y(p.observed),
            series.day(p.day),
            p.observed,
            p.expected
        ));
    }
    let axis_y = h - bottom;
    svg.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"#555\"/>\n<text x=\"{left}\" y=\"{}\" fill=\"#555\">{}</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555\">{}</text>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{:.0}</text>\n",
        w - right,
        axis_y + 16.0,
        series.day(0),
        w - right,
        axis_y + 16.0,
        series.day(n - 1),
        left - 6.0,
        top + 4.0,
        max
    ));
    let noised = series.windows.iter().flatten().any(|w| w.dp);
    let how = if noised {
        "noised at every hospital".to_string()
    } else {
        format!(
            "exact; below {} withheld, drawn at {:.1}",
            series.k,
            f64::from(series.k.saturating_sub(1)) / 2.0
        )
    };
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">0</text>\n<text x=\"10\" y=\"{:.1}\" fill=\"#555\">released counts per window ({how}); band: {} expected to alert threshold; red: alerts</text>\n</svg>\n",
        left - 6.0,
        axis_y,
        h - 8.0,
        method
    ));
    svg
}
