//! `cargo xtask sim --seeds N` (seeds 0..N), `--seed S` (one seed, replayed), with
//! `--steps K` steps per run (default 300). Prints the seeds run, the steps taken
//! and how often each fault and event fired; a failure prints its seed and the
//! shortest list of steps that still fails.

use std::collections::BTreeMap;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<u64> {
        args.iter().position(|arg| arg == flag).and_then(|at| args.get(at + 1)).and_then(|v| v.parse().ok())
    };
    let steps = value("--steps").unwrap_or(300) as usize;
    let (first, count) = match (value("--seed"), value("--seeds")) {
        (Some(seed), _) => (seed, 1),
        (None, Some(count)) => (value("--from").unwrap_or(0), count),
        (None, None) => (0, 100),
    };
    let started = std::time::Instant::now();
    let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut taken = 0u64;
    for seed in first..first + count {
        let plan = sync_sim::steps::generate(seed, steps);
        match sync_sim::run(seed, &plan) {
            Ok(counts) => {
                taken += plan.len() as u64;
                for (what, n) in counts.0 {
                    *totals.entry(what).or_default() += n;
                }
            }
            Err(failed) => {
                eprintln!("sim: seed {seed} FAILED: {}", failed.violation.0);
                eprintln!("sim: shrinking {} steps...", plan.len());
                let shortest = sync_sim::shrink(seed, &plan);
                if std::env::var_os("SYNC_SIM_TRACE").is_some() {
                    eprintln!("sim: trace of the shortest run:");
                }
                let again = sync_sim::run(seed, &shortest);
                eprintln!("sim: the shortest failing run of seed {seed} has {} steps:", shortest.len());
                for (index, step) in shortest.iter().enumerate() {
                    eprintln!("  {index:>3}. {step:?}");
                }
                if let Err(failed) = again {
                    let at = failed.at_step.map_or("at rest".to_string(), |at| format!("after step {at}"));
                    eprintln!("sim: it fails {at}: {}", failed.violation.0);
                }
                eprintln!("sim: replay with `cargo xtask sim --seed {seed} --steps {steps}`");
                // In the shape cargo's test runners print, for `cargo xtask test`'s count.
                println!("test result: FAILED. {} passed; 1 failed; 0 ignored", seed - first);
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "sim: {count} seeds ({first}..{}) passed, {taken} steps, {} steps each, in {:.1} s",
        first + count,
        steps,
        started.elapsed().as_secs_f64()
    );
    for (what, n) in totals {
        println!("  {what:<45} {n:>8}");
    }
    // In the shape cargo's test runners print, for `cargo xtask test`'s count.
    println!("test result: ok. {count} passed; 0 failed; 0 ignored");
    ExitCode::SUCCESS
}
