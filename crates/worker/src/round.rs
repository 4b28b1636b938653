//! One job's aggregation round, as pure rules over the ledger and the messages — no I/O, no
//! clock. The compute service ([`crate::compute`]) drives it; the simulations test it.
//!
//! The round (double masking, [`medspace_privacy::secagg`]):
//! 1. **deal** — each data holder, once it has computed its noised vector, draws its secrets and
//!    deals: commitments, a sealed bundle of its pairwise seeds, a sealed share pair for every
//!    holder ([`Job::dealing`]);
//! 2. **mask** — the aggregator forwards the dealings it received (their senders are `U1`); each
//!    site checks them, keeps its shares and answers its masked vector, for one `U1` only, ever
//!    ([`Job::accept_mask`]); the sites that answered are `U2`;
//! 3. **close** — the aggregator posts `CloseRound(U1, U2)` on the ledger; the ledger keeps the
//!    first one per job, so every honest site sees the same sets;
//! 4. **reveal** — each site of `U2` reveals, for the ledger's sets only, its shares of the
//!    survivors' self masks and of the dropped dealers' bundle keys ([`Job::reveal`]); a site
//!    the ledger calls dropped although it answered refuses to reveal anything;
//! 5. **release** — the aggregator checks every reveal against the dealers' commitments,
//!    unmasks the sum over `U2`, suppresses small cells and posts the result's hash
//!    ([`Job::unmask`]).

use crate::wire::{
    DEALING_NAMESPACE, DealingBody, DealingMsg, Hex, MASKED_NAMESPACE, MaskRequest, MaskedBody,
    MaskedMsg, REVEAL_NAMESPACE, RevealBody, RevealMsg,
};
use medspace_privacy::query::QuerySpec;
use medspace_privacy::secagg::{self, Dealing, HeldShare, Keys, Revealed, Round, SiteSecrets};
use medspace_state::State;
use medspace_state::records::{ContractRecord, JobRecord, RoundRecord};
use medspace_types::{Hash, JobId, Keypair, MemberId, PublicKey, computation_hash};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

/// Why a round step was refused (lowercase, naming what and which value; no patient data).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoundError {
    /// The job is not on the ledger (yet).
    #[error("job not found: id={0}")]
    UnknownJob(JobId),
    /// The ledger lacks a record the round needs.
    #[error("ledger: {0}")]
    Ledger(String),
    /// The job's computation is not a query specification.
    #[error("job computation: {0}")]
    Computation(String),
    /// This member holds no data of the job's contract.
    #[error("{member} holds no data of the contract of {job}")]
    NotAHolder {
        /// The member.
        member: MemberId,
        /// The job.
        job: JobId,
    },
    /// A message is not from whom it claims, or not for this job.
    #[error("message from {member} rejected: {why}")]
    Message {
        /// The claimed sender.
        member: MemberId,
        /// Why.
        why: &'static str,
    },
    /// The sets of the request or the ledger are not acceptable.
    #[error("sets refused: {0}")]
    Sets(String),
    /// The cryptographic step failed.
    #[error(transparent)]
    SecAgg(#[from] secagg::SecAggError),
}

/// The binding of every key, mask and share to one job.
pub fn job_binding(job: JobId) -> [u8; 32] {
    Hash::of(&[b"medspace/job/v1", &job.0.to_be_bytes()]).0
}

/// The site that aggregates a contract's jobs: its first data holder.
pub fn aggregator(contract: &ContractRecord) -> Option<&MemberId> {
    contract.owners.iter().next()
}

/// What a site keeps when it answers a mask request: `U1` (site indices), its shares of each
/// dealer's secrets, and its signed masked vector.
pub type Accepted = (Vec<usize>, Vec<(usize, HeldShare)>, MaskedMsg);

/// What the ledger says about one job, for the round.
#[derive(Clone, Debug)]
pub struct Job {
    /// The job's record.
    pub record: JobRecord,
    /// Its contract's data holders, in ledger order (site `i` is `owners[i]`).
    pub owners: Vec<MemberId>,
    /// Each holder's node key.
    pub keys: Vec<PublicKey>,
    /// Each holder's X25519 agreement key.
    pub agreement: Vec<XPublic>,
    /// The round's shape (binding, sites, threshold).
    pub round: Round,
    /// The query.
    pub spec: QuerySpec,
    /// The policy's suppression threshold.
    pub k: u32,
}

impl Job {
    /// Reads the job, its contract and its holders' keys from the ledger.
    pub fn from_ledger(state: &State, id: JobId) -> Result<Self, RoundError> {
        let ledger = |e: medspace_state::TxError| RoundError::Ledger(e.to_string());
        let record = state
            .job(id)
            .map_err(ledger)?
            .ok_or(RoundError::UnknownJob(id))?;
        let contract = state
            .contract(record.contract)
            .map_err(ledger)?
            .ok_or_else(|| {
                RoundError::Ledger(format!("contract not found: id={}", record.contract))
            })?;
        let owners: Vec<MemberId> = contract.owners.iter().cloned().collect();
        let mut keys = Vec::with_capacity(owners.len());
        let mut agreement = Vec::with_capacity(owners.len());
        for o in &owners {
            let m = state
                .member(o)
                .map_err(ledger)?
                .ok_or_else(|| RoundError::Ledger(format!("not a member: member={o}")))?;
            keys.push(m.member.node_key.clone());
            agreement.push(XPublic::from(m.member.agreement_key.0));
        }
        // Defence in depth: the ledger binds every job to its contract's computation; a site
        // still runs only a computation of the hash its contract approved.
        if computation_hash(record.computation.as_bytes()) != contract.computation_hash {
            return Err(RoundError::Computation(format!(
                "not the computation contract {} approved",
                contract.id
            )));
        }
        let json = std::str::from_utf8(record.computation.as_bytes())
            .map_err(|_| RoundError::Computation("not utf-8".into()))?;
        let (spec, _) = medspace_privacy::query::parse(json)
            .map_err(|e| RoundError::Computation(e.to_string()))?;
        let round = Round::new(job_binding(id), owners.len())?;
        let k = state.policy().map_err(ledger)?.min_cell_k;
        Ok(Self {
            record,
            owners,
            keys,
            agreement,
            round,
            spec,
            k,
        })
    }

    /// The job's id.
    pub fn id(&self) -> JobId {
        self.record.id
    }

    /// The aggregator (first holder).
    pub fn aggregator(&self) -> Option<&MemberId> {
        self.owners.first()
    }

    /// A member's site index.
    pub fn index(&self, member: &MemberId) -> Option<usize> {
        self.owners.iter().position(|o| o == member)
    }

    fn site(&self, member: &MemberId) -> Result<usize, RoundError> {
        self.index(member).ok_or_else(|| RoundError::NotAHolder {
            member: member.clone(),
            job: self.id(),
        })
    }

    /// The vector length every site sends.
    pub fn layout_len(&self) -> usize {
        if let medspace_privacy::query::Aggregate::Overlap(_) = self.spec.aggregate {
            // One count per pair of sites.
            let m = self.owners.len();
            return m * m.saturating_sub(1) / 2;
        }
        medspace_privacy::release::layout_len(&self.spec)
    }

    fn keys<'a>(&'a self, me: usize, secret: &'a StaticSecret) -> Keys<'a> {
        Keys {
            me,
            secret,
            peers: &self.agreement,
        }
    }

    fn members(&self, set: &[usize]) -> Vec<MemberId> {
        set.iter()
            .filter_map(|i| self.owners.get(*i).cloned())
            .collect()
    }

    fn indices(&self, members: &[MemberId]) -> Result<Vec<usize>, RoundError> {
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            out.push(
                self.index(m).ok_or_else(|| {
                    RoundError::Sets(format!("{m} holds no data of the contract"))
                })?,
            );
        }
        if out.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
            return Err(RoundError::Sets(
                "members out of contract order or repeated".into(),
            ));
        }
        Ok(out)
    }

    /// This site's signed dealing.
    pub fn dealing(
        &self,
        me: &MemberId,
        key: &Keypair,
        secret: &StaticSecret,
        secrets: &SiteSecrets,
    ) -> Result<DealingMsg, RoundError> {
        self.dealing_counted_once(me, key, secret, secrets, Vec::new())
    }

    /// [`Job::dealing`], saying which earlier sites this one matched its patients with.
    pub fn dealing_counted_once(
        &self,
        me: &MemberId,
        key: &Keypair,
        secret: &StaticSecret,
        secrets: &SiteSecrets,
        counted_once_with: Vec<MemberId>,
    ) -> Result<DealingMsg, RoundError> {
        let i = self.site(me)?;
        let d = secagg::deal(&self.round, &self.keys(i, secret), secrets)?;
        let body = DealingBody {
            job: self.id(),
            member: me.clone(),
            self_commitment: Hex(d.self_commitment),
            bundle_commitment: Hex(d.bundle_commitment),
            bundle: Hex(d.bundle),
            shares: d.shares.into_iter().map(Hex).collect(),
            counted_once_with,
        };
        Signed::sign(key, DEALING_NAMESPACE, body).ok_or(RoundError::Message {
            member: me.clone(),
            why: "cannot sign",
        })
    }

    /// The index of `member`, a site of this job, if `msg` is for this job and signed by that
    /// site's node key in `namespace` (each message kind has its own).
    fn signed_by_site<T: serde::Serialize>(
        &self,
        msg: &Signed<T>,
        member: &MemberId,
        job: JobId,
        namespace: &[u8],
    ) -> Result<usize, RoundError> {
        let bad = |why| RoundError::Message {
            member: member.clone(),
            why,
        };
        let i = self.site(member)?;
        if job != self.id() {
            return Err(bad("message for another job"));
        }
        let key = self.keys.get(i).ok_or(bad("no node key"))?;
        if !msg.verify(key, namespace) {
            return Err(bad("message not signed by the site"));
        }
        Ok(i)
    }

    /// Checks a dealing: for this job, from a holder, signed by its node key. Returns the
    /// dealer's index and the dealing.
    pub fn check_dealing(&self, msg: &DealingMsg) -> Result<(usize, Dealing), RoundError> {
        let b = &msg.body;
        let bad = |why| RoundError::Message {
            member: b.member.clone(),
            why,
        };
        let i = self.signed_by_site(msg, &b.member, b.job, DEALING_NAMESPACE)?;
        if b.shares.len() != self.round.sites {
            return Err(bad("dealing with the wrong number of shares"));
        }
        Ok((
            i,
            Dealing {
                self_commitment: b.self_commitment.0.clone(),
                bundle_commitment: b.bundle_commitment.0.clone(),
                bundle: b.bundle.0.clone(),
                shares: b.shares.iter().map(|s| s.0.clone()).collect(),
            },
        ))
    }

    /// A site's answer to the aggregator's mask request: checks every forwarded dealing (for
    /// this job, signed by its dealer, in contract order, `me` among them, at least `t` of
    /// them), opens and checks the share each dealt to `me`, and masks `vector` with `U1`.
    /// Returns `U1` (indices), the shares kept and the signed masked vector.
    #[allow(clippy::too_many_arguments)]
    pub fn accept_mask(
        &self,
        me: &MemberId,
        key: &Keypair,
        secret: &StaticSecret,
        secrets: &SiteSecrets,
        vector: &[i64],
        cohort: u64,
        req: &MaskRequest,
    ) -> Result<Accepted, RoundError> {
        let i = self.site(me)?;
        if req.job != self.id() {
            return Err(RoundError::Sets("mask request for another job".into()));
        }
        let mut u1 = Vec::with_capacity(req.dealings.len());
        let mut held = Vec::with_capacity(req.dealings.len());
        let keys = self.keys(i, secret);
        for msg in &req.dealings {
            let (d, dealing) = self.check_dealing(msg)?;
            if u1.last().is_some_and(|last| *last >= d) {
                return Err(RoundError::Sets(
                    "dealings out of contract order or repeated".into(),
                ));
            }
            held.push((d, secagg::open_share(&self.round, &keys, d, &dealing)?));
            u1.push(d);
        }
        if !u1.contains(&i) {
            return Err(RoundError::Sets(
                "this site's own dealing is missing".into(),
            ));
        }
        if u1.len() < self.round.threshold {
            return Err(RoundError::Sets(format!(
                "fewer dealers than the threshold: dealers={} threshold={}",
                u1.len(),
                self.round.threshold
            )));
        }
        if vector.len() != self.layout_len() {
            return Err(RoundError::Computation(
                "vector does not fit the query".into(),
            ));
        }
        let encoded: Vec<u64> = vector.iter().map(|v| secagg::encode_i64(*v)).collect();
        let masked = secagg::mask(&self.round, &keys, &u1, secrets, &encoded)?;
        let body = MaskedBody {
            job: self.id(),
            member: me.clone(),
            sharers: self.members(&u1),
            masked,
            cohort,
            contribution: medspace_types::SignedContribution::sign(
                key,
                self.id(),
                me.clone(),
                cohort,
            ),
        };
        let msg = Signed::sign(key, MASKED_NAMESPACE, body).ok_or(RoundError::Message {
            member: me.clone(),
            why: "cannot sign",
        })?;
        Ok((u1, held, msg))
    }

    /// Checks a masked vector: for this job and `u1`, from a member of `u1`, signed, of the
    /// query's length. Returns the sender's index.
    pub fn check_masked(&self, msg: &MaskedMsg, u1: &[usize]) -> Result<usize, RoundError> {
        let b = &msg.body;
        let bad = |why| RoundError::Message {
            member: b.member.clone(),
            why,
        };
        let i = self.signed_by_site(msg, &b.member, b.job, MASKED_NAMESPACE)?;
        if b.sharers != self.members(u1) || !u1.contains(&i) {
            return Err(bad("masked with other sites than the request's"));
        }
        if b.masked.len() != self.layout_len() {
            return Err(bad("masked vector does not fit the query"));
        }
        if b.contribution.member != b.member
            || b.contribution.records != b.cohort
            || !self
                .keys
                .get(i)
                .is_some_and(|key| b.contribution.verify(self.id(), key))
        {
            return Err(bad("contribution not attested by the site"));
        }
        Ok(i)
    }

    /// The ledger's `(U1, U2)` for this job, as indices.
    pub fn ledger_sets(&self, round: &RoundRecord) -> Result<(Vec<usize>, Vec<usize>), RoundError> {
        let sharers: Vec<MemberId> = round.sharers.iter().cloned().collect();
        let survivors: Vec<MemberId> = round.survivors.iter().cloned().collect();
        Ok((self.indices(&sharers)?, self.indices(&survivors)?))
    }

    /// A survivor's reveal for the ledger's sets, from what it kept when it answered the mask
    /// request (`my_u1`, its shares). Refuses when the ledger's `U1` is not the one it masked
    /// with, or when the ledger calls it dropped although it answered: then the aggregator
    /// claimed a dropout that did not happen, and the site reveals nothing.
    pub fn reveal(
        &self,
        me: &MemberId,
        key: &Keypair,
        my_u1: &[usize],
        held: &[(usize, HeldShare)],
        ledger: &RoundRecord,
    ) -> Result<RevealMsg, RoundError> {
        let i = self.site(me)?;
        let (u1, u2) = self.ledger_sets(ledger)?;
        if u1 != my_u1 {
            return Err(RoundError::Sets(
                "the ledger's dealers are not the ones this site masked with".into(),
            ));
        }
        if !u2.contains(&i) {
            return Err(RoundError::Sets(
                "the ledger calls this site dropped although it sent its masked vector; it reveals nothing".into(),
            ));
        }
        let r = secagg::reveal(&self.round, i, &u1, &u2, held)?;
        let body = RevealBody {
            job: self.id(),
            member: me.clone(),
            self_shares: self.named(&r.self_shares),
            bundle_shares: self.named(&r.bundle_shares),
        };
        Signed::sign(key, REVEAL_NAMESPACE, body).ok_or(RoundError::Message {
            member: me.clone(),
            why: "cannot sign",
        })
    }

    fn named(&self, shares: &[(usize, secagg::Scalar)]) -> Vec<(MemberId, Hex)> {
        Revealed::encode_shares(shares)
            .into_iter()
            .filter_map(|(i, b)| self.owners.get(i).map(|m| (m.clone(), Hex(b))))
            .collect()
    }

    /// Checks a reveal: for this job, from a survivor, signed. Returns it as indices.
    pub fn check_reveal(&self, msg: &RevealMsg, u2: &[usize]) -> Result<Revealed, RoundError> {
        let b = &msg.body;
        let bad = |why| RoundError::Message {
            member: b.member.clone(),
            why,
        };
        let i = self.signed_by_site(msg, &b.member, b.job, REVEAL_NAMESPACE)?;
        if !u2.contains(&i) {
            return Err(bad("reveal from a site that did not survive"));
        }
        let decode = |list: &[(MemberId, Hex)]| -> Result<_, RoundError> {
            let mut out = Vec::with_capacity(list.len());
            for (m, h) in list {
                let d = self.site(m)?;
                out.push((d, h.0.clone()));
            }
            Revealed::decode_shares(&out).ok_or(bad("malformed share"))
        };
        Ok(Revealed {
            holder: i,
            self_shares: decode(&b.self_shares)?,
            bundle_shares: decode(&b.bundle_shares)?,
        })
    }

    /// The aggregator's unmasking: the totals over `U2` (signed values) and the holders whose
    /// reveals did not match a commitment.
    pub fn unmask(
        &self,
        u1: &[usize],
        u2: &[usize],
        dealings: &[(usize, Dealing)],
        masked: &[(usize, Vec<u64>)],
        reveals: &[Revealed],
    ) -> Result<(Vec<i64>, Vec<MemberId>), RoundError> {
        let (sum, cheaters) = secagg::unmask(&self.round, u1, u2, dealings, masked, reveals)?;
        Ok((
            sum.into_iter().map(secagg::decode_i64).collect(),
            self.members(&cheaters),
        ))
    }
}

use crate::wire::Signed;
