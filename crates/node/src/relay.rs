//! The console's relay of a patient's record download: the page a patient opened at one node
//! asks every hospital for its part of the record, but the page may talk to its own node only
//! (content security policy `default-src 'self'`, and the browser knows no other node's pinned
//! certificate). So the node passes exactly one kind of request on —
//! `GET /console/relay/{member}/v1/records/export` becomes `GET /v1/records/export` at
//! `member`'s node, over the client that pins the genesis certificates — with the patient's
//! authorization header untouched. That header is signed in the browser for `member`'s node and
//! for that path only, so the relaying node can neither read it as its own nor replay it at
//! another node; it sees the bytes pass, as any TLS-terminating hop would. The researcher's
//! pages need one more: `GET /console/relay/{member}/v1/worker/jobs/{job}/result`, a released
//! study result at the aggregating hospital's node (signed for that node and path alike; the
//! page checks the bytes against the result hash on the ledger). The open pool's download needs
//! two: `POST /console/relay/{member}/v1/worker/releases/deliver` (the release's manifest, its
//! signed body passed on byte for byte) and `GET /console/relay/{member}/v1/worker/releases/
//! {dataset}/files/{name}` (a file the manifest lists), both at the release owner's node and
//! signed for it; the page checks the manifest against the catalog's hash and every file against
//! the manifest. Nothing else is relayed.

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest answer relayed (a patient's Bundle is far smaller; a release's file may not be).
const MAX_RELAYED_BYTES: usize = 64 * 1024 * 1024;
/// The largest request body relayed (a release's fetch request is a few dozen bytes).
const MAX_RELAYED_BODY: usize = 1024;

struct Relay {
    client: reqwest::Client,
    nodes: BTreeMap<String, String>,
}

/// The relay's route, reaching `nodes` (member name to API base URL) with `client`.
pub fn router(client: reqwest::Client, nodes: BTreeMap<String, String>) -> Router {
    Router::new()
        .route("/console/relay/{member}/v1/records/export", get(export))
        .route(
            "/console/relay/{member}/v1/worker/jobs/{job}/result",
            get(job_result),
        )
        .route(
            "/console/relay/{member}/v1/worker/releases/deliver",
            post(release_deliver).layer(DefaultBodyLimit::max(MAX_RELAYED_BODY)),
        )
        .route(
            "/console/relay/{member}/v1/worker/releases/{dataset}/files/{name}",
            get(release_file),
        )
        .with_state(Arc::new(Relay { client, nodes }))
}

/// What a relayed request is: its method and path at the member's node, and its body.
struct Hop<'a> {
    post: Option<&'a Bytes>,
    path: String,
    /// The content type of the answer passed back.
    answer: &'static str,
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": msg }).to_string(),
    )
        .into_response()
}

async fn export(
    State(r): State<Arc<Relay>>,
    Path(member): Path<String>,
    headers: HeaderMap,
) -> Response {
    pass(
        &r,
        &member,
        get_json("/v1/records/export".to_string()),
        &headers,
    )
    .await
}

fn get_json<'a>(path: String) -> Hop<'a> {
    Hop {
        post: None,
        path,
        answer: "application/json",
    }
}

/// A release's manifest: the request's body (which the signature covers) passed on unchanged.
async fn release_deliver(
    State(r): State<Arc<Relay>>,
    Path(member): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hop = Hop {
        post: Some(&body),
        path: "/v1/worker/releases/deliver".to_string(),
        answer: "application/json",
    };
    pass(&r, &member, hop, &headers).await
}

/// A dataset id or a release's file name: letters, digits, `.`, `_` and `-`, not starting with
/// a dot (nothing that could reach another path).
fn plain_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A file of a delivered release.
async fn release_file(
    State(r): State<Arc<Relay>>,
    Path((member, dataset, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !plain_name(&dataset, 48) || !plain_name(&name, 128) {
        return refuse(StatusCode::BAD_REQUEST, "not a release's file");
    }
    let hop = Hop {
        post: None,
        path: format!("/v1/worker/releases/{dataset}/files/{name}"),
        answer: "application/octet-stream",
    };
    pass(&r, &member, hop, &headers).await
}

async fn job_result(
    State(r): State<Arc<Relay>>,
    Path((member, job)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    // A job id only (`j-` and hex): nothing that could reach another path.
    let ok = job.strip_prefix("j-").is_some_and(|h| {
        !h.is_empty() && h.len() <= 16 && h.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if !ok {
        return refuse(StatusCode::BAD_REQUEST, "not a job id");
    }
    pass(
        &r,
        &member,
        get_json(format!("/v1/worker/jobs/{job}/result")),
        &headers,
    )
    .await
}

async fn pass(r: &Relay, member: &str, hop: Hop<'_>, headers: &HeaderMap) -> Response {
    let Some(base) = r.nodes.get(member) else {
        return refuse(StatusCode::NOT_FOUND, "no such node in the genesis");
    };
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing authorization header: sign the request with your key",
        );
    };
    let url = format!("{base}{}", hop.path);
    let request = match hop.post {
        Some(body) => r
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone()),
        None => r.client.get(url),
    };
    let sent = request
        .header(header::AUTHORIZATION, auth.clone())
        .send()
        .await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(member = %member, path = %hop.path, error = %e, "node.relay: unreachable");
            return refuse(
                StatusCode::BAD_GATEWAY,
                "the hospital's node is unreachable",
            );
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RELAYED_BYTES as u64)
    {
        return refuse(
            StatusCode::BAD_GATEWAY,
            "the hospital's answer is too large",
        );
    }
    match resp.bytes().await {
        Ok(body) if body.len() <= MAX_RELAYED_BYTES => {
            let mut out = Response::new(Body::from(body));
            *out.status_mut() = status;
            // A refusal is the node's JSON; an answer is what the route serves.
            let kind = if status.is_success() {
                hop.answer
            } else {
                "application/json"
            };
            out.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            out
        }
        Ok(_) => refuse(
            StatusCode::BAD_GATEWAY,
            "the hospital's answer is too large",
        ),
        Err(_) => refuse(StatusCode::BAD_GATEWAY, "the hospital's answer was cut off"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// What the member's node saw: method, path, authorization header and body.
    type Seen = Arc<Mutex<Vec<(String, String, String, Vec<u8>)>>>;

    /// A stand-in for a member's node: records each request; answers a manifest, a file, or
    /// refuses (`forbidden` in the file name).
    async fn upstream(seen: Seen) -> String {
        let app = Router::new().fallback(
            move |method: axum::http::Method, uri: axum::http::Uri, h: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    let auth = h
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock().unwrap().push((
                        method.to_string(),
                        uri.path().to_string(),
                        auth,
                        body.to_vec(),
                    ));
                    if uri.path().contains("forbidden") {
                        return (StatusCode::FORBIDDEN, "{\"error\":\"no live delivery\"}")
                            .into_response();
                    }
                    if uri.path().ends_with("/deliver") {
                        return (StatusCode::OK, "{\"format\":\"medspace-release/1\"}")
                            .into_response();
                    }
                    (StatusCode::OK, Bytes::from_static(b"PAR1\x00\x01binary")).into_response()
                }
            },
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}")
    }

    async fn relay(base: String) -> String {
        let nodes = BTreeMap::from([("hospital-a".to_string(), base)]);
        let client = medspace_chain::tls::plain_client(std::time::Duration::from_secs(10)).unwrap();
        let app = router(client, nodes);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[test]
    fn the_open_pool_paths_pass_signature_and_body_untouched_and_nothing_else() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let seen: Seen = Arc::default();
            let node = upstream(seen.clone()).await;
            let relay = relay(node).await;
            let client =
                medspace_chain::tls::plain_client(std::time::Duration::from_secs(10)).unwrap();
            let auth = "Medspace key=ab,ts=1,nonce=00,aud=hospital-a,sig=cd";
            let body = br#"{"contract":"c-00000000000000a1","dataset":"hospital-a.open","after_height":7}"#;

            // The manifest: the body the browser signed, byte for byte, and its header.
            let r = client
                .post(format!(
                    "{relay}/console/relay/hospital-a/v1/worker/releases/deliver"
                ))
                .header(header::AUTHORIZATION, auth)
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
            assert_eq!(r.text().await.unwrap(), "{\"format\":\"medspace-release/1\"}");
            {
                let s = seen.lock().unwrap();
                let (m, p, a, b) = s.last().unwrap();
                assert_eq!(
                    (m.as_str(), p.as_str(), a.as_str()),
                    ("POST", "/v1/worker/releases/deliver", auth)
                );
                assert_eq!(b, body);
            }

            // A file: its bytes, as bytes.
            let r = client
                .get(format!(
                    "{relay}/console/relay/hospital-a/v1/worker/releases/hospital-a.open/files/person.parquet"
                ))
                .header(header::AUTHORIZATION, auth)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()[header::CONTENT_TYPE], "application/octet-stream");
            assert_eq!(&r.bytes().await.unwrap()[..], b"PAR1\x00\x01binary");
            assert_eq!(
                seen.lock().unwrap().last().unwrap().1,
                "/v1/worker/releases/hospital-a.open/files/person.parquet"
            );

            // The node's refusal passes as it is.
            let r = client
                .get(format!(
                    "{relay}/console/relay/hospital-a/v1/worker/releases/hospital-a.open/files/forbidden.csv"
                ))
                .header(header::AUTHORIZATION, auth)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403);
            assert!(r.text().await.unwrap().contains("no live delivery"));
            let reached = seen.lock().unwrap().len();

            // Refused here, never passed on: names that could reach another path, an unknown
            // node, no signature, an oversized body, any other path.
            let status = |method: &'static str, path: String, body: Vec<u8>, signed: bool| {
                let client = client.clone();
                let relay = relay.clone();
                async move {
                    let mut req = if method == "POST" {
                        client.post(format!("{relay}{path}")).body(body)
                    } else {
                        client.get(format!("{relay}{path}"))
                    };
                    if signed {
                        req = req.header(header::AUTHORIZATION, auth);
                    }
                    req.send().await.unwrap().status().as_u16()
                }
            };
            let files = "/console/relay/hospital-a/v1/worker/releases";
            for (method, path, body, signed, want) in [
                ("GET", format!("{files}/hospital-a.open/files/..%2Fmanifest.json"), vec![], true, 400),
                ("GET", format!("{files}/hospital-a.open/files/a%2Fb.csv"), vec![], true, 400),
                ("GET", format!("{files}/..%2Fjobs/files/x.csv"), vec![], true, 400),
                ("GET", format!("{files}/hospital-a.open/files/.hidden"), vec![], true, 400),
                ("GET", "/console/relay/hospital-z/v1/worker/releases/x.open/files/a.csv".to_string(), vec![], true, 404),
                ("GET", format!("{files}/hospital-a.open/files/a.csv"), vec![], false, 401),
                ("POST", format!("{files}/deliver"), vec![b' '; MAX_RELAYED_BODY + 1], true, 413),
                ("POST", format!("{files}/plan"), b"{}".to_vec(), true, 404),
                ("GET", "/console/relay/hospital-a/v1/worker/vault".to_string(), vec![], true, 404),
            ] {
                assert_eq!(
                    status(method, path.clone(), body, signed).await,
                    want,
                    "{method} {path}"
                );
            }
            assert_eq!(seen.lock().unwrap().len(), reached, "nothing else reached the node");
        });
    }
}
