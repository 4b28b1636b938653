//! The genesis description of a consortium: chain id, members, users, balances and policy.

use crate::domain::{Member, Policy, Role};
use crate::ids::{MemberId, Name, UserId};
use crate::keys::PublicKey;
use serde::{Deserialize, Serialize};

/// A user registered at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisUser {
    /// The user.
    pub id: UserId,
    /// Their institution.
    pub member: MemberId,
    /// Their role.
    pub role: Role,
    /// Their key.
    pub key: PublicKey,
}

/// A member at genesis, with its starting credits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisMember {
    /// The member.
    #[serde(flatten)]
    pub member: Member,
    /// Starting credits.
    pub balance: u64,
}

/// Everything the first state is built from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The chain id every transaction must carry.
    pub chain_id: Name,
    /// Block time of genesis, ms since the epoch.
    pub time_ms: u64,
    /// The founding members.
    pub members: Vec<GenesisMember>,
    /// Users registered from the start.
    pub users: Vec<GenesisUser>,
    /// The policy.
    pub policy: Policy,
}
