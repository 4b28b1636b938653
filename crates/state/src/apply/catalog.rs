//! The catalog: members (or their stewards) publish dataset descriptions.

use super::{Receipt, Signer, forbidden, invalid};
use crate::error::TxError;
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::*;

impl State {
    /// The member a signer acts for, if it is the member itself or one of its stewards.
    pub(super) fn steward_member(signer: &Signer, kind: &'static str) -> Result<MemberId, TxError> {
        match signer {
            Signer::Member(m) => Ok(m.member.id.clone()),
            Signer::User(u) if u.role == Role::Steward => Ok(u.member.clone()),
            Signer::User(u) => Err(TxError::WrongRole {
                kind,
                have: u.role,
                need: "steward".into(),
            }),
            other => Err(TxError::WrongSigner {
                kind,
                need: "a member or its steward",
                have: other.describe(),
            }),
        }
    }

    pub(super) fn publish_dataset(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &PublishDataset,
    ) -> Result<Receipt, TxError> {
        let owner = Self::steward_member(&signer, "publish_dataset")?;
        let d = &p.dataset;
        let classification = self.policy()?.classification;
        for t in &d.tables {
            for f in &t.fields {
                // An owner may classify its data higher than the consortium, never lower.
                let floor = classification.field_level(t.name.as_str(), f.name.as_str());
                if f.level < floor {
                    return Err(invalid(
                        "level",
                        format!(
                            "`{}.{}` is published at {} below the consortium's {floor}",
                            t.name, f.name, f.level
                        ),
                    ));
                }
            }
        }
        self.check_description(d, &owner, false)?;
        self.put(
            &keys::dataset(&d.id),
            &DatasetRecord {
                owner,
                description: d.clone(),
                published_height: ctx.height,
                release: None,
            },
        )?;
        Ok(Receipt::new("publish_dataset"))
    }

    /// What every catalog entry must be: tables with fields, quality shares in range, and, if
    /// the id is taken, a newer version of the same owner's entry of the same kind (a release
    /// stays a release).
    pub(super) fn check_description(
        &self,
        d: &DatasetDescription,
        owner: &MemberId,
        release: bool,
    ) -> Result<(), TxError> {
        if d.tables.is_empty() {
            return Err(invalid(
                "tables",
                "a dataset must describe at least one table",
            ));
        }
        for t in &d.tables {
            if t.fields.is_empty() {
                return Err(invalid(
                    "fields",
                    format!("table `{}` has no fields", t.name),
                ));
            }
            for f in &t.fields {
                if f.missing_ppm > 1_000_000 || f.invalid_ppm > 1_000_000 {
                    return Err(invalid(
                        "quality",
                        format!("`{}.{}` has a share above 1,000,000 ppm", t.name, f.name),
                    ));
                }
            }
        }
        if let Some(existing) = self.dataset(&d.id)? {
            if existing.owner != *owner {
                return Err(forbidden(format!(
                    "dataset `{}` belongs to `{}`",
                    d.id, existing.owner
                )));
            }
            if existing.release.is_some() != release {
                return Err(invalid(
                    "dataset",
                    format!(
                        "`{}` is {} release of the open pool",
                        d.id,
                        if release { "not a" } else { "a" }
                    ),
                ));
            }
            if d.version <= existing.description.version {
                return Err(invalid(
                    "version",
                    format!(
                        "{} is not above the published {}",
                        d.version, existing.description.version
                    ),
                ));
            }
        }
        Ok(())
    }
}
