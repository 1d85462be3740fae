//! The project's one automation entry point. README, CI (`.ci/run`) and wrangler's
//! `[build]` all call it:
//!
//! - `cargo xtask setup`  install every tool the build and tests need (idempotent)
//! - `cargo xtask build`  client bundle + worker bundle (`--app todo`: the example's)
//! - `cargo xtask migrations`  write the next upstream migration of a changed model
//! - `cargo xtask new-app NAME`  scaffold `examples/NAME` from the todo example
//! - `cargo xtask dev`    setup, build, migrate local D1, serve on http://127.0.0.1:8787
//!   (`--postgres URL`: keep the data in that PostgreSQL database instead)
//! - `cargo xtask test`   setup, then every test tier; prints one closing summary line
//! - `cargo xtask bench`  setup, build, then the benchmark (not part of `test`)
//! - `cargo xtask sim`    the deterministic simulation (`--seeds N`, `--seed S` to replay)
//!
//! Only `std`: this crate compiles in a couple of seconds on a fresh machine.

mod cmd;
mod postgres;
mod summary;
mod tasks;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => tasks::setup(),
        Some("build") => tasks::build_task(&args[1..]),
        Some("migrations") => tasks::migrations(&args[1..]),
        Some("new-app") => tasks::new_app(&args[1..]),
        Some("dev") => tasks::dev(&args[1..]),
        Some("test") => tasks::test(&args[1..]),
        Some("bench") => tasks::bench(&args[1..]),
        Some("soak") => tasks::soak(&args[1..]),
        Some("sim") => tasks::sim(&args[1..]),
        Some("help") | Some("--help") | None => {
            println!("{}", USAGE);
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <task>
  setup              install apt packages, the wasm target, pinned CLIs (built once per machine in
                     ~/.cache/sync-engine/tools, linked from .tools/bin) and npm packages
  build [--app NAME]
                     build an app's browser bundle (target/site, target/todo-site) and its worker
  migrations [--reset --app NAME]
                     write the next D1 + PostgreSQL migration of every app whose sync model changed;
                     with --reset, an app not deployed yet starts again from its model (one 0001)
                     and its local state is cleared
  new-app NAME       a new app at examples/NAME, copied from the todo example, in the workspace
  dev [--app NAME] [--port N] [--postgres URL] [--release] [--watch]
                     setup + build (dev-wasm profile unless --release) + local D1 migrations +
                     wrangler dev on 127.0.0.1 (default 8787); --watch rebuilds on every save;
                     with --postgres, the data lives in that PostgreSQL database instead (Hyperdrive)
  test [TIER...]     setup + every tier (lint, native, sim, wasm, e2e, postgres); or just the tiers named
  sim [--seeds N | --seed S] [--from F] [--steps K]
                     the deterministic simulation of the whole sync loop: N seeds from F (default
                     100 from 0), or replay seed S; K steps per run (default 300)
  bench [--postgres] setup + build + the benchmark: prints a table, writes target/bench/report.{json,png};
                     with --postgres, on a throwaway local PostgreSQL cluster instead of D1
  soak [--minutes N] [--postgres]
                     setup + build + 200 clients for N minutes (default 10), 20 of them hostile:
                     fails unless every honest write is confirmed once, every honest client
                     converges and gets no 5xx; prints the worker's memory every minute";
