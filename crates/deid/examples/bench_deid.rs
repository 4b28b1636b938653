//! `cargo run --release -p medspace-deid --example bench_deid -- [persons] [seed]`
fn main() {
    let mut args = std::env::args().skip(1);
    let persons = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(17);
    if let Err(e) = medspace_deid::bench::print(persons, seed) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
