// Test harness of an app on the sync engine: starts the real app (wrangler dev ->
// workerd + local D1) on free loopback ports with a fresh state folder, and launches
// Debian's Chromium. It ships with the engine (crates/serverless-sync-xtask/harness); `cargo
// xtask new-app` copies it into a new app's end2end/support/.
//
// With SYNC_E2E_POSTGRES_URL set (the PostgreSQL tier of `cargo xtask test` sets it to
// its throwaway cluster), every app runs with SYNC_UPSTREAM=postgres on a fresh
// database of that cluster, reached through wrangler's local Hyperdrive.
import { spawn, execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtemp, rm, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

/** The project's root: the nearest folder up from here with the pinned wrangler. */
export const ROOT = projectRoot();
function projectRoot() {
  for (const start of [process.cwd(), dirname(fileURLToPath(import.meta.url))]) {
    let dir = start;
    for (;;) {
      if (existsSync(join(dir, 'node_modules', '.bin', 'wrangler'))) return dir;
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  throw new Error('no node_modules/.bin/wrangler above this folder: run `cargo xtask setup` first');
}
const WRANGLER = join(ROOT, 'node_modules', '.bin', 'wrangler');
// Each app's folder (its wrangler.toml): `examples/<name>/` if there is one, else the
// root. `cargo xtask build` writes beside it wrangler.nobuild.toml (without [build],
// so nothing rebuilds here) and wrangler.postgres.toml (the same plus a Hyperdrive
// binding).
const appDir = (name) => {
  const example = name ? join(ROOT, 'examples', name) : null;
  return example && existsSync(join(example, 'wrangler.toml')) ? example : ROOT;
};
/** The PostgreSQL cluster's maintenance database URL, when testing on PostgreSQL. */
export const POSTGRES_URL = process.env.SYNC_E2E_POSTGRES_URL || null;
export const UPSTREAM = POSTGRES_URL ? 'postgres' : 'd1';

/** Runs SQL with psql against `url`; resolves to the output rows (fields split on |). */
export function psql(url, sql) {
  return new Promise((resolve, reject) => {
    execFile('psql', [url, '--no-psqlrc', '--tuples-only', '--no-align', '--set', 'ON_ERROR_STOP=1', '--command', sql],
      (error, stdout, stderr) => {
        if (error) return reject(new Error(`psql: ${stderr || error.message}`));
        resolve(stdout.split('\n').filter((line) => line !== '').map((line) => line.split('|')));
      });
  });
}

/**
 * Runs SQL on an app's local D1 (the folder `wrangler dev --persist-to` uses); resolves
 * to the rows, each an array of its values as text (the shape `psql` gives).
 */
async function d1(config, state, sql) {
  // The local D1 is one SQLite file shared with the running workerd: a write from this
  // second process can find it locked (SQLITE_BUSY) while the worker writes. A batch
  // is one transaction, so trying again is safe. (A deployed D1 has no second process.)
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await d1Once(config, state, sql);
    } catch (error) {
      if (attempt >= 20 || !/SQLITE_BUSY|database is locked/.test(error.message)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
    }
  }
}

function d1Once(config, state, sql) {
  return new Promise((resolve, reject) => {
    const args = ['d1', 'execute', 'DB', '--local', '--config', config, '--persist-to', state, '--json', '--command', sql];
    execFile(WRANGLER, args, { cwd: ROOT, env: wranglerEnv }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`wrangler d1 execute: ${stderr || stdout || error.message}`));
      try {
        const [first] = JSON.parse(stdout);
        resolve((first?.results ?? []).map((row) => Object.values(row).map((value) => String(value))));
      } catch (parse) {
        reject(new Error(`wrangler d1 execute answered ${stdout}: ${parse.message}`));
      }
    });
  });
}

/** `url` with its database name replaced. */
function withDatabase(url, database) {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/**
 * The app's PostgreSQL database: a fresh one per state folder, kept with the folder
 * (a restart with `persistTo` finds the same data).
 */
async function postgresDatabase(state) {
  const marker = join(state, 'postgres-database');
  if (existsSync(marker)) return (await readFile(marker, 'utf8')).trim();
  const name = `e2e_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  await psql(POSTGRES_URL, `CREATE DATABASE "${name}"`);
  await writeFile(marker, name);
  return name;
}
export const ARTIFACTS = join(ROOT, 'end2end', 'artifacts');

const wranglerEnv = {
  ...process.env,
  WRANGLER_SEND_METRICS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_LOG_PATH: join(ROOT, '.wrangler', 'logs'),
  XDG_CONFIG_HOME: join(ROOT, '.config'),
  CI: 'true',
  // No update check against the npm registry (see sync-xtask's cmd.rs).
  WRANGLER_HIDE_BANNER: 'true',
  npm_config_registry: 'http://127.0.0.1:9/',
};

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function runToEnd(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(WRANGLER, args, { cwd: ROOT, env: wranglerEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => { output += chunk; });
    child.stderr.on('data', (chunk) => { output += chunk; });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`wrangler ${args.join(' ')} exited ${code}:\n${output}`))));
  });
}

async function waitForHealth(url, child, logs, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler exited early (${child.exitCode}):\n${logs.join('')}`);
    try {
      const response = await fetch(`${url}/api/health`);
      if (response.ok) return;
      // The worker serves, but says its upstream is not right (a test's broken
      // database, a schema that lags the model): serving is all this waits for.
      const body = await response.json().catch(() => ({}));
      if (response.status === 503 && typeof body.protocol_version === 'number') return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`wrangler did not become healthy within ${timeoutMs} ms:\n${logs.join('')}`);
}

/**
 * Starts the app. `persistTo` reuses a state folder (to test restarts); otherwise a
 * fresh one is made and removed by `stop({ keepState: false })`.
 */
/** Secrets every test instance runs with (wrangler `--var`), unless overridden. */
export const TEST_VARS = {
  SYNC_ENGINE_SECRET: 'test-engine-secret',
  AUTH_SECRET: 'test-auth-secret-of-32-bytes-or-more',
};

/**
 * Starts an app: the one at the root (the default) or an example under
 * `examples/<app>/`.
 */
export async function startApp({ persistTo, vars = {}, postgresUrl, app = null } = {}) {
  const dir = appDir(app);
  const CONFIG = join(dir, 'wrangler.nobuild.toml');
  const POSTGRES_CONFIG = join(dir, 'wrangler.postgres.toml');
  if (!existsSync(CONFIG)) throw new Error(`${CONFIG} is missing: run \`cargo xtask build\` first`);
  const state = persistTo ?? (await mkdtemp(join(tmpdir(), 'sync-e2e-')));
  let config = CONFIG;
  let env = wranglerEnv;
  let databaseUrl = null;
  if (POSTGRES_URL) {
    // The worker migrates the database itself on first connection.
    databaseUrl = withDatabase(POSTGRES_URL, await postgresDatabase(state));
    config = POSTGRES_CONFIG;
    env = { ...wranglerEnv, CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE: postgresUrl ?? databaseUrl };
    vars = { SYNC_UPSTREAM: 'postgres', ...vars };
  } else {
    await runToEnd(['d1', 'migrations', 'apply', 'DB', '--local', '--config', CONFIG, '--persist-to', state]);
  }
  // A free port can be taken between asking for it and wrangler binding it (workerd
  // opens ports of its own): start again on new ports when that happens.
  let child;
  let logs;
  let url;
  for (let attempt = 1; ; attempt += 1) {
    const port = await freePort();
    const inspectorPort = await freePort();
    child = spawn(
      WRANGLER,
      [
        'dev', '--config', config, '--ip', '127.0.0.1', '--port', String(port),
        '--inspector-port', String(inspectorPort), '--persist-to', state,
        '--show-interactive-dev-session=false',
        // GET /__scheduled runs the cron handler (compaction) on demand.
        '--test-scheduled',
        ...Object.entries({ ...TEST_VARS, ...vars }).flatMap(([key, value]) => ['--var', `${key}:${value}`]),
      ],
      // Own process group, so stop() ends wrangler and the workerd it started.
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    const output = [];
    logs = output;
    child.stdout.on('data', (chunk) => output.push(chunk.toString()));
    child.stderr.on('data', (chunk) => output.push(chunk.toString()));
    url = `http://127.0.0.1:${port}`;
    try {
      await waitForHealth(url, child, output, 60_000);
      break;
    } catch (error) {
      killGroup(child);
      if (attempt < 3 && output.join('').includes('Address already in use')) continue;
      throw error;
    }
  }
  return {
    url,
    state,
    logs,
    upstream: UPSTREAM,
    /** The app's own PostgreSQL database (null on D1). */
    databaseUrl,
    /** Runs SQL on the app's upstream (psql on PostgreSQL, wrangler on the local D1). */
    sql: databaseUrl ? (text) => psql(databaseUrl, text) : (text) => d1(CONFIG, state, text),
    /**
     * Runs the cron handler (change-log compaction) now; resolves to what it logged:
     * `{ through, removed }`.
     */
    async compact() {
      const seen = logs.join('').split('compaction:').length;
      const response = await fetch(`${url}/__scheduled?cron=${encodeURIComponent('*/10 * * * *')}`);
      if (!response.ok) throw new Error(`/__scheduled answered ${response.status}`);
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        const parts = logs.join('').split('compaction:');
        if (parts.length > seen) {
          const line = parts[parts.length - 1].split('\n')[0];
          const match = line.match(/through (\d+), (\d+) changes removed/);
          if (!match) throw new Error(`compaction failed: ${line}`);
          return { through: Number(match[1]), removed: Number(match[2]) };
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error('the compaction did not report within 15 s');
    },
    async stop({ keepState = persistTo !== undefined } = {}) {
      await new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', resolve);
        killGroup(child);
        setTimeout(() => { killGroup(child, 'SIGKILL'); resolve(); }, 5_000).unref();
      });
      if (!keepState) {
        await rm(state, { recursive: true, force: true });
        if (databaseUrl) await psql(POSTGRES_URL, `DROP DATABASE IF EXISTS "${new URL(databaseUrl).pathname.slice(1)}" WITH (FORCE)`);
      }
    },
  };
}

function killGroup(child, signal = 'SIGTERM') {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

export async function launchBrowser() {
  const userDataDir = await mkdtemp(join(tmpdir(), 'sync-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    // SYNC_CHROMIUM overrides Debian's path (another system's Chromium).
    executablePath: process.env.SYNC_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Collects page errors and console errors so a test can assert there were none. */
export function watchErrors(page) {
  const errors = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()} at ${message.location().url}`);
  });
  return errors;
}
