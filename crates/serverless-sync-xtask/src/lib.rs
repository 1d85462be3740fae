//! Build, test and serve tasks for apps on the sync engine, as a library: an app's
//! workspace has a small `xtask` binary that calls [`main`] with its root, and every
//! app gets the same `cargo xtask` (the generator writes that binary; see
//! `cargo xtask new-app`).
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
//!     sync_xtask::main(sync_xtask::Project::new(root))
//! }
//! ```
//!
//! Apps are found in the workspace by convention (a folder, the root or
//! `examples/<name>/`, with a wrangler.toml and crates `<name>-model`,
//! `<name>-frontend`, `<name>-worker`); a project may add apps laid out otherwise,
//! test tiers, and tasks of its own.
//!
//! Only `std`: it compiles in a couple of seconds on a fresh machine.

mod cmd;
mod generate;
mod postgres;
mod summary;
mod tasks;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::OnceLock;

pub use cmd::{Result, root};
pub use tasks::{WebApp, package_name};

/// A test tier of the project's own, run after `native` (and by name).
pub struct Tier {
    pub name: &'static str,
    pub command: fn() -> Command,
}

/// A task of the project's own: `cargo xtask NAME ARGS...`.
pub struct Task {
    pub name: &'static str,
    /// One line for the usage text.
    pub usage: &'static str,
    pub run: fn(&[String]) -> Result,
}

/// What `cargo xtask` works on: the workspace root and what it has beyond convention.
pub struct Project {
    pub root: PathBuf,
    /// Apps not laid out by convention, listed first (the first app is the default of
    /// `build` and `dev`).
    pub apps: Vec<WebApp>,
    pub tiers: Vec<Tier>,
    pub tasks: Vec<Task>,
    /// Arguments of `cargo test` runs in the `wasm` tier (each gets `--target wasm32`
    /// and the headless-browser runner), beside each app's own frontend tests.
    pub wasm_tests: Vec<Vec<String>>,
    /// Arguments of extra `cargo clippy` runs for wasm32 in the `lint` tier.
    pub wasm_lints: Vec<Vec<String>>,
    /// Arguments of `cargo test` runs in the `postgres` tier, with
    /// `SYNC_TEST_POSTGRES_URL` set to its throwaway server.
    pub postgres_native: Vec<Vec<String>>,
}

impl Project {
    /// A project of conventional apps only.
    pub fn new(root: impl Into<PathBuf>) -> Project {
        let root = root.into();
        let root = root.canonicalize().unwrap_or(root);
        Project {
            root,
            apps: Vec::new(),
            tiers: Vec::new(),
            tasks: Vec::new(),
            wasm_tests: Vec::new(),
            wasm_lints: Vec::new(),
            postgres_native: Vec::new(),
        }
    }
}

static PROJECT: OnceLock<Project> = OnceLock::new();

pub(crate) fn project() -> &'static Project {
    PROJECT.get().expect("sync_xtask::main sets the project first")
}

/// Runs the task named by the command line (`cargo xtask <task> ...`).
pub fn main(configured: Project) -> ExitCode {
    if PROJECT.set(configured).is_err() {
        eprintln!("xtask: sync_xtask::main runs once");
        return ExitCode::FAILURE;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => tasks::setup(),
        Some("build") => tasks::build_task(&args[1..]),
        Some("migrations") => tasks::migrations(&args[1..]),
        Some("new-app") => generate::new_app(&args[1..]),
        Some("dev") => tasks::dev(&args[1..]),
        Some("deploy") => tasks::deploy(&args[1..]),
        Some("test") => tasks::test(&args[1..]),
        Some("bench") => tasks::bench(&args[1..]),
        Some("soak") => tasks::soak(&args[1..]),
        Some("help") | Some("--help") | None => {
            println!("{}", usage());
            Ok(())
        }
        Some(other) => match project().tasks.iter().find(|task| task.name == other) {
            Some(task) => (task.run)(&args[1..]),
            None => Err(format!("unknown task `{other}`\n\n{}", usage())),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    let mut text = String::from(USAGE);
    for task in &project().tasks {
        text.push_str("\n  ");
        text.push_str(task.usage);
    }
    text
}

const USAGE: &str = "usage: cargo xtask <task>
  setup              install apt packages, the wasm target, pinned CLIs (built once per machine in
                     ~/.cache/sync-engine/tools, linked from .tools/bin) and npm packages
  build [--app NAME]
                     build an app's browser bundle (under target/) and its worker
  migrations [--reset --app NAME]
                     write the next D1 + PostgreSQL migration of every app whose sync model changed;
                     with --reset, an app not deployed yet starts again from its model (one 0001)
                     and its local state is cleared
  new-app NAME --out DIR [--engine PATH|GIT-URL] [--collection NAME] [--field NAME:TYPE]...
                     a new app in a repository of its own at DIR (its own workspace, README, CI,
                     tests), the engine as a dependency; TYPE is text, integer, real or bool
  dev [--app NAME] [--port N] [--postgres URL] [--release] [--watch]
                     setup + build (dev-wasm profile unless --release) + local D1 migrations +
                     wrangler dev on 127.0.0.1 (default 8787); --watch rebuilds on every save;
                     with --postgres, the data lives in that PostgreSQL database instead (Hyperdrive)
  deploy [--app NAME] [--dry-run]
                     release build, D1 migrations on the account's database, `wrangler deploy`
                     (signed in with `npx wrangler login`); --dry-run bundles into target/deploy/ only
  test [TIER...]     setup + every tier (lint, native, wasm, e2e, postgres, and the project's own);
                     or just the tiers named
  bench [--postgres] setup + build + end2end/bench/bench.mjs (prints a table, writes target/bench/);
                     with --postgres, on a throwaway local PostgreSQL cluster instead of D1
  soak [--minutes N] [--postgres]
                     setup + build + end2end/soak/soak.mjs for N minutes (default 10)";
