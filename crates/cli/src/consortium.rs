//! The embedded default consortium: three hospitals, a research institute, a regulator and an
//! insurer, with their users, deterministic keys (a local devnet's, never production keys) and genesis.

use medspace_types::*;

/// The default consortium's parties and genesis.
pub struct Consortium {
    pub genesis: Genesis,
    pub members: Vec<(MemberId, Keypair)>,
    pub users: Vec<(UserId, Role, MemberId, Keypair)>,
}

/// Hospitals of the default consortium.
pub const HOSPITALS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];

impl Consortium {
    /// Builds the default consortium. `seed` varies every key.
    pub fn default_devnet(seed: u64, time_ms: u64) -> anyhow::Result<Self> {
        let mut n = seed.wrapping_mul(1000);
        let mut next_key = || {
            n += 1;
            Keypair::from_seed(n)
        };
        let mut members = Vec::new();
        let mut gmembers = Vec::new();
        let member_specs: [(&str, &str, MemberKind, u64); 6] = [
            (
                "hospital-a",
                "Hospital A (university hospital)",
                MemberKind::Hospital,
                0,
            ),
            (
                "hospital-b",
                "Hospital B (regional hospital)",
                MemberKind::Hospital,
                0,
            ),
            (
                "hospital-c",
                "Hospital C (children's hospital)",
                MemberKind::Hospital,
                0,
            ),
            (
                "research-1",
                "Research Institute 1",
                MemberKind::ResearchInstitute,
                10_000,
            ),
            (
                "regulator",
                "Health Data Regulator",
                MemberKind::Regulator,
                0,
            ),
            (
                "insurer-1",
                "Insurer 1 (health insurance)",
                MemberKind::Insurer,
                0,
            ),
        ];
        for (id, name, kind, balance) in member_specs {
            let key = next_key();
            let id = MemberId::new(id)?;
            gmembers.push(GenesisMember {
                member: Member {
                    id: id.clone(),
                    name: Text::new(name)?,
                    kind,
                    key: key.public(),
                    agreement_key: Hash(
                        x25519_dalek::PublicKey::from(&crate::demo::agreement_secret(
                            seed,
                            id.as_str(),
                        ))
                        .to_bytes(),
                    ),
                },
                balance,
            });
            members.push((id, key));
        }
        let mut users = Vec::new();
        let mut add = |user: &str, role: Role, member: &str| -> anyhow::Result<()> {
            users.push((UserId::new(user)?, role, MemberId::new(member)?, next_key()));
            Ok(())
        };
        for h in HOSPITALS {
            add(&format!("{h}.steward"), Role::Steward, h)?;
            add(&format!("{h}.clinician"), Role::Clinician, h)?;
        }
        add(
            "hospital-a.data-committee",
            Role::DataCommittee,
            "hospital-a",
        )?;
        add(
            "hospital-b.ethics-committee",
            Role::EthicsCommittee,
            "hospital-b",
        )?;
        add("research-1.researcher", Role::Researcher, "research-1")?;
        add("regulator.auditor", Role::Auditor, "regulator")?;
        add("insurer-1.claims", Role::ClaimsOfficer, "insurer-1")?;
        let genesis = Genesis {
            chain_id: Name::new("medspace-devnet")?,
            time_ms,
            members: gmembers,
            users: users
                .iter()
                .map(|(id, role, member, key)| GenesisUser {
                    id: id.clone(),
                    member: member.clone(),
                    role: *role,
                    key: key.public(),
                })
                .collect(),
            policy: Policy::default(),
        };
        Ok(Self {
            genesis,
            members,
            users,
        })
    }

    /// A member's key.
    pub fn member_key(&self, id: &str) -> anyhow::Result<&Keypair> {
        self.members
            .iter()
            .find(|(m, _)| m.as_str() == id)
            .map(|(_, k)| k)
            .ok_or_else(|| anyhow::anyhow!("no member `{id}` in the consortium"))
    }

    /// A user's key.
    pub fn user_key(&self, id: &str) -> anyhow::Result<&Keypair> {
        self.users
            .iter()
            .find(|(u, ..)| u.as_str() == id)
            .map(|(.., k)| k)
            .ok_or_else(|| anyhow::anyhow!("no user `{id}` in the consortium"))
    }
}

/// The catalog description of a hospital's common-data-model dataset, with the privacy level
/// of each field, for `persons` patients.
pub fn cdm_description(
    hospital: &str,
    persons: u64,
    version: u32,
    content_hash: Hash,
) -> anyhow::Result<DatasetDescription> {
    let field = |name: &str, level: Level| -> anyhow::Result<FieldDesc> {
        Ok(FieldDesc {
            name: Text::new(name)?,
            level,
            missing_ppm: 0,
            invalid_ppm: 0,
        })
    };
    let table = |name: &str, rows: u64, fields: Vec<FieldDesc>| -> anyhow::Result<TableDesc> {
        Ok(TableDesc {
            name: Text::new(name)?,
            rows,
            duplicate_ppm: 0,
            implausible_ppm: 0,
            fields: List::new(fields)?,
        })
    };
    Ok(DatasetDescription {
        id: DatasetId::new(&format!("{hospital}.cdm"))?,
        title: Text::new(format!("{hospital} common data model"))?,
        version,
        tables: List::new(vec![
            table(
                "person",
                persons,
                vec![
                    field("person_id", Level::L2)?,
                    field("gender_source_value", Level::L2)?,
                    field("year_of_birth", Level::L2)?,
                    field("birth_datetime", Level::L3)?,
                ],
            )?,
            table(
                "condition_occurrence",
                persons * 4,
                vec![
                    field("condition_source_value", Level::L3)?,
                    field("condition_start_date", Level::L3)?,
                ],
            )?,
            table(
                "measurement",
                persons * 20,
                vec![
                    field("measurement_source_value", Level::L3)?,
                    field("value_as_number", Level::L3)?,
                    field("measurement_date", Level::L3)?,
                ],
            )?,
            table(
                "observation",
                persons * 2,
                vec![
                    field("hiv_status", Level::L4)?,
                    field("substance_use", Level::L4)?,
                ],
            )?,
        ])?,
        content_hash,
    })
}
