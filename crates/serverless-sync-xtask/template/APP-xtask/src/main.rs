//! `cargo xtask ...`: the engine's tasks (sync-xtask) on this workspace.

fn main() -> std::process::ExitCode {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    sync_xtask::main(sync_xtask::Project::new(root))
}
