//! A vertical study at one site ([`medspace_privacy::query::ClaimsSpec`]): the hospital's
//! cohort with the study cell of each person, or the insurer's members with their claims
//! values, planned from the ledger like every job (contract, scope, consent at the job's
//! height) and read with the side's own SQL. The rows never leave the site: they are the
//! inputs of the join ([`medspace_worker::compute::vertical`]).

use crate::federated::{FederatedError, SiteVault, plan_site};
use crate::links::Links;
use crate::local::{self, CONSENTED};
use medspace_privacy::query::claims::{claims_sql, member_values};
use medspace_privacy::query::{Aggregate, GroupField, QuerySpec, compile_sql, group_index, groups};
use medspace_state::State;
use medspace_types::{JobId, MemberId};
use medspace_worker::compute::JoinInput;

/// `member`'s input to the vertical study `job`, planned from the ledger: each side checks
/// only the reads of its own side against the contract's fields here.
pub fn run_join_site(
    state: &State,
    job: JobId,
    member: &MemberId,
    vault: SiteVault<'_>,
    links: &Links,
) -> Result<JoinInput, FederatedError> {
    let (spec, plan) = plan_site(state, job, member, links)?;
    let Aggregate::Claims(c) = &spec.aggregate else {
        return Err(FederatedError::Layout("not a vertical study".into()));
    };
    let claims = crate::plan::claims_side(state, member)?;
    if claims {
        let sql = claims_sql(&spec, CONSENTED)?;
        let rows = local::run_at(vault, &plan.cohort, &sql)?;
        let mut patients = Vec::with_capacity(rows.len());
        let mut values = Vec::with_capacity(rows.len());
        for r in rows {
            let [person, n, paid] = r.values.as_slice() else {
                return Err(FederatedError::Layout(
                    "claims rows need person_id, claims, paid".into(),
                ));
            };
            if let Some(p) = links.patient_of(*person) {
                patients.push(*p);
                values.push(member_values(c, *n, *paid));
            }
        }
        return Ok(JoinInput::Claims { patients, values });
    }
    let sql = compile_sql(&spec, CONSENTED)?;
    let rows = local::run_at(vault, &plan.cohort, &sql)?;
    let layout = groups(&spec);
    fn column<'a>(spec: &QuerySpec, r: &'a local::Row, field: GroupField) -> Option<&'a str> {
        spec.group_by
            .iter()
            .position(|g| *g == field)
            .and_then(|i| r.key.get(i).map(String::as_str))
    }
    let mut patients = Vec::with_capacity(rows.len());
    let mut cells = Vec::with_capacity(rows.len());
    for r in &rows {
        let [person, has] = r.values.as_slice() else {
            return Err(FederatedError::Layout(
                "clinical rows need person_id, has".into(),
            ));
        };
        let Some(group) = group_index(
            &layout,
            column(&spec, r, GroupField::Sex),
            column(&spec, r, GroupField::AgeBand),
        ) else {
            // Outside the layout (e.g. a recorded sex that is neither female nor male).
            continue;
        };
        let cell = c.cell_of(group, *has != 0);
        if let (Some(p), Ok(cell)) = (links.patient_of(*person), u32::try_from(cell)) {
            patients.push(*p);
            cells.push(cell);
        }
    }
    Ok(JoinInput::Clinical { patients, cells })
}
