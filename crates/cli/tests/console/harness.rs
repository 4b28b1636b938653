//! What the console's browser tests share: the browser and its driver, a devnet of real node
//! processes on free ports, and the command line against it.

#![allow(dead_code)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_medspace");
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The browser and its driver, or why not.
pub fn browser() -> Result<PathBuf, String> {
    let dir = root().join(".ci/browser");
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is missing".into());
    }
    if !Path::new(CHROMIUM).exists() {
        return Err(format!(
            "{CHROMIUM} is missing (apt-get install -y chromium)"
        ));
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "{} has no playwright-core (run .ci/run)",
            dir.display()
        ));
    }
    Ok(dir)
}

/// The browser's `node_modules` for test `what`, or `None` after saying loudly why it is
/// skipped — except under `CI=true`, where a missing browser fails the test.
pub fn browser_or_skip(what: &str) -> Option<PathBuf> {
    match browser() {
        Ok(d) => Some(d),
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{what}: {why} and CI=true"
            );
            eprintln!("SKIPPED {what}: {why}");
            None
        }
    }
}

pub fn free_base() -> u16 {
    // Ports from base (p2p) and base + 100 (HTTP) for six nodes, below Linux's ephemeral
    // range (32768 and up): no client connection of a concurrent test can be given one of them
    // between this check and the node's bind.
    // The tests of one file run in parallel in one process: each call starts elsewhere.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for attempt in 0..200u32 {
        let p = 20_000 + ((std::process::id() * 13 + call * 2_999 + attempt * 211) % 12_000) as u16;
        let free = (0..6).all(|i| {
            std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", p + 100 + i)).is_ok()
        });
        if free {
            return p;
        }
    }
    panic!("no free ports")
}

pub struct Devnet {
    pub child: Child,
    pub dir: PathBuf,
    pub console: String,
    /// Every node's console address, by node name.
    pub consoles: std::collections::BTreeMap<String, String>,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        // Ctrl-C to the devnet process this test started: it stops its nodes, then exits.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn start(dir: &Path) -> Devnet {
    start_with(dir, 8)
}

/// A devnet of `patients` patients a hospital.
pub fn start_with(dir: &Path, patients: usize) -> Devnet {
    let mut child = Command::new(BIN)
        .args(["devnet", "--patients", &patients.to_string(), "--base-port"])
        .arg(free_base().to_string())
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let mut console = None;
    let mut consoles = std::collections::BTreeMap::new();
    while let Some(Ok(line)) = lines.next() {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("/console/#genesis=") {
            let mut w = line.split_whitespace();
            if let (Some(name), Some(url)) = (w.next(), line.split_whitespace().last()) {
                consoles.insert(name.to_string(), url.to_string());
            }
        }
        if line.trim_start().starts_with("hospital-a") && line.contains("/console/#genesis=") {
            console = line.split_whitespace().last().map(str::to_string);
        }
        if line.contains("Ctrl-C stops the consortium") {
            std::thread::spawn(move || lines.for_each(drop));
            return Devnet {
                child,
                dir: dir.to_path_buf(),
                console: console.unwrap_or_else(|| panic!("no console url in:\n{seen}")),
                consoles,
            };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("devnet exited before it was ready:\n{seen}");
}

pub fn cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args([args[0], "--devnet"])
        .arg(dir)
        .args(&args[1..])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "medspace {args:?}: {text}");
    text
}

/// The devnet's deterministic consortium (its keys), from the seed it recorded.
pub fn consortium(dir: &Path) -> medspace_consortium::Consortium {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("devnet.json")).unwrap()).unwrap();
    let seed = v.pointer("/options/seed").unwrap().as_u64().unwrap();
    medspace_consortium::Consortium::default_devnet(seed, medspace_consortium::GENESIS_MS).unwrap()
}

/// `key`, exported for the browser by `medspace key export-browser` (from a plain hex key
/// file, which it accepts as it accepts a sealed one) to `out`.
pub fn browser_key(key: &medspace_types::Keypair, out: &Path) {
    let plain = out.with_extension("hex");
    std::fs::write(&plain, key.secret_hex()).unwrap();
    let _ = std::fs::remove_file(out);
    let o = Command::new(BIN)
        .args(["key", "export-browser", "--key"])
        .arg(&plain)
        .arg("--out")
        .arg(out)
        .env("MEDSPACE_KEY_PASSPHRASE", "unused-for-a-plain-key")
        .output()
        .unwrap();
    std::fs::remove_file(&plain).unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("WARNING"),
        "export-browser: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
