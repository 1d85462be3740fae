//! Running child processes with clear failures.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub type Result<T = ()> = std::result::Result<T, String>;

/// The project's workspace root (set by [`crate::main`]).
pub fn root() -> PathBuf {
    crate::project().root.clone()
}

/// Where cargo puts what it builds: `$CARGO_TARGET_DIR` (relative to the root), else
/// the root's `target/`.
pub fn cargo_target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// Repo-local folder for installed CLIs (`.tools/bin`).
pub fn tools_bin() -> PathBuf {
    root().join(".tools").join("bin")
}

pub fn node_bin(name: &str) -> PathBuf {
    root().join("node_modules").join(".bin").join(name)
}

/// Environment every wrangler invocation gets: no telemetry, no internet look-ups,
/// logs and config inside the repo.
pub fn wrangler_env(command: &mut Command) -> &mut Command {
    let root = root();
    command
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("WRANGLER_LOG_PATH", root.join(".wrangler").join("logs"))
        .env("XDG_CONFIG_HOME", root.join(".config"))
        .env("CI", "true")
        // The banner's update check asks the npm registry; skip it, and point any other
        // update check at a closed local port so it fails at once.
        .env("WRANGLER_HIDE_BANNER", "true")
        .env("npm_config_registry", "http://127.0.0.1:9/")
        .stdin(Stdio::null())
}

pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs a command with inherited output; an unsuccessful exit is an error.
pub fn run(command: &mut Command) -> Result {
    eprintln!("$ {}", describe(command));
    let status =
        command.status().map_err(|error| format!("could not start `{}`: {error}", describe(command)))?;
    if status.success() { Ok(()) } else { Err(format!("`{}` failed with {status}", describe(command))) }
}

/// Runs a command, echoing its stdout line by line and handing each line to `on_line`.
/// Returns whether it exited successfully (so the caller can finish its summary first).
pub fn run_streaming(command: &mut Command, mut on_line: impl FnMut(&str)) -> Result<bool> {
    eprintln!("$ {}", describe(command));
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("could not start `{}`: {error}", describe(command)))?;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|error| format!("reading output: {error}"))?;
            println!("{line}");
            on_line(&line);
        }
    }
    let status = child.wait().map_err(|error| format!("waiting for child: {error}"))?;
    Ok(status.success())
}

/// Output of a command, or None when it cannot run / fails.
pub fn output(program: impl AsRef<OsStr>, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
