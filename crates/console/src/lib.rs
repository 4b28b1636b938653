//! medspace-console: the console every node serves, on the same port (and TLS) as its API.
//!
//! Plain HTML, CSS and vanilla ES modules compiled into the binary (`include_str!`): no build
//! step, nothing fetched from anywhere but the node itself (the content security policy says
//! `default-src 'self'`).
//!
//! The patient portal keeps the patient's key in the browser — imported from the wallet file
//! as a non-extractable WebCrypto Ed25519 key — and signs every request there exactly as the
//! CLI does (`medspace-api`'s `auth::Request`); the node never receives a private key.
//! Transactions (consents, grants, revocations) are encoded and signed in the browser too.
//!
//! **What the browser trusts.** Everything the node says about the ledger comes with an
//! inclusion proof against a state root, and the root is taken only from a block header whose
//! finality certificate the browser checks against the genesis validators' keys. Those keys
//! come from the genesis file the node serves at [`GENESIS_PATH`] — which a lying node could
//! replace. So the console's address carries the genesis hash in its fragment
//! (`…/console/#genesis=<sha256>`, printed by `medspace devnet` and `medspace demo` from the
//! genesis file they wrote: see [`url`]); the fragment never reaches the server, and the page
//! refuses a genesis whose SHA-256 differs. Without a fragment the page shows the hash for the
//! person to compare with the one their consortium published before it goes on.
//!
//! Routes: `GET /console/` (the page), `GET /console/{asset}` (its modules, styles and
//! translations), `GET /console/genesis.json` (the node's genesis file, byte for byte) and
//! `GET /console/node.json` (which member's node this is: the audience of signed requests).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

/// Where the console lives on every node.
pub const BASE: &str = "/console/";
/// Where the node's genesis file is served, byte for byte.
pub const GENESIS_PATH: &str = "/console/genesis.json";

/// The content security policy of every console response: nothing but the node itself; images
/// may also be `data:` (none are today, but an SVG icon would be).
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static str,
}

/// The console's files, compiled in.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        mime: "text/html; charset=utf-8",
        body: include_str!("../assets/index.html"),
    },
    Asset {
        name: "style.css",
        mime: "text/css; charset=utf-8",
        body: include_str!("../assets/style.css"),
    },
    Asset {
        name: "explorer.html",
        mime: "text/html; charset=utf-8",
        body: include_str!("../assets/explorer.html"),
    },
    Asset {
        name: "explorer.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/explorer.js"),
    },
    Asset {
        name: "governance.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/governance.js"),
    },
    Asset {
        name: "app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/app.js"),
    },
    Asset {
        name: "i18n.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/i18n.js"),
    },
    Asset {
        name: "codec.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/codec.js"),
    },
    Asset {
        name: "ledger.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/ledger.js"),
    },
    Asset {
        name: "ui.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/ui.js"),
    },
    Asset {
        name: "patient.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/patient.js"),
    },
    Asset {
        name: "researcher.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/researcher.js"),
    },
    Asset {
        name: "reviewer.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/reviewer.js"),
    },
    Asset {
        name: "steward.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/steward.js"),
    },
    Asset {
        name: "openpool.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/openpool.js"),
    },
    Asset {
        name: "health.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/health.js"),
    },
    Asset {
        name: "rebind.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/rebind.js"),
    },
    Asset {
        name: "qr.js",
        mime: "text/javascript; charset=utf-8",
        body: include_str!("../assets/qr.js"),
    },
];

/// The names of the embedded files (for tests and the OpenAPI document).
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

/// The source of an embedded file (the QR test runs `qr.js` under node).
pub fn asset(name: &str) -> Option<&'static str> {
    ASSETS.iter().find(|a| a.name == name).map(|a| a.body)
}

/// The SHA-256 of a genesis file's bytes, hex: what the console's address pins.
pub fn genesis_hash(genesis_file: &[u8]) -> String {
    hex::encode(Sha256::digest(genesis_file))
}

/// The console's address at a node whose API is at `api_base` (`https://host:port`), pinning
/// the genesis file `genesis_file`.
pub fn url(api_base: &str, genesis_file: &[u8]) -> String {
    format!(
        "{}{BASE}#genesis={}",
        api_base.trim_end_matches('/'),
        genesis_hash(genesis_file)
    )
}

struct Ctx {
    genesis: Vec<u8>,
    node: String,
}

/// The console's routes for the node of `member`, whose genesis file holds `genesis_file`.
pub fn router(genesis_file: Vec<u8>, member: &str) -> Router {
    let node = serde_json::json!({ "member": member }).to_string();
    let ctx = Arc::new(Ctx {
        genesis: genesis_file,
        node,
    });
    Router::new()
        .route("/console", get(|| async { Redirect::permanent(BASE) }))
        .route("/console/", get(|| async { serve("index.html") }))
        .route(GENESIS_PATH, get(genesis))
        .route("/console/node.json", get(node_info))
        .route("/console/{asset}", get(asset_route))
        .with_state(ctx)
}

fn with_headers(mut r: Response, mime: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn serve(name: &str) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => with_headers(a.body.into_response(), a.mime),
        None => with_headers(
            (StatusCode::NOT_FOUND, "not found").into_response(),
            "text/plain; charset=utf-8",
        ),
    }
}

async fn asset_route(Path(name): Path<String>) -> Response {
    serve(&name)
}

async fn genesis(State(ctx): State<Arc<Ctx>>) -> Response {
    with_headers(
        ctx.genesis.clone().into_response(),
        "application/json; charset=utf-8",
    )
}

async fn node_info(State(ctx): State<Arc<Ctx>>) -> Response {
    with_headers(
        ctx.node.clone().into_response(),
        "application/json; charset=utf-8",
    )
}

/// The file `medspace key export-browser` writes for the console to import: a key's secret
/// and public halves in hex, with the warning that the file is the key, unsealed.
pub fn browser_key_json(secret_hex: &str, public_hex: &str) -> String {
    let doc = serde_json::json!({
        "format": "medspace-browser-key/v1",
        "secret": secret_hex,
        "public_key": public_hex,
        "warning": "this file is the key, unsealed: import it in the console, then delete it",
    });
    // INVARIANT: a JSON value of strings always serializes.
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get(r: &Router, path: &str) -> Response {
        r.clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn serves_every_asset_with_the_policy_and_the_genesis_byte_for_byte() {
        let r = router(b"{\"chain_id\":\"x\"}".to_vec(), "hospital-a");
        for name in asset_names() {
            let resp = get(&r, &format!("/console/{name}")).await;
            assert_eq!(resp.status(), StatusCode::OK, "{name}");
            assert_eq!(resp.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        }
        let page = get(&r, "/console/").await;
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            page.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let g = get(&r, GENESIS_PATH).await;
        let body = axum::body::to_bytes(g.into_body(), 1 << 20).await.unwrap();
        assert_eq!(&body[..], b"{\"chain_id\":\"x\"}");
        assert_eq!(
            get(&r, "/console/nothing.js").await.status(),
            StatusCode::NOT_FOUND
        );
        assert!(url("https://a:1/", &body).ends_with(&genesis_hash(&body)));
    }

    /// The keys of one locale's table in `i18n.js` (lines `    key: "…",` inside `<locale>: {`).
    fn locale_keys(locale: &str) -> Vec<String> {
        let src = asset("i18n.js").unwrap();
        let start = src.find(&format!("\n  {locale}: {{\n")).unwrap();
        let body = &src[start..];
        let end = body.find("\n  },").unwrap();
        let mut keys: Vec<String> = body[..end]
            .lines()
            .skip(2)
            .filter_map(|l| l.strip_prefix("    "))
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_string()))
            .filter(|k| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn every_string_is_translated() {
        let en = locale_keys("en");
        let zh = locale_keys("zh");
        assert!(en.len() > 50, "{en:?}");
        assert_eq!(en, zh, "the English and Chinese tables differ");
        // Every key the pages use exists.
        for name in [
            "app.js",
            "index.html",
            "explorer.js",
            "explorer.html",
            "governance.js",
            "rebind.js",
            "steward.js",
            "openpool.js",
        ] {
            let src = asset(name).unwrap();
            for (at, _) in src.match_indices("t(\"") {
                // `t(` itself, not the end of `get(`.
                if src[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                {
                    continue;
                }
                let part = &src[at + 3..];
                let key: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if key.is_empty() || !part[key.len()..].starts_with('"') {
                    continue;
                }
                if key.ends_with('_') {
                    // A family completed at run time (`"p_" + purpose`).
                    assert!(en.iter().any(|k| k.starts_with(&key)), "{name}: `{key}…`");
                } else {
                    assert!(
                        en.contains(&key),
                        "{name} uses `{key}`, which has no string"
                    );
                }
            }
        }
    }

    #[test]
    fn no_asset_reaches_outside_the_node() {
        for a in ASSETS {
            for bad in [
                "https://",
                "//cdn",
                "src=\"http",
                "href=\"http",
                "url(http",
                "from \"http",
            ] {
                assert!(!a.body.contains(bad), "{} reaches outside: {bad}", a.name);
            }
        }
    }
}
