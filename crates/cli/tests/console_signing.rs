//! The console's browser code signs exactly as the Rust code does: `ledger.js` run under node
//! (whose WebCrypto has Ed25519, as Chromium's does) against `medspace-api`'s `auth::Request`
//! and `medspace-types`' transactions — the request message byte for byte, an authorization
//! header the API accepts, and consent, grant and revocation transactions that decode, verify
//! and carry exactly the payload the Rust code builds (the grant's code hashed as
//! `types::code_hash` does), and governance transactions (a vote, an admission, a removal, an
//! appointment, a dismissal; `governance.js`) equal to the Rust ones byte for byte. Without node the test
//! skips loudly; under `CI=true` it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use medspace_api::auth;
use medspace_types::*;
use std::process::Command;

#[test]
fn the_browser_signs_requests_and_transactions_as_the_rust_code_does() {
    if Command::new("node").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "node is missing and CI=true"
        );
        eprintln!("SKIPPED console signing test: node is missing");
        return;
    }
    let dir = std::env::temp_dir().join(format!("medspace-console-sign-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["codec.js", "ledger.js", "governance.js", "i18n.js"] {
        std::fs::write(dir.join(name), medspace_console::asset(name).unwrap()).unwrap();
    }
    // A policy change as the governance page proposes it: the policy in force (the default, as
    // `/v1/status` serves it) with other numbers.
    let policy = Policy {
        min_cell_k: 11,
        max_job_epsilon_micro: 750_000,
        max_contract_ms: 120 * 86_400_000,
        ..Policy::default()
    };
    std::fs::write(
        dir.join("policy.json"),
        serde_json::to_vec(&policy).unwrap(),
    )
    .unwrap();
    // A catalog entry as the node's `/v1/worker/vault/entry` serves it.
    let dataset = DatasetDescription {
        id: DatasetId::new("hospital-a.cdm").unwrap(),
        title: Text::new("hospital-a common data model (9 persons) 医院").unwrap(),
        version: 3,
        tables: List::new(vec![TableDesc {
            name: Text::new("measurement").unwrap(),
            rows: 5_000_000_000,
            duplicate_ppm: 12,
            implausible_ppm: 3_400,
            fields: List::new(vec![
                FieldDesc {
                    name: Text::new("person_id").unwrap(),
                    level: Level::L2,
                    missing_ppm: 0,
                    invalid_ppm: 0,
                },
                FieldDesc {
                    name: Text::new("value_as_number").unwrap(),
                    level: Level::L4,
                    missing_ppm: 150_000,
                    invalid_ppm: 7,
                },
            ])
            .unwrap(),
        }])
        .unwrap(),
        content_hash: Hash([0x5a; 32]),
    };
    std::fs::write(
        dir.join("dataset.json"),
        serde_json::to_vec(&dataset).unwrap(),
    )
    .unwrap();
    // An open-pool release as the node's `/v1/worker/releases/plan` answers it: its L1 entry
    // and its figures.
    let release = PublishRelease {
        dataset: DatasetDescription {
            id: DatasetId::new("hospital-a.open").unwrap(),
            title: Text::new("hospital-a.open: de-identified release of hospital-a.cdm").unwrap(),
            version: 2,
            ..dataset.clone()
        },
        release: ReleaseFigures {
            source: DatasetId::new("hospital-a.cdm").unwrap(),
            purposes: List::new(vec![Purpose::Research, Purpose::PublicHealth]).unwrap(),
            consent_height: 4_000_000_000_123,
            spec_hash: Hash([0x3c; 32]),
            k: 5,
            l: 2,
            persons: 6_000_000_000,
            suppressed: 17,
            prosecutor_max_ppm: 200_000,
            prosecutor_avg_ppm: 123_456,
            journalist_max_ppm: 199_999,
            marketer_ppm: 123_455,
            at_risk_ppm: 0,
        },
    };
    std::fs::write(
        dir.join("release.json"),
        serde_json::to_vec(&release).unwrap(),
    )
    .unwrap();
    let key = Keypair::from_secret_hex(&"07".repeat(32)).unwrap();
    let public = key.public().to_hex();
    let patient = PatientId::from_key(&key.public());
    let nonce = [9u8; 16];
    let script = format!(
        r#"
import * as L from "./ledger.js";
import * as c from "./codec.js";
// governance.js's page uses the translations, which read the locale from the browser's storage.
globalThis.localStorage = {{ getItem: () => null, setItem: () => {{}} }};
if (!globalThis.navigator) globalThis.navigator = {{ language: "en" }};
const G = await import("./governance.js");
const pkcs8 = c.concat(c.unhex("302e020100300506032b657004220420"), c.unhex("{secret}"));
const key = await crypto.subtle.importKey("pkcs8", pkcs8, {{ name: "Ed25519" }}, false, ["sign"]);
const session = {{ key, public: "{public}" }};
const out = {{}};
out.message = c.hex(await L.requestMessage("GET", "/v1/patients/{patient}/log?x=1", "hospital-a", 1700000000000, new Uint8Array(16).fill(9), new Uint8Array()));
out.header = await L.authorization(session, "GET", "/v1/patients/{patient}/log?x=1", "hospital-a", new Uint8Array());
out.consent = c.hex(await L.signTx(session, "medspace-devnet", 3n, L.setConsent("research", "study-x", false, true)));
const g = await L.issueGrant("{patient}", {{ grantee: "hospital-b", holder: "hospital-a", purpose: "treatment", resourceTypes: ["Encounter", "Condition"], fromMs: 0, toMs: 1700000000000, expiryMs: 1800000000000, maxUses: 2, code: "ab12-cd34-ef56-gh78" }});
out.grant = c.hex(await L.signTx(session, "medspace-devnet", 4n, g.payload));
out.revoke = c.hex(await L.signTx(session, "medspace-devnet", 5n, L.revokeGrant("g-00000000000000ff")));
out.request = c.hex(await L.signTx(session, "medspace-devnet", 6n, L.submitRequest({{ purpose: "research", study: "study-x", fields: [{{ dataset: "hospital-a.cdm", table: "person", field: "person_id" }}, {{ dataset: "hospital-b.cdm", table: "measurement", field: "value_as_number" }}], computation: c.utf8('{{"version":1}}'), expiryMs: 1800000000000, epsilonBudget: 1500000, fee: 7 }})));
out.approve = c.hex(await L.signTx(session, "medspace-devnet", 7n, L.approve("c-00000000000000a1")));
out.reject = c.hex(await L.signTx(session, "medspace-devnet", 8n, L.reject("c-00000000000000a2", "too broad: 患者")));
out.job = c.hex(await L.signTx(session, "medspace-devnet", 9n, L.submitJob("c-00000000000000a3", c.utf8('{{"version":1}}'), 300000)));
out.user = JSON.stringify(L.decodeUser(c.unhex("{user}")));
out.name = L.hexName("research-1.researcher");
out.vote = c.hex(await L.signTx(session, "medspace-devnet", 20n, G.vote("p-00000000000a0b0c", false)));
out.remove = c.hex(await L.signTx(session, "medspace-devnet", 21n, G.removeMember("insurer-1")));
out.appoint = c.hex(await L.signTx(session, "medspace-devnet", 22n, G.appointUser("hospital-a.ethics-2", "hospital-a", "ethics_committee", "{public}")));
out.add = c.hex(await L.signTx(session, "medspace-devnet", 24n, G.addMember({{ id: "hospital-d", name: "Hospital D (district)", kind: "hospital", key: "{public}", nodeKey: "{other}", agreementKey: "{agreement}" }}, 250n)));
out.dismiss = c.hex(await L.signTx(session, "medspace-devnet", 23n, G.dismissUser("hospital-b.ethics-committee")));
const policy = JSON.parse((await import("node:fs")).readFileSync(new URL("./policy.json", import.meta.url), "utf8"));
out.policy = c.hex(await L.signTx(session, "medspace-devnet", 25n, G.updatePolicy(policy)));
const dataset = JSON.parse((await import("node:fs")).readFileSync(new URL("./dataset.json", import.meta.url), "utf8"));
out.publish = c.hex(await L.signTx(session, "medspace-devnet", 30n, G.publishDataset(dataset)));
// The open pool: a release published, requested, its delivery read and its copy attested
// destroyed; the catalog entry the download checks against.
const release = JSON.parse((await import("node:fs")).readFileSync(new URL("./release.json", import.meta.url), "utf8"));
out.release = c.hex(await L.signTx(session, "medspace-devnet", 31n, G.publishRelease(release.dataset, release.release)));
out.attest = c.hex(await L.signTx(session, "medspace-devnet", 32n, L.attestDestruction("a-00000000000000b1")));
out.openpool = c.hex(await L.signTx(session, "medspace-devnet", 33n, L.openPoolRequest([{{ description: dataset }}], "public_health", 30, 1700000000000)));
out.delivery = JSON.stringify(L.decodeDelivery(c.unhex("{delivery}")));
out.datasetRecord = JSON.stringify(L.decodeDatasetRecord(c.unhex("{dataset_record}")));
out.sha = await L.sha256Hex(c.utf8("{{\"format\":\"medspace-release/1\"}}"));
// A member registers a user; a key replaced in the browser (its new key and proof made here).
out.register = c.hex(await L.signTx(session, "medspace-devnet", 28n, G.registerUser("hospital-a.researcher-2", "researcher", "{other}")));
const rotated = await L.newKeyFor(session, "medspace-devnet", 29n);
out.rotate = c.hex(await L.signTx(session, "medspace-devnet", 29n, rotated.payload));
out.rotatedFile = rotated.file;
// Re-binding a lost key: the new key's claim, the steward's request, the veto, the completion;
// and the records the pages read.
out.claim = await L.rebindClaim(session, "medspace-devnet", "hospital-a");
const claim = L.parseClaim(out.claim);
out.rebind = c.hex(await L.signTx(session, "medspace-devnet", 26n, L.rebindPatient("{patient}", claim)));
out.cancel = c.hex(await L.signTx(session, "medspace-devnet", 27n, L.cancelRebind("{patient}")));
out.complete = c.hex(await L.signTx(session, "medspace-devnet", 0n, L.completeRebind("{patient}")));
out.log = JSON.stringify(L.decodeLogEntry(c.unhex("{log}")), (k, v) => (typeof v === "bigint" ? Number(v) : v));
out.pending = JSON.stringify(L.decodeRebind(c.unhex("{pending}")));
out.record = JSON.stringify(L.decodePatient(c.unhex("{record}")), (k, v) => (typeof v === "bigint" ? Number(v) : v));
try {{ L.parseClaim(out.claim.replace("hospital-a", "hospital-a:x")); out.badClaim = "accepted"; }} catch (e) {{ out.badClaim = e.message; }}
console.log(JSON.stringify(out));
"#,
        secret = key.secret_hex(),
        user = hex::encode(medspace_state::records::encode_record(
            &medspace_state::records::UserRecord {
                id: UserId::new("hospital-b.steward").unwrap(),
                member: MemberId::new("hospital-b").unwrap(),
                role: Role::EthicsCommittee,
                key: key.public(),
            }
        )),
        other = Keypair::from_seed(5).public().to_hex(),
        log = hex::encode(medspace_state::records::encode_record(
            &medspace_state::records::LogEntry {
                height: 12,
                time_ms: 1_700_000_000_000,
                event: medspace_state::records::PatientEvent::RebindAsked(
                    medspace_state::records::RebindEvent {
                        hospital: MemberId::new("hospital-a").unwrap(),
                        new_key: Keypair::from_seed(5).public(),
                        effective_ms: 1_700_000_015_000,
                    }
                ),
            }
        )),
        pending = hex::encode(medspace_state::records::encode_record(
            &medspace_state::records::RebindRecord {
                patient,
                hospital: MemberId::new("hospital-a").unwrap(),
                steward: UserId::new("hospital-a.steward").unwrap(),
                requested_ms: 1_700_000_000_000,
                effective_ms: 1_700_000_015_000,
            }
        )),
        record = hex::encode(medspace_state::records::encode_record(
            &medspace_state::records::PatientRecord {
                key: key.public(),
                registered_height: 3,
                log_len: 7,
                hospital: MemberId::new("hospital-b").unwrap(),
                rebinding: Some(Keypair::from_seed(5).public()),
            }
        )),
        agreement = "ab".repeat(32),
        delivery = hex::encode(medspace_state::records::encode_record(
            &medspace_state::records::DeliveryRecord {
                id: AccessId(0xb1),
                dataset: DatasetId::new("hospital-a.open").unwrap(),
                version: 2,
                holder: MemberId::new("hospital-a").unwrap(),
                recipient: MemberId::new("research-1").unwrap(),
                contract: "c-00000000000000a4".parse().unwrap(),
                content_hash: Hash([0x5a; 32]),
                bytes: 123_456,
                height: 77,
                time_ms: 1_700_000_000_000,
                destroyed_height: Some(80),
            }
        )),
        dataset_record = hex::encode(medspace_state::records::encode_record(
            &medspace_state::records::DatasetRecord {
                owner: MemberId::new("hospital-a").unwrap(),
                description: release.dataset.clone(),
                published_height: 9,
                release: Some(release.release.clone()),
            }
        )),
    );
    let script_path = dir.join("sign.mjs");
    std::fs::write(&script_path, script).unwrap();
    let out = Command::new("node").arg(&script_path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // The request message, byte for byte; the header accepted by the API's verifier.
    let path = format!("/v1/patients/{patient}/log?x=1");
    let request = auth::Request {
        method: "GET",
        path_and_query: &path,
        audience: "hospital-a",
        body: b"",
    };
    assert_eq!(
        v["message"].as_str().unwrap(),
        hex::encode(request.message(1_700_000_000_000, &nonce))
    );
    let verified = request
        .verify(v["header"].as_str(), auth::now_ms())
        .expect("the API accepts the browser's signature");
    assert_eq!(verified.key, key.public());
    let other = auth::Request {
        audience: "hospital-b",
        ..request
    };
    assert!(other.verify(v["header"].as_str(), auth::now_ms()).is_err());

    // Transactions: they decode, their signatures verify, their payloads are the Rust ones.
    let chain = Name::new("medspace-devnet").unwrap();
    let tx = |field: &str| {
        SignedTx::from_bytes(hex::decode(v[field].as_str().unwrap()).unwrap()).unwrap()
    };
    let expect = |nonce: u64, payload: Payload| SignedTx::new(&chain, &key, nonce, payload);
    let consent = tx("consent");
    assert!(consent.verify_signature());
    assert_eq!(
        consent,
        expect(
            3,
            Payload::SetConsent(SetConsent {
                purpose: Purpose::Research,
                study: Some(StudyId::new("study-x").unwrap()),
                decision: Decision::Deny,
                l4_opt_in: true,
            })
        )
    );
    let grant = tx("grant");
    assert!(grant.verify_signature());
    assert_eq!(
        grant,
        expect(
            4,
            Payload::IssueGrant(IssueGrant {
                grantee: MemberId::new("hospital-b").unwrap(),
                holder: MemberId::new("hospital-a").unwrap(),
                purpose: Purpose::Treatment,
                resource_types: List::new(vec![
                    Text::new("Encounter").unwrap(),
                    Text::new("Condition").unwrap(),
                ])
                .unwrap(),
                period_from_ms: 0,
                period_to_ms: 1_700_000_000_000,
                expiry_ms: 1_800_000_000_000,
                max_uses: 2,
                code_hash: code_hash(&patient, "AB12-CD34-EF56-GH78"),
            })
        )
    );
    let revoke = tx("revoke");
    assert!(revoke.verify_signature());
    assert_eq!(
        revoke,
        expect(
            5,
            Payload::RevokeGrant(RevokeGrant {
                grant: GrantId(0xff)
            })
        )
    );
    // The staff's transactions: a study's request, approval, rejection (with its reason) and
    // job; and the user record the console reads a role from.
    let field = |d: &str, t: &str, f: &str| FieldRef {
        dataset: DatasetId::new(d).unwrap(),
        table: Text::new(t).unwrap(),
        field: Text::new(f).unwrap(),
    };
    for (name, nonce, payload) in [
        (
            "request",
            6,
            Payload::SubmitRequest(SubmitRequest {
                purpose: Purpose::Research,
                mode: Mode::Compute,
                study: Some(StudyId::new("study-x").unwrap()),
                fields: List::new(vec![
                    field("hospital-a.cdm", "person", "person_id"),
                    field("hospital-b.cdm", "measurement", "value_as_number"),
                ])
                .unwrap(),
                computation: Blob::new(br#"{"version":1}"#.to_vec()).unwrap(),
                expiry_ms: 1_800_000_000_000,
                epsilon_budget: 1_500_000,
                fee: 7,
            }),
        ),
        (
            "approve",
            7,
            Payload::Approve(Approve {
                contract: "c-00000000000000a1".parse().unwrap(),
            }),
        ),
        (
            "reject",
            8,
            Payload::Reject(Reject {
                contract: "c-00000000000000a2".parse().unwrap(),
                reason: Text::new("too broad: 患者").unwrap(),
            }),
        ),
        (
            "job",
            9,
            Payload::SubmitJob(SubmitJob {
                contract: "c-00000000000000a3".parse().unwrap(),
                computation: Blob::new(br#"{"version":1}"#.to_vec()).unwrap(),
                epsilon: 300_000,
            }),
        ),
    ] {
        let got = tx(name);
        assert!(got.verify_signature(), "{name}");
        assert_eq!(got, expect(nonce, payload), "{name}");
    }
    let user: serde_json::Value = serde_json::from_str(v["user"].as_str().unwrap()).unwrap();
    assert_eq!(
        user,
        serde_json::json!({"id": "hospital-b.steward", "member": "hospital-b", "role": "ethics_committee"})
    );
    assert_eq!(
        v["name"].as_str().unwrap(),
        hex::encode(medspace_state::records::keys::user(
            &UserId::new("research-1.researcher").unwrap()
        ))
        .trim_start_matches("06")
    );
    // Governance, signed in the browser: a vote, a member's removal, an appointment, a
    // dismissal.
    let cases = [
        (
            "vote",
            expect(
                20,
                Payload::Vote(Vote {
                    proposal: ProposalId(0x000a_0b0c),
                    approve: false,
                }),
            ),
        ),
        (
            "remove",
            expect(
                21,
                Payload::RemoveMember(RemoveMember {
                    member: MemberId::new("insurer-1").unwrap(),
                }),
            ),
        ),
        (
            "appoint",
            expect(
                22,
                Payload::AppointUser(AppointUser {
                    user: UserId::new("hospital-a.ethics-2").unwrap(),
                    member: MemberId::new("hospital-a").unwrap(),
                    role: Role::EthicsCommittee,
                    key: key.public(),
                }),
            ),
        ),
        (
            "dismiss",
            expect(
                23,
                Payload::DismissUser(DismissUser {
                    user: UserId::new("hospital-b.ethics-committee").unwrap(),
                }),
            ),
        ),
    ];
    let add = (
        "add",
        expect(
            24,
            Payload::AddMember(AddMember {
                member: Member {
                    id: MemberId::new("hospital-d").unwrap(),
                    name: Text::new("Hospital D (district)").unwrap(),
                    kind: MemberKind::Hospital,
                    key: key.public(),
                    node_key: Keypair::from_seed(5).public(),
                    agreement_key: Hash([0xab; 32]),
                },
                initial_balance: 250,
            }),
        ),
    );
    let update = (
        "policy",
        expect(25, Payload::UpdatePolicy(UpdatePolicy { policy })),
    );
    // Re-binding: the claim is the Rust one, its transactions byte for byte.
    let claim = RebindPatient::claim(&chain, &MemberId::new("hospital-a").unwrap(), &key);
    let rebinds = [
        (
            "rebind",
            expect(
                26,
                Payload::RebindPatient(RebindPatient {
                    patient,
                    new_key: key.public(),
                    proof: claim,
                }),
            ),
        ),
        (
            "cancel",
            expect(27, Payload::CancelRebind(CancelRebind { patient })),
        ),
        (
            "complete",
            expect(0, Payload::CompleteRebind(CompleteRebind { patient })),
        ),
    ];
    for (field, rust) in cases.into_iter().chain([add, update]).chain(rebinds) {
        let browser = tx(field);
        assert!(browser.verify_signature(), "{field}");
        assert_eq!(
            browser.to_bytes(),
            rust.to_bytes(),
            "{field}: byte for byte"
        );
    }
    assert_eq!(
        tx("publish").to_bytes(),
        expect(30, Payload::PublishDataset(PublishDataset { dataset })).to_bytes(),
        "publish: byte for byte"
    );
    // The open pool, byte for byte: the release published, the destruction attested, the
    // request for a release (every field of its entry, no computation, no budget).
    assert_eq!(
        tx("release").to_bytes(),
        expect(31, Payload::PublishRelease(release.clone())).to_bytes(),
        "publish release: byte for byte"
    );
    assert_eq!(
        tx("attest").to_bytes(),
        expect(
            32,
            Payload::AttestDestruction(AttestDestruction {
                access: AccessId(0xb1)
            })
        )
        .to_bytes(),
        "attest destruction: byte for byte"
    );
    assert_eq!(
        tx("openpool").to_bytes(),
        expect(
            33,
            Payload::SubmitRequest(SubmitRequest {
                purpose: Purpose::PublicHealth,
                mode: Mode::OpenPool,
                study: None,
                fields: List::new(vec![
                    field("hospital-a.cdm", "measurement", "person_id"),
                    field("hospital-a.cdm", "measurement", "value_as_number"),
                ])
                .unwrap(),
                computation: Blob::default(),
                expiry_ms: 1_700_000_000_000 + 30 * 86_400_000,
                epsilon_budget: 0,
                fee: 0,
            })
        )
        .to_bytes(),
        "open-pool request: byte for byte"
    );
    let json_of =
        |f: &str| serde_json::from_str::<serde_json::Value>(v[f].as_str().unwrap()).unwrap();
    assert_eq!(
        json_of("delivery"),
        serde_json::json!({"id": "a-00000000000000b1", "dataset": "hospital-a.open", "version": 2, "holder": "hospital-a", "recipient": "research-1", "contract": "c-00000000000000a4", "contentHash": "5a".repeat(32), "bytes": 123_456, "height": 77, "timeMs": 1_700_000_000_000u64, "destroyedHeight": 80})
    );
    // The catalog entry decodes to the JSON the catalog serves.
    let mut record = json_of("datasetRecord");
    assert_eq!(
        record["release"],
        serde_json::to_value(&release.release).unwrap()
    );
    assert_eq!(
        record["description"],
        serde_json::to_value(&release.dataset).unwrap()
    );
    record["description"] = serde_json::Value::Null;
    record["release"] = serde_json::Value::Null;
    assert_eq!(
        record,
        serde_json::json!({"owner": "hospital-a", "description": null, "published_height": 9, "release": null})
    );
    assert_eq!(
        v["sha"].as_str().unwrap(),
        hex::encode(
            medspace_worker::releases::manifest_hash(br#"{"format":"medspace-release/1"}"#).0
        ),
        "a manifest's hash as the catalog publishes it"
    );
    let register = tx("register");
    assert_eq!(
        register.to_bytes(),
        expect(
            28,
            Payload::RegisterUser(RegisterUser {
                user: UserId::new("hospital-a.researcher-2").unwrap(),
                role: Role::Researcher,
                key: Keypair::from_seed(5).public(),
            })
        )
        .to_bytes(),
        "register: byte for byte"
    );
    // The rotation: signed by the old key at its nonce; the new key's proof verifies over
    // this chain, the old key and that nonce; the saved file holds that new key.
    let rotate = tx("rotate");
    assert!(rotate.verify_signature());
    assert_eq!(rotate.body.nonce, 29);
    let Payload::RotateKey(r) = &rotate.body.payload else {
        panic!("not a rotation: {:?}", rotate.body.payload)
    };
    assert!(r.new_key.verify(
        ROTATE_NAMESPACE,
        &rotation_message(&chain, &key.public(), 29),
        &r.proof
    ));
    assert!(!r.new_key.verify(
        ROTATE_NAMESPACE,
        &rotation_message(&chain, &key.public(), 30),
        &r.proof
    ));
    let file: serde_json::Value = serde_json::from_str(v["rotatedFile"].as_str().unwrap()).unwrap();
    let saved = Keypair::from_secret_hex(file["secret"].as_str().unwrap()).unwrap();
    assert_eq!(saved.public(), r.new_key, "the saved file is the new key");
    // The claim's text, and the records the pages read, as written.
    assert!(
        v["claim"]
            .as_str()
            .unwrap()
            .starts_with("medspace-rebind:hospital-a:")
    );
    assert!(v["claim"].as_str().unwrap().len() <= 213, "fits a QR code");
    assert_eq!(v["badClaim"], "claim-malformed");
    let json = |f: &str| serde_json::from_str::<serde_json::Value>(v[f].as_str().unwrap()).unwrap();
    let other = Keypair::from_seed(5).public().to_hex();
    assert_eq!(
        json("log"),
        serde_json::json!({"height": 12, "timeMs": 1_700_000_000_000u64, "event": {"kind": "rebind_asked", "hospital": "hospital-a", "newKey": other, "effectiveMs": 1_700_000_015_000u64}})
    );
    assert_eq!(
        json("pending"),
        serde_json::json!({"patient": patient.to_string(), "hospital": "hospital-a", "steward": "hospital-a.steward", "requestedMs": 1_700_000_000_000u64, "effectiveMs": 1_700_000_015_000u64})
    );
    assert_eq!(
        json("record"),
        serde_json::json!({"key": public, "registeredHeight": 3, "logLen": 7, "hospital": "hospital-b", "rebinding": other})
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
