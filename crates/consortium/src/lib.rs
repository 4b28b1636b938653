//! medspace-consortium: the embedded default consortium — three hospitals, a research
//! institute, a regulator and an insurer, with their users — and the deterministic keys of a
//! local consortium (a devnet's, never production keys): members' ledger keys and X25519
//! agreement secrets, users' keys, patients' keys. The devnet, the demo, the benchmarks and
//! every test that needs a realistic genesis build it from here.

use medspace_types::*;

/// The hospitals of the default consortium, in genesis order.
pub const HOSPITALS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];

/// The default consortium's genesis time: 2026-01-01T00:00:00Z.
pub const GENESIS_MS: u64 = 1_767_225_600_000;
/// The devnet's veto delay of a patient key re-binding.
pub const DEVNET_REBIND_DELAY_MS: u64 = 15_000;

/// Errors of building a consortium or finding a party in it.
#[derive(Debug, thiserror::Error)]
pub enum ConsortiumError {
    /// A name does not fit its type.
    #[error(transparent)]
    Type(#[from] TypeError),
    /// No such member.
    #[error("no member `{0}` in the consortium")]
    NoMember(String),
    /// No such user.
    #[error("no user `{0}` in the consortium")]
    NoUser(String),
}

/// A member of the default consortium: id, display name, kind, opening credits.
struct MemberSpec(&'static str, &'static str, MemberKind, u64);

const MEMBERS: [MemberSpec; 8] = [
    MemberSpec(
        "hospital-a",
        "Hospital A (university hospital)",
        MemberKind::Hospital,
        0,
    ),
    MemberSpec(
        "hospital-b",
        "Hospital B (regional hospital)",
        MemberKind::Hospital,
        0,
    ),
    MemberSpec(
        "hospital-c",
        "Hospital C (children's hospital)",
        MemberKind::Hospital,
        0,
    ),
    MemberSpec(
        "research-1",
        "Research Institute 1",
        MemberKind::ResearchInstitute,
        10_000,
    ),
    MemberSpec(
        "regulator",
        "Health Data Regulator",
        MemberKind::Regulator,
        0,
    ),
    MemberSpec(
        "insurer-1",
        "Insurer 1 (health insurance)",
        MemberKind::Insurer,
        0,
    ),
    MemberSpec(
        "health-agency",
        "Public Health Agency",
        MemberKind::PublicHealthAgency,
        0,
    ),
    MemberSpec(
        "pharma-1",
        "Pharma 1 (drug safety)",
        MemberKind::Pharma,
        10_000,
    ),
];

/// The default consortium's parties, their keys and the genesis.
pub struct Consortium {
    /// The seed every key derives from.
    pub seed: u64,
    /// The application genesis.
    pub genesis: Genesis,
    /// Members and their member keys (governance; the CLI's, never a node's).
    pub members: Vec<(MemberId, Keypair)>,
    /// Members and their node keys (what each member's node process signs with).
    pub nodes: Vec<(MemberId, Keypair)>,
    /// Users: id, role, institution, key.
    pub users: Vec<(UserId, Role, MemberId, Keypair)>,
}

/// The deterministic X25519 agreement secret of `member` in a local consortium of `seed` (its
/// public key is in the genesis).
pub fn agreement_secret(seed: u64, member: &str) -> x25519_dalek::StaticSecret {
    x25519_dalek::StaticSecret::from(
        Hash::of(&[
            b"medspace/devnet/agreement",
            &seed.to_be_bytes(),
            member.as_bytes(),
        ])
        .0,
    )
}

/// The deterministic key of the patient whose record has the FHIR Patient id `fhir_id`, in a
/// local consortium of `seed`: the same at every hospital holding that record.
pub fn patient_key(seed: u64, fhir_id: &str) -> Keypair {
    let h = Hash::of(&[
        b"medspace/devnet/patient-key/v2",
        &seed.to_be_bytes(),
        fhir_id.as_bytes(),
    ]);
    let mut b = [0u8; 8];
    b.copy_from_slice(h.0.get(..8).unwrap_or(&[0; 8]));
    Keypair::from_seed(u64::from_be_bytes(b))
}

/// The deterministic node key of the member whose member key is `member` (a local
/// consortium's or a test's, never a production key): what [`GenesisBuilder`] registers as the
/// member's node key, so a test holding a member key can sign its node's work too.
pub fn derived_node_key(member: &Keypair) -> Keypair {
    let h = Hash::of(&[b"medspace/devnet/node-key", member.public().as_ref()]);
    let mut b = [0u8; 8];
    b.copy_from_slice(h.0.get(..8).unwrap_or(&[0; 8]));
    Keypair::from_seed(u64::from_be_bytes(b))
}

/// A genesis built member by member: the one way tests, benchmarks and tools write a small
/// consortium's genesis (the default consortium is [`Consortium::default_devnet`]).
#[derive(Clone, Debug)]
pub struct GenesisBuilder {
    genesis: Genesis,
}

impl GenesisBuilder {
    /// An empty consortium on chain `chain_id` at time 0, with the default policy.
    pub fn new(chain_id: &str) -> Result<Self, ConsortiumError> {
        Ok(Self {
            genesis: Genesis {
                chain_id: Name::new(chain_id)?,
                time_ms: 0,
                members: Vec::new(),
                users: Vec::new(),
                policy: Policy::default(),
            },
        })
    }

    /// The genesis block time.
    pub fn time(mut self, time_ms: u64) -> Self {
        self.genesis.time_ms = time_ms;
        self
    }

    /// The consortium's policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.genesis.policy = policy;
        self
    }

    /// A member with its member key, opening credits and X25519 agreement key (zero when it
    /// takes no part in secure aggregation); its node key is [`derived_node_key`] of `key`.
    pub fn member_with(
        mut self,
        id: &str,
        kind: MemberKind,
        key: &Keypair,
        balance: u64,
        agreement_key: Hash,
    ) -> Result<Self, ConsortiumError> {
        self.genesis.members.push(GenesisMember {
            member: Member {
                id: MemberId::new(id)?,
                name: Text::new(id)?,
                kind,
                key: key.public(),
                node_key: derived_node_key(key).public(),
                agreement_key,
            },
            balance,
        });
        Ok(self)
    }

    /// A member with its ledger key, no credits and no agreement key.
    pub fn member(
        self,
        id: &str,
        kind: MemberKind,
        key: &Keypair,
    ) -> Result<Self, ConsortiumError> {
        self.member_with(id, kind, key, 0, Hash::default())
    }

    /// A user of `member` with `role`.
    pub fn user(
        mut self,
        id: &str,
        member: &str,
        role: Role,
        key: &Keypair,
    ) -> Result<Self, ConsortiumError> {
        self.genesis.users.push(GenesisUser {
            id: UserId::new(id)?,
            member: MemberId::new(member)?,
            role,
            key: key.public(),
        });
        Ok(self)
    }

    /// The genesis.
    pub fn build(self) -> Genesis {
        self.genesis
    }
}

impl Consortium {
    /// Builds the default consortium at `time_ms`; `seed` varies every key.
    pub fn default_devnet(seed: u64, time_ms: u64) -> Result<Self, ConsortiumError> {
        let mut n = seed.wrapping_mul(1000);
        let mut next_key = || {
            n += 1;
            Keypair::from_seed(n)
        };
        let mut members = Vec::new();
        let mut nodes = Vec::new();
        let mut genesis_members = Vec::new();
        for MemberSpec(id, name, kind, balance) in MEMBERS {
            let key = next_key();
            let node = derived_node_key(&key);
            let agreement = x25519_dalek::PublicKey::from(&agreement_secret(seed, id)).to_bytes();
            let id = MemberId::new(id)?;
            genesis_members.push(GenesisMember {
                member: Member {
                    id: id.clone(),
                    name: Text::new(name)?,
                    kind,
                    key: key.public(),
                    node_key: node.public(),
                    agreement_key: Hash(agreement),
                },
                balance,
            });
            nodes.push((id.clone(), node));
            members.push((id, key));
        }
        let mut users = Vec::new();
        let mut add = |user: &str, role: Role, member: &str| -> Result<(), ConsortiumError> {
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
        add("insurer-1.steward", Role::Steward, "insurer-1")?;
        add(
            "health-agency.epidemiologist",
            Role::Researcher,
            "health-agency",
        )?;
        add("pharma-1.safety", Role::Researcher, "pharma-1")?;
        let genesis = Genesis {
            chain_id: Name::new("medspace-devnet")?,
            time_ms,
            members: genesis_members,
            users: users
                .iter()
                .map(|(id, role, member, key)| GenesisUser {
                    id: id.clone(),
                    member: member.clone(),
                    role: *role,
                    key: key.public(),
                })
                .collect(),
            // A development network: a re-bound patient key may take over after 15 s rather
            // than the default three days, so the whole flow can be tried in one sitting.
            policy: Policy {
                rebind_delay_ms: DEVNET_REBIND_DELAY_MS,
                ..Policy::default()
            },
        };
        Ok(Self {
            seed,
            genesis,
            members,
            nodes,
            users,
        })
    }

    /// A member's node key: what its node process signs with.
    pub fn node_key(&self, id: &str) -> Result<&Keypair, ConsortiumError> {
        self.nodes
            .iter()
            .find(|(m, _)| m.as_str() == id)
            .map(|(_, k)| k)
            .ok_or_else(|| ConsortiumError::NoMember(id.to_string()))
    }

    /// A member's member key (governance, users, catalog, node key replacement).
    pub fn member_key(&self, id: &str) -> Result<&Keypair, ConsortiumError> {
        self.members
            .iter()
            .find(|(m, _)| m.as_str() == id)
            .map(|(_, k)| k)
            .ok_or_else(|| ConsortiumError::NoMember(id.to_string()))
    }

    /// The registration of the patient key `patient`, attested by the hospital member
    /// `hospital` with its ledger key (a local consortium holds every member's key; a real
    /// hospital signs only after verifying the person).
    pub fn patient_registration(
        &self,
        hospital: &str,
        patient: &PublicKey,
    ) -> Result<RegisterPatient, ConsortiumError> {
        Ok(RegisterPatient::attested(
            &self.genesis.chain_id,
            patient,
            MemberId::new(hospital)?,
            self.member_key(hospital)?,
        ))
    }

    /// A member's X25519 agreement secret.
    pub fn agreement(&self, id: &str) -> x25519_dalek::StaticSecret {
        agreement_secret(self.seed, id)
    }

    /// A user's key.
    pub fn user_key(&self, id: &str) -> Result<&Keypair, ConsortiumError> {
        self.users
            .iter()
            .find(|(u, ..)| u.as_str() == id)
            .map(|(.., k)| k)
            .ok_or_else(|| ConsortiumError::NoUser(id.to_string()))
    }

    /// A user that can fill an approval slot of `role` at `member` (or any member), other than
    /// those in `except`.
    pub fn reviewer(
        &self,
        role: Role,
        member: Option<&MemberId>,
        except: &[UserId],
    ) -> Option<(&UserId, &Keypair)> {
        self.users
            .iter()
            .find(|(u, r, m, _)| *r == role && member.is_none_or(|x| x == m) && !except.contains(u))
            .map(|(u, _, _, k)| (u, k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_consortium_and_another_seed_other_keys() {
        let a = Consortium::default_devnet(1, GENESIS_MS).unwrap();
        let b = Consortium::default_devnet(1, GENESIS_MS).unwrap();
        let c = Consortium::default_devnet(2, GENESIS_MS).unwrap();
        assert_eq!(a.genesis, b.genesis);
        assert_ne!(a.genesis, c.genesis);
        assert_eq!(a.genesis.members.len(), 8);
        assert!(a.user_key("health-agency.epidemiologist").is_ok());
        assert!(a.user_key("pharma-1.safety").is_ok());
        assert!(a.user_key("research-1.researcher").is_ok());
        assert!(a.user_key("nobody").is_err());
        let agreement = x25519_dalek::PublicKey::from(&a.agreement("hospital-b")).to_bytes();
        assert_eq!(a.genesis.members[1].member.agreement_key.0, agreement);
        assert_ne!(patient_key(1, "p1").public(), patient_key(1, "p2").public());
        let patient = patient_key(1, "p1").public();
        let reg = a.patient_registration("hospital-a", &patient).unwrap();
        let hospital = a.member_key("hospital-a").unwrap().public();
        assert!(reg.verify(&a.genesis.chain_id, &patient, &hospital));
        assert!(a.patient_registration("nobody", &patient).is_err());
        let node = a.node_key("hospital-a").unwrap().public();
        assert_ne!(node, hospital);
        assert_eq!(a.genesis.members[0].member.node_key, node);
        assert!(!reg.verify(&a.genesis.chain_id, &patient, &node));
    }
}
