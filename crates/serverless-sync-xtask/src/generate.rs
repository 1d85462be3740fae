//! `cargo xtask new-app`: a new app in a repository of its own, from `template/`.
//!
//! The template's files are copied with `APP` in their paths replaced by the app's
//! name and `{{token}}`s in their text replaced ([`Names`], [`Field`] code). The
//! workspace manifest, the tool pins (npm, rustfmt, clippy, cargo config), the
//! lockfile and the test harness come from the engine's own repository, so an app
//! starts on exactly the versions the engine is tested with.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, Result, run};

const USAGE: &str = "usage: cargo xtask new-app NAME --out DIR [--engine PATH|GIT-URL] [--collection NAME] \
                     [--field NAME:TYPE]... [--ssr] [--offline] (TYPE: text, integer, real, bool; default: --field text:text \
                     --field done:bool; --ssr: the worker renders the page with its rows, the browser hydrates; \
                     --offline: a Service Worker, the page opens with no network once visited)";

/// The engine's repository (this crate is `crates/serverless-sync-xtask` in it).
fn engine_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.join("..").join("..").canonicalize().unwrap_or_else(|_| manifest.join("..").join(".."))
}

/// A column the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    name: String,
    kind: FieldKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    Text,
    Integer,
    Real,
    Bool,
}

impl FieldKind {
    fn parse(text: &str) -> Option<FieldKind> {
        Some(match text {
            "text" | "string" => FieldKind::Text,
            "integer" | "int" => FieldKind::Integer,
            "real" | "float" => FieldKind::Real,
            "bool" | "boolean" => FieldKind::Bool,
            _ => return None,
        })
    }

    fn rust(self) -> &'static str {
        match self {
            FieldKind::Text => "String",
            FieldKind::Integer => "i64",
            FieldKind::Real => "f64",
            FieldKind::Bool => "bool",
        }
    }

    fn json(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Integer => "integer",
            FieldKind::Real => "real",
            FieldKind::Bool => "bool",
        }
    }
}

/// Columns every generated collection has; a field may not take their names.
const RESERVED_COLUMNS: &[&str] = &["id", "board_id", "created_at", "updated_by"];

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "abstract", "become", "box", "do", "final", "macro", "override", "priv", "try", "typeof",
    "unsized", "virtual", "yield",
];

fn is_snake_identifier(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !text.ends_with('_')
        && !text.contains("__")
        && text.len() <= 40
}

/// `my_notes` -> `MyNotes`.
fn upper_camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// What the app is called, in each form the code needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    /// `my-notes`: crates, bundle, wrangler.
    app: String,
    /// `my_notes`: Rust paths.
    app_snake: String,
    /// `My notes`: the page's heading.
    title: String,
    /// `notes`: the collection (table).
    collection: String,
    /// `note`: one row, in snake case (`notes` -> `note`; `stock` -> `stock_item`).
    row: String,
}

impl Names {
    fn new(app: &str, collection: &str) -> Names {
        let app_snake = app.replace('-', "_");
        let words = app_snake.replace('_', " ");
        let mut title = words.clone();
        if let Some(first) = title.get(..1) {
            title = first.to_ascii_uppercase() + &title[1..];
        }
        let row = singular(collection).unwrap_or_else(|| format!("{collection}_item"));
        Names { app: app.into(), app_snake, title, collection: collection.into(), row }
    }
}

/// English plurals as collections are usually named (`notes`, `entries`, `boxes`,
/// `addresses`); `None` for a word that is not one.
fn singular(plural: &str) -> Option<String> {
    for (ending, becomes) in [("ies", "y"), ("sses", "ss"), ("xes", "x"), ("ches", "ch"), ("shes", "sh")] {
        if let Some(stem) =
            plural.strip_suffix(ending).filter(|stem| !stem.is_empty() && !stem.ends_with('_'))
        {
            return Some(format!("{stem}{becomes}"));
        }
    }
    plural
        .strip_suffix('s')
        .filter(|stem| !stem.is_empty() && !stem.ends_with(['s', 'u', 'i', '_']))
        .map(str::to_string)
}

/// The parsed command line.
#[derive(Debug)]
struct Request {
    names: Names,
    fields: Vec<Field>,
    out: PathBuf,
    engine: Option<String>,
    /// A Service Worker: the page opens with no network once visited.
    offline: bool,
    /// Server rendering: the worker renders the page with its rows; the browser hydrates.
    ssr: bool,
}

fn parse(args: &[String]) -> Result<Request> {
    let mut name = None;
    let mut out = None;
    let mut engine = None;
    let mut collection = None;
    let mut fields = Vec::new();
    let mut offline = false;
    let mut ssr = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().cloned().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--engine" => engine = Some(value()?),
            "--collection" => collection = Some(value()?),
            "--offline" => offline = true,
            "--ssr" => ssr = true,
            "--field" => {
                let spec = value()?;
                let (field, kind) = spec.split_once(':').unwrap_or((spec.as_str(), "text"));
                let kind = FieldKind::parse(kind)
                    .ok_or_else(|| format!("--field {spec}: the type is text, integer, real or bool"))?;
                fields.push(Field { name: field.to_string(), kind });
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}\n{USAGE}")),
            positional if name.is_none() => name = Some(positional.to_string()),
            extra => return Err(format!("unexpected `{extra}`\n{USAGE}")),
        }
    }
    let name = name.ok_or_else(|| USAGE.to_string())?;
    let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.len() <= 32;
    if !valid_name || ["xtask", "sync", "worker", "app"].contains(&name.as_str()) {
        return Err(format!(
            "`{name}`: an app name has lowercase letters, digits and single `-`, starts with a letter, and is not xtask, sync, worker or app"
        ));
    }
    let out = out.ok_or_else(|| format!("--out DIR: where the new repository goes\n{USAGE}"))?;
    let collection = collection.unwrap_or_else(|| name.replace('-', "_"));
    if !is_snake_identifier(&collection) || collection.starts_with("sync_") {
        return Err(format!(
            "--collection {collection}: lowercase letters, digits and `_`, starting with a letter (not sync_)"
        ));
    }
    if fields.is_empty() {
        fields = vec![
            Field { name: "text".into(), kind: FieldKind::Text },
            Field { name: "done".into(), kind: FieldKind::Bool },
        ];
    }
    for field in &fields {
        if !is_snake_identifier(&field.name)
            || RESERVED_COLUMNS.contains(&field.name.as_str())
            || RUST_KEYWORDS.contains(&field.name.as_str())
        {
            return Err(format!(
                "--field {}: a field is a lowercase snake_case name, not a Rust keyword nor one of {}",
                field.name,
                RESERVED_COLUMNS.join(", ")
            ));
        }
        if fields.iter().filter(|other| other.name == field.name).count() > 1 {
            return Err(format!("--field {}: named twice", field.name));
        }
    }
    if fields.iter().all(|field| field.kind == FieldKind::Bool) {
        return Err("at least one field is text, integer or real (rows are told apart by it)".into());
    }
    let names = Names::new(&name, &collection);
    if names.row == "board" {
        return Err("--collection boards: the app has boards already; name the rows otherwise".into());
    }
    Ok(Request { names, fields, out, engine, offline, ssr })
}

/// Every `{{token}}` of the template and its text.
fn tokens(request: &Request, engine_what: &str) -> BTreeMap<&'static str, String> {
    let (names, fields) = (&request.names, &request.fields);
    let row_camel = upper_camel(&names.row);
    let label = |field: &Field| field.name.replace('_', " ");
    let first_text = fields.iter().find(|field| field.kind == FieldKind::Text);
    let key = fields.iter().find(|field| field.kind != FieldKind::Bool);
    let mut code: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut push = |token: &'static str, line: String| code.entry(token).or_default().push_str(&line);
    for field in fields {
        let (n, text) = (&field.name, field.kind == FieldKind::Text);
        let clone = if text { ".clone()" } else { "" };
        push("struct_fields", format!("    pub {n}: {},\n", field.kind.rust()));
        // A text column holds what the rules allow (4 bytes a character at most).
        let limit = if text { "    #[collection(max_bytes = 2000)]\n" } else { "" };
        push("row_fields", format!("{limit}    pub {n}: {},\n", field.kind.rust()));
        push("copy_fields", format!("            {n}: row.{n}{clone},\n"));
        push(
            "trim_fields",
            if text {
                format!("            {n}: self.{n}.trim().to_string(),\n")
            } else {
                format!("            {n}: self.{n},\n")
            },
        );
        if text {
            let required = first_text == Some(field);
            push("checks", format!("        check_text(\"{}\", &self.{n}, {required})?;\n", label(field)));
            if required {
                push(
                    "check_tests",
                    format!(
                        "        let empty = {row_camel}Fields {{ {n}: String::new(), ..sample() }};\n        \
                         assert!(empty.check().unwrap_err().contains(\"needs a {}\"));\n",
                        label(field)
                    ),
                );
            }
            push(
                "check_tests",
                format!(
                    "        let long = {row_camel}Fields {{ {n}: \"x\".repeat(MAX_TEXT_CHARS + 1), ..sample() }};\n        \
                     assert!(long.check().unwrap_err().contains(\"at most\"));\n"
                ),
            );
        }
        push("insert_values", format!("                    .value(\"{n}\", args.{n}{clone})\n"));
        push("update_sets", format!("                    .set(\"{n}\", args.{n}{clone})\n"));
        push(
            "sample_fields",
            match field.kind {
                FieldKind::Text => format!("            {n}: \" {} 1 \".into(),\n", label(field)),
                FieldKind::Integer => format!("            {n}: 7,\n"),
                FieldKind::Real => format!("            {n}: 1.5,\n"),
                FieldKind::Bool => format!("            {n}: true,\n"),
            },
        );
        let testid = format!("{}-{n}", names.row.replace('_', "-"));
        let (draft, row_input) = match field.kind {
            FieldKind::Text => (
                format!(
                    "                <input data-testid=\"new-{n}\" placeholder=\"{l}\" aria-label=\"{l}\" autocomplete=\"off\"\n                    \
                     prop:value=move || draft.get().{n} on:input=move |ev| draft.update(|d| d.{n} = event_target_value(&ev))/>\n",
                    l = label(field)
                ),
                format!(
                    "                <input data-testid=\"{testid}\" aria-label=\"{l}\" prop:value=row.{n}.clone() on:change={{\n                    \
                     let (save, fields) = (save.clone(), fields.clone());\n                    \
                     move |ev| save({row_camel}Fields {{ {n}: event_target_value(&ev), ..fields.clone() }})\n                \
                     }}/>\n",
                    l = label(field)
                ),
            ),
            FieldKind::Integer | FieldKind::Real => (
                format!(
                    "                <input type=\"number\" step=\"any\" data-testid=\"new-{n}\" placeholder=\"{l}\" aria-label=\"{l}\"\n                    \
                     prop:value=move || draft.get().{n}.to_string()\n                    \
                     on:change=move |ev| draft.update(|d| d.{n} = event_target_value(&ev).parse().unwrap_or_default())/>\n",
                    l = label(field)
                ),
                format!(
                    "                <input type=\"number\" step=\"any\" data-testid=\"{testid}\" aria-label=\"{l}\" prop:value=row.{n}.to_string() on:change={{\n                    \
                     let (save, fields) = (save.clone(), fields.clone());\n                    \
                     move |ev| save({row_camel}Fields {{ {n}: event_target_value(&ev).parse().unwrap_or(fields.{n}), ..fields.clone() }})\n                \
                     }}/>\n",
                    l = label(field)
                ),
            ),
            FieldKind::Bool => (
                format!(
                    "                <label><input type=\"checkbox\" data-testid=\"new-{n}\" prop:checked=move || draft.get().{n}\n                    \
                     on:change=move |ev| draft.update(|d| d.{n} = event_target_checked(&ev))/>\" {l}\"</label>\n",
                    l = label(field)
                ),
                format!(
                    "                <input type=\"checkbox\" data-testid=\"{testid}\" aria-label=\"{l}\" prop:checked=row.{n} on:change={{\n                    \
                     let (save, fields) = (save.clone(), fields.clone());\n                    \
                     move |ev| save({row_camel}Fields {{ {n}: event_target_checked(&ev), ..fields.clone() }})\n                \
                     }}/>\n",
                    l = label(field)
                ),
            ),
        };
        push("draft_inputs", draft);
        push("row_inputs", row_input);
    }
    let key = key.map_or_else(String::new, |field| match field.kind {
        FieldKind::Text => format!("row.{}.clone()", field.name),
        _ => format!("row.{}.to_string()", field.name),
    });
    let fields_json = fields
        .iter()
        .map(|field| format!("{{ name: '{}', type: '{}' }}", field.name, field.kind.json()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut all: BTreeMap<&'static str, String> = BTreeMap::from([
        ("app", names.app.clone()),
        ("app_snake", names.app_snake.clone()),
        ("Title", names.title.clone()),
        ("collection", names.collection.clone()),
        ("ROWS", names.collection.to_ascii_uppercase()),
        ("Rows", upper_camel(&names.collection)),
        ("Row", row_camel.clone()),
        ("ROW", names.row.to_ascii_uppercase()),
        ("row_words", names.row.replace('_', " ")),
        ("row_testid", names.row.replace('_', "-")),
        ("key_expr", key),
        ("fields_json", format!("[{fields_json}]")),
        ("engine_what", engine_what.to_string()),
        ("#offline", request.offline.to_string()),
        ("#ssr", request.ssr.to_string()),
        ("check_tests", String::new()),
        ("checks", String::new()),
    ]);
    all.extend(code);
    all
}

/// The template's text with every `{{token}}` replaced, and each section
/// `{{#flag}}...{{/flag}}` kept only when `flag` is on (`{{^flag}}...{{/flag}}`: only
/// when it is off). Flags are the tokens `#flag` whose value is `true`. A tag alone on
/// its line takes the line with it.
fn render(text: &str, tokens: &BTreeMap<&'static str, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(mut start) = rest.find("{{") {
        // `{{{token}}`: a literal brace, then the token.
        while rest[start + 2..].starts_with('{') {
            start += 1;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("the template has an unclosed {{")?;
        let token = &after[..end];
        rest = &after[end + 2..];
        if let Some(flag) = token.strip_prefix('#').or_else(|| token.strip_prefix('^')) {
            let close = format!("{{{{/{flag}}}}}");
            let inner_end =
                rest.find(&close).ok_or_else(|| format!("the section {{{{{token}}}}} is not closed"))?;
            let on = tokens.get(format!("#{flag}").as_str()).is_some_and(|value| value == "true");
            let wanted = if token.starts_with('#') { on } else { !on };
            let inner = rest[..inner_end].strip_prefix('\n').unwrap_or(&rest[..inner_end]);
            if wanted {
                out.push_str(&render(inner, tokens)?);
            }
            rest = &rest[inner_end + close.len()..];
            rest = rest.strip_prefix('\n').unwrap_or(rest);
            continue;
        }
        let value = tokens
            .get(token)
            .ok_or_else(|| format!("the template names an unknown token {{{{{token}}}}}"))?;
        out.push_str(value);
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the engine's crates come from, as a Cargo dependency's source.
fn engine_source(requested: Option<&str>, engine: &Path) -> Result<(String, String)> {
    let from_git = |url: &str, rev: Option<String>| {
        let rev = rev.map(|rev| format!(", rev = \"{rev}\"")).unwrap_or_default();
        (format!("git = \"{url}\"{rev}"), format!("from {url}"))
    };
    match requested {
        Some(url) if url.contains("://") || url.starts_with("git@") => Ok(from_git(url, None)),
        Some(path) => {
            let path = Path::new(path);
            let crates = path.join("crates").join("serverless-sync").join("Cargo.toml");
            if !crates.is_file() {
                return Err(format!(
                    "--engine {}: no crates/serverless-sync there (the engine's checkout?)",
                    path.display()
                ));
            }
            let path =
                path.canonicalize().map_err(|error| format!("--engine {}: {error}", path.display()))?;
            Ok((format!("path = \"{}\"", path.display()), format!("the checkout at {}", path.display())))
        }
        None => {
            let url = cmd::output("git", &["-C", &engine.to_string_lossy(), "remote", "get-url", "origin"]);
            let rev = cmd::output("git", &["-C", &engine.to_string_lossy(), "rev-parse", "HEAD"]);
            match url.map(|url| url.trim().to_string()).filter(|url| !url.is_empty()) {
                Some(url) => Ok(from_git(&url, rev.map(|rev| rev.trim().to_string()))),
                None => {
                    eprintln!(
                        "new-app: the engine's checkout has no `origin` remote; the app uses it by path \
                         (--engine URL to use a git repository)"
                    );
                    engine_source(Some(&engine.to_string_lossy()), engine)
                }
            }
        }
    }
}

/// The engine crates an app depends on: the key it names them by (which is also their
/// import name), their package (and folder under `crates/`), anything more.
const ENGINE_CRATES: &[(&str, &str, &str)] = &[
    ("sync", "serverless-sync", ""),
    ("sync-store", "serverless-sync-store", ""),
    ("sync-client", "serverless-sync-client", ", default-features = false"),
    ("sync-server", "serverless-sync-server", ""),
    ("sync-xtask", "serverless-sync-xtask", ""),
];

/// Third-party dependencies an app's crates name, pinned as the engine pins them.
const APP_DEPENDENCIES: &[&str] = &[
    "serde",
    "serde_json",
    "leptos",
    "leptos_axum",
    "any_spawner",
    "axum",
    "worker",
    "wasm-bindgen",
    "js-sys",
    "web-sys",
    "console_error_panic_hook",
    "getrandom",
    "getrandom03",
    "wasm-bindgen-test",
];

/// The new workspace's Cargo.toml: its members, the engine's package defaults, lints
/// and profiles, the engine crates from `source`, and the engine's pins of the rest.
fn workspace_manifest(engine_manifest: &str, names: &Names, source: &str) -> Result<String> {
    let sections = toml_sections(engine_manifest);
    let section = |name: &str| -> Result<&Vec<String>> {
        sections
            .iter()
            .find(|(section, _)| section == name)
            .map(|(_, lines)| lines)
            .ok_or_else(|| format!("the engine's Cargo.toml has no [{name}]"))
    };
    let app = &names.app;
    let mut out = format!(
        "[workspace]\nresolver = \"3\"\nmembers = [\"{app}-model\", \"{app}-frontend\", \"{app}-worker\", \"{app}-xtask\"]\n\n"
    );
    out.push_str("[workspace.package]\n");
    for line in section("workspace.package")? {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("\n[workspace.dependencies]\n# The sync engine.\n");
    for (key, package, extra) in ENGINE_CRATES {
        let source = if source.starts_with("path = ") {
            let base = source.trim_start_matches("path = ").trim_matches('"');
            format!("path = \"{base}/crates/{package}\"")
        } else {
            source.to_string()
        };
        out.push_str(&format!("{key} = {{ package = \"{package}\", {source}{extra} }}\n"));
    }
    out.push_str("\n# Pinned as the engine pins them.\n");
    let dependencies = section("workspace.dependencies")?;
    for wanted in APP_DEPENDENCIES {
        let line = dependencies
            .iter()
            .find(|line| line.split('=').next().is_some_and(|key| key.trim() == *wanted))
            .ok_or_else(|| format!("the engine's Cargo.toml does not pin {wanted}"))?;
        out.push_str(line);
        out.push('\n');
    }
    for (name, lines) in &sections {
        if name.starts_with("workspace.lints") || name.starts_with("profile") {
            out.push_str(&format!("\n[{name}]\n"));
            for line in lines {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// A TOML file's `[section]`s and their lines (comments and blank lines dropped), in
/// file order by name.
fn toml_sections(text: &str) -> Vec<(String, Vec<String>)> {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            sections.push((name.to_string(), Vec::new()));
        } else if let Some((_, lines)) = sections.last_mut() {
            lines.push(line.to_string());
        }
    }
    sections
}

fn write(path: &Path, text: &str) -> Result {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|error| format!("creating {}: {error}", parent.display()))?;
    }
    fs::write(path, text).map_err(|error| format!("writing {}: {error}", path.display()))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|error| format!("reading {}: {error}", path.display()))
}

/// Copies the template folder `from` into `to`, renaming and rendering.
fn copy_template(from: &Path, to: &Path, app: &str, tokens: &BTreeMap<&'static str, String>) -> Result {
    let entries = fs::read_dir(from).map_err(|error| format!("reading {}: {error}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("reading {}: {error}", from.display()))?;
        let name = entry.file_name().to_string_lossy().replace("APP", app);
        // `NAME.offline`: a file of the `--offline` option only.
        let name = match name.strip_suffix(".offline") {
            Some(name) if tokens.get("#offline").is_some_and(|on| on == "true") => name.to_string(),
            Some(_) => continue,
            None => name,
        };
        // Dot files are kept without their dot in the engine (no stray .gitignore there).
        let name = if name == "gitignore" { ".gitignore".to_string() } else { name };
        let target = to.join(&name);
        if entry.path().is_dir() {
            copy_template(&entry.path(), &target, app, tokens)?;
        } else {
            write(&target, &render(&read(&entry.path())?, tokens)?)?;
            #[cfg(unix)]
            if let Ok(meta) = entry.metadata() {
                use std::os::unix::fs::PermissionsExt;
                let _ = fs::set_permissions(&target, fs::Permissions::from_mode(meta.permissions().mode()));
            }
        }
    }
    Ok(())
}

/// `cargo xtask new-app NAME --out DIR ...`: a new app, its own repository.
pub fn new_app(args: &[String]) -> Result {
    let request = parse(args)?;
    let out = &request.out;
    if out.exists() && fs::read_dir(out).map(|mut entries| entries.next().is_some()).unwrap_or(true) {
        return Err(format!("{} exists and is not empty", out.display()));
    }
    let engine = engine_root();
    let (source, engine_what) = engine_source(request.engine.as_deref(), &engine)?;
    let tokens = tokens(&request, &engine_what);
    let app = &request.names.app;
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_template(&here.join("template"), out, app, &tokens)?;

    // The workspace, pinned as the engine is, and the tool settings it is built with.
    write(
        &out.join("Cargo.toml"),
        &workspace_manifest(&read(&engine.join("Cargo.toml"))?, &request.names, &source)?,
    )?;
    for file in ["rustfmt.toml", "clippy.toml", "Cargo.lock"] {
        write(&out.join(file), &read(&engine.join(file))?)?;
    }
    // Cargo's settings for wasm32, and `cargo xtask` running the app's own.
    let config = read(&engine.join(".cargo").join("config.toml"))?;
    let alias = "xtask = \"run --quiet --package xtask --\"";
    if !config.contains(alias) {
        return Err(format!("the engine's .cargo/config.toml has no `{alias}`"));
    }
    let config = config.replace(alias, &format!("xtask = \"run --quiet --package {app}-xtask --\""));
    write(&out.join(".cargo").join("config.toml"), &config)?;
    // npm pins (wrangler, Playwright, wasm-opt): the engine's, under the app's name.
    let rename_package =
        |text: String| text.replacen("\"name\": \"serverless-sync\"", &format!("\"name\": \"{app}\""), 2);
    write(&out.join("package.json"), &rename_package(read(&engine.join("package.json"))?))?;
    write(&out.join("package-lock.json"), &rename_package(read(&engine.join("package-lock.json"))?))?;
    // The harness the browser tests run on.
    let harness = here.join("harness");
    for file in ["app.mjs", "fixtures.mjs"] {
        write(&out.join("end2end").join("support").join(file), &read(&harness.join(file))?)?;
    }

    // Migration 0001 from the model, and code laid out as rustfmt lays it out.
    run(Command::new("cargo")
        .args(["test", "--quiet", "--package", &format!("{app}-model"), "--test", "migrations"])
        .env("SYNC_WRITE_MIGRATIONS", "1")
        .current_dir(out))?;
    run(Command::new("cargo").args(["fmt", "--all"]).current_dir(out))?;
    if cmd::output("git", &["-C", &out.to_string_lossy(), "init", "--quiet"]).is_some() {
        let _ = Command::new("git").args(["add", "--all"]).current_dir(out).status();
    }
    eprintln!(
        "new app `{app}` at {}:\n  cd {}\n  cargo xtask dev     serves it on http://127.0.0.1:8787\n  cargo xtask test    every test tier\n\
         The model and rules are in {app}-model/src/lib.rs, the page in {app}-frontend/src/page.rs.",
        out.display(),
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn names_take_every_form_the_code_needs() {
        let names = Names::new("my-notes", "notes");
        assert_eq!(
            (names.app_snake.as_str(), names.title.as_str(), names.row.as_str()),
            ("my_notes", "My notes", "note")
        );
        assert_eq!(Names::new("stock", "stock").row, "stock_item");
        assert_eq!(Names::new("inbox", "addresses").row, "address");
        assert_eq!(Names::new("log", "entries").row, "entry");
        assert_eq!(Names::new("log", "status").row, "status_item");
        assert_eq!(upper_camel("shopping_items"), "ShoppingItems");
    }

    #[test]
    fn the_command_line_is_checked_before_anything_is_written() {
        let request = parse(&args("notes --out /tmp/x")).expect("valid");
        assert_eq!(request.names.collection, "notes");
        assert_eq!(request.fields.len(), 2, "text and done by default");
        let typed =
            parse(&args("shop --out d --collection items --field name --field price:real")).expect("valid");
        assert_eq!(typed.fields[0], Field { name: "name".into(), kind: FieldKind::Text });
        assert_eq!(typed.fields[1].kind, FieldKind::Real);
        for (line, says) in [
            ("Notes --out d", "an app name"),
            ("notes", "--out"),
            ("notes --out d --field id", "not a Rust keyword nor one of"),
            ("notes --out d --field type", "not a Rust keyword"),
            ("notes --out d --field a:date", "text, integer, real or bool"),
            ("notes --out d --field a:bool", "at least one field"),
            ("notes --out d --field a --field a", "named twice"),
            ("notes --out d --collection boards", "has boards already"),
            ("notes --out d --collection sync_x", "not sync_"),
        ] {
            let error = parse(&args(line)).expect_err(line);
            assert!(error.contains(says), "{line}: {error}");
        }
    }

    #[test]
    fn the_template_renders_every_token_for_every_kind_of_field() {
        let request = parse(&args(
            "my-board --out d --field title --field count:integer --field weight:real --field done:bool",
        ))
        .expect("valid");
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("template");
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in fs::read_dir(dir).expect("template").flatten() {
                if entry.path().is_dir() { walk(&entry.path(), out) } else { out.push(entry.path()) }
            }
        }
        let mut files = Vec::new();
        walk(&template, &mut files);
        assert!(files.len() > 15, "the template's files");
        for (offline, ssr) in [(false, false), (true, false), (false, true), (true, true)] {
            let request = Request { offline, ssr, ..parse(&args("my-board --out d")).expect("valid") };
            let tokens = tokens(&request, "the engine");
            let page = render(&read(&template.join("APP-frontend/src/page.rs")).expect("read"), &tokens)
                .expect("renders");
            assert_eq!(
                page.contains("sync_client::offline::enable"),
                offline,
                "--offline: the Service Worker"
            );
            assert_eq!(page.contains("pub struct ServerPage"), ssr, "--ssr: what the worker read");
            let worker = render(&read(&template.join("APP-worker/src/lib.rs")).expect("read"), &tokens)
                .expect("renders");
            assert_eq!(
                worker.contains("render_app_to_stream_with_context"),
                ssr,
                "--ssr: the worker renders"
            );
            assert_eq!(worker.contains("const SHELL"), !ssr, "without --ssr: a static shell");
        }
        let tokens = tokens(&request, "the engine");
        for file in files {
            let text = render(&read(&file).expect("read"), &tokens)
                .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            assert!(!text.contains("{{"), "{}: a token is left", file.display());
        }
        assert!(tokens["row_fields"].contains("#[collection(max_bytes = 2000)]\n    pub title: String,"));
        assert!(tokens["key_expr"].contains("row.title.clone()"));
    }

    #[test]
    fn the_engine_is_a_checkout_or_a_git_url() {
        let engine = engine_root();
        let (path, _) = engine_source(Some(&engine.to_string_lossy()), &engine).expect("this checkout");
        assert_eq!(path, format!("path = \"{}\"", engine.display()));
        let error = engine_source(Some("/nonexistent"), &engine).expect_err("not a checkout");
        assert!(error.contains("no crates/serverless-sync there"), "{error}");
        let (git, _) = engine_source(Some("https://example.org/engine.git"), &engine).expect("a URL");
        assert_eq!(git, "git = \"https://example.org/engine.git\"");
    }

    #[test]
    fn the_manifest_pins_what_the_engine_pins() {
        let engine = read(&engine_root().join("Cargo.toml")).expect("engine manifest");
        let manifest =
            workspace_manifest(&engine, &Names::new("notes", "notes"), "path = \"/e\"").expect("manifest");
        assert!(
            manifest.contains(
                "sync-client = { package = \"serverless-sync-client\", path = \"/e/crates/serverless-sync-client\", default-features = false }"
            )
        );
        assert!(
            manifest.contains(
                "members = [\"notes-model\", \"notes-frontend\", \"notes-worker\", \"notes-xtask\"]"
            )
        );
        assert!(manifest.contains("[profile.release]") && manifest.contains("[workspace.lints.clippy]"));
        let wasm_bindgen = engine.lines().find(|line| line.starts_with("wasm-bindgen =")).expect("pinned");
        assert!(manifest.contains(wasm_bindgen));
        let git =
            workspace_manifest(&engine, &Names::new("notes", "notes"), "git = \"https://e\", rev = \"abc\"")
                .expect("git");
        assert!(git.contains("sync = { package = \"serverless-sync\", git = \"https://e\", rev = \"abc\" }"));
    }
}

/// The guide's Rust snippets are excerpts of real code: of the app the generator
/// writes (which CI builds and tests) or of this repository.
#[cfg(test)]
mod guide {
    use super::*;

    /// Text without any whitespace: rustfmt may wrap a line differently than the guide.
    fn squeezed(text: &str) -> String {
        text.chars().filter(|c| !c.is_whitespace()).collect()
    }

    #[test]
    fn guide_snippets_are_real_code() {
        let engine = engine_root();
        let guide = read(&engine.join("docs").join("build-your-own-app.md")).expect("the guide");
        let request = parse(&["notes".to_string(), "--out".into(), "x".into()]).expect("the guide's app");
        let tokens = tokens(&request, "the engine");
        let lines: Vec<&str> = guide.lines().collect();
        let mut checked = 0;
        for (at, line) in lines.iter().enumerate() {
            if line.trim() != "```rust" {
                continue;
            }
            let marker = at.checked_sub(1).map(|before| lines[before]).unwrap_or_default();
            let source = marker
                .strip_prefix("<!-- snippet: ")
                .and_then(|rest| rest.strip_suffix(" -->"))
                .unwrap_or_else(|| {
                    panic!("guide line {}: a Rust snippet without `<!-- snippet: ... -->`", at + 1)
                });
            let text = if let Some(path) = source.strip_prefix("app:") {
                let template = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("template")
                    .join(path.replacen("notes", "APP", 1));
                render(&read(&template).expect("template file"), &tokens).expect("renders")
            } else if let Some(path) = source.strip_prefix("repo:") {
                read(&engine.join(path)).expect("repository file")
            } else {
                panic!("guide line {at}: a snippet is from app: or repo:");
            };
            let end = lines[at + 1..].iter().position(|line| line.trim() == "```").expect("the snippet ends")
                + at
                + 1;
            let snippet = lines[at + 1..end].join("\n");
            assert!(
                squeezed(&text).contains(&squeezed(&snippet)),
                "guide line {}: this snippet is not in {source}:\n{snippet}",
                at + 1
            );
            checked += 1;
        }
        assert!(checked >= 10, "the guide's snippets ({checked})");
    }
}
