//! The engine/app boundary, checked on the sources:
//! - no engine crate (`crates/*`) mentions the chat: not its words (chat, room,
//!   messages) nor any name of its sync model (collections, columns, queries,
//!   mutators, args), in code, comments, tests or manifests;
//! - no engine crate depends on an app crate;
//! - the core (`sync`) depends on no web-sys, worker, leptos, database driver or HTTP
//!   client: it stays I/O-free and natively testable.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn engine_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            engine_files(&path, out);
        } else if path.extension().is_some_and(|ext| {
            ["rs", "toml", "json", "js", "mjs", "md"].contains(&ext.to_str().unwrap_or_default())
        }) {
            out.push(path);
        }
    }
}

/// Names the chat owns, taken from its model (short generic column names excepted:
/// `id`, `body`, `created_at` are every app's words).
fn chat_names() -> Vec<String> {
    let model = app::model::chat_model();
    let mut names: Vec<String> = vec!["chat".into(), "room".into(), "messages".into()];
    for collection in model.collections() {
        names.push(collection.name.clone());
        names.extend(collection.columns.iter().map(|column| column.name.clone()));
    }
    for query in model.queries() {
        names.push(query.name.clone());
        names.extend(query.required_predicates.iter().map(|p| p.arg.clone()));
    }
    for mutator in model.mutators() {
        names.push(mutator.name.clone());
        names.extend(mutator.required_values.iter().map(|v| v.arg.clone()));
    }
    let generic = ["id", "body", "created_at", "last_modified_by"];
    names.retain(|name| !generic.contains(&name.as_str()));
    names.sort();
    names.dedup();
    names
}

#[test]
fn no_engine_crate_mentions_the_chat() {
    let names = chat_names();
    assert!(names.contains(&"roomMessages".to_string()) && names.contains(&"author_name".to_string()));
    let mut files = Vec::new();
    engine_files(&root().join("crates"), &mut files);
    assert!(files.len() > 20, "found the engine's sources");
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default().to_lowercase();
        for name in &names {
            if let Some(at) = text.find(&name.to_lowercase()) {
                let line = text[..at].lines().count().max(1);
                found.push(format!("{}:{line}: `{name}`", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "engine crates mention the chat:\n{}", found.join("\n"));
}

fn dependencies(package: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["tree", "--package", package, "--edges", "normal", "--target", "all", "--prefix", "none"])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn crate_names(tree: &str) -> Vec<String> {
    tree.lines().filter_map(|line| line.split_whitespace().next().map(str::to_string)).collect()
}

#[test]
fn engine_crates_depend_on_no_app() {
    for engine in [
        "serverless-sync",
        "serverless-sync-store",
        "serverless-sync-client",
        "serverless-sync-server",
        "serverless-sync-xtask",
    ] {
        let names = crate_names(&dependencies(engine));
        for app in ["app", "frontend", "sync-worker", "todo-model", "todo-frontend", "todo-worker"] {
            assert!(!names.iter().any(|name| name == app), "{engine} depends on the app crate {app}");
        }
    }
}

#[test]
fn the_core_does_no_io() {
    let names = crate_names(&dependencies("serverless-sync"));
    for forbidden in
        ["web-sys", "worker", "leptos", "gloo-net", "reqwest", "hyper", "tokio-postgres", "rusqlite", "axum"]
    {
        assert!(!names.iter().any(|name| name == forbidden), "sync depends on {forbidden}");
    }
}
