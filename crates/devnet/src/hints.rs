//! What `medspace devnet` tells a person to try: commands that run as printed, in order, on the
//! running devnet (a test runs every one) — the open health route with curl, and a study signed
//! by the devnet's users on an example query specification written beside the devnet.

use crate::devnet::{Devnet, OBSERVER};

/// The example query specification written into the devnet's directory.
pub const EXAMPLE_SPEC: &str = "example-query.json";

/// Every person with a birth date, counted by sex.
pub const EXAMPLE_QUERY: &str = r#"{"version":1,"cohort":{"age":{"min":0,"max":150},"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;

/// The reviewers the example's contract over the three hospitals' data waits for.
pub const REVIEWERS: [&str; 3] = [
    "hospital-a.steward",
    "hospital-b.steward",
    "hospital-c.steward",
];

/// The commands to try: while the devnet runs, and once it is stopped.
#[derive(Clone, Debug, Default)]
pub struct Hints {
    /// To run now, in this order.
    pub now: Vec<String>,
    /// To run once the devnet is stopped.
    pub after_stop: Vec<String>,
}

/// How to run this binary as printed: `medspace` when that is what `PATH` finds, else its path.
pub fn medspace_command() -> String {
    let Ok(exe) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "medspace".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            d.join("medspace")
                .canonicalize()
                .is_ok_and(|found| found == exe)
        })
    });
    if on_path {
        "medspace".into()
    } else {
        exe.display().to_string()
    }
}

/// The hints for `net`, writing the example specification they use into its directory.
pub fn hints(net: &Devnet) -> std::io::Result<Hints> {
    let mut now = Vec::new();
    let url = net.url("hospital-a").unwrap_or_default();
    now.push(match net.http("hospital-a") {
        Some(addr) if !net.options.plain_http => format!(
            "curl --cacert {} --resolve hospital-a:{}:{} {url}/v1/health",
            net.cert_file("hospital-a").display(),
            addr.port(),
            addr.ip()
        ),
        _ => format!("curl {url}/v1/health"),
    });
    let spec = net.dir.join(EXAMPLE_SPEC);
    std::fs::write(&spec, EXAMPLE_QUERY)?;
    let me = medspace_command();
    let q = format!("{me} query --devnet {}", net.dir.display());
    now.push(format!(
        "{q} contract --spec {} --study example-study",
        spec.display()
    ));
    for reviewer in REVIEWERS {
        now.push(format!("{q} --as {reviewer} approve --contract latest"));
    }
    now.push(format!("{q} run --contract latest --epsilon 0.3"));
    now.push(format!("{q} status --contract latest"));
    let after_stop = vec![format!(
        "{me} audit verify --data-dir {}",
        net.dir.join(OBSERVER).display()
    )];
    Ok(Hints { now, after_stop })
}
