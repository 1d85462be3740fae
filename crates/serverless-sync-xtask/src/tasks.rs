//! The tasks themselves.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, Result, node_bin, root, run, tools_bin, wrangler_env};
use crate::summary::Counts;

/// A program the build or the tests need from the system, and where it comes from.
struct SystemTool {
    /// The command looked for on the PATH where there is no apt.
    command: &'static str,
    /// The Debian package that provides it.
    debian: &'static str,
    why: &'static str,
    /// What to install elsewhere.
    elsewhere: &'static str,
}

/// What building and serving an app needs.
const SERVE_TOOLS: &[SystemTool] = &[SystemTool {
    command: "clang",
    debian: "clang",
    why: "compiles SQLite's C to wasm32",
    elsewhere: "an LLVM clang that targets wasm32 (macOS: `brew install llvm`, then put $(brew --prefix llvm)/bin first on the PATH; Fedora: `dnf install clang`; Arch: `pacman -S clang`)",
}];

/// What the test tiers need on top.
const TEST_TOOLS: &[SystemTool] = &[
    SystemTool {
        command: "chromium",
        debian: "chromium",
        why: "the browser tests",
        elsewhere: "Chromium (Fedora: `dnf install chromium`; Arch: `pacman -S chromium`)",
    },
    SystemTool {
        command: "chromedriver",
        debian: "chromium-driver",
        why: "the wasm tests in a browser",
        elsewhere: "chromedriver matching Chromium (Fedora: `dnf install chromedriver`; Arch: part of `chromium`)",
    },
    SystemTool {
        command: "pg_ctl",
        debian: "postgresql",
        why: "the PostgreSQL tier's throwaway server (and psql)",
        elsewhere: "PostgreSQL 15 or later with pg_ctl on the PATH",
    },
];
const WORKER_BUILD_VERSION: &str = "0.8.7";
/// Must equal the `wasm-bindgen` version pinned in the workspace Cargo.toml.
const WASM_BINDGEN_VERSION: &str = "0.2.130";
const WASM_TARGET: &str = "wasm32-unknown-unknown";
const DEFAULT_DEV_PORT: &str = "8787";

// ---------------------------------------------------------------- setup

/// Everything: what serving needs and what the tests need.
pub fn setup() -> Result {
    let tools: Vec<&SystemTool> = SERVE_TOOLS.iter().chain(TEST_TOOLS).collect();
    setup_with(&tools)
}

/// What `cargo xtask dev` needs: no browser, no PostgreSQL.
fn setup_serving() -> Result {
    setup_with(&SERVE_TOOLS.iter().collect::<Vec<_>>())
}

fn setup_with(tools: &[&SystemTool]) -> Result {
    install_system_tools(tools)?;
    install_wasm_target()?;
    install_rust_components()?;
    install_cargo_tool("worker-build", WORKER_BUILD_VERSION, true)?;
    // No --locked: wasm-bindgen-cli's lockfile names a crate version the registry lacks.
    install_cargo_tool("wasm-bindgen-cli", WASM_BINDGEN_VERSION, false)?;
    install_npm_packages()?;
    eprintln!("setup: all tools present");
    Ok(())
}

/// Whether `command` is an executable file in one of the PATH's folders.
fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
}

/// On Debian (apt-get and dpkg-query present), installs the missing packages with
/// apt (through sudo when not root). Elsewhere, checks each command on the PATH and
/// says exactly what to install; it fails only if something is missing.
fn install_system_tools(tools: &[&SystemTool]) -> Result {
    if on_path("apt-get") && on_path("dpkg-query") {
        let packages: Vec<&str> = tools.iter().map(|tool| tool.debian).collect();
        return install_apt_packages(&packages);
    }
    let missing: Vec<&&SystemTool> = tools.iter().filter(|tool| !on_path(tool.command)).collect();
    if missing.is_empty() {
        eprintln!(
            "setup: no apt here; found {} on the PATH",
            tools.iter().map(|t| t.command).collect::<Vec<_>>().join(", ")
        );
        return Ok(());
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|tool| format!("  - `{}` ({}): install {}", tool.command, tool.why, tool.elsewhere))
        .collect();
    Err(format!(
        "setup: no apt-get on this system, and these are missing from the PATH:\n{}",
        lines.join("\n")
    ))
}

fn install_apt_packages(packages: &[&str]) -> Result {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| {
            cmd::output("dpkg-query", &["-W", "-f=${Status}", package])
                .is_none_or(|status| !status.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let as_root = cmd::output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0");
    let apt = |args: &[&str]| {
        let mut command = if as_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run(&mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing);
    run(&mut install)
}

fn install_wasm_target() -> Result {
    let installed = cmd::output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

/// rustfmt and clippy, for the lint tier.
fn install_rust_components() -> Result {
    let installed = cmd::output("rustup", &["component", "list", "--installed"]).unwrap_or_default();
    let missing: Vec<&str> = ["rustfmt", "clippy"]
        .into_iter()
        .filter(|component| !installed.lines().any(|line| line.starts_with(&format!("{component}-"))))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add"]).args(missing))
}

/// A pinned CLI, built once per machine: `cargo install` into a per-user cache keyed by
/// crate and version ([`tools_cache`]), shared by every checkout and every app; each
/// checkout's `.tools/bin` links to it. A second checkout (or a generated app) on this
/// machine builds nothing.
fn install_cargo_tool(krate: &str, version: &str, locked: bool) -> Result {
    let binary = if krate == "wasm-bindgen-cli" { "wasm-bindgen" } else { krate };
    let pinned_in =
        |bin: &Path| cmd::output(bin.join(binary), &["--version"]).is_some_and(|text| text.contains(version));
    if pinned_in(&tools_bin()) {
        return Ok(());
    }
    let cached = tools_cache().join(format!("{krate}-{version}"));
    let cached_bin = cached.join("bin");
    if !pinned_in(&cached_bin) {
        let mut command = Command::new("cargo");
        command.args(["install", "--force", "--root"]).arg(&cached).args([krate, "--version", version]);
        if locked {
            command.arg("--locked");
        }
        run(&mut command)?;
    } else {
        eprintln!("setup: {krate} {version} from {}", cached.display());
    }
    let bin = tools_bin();
    fs::create_dir_all(&bin).map_err(|error| format!("creating {}: {error}", bin.display()))?;
    let entries =
        fs::read_dir(&cached_bin).map_err(|error| format!("reading {}: {error}", cached_bin.display()))?;
    for entry in entries.filter_map(|entry| entry.ok()) {
        let link = bin.join(entry.file_name());
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(entry.path(), &link)
            .map_err(|error| format!("linking {}: {error}", link.display()))?;
    }
    Ok(())
}

/// Where pinned CLIs are built, once per machine and user: `$SYNC_TOOLS_CACHE`, else
/// `$XDG_CACHE_HOME/sync-engine/tools`, else `~/.cache/sync-engine/tools`.
fn tools_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("SYNC_TOOLS_CACHE") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| root().join(".tools").join("cache"));
    cache.join("sync-engine").join("tools")
}

fn install_npm_packages() -> Result {
    let root = root();
    let installed_marker = root.join("node_modules").join(".package-lock.json");
    let up_to_date = match (fs::metadata(&installed_marker), fs::metadata(root.join("package-lock.json"))) {
        (Ok(installed), Ok(lock)) => match (installed.modified(), lock.modified()) {
            (Ok(installed), Ok(lock)) => installed >= lock,
            _ => false,
        },
        _ => false,
    };
    if up_to_date {
        return Ok(());
    }
    run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&root))
}

// ---------------------------------------------------------------- build

/// One web app: a wrangler.toml, a browser bundle, a worker, a model.
#[derive(Debug, Clone)]
pub struct WebApp {
    pub name: String,
    /// The browser bundle's crate (cdylib).
    pub frontend: String,
    /// `{pkg}/{bundle}.js` + `{pkg}/{bundle}_bg.wasm`.
    pub bundle: String,
    /// The bundle's folder in the site (`pkg` by convention).
    pub pkg: String,
    /// Static assets root (wrangler `[assets]`).
    pub site: PathBuf,
    /// Module scripts copied next to the bundle (the SQLite Web Worker's entry).
    pub js: PathBuf,
    /// Files copied to the site root.
    pub public: PathBuf,
    /// Stylesheets copied to `site/style`, if the app has such a folder.
    pub style: Option<PathBuf>,
    /// The worker crate's folder (worker-build runs there).
    pub worker: PathBuf,
    /// The worker crate's package name (read from its Cargo.toml).
    pub worker_package: String,
    /// The folder holding the app's wrangler.toml.
    pub config_dir: PathBuf,
    /// The app's end-to-end tests (`*.spec.mjs` browser suites, `*.test.mjs` node suites).
    pub end2end: PathBuf,
    /// The crate whose `migrations` test checks (and writes) the app's migrations.
    pub model_package: String,
    /// What the PostgreSQL tier runs again for this app (paths from the root: node
    /// suites and browser specs); `None`: every browser spec of the app.
    pub postgres_suites: Option<Vec<String>>,
}

/// Every app: the project's own ([`crate::Project::apps`]) first, then each folder (the
/// root, then each `examples/<name>/`) laid out by convention: a wrangler.toml beside
/// crates `<name>-model` (with a `migrations` test), `<name>-frontend` (bundle
/// `<name>`), `<name>-worker`; folders `js/`, `public/`, `migrations/`, `end2end/`.
pub(crate) fn web_apps() -> Result<Vec<WebApp>> {
    let root = root();
    let mut apps: Vec<WebApp> = crate::project().apps.clone();
    let mut examples: Vec<PathBuf> = fs::read_dir(root.join("examples"))
        .map(|entries| entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect())
        .unwrap_or_default();
    examples.sort();
    for dir in std::iter::once(root.clone()).chain(examples) {
        if apps.iter().any(|app| app.config_dir == dir) {
            continue;
        }
        if let Some(app) = WebApp::conventional(&root, &dir)? {
            apps.push(app);
        }
    }
    Ok(apps)
}

impl WebApp {
    /// The app in `dir` if it is laid out by convention (see `web_apps`): its name is
    /// that of its `<name>-worker` folder.
    pub fn conventional(root: &Path, dir: &Path) -> Result<Option<WebApp>> {
        if !dir.join("wrangler.toml").is_file() {
            return Ok(None);
        }
        let mut workers: Vec<String> = fs::read_dir(dir)
            .map_err(|error| format!("reading {}: {error}", dir.display()))?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().join("Cargo.toml").is_file())
            .filter_map(|entry| entry.file_name().to_str()?.strip_suffix("-worker").map(str::to_string))
            .collect();
        workers.sort();
        let Some(name) = workers.into_iter().next() else { return Ok(None) };
        let worker = dir.join(format!("{name}-worker"));
        Ok(Some(WebApp {
            frontend: format!("{name}-frontend"),
            bundle: name.clone(),
            pkg: "pkg".into(),
            site: root.join("target").join(format!("{name}-site")),
            js: dir.join("js"),
            public: dir.join("public"),
            style: None,
            worker_package: package_name(&worker)?,
            worker,
            end2end: dir.join("end2end"),
            model_package: format!("{name}-model"),
            config_dir: dir.to_path_buf(),
            postgres_suites: None,
            name,
        }))
    }
}

/// The `name` of the `[package]` in `dir/Cargo.toml`.
pub fn package_name(dir: &Path) -> Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text =
        fs::read_to_string(&manifest).map_err(|error| format!("reading {}: {error}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if let Some(value) =
            line.strip_prefix("name").map(str::trim_start).and_then(|rest| rest.strip_prefix('='))
            && in_package
        {
            return Ok(value.trim().trim_matches('"').to_string());
        }
    }
    Err(format!("{}: no [package] name", manifest.display()))
}

/// The crates that build for wasm32 only (each app's bundle and worker): the host's
/// builds and lints leave them out.
fn wasm_only_packages(apps: &[WebApp]) -> impl Iterator<Item = &str> {
    apps.iter().flat_map(|app| [app.frontend.as_str(), app.worker_package.as_str()])
}

fn web_app(name: &str) -> Result<WebApp> {
    let apps = web_apps()?;
    let names: Vec<String> = apps.iter().map(|app| app.name.clone()).collect();
    apps.into_iter()
        .find(|app| app.name == name)
        .ok_or_else(|| format!("unknown app `{name}` (known: {})", names.join(", ")))
}

/// `cargo xtask build [--app NAME]`: the first app unless another is named. Installs
/// what building needs first (so wrangler's `[build]` works on a fresh machine).
pub fn build_task(args: &[String]) -> Result {
    setup_serving()?;
    match args {
        [] => build_app(web_apps()?.first().ok_or("this workspace has no app")?),
        [flag, name] if flag == "--app" => build_app(&web_app(name)?),
        _ => Err("usage: cargo xtask build [--app NAME]".into()),
    }
}

/// Every app's bundles, once per xtask run (the e2e and postgres tiers share them).
pub fn build() -> Result {
    for app in web_apps()? {
        build_app(&app)?;
    }
    Ok(())
}

fn build_app(app: &WebApp) -> Result {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if BUILT.lock().map(|built| built.contains(&app.name)).unwrap_or(false) {
        return Ok(());
    }
    build_app_with(app, Profile::Release)?;
    if let Ok(mut built) = BUILT.lock() {
        built.push(app.name.clone());
    }
    Ok(())
}

/// How the wasm is built: `Release` (size-optimised, LTO, wasm-opt: for tests, bench
/// and deploy) or `Dev` (cargo profile `dev-wasm`: no LTO, incremental, no wasm-opt;
/// for `cargo xtask dev --watch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Release,
    Dev,
}

impl Profile {
    /// The cargo profile's name (and its folder under target/<triple>/).
    fn cargo_name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Dev => "dev-wasm",
        }
    }
}

fn build_app_with(app: &WebApp, profile: Profile) -> Result {
    build_client(app, profile)?;
    build_worker(app, profile)?;
    write_nobuild_wrangler_config(&app.config_dir)
}

/// Browser bundles: the frontend crate twice (the page's bundle with its default
/// features, the SQLite Web Worker's with `db-worker`), each cargo -> wasm-bindgen
/// (ES module) -> wasm-opt; plus static files.
fn build_client(app: &WebApp, profile: Profile) -> Result {
    let pkg = app.site.join(&app.pkg);
    build_bundle(app, &pkg, &[], &app.bundle, profile)?;
    build_bundle(
        app,
        &pkg,
        &["--no-default-features", "--features", "db-worker"],
        &format!("{}-db", app.bundle),
        profile,
    )?;

    // The Web Worker's module script sits next to the bundle it imports.
    copy_dir(&app.js, &pkg)?;
    copy_public_and_style(app)
}

/// One bundle of the app's frontend crate, built with `features`, as
/// `pkg/{name}.js` + `pkg/{name}_bg.wasm`.
fn build_bundle(app: &WebApp, pkg: &Path, features: &[&str], name: &str, profile: Profile) -> Result {
    let root = root();
    run(Command::new("cargo")
        .args([
            "build",
            "--profile",
            profile.cargo_name(),
            "--package",
            &app.frontend,
            "--target",
            WASM_TARGET,
        ])
        .args(features)
        .current_dir(&root))?;
    let raw = cmd::cargo_target_dir()
        .join(WASM_TARGET)
        .join(profile.cargo_name())
        .join(format!("{}.wasm", app.frontend.replace('-', "_")));
    run(Command::new(tools_bin().join("wasm-bindgen"))
        .arg(&raw)
        .args(["--target", "web", "--no-typescript", "--out-name", name, "--out-dir"])
        .arg(pkg))?;
    if profile == Profile::Dev {
        return Ok(());
    }
    let bindgen_wasm = pkg.join(format!("{name}_bg.wasm"));
    run(Command::new(node_bin("wasm-opt"))
        .arg(&bindgen_wasm)
        .args(["-Oz", "--strip-debug", "--strip-producers"])
        .args(WASM_FEATURES)
        .arg("-o")
        .arg(&bindgen_wasm))
}

fn copy_public_and_style(app: &WebApp) -> Result {
    // Files served from the site root (the Service Worker's scope is its own folder).
    copy_dir(&app.public, &app.site)?;
    match &app.style {
        Some(style) => copy_dir(style, &app.site.join("style")),
        None => Ok(()),
    }
}

/// Features rustc 1.95 emits for wasm32 by default; wasm-opt must accept them.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-reference-types",
    "--enable-sign-ext",
    "--enable-multivalue",
];

/// Worker bundle via worker-build, pointed at local binaries so it downloads nothing.
fn build_worker(app: &WebApp, profile: Profile) -> Result {
    let path = std::env::join_paths(
        std::iter::once(tools_bin())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .map_err(|error| format!("PATH: {error}"))?;
    let mut worker_build = Command::new(tools_bin().join("worker-build"));
    match profile {
        Profile::Release => worker_build.arg("--release"),
        Profile::Dev => worker_build.args(["--profile", profile.cargo_name(), "--no-opt"]),
    };
    run(worker_build
        .current_dir(&app.worker)
        .env("PATH", path)
        .env("WASM_BINDGEN_BIN", tools_bin().join("wasm-bindgen"))
        .env("WASM_OPT_BIN", node_bin("wasm-opt"))
        .env("ESBUILD_BIN", node_bin("esbuild")))
}

/// `wrangler.toml` minus its `[build]` section: the tests and `xtask dev` build first,
/// then start wrangler from this file so it does not build again (twice, at that).
fn write_nobuild_wrangler_config(dir: &Path) -> Result {
    let source = fs::read_to_string(dir.join("wrangler.toml"))
        .map_err(|error| format!("reading {}/wrangler.toml: {error}", dir.display()))?;
    let mut out = String::from("# Generated by `cargo xtask build` from wrangler.toml, without [build].\n");
    let mut in_build = false;
    for line in source.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_build = trimmed == "[build]";
        }
        if !in_build {
            out.push_str(line);
            out.push('\n');
        }
    }
    fs::write(dir.join("wrangler.nobuild.toml"), &out)
        .map_err(|error| format!("writing wrangler.nobuild.toml: {error}"))?;
    // The same plus a Hyperdrive binding, for running on PostgreSQL locally. Its
    // database comes from CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE.
    out.push_str(POSTGRES_CONFIG_SECTION);
    fs::write(dir.join(POSTGRES_CONFIG), out).map_err(|error| format!("writing {POSTGRES_CONFIG}: {error}"))
}

/// Written by `build`: wrangler.nobuild.toml plus [`POSTGRES_CONFIG_SECTION`].
const POSTGRES_CONFIG: &str = "wrangler.postgres.toml";
const POSTGRES_CONFIG_SECTION: &str = "
# PostgreSQL through Hyperdrive (SYNC_UPSTREAM=postgres). Locally, wrangler proxies
# the binding to CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE.
[[hyperdrive]]
binding = \"HYPERDRIVE\"
id = \"00000000000000000000000000000000\"
";

/// `cargo xtask migrations`: writes the next upstream migration of every app whose
/// sync model changed (the apps' migrations tests, in write mode).
/// `cargo xtask migrations --reset --app NAME`: for an app not deployed yet, its
/// migrations start again from its model (one `0001_init`), and its local state
/// (`.wrangler/state`: the local D1 that recorded the old ones) is cleared.
pub fn migrations(args: &[String]) -> Result {
    let apps = match args {
        [] => web_apps()?,
        [reset, flag, name] if reset == "--reset" && flag == "--app" => {
            let app = web_app(name)?;
            let dir = app.config_dir.join("migrations");
            for sub in ["d1", "postgres"] {
                let folder = dir.join(sub);
                let files = fs::read_dir(&folder).into_iter().flatten().filter_map(|entry| entry.ok());
                for file in files
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|e| e == "sql"))
                {
                    fs::remove_file(&file)
                        .map_err(|error| format!("removing {}: {error}", file.display()))?;
                }
            }
            let snapshot = dir.join("schema.json");
            if snapshot.exists() {
                fs::remove_file(&snapshot)
                    .map_err(|error| format!("removing {}: {error}", snapshot.display()))?;
            }
            let state = app.config_dir.join(".wrangler").join("state");
            if state.exists() {
                fs::remove_dir_all(&state)
                    .map_err(|error| format!("removing {}: {error}", state.display()))?;
            }
            eprintln!(
                "{name}: migrations start again from the model, local state cleared \
                 (a database that applied the old ones needs them: never reset a deployed app)"
            );
            vec![app]
        }
        _ => return Err("usage: cargo xtask migrations [--reset --app NAME]".into()),
    };
    let mut command = Command::new("cargo");
    command.arg("test");
    for app in apps {
        command.args(["--package", &app.model_package]);
    }
    run(command.args(["--test", "migrations"]).env("SYNC_WRITE_MIGRATIONS", "1").current_dir(root()))
}

/// Every app's end-to-end files ending in `suffix` (`.test.mjs`: node:test suites of
/// HTTP and socket clients; `.spec.mjs`: the browser suites, on @playwright/test),
/// the first app first.
fn end2end_files(suffix: &str) -> Result<Vec<String>> {
    Ok(web_apps()?.iter().flat_map(|app| app_end2end_files(app, suffix)).collect())
}

/// One app's end-to-end files ending in `suffix`, as paths from the root.
fn app_end2end_files(app: &WebApp, suffix: &str) -> Vec<String> {
    let root = root();
    let mut files: Vec<PathBuf> = fs::read_dir(&app.end2end)
        .map(|entries| entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect())
        .unwrap_or_default();
    files.retain(|file| file.to_string_lossy().ends_with(suffix));
    files.sort();
    files.iter().map(|file| file.strip_prefix(&root).unwrap_or(file).to_string_lossy().into_owned()).collect()
}

fn copy_dir(from: &Path, to: &Path) -> Result {
    fs::create_dir_all(to).map_err(|error| format!("creating {}: {error}", to.display()))?;
    let entries = fs::read_dir(from).map_err(|error| format!("reading {}: {error}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("reading {}: {error}", from.display()))?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)
                .map_err(|error| format!("copying to {}: {error}", target.display()))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- deploy

/// `cargo xtask deploy [--app NAME] [--dry-run]`: the release build, the D1
/// migrations on the account's database, then `wrangler deploy` (it runs
/// wrangler.toml's `[build]`, which is this build again, at once). Wrangler runs with
/// the user's own settings (its sign-in from `npx wrangler login`). `--dry-run`:
/// builds and bundles into `target/deploy/`, and nothing leaves this machine.
pub fn deploy(args: &[String]) -> Result {
    let usage = || "usage: cargo xtask deploy [--app NAME] [--dry-run]".to_string();
    let mut app_name = None;
    let mut dry_run = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--dry-run" => dry_run = true,
            "--app" => app_name = Some(rest.next().ok_or_else(usage)?.clone()),
            _ => return Err(usage()),
        }
    }
    let app = match app_name {
        Some(name) => web_app(&name)?,
        None => web_apps()?.into_iter().next().ok_or("this workspace has no app")?,
    };
    setup_serving()?;
    build_app(&app)?;
    let wrangler = || {
        let mut command = Command::new(node_bin("wrangler"));
        command.current_dir(&app.config_dir).env("WRANGLER_SEND_METRICS", "false");
        command
    };
    if dry_run {
        let out = root().join("target").join("deploy").join(&app.name);
        return run(wrangler()
            .args(["deploy", "--config", "wrangler.toml", "--dry-run", "--outdir"])
            .arg(&out));
    }
    run(wrangler().args(["d1", "migrations", "apply", "DB", "--remote", "--config", "wrangler.toml"]))?;
    run(wrangler().args(["deploy", "--config", "wrangler.toml"]))
}

// ---------------------------------------------------------------- dev

pub fn dev(args: &[String]) -> Result {
    let names: Vec<String> = web_apps()?.into_iter().map(|app| app.name).collect();
    let apps = names.join("|");
    let usage = || {
        format!(
            "usage: cargo xtask dev [--watch] [--app {apps}] [--port N] [--postgres postgres://user:password@host:port/db]"
        )
    };
    let mut port = DEFAULT_DEV_PORT.to_string();
    let mut postgres = None;
    // The first app by default.
    let mut app_name = names.first().cloned().ok_or("this workspace has no app")?;
    let mut watch = false;
    let mut release = false;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        if flag == "--watch" {
            watch = true;
            continue;
        }
        if flag == "--release" {
            release = true;
            continue;
        }
        match (flag.as_str(), rest.next()) {
            ("--port", Some(value)) => port = value.clone(),
            ("--postgres", Some(value)) => postgres = Some(value.clone()),
            ("--app", Some(value)) => app_name = value.clone(),
            _ => return Err(usage()),
        }
    }
    let app = web_app(&app_name)?;
    // Serving needs no browser and no PostgreSQL: those come with `test`.
    setup_serving()?;
    // The dev-wasm profile (no LTO, incremental) unless asked for the release build:
    // a first run compiles in a fraction of the time; tests, bench and deploy build
    // release.
    if release {
        build_app(&app)?;
    } else {
        build_app_with(&app, Profile::Dev)?;
    }
    let root = app.config_dir.clone();
    write_dev_vars_once(&root)?;
    let mut wrangler = Command::new(node_bin("wrangler"));
    wrangler_env(&mut wrangler).current_dir(&root).args([
        "dev",
        "--ip",
        "127.0.0.1",
        "--port",
        &port,
        "--show-interactive-dev-session=false",
    ]);
    match &postgres {
        None => {
            run(wrangler_env(&mut Command::new(node_bin("wrangler")))
                .args(["d1", "migrations", "apply", "DB", "--local", "--config", "wrangler.nobuild.toml"])
                .current_dir(&root))?;
            wrangler.args(["--config", "wrangler.nobuild.toml"]);
            eprintln!("serving {app_name} on http://127.0.0.1:{port} (upstream: local D1)");
        }
        Some(url) => {
            // The worker applies migrations/postgres itself on first connection.
            wrangler
                .args(["--config", POSTGRES_CONFIG, "--var", "SYNC_UPSTREAM:postgres"])
                .env("CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE", url);
            eprintln!(
                "serving {app_name} on http://127.0.0.1:{port} (upstream: PostgreSQL through Hyperdrive)"
            );
        }
    }
    if !watch {
        return run(&mut wrangler);
    }
    // Watch: wrangler reloads the worker when its bundle changes and, with
    // --live-reload, the open pages too; this loop rebuilds on every saved source.
    let mut server =
        wrangler.arg("--live-reload").spawn().map_err(|error| format!("starting wrangler: {error}"))?;
    let result = watch_and_rebuild(&app, &mut server);
    let _ = server.kill();
    result
}

/// Folders whose files make up an app's bundles: the app's own folder (the whole
/// workspace for an app at its root) and the engine's crates when they are in it.
fn watched_folders(app: &WebApp) -> Vec<PathBuf> {
    let engine = root().join("crates");
    let mut folders = vec![app.config_dir.clone()];
    if app.config_dir != root() && engine.is_dir() {
        folders.push(engine);
    }
    folders
}

/// The newest modification time among the sources under `folders` (build outputs,
/// node_modules and dot-folders skipped).
fn newest_source(folders: &[PathBuf]) -> std::time::SystemTime {
    fn walk(dir: &Path, newest: &mut std::time::SystemTime) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || matches!(name.as_str(), "target" | "build" | "node_modules" | "pkg") {
                continue;
            }
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(modified) = entry.metadata().and_then(|meta| meta.modified()) {
                *newest = (*newest).max(modified);
            }
        }
    }
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for folder in folders {
        walk(folder, &mut newest);
    }
    newest
}

fn watch_and_rebuild(app: &WebApp, server: &mut std::process::Child) -> Result {
    let folders = watched_folders(app);
    let mut built = newest_source(&folders);
    eprintln!(
        "watching {} for changes (Ctrl-C stops)",
        folders.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    loop {
        std::thread::sleep(std::time::Duration::from_millis(400));
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("wrangler dev exited ({status})"));
        }
        let newest = newest_source(&folders);
        if newest <= built {
            continue;
        }
        // Let an editor finish writing (several files may be saved at once).
        std::thread::sleep(std::time::Duration::from_millis(200));
        built = newest_source(&folders);
        let started = std::time::Instant::now();
        eprintln!("change seen: rebuilding {} (dev-wasm profile)", app.name);
        match build_app_with(app, Profile::Dev) {
            Ok(()) => eprintln!(
                "rebuilt in {:.1} s: wrangler reloads the worker and the open pages",
                started.elapsed().as_secs_f64()
            ),
            Err(error) => eprintln!("build failed (still watching): {error}"),
        }
    }
}

/// Local secrets for `wrangler dev` (`.dev.vars`, git-ignored), made once with fresh
/// random values. `.dev.vars.example` lists every setting.
fn write_dev_vars_once(dir: &Path) -> Result {
    let path = dir.join(".dev.vars");
    if path.exists() {
        return Ok(());
    }
    let mut random = [0u8; 64];
    let mut urandom =
        fs::File::open("/dev/urandom").map_err(|error| format!("opening /dev/urandom: {error}"))?;
    std::io::Read::read_exact(&mut urandom, &mut random)
        .map_err(|error| format!("reading /dev/urandom: {error}"))?;
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let text = format!(
        "# Made by `cargo xtask dev`; see .dev.vars.example.\nSYNC_ENGINE_SECRET={}\nAUTH_SECRET={}\n",
        hex(&random[..32]),
        hex(&random[32..])
    );
    fs::write(&path, text).map_err(|error| format!("writing .dev.vars: {error}"))
}

/// The project's own script at `path` (from the root), or an error that says so.
fn script_present(path: &str) -> Result {
    if root().join(path).is_file() {
        Ok(())
    } else {
        Err(format!("this project has no {path} (the engine's repository has one to start from)"))
    }
}

/// PostgreSQL connections for the soak's cluster (see [`soak`]).
const SOAK_CONNECTIONS: u32 = 1000;

/// The soak run (`end2end/soak/soak.mjs`): honest and hostile clients against one
/// worker for `--minutes N`; it checks what must hold under abuse and exits non-zero
/// when anything did not.
pub fn soak(args: &[String]) -> Result {
    let usage = || "usage: cargo xtask soak [--minutes N] [--postgres]".to_string();
    let mut minutes = 10u32;
    let mut on_postgres = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--postgres" => on_postgres = true,
            "--minutes" => {
                minutes =
                    rest.next().and_then(|value| value.parse().ok()).filter(|m| *m > 0).ok_or_else(usage)?;
            }
            _ => return Err(usage()),
        }
    }
    script_present("end2end/soak/soak.mjs")?;
    setup()?;
    build()?;
    let mut command = Command::new("node");
    command.args(["--experimental-websocket", "end2end/soak/soak.mjs"]).current_dir(root());
    command.env("SOAK_MINUTES", minutes.to_string());
    wrangler_env(&mut command);
    // Locally, wrangler's stand-in for Hyperdrive opens one PostgreSQL connection per
    // request, where Hyperdrive pools them (transaction mode: a request waiting on a
    // callback holds no origin connection). The soak's few hundred requests in flight
    // (a push holds two: its own and its callback's read) get the slots Hyperdrive's
    // pool would give them.
    let cluster = if on_postgres { Some(crate::postgres::Cluster::start(SOAK_CONNECTIONS)?) } else { None };
    if let Some(cluster) = &cluster {
        command.env("SYNC_E2E_POSTGRES_URL", &cluster.url);
    }
    run(&mut command)
}

// ---------------------------------------------------------------- test

/// The benchmark (`end2end/bench/bench.mjs`): starts the app itself, drives Chromium
/// and Node clients, prints its table. Not a test: it asserts no timing.
pub fn bench(args: &[String]) -> Result {
    let on_postgres = match args {
        [] => false,
        [flag] if flag == "--postgres" => true,
        _ => return Err("usage: cargo xtask bench [--postgres]".into()),
    };
    script_present("end2end/bench/bench.mjs")?;
    setup()?;
    build()?;
    let mut command = Command::new("node");
    command.args(["--experimental-websocket", "end2end/bench/bench.mjs"]).current_dir(root());
    wrangler_env(&mut command);
    // With --postgres, the app keeps its data in a throwaway local cluster (the same
    // harness switch as the PostgreSQL test tier).
    let cluster = if on_postgres {
        Some(crate::postgres::Cluster::start(crate::postgres::TEST_CONNECTIONS)?)
    } else {
        None
    };
    if let Some(cluster) = &cluster {
        command.env("SYNC_E2E_POSTGRES_URL", &cluster.url);
    }
    run(&mut command)
}

/// The tiers every project has; a project's own ([`crate::Project::tiers`]) come after
/// `native`.
const TIERS: &[&str] = &["lint", "native", "wasm", "e2e", "postgres"];

fn tier_names() -> Vec<&'static str> {
    let mut names = vec![TIERS[0], TIERS[1]];
    names.extend(crate::project().tiers.iter().map(|tier| tier.name));
    names.extend(&TIERS[2..]);
    names
}

/// rustfmt, clippy and rustdoc (warnings are errors) for every crate on the target it is
/// built for. Gates the run; counts no tests.
fn lint() -> Result {
    let root = root();
    run(Command::new("cargo").args(["fmt", "--all", "--check"]).current_dir(&root))?;
    let clippy = |args: &[&str]| -> Result {
        run(Command::new("cargo").arg("clippy").args(args).args(["--", "-D", "warnings"]).current_dir(&root))
    };
    let apps = web_apps()?;
    let mut native = vec!["--workspace", "--all-targets"];
    for wasm_only in wasm_only_packages(&apps) {
        native.extend(["--exclude", wasm_only]);
    }
    clippy(&native)?;
    // The crates' documentation builds without a warning (broken or private links).
    let mut doc = Command::new("cargo");
    doc.args(["doc", "--no-deps", "--workspace"]).env("RUSTDOCFLAGS", "-D warnings").current_dir(&root);
    for wasm_only in wasm_only_packages(&apps) {
        doc.args(["--exclude", wasm_only]);
    }
    run(&mut doc)?;
    // The browser side (bundles and the engine's worker runtime, with its wasm tests).
    let mut pages: Vec<&str> = Vec::new();
    for app in &apps {
        pages.extend(["--package", &app.frontend]);
    }
    let features = apps.iter().map(|app| format!("{}/db-worker", app.frontend)).collect::<Vec<_>>().join(",");
    let mut browser = pages.clone();
    browser.extend(["--features", &features, "--target", WASM_TARGET, "--all-targets"]);
    clippy(&browser)?;
    // Each bundle as it is built: the pages without the worker runtime.
    let mut bundles = pages;
    bundles.extend(["--target", WASM_TARGET]);
    clippy(&bundles)?;
    // Each worker on its own: one build would unify an app crate's `ssr` and `hydrate`
    // features with another app's.
    for app in &apps {
        clippy(&["--package", &app.worker_package, "--target", WASM_TARGET])?;
    }
    for args in &crate::project().wasm_lints {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["--target", WASM_TARGET]);
        clippy(&args)?;
    }
    Ok(())
}

/// `npx playwright test` on browser suites (playwright.config.mjs: one worker, HTML
/// report and the traces of failed tests under target/). The summary reads its
/// closing `N passed` lines.
fn playwright_tests(files: &[&str]) -> Command {
    let mut command = Command::new(node_bin("playwright"));
    command.arg("test").args(files).env("NODE_OPTIONS", "--experimental-websocket");
    wrangler_env(&mut command);
    command
}

/// `node --test` on end-to-end files, one file at a time, TAP out (the summary reads it).
fn node_tests(files: &[&str]) -> Command {
    let mut command = Command::new("node");
    // Node 20 has WebSocket behind a flag; the poke tests use it.
    command
        .args(["--experimental-websocket", "--test", "--test-concurrency=1", "--test-reporter=tap"])
        .args(files);
    wrangler_env(&mut command);
    command
}

pub fn test(args: &[String]) -> Result {
    let known = tier_names();
    let tiers: Vec<&str> =
        if args.is_empty() { known.clone() } else { args.iter().map(String::as_str).collect() };
    if let Some(unknown) = tiers.iter().find(|tier| !known.contains(tier)) {
        return Err(format!("unknown test tier `{unknown}` (known: {})", known.join(", ")));
    }
    setup()?;
    let root = root();
    let mut total = Counts::default();
    let mut failed_tiers = Vec::new();
    for tier in tiers {
        if tier == "lint" {
            if let Err(error) = lint() {
                eprintln!("tier lint: {error}");
                failed_tiers.push(tier);
            }
            continue;
        }
        let mut counts = Counts::default();
        // Lives until the tier ends: the PostgreSQL tier's server.
        let mut cluster = None;
        let commands: Vec<Command> = match tier {
            "native" => {
                let mut command = Command::new("cargo");
                command.args(["test", "--workspace"]);
                for wasm_only in wasm_only_packages(&web_apps()?) {
                    command.args(["--exclude", wasm_only]);
                }
                vec![command]
            }
            "wasm" => {
                // The project's own browser tests, then each app's (its frontend's
                // `tests/`, in a Web Worker with the SQLite runtime).
                let mut runs: Vec<Vec<String>> = crate::project().wasm_tests.clone();
                for app in web_apps()? {
                    let crate_dir = app.config_dir.join(&app.frontend);
                    if crate_dir.join("tests").is_dir() {
                        runs.push(
                            ["--package", &app.frontend, "--features", "db-worker", "--tests"]
                                .map(String::from)
                                .to_vec(),
                        );
                    }
                }
                runs.into_iter()
                    .map(|args| {
                        let mut command = Command::new("cargo");
                        command
                            .arg("test")
                            .args(args)
                            .args(["--target", WASM_TARGET])
                            .env(
                                "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
                                tools_bin().join("wasm-bindgen-test-runner"),
                            )
                            .env(
                                "CHROMEDRIVER",
                                std::env::var("SYNC_CHROMEDRIVER")
                                    .unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
                            );
                        command
                    })
                    .collect()
            }
            "e2e" => {
                build()?;
                let suites = end2end_files(".test.mjs")?;
                let specs = end2end_files(".spec.mjs")?;
                // `node --test` without files would look for tests everywhere.
                let mut commands = Vec::new();
                if !suites.is_empty() {
                    commands.push(node_tests(&suites.iter().map(String::as_str).collect::<Vec<_>>()));
                }
                if !specs.is_empty() {
                    commands.push(playwright_tests(&specs.iter().map(String::as_str).collect::<Vec<_>>()));
                }
                commands
            }
            "postgres" => {
                build()?;
                let started = crate::postgres::Cluster::start(crate::postgres::TEST_CONNECTIONS)?;
                // Each app's suites: those it names, else every browser spec it has.
                let present = |file: &String| root.join(file).is_file();
                let mut specs: Vec<String> = Vec::new();
                let mut node_files: Vec<String> = Vec::new();
                for app in web_apps()? {
                    match &app.postgres_suites {
                        Some(files) => {
                            for file in files.iter().filter(|file| present(file)) {
                                if file.ends_with(".spec.mjs") {
                                    specs.push(file.clone());
                                } else {
                                    node_files.push(file.clone());
                                }
                            }
                        }
                        None => specs.extend(app_end2end_files(&app, ".spec.mjs")),
                    }
                }
                let mut suites = Vec::new();
                if !node_files.is_empty() {
                    suites.push(node_tests(&node_files.iter().map(String::as_str).collect::<Vec<_>>()));
                }
                if !specs.is_empty() {
                    suites.push(playwright_tests(&specs.iter().map(String::as_str).collect::<Vec<_>>()));
                }
                for command in &mut suites {
                    command.env("SYNC_E2E_POSTGRES_URL", &started.url);
                }
                // The project's native tests that need a server (ignored without one).
                let natives: Vec<Command> = crate::project()
                    .postgres_native
                    .iter()
                    .map(|args| {
                        let mut native = Command::new("cargo");
                        native.arg("test").args(args).env("SYNC_TEST_POSTGRES_URL", &started.url);
                        native
                    })
                    .collect();
                cluster = Some(started);
                natives.into_iter().chain(suites).collect()
            }
            other => match crate::project().tiers.iter().find(|tier| tier.name == other) {
                Some(tier) => vec![(tier.command)()],
                None => unreachable!("tiers are checked above"),
            },
        };
        let mut ok = true;
        for mut command in commands {
            command.current_dir(&root);
            ok &= cmd::run_streaming(&mut command, |line| counts.observe(line))?;
        }
        drop(cluster);
        eprintln!("tier {tier}: {counts}");
        if counts.passed == 0 {
            eprintln!("tier {tier} ran no test");
        }
        if !ok || counts.failed > 0 || counts.passed == 0 {
            failed_tiers.push(tier);
        }
        total.add(counts);
    }
    println!("total: {total}");
    for name in &total.failures {
        println!("failed attempt: {name}");
    }
    if failed_tiers.is_empty() {
        Ok(())
    } else {
        Err(format!("failing test tiers: {}", failed_tiers.join(", ")))
    }
}
