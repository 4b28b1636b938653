//! A researcher's federated study on a running consortium, shared by `medspace query`, the demo,
//! the end-to-end benchmark and the console: the data-use contract for a query specification, jobs under
//! it, and the released result — fetched from the aggregating hospital's node with a signed
//! request and checked against the hash its node posted on the ledger.

use crate::remote::Remote;
use crate::{ClientError, Result};
use medspace_consortium::Consortium;
use medspace_state::Created;
use medspace_state::records::JobResult;
use medspace_types::*;
use medspace_worker::wire::ResultDoc;
use std::time::{Duration, Instant};

/// The fields a query specification reads in each data holder's CDM dataset (and
/// `person_id`, which every query reads for the consent allow-list), given each holder's kind:
/// a vertical study reads the cohort's fields at the hospital and the claims at the insurer.
pub fn contract_fields(spec_json: &str, holders: &[(&str, MemberKind)]) -> Result<Vec<FieldRef>> {
    let (spec, validated) = medspace_privacy::query::parse(spec_json)?;
    let mut fields = Vec::new();
    for (h, kind) in holders {
        let reads = match &spec.aggregate {
            medspace_privacy::query::Aggregate::Claims(_) if *kind == MemberKind::Insurer => {
                medspace_privacy::query::ClaimsSpec::claims_reads()
            }
            medspace_privacy::query::Aggregate::Claims(c) => {
                let cohort = medspace_privacy::query::QuerySpec {
                    aggregate: medspace_privacy::query::Aggregate::Count,
                    ..spec.clone()
                };
                let mut r = medspace_privacy::query::validate(&cohort)?.reads;
                r.extend(c.clinical_reads());
                r
            }
            _ => validated.reads.clone(),
        };
        let mut reads = reads;
        reads.push(("person", "person_id"));
        reads.sort_unstable();
        reads.dedup();
        for (t, f) in reads {
            fields.push(FieldRef {
                dataset: DatasetId::new(&format!("{h}.cdm"))?,
                table: Text::new(t)?,
                field: Text::new(f)?,
            });
        }
    }
    Ok(fields)
}

/// What a researcher asks for.
pub struct Proposal<'a> {
    /// The query specification (JSON), also the contract's computation.
    pub spec_json: &'a str,
    /// The hospitals whose data it covers.
    pub hospitals: &'a [&'a str],
    /// The purpose.
    pub purpose: Purpose,
    /// The study (dynamic consent is per study).
    pub study: Option<StudyId>,
    /// Epsilon budget, micro-epsilon.
    pub budget_micro: u64,
    /// Days until it expires.
    pub days: u64,
    /// Fee in credits, held in escrow.
    pub fee: u64,
}

/// Submits the data-use contract; returns its id once finalized.
pub fn propose(ledger: &mut Remote, key: &Keypair, p: &Proposal<'_>) -> Result<ContractId> {
    let mut holders = Vec::with_capacity(p.hospitals.len());
    for h in p.hospitals {
        let kind = ledger
            .state()
            .member(&MemberId::new(h)?)?
            .map(|m| m.member.kind)
            .unwrap_or(MemberKind::Hospital);
        holders.push((*h, kind));
    }
    let r = ledger.must(
        key,
        Payload::SubmitRequest(SubmitRequest {
            purpose: p.purpose,
            mode: Mode::Compute,
            study: p.study.clone(),
            fields: List::new(contract_fields(p.spec_json, &holders)?)?,
            computation: Blob::new(p.spec_json.as_bytes().to_vec())?,
            expiry_ms: ledger.time_ms() + p.days * 24 * 3600 * 1000,
            epsilon_budget: p.budget_micro,
            fee: p.fee,
        }),
    )?;
    match r.created {
        Some(Created::Contract(c)) => Ok(c),
        _ => Err(ClientError::Missing(
            "the request created no contract".into(),
        )),
    }
}

/// Approves every approval `contract` still waits for with the consortium's reviewers of the
/// right role and institution (the local devnet holds all their keys); returns who approved.
pub fn approve_all(
    ledger: &mut Remote,
    consortium: &Consortium,
    contract: ContractId,
) -> Result<Vec<UserId>> {
    let rec = ledger
        .state()
        .contract(contract)?
        .ok_or_else(|| ClientError::Missing(format!("contract {contract} is not on the ledger")))?;
    let mut by = Vec::new();
    for slot in rec.approvals.iter().filter(|a| a.by.is_none()) {
        let (user, key) = consortium
            .reviewer(slot.role, slot.member.as_ref(), &by)
            .map(|(u, k)| (u.clone(), k.clone()))
            .ok_or_else(|| {
                ClientError::Missing(format!(
                    "no reviewer for {} in the consortium",
                    slot.role.as_str()
                ))
            })?;
        ledger.must(&key, Payload::Approve(Approve { contract }))?;
        by.push(user);
    }
    Ok(by)
}

/// A finished job: its result as released, as recorded on the ledger, and how long it took
/// from submission to the verified block with the result.
pub struct JobRun {
    /// The job.
    pub job: JobId,
    /// The released result (its hash checked against the ledger).
    pub result: ResultDoc,
    /// The ledger's record of it.
    pub record: JobResult,
    /// Submission to the finalized result, as this client saw it.
    pub latency: Duration,
}

/// Submits a job under `contract` and waits for the hospitals' workers to post its result.
pub fn run_job(
    ledger: &mut Remote,
    key: &Keypair,
    contract: ContractId,
    computation: &[u8],
    epsilon_micro: u64,
    timeout: Duration,
) -> Result<JobRun> {
    let started = Instant::now();
    let r = ledger.must(
        key,
        Payload::SubmitJob(SubmitJob {
            contract,
            computation: Blob::new(computation.to_vec())?,
            epsilon: epsilon_micro,
        }),
    )?;
    let Some(Created::Job(job)) = r.created else {
        return Err(ClientError::Missing(
            "the job submission created no job".into(),
        ));
    };
    let record = wait_result(ledger, job, started, timeout)?;
    let latency = started.elapsed();
    let result = fetch_result(ledger, key, job, &record)?;
    Ok(JobRun {
        job,
        result,
        record,
        latency,
    })
}

/// Follows the chain until `job` has a result on the ledger.
pub fn wait_result(
    ledger: &mut Remote,
    job: JobId,
    started: Instant,
    timeout: Duration,
) -> Result<JobResult> {
    loop {
        let rec = ledger
            .state()
            .job(job)?
            .ok_or_else(|| ClientError::Missing(format!("job {job} is not on the ledger")))?;
        if let Some(result) = rec.result {
            return Ok(result);
        }
        if started.elapsed() > timeout {
            return Err(ClientError::Timeout(format!(
                "no result for job {job} after {}s (height {}): are the hospitals' nodes running?",
                timeout.as_secs(),
                ledger.height()
            )));
        }
        ledger.next_block()?;
    }
}

/// Fetches a job's released result from its aggregator, signed by the submitter's `key`, and
/// checks it against the hash on the ledger.
pub fn fetch_result(
    ledger: &Remote,
    key: &Keypair,
    job: JobId,
    record: &JobResult,
) -> Result<ResultDoc> {
    // The aggregator answers 202 until its own node has the block that holds the result's
    // hash (this client may have verified that block first): ask again for a while.
    let asked = Instant::now();
    let (status, body) = loop {
        let (status, body) = ledger.get_signed(
            &record.posted_by,
            &format!("/v1/worker/jobs/{job}/result"),
            key,
        )?;
        if status != 202 || asked.elapsed() > Duration::from_secs(30) {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if status != 200 {
        return Err(ClientError::Refused {
            what: format!("the result of {job} at {}", record.posted_by),
            status,
            reason: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    if medspace_worker::wire::result_hash(&body) != record.result_hash {
        return Err(ClientError::Verification(format!(
            "the result {} delivered for {job} does not match the hash on the ledger",
            record.posted_by
        )));
    }
    serde_json::from_slice(&body)
        .map_err(|e| ClientError::Verification(format!("the delivered result does not parse: {e}")))
}

/// The result as a table, one line per cell, then one per site that did not contribute.
pub fn result_lines(doc: &ResultDoc) -> Vec<String> {
    let eps = doc.epsilon_micro as f64 / 1e6;
    let mut out: Vec<String> = Vec::new();
    if let Some(m) = &doc.model {
        out.extend(crate::models::model_lines(m));
    }
    if let Some(s) = &doc.survival {
        out.extend(crate::models::survival_lines(s));
    }
    if let Some(d) = &doc.drug_safety {
        out.extend(crate::models::drug_safety_lines(d));
    }
    if let Some(v) = &doc.vertical {
        out.extend(crate::models::vertical_lines(v, doc.k));
    }
    if let Some(o) = &doc.overlap {
        out.push(format!(
            "persons of the cohort both sites hold (cardinality-only private set intersection{})",
            if o.dp {
                format!(", noised at the later site, ε={eps}")
            } else {
                ", exact".to_string()
            }
        ));
        for (a, b, n) in &o.pairs {
            out.push(match n {
                Some(n) => format!("{a:<12} & {b:<12} {n:>7}"),
                None => format!("{a:<12} & {b:<12} withheld (< {} or not matched)", doc.k),
            });
        }
    }
    if let Some(s) = &doc.surveillance {
        out.push(format!(
            "window {} ({} day(s) from {}): {} persons with a syndrome across {} regions (per-window noise at every hospital, ε={eps})",
            s.window,
            s.days,
            s.from,
            s.totals.iter().flatten().sum::<i64>(),
            s.regions.len()
        ));
    }
    let cells = if doc.model.is_some()
        || doc.survival.is_some()
        || doc.drug_safety.is_some()
        || doc.surveillance.is_some()
        || doc.vertical.is_some()
        || doc.overlap.is_some()
    {
        &[][..]
    } else {
        &doc.cells[..]
    };
    out.extend(cells.iter().map(|c| match (c.n, c.mean) {
        (None, _) => format!("{:<14} suppressed (< {})", c.group, doc.k),
        (Some(n), None) => {
            format!("{:<14} {n:>7}   (discrete Laplace noise, ε={eps})", c.group)
        }
        (Some(n), Some(m)) => format!(
            "{:<14} {n:>7}   mean {m:.2}   (discrete Laplace noise, ε={eps})",
            c.group
        ),
    }));
    for (m, why) in &doc.dropped {
        out.push(format!("{m} did not contribute: {why}"));
    }
    if doc.failure.is_none()
        && doc.contributions.len() > 1
        && doc.vertical.is_none()
        && doc.overlap.is_none()
    {
        if doc.not_counted_once.is_empty() {
            out.push(
                "each patient counted once: every hospital matched its patients with those before it (private set intersection)"
                    .to_string(),
            );
        }
        for (later, earlier) in &doc.not_counted_once {
            out.push(format!(
                "not matched: {later} with {earlier} (a patient held by both may count twice)"
            ));
        }
    }
    if let Some(why) = &doc.failure {
        out.push(format!("nothing was released: {why}"));
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The result's chart: a forest plot for a model, the curves for a survival job, else a bar
/// chart of the released cells (suppressed cells drawn as empty, labelled).
pub fn chart_svg(doc: &ResultDoc, title: &str) -> String {
    if let Some(m) = &doc.model {
        return crate::models::forest_svg(m, title);
    }
    if let Some(s) = &doc.survival {
        return crate::models::survival_svg(s, title);
    }
    if let Some(v) = &doc.vertical {
        return crate::models::vertical_svg(v, doc.k, title);
    }
    let (w, bar_h, gap, left, top) = (640.0_f64, 22.0_f64, 8.0_f64, 130.0_f64, 40.0_f64);
    let max = doc
        .cells
        .iter()
        .filter_map(|c| c.n)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let h = top + doc.cells.len() as f64 * (bar_h + gap) + 30.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\">{}</text>\n",
        escape(title)
    );
    for (i, c) in doc.cells.iter().enumerate() {
        let y = top + i as f64 * (bar_h + gap);
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
            left - 8.0,
            y + bar_h * 0.7,
            escape(&c.group)
        ));
        match c.n {
            Some(n) => {
                let len = (n.max(0) as f64 / max) * (w - left - 80.0);
                svg.push_str(&format!(
                    "<rect x=\"{left}\" y=\"{y}\" width=\"{len:.1}\" height=\"{bar_h}\" fill=\"#3b7dd8\"/>\n<text x=\"{:.1}\" y=\"{}\">{n}</text>\n",
                    left + len + 6.0,
                    y + bar_h * 0.7
                ));
            }
            None => svg.push_str(&format!(
                "<rect x=\"{left}\" y=\"{y}\" width=\"60\" height=\"{bar_h}\" fill=\"none\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n<text x=\"{:.1}\" y=\"{}\" fill=\"#777\">suppressed (&lt; {})</text>\n",
                left + 66.0,
                y + bar_h * 0.7,
                doc.k
            )),
        }
    }
    svg.push_str(&format!(
        "<text x=\"10\" y=\"{:.1}\" fill=\"#555\">ε={} per job, noise from each hospital, small cells suppressed; job {}</text>\n</svg>\n",
        h - 10.0,
        doc.epsilon_micro as f64 / 1e6,
        doc.job
    ));
    svg
}

/// The newest contract on the ledger (by id), if any: what `latest` names.
pub fn latest_contract(state: &medspace_state::State) -> Result<Option<ContractId>> {
    Ok(state.contracts()?.into_iter().map(|c| c.id).max())
}

/// The approvals a contract still waits for, each as "role of member" (or the role alone
/// for the consortium's).
pub fn awaited_approvals(rec: &medspace_state::records::ContractRecord) -> Vec<String> {
    rec.approvals
        .iter()
        .filter(|a| a.by.is_none())
        .map(|a| match &a.member {
            Some(m) => format!("{} of {m}", a.role.as_str()),
            None => a.role.as_str().to_string(),
        })
        .collect()
}

/// A contract's status as `medspace query status` prints it: state, purpose, level and
/// holders, the approvals awaited, quality flags, the privacy budget and every job.
pub fn status_lines(state: &medspace_state::State, contract: ContractId) -> Result<Vec<String>> {
    let rec = state
        .contract(contract)?
        .ok_or_else(|| ClientError::Missing(format!("contract {contract} is not on the ledger")))?;
    let mut out = vec![format!(
        "  {contract}: {} {} level {}, holders {}",
        rec.status,
        rec.purpose,
        rec.level,
        rec.owners
            .iter()
            .map(MemberId::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    )];
    let awaited = awaited_approvals(&rec);
    if !awaited.is_empty() {
        out.push(format!("  waiting for: {}", awaited.join(", ")));
    }
    out.extend(quality_lines(&rec).into_iter().map(|l| format!("  {l}")));
    out.push(format!(
        "  epsilon: budget {:.3}, spent {:.3}, reserved {:.3}",
        rec.epsilon_budget as f64 / 1e6,
        rec.epsilon_spent as f64 / 1e6,
        rec.epsilon_reserved as f64 / 1e6
    ));
    for j in state.jobs()?.into_iter().filter(|j| j.contract == contract) {
        out.push(match &j.result {
            Some(r) => format!(
                "  job {} done: ε {:.3}, result {} posted by {}, contributions {}",
                j.id,
                r.epsilon_spent as f64 / 1e6,
                r.result_hash,
                r.posted_by,
                r.contributions
                    .iter()
                    .map(|c| format!("{}={}", c.member, c.records))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => format!(
                "  job {} running (ε {:.3} reserved)",
                j.id,
                j.epsilon_reserved as f64 / 1e6
            ),
        });
    }
    Ok(out)
}

/// The quality checks a contract's data failed against the consortium's floor, one line each
/// (empty when its data meets the floor).
pub fn quality_lines(rec: &medspace_state::records::ContractRecord) -> Vec<String> {
    let pct = |ppm: u32| f64::from(ppm) / 10_000.0;
    rec.quality
        .iter()
        .map(|q| {
            let what = if q.field.as_str().is_empty() {
                format!("{} {}", q.dataset, q.table)
            } else {
                format!("{} {}.{}", q.dataset, q.table, q.field)
            };
            let check = match q.check {
                medspace_state::records::QualityCheck::Missing => "missing values",
                medspace_state::records::QualityCheck::Invalid => "invalid or unmapped codes",
                medspace_state::records::QualityCheck::Duplicate => "duplicate rows",
                medspace_state::records::QualityCheck::Implausible => "implausible values",
            };
            format!(
                "quality below the floor: {what}: {check} {:.1} % (the floor accepts {:.1} %)",
                pct(q.value_ppm),
                pct(q.max_ppm)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use medspace_worker::wire::ResultCell;

    #[test]
    fn chart_draws_every_cell_and_escapes_labels() {
        let doc = ResultDoc {
            version: 2,
            job: JobId(1),
            contract: ContractId(2),
            aggregator: MemberId::new("hospital-a").unwrap(),
            k: 10,
            epsilon_micro: 500_000,
            cells: vec![
                ResultCell {
                    group: "female <40".into(),
                    n: Some(42),
                    mean: None,
                },
                ResultCell {
                    group: "male".into(),
                    n: None,
                    mean: None,
                },
            ],
            contributions: vec![],
            dropped: vec![],
            drug_safety: None,
            surveillance: None,
            vertical: None,
            overlap: None,
            not_counted_once: vec![],
            failure: None,
            model: None,
            survival: None,
        };
        let svg = chart_svg(&doc, "t");
        assert!(svg.contains("female &lt;40"));
        assert!(svg.contains(">42<"));
        assert!(svg.contains("suppressed (&lt; 10)"));
        assert_eq!(svg.matches("<rect").count(), 3);
    }
}
