//! The compute actor's mailbox and messages.

use super::{ModelRows, SiteVector};
use crate::transport::PeerError;
use crate::wire::{
    DealingMsg, MaskRequest, MaskedMsg, OpenAnswer, OpenAsk, PsiAnswer, PsiAsk, RevealMsg, StepMsg,
    StepRequest, SumsMsg,
};
use futures::SinkExt as _;
use futures::channel::{mpsc, oneshot};
use medspace_types::{JobId, MemberId};
use std::sync::Arc;

/// A reply channel.
pub type Reply<T> = oneshot::Sender<Result<T, PeerError>>;

/// What the compute actor is told or asked.
pub enum Message {
    /// The node committed a block at `height`.
    Committed {
        /// The height.
        height: u64,
    },
    /// The data plane finished this site's vector of a job (or refused it).
    Computed {
        /// The job.
        job: JobId,
        /// The vector, or why not.
        outcome: Result<SiteVector, String>,
        /// The earlier sites its patients were matched with.
        counted_once_with: Vec<MemberId>,
    },
    /// The data plane finished this site's rows of a model's job (or refused it).
    Modeled {
        /// The job.
        job: JobId,
        /// The rows, or why not.
        outcome: Result<Arc<ModelRows>, String>,
        /// The earlier sites its patients were matched with.
        counted_once_with: Vec<MemberId>,
    },
    /// The aggregator of a model's job asks for this site's statistics at a step (answered
    /// once the ledger fixed the job's set).
    Step {
        /// The authenticated caller.
        caller: MemberId,
        /// The step.
        request: StepRequest,
        /// Where the answer goes.
        reply: Reply<StepMsg>,
    },
    /// A later site of a job sends its count-once set (answered once computed).
    Psi {
        /// The authenticated caller.
        caller: MemberId,
        /// Its set.
        ask: PsiAsk,
        /// Where the answer goes.
        reply: Reply<PsiAnswer>,
    },
    /// This site's answer to a count-once set is computed (or refused).
    PsiAnswered {
        /// The job.
        job: JobId,
        /// The receiver.
        caller: MemberId,
        /// The answer, or why not.
        outcome: Result<PsiAnswer, String>,
    },
    /// This hospital's sums of a vertical study are made (or refused).
    Summed {
        /// The job.
        job: JobId,
        /// The signed sums, or why not.
        outcome: Result<SumsMsg, String>,
    },
    /// The aggregator of a vertical study asks for this hospital's sums.
    Sums {
        /// The job.
        job: JobId,
        /// The authenticated caller.
        caller: MemberId,
        /// Where the answer goes.
        reply: Reply<SumsMsg>,
    },
    /// The aggregator of a vertical study asks this site (its insurer) to open the total.
    Open {
        /// The authenticated caller.
        caller: MemberId,
        /// The sums.
        ask: OpenAsk,
        /// Where the answer goes.
        reply: Reply<OpenAnswer>,
    },
    /// The job's aggregator asks for this site's dealing (answered once it exists).
    Dealing {
        /// The job.
        job: JobId,
        /// The authenticated caller.
        caller: MemberId,
        /// Where the answer goes.
        reply: Reply<DealingMsg>,
    },
    /// The job's aggregator asks for this site's masked vector for the forwarded dealings.
    Mask {
        /// The authenticated caller.
        caller: MemberId,
        /// The dealings.
        request: MaskRequest,
        /// Where the answer goes.
        reply: Reply<MaskedMsg>,
    },
    /// The job's aggregator asks for this site's reveal (answered once the ledger closed the
    /// round).
    Reveal {
        /// The job.
        job: JobId,
        /// The authenticated caller.
        caller: MemberId,
        /// Where the answer goes.
        reply: Reply<RevealMsg>,
    },
    /// An aggregation task ended.
    Aggregated {
        /// The job.
        job: JobId,
        /// Posted, or why not.
        outcome: Result<(), String>,
    },
}

/// The compute actor's mailbox.
#[derive(Clone)]
pub struct Mailbox {
    sender: mpsc::Sender<Message>,
}

impl Mailbox {
    /// A mailbox over `sender`.
    pub fn new(sender: mpsc::Sender<Message>) -> Self {
        Self { sender }
    }

    /// Delivers `msg` (dropped if the actor stopped).
    pub async fn send(&self, msg: Message) {
        let _ = self.sender.clone().send(msg).await;
    }

    /// Tells the actor of a committed block without waiting (a full mailbox drops the notice;
    /// the next block's carries the news).
    pub fn committed(&self, height: u64) {
        let _ = self.sender.clone().try_send(Message::Committed { height });
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Message) -> Result<T, PeerError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await;
        rx.await
            .unwrap_or_else(|_| Err(PeerError::Unreachable("the compute service stopped".into())))
    }

    /// This site's dealing for `job`, for `caller`.
    pub async fn dealing(&self, job: JobId, caller: MemberId) -> Result<DealingMsg, PeerError> {
        self.ask(|reply| Message::Dealing { job, caller, reply })
            .await
    }

    /// This site's masked vector for `request`, for `caller`.
    pub async fn mask(
        &self,
        request: MaskRequest,
        caller: MemberId,
    ) -> Result<MaskedMsg, PeerError> {
        self.ask(|reply| Message::Mask {
            caller,
            request,
            reply,
        })
        .await
    }

    /// This site's statistics for a model's step, for `caller`.
    pub async fn step(&self, request: StepRequest, caller: MemberId) -> Result<StepMsg, PeerError> {
        self.ask(|reply| Message::Step {
            caller,
            request,
            reply,
        })
        .await
    }

    /// This site's answer to `caller`'s count-once set.
    pub async fn psi(&self, ask: PsiAsk, caller: MemberId) -> Result<PsiAnswer, PeerError> {
        self.ask(|reply| Message::Psi { caller, ask, reply }).await
    }

    /// This hospital's signed sums of a vertical study, for `caller`.
    pub async fn sums(&self, job: JobId, caller: MemberId) -> Result<SumsMsg, PeerError> {
        self.ask(|reply| Message::Sums { job, caller, reply }).await
    }

    /// This site's opening of a vertical study's sums, for `caller`.
    pub async fn open(&self, ask: OpenAsk, caller: MemberId) -> Result<OpenAnswer, PeerError> {
        self.ask(|reply| Message::Open { caller, ask, reply }).await
    }

    /// This site's reveal for `job`, for `caller`.
    pub async fn reveal(&self, job: JobId, caller: MemberId) -> Result<RevealMsg, PeerError> {
        self.ask(|reply| Message::Reveal { job, caller, reply })
            .await
    }
}
