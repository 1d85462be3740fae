//! This repository's automation entry point (README, CI's `.ci/run` and wrangler's
//! `[build]` call it): the engine's tasks (`sync_xtask`) on this workspace, with the
//! chat (laid out at the root, not by the examples' convention), the engine's own
//! browser tests and lints, and the deterministic simulation as a tier and a task.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};

use sync_xtask::{Project, Task, Tier, WebApp};

fn main() -> ExitCode {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut project = Project::new(manifest.parent().unwrap_or(manifest));
    match chat(&project.root) {
        Ok(Some(chat)) => project.apps.push(chat),
        Ok(None) => {}
        Err(error) => {
            eprintln!("xtask: {error}");
            return ExitCode::FAILURE;
        }
    }
    project
        .tiers
        .push(Tier { name: "sim", command: || sim_command(&["--seeds", SIM_SEEDS_IN_CI, "--steps", "300"]) });
    project.tasks.push(Task {
        name: "sim",
        usage: "sim [--seeds N | --seed S] [--from F] [--steps K]
                     the deterministic simulation of the whole sync loop: N seeds from F (default
                     100 from 0), or replay seed S; K steps per run (default 300)",
        run: sim,
    });
    let args = |list: &[&str]| list.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
    project.wasm_tests.push(args(&["--package", "serverless-sync-client", "--features", "worker"]));
    project.wasm_lints.push(args(&[
        "--package",
        "serverless-sync-client",
        "--features",
        "worker",
        "--all-targets",
    ]));
    project.wasm_lints.push(args(&["--package", "serverless-sync-server"]));
    project.postgres_native.push(args(&[
        "--package",
        "serverless-sync-server",
        "--test",
        "connector",
        "--",
        "--ignored",
    ]));
    sync_xtask::main(project)
}

/// The chat, unless a fork removed it: its crates (`app`, `frontend`, `worker`) and
/// wrangler.toml at the root; its bundle's name and folder are constants of
/// app/src/lib.rs (the server's LeptosOptions reads the same ones).
fn chat(root: &Path) -> Result<Option<WebApp>, String> {
    let lib = root.join("app").join("src").join("lib.rs");
    if !lib.is_file() || !root.join("wrangler.toml").is_file() {
        return Ok(None);
    }
    let source = fs::read_to_string(&lib).map_err(|error| format!("reading {}: {error}", lib.display()))?;
    let constant = |name: &str| -> Result<String, String> {
        let prefix = format!("pub const {name}: &str = \"");
        source
            .lines()
            .find_map(|line| line.trim().strip_prefix(&prefix)?.strip_suffix("\";").map(str::to_string))
            .ok_or_else(|| format!("app/src/lib.rs has no `{prefix}...\";`"))
    };
    let path = |parts: &[&str]| parts.iter().fold(root.to_path_buf(), |path, part| path.join(part));
    Ok(Some(WebApp {
        name: "chat".into(),
        frontend: "frontend".into(),
        bundle: constant("CLIENT_BUNDLE")?,
        pkg: constant("CLIENT_PKG_DIR")?,
        site: path(&["target", "site"]),
        js: path(&["frontend", "js"]),
        public: path(&["frontend", "public"]),
        style: Some(path(&["style"])),
        worker: path(&["worker"]),
        worker_package: sync_xtask::package_name(&root.join("worker"))?,
        config_dir: root.to_path_buf(),
        end2end: path(&["end2end"]),
        model_package: "app".into(),
        // What the PostgreSQL tier runs again: the node suites (the last only it
        // runs: its name matches none of node's test patterns) and browser suites.
        postgres_suites: Some(
            [
                "end2end/connector.test.mjs",
                "end2end/pokes.test.mjs",
                "end2end/security.test.mjs",
                "end2end/abuse.test.mjs",
                "end2end/schema.test.mjs",
                "end2end/observability.test.mjs",
                "end2end/socket-push.test.mjs",
                "end2end/postgres.suite.mjs",
                "end2end/chat.spec.mjs",
                "end2end/compaction.spec.mjs",
                "end2end/sign-in.spec.mjs",
                "end2end/direct-writes.spec.mjs",
                "end2end/revocation.spec.mjs",
                "end2end/private-rooms.spec.mjs",
                "end2end/window.spec.mjs",
            ]
            .map(String::from)
            .to_vec(),
        ),
    }))
}

/// Seeds the `sim` tier runs (about a minute on 2 cores, build included).
const SIM_SEEDS_IN_CI: &str = "500";

/// The deterministic simulation (`crates/serverless-sync-sim`), optimised: it runs thousands of
/// worlds.
fn sim_command(args: &[&str]) -> Command {
    let mut command = Command::new("cargo");
    command.args(["run", "--quiet", "--release", "--package", "serverless-sync-sim", "--"]).args(args);
    command
}

/// `cargo xtask sim [--seeds N | --seed S] [--from F] [--steps K]`: runs the
/// simulation; a failure prints its seed and the shortest failing steps.
fn sim(args: &[String]) -> sync_xtask::Result {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = sim_command(&args);
    command.current_dir(sync_xtask::root());
    if command.status().map_err(|error| format!("running the simulation: {error}"))?.success() {
        Ok(())
    } else {
        Err("the simulation found a broken invariant (see above)".into())
    }
}
