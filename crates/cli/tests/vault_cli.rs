//! `medspace vault rewrap | rotate-key | encrypt` as an operator runs them: the binary, a
//! vault ingested from generated patients, the passphrase from the environment.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_medspace");
const ENV: &str = "MEDSPACE_VAULT_PASSPHRASE";

fn run(pass: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env(ENV, pass)
        .output()
        .expect("running medspace")
}

fn ok(pass: &str, args: &[&str]) -> String {
    let out = run(pass, args);
    assert!(
        out.status.success(),
        "medspace {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(pass: &str, args: &[&str]) -> String {
    let out = run(pass, args);
    assert!(!out.status.success(), "medspace {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` with its bytes: what "nothing changed" compares.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n != "LOCK" && n != ".lock") {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    out
}

/// A fresh directory of its own under the system's temporary directory.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("medspace-vault-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const COUNT: &str = "SELECT count(*) AS n, sum(year_of_birth) AS y FROM person";

#[test]
fn an_operator_changes_the_passphrase_rotates_the_data_key_and_nothing_else_changes() {
    let tmp = Tmp::new("rotate");
    let (fhir, node) = (tmp.path().join("fhir"), tmp.path().join("node"));
    let (fhir_s, node_s) = (fhir.to_str().unwrap(), node.to_str().unwrap());
    ok("first", &["synth", "--patients", "25", "--out", fhir_s]);
    ok("first", &["ingest", "--node", node_s, "--quiet", fhir_s]);
    let answer = ok("first", &["sql", "--node", node_s, COUNT]);
    assert!(answer.contains("25"), "{answer}");

    // A new passphrase: the old one no longer opens the vault, the new one does, and the
    // data answer the same.
    let before_all = snapshot(&node);
    let new_pass = tmp.path().join("new.pass");
    std::fs::write(&new_pass, "second").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&new_pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let said = refused(
        "wrong",
        &[
            "vault",
            "rewrap",
            "--node",
            node_s,
            "--new-passphrase-file",
            new_pass.to_str().unwrap(),
        ],
    );
    assert!(said.contains("wrong vault passphrase"), "{said}");
    assert_eq!(
        snapshot(&node),
        before_all,
        "a refused rewrap changes nothing"
    );
    let before = snapshot(&node);
    ok(
        "first",
        &[
            "vault",
            "rewrap",
            "--node",
            node_s,
            "--new-passphrase-file",
            new_pass.to_str().unwrap(),
        ],
    );
    let after = snapshot(&node);
    let changed: Vec<_> = before
        .iter()
        .filter(|(p, h)| after.get(*p) != Some(h))
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(
        changed,
        vec![PathBuf::from("vault/vault.key")],
        "a rewrap replaces the sealed key file only"
    );
    let said = refused("first", &["sql", "--node", node_s, COUNT]);
    assert!(said.contains("wrong vault passphrase"), "{said}");
    assert_eq!(ok("second", &["sql", "--node", node_s, COUNT]), answer);

    // A new data key: every data file rewritten, the same answers.
    let before = snapshot(&node);
    ok("second", &["vault", "rotate-key", "--node", node_s]);
    let after = snapshot(&node);
    let same: Vec<_> = after
        .iter()
        .filter(|(p, h)| before.get(*p) == Some(h))
        .map(|(p, _)| p.clone())
        .collect();
    assert!(same.is_empty(), "files not rewritten: {same:?}");
    assert_eq!(ok("second", &["sql", "--node", node_s, COUNT]), answer);

    // An encrypted vault cannot be "encrypted" again: refused, nothing changed.
    let before = snapshot(&node);
    let said = refused("second", &["vault", "encrypt", "--node", node_s]);
    assert!(said.contains("already encrypted"), "{said}");
    assert_eq!(snapshot(&node), before);
}

#[test]
fn a_vault_from_before_encryption_is_converted_keeping_its_pseudonym_key() {
    let tmp = Tmp::new("convert");
    let node = tmp.path().join("node");
    let node_s = node.to_str().unwrap();
    // What an earlier version left before its first ingest: the plain pseudonym key.
    std::fs::create_dir_all(node.join("vault")).unwrap();
    std::fs::write(node.join("vault/secret.key"), [7u8; 32]).unwrap();
    // Without a passphrase: a clear error, nothing changed.
    let before = snapshot(&node);
    let out = Command::new(BIN)
        .args(["vault", "encrypt", "--node", node_s])
        .env_remove(ENV)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(ENV),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot(&node), before);

    ok("pass", &["vault", "encrypt", "--node", node_s]);
    let files = snapshot(&node);
    assert!(
        files.contains_key(Path::new("vault/vault.key")),
        "{files:?}"
    );
    assert!(
        !files.contains_key(Path::new("vault/secret.key")),
        "the plain key stayed: {files:?}"
    );
    // The sealed key file holds the pseudonym key, not in the clear.
    let sealed = std::fs::read(node.join("vault/vault.key")).unwrap();
    assert!(!sealed.windows(32).any(|w| w == [7u8; 32]));
    let said = refused("pass", &["vault", "encrypt", "--node", node_s]);
    assert!(said.contains("already encrypted"), "{said}");
}

/// The one number a `count(*)` query prints.
fn number(table: &str) -> i64 {
    table
        .lines()
        .filter_map(|l| {
            l.trim_matches(|c: char| c == '|' || c.is_whitespace())
                .parse()
                .ok()
        })
        .next_back()
        .unwrap()
}

/// Issue #17, item 7, as a new user met it: `synth --seed 99` reuses the id of a seed-1
/// patient. Ingested into the seed-1 vault, that Patient is refused and so is everything of
/// theirs (no Condition attached to the other person); named as another source it is a person
/// of its own; as an update feed it is a new version of the stored patient (same person).
#[test]
fn a_reused_patient_id_is_refused_with_its_record_and_a_source_keeps_it_apart() {
    let tmp = Tmp::new("sources");
    let (a, b, node) = (
        tmp.path().join("seed-1"),
        tmp.path().join("seed-99"),
        tmp.path().join("node"),
    );
    let (a_s, b_s, node_s) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        node.to_str().unwrap(),
    );
    let p = "passphrase";
    ok(
        p,
        &["synth", "--patients", "100", "--seed", "1", "--out", a_s],
    );
    ok(p, &["ingest", "--node", node_s, "--quiet", a_s]);
    let count = |table: &str| {
        number(&ok(
            p,
            &[
                "sql",
                "--node",
                node_s,
                &format!("SELECT count(*) AS n FROM {table}"),
            ],
        ))
    };
    let (conditions, persons) = (count("condition_occurrence"), count("person"));
    ok(
        p,
        &["synth", "--patients", "1", "--seed", "99", "--out", b_s],
    );
    let out = run(p, &["ingest", "--node", node_s, "--quiet", b_s]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Patient.ndjson: line 1: conflict"), "{said}");
    assert!(
        said.contains(
            "Condition.ndjson: line 1: refused with what it refers to: field=subject target_type=Patient"
        ),
        "{said}"
    );
    assert_eq!(count("condition_occurrence"), conditions);
    assert_eq!(count("person"), persons);
    // Another source: a person of its own.
    let said = ok(
        p,
        &[
            "ingest", "--node", node_s, "--quiet", "--source", "clinic-b", b_s,
        ],
    );
    assert!(said.contains("committed=true"), "{said}");
    assert_eq!(count("person"), persons + 1);
    assert!(count("condition_occurrence") > conditions);
    // An update feed: the stored patient's new version, the same person.
    let said = ok(p, &["ingest", "--node", node_s, "--quiet", "--update", b_s]);
    assert!(said.contains("committed=true"), "{said}");
    assert_eq!(count("person"), persons + 1);
}

/// `medspace ingest` killed (SIGKILL) while it commits batch after batch, then run again on
/// the same files: it resumes after its last commit, and the vault ends as one uninterrupted
/// ingest leaves it.
#[test]
fn an_ingest_killed_midway_resumes_after_its_last_commit() {
    let tmp = Tmp::new("resume");
    let fhir = tmp.path().join("fhir");
    let (fhir_s, pass) = (fhir.to_str().unwrap(), "resume");
    ok(pass, &["synth", "--patients", "300", "--out", fhir_s]);
    let reference = tmp.path().join("reference");
    let reference_s = reference.to_str().unwrap();
    let whole = [
        "ingest",
        "--node",
        reference_s,
        "--quiet",
        "--commit-every",
        "0",
        fhir_s,
    ];
    ok(pass, &whole);

    let node = tmp.path().join("node");
    let node_s = node.to_str().unwrap();
    let args = [
        "ingest",
        "--node",
        node_s,
        "--quiet",
        "--commit-every",
        "500",
        fhir_s,
    ];
    let mut child = Command::new(BIN)
        .args(args)
        .env(ENV, pass)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once its first batch is committed (or it ended first, on a fast machine).
    let manifest = node.join("vault/manifest.json");
    let ended = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if manifest.exists() {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let again = ok(pass, &args);
    eprintln!("after the kill ({ended:?}): {again}");
    if ended.is_none() {
        // Resumed, unless the kill came after the last commit (then nothing is new).
        assert!(
            again.contains(" resumed=") || again.contains(" stored=0 "),
            "{again}"
        );
    }
    for sql in [
        COUNT,
        "SELECT count(*) AS n FROM measurement",
        "SELECT count(*) AS n, sum(visit_occurrence_id) AS v FROM visit_occurrence",
        "SELECT count(*) AS n FROM condition_occurrence",
    ] {
        assert_eq!(
            ok(pass, &["sql", "--node", node_s, sql]),
            ok(pass, &["sql", "--node", reference_s, sql]),
            "{sql}"
        );
    }
}

/// `medspace bench ingest` on a few patients: every run, with its own peak memory.
#[test]
fn the_ingest_benchmark_prints_each_run_with_its_memory() {
    let out = ok("unused", &["bench", "ingest", "--patients", "24"]);
    for line in [
        "baseline: 1 thread",
        "threads, a quarter of the input",
        "threads, one atomic batch",
        "memory: ",
        "transaction Bundle files",
        "baseline: 1 thread repeats, resources/s in the order run: ",
        "medians of 5 alternated runs each",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(!out.contains(" ? "), "a run without its peak memory: {out}");
}
