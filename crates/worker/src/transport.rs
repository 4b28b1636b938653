//! How a data holder reaches the others: a [`Transport`] with one call per round step (the
//! aggregator's) and the count-once set (a later site's, to each earlier one), and
//! `ask_until`, the ask-again loop both use. [`HttpTransport`] is the production one (signed
//! requests to each member's node); the simulations use an in-memory one with scripted delays
//! and failures.

use crate::wire::{
    DealingMsg, MaskRequest, MaskedMsg, OpenAnswer, OpenAsk, PsiAnswer, PsiAsk, RevealMsg, StepMsg,
    StepRequest, SumsMsg,
};
use medspace_types::{JobId, Keypair, MemberId};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime};

/// Why a peer gave no usable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The site refused, with its reason.
    #[error("refused: {0}")]
    Refused(String),
    /// The caller may not ask this (not the job's aggregator).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The site has nothing yet (ask again).
    #[error("not ready")]
    NotReady,
    /// The site could not be reached.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The answer does not parse.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// The aggregator's calls to another data holder. Each waits at most `wait` at the site for
/// something not ready yet; the caller bounds the whole call with its own deadline.
pub trait Transport: Clone + Send + Sync + 'static {
    /// The site's dealing for `job`.
    fn dealing(
        &self,
        to: &MemberId,
        job: JobId,
        wait: Duration,
    ) -> impl Future<Output = Result<DealingMsg, PeerError>> + Send;

    /// The site's masked vector for the dealers of `req`.
    fn mask(
        &self,
        to: &MemberId,
        req: MaskRequest,
    ) -> impl Future<Output = Result<MaskedMsg, PeerError>> + Send;

    /// The site's reveal for the ledger's sets of `job`.
    fn reveal(
        &self,
        to: &MemberId,
        job: JobId,
        wait: Duration,
    ) -> impl Future<Output = Result<RevealMsg, PeerError>> + Send;

    /// The site's statistics for one step of a model's job (waits at the site until the
    /// ledger fixed the job's set). A transport that carries no model steps refuses.
    fn step(
        &self,
        to: &MemberId,
        req: StepRequest,
    ) -> impl Future<Output = Result<StepMsg, PeerError>> + Send {
        let _ = (to, req);
        async {
            Err(PeerError::Refused(
                "this transport carries no model steps".into(),
            ))
        }
    }

    /// A vertical study's hospital's signed sums (waits at the site up to `wait` while it
    /// joins). A transport that carries no vertical studies refuses.
    fn sums(
        &self,
        to: &MemberId,
        job: JobId,
        wait: Duration,
    ) -> impl Future<Output = Result<SumsMsg, PeerError>> + Send {
        let _ = (to, job, wait);
        async {
            Err(PeerError::Refused(
                "this transport carries no vertical studies".into(),
            ))
        }
    }

    /// A vertical study's insurer opens the total of the hospitals' sums (at once: it refuses
    /// before the ledger closed the round). A transport that carries no vertical studies
    /// refuses.
    fn open(
        &self,
        to: &MemberId,
        ask: OpenAsk,
    ) -> impl Future<Output = Result<OpenAnswer, PeerError>> + Send {
        let _ = (to, ask);
        async {
            Err(PeerError::Refused(
                "this transport carries no vertical studies".into(),
            ))
        }
    }

    /// An earlier site's answer to this site's count-once set (waits at the site up to
    /// `wait` while it computes). A transport that carries no such sets refuses.
    fn psi(
        &self,
        to: &MemberId,
        ask: PsiAsk,
        wait: Duration,
    ) -> impl Future<Output = Result<PsiAnswer, PeerError>> + Send {
        let _ = (to, ask, wait);
        async {
            Err(PeerError::Refused(
                "this transport carries no count-once sets".into(),
            ))
        }
    }
}

/// How long one request may wait at the site before asking again.
const POLL: Duration = Duration::from_secs(5);

/// Asks one site, again while it is not ready or unreachable, until `deadline`.
pub(crate) async fn ask_until<E, F, Fut, R>(
    clock: &E,
    deadline: SystemTime,
    mut ask: F,
) -> Result<R, PeerError>
where
    E: commonware_runtime::Clock,
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<R, PeerError>>,
{
    let mut last = PeerError::NotReady;
    loop {
        let left = deadline
            .duration_since(clock.current())
            .unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return Err(match last {
                PeerError::NotReady => {
                    PeerError::Unreachable("no answer before the deadline".into())
                }
                other => other,
            });
        }
        let wait = left.min(POLL);
        match crate::within(clock, left, ask(wait)).await {
            Some(Ok(r)) => return Ok(r),
            Some(Err(PeerError::NotReady)) => last = PeerError::NotReady,
            Some(Err(PeerError::Unreachable(e))) => {
                last = PeerError::Unreachable(e);
                // The site's node is down or restarting: try again shortly.
                clock.sleep(Duration::from_millis(200).min(left)).await;
            }
            Some(Err(other)) => return Err(other),
            None => {
                return Err(PeerError::Unreachable(
                    "no answer before the deadline".into(),
                ));
            }
        }
    }
}

/// The text of an error answer (its `error` field, or the status).
pub(crate) fn error_text(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .map_or_else(
            || format!("http status {status}"),
            |e| format!("{e} (http {status})"),
        )
}

/// Signed HTTP requests to each member's node (`/v1/worker/jobs/{job}/…`).
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    key: Keypair,
    peers: BTreeMap<MemberId, String>,
}

impl HttpTransport {
    /// A transport signing with `key`, reaching each member at its plain-HTTP base URL (a
    /// client trusting no certificate: [`medspace_chain::tls::plain_client`]). Nodes use
    /// [`HttpTransport::with_client`] with the client that pins the genesis certificates.
    pub fn new(key: Keypair, peers: BTreeMap<MemberId, String>) -> Result<Self, PeerError> {
        let client = medspace_chain::tls::plain_client(Duration::from_secs(60))
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        Ok(Self::with_client(client, key, peers))
    }

    /// A transport signing with `key`, reaching each member at its base URL through `client`
    /// (e.g. [`medspace_chain::tls::client`], which trusts exactly the genesis certificates).
    pub fn with_client(
        client: reqwest::Client,
        key: Keypair,
        peers: BTreeMap<MemberId, String>,
    ) -> Self {
        Self { client, key, peers }
    }

    fn url(&self, to: &MemberId) -> Result<&str, PeerError> {
        self.peers
            .get(to)
            .map(String::as_str)
            .ok_or_else(|| PeerError::Unreachable(format!("no address known for member={to}")))
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        to: &MemberId,
        method: &'static str,
        path_and_query: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        let url = format!("{}{path_and_query}", self.url(to)?);
        let auth = medspace_api::auth::Request {
            method,
            path_and_query: &path_and_query,
            audience: to.as_str(),
            body: &body,
        }
        .sign(&self.key);
        let req = match method {
            "POST" => self.client.post(&url).body(body),
            _ => self.client.get(&url),
        }
        .header("authorization", auth)
        .header("content-type", "application/json")
        .timeout(timeout + Duration::from_secs(2));
        let resp = req
            .send()
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        match status {
            200 => serde_json::from_slice(&bytes).map_err(|e| PeerError::Malformed(e.to_string())),
            202 => Err(PeerError::NotReady),
            403 => Err(PeerError::Forbidden(error_text(status, &bytes))),
            _ => Err(PeerError::Refused(error_text(status, &bytes))),
        }
    }
}

impl Transport for HttpTransport {
    fn dealing(
        &self,
        to: &MemberId,
        job: JobId,
        wait: Duration,
    ) -> impl Future<Output = Result<DealingMsg, PeerError>> + Send {
        let pq = format!("/v1/worker/jobs/{job}/dealing?wait_ms={}", wait.as_millis());
        let (this, to) = (self.clone(), to.clone());
        async move { this.call(&to, "GET", pq, Vec::new(), wait).await }
    }

    fn mask(
        &self,
        to: &MemberId,
        req: MaskRequest,
    ) -> impl Future<Output = Result<MaskedMsg, PeerError>> + Send {
        let pq = format!("/v1/worker/jobs/{}/mask", req.job);
        let body = serde_json::to_vec(&req).unwrap_or_default();
        let (this, to) = (self.clone(), to.clone());
        async move {
            this.call(&to, "POST", pq, body, Duration::from_secs(10))
                .await
        }
    }

    fn reveal(
        &self,
        to: &MemberId,
        job: JobId,
        wait: Duration,
    ) -> impl Future<Output = Result<RevealMsg, PeerError>> + Send {
        let pq = format!("/v1/worker/jobs/{job}/reveal?wait_ms={}", wait.as_millis());
        let (this, to) = (self.clone(), to.clone());
        async move { this.call(&to, "GET", pq, Vec::new(), wait).await }
    }

    fn psi(
        &self,
        to: &MemberId,
        ask: PsiAsk,
        wait: Duration,
    ) -> impl Future<Output = Result<PsiAnswer, PeerError>> + Send {
        let pq = format!(
            "/v1/worker/jobs/{}/psi?wait_ms={}",
            ask.job,
            wait.as_millis()
        );
        let body = serde_json::to_vec(&ask).unwrap_or_default();
        let (this, to) = (self.clone(), to.clone());
        async move { this.call(&to, "POST", pq, body, wait).await }
    }

    fn sums(
        &self,
        to: &MemberId,
        job: JobId,
        wait: Duration,
    ) -> impl Future<Output = Result<SumsMsg, PeerError>> + Send {
        let pq = format!("/v1/worker/jobs/{job}/sums?wait_ms={}", wait.as_millis());
        let (this, to) = (self.clone(), to.clone());
        async move { this.call(&to, "GET", pq, Vec::new(), wait).await }
    }

    fn open(
        &self,
        to: &MemberId,
        ask: OpenAsk,
    ) -> impl Future<Output = Result<OpenAnswer, PeerError>> + Send {
        let pq = format!("/v1/worker/jobs/{}/open", ask.job);
        let body = serde_json::to_vec(&ask).unwrap_or_default();
        let (this, to) = (self.clone(), to.clone());
        // Opening searches a discrete logarithm per cell: it may take a while on a big study.
        async move {
            this.call(&to, "POST", pq, body, Duration::from_secs(120))
                .await
        }
    }

    fn step(
        &self,
        to: &MemberId,
        req: StepRequest,
    ) -> impl Future<Output = Result<StepMsg, PeerError>> + Send {
        let pq = format!("/v1/worker/jobs/{}/step", req.job);
        let body = serde_json::to_vec(&req).unwrap_or_default();
        let (this, to) = (self.clone(), to.clone());
        async move {
            this.call(&to, "POST", pq, body, Duration::from_secs(30))
                .await
        }
    }
}
