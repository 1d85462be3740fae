// `cargo xtask soak [--minutes N] [--postgres]`: one worker, 200 clients for N
// minutes, 20 of them hostile, while the honest ones keep writing and reading. It
// fails (exit 1) unless, at the end:
// - every honest write was confirmed, and exists upstream exactly once;
// - every honest client converged: its copy of its room (snapshot, then pokes and
//   pulls) is the room as the upstream holds it;
// - no honest request was answered 5xx by the worker (wrangler's local proxy answers
//   503 itself while its runtime restarts: counted and printed apart, retried);
// - the worker's memory (its /api/health figure, with the engine secret) is flat after
//   the first minute (printed every minute).
// Hostile clients each hold one account and take free client keys as they like:
// floods under fresh keys, values far beyond the bounds, pulls of 50 topics,
// sockets on many sessions of busy rooms that they never use.
//
// Knobs (environment): SOAK_MINUTES (10), SOAK_CLIENTS (200), SOAK_HOSTILE (20),
// SOAK_ROOMS (20), SOAK_WRITE_MS (mean pause between an honest client's writes, 8000),
// SOAK_ATTACKS (which hostile moves, of flood,huge,topics,lurk; all by default).
import { startApp, TEST_VARS } from '../support/app.mjs';
import { client, guestToken, newId, newClientKey, clientIdForKey, pokeSocket, CLIENT_KEY_HEADER, PROTOCOL_VERSION } from '../support/sync.mjs';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 10);
const CLIENTS = Number(process.env.SOAK_CLIENTS ?? 200);
const HOSTILE = Number(process.env.SOAK_HOSTILE ?? 20);
const ROOMS = Number(process.env.SOAK_ROOMS ?? 20);
const WRITE_MS = Number(process.env.SOAK_WRITE_MS ?? 8_000);
const HONEST = CLIENTS - HOSTILE;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const jitter = (ms) => ms / 2 + Math.random() * ms;
const rooms = Array.from({ length: ROOMS }, () => newId('room'));
const stats = {
  honestRequests: 0, honest5xx: [], honest429: 0, honestNetwork: 0, writes: 0, retries: 0,
  pokes: 0, pulls: 0, hostileRequests: 0, hostile5xx: [], hostile429: 0, hostile400: 0, hostileSockets: 0, socketsRefused: 0,
};

const app = await startApp();
const url = app.url;
const deadline = Date.now() + MINUTES * 60_000;
let failures = [];

/** A request as one client sends it: its own address, its key, its sign-in. */
async function call(who, path, body, { address, honest }) {
  const headers = { 'content-type': 'application/json', 'cf-connecting-ip': address, [CLIENT_KEY_HEADER]: who.client_key };
  if (who.token) headers.authorization = `Bearer ${who.token}`;
  const payload = JSON.stringify({ protocol_version: PROTOCOL_VERSION, client_id: who.client_id, session_id: who.session_id, ...body });
  let response;
  try {
    response = await fetch(`${url}/sync/${path}`, { method: 'POST', headers, body: payload });
  } catch (error) {
    if (honest) stats.honestNetwork++;
    return { status: 0, json: null, text: String(error) };
  }
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  // wrangler's local proxy answers this itself when its runtime restarted under it
  // (not the worker: nothing of ours runs, and there is no such proxy in production).
  const devServerRestart = response.status === 503 && text.startsWith('Your worker restarted mid-request');
  if (devServerRestart) stats.devRestarts = (stats.devRestarts ?? 0) + 1;
  if (honest) {
    stats.honestRequests++;
    if (response.status >= 500 && !devServerRestart) stats.honest5xx.push(`${path} ${response.status} ${text.slice(0, 200)}`);
    if (response.status === 429) stats.honest429++;
  } else {
    stats.hostileRequests++;
    if (response.status >= 500) stats.hostile5xx.push(`${path} ${response.status} ${text.slice(0, 200)}`);
    if (response.status === 429) stats.hostile429++;
    if (response.status === 400) stats.hostile400++;
  }
  return { status: response.status, json, text, retryAfter: response.headers.get('retry-after') };
}

/** Retries what is not the client's fault (network, 429, 5xx) until answered. */
async function until(send) {
  for (;;) {
    const answer = await send();
    if (answer.status === 200) return answer;
    if (answer.status !== 0 && answer.status !== 429 && answer.status < 500) return answer;
    stats.retries++;
    await sleep(answer.retryAfter ? Number(answer.retryAfter) * 1000 : 500);
  }
}

// ------------------------------------------------------------------ honest clients

class Honest {
  constructor(index) {
    this.index = index;
    this.honest = true;
    this.address = `10.${(index >> 8) & 255}.${index & 255}.7`;
    this.room = rooms[index % ROOMS];
    this.rows = new Map();
    this.cursor = 0;
    this.written = [];
    this.pulling = null;
    this.pullAgain = false;
  }

  async start() {
    this.token = await guestToken(url, `Honest ${this.index}`);
    this.who = client(url, this.token);
    await this.snapshot();
    this.socket = await pokeSocket(url, this.who);
    this.socket.socket.addEventListener('message', (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== 'poke') return;
      stats.pokes++;
      // As the browser does: changes a poke carries are applied at once when nothing
      // lies between where this client stands and them (`since`); else it pulls.
      const carried = message.changes ?? [];
      if (carried.length && message.since != null && message.since <= this.cursor && !this.pulling) {
        this.apply(carried);
        this.cursor = Math.max(this.cursor, message.cursor);
        stats.carried = (stats.carried ?? 0) + 1;
      } else if (message.cursor > this.cursor) {
        this.pull();
      }
    });
  }

  async snapshot() {
    const subscribe = { name: 'roomMessages', args: { roomId: this.room } };
    let answer = await until(() => call(this.who, 'query', subscribe, this));
    if (answer.status !== 200) throw new Error(`honest snapshot: ${answer.text}`);
    this.cursor = answer.json.cursor;
    for (;;) {
      for (const row of answer.json.rows) this.rows.set(row.id, row.body);
      if (!answer.json.more) break;
      answer = await until(() => call(this.who, 'query', { ...subscribe, after: answer.json.more }, this));
    }
  }

  apply(changes) {
    for (const change of changes) {
      // An upsert without its image was superseded by a change this client holds
      // or gets next: it says nothing.
      if (change.kind !== 'delete' && !change.row) continue;
      const onRoom = change.kind !== 'delete' && change.row.room_id === this.room;
      if (onRoom) this.rows.set(change.record_id, change.row.body);
      else this.rows.delete(change.record_id);
    }
  }

  /** Pulls until it has everything; one at a time, again if poked meanwhile. */
  pull() {
    if (this.pulling) {
      this.pullAgain = true;
      return this.pulling;
    }
    this.pulling = (async () => {
      do {
        this.pullAgain = false;
        let more = true;
        while (more) {
          const subscriptions = [{ name: 'roomMessages', args: { roomId: this.room }, cursor: this.cursor }];
          const answer = await until(() => call(this.who, 'pull', { cursor: this.cursor, subscriptions }, this));
          stats.pulls++;
          if (answer.status !== 200) {
            failures.push(`honest ${this.index}: pull answered ${answer.status} ${answer.text.slice(0, 200)}`);
            return;
          }
          this.apply(answer.json.changes);
          this.cursor = Math.max(this.cursor, answer.json.cursor);
          more = answer.json.has_more;
        }
      } while (this.pullAgain);
    })().finally(() => { this.pulling = null; });
    return this.pulling;
  }

  async write() {
    const body = `honest ${this.index} #${this.written.length}`;
    const mutation = {
      id: newId('outbox'), name: 'sendMessage',
      args: { roomId: this.room, authorId: this.who.subject, authorName: `Honest ${this.index}`, body },
      record_id: newId('messages'),
    };
    const answer = await until(() => call(this.who, 'push', { mutations: [mutation] }, this));
    const result = answer.json?.results?.[0];
    if (answer.status !== 200 || result?.status !== 'confirmed') {
      failures.push(`honest ${this.index}: write answered ${answer.status} ${answer.text.slice(0, 200)}`);
      return;
    }
    // Sent again, as a client that lost the answer would: answered the same, applied once.
    if (Math.random() < 0.1) {
      const again = await until(() => call(this.who, 'push', { mutations: [mutation] }, this));
      if (again.json?.results?.[0]?.seq !== result.seq) {
        failures.push(`honest ${this.index}: a replay answered ${again.text.slice(0, 200)}, first ${result.seq}`);
      }
    }
    stats.writes++;
    this.written.push({ id: mutation.record_id, body });
  }

  async run() {
    while (Date.now() < deadline) {
      await sleep(jitter(WRITE_MS));
      if (Date.now() >= deadline) break;
      await this.write();
    }
  }
}

// ------------------------------------------------------------------ hostile clients

class Hostile {
  constructor(index) {
    this.index = index;
    this.address = `192.0.2.${index + 1}`;
    this.sockets = [];
  }

  async start() {
    this.token = await guestToken(url, `Mallory ${this.index}`);
  }

  fresh() {
    const key = newClientKey();
    return { client_id: clientIdForKey(key), session_id: newId('session'), client_key: key, token: this.token, subject: undefined };
  }

  /** 100 requests, each under a fresh key, 10 at a time (more at once floods the local
   * server's connection backlog: the edge's job in production, not the worker's). */
  async flood() {
    for (let round = 0; round < 10; round++) {
      await Promise.all(Array.from({ length: 10 }, () => call(this.fresh(), 'pull', { cursor: 0, subscriptions: [] }, this)));
    }
  }

  async huge() {
    const who = this.fresh();
    await call(who, 'query', { name: 'roomMessages', args: { roomId: 'r'.repeat(200_000) } }, this);
    await call(who, 'push', { mutations: [{ id: newId('outbox'), name: 'sendMessage', args: { roomId: rooms[0], authorId: 'x', authorName: 'M', body: 'x'.repeat(200_000) }, record_id: newId('messages') }] }, this);
  }

  async manyTopics() {
    const subscriptions = Array.from({ length: 50 }, (_, i) => ({ name: 'roomMessages', args: { roomId: `${newId('room')}${i}` }, cursor: i }));
    await call(this.fresh(), 'pull', { cursor: 0, subscriptions }, this);
  }

  /** Watches a busy room from a fresh session with a socket it never uses. */
  async lurk() {
    const who = this.fresh();
    const room = rooms[Math.floor(Math.random() * ROOMS)];
    const read = await call(who, 'query', { name: 'roomMessages', args: { roomId: room } }, this);
    if (read.status !== 200) return;
    try {
      const socket = await pokeSocket(url, who);
      stats.hostileSockets++;
      this.sockets.push(socket);
      // Several sockets on one session too.
      if (Math.random() < 0.3) this.sockets.push(await pokeSocket(url, who));
    } catch (error) {
      stats.socketsRefused++;
      if (stats.socketsRefused <= 3) console.log(`hostile socket refused: ${error.message}`);
    }
    while (this.sockets.length > 40) this.sockets.shift().close();
  }

  async run() {
    const all = { flood: () => this.flood(), huge: () => this.huge(), topics: () => this.manyTopics(), lurk: () => this.lurk() };
    const chosen = (process.env.SOAK_ATTACKS ?? 'flood,huge,topics,lurk,lurk').split(',');
    const attacks = chosen.map((name) => all[name]).filter(Boolean);
    while (Date.now() < deadline) {
      await attacks[Math.floor(Math.random() * attacks.length)]();
      await sleep(jitter(1_000));
    }
    for (const socket of this.sockets) socket.close();
  }
}

// ------------------------------------------------------------------ the run

async function memory() {
  const response = await fetch(`${url}/api/health`, { headers: { 'x-sync-engine-secret': TEST_VARS.SYNC_ENGINE_SECRET, 'cf-connecting-ip': '203.0.113.1' } });
  const health = await response.json().catch(() => ({}));
  return health.wasm_memory_bytes ?? null;
}

const mb = (bytes) => (bytes == null ? '?' : `${(bytes / 1048576).toFixed(1)} MB`);

try {
  console.log(`soak: ${HONEST} honest and ${HOSTILE} hostile clients, ${ROOMS} rooms, ${MINUTES} min, upstream ${process.env.SYNC_E2E_POSTGRES_URL ? 'postgres' : 'd1'}`);
  const honest = Array.from({ length: HONEST }, (_, i) => new Honest(i));
  const hostile = Array.from({ length: HOSTILE }, (_, i) => new Hostile(i));
  for (let i = 0; i < honest.length; i += 20) await Promise.all(honest.slice(i, i + 20).map((h) => h.start()));
  for (const h of hostile) await h.start();
  const started = Date.now();
  const figures = [];
  const reporter = (async () => {
    for (let minute = 1; Date.now() < deadline; minute++) {
      await sleep(Math.min(60_000, Math.max(0, deadline - Date.now())));
      const bytes = await memory();
      figures.push(bytes);
      console.log(`minute ${minute}: memory ${mb(bytes)}; honest writes ${stats.writes}, requests ${stats.honestRequests} (5xx ${stats.honest5xx.length}, 429 ${stats.honest429}), pokes ${stats.pokes} (${stats.carried ?? 0} applied as carried), pulls ${stats.pulls}; hostile requests ${stats.hostileRequests} (429 ${stats.hostile429}, 400 ${stats.hostile400}, 5xx ${stats.hostile5xx.length}), sockets ${stats.hostileSockets}`);
    }
  })();
  await Promise.all([...honest.map((h) => h.run()), ...hostile.map((h) => h.run()), reporter]);

  // Settle: every honest client pulls to the end, then compares with the upstream.
  await sleep(2_000);
  await Promise.all(honest.map((h) => h.pull()));
  await Promise.all(honest.map((h) => h.pull()));
  const quote = (text) => `'${text.replaceAll("'", "''")}'`;
  const upstream = new Map();
  for (const room of rooms) {
    const rows = await app.sql(`SELECT id, body FROM messages WHERE room_id = ${quote(room)}`);
    upstream.set(room, new Map(rows.map(([id, body]) => [id, body])));
  }
  let diverged = 0;
  for (const h of honest) {
    const expected = upstream.get(h.room);
    const same = expected.size === h.rows.size && [...expected].every(([id, body]) => h.rows.get(id) === body);
    if (!same) {
      diverged++;
      if (diverged <= 3) failures.push(`honest ${h.index} diverged: holds ${h.rows.size} rows, the upstream ${expected.size}`);
    }
    for (const { id, body } of h.written) {
      if (expected.get(id) !== body) failures.push(`honest ${h.index}: write ${id} is not upstream as sent`);
    }
  }
  const written = honest.reduce((sum, h) => sum + h.written.length, 0);
  const stored = [...upstream.values()].reduce((sum, rows) => sum + rows.size, 0);
  if (stored !== written) failures.push(`${written} honest writes confirmed, ${stored} rows upstream`);
  if (diverged) failures.push(`${diverged} of ${HONEST} honest clients diverged`);
  if (stats.honest5xx.length) failures.push(`${stats.honest5xx.length} honest requests answered 5xx, e.g. ${stats.honest5xx.slice(0, 3).join(' | ')}`);
  const warm = figures[Math.min(1, figures.length - 1)];
  const last = figures[figures.length - 1];
  if (warm != null && last != null && last > warm + 16 * 1048576) {
    failures.push(`memory grew after warm-up: ${mb(warm)} at minute 2, ${mb(last)} at the end`);
  }
  console.log(`soak summary (${Math.round((Date.now() - started) / 1000)} s): honest writes ${written} confirmed, ${stored} upstream, ${HONEST - diverged}/${HONEST} clients converged; honest requests ${stats.honestRequests}, 5xx ${stats.honest5xx.length}, 429 ${stats.honest429}, retried ${stats.retries}, network errors ${stats.honestNetwork}, dev-server restarts answered by wrangler's proxy ${stats.devRestarts ?? 0}; pokes ${stats.pokes}, pulls ${stats.pulls}; hostile requests ${stats.hostileRequests}: 429 ${stats.hostile429}, 400 ${stats.hostile400}, 5xx ${stats.hostile5xx.length}, sockets opened ${stats.hostileSockets}, refused ${stats.socketsRefused}; memory by minute: ${figures.map(mb).join(', ')}`);
  if (stats.hostile5xx.length) console.log(`hostile 5xx (not a failure of the run, but worth a look): ${stats.hostile5xx.slice(0, 3).join(' | ')}`);
  // What the worker logged about failures (the details clients are not told); all of
  // it in target/soak-worker.log.
  await import('node:fs/promises').then((fs) => fs.mkdir('target', { recursive: true }).then(() => fs.writeFile('target/soak-worker.log', app.logs.join(''))));
  const logged = app.logs.join('').split('\n').filter((line) => /upstream_|callback_unavailable|panic|error/i.test(line));
  console.log(`worker log: ${logged.length} failure lines${logged.length ? `, e.g.\n  ${[...new Set(logged.map((l) => l.slice(0, 240)))].slice(0, 5).join('\n  ')}` : ''}`);
} catch (error) {
  failures.push(`the run failed: ${error.stack ?? error}`);
} finally {
  await app.stop();
}
if (failures.length) {
  console.error(`soak FAILED:\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
console.log('soak passed');
