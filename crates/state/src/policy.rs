//! Authorization decisions, in one place: who may request what, which approvals a request
//! needs, and whether a patient's consent allows a use. Pure functions of their inputs.

use crate::records::{
    ConsentRecord, ConsentState, GrantRecord, QualityCheck, QualityFlag, RequiredApproval,
};
use medspace_types::{
    ApprovalScope, DatasetDescription, FieldRef, Level, MemberId, MemberKind, Policy, Purpose,
    QualityFloor, Role, Text,
};

/// Whether `role` is one of the consortium's own roles (data committee, ethics committee,
/// auditor): appointed by a governance vote, never registered by an institution for itself
/// (except a regulator's own auditors).
pub fn is_consortium_role(role: Role) -> bool {
    matches!(
        role,
        Role::DataCommittee | Role::EthicsCommittee | Role::Auditor
    )
}

/// Who may ask for a contract of `purpose`: each entry is a role and the kinds of institution
/// whose users of that role may. Purposes the consortium may treat as implied consent
/// (treatment, public health, quality management) are the narrowest: a clinician of a hospital
/// for treatment; a public-health agency's researcher or the regulator's auditor for public
/// health; a hospital's own staff (steward, clinician, researcher) or the regulator's auditor for
/// quality management. A research institute's researcher asks only for research, teaching and
/// drug safety.
pub fn requesters(purpose: Purpose) -> &'static [(Role, &'static [MemberKind])] {
    use MemberKind::*;
    const HOSPITAL: &[MemberKind] = &[Hospital];
    const REGULATOR: &[MemberKind] = &[Regulator];
    match purpose {
        Purpose::Treatment => &[(Role::Clinician, HOSPITAL)],
        Purpose::PatientAccess => &[],
        Purpose::InsuranceClaim => &[(Role::ClaimsOfficer, &[Insurer])],
        Purpose::Research => &[(
            Role::Researcher,
            &[Hospital, ResearchInstitute, Pharma, PublicHealthAgency],
        )],
        Purpose::Teaching => &[(Role::Researcher, &[Hospital, ResearchInstitute])],
        Purpose::DrugSafety => &[
            (
                Role::Researcher,
                &[Hospital, ResearchInstitute, Pharma, PublicHealthAgency],
            ),
            (Role::Auditor, REGULATOR),
        ],
        Purpose::PublicHealth => &[
            (Role::Researcher, &[PublicHealthAgency]),
            (Role::Auditor, REGULATOR),
        ],
        Purpose::QualityManagement => &[
            (Role::Steward, HOSPITAL),
            (Role::Clinician, HOSPITAL),
            (Role::Researcher, HOSPITAL),
            (Role::Auditor, REGULATOR),
        ],
    }
}

/// Whether a user holding `role` at an institution of `kind` may ask for a contract of
/// `purpose` (see [`requesters`]).
pub fn may_request(purpose: Purpose, role: Role, kind: MemberKind) -> bool {
    requesters(purpose)
        .iter()
        .any(|(r, kinds)| *r == role && kinds.contains(&kind))
}

/// Whether a request of `purpose` by an institution of `kind` may touch only the requester's
/// own data: a hospital's quality management looks at its own care, not at other hospitals'
/// patients (whose consent is only implied for their own hospital's quality work).
pub fn own_data_only(purpose: Purpose, kind: MemberKind) -> bool {
    purpose == Purpose::QualityManagement && kind == MemberKind::Hospital
}

/// The approvals a request of `level` touching data of `owners` needs under `policy`.
pub fn required_approvals(
    policy: &Policy,
    level: Level,
    owners: &[MemberId],
) -> Vec<RequiredApproval> {
    let mut out = Vec::new();
    for req in policy.requirements.iter().filter(|r| r.level <= level) {
        match req.scope {
            ApprovalScope::PerOwner => {
                for owner in owners {
                    out.push(RequiredApproval {
                        role: req.role,
                        member: Some(owner.clone()),
                        by: None,
                    });
                }
            }
            ApprovalScope::Consortium => out.push(RequiredApproval {
                role: req.role,
                member: None,
                by: None,
            }),
        }
    }
    out
}

/// Whether a user of `member` (of kind `kind`) holding `role` may fill the approval slot `slot`
/// of a request by an institution `requester`.
///
/// - A per-owner slot is the owner's: only its own user of the slot's role fills it (a
///   requester's own steward approving the use of its own institution's data is normal).
/// - A consortium slot (a committee, the regulator) is never filled by a user of the
///   requesting institution: nobody reviews their own institution's request.
/// - The auditor's approval is the regulator's: only an auditor of a regulator member gives it.
pub fn may_fill(
    slot: &RequiredApproval,
    role: Role,
    member: &MemberId,
    kind: MemberKind,
    requester: &MemberId,
) -> bool {
    let institution = match &slot.member {
        Some(owner) => owner == member,
        None => member != requester,
    };
    slot.by.is_none()
        && slot.role == role
        && institution
        && (role != Role::Auditor || kind == MemberKind::Regulator)
}

/// The quality checks a request of `purpose` at `level` fails: each requested field (and its
/// table) against the strictest of the policy's floors that apply (a floor of the request's
/// purpose or of every purpose, at the request's level or below). `describe` gives a field's
/// dataset description. Each failing check once, in request order, at most 64.
pub fn quality_flags<'a>(
    floors: &[QualityFloor],
    purpose: Purpose,
    level: Level,
    fields: &[FieldRef],
    describe: impl Fn(&FieldRef) -> Option<&'a DatasetDescription>,
) -> Vec<QualityFlag> {
    let applying: Vec<&QualityFloor> = floors
        .iter()
        .filter(|f| f.level <= level && f.purpose.is_none_or(|p| p == purpose))
        .collect();
    let strictest = |pick: fn(&QualityFloor) -> u32| applying.iter().map(|f| pick(f)).min();
    let (missing, invalid, duplicate, implausible) = (
        strictest(|f| f.max_missing_ppm),
        strictest(|f| f.max_invalid_ppm),
        strictest(|f| f.max_duplicate_ppm),
        strictest(|f| f.max_implausible_ppm),
    );
    let mut out: Vec<QualityFlag> = Vec::new();
    let mut push = |flag: QualityFlag| {
        let seen = out.iter().any(|x| {
            x.dataset == flag.dataset
                && x.table == flag.table
                && x.field == flag.field
                && x.check == flag.check
        });
        if !seen && out.len() < 64 {
            out.push(flag);
        }
    };
    for r in fields {
        let Some(d) = describe(r) else { continue };
        let Some(t) = d.tables.iter().find(|t| t.name == r.table) else {
            continue;
        };
        let flag = |field: &Text<64>, check, value_ppm, max_ppm| QualityFlag {
            dataset: r.dataset.clone(),
            table: t.name.clone(),
            field: field.clone(),
            check,
            value_ppm,
            max_ppm,
        };
        if let Some(f) = t.fields.iter().find(|f| f.name == r.field) {
            if let Some(max) = missing.filter(|m| f.missing_ppm > *m) {
                push(flag(&f.name, QualityCheck::Missing, f.missing_ppm, max));
            }
            if let Some(max) = invalid.filter(|m| f.invalid_ppm > *m) {
                push(flag(&f.name, QualityCheck::Invalid, f.invalid_ppm, max));
            }
        }
        let none = Text::default();
        if let Some(max) = duplicate.filter(|m| t.duplicate_ppm > *m) {
            push(flag(&none, QualityCheck::Duplicate, t.duplicate_ppm, max));
        }
        if let Some(max) = implausible.filter(|m| t.implausible_ppm > *m) {
            push(flag(
                &none,
                QualityCheck::Implausible,
                t.implausible_ppm,
                max,
            ));
        }
    }
    out
}

/// The consents relevant to one use of one patient's data: the study-specific one (if the use
/// is for a study) and the broad one for the purpose.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConsentView<'a> {
    /// Consent for this very study.
    pub study: Option<&'a ConsentRecord>,
    /// Consent for the purpose as a whole.
    pub broad: Option<&'a ConsentRecord>,
}

/// Whether a patient's consent allows a use of `purpose` at `level`, as of block `height`.
///
/// A study-specific answer (dynamic secondary consent) overrides the broad one; a revoked
/// consent counts as no answer. Without an answer, purposes the policy lists as implied are
/// allowed below L4. L4 always needs an explicit allow with the L4 opt-in.
pub fn consent_allows(
    policy: &Policy,
    purpose: Purpose,
    level: Level,
    view: ConsentView<'_>,
    height: u64,
) -> bool {
    use crate::records::{ConsentAt, ConsentChange};
    fn at(r: Option<&ConsentRecord>, height: u64) -> ConsentAt<'_> {
        r.map_or(ConsentAt::Never, |r| r.at(height))
    }
    fn answer(a: ConsentAt<'_>) -> Option<&ConsentChange> {
        match a {
            ConsentAt::Change(c) if c.state != ConsentState::Revoked => Some(c),
            _ => None,
        }
    }
    // A height older than a trimmed history: the answer then is unknown, and unknown is "no".
    let (study, broad) = (at(view.study, height), at(view.broad, height));
    if matches!(study, ConsentAt::Forgotten) || matches!(broad, ConsentAt::Forgotten) {
        return false;
    }
    let decided = answer(study).or_else(|| answer(broad));
    match decided {
        Some(c) => c.state == ConsentState::Allow && (level < Level::L4 || c.l4_opt_in),
        None => level < Level::L4 && policy.implied_consent.iter().any(|p| *p == purpose),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::ConsentChange;
    use medspace_types::List;

    fn record(changes: &[(u64, ConsentState, bool)]) -> ConsentRecord {
        ConsentRecord {
            trimmed: false,
            history: List::new(
                changes
                    .iter()
                    .map(|(h, s, l4)| ConsentChange {
                        height: *h,
                        state: *s,
                        l4_opt_in: *l4,
                    })
                    .collect(),
            )
            .unwrap(),
        }
    }

    #[test]
    fn study_answer_overrides_broad() {
        let p = Policy::default();
        let broad = record(&[(1, ConsentState::Allow, false)]);
        let study = record(&[(2, ConsentState::Deny, false)]);
        let v = ConsentView {
            study: Some(&study),
            broad: Some(&broad),
        };
        assert!(!consent_allows(&p, Purpose::Research, Level::L3, v, 5));
        assert!(
            consent_allows(&p, Purpose::Research, Level::L3, v, 1),
            "before the study answer"
        );
    }

    #[test]
    fn revocation_is_effective_from_its_block() {
        let p = Policy::default();
        let broad = record(&[
            (1, ConsentState::Allow, false),
            (10, ConsentState::Revoked, false),
        ]);
        let v = ConsentView {
            study: None,
            broad: Some(&broad),
        };
        assert!(consent_allows(&p, Purpose::Research, Level::L2, v, 9));
        assert!(!consent_allows(&p, Purpose::Research, Level::L2, v, 10));
    }

    #[test]
    fn l4_needs_explicit_opt_in() {
        let p = Policy::default();
        let no = record(&[(1, ConsentState::Allow, false)]);
        let yes = record(&[(1, ConsentState::Allow, true)]);
        let v = |r| ConsentView {
            study: None,
            broad: Some(r),
        };
        assert!(!consent_allows(&p, Purpose::Research, Level::L4, v(&no), 2));
        assert!(consent_allows(&p, Purpose::Research, Level::L4, v(&yes), 2));
        assert!(!consent_allows(
            &p,
            Purpose::Treatment,
            Level::L4,
            ConsentView::default(),
            2
        ));
        assert!(consent_allows(
            &p,
            Purpose::Treatment,
            Level::L3,
            ConsentView::default(),
            2
        ));
        assert!(!consent_allows(
            &p,
            Purpose::Research,
            Level::L2,
            ConsentView::default(),
            2
        ));
    }

    #[test]
    fn approvals_follow_level_and_owners() {
        let p = Policy::default();
        let owners = [MemberId::new("a").unwrap(), MemberId::new("b").unwrap()];
        assert!(required_approvals(&p, Level::L1, &owners).is_empty());
        assert_eq!(required_approvals(&p, Level::L2, &owners).len(), 2);
        assert_eq!(required_approvals(&p, Level::L3, &owners).len(), 4);
        assert_eq!(required_approvals(&p, Level::L4, &owners).len(), 5);
    }
}

/// The threshold of a secure aggregation round among `sites` data holders: a strict majority,
/// `⌊n/2⌋ + 1`. It is both the fewest survivors whose sum may be released and the number of
/// shares that reconstruct a site's mask secret (the same as `medspace_privacy::secagg`'s).
pub fn round_threshold(sites: usize) -> usize {
    sites / 2 + 1
}

/// Why a patient's grant cannot be used now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefusal {
    /// The patient revoked it.
    #[error("grant {grant} was revoked")]
    Revoked {
        /// The grant.
        grant: String,
    },
    /// Its expiry passed.
    #[error("grant {grant} expired at {expiry_ms}")]
    Expired {
        /// The grant.
        grant: String,
        /// Its expiry (block time, ms).
        expiry_ms: u64,
    },
    /// Every allowed use is spent.
    #[error("grant {grant} is used up ({uses} of {max_uses})")]
    UsedUp {
        /// The grant.
        grant: String,
        /// Uses so far.
        uses: u32,
        /// Uses allowed.
        max_uses: u32,
    },
}

/// Whether a grant may be used at `now_ms`: not revoked, not expired, not used up. The one
/// rule the ledger (`RecordAccess`) and the holding hospital's node (before it reads a record)
/// both apply.
pub fn grant_live(grant: &GrantRecord, now_ms: u64) -> Result<(), GrantRefusal> {
    let t = &grant.terms;
    let id = || grant.id.to_string();
    if grant.revoked {
        return Err(GrantRefusal::Revoked { grant: id() });
    }
    if now_ms >= t.expiry_ms {
        return Err(GrantRefusal::Expired {
            grant: id(),
            expiry_ms: t.expiry_ms,
        });
    }
    if t.max_uses > 0 && grant.uses >= t.max_uses {
        return Err(GrantRefusal::UsedUp {
            grant: id(),
            uses: grant.uses,
            max_uses: t.max_uses,
        });
    }
    Ok(())
}
