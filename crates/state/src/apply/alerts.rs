//! Surveillance alerts: the public-health agency's signed statement that a window's released
//! counts raised an alert, recorded against the window's job so the data holders see what
//! their data triggered. Only the contract's holder states them, only for a window whose job
//! has posted its result, only for a syndrome and region of the approved definition, once per
//! window, syndrome, region and detector.

use super::{Receipt, Signer, forbidden, invalid, not_found};
use crate::error::TxError;
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::query::{self, Aggregate};
use medspace_types::*;

/// The detectors an alert may name (`combined`: the hospital series and a second source
/// together).
pub const ALERT_METHODS: [&str; 5] = ["c1", "c2", "c3", "seasonal", "combined"];
/// Largest magnitude of an alert's figures (counts and thousandths).
const MAX_FIGURE: i64 = 1_000_000_000_000;

impl State {
    pub(super) fn record_alert(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &RecordAlert,
    ) -> Result<Receipt, TxError> {
        let user = Self::user_signer(signer, "record_alert")?;
        let job = self.job(p.job)?.ok_or_else(|| not_found("job", p.job))?;
        let c = self
            .contract(job.contract)?
            .ok_or_else(|| not_found("contract", job.contract))?;
        if c.requester != user.id {
            return Err(forbidden(format!(
                "only the contract holder `{}` states alerts under {}",
                c.requester, c.id
            )));
        }
        if c.purpose != Purpose::PublicHealth {
            return Err(TxError::OutOfScope {
                reason: format!("contract {} is not a public-health contract", c.id),
            });
        }
        let (spec, _) = query::parse_bytes(c.computation.as_bytes())
            .map_err(|e| invalid("computation", e.to_string()))?;
        let Aggregate::Surveillance(s) = &spec.aggregate else {
            return Err(TxError::OutOfScope {
                reason: format!("contract {} is not a surveillance definition", c.id),
            });
        };
        let Some(window) = job.window else {
            return Err(TxError::OutOfScope {
                reason: format!("job {} computes no surveillance window", job.id),
            });
        };
        if job.result.is_none() {
            return Err(TxError::OutOfScope {
                reason: format!("job {} (window {window}) has no result yet", job.id),
            });
        }
        if !s.syndromes.iter().any(|g| g.name == p.syndrome.as_str()) {
            return Err(invalid(
                "syndrome",
                format!("`{}` is not a syndrome of the definition", p.syndrome),
            ));
        }
        if !s.regions.iter().any(|r| r == p.region.as_str()) {
            return Err(invalid(
                "region",
                format!("`{}` is not a region of the definition", p.region),
            ));
        }
        if !ALERT_METHODS.contains(&p.method.as_str()) {
            return Err(invalid(
                "method",
                format!("`{}` is none of {}", p.method, ALERT_METHODS.join(", ")),
            ));
        }
        for (field, v) in [
            ("observed", p.observed),
            ("expected_milli", p.expected_milli),
            ("score_milli", p.score_milli),
        ] {
            if v.unsigned_abs() > MAX_FIGURE.unsigned_abs() {
                return Err(invalid(field, format!("magnitude above {MAX_FIGURE}")));
            }
        }
        let rec = AlertRecord {
            contract: c.id,
            job: job.id,
            window,
            syndrome: p.syndrome.clone(),
            region: p.region.clone(),
            method: p.method.clone(),
            observed: p.observed,
            expected_milli: p.expected_milli,
            score_milli: p.score_milli,
            by: user.id,
            height: ctx.height,
            time_ms: ctx.time_ms,
        };
        let key = keys::alert(&rec);
        if self.get_raw(&key)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "alert",
                id: format!(
                    "{} window {window} {} {} {}",
                    c.id, p.syndrome, p.region, p.method
                ),
            });
        }
        self.put(&key, &rec)?;
        Ok(Receipt::new("record_alert"))
    }

    /// The alerts stated under a surveillance contract, by window.
    pub fn alerts_of(&self, contract: ContractId) -> Result<Vec<AlertRecord>, TxError> {
        self.scan(&keys::alerts_of(contract))
    }
}
