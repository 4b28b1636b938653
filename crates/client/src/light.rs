//! A patient's light client: it never sees a block's transactions (validators serve those to
//! the consortium only) and trusts no node's word either.
//!
//! It reads the few records that concern the patient through a validator's read API — each
//! answer names the height of the state it comes from — then fetches that height's header with
//! its finality certificate, checks the certificate against the genesis validators
//! ([`medspace_chain::follow::HeaderCheck`]) and every record's inclusion proof against the root
//! in that header. Transactions are signed here and submitted to a validator; one counts as
//! applied once the proven state shows the key's nonce past it.

use crate::records::{LogLine, job_lines, log_lines};
use crate::{ClientError, Result};
use commonware_codec::DecodeExt as _;
use medspace_chain::block::Header;
use medspace_chain::follow::HeaderCheck;
use medspace_chain::node::Genesis as ChainGenesis;
use medspace_state::records::{
    AccessRecord, ContractRecord, GrantRecord, JobRecord, KeyRecord, LogEntry, Principal, keys,
};
use medspace_state::trie::Proof;
use medspace_state::{CountedJob, Proven};
use medspace_types::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long a transaction may take to become final.
const FINAL_WAIT: Duration = Duration::from_secs(60);

/// A light client acting with one key (a patient's).
pub struct LightClient {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// The validators: name (the audience of signed requests) and API base URL.
    validators: Vec<(String, String)>,
    /// Every node (validators and observers) by member: its API base URL.
    nodes: std::collections::BTreeMap<String, String>,
    check: HeaderCheck,
    chain_id: Name,
    key: Keypair,
}

fn http(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Http {
        what: what.to_string(),
        error: e.to_string(),
    }
}

fn malformed(what: &str) -> ClientError {
    ClientError::Verification(format!("a node answered a malformed {what}"))
}

/// An answer's records, checked against the root of a certified header.
struct Anchored {
    body: Value,
    root: Hash,
}

impl LightClient {
    /// A light client of `genesis`'s chain acting with `key`.
    pub fn connect(genesis: &ChainGenesis, key: &Keypair) -> Result<Self> {
        Ok(Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ClientError::Runtime(e.to_string()))?,
            // Every node over TLS, trusting exactly the certificates the genesis pins.
            client: medspace_chain::tls::client(genesis, Duration::from_secs(30))
                .map_err(|e| ClientError::Runtime(e.to_string()))?,
            validators: genesis
                .validators
                .iter()
                .map(|v| (v.name.clone(), medspace_chain::tls::node_url(v)))
                .collect(),
            nodes: genesis
                .validators
                .iter()
                .chain(&genesis.observers)
                .map(|n| (n.name.clone(), medspace_chain::tls::node_url(n)))
                .collect(),
            check: HeaderCheck::new(genesis)?,
            chain_id: Name::new(&genesis.chain_id)?,
            key: key.clone(),
        })
    }

    /// A `GET` of `path` at the node `name` (`url`), signed for it: its status and body.
    fn get_from(&self, name: &str, url: &str, path: &str) -> Result<(u16, Vec<u8>)> {
        let auth = medspace_api::auth::Request {
            method: "GET",
            path_and_query: path,
            audience: name,
            body: b"",
        }
        .sign(&self.key);
        let what = format!("GET {url}{path}");
        let req = self
            .client
            .get(format!("{url}{path}"))
            .header("authorization", auth);
        self.runtime.block_on(async {
            let r = req.send().await.map_err(|e| http(&what, e))?;
            let status = r.status().as_u16();
            let body = r.bytes().await.map_err(|e| http(&what, e))?;
            Ok((status, body.to_vec()))
        })
    }

    /// A signed `GET` of `path` at the first validator that answers: its status and body.
    fn get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        let mut last = None;
        for (name, url) in &self.validators {
            match self.get_from(name, url, path) {
                Ok(a) => return Ok(a),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Missing("no validators in the genesis".into())))
    }

    /// A signed `GET` of `path` at `member`'s node (a hospital's record services).
    pub fn get_at(&self, member: &MemberId, path: &str) -> Result<(u16, Vec<u8>)> {
        let url = self.nodes.get(member.as_str()).ok_or_else(|| {
            ClientError::Missing(format!("no node named {member} in the genesis"))
        })?;
        self.get_from(member.as_str(), url, path)
    }

    /// The latest finalized header, its certificate checked.
    pub fn latest(&self) -> Result<Header> {
        let (status, body) = self.get("/v1/blocks")?;
        if status != 200 {
            return Err(refused("the latest height", status, &body));
        }
        let height = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("height").and_then(Value::as_u64))
            .ok_or_else(|| malformed("latest height"))?;
        self.header(height)
    }

    /// The header at `height`, its finality certificate checked.
    pub fn header(&self, height: u64) -> Result<Header> {
        let (status, body) = self.get(&format!("/v1/blocks/{height}/header?wait_ms=5000"))?;
        if status != 200 {
            return Err(refused(&format!("the header at {height}"), status, &body));
        }
        Ok(self.check.verify(height, &body)?)
    }

    /// A read-API answer whose records are to be checked: the certified root of its height.
    fn anchored(&self, path: &str) -> Result<Option<Anchored>> {
        let (status, body) = self.get(path)?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(refused(path, status, &body));
        }
        let body: Value = serde_json::from_slice(&body).map_err(|_| malformed("answer"))?;
        let height = body
            .get("height")
            .and_then(Value::as_u64)
            .ok_or_else(|| malformed("answer (no height)"))?;
        let header = self.header(height)?;
        Ok(Some(Anchored {
            body,
            root: Hash(header.state_root),
        }))
    }

    /// This client's own key record, proven (`None` for a key the ledger does not know).
    fn own_record(&self) -> Result<Option<KeyRecord>> {
        let key = keys::principal(&self.key.public());
        let path = format!("/v1/records/{}", hex::encode(&key));
        match self.anchored(&path) {
            Ok(Some(a)) => {
                let rec: Proven<KeyRecord> = proven(&a.body)?;
                rec.verify(&a.root).map_err(|e| {
                    ClientError::Verification(format!("the key record failed its proof: {e}"))
                })?;
                if rec.key != key {
                    return Err(malformed("key record (another key)"));
                }
                Ok(Some(rec.record))
            }
            Ok(None) => Ok(None),
            Err(ClientError::Refused { status: 403, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next nonce of this client's key, proven (0 for a key the ledger does not know).
    fn next_nonce(&self) -> Result<u64> {
        Ok(self.own_record()?.map_or(0, |r| r.nonce))
    }

    /// The pseudonym this client's key signs for, proven: the one derived from the key, or the
    /// one a hospital re-bound the key to. Refused for a key that is not a patient's or that
    /// was retired.
    pub fn pseudonym(&self) -> Result<PatientId> {
        match self.own_record()? {
            Some(KeyRecord {
                principal: Principal::Patient(id),
                retired: false,
                ..
            }) => Ok(id),
            Some(KeyRecord { retired: true, .. }) => Err(ClientError::Verification(
                "this key was retired (replaced, or a hospital re-bound its patient to a new key)"
                    .into(),
            )),
            _ => Err(ClientError::Missing(
                "this key is not a registered patient's".into(),
            )),
        }
    }

    /// Signs `payload` with the next nonce, submits it and waits until the proven state shows
    /// it applied; a refusal is the state machine's reason.
    pub fn must(&self, payload: Payload) -> Result<()> {
        let kind = payload.kind();
        let nonce = self.next_nonce()?;
        let tx = SignedTx::new(&self.chain_id, &self.key, nonce, payload);
        let id = hex::encode(tx.id().0);
        let mut last = None;
        let mut accepted_at = None;
        for (_, url) in &self.validators {
            let what = format!("POST {url}/v1/tx");
            let req = self
                .client
                .post(format!("{url}/v1/tx"))
                .body(tx.to_bytes().to_vec());
            match self.runtime.block_on(async {
                let r = req.send().await.map_err(|e| http(&what, e))?;
                let status = r.status().as_u16();
                let body = r.bytes().await.map_err(|e| http(&what, e))?;
                Ok::<_, ClientError>((status, body))
            }) {
                Ok((200, _)) => {
                    accepted_at = Some(url.clone());
                    break;
                }
                Ok((status, body)) => {
                    return Err(ClientError::Transaction {
                        kind,
                        reason: format!("{status}: {}", crate::records::error_reason(&body)),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(url) = accepted_at else {
            return Err(last.unwrap_or_else(|| ClientError::Missing("no validators".into())));
        };
        let started = Instant::now();
        loop {
            let what = format!("GET {url}/v1/tx/{id}");
            let req = self.client.get(format!("{url}/v1/tx/{id}"));
            let status: Value = self.runtime.block_on(async {
                let r = req.send().await.map_err(|e| http(&what, e))?;
                let b = r.bytes().await.map_err(|e| http(&what, e))?;
                serde_json::from_slice(&b).map_err(|e| http(&what, e))
            })?;
            match status.get("status").and_then(Value::as_str) {
                Some("finalized") => break,
                Some("dropped") => {
                    return Err(ClientError::Transaction {
                        kind,
                        reason: status
                            .get("reason")
                            .and_then(Value::as_str)
                            .unwrap_or("dropped")
                            .to_string(),
                    });
                }
                _ if started.elapsed() > FINAL_WAIT => {
                    return Err(ClientError::Timeout(format!("{kind} not final")));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // The validator's word is checked: the proven state must show the nonce used.
        if self.next_nonce()? <= nonce {
            return Err(ClientError::Verification(format!(
                "a validator called {kind} final, but the proven state does not show it applied"
            )));
        }
        Ok(())
    }

    /// The patient's log: every entry and the accesses it names, proven.
    pub fn log(&self, patient: &PatientId) -> Result<Vec<LogLine>> {
        let a = self
            .anchored(&format!("/v1/patients/{patient}/log"))?
            .ok_or_else(|| ClientError::Missing("no log".into()))?;
        let entries: Vec<Proven<LogEntry>> = proven_list(&a.body, "log")?;
        let accesses: Vec<Proven<AccessRecord>> = proven_list(&a.body, "accesses")?;
        for e in &entries {
            if e.key.get(1..33) != Some(&patient.0[..]) {
                return Err(malformed("log (another patient's entry)"));
            }
        }
        log_lines(&a.root, &entries, &accesses)
    }

    /// The jobs that may have counted the patient at `holders`, each job and contract proven.
    pub fn jobs(&self, patient: &PatientId, holders: &[MemberId]) -> Result<Vec<LogLine>> {
        let list: Vec<String> = holders.iter().map(ToString::to_string).collect();
        let a = self
            .anchored(&format!(
                "/v1/patients/{patient}/jobs?holders={}",
                list.join(",")
            ))?
            .ok_or_else(|| ClientError::Missing("no jobs answer".into()))?;
        let mut jobs = Vec::new();
        for j in a
            .body
            .get("jobs")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("jobs answer"))?
        {
            let at: MemberId = j
                .get("at")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("job entry"))?
                .parse()?;
            if !holders.contains(&at) {
                return Err(malformed("job entry (not at the patient's hospitals)"));
            }
            jobs.push(CountedJob {
                job: proven::<JobRecord>(j.get("job").ok_or_else(|| malformed("job"))?)?,
                contract: proven::<ContractRecord>(
                    j.get("contract").ok_or_else(|| malformed("contract"))?,
                )?,
                at,
            });
        }
        job_lines(&a.root, &jobs)
    }

    /// The patient's grants, proven.
    pub fn grants(&self, patient: &PatientId) -> Result<Vec<GrantRecord>> {
        let a = self
            .anchored(&format!("/v1/patients/{patient}/grants"))?
            .ok_or_else(|| ClientError::Missing("no grants answer".into()))?;
        let grants: Vec<Proven<GrantRecord>> = proven_list(&a.body, "grants")?;
        let mut out = Vec::new();
        for g in grants {
            g.verify(&a.root)
                .map_err(|e| ClientError::Verification(format!("a grant failed its proof: {e}")))?;
            if g.record.patient != *patient {
                return Err(malformed("grant (another patient's)"));
            }
            out.push(g.record);
        }
        Ok(out)
    }

    /// The active hospitals of the consortium (as the read API lists them; used only to know
    /// whom to ask for a record).
    pub fn hospitals(&self) -> Result<Vec<MemberId>> {
        let (status, body) = self.get("/v1/members")?;
        if status != 200 {
            return Err(refused("the members", status, &body));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|_| malformed("members"))?;
        let mut out = Vec::new();
        for m in v
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let active = m.get("active").and_then(Value::as_bool) == Some(true);
            let kind = m.pointer("/member/kind").and_then(Value::as_str);
            if let (true, Some("hospital"), Some(id)) = (
                active,
                kind,
                m.pointer("/member/id").and_then(Value::as_str),
            ) {
                out.push(id.parse()?);
            }
        }
        Ok(out)
    }
}

fn refused(what: &str, status: u16, body: &[u8]) -> ClientError {
    ClientError::Refused {
        what: what.to_string(),
        status,
        reason: crate::records::error_reason(body),
    }
}

/// A proven record from its JSON (`key`, `value`, `proof`): the record is decoded from the
/// value bytes the proof covers, never taken from the answer's own rendering.
fn proven<T: commonware_codec::Decode<Cfg = ()>>(v: &Value) -> Result<Proven<T>> {
    let hex_field = |name: &str| -> Result<Vec<u8>> {
        v.get(name)
            .and_then(Value::as_str)
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| malformed("proven record"))
    };
    let (key, value) = (hex_field("key")?, hex_field("value")?);
    let proof: Proof = serde_json::from_value(v.get("proof").cloned().unwrap_or(Value::Null))
        .map_err(|_| malformed("proof"))?;
    let record =
        T::decode(bytes::Bytes::from(value.clone())).map_err(|_| malformed("record encoding"))?;
    Ok(Proven {
        record,
        key,
        value,
        proof,
    })
}

fn proven_list<T: commonware_codec::Decode<Cfg = ()>>(
    body: &Value,
    field: &str,
) -> Result<Vec<Proven<T>>> {
    body.get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(field))?
        .iter()
        .map(proven)
        .collect()
}
