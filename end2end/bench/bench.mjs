// The benchmark: starts the app (wrangler dev + local D1), drives headless Chromium
// and lightweight Node clients, prints a table and writes target/bench/report.json and
// target/bench/report.png. Run it with `cargo xtask bench` (it builds first).
//
// Knobs (environment): BENCH_SENDS (default 500), BENCH_FANOUT ("10,100"),
// BENCH_FANOUT_MESSAGES (20), BENCH_INITIAL (10000), BENCH_PUSH_BATCHES (20),
// BENCH_THREE_SENDER_ROUNDS (50), BENCH_LARGE_ROOM (100000), BENCH_VISITED_ROOMS (20),
// BENCH_VISITED_ROOM_SIZE (10000), BENCH_JOINERS (100).
import { mkdir, writeFile, stat, readFile, readdir } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { startApp, launchBrowser, ROOT, UPSTREAM, TEST_VARS } from '../support/app.mjs';
import { client, guestToken, newId, socketTicket } from '../support/sync.mjs';

const OUT = join(ROOT, 'target', 'bench');
const SENDS = Number(process.env.BENCH_SENDS ?? 500);
const SENDS_PER_ROOM = 100;
const FANOUT = (process.env.BENCH_FANOUT ?? '10,100').split(',').map(Number);
const FANOUT_MESSAGES = Number(process.env.BENCH_FANOUT_MESSAGES ?? 20);
const INITIAL = Number(process.env.BENCH_INITIAL ?? 10_000);
const PUSH_BATCHES = Number(process.env.BENCH_PUSH_BATCHES ?? 20);
const BATCH = 100;
const THREE_SENDER_ROUNDS = Number(process.env.BENCH_THREE_SENDER_ROUNDS ?? 50);
const LARGE_ROOM = Number(process.env.BENCH_LARGE_ROOM ?? 100_000);
const VISITED_ROOMS = Number(process.env.BENCH_VISITED_ROOMS ?? 20);
const VISITED_ROOM_SIZE = Number(process.env.BENCH_VISITED_ROOM_SIZE ?? 10_000);
const JOINERS = Number(process.env.BENCH_JOINERS ?? 100);
/** The chat's room window (model::ROOM_WINDOW) and its "Show earlier" step. */
const WINDOW = 200;

function summarize(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
  const mean = sorted.reduce((s, x) => s + x, 0) / (sorted.length || 1);
  return { n: sorted.length, median: at(0.5), p95: at(0.95), p99: at(0.99), mean, max: sorted[sorted.length - 1] };
}

const log = (...args) => console.error('[bench]', ...args);

/**
 * Where the server's time goes: wrangler's per-request durations ("POST /sync/push
 * 200 OK (12ms)") for the log lines `logs` gained during one phase.
 */
function serverTimes(lines) {
  const byPath = {};
  for (const line of lines.join('').split('\n')) {
    const match = line.match(/(GET|POST) (\/[^\s?]*)\S* (\d{3}) .*\((\d+)ms\)/);
    if (!match) continue;
    const key = `${match[1]} ${match[2].startsWith('/room/') ? '/room/{room}' : match[2]}`;
    (byPath[key] ??= []).push(Number(match[4]));
  }
  return Object.fromEntries(Object.entries(byPath).map(([key, samples]) => [key, summarize(samples)]));
}

/** The engine's JSON log lines of one `event` kind among wrangler's output `lines`. */
function* engineLines(lines, event) {
  const marker = `{"event":"${event}"`;
  for (const line of lines.join('').split('\n')) {
    const at = line.indexOf(marker);
    if (at < 0) continue;
    try {
      yield JSON.parse(line.slice(at));
    } catch {
      // A line cut by the terminal: not counted.
    }
  }
}

/**
 * What the engine's request lines (sync_server::observe) say about `lines`: requests,
 * pushes, mutations, and what D1 reported it read, wrote and ran (what D1 bills).
 */
function upstreamCosts(lines) {
  const totals = { requests: 0, pushes: 0, mutations: 0, d1_rows_read: 0, d1_rows_written: 0, d1_statements: 0, push_statements: 0, push_at: [] };
  // A push's time on the server, split as its line splits it (median of each).
  const pushParts = {};
  for (const entry of engineLines(lines, 'request')) {
    totals.requests += 1;
    totals.d1_rows_read += entry.d1_rows_read ?? 0;
    totals.d1_rows_written += entry.d1_rows_written ?? 0;
    totals.d1_statements += entry.d1_statements ?? 0;
    if (entry.route === '/sync/push' && entry.status === 200) {
      totals.pushes += 1;
      totals.mutations += entry.mutations;
      totals.push_statements += entry.d1_statements ?? 0;
      (pushParts.ms ??= []).push(entry.ms);
      totals.push_at.push(entry.at);
      (pushParts.upstream_ms ??= []).push(entry.upstream_ms ?? 0);
      (pushParts.callback_ms ??= []).push(entry.callback_ms ?? 0);
    }
  }
  totals.push_ms = Object.fromEntries(Object.entries(pushParts).map(([key, samples]) => [key, summarize(samples).median]));
  return totals;
}

/**
 * What the Durable Objects' event lines (sync_server::observe::object_event) say
 * about `lines`: the Durable Object requests a poke costs (the connector's request to
 * the topic's object, that object's request to each watching session, a held poke's
 * alarm), the WebSocket messages it sent, and every time a socket message woke a
 * session (a hibernating socket that stays quiet wakes nothing).
 */
function objectCosts(lines) {
  const totals = { topic_pokes: 0, session_requests: 0, sockets_poked: 0, storage_rows_written: 0, alarms: 0, socket_wakeups: 0, object_lines: 0, poke_at: [] };
  let fanOutMs;
  for (const entry of engineLines(lines, 'object')) {
    totals.object_lines += 1;
    const counts = entry.counts ?? {};
    if (entry.object === 'subscription' && entry.action === 'poke') {
      totals.topic_pokes += 1;
      (fanOutMs ??= []).push(entry.ms ?? 0);
      totals.poke_at.push(entry.at);
      totals.session_requests += counts.sessions ?? 0;
      totals.sockets_poked += counts.poked ?? 0;
      totals.storage_rows_written += counts.storage_rows_written ?? 0;
    } else if (entry.action === 'held_poke_released') {
      totals.alarms += 1;
      totals.sockets_poked += counts.sockets ?? 0;
    } else if (entry.action === 'socket_message') {
      totals.socket_wakeups += 1;
    }
  }
  totals.topic_poke_ms = fanOutMs ? summarize(fanOutMs).median : null;
  return totals;
}

/**
 * Where the median send's time goes, hop by hop, from the sends phase: the page's own
 * timings, the connector's request line for the push (its time, the app's callback,
 * the upstream database), the topic object's fan-out, and what is left of send ->
 * render on the second browser once the hops before it are taken away (the session
 * object, the socket, the receiving SQLite worker and page). Medians of each part, so
 * the parts explain the rows approximately, not to the millisecond.
 */
function waterfall(sends, upstream, objects) {
  const median = (s) => s.median;
  const push = upstream.push_ms ?? {};
  const serverMs = push.ms ?? 0;
  const rows = [
    ['click -> row in the sender\'s DOM (page, optimistic)', median(sends.local_state_update_ms)],
    ['SQLite worker: row + outbox stored on OPFS (its transaction)', median(sends.local_db_write_ms)],
    ['push: request -> answer, seen by the SQLite worker', median(sends.upstream_db_write_ms)],
    ['   connector, whole request (its log line)', serverMs],
    ['      app\'s mutation callback', push.callback_ms ?? 0],
    ['      upstream database', push.upstream_ms ?? 0],
    ['      the connector\'s own work', Math.max(0, serverMs - (push.callback_ms ?? 0) - (push.upstream_ms ?? 0))],
    ['   the way there and back (socket or HTTP) and the runtime around it', Math.max(0, median(sends.upstream_db_write_ms) - serverMs)],
    ['topic object: poke to each session (its log line)', objects.topic_poke_ms ?? 0],
    ['send -> rendered on the 2nd browser', median(sends.send_to_render_ms)],
  ];
  const r = sends.receiver;
  if (r?.poke_arrival_ms?.n) {
    const arrival = median(r.poke_arrival_ms);
    rows.push(['   click -> the poke in the receiving SQLite worker', arrival]);
    // One send at a time: the k-th push line and the k-th topic fan-out line of the
    // phase are the k-th send's (times from the lines' `at`, the worker's clock).
    const sends_ = sends.timeline ?? [];
    if (upstream.push_at.length === sends_.length && objects.poke_at.length === sends_.length) {
      const ingress = [];
      const toTopic = [];
      const toReceiver = [];
      sends_.forEach(({ sentAt, receivedAt }, k) => {
        ingress.push(upstream.push_at[k] - sentAt);
        toTopic.push(objects.poke_at[k] - upstream.push_at[k]);
        if (receivedAt !== null) toReceiver.push(receivedAt - objects.poke_at[k]);
      });
      rows.push(['      click -> the connector starts on the push (local write, way in)', summarize(ingress).median]);
      rows.push(['      connector starts -> the topic object starts its fan-out', summarize(toTopic).median]);
      rows.push(['      topic object -> receiving worker (session object, socket)', summarize(toReceiver).median]);
    } else {
      rows.push([
        '      of which session object and socket (the rest of it)',
        Math.max(0, arrival - median(sends.local_db_write_ms) - serverMs - (objects.topic_poke_ms ?? 0)),
      ]);
    }
    rows.push(['   receiving worker: changes stored in its SQLite', median(r.worker_store_ms)]);
    rows.push(['   worker -> page message', median(r.worker_to_page_ms)]);
    rows.push(['   page: views updated and rendered', median(r.page_render_ms)]);
  }
  return rows.map(([hop, ms]) => ({ hop, ms }));
}

/** Runs one phase and records the server-side request times and upstream costs it caused. */
async function phase(app, report, name, run) {
  log(name);
  const from = app.logs.length;
  const result = await run();
  (report.server_ms ??= {})[name] = serverTimes(app.logs.slice(from));
  (report.upstream_costs ??= {})[name] = upstreamCosts(app.logs.slice(from));
  (report.object_costs ??= {})[name] = objectCosts(app.logs.slice(from));
  return result;
}

/**
 * The cost of a chat message on D1's meters, from the browser-sends phase (one sender,
 * one receiver, every request either made): rows written and read per message, and
 * statements per push. `null` on PostgreSQL (it reports no such counts).
 */
function messageCost(costs) {
  if (UPSTREAM !== 'd1' || !costs?.mutations) return {};
  return {
    d1_rows_written_per_message: costs.d1_rows_written / costs.mutations,
    d1_rows_read_per_message: costs.d1_rows_read / costs.mutations,
    d1_queries_per_push: costs.push_statements / costs.pushes,
  };
}

/** The Durable Object requests in `objects` (objectCosts): pokes, alarms, wake-ups. */
function objectRequests(objects) {
  return objects.topic_pokes + objects.session_requests + objects.alarms + objects.socket_wakeups;
}

/**
 * Durable Object requests and WebSocket messages per message per receiver, from a
 * fan-out phase (`objects`: its objectCosts; one session per receiver).
 */
function fanOutCost(objects, messages, receivers) {
  const deliveries = messages * receivers;
  return {
    do_requests_per_message_per_receiver: objectRequests(objects) / deliveries,
    websocket_messages_per_message_per_receiver: objects.sockets_poked / deliveries,
    do_storage_rows_written_per_message_per_receiver: objects.storage_rows_written / deliveries,
  };
}

const IDLE_CLIENTS = Number(process.env.BENCH_IDLE_CLIENTS ?? 20);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 30);

/**
 * Idle clients: each holds its session's socket in a room nobody writes to and sends
 * a keep-alive ping every 5 s, for IDLE_SECONDS. Counts what woke a Durable Object
 * meanwhile (hibernation and the pong the runtime answers itself should leave none),
 * as requests per idle client per hour.
 */
async function idleClients(app, url) {
  const room = newId('room').slice(-8);
  const seen = new Map();
  const clients = await connectReceivers(url, room, IDLE_CLIENTS, seen);
  // Connecting is not idling: let the sockets' opening work finish first.
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  const from = app.logs.length;
  let pongs = 0;
  for (const c of clients) c.onPong = () => (pongs += 1);
  const pinging = setInterval(() => clients.forEach((c) => c.ping()), 5_000);
  await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
  clearInterval(pinging);
  const objects = objectCosts(app.logs.slice(from));
  const requests = upstreamCosts(app.logs.slice(from)).requests;
  for (const c of clients) c.close();
  const woke = objectRequests(objects);
  return {
    clients: IDLE_CLIENTS,
    seconds: IDLE_SECONDS,
    pings_answered: pongs,
    objects,
    worker_requests: requests,
    do_requests_per_idle_client_hour: (woke / IDLE_CLIENTS) * (3600 / IDLE_SECONDS),
  };
}

async function openRoom(browser, url, room) {
  const page = await browser.context.newPage();
  await page.goto(`${url}/room/${room}`);
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor({ timeout: 30_000 });
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 30_000 });
  return page;
}

/** Records, in the page, when each message body first appears (epoch ms). */
async function watchArrivals(page) {
  await page.evaluate(() => {
    window.__seenAt = {};
    const record = (node) => {
      if (!(node instanceof Element)) return;
      const bodies = node.matches('[data-testid="message-body"]') ? [node] : node.querySelectorAll('[data-testid="message-body"]');
      for (const body of bodies) {
        const text = body.textContent;
        if (!(text in window.__seenAt)) window.__seenAt[text] = performance.timeOrigin + performance.now();
      }
    };
    new MutationObserver((records) => {
      for (const r of records) for (const node of r.addedNodes) record(node);
    }).observe(document.body, { childList: true, subtree: true });
  });
}

/**
 * Times, in a receiving page, what its SQLite worker says of each poke (when the
 * poke reached the worker, when its changes were stored: `poke_timing` on the worker's
 * `changed` message) and when the page got that message, per message body.
 */
async function timePokes(context) {
  await context.addInitScript(() => {
    window.__pokeTimes = {};
    const NativeWorker = window.Worker;
    window.Worker = class extends NativeWorker {
      constructor(...args) {
        super(...args);
        // Registered before the page's own listener: runs first.
        this.addEventListener('message', (event) => {
          if (typeof event.data !== 'string' || !event.data.includes('"poke_timing"')) return;
          const at = performance.timeOrigin + performance.now();
          let message;
          try {
            message = JSON.parse(event.data);
          } catch {
            return;
          }
          if (message.type !== 'changed' || !message.poke_timing) return;
          for (const record of message.records ?? []) {
            const body = record.row?.body;
            if (body !== undefined && !(body in window.__pokeTimes)) window.__pokeTimes[body] = { ...message.poke_timing, page_at: at };
          }
        });
      }
    };
  });
}

/** Types `text` into the composer and presses Send; returns when (epoch ms). */
function pressSend(page, text) {
  return page.evaluate((body) => {
    const input = document.querySelector('[data-testid="composer-input"]');
    input.value = body;
    input.dispatchEvent(new Event('input', { bubbles: true }));
    const at = performance.timeOrigin + performance.now();
    document.querySelector('[data-testid="composer-send"]').click();
    return at;
  }, text);
}

/** When `text` first appeared in the page (see `watchArrivals`), once it has. */
async function arrivedAt(page, text) {
  const seen = await page.waitForFunction((body) => window.__seenAt[body], text, { timeout: 30_000, polling: 'raf' });
  return seen.jsonValue();
}

async function readMetric(page, id, field) {
  return Number(await page.getByTestId(`metric-${id}-${field}`).textContent());
}

/** The seed's three timings and send -> render on a second browser. */
async function browserSends(url) {
  const [alice, bob] = await Promise.all([launchBrowser(), launchBrowser()]);
  // Local state update: click -> the row in the sender's own DOM. The other two are
  // the page's own timings (the worker's write, the push's round trip).
  const local = { 'local-state-update': [], 'local-db-write': [], 'upstream-db-write': [] };
  const sendToRender = [];
  // The receiving side of each send that came by poke, hop by hop.
  const receiver = { poke_arrival_ms: [], worker_store_ms: [], worker_to_page_ms: [], page_render_ms: [] };
  // Per send, in order: when Send was clicked, and when the receiving worker read its
  // poke (null when it came by pull): lined up with the server's lines afterwards.
  const timeline = [];
  await timePokes(bob.context);
  try {
    let a;
    let b;
    for (let sent = 0; sent < SENDS; sent += 1) {
      if (sent % SENDS_PER_ROOM === 0) {
        // A fresh room every SENDS_PER_ROOM sends: a chat-sized list, not an ever-growing one.
        await a?.close();
        await b?.close();
        const room = newId('room').slice(-8);
        a = await openRoom(alice, url, room);
        b = await openRoom(bob, url, room);
        await watchArrivals(a);
        await watchArrivals(b);
        log(`sends ${sent}/${SENDS}`);
      }
      const text = `bench message ${sent} ${newId('m').slice(-6)}`;
      const before = await readMetric(a, 'upstream-db-write', 'n');
      const sentAt = await pressSend(a, text);
      await a.waitForFunction(
        (n) => Number(document.querySelector('[data-testid="metric-upstream-db-write-n"]').textContent) > n,
        before,
        { timeout: 30_000, polling: 'raf' },
      );
      for (const id of ['local-db-write', 'upstream-db-write']) local[id].push(await readMetric(a, id, 'last'));
      local['local-state-update'].push((await arrivedAt(a, text)) - sentAt);
      const rendered = await arrivedAt(b, text);
      sendToRender.push(rendered - sentAt);
      const poke = await b.evaluate((body) => window.__pokeTimes[body], text);
      timeline.push({ sentAt, receivedAt: poke?.received_at ?? null });
      if (poke) {
        receiver.poke_arrival_ms.push(poke.received_at - sentAt);
        receiver.worker_store_ms.push(poke.stored_at - poke.received_at);
        receiver.worker_to_page_ms.push(poke.page_at - poke.stored_at);
        receiver.page_render_ms.push(rendered - poke.page_at);
      }
    }
    await a?.close();
    await b?.close();
  } finally {
    await alice.close();
    await bob.close();
  }
  return {
    local_state_update_ms: summarize(local['local-state-update']),
    local_db_write_ms: summarize(local['local-db-write']),
    upstream_db_write_ms: summarize(local['upstream-db-write']),
    send_to_render_ms: summarize(sendToRender),
    receiver: Object.fromEntries(Object.entries(receiver).map(([key, samples]) => [key, summarize(samples)])),
    timeline,
  };
}

/**
 * Send -> render with three senders in one room at once: each round, three browsers
 * press Send together and a fourth shows all three.
 */
async function threeSenders(url) {
  const browsers = await Promise.all(Array.from({ length: 4 }, () => launchBrowser()));
  const samples = [];
  try {
    const room = newId('room').slice(-8);
    const pages = [];
    for (const browser of browsers) pages.push(await openRoom(browser, url, room));
    const receiver = pages[3];
    await watchArrivals(receiver);
    for (let round = 0; round < THREE_SENDER_ROUNDS; round += 1) {
      const texts = [0, 1, 2].map((s) => `three senders ${round}.${s} ${newId('m').slice(-6)}`);
      const sentAt = await Promise.all(texts.map((text, s) => pressSend(pages[s], text)));
      for (let s = 0; s < 3; s += 1) {
        samples.push((await arrivedAt(receiver, texts[s])) - sentAt[s]);
      }
    }
  } finally {
    await Promise.all(browsers.map((browser) => browser.close()));
  }
  return { senders: 3, rounds: THREE_SENDER_ROUNDS, send_to_render_ms: summarize(samples) };
}

/**
 * A receiver as the SQLite worker is, minus the browser: subscribes with a named
 * query, keeps the session's WebSocket, shows what a poke carries, and pulls only when
 * a poke's changes do not follow what it holds (`sync::cursors`) or carry nothing.
 */
async function nodeReceiver(url, room, index, seen) {
  const token = await guestToken(url, `Receiver ${index}`);
  const c = client(url, token);
  const first = await c.query('roomMessages', { roomId: room });
  if (first.status !== 200) throw new Error(`receiver query: ${first.status} ${first.text}`);
  let cursor = first.json.cursor;
  let pulling = Promise.resolve();
  const subscriptions = [{ name: 'roomMessages', args: { roomId: room } }];
  const pull = async () => {
    for (;;) {
      const page = await c.pull(cursor, subscriptions);
      if (page.status >= 500) {
        // As the browser's worker does: try again.
        retried.pull += 1;
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (page.status !== 200) throw new Error(`pull: ${page.status} ${page.text}`);
      const now = Date.now();
      for (const change of page.json.changes) {
        const body = change.row?.body;
        if (body !== undefined && !seen.has(`${index}:${body}`)) seen.set(`${index}:${body}`, now);
      }
      cursor = Math.max(cursor, page.json.cursor);
      pulls.count += 1;
      if (!page.json.has_more) return;
    }
  };
  const granted = await socketTicket(url, c);
  if (granted.status !== 200) throw new Error(`socket ticket: ${granted.status} ${granted.text}`);
  const socket = new WebSocket(`${url.replace('http', 'ws')}/sync/socket?ticket=${encodeURIComponent(granted.json.ticket)}`);
  await new Promise((resolve, reject) => {
    socket.addEventListener('open', resolve, { once: true });
    socket.addEventListener('error', () => reject(new Error('socket failed')), { once: true });
  });
  const handle = {
    close: () => socket.close(),
    ping: () => socket.send('{"type":"ping"}'),
    onPong: () => {},
  };
  socket.addEventListener('message', (event) => {
    const poke = JSON.parse(event.data);
    if (poke.type === 'pong') handle.onPong();
    if (poke.type !== 'poke') return;
    // As the worker does: show the changes a poke carries at once; when they follow
    // what this receiver holds, that is all it lacks; otherwise pull.
    const now = Date.now();
    for (const change of poke.changes ?? []) {
      const body = change.row?.body;
      if (body !== undefined && !seen.has(`${index}:${body}`)) seen.set(`${index}:${body}`, now);
    }
    if (poke.changes?.length && poke.since !== undefined && poke.since <= cursor) {
      cursor = Math.max(cursor, poke.cursor);
      return;
    }
    if (poke.cursor > cursor) pulling = pulling.then(pull).catch((error) => log(`receiver ${index}: ${error.message}`));
  });
  return handle;
}

/** `count` receivers in `room`, connected ten at a time. */
async function connectReceivers(url, room, count, seen) {
  const clients = [];
  for (let i = 0; i < count; i += 10) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(10, count - i) }, (_, k) => nodeReceiver(url, room, i + k, seen)))));
  }
  return clients;
}

/** Pulls the Node receivers made (a receiver whose pokes all follow makes none). */
const pulls = { count: 0 };

async function fanOut(url, receivers) {
  const room = newId('room').slice(-8);
  const seen = new Map();
  const clients = await connectReceivers(url, room, receivers, seen);
  const sender = client(url, await guestToken(url, 'Sender'));
  const pullsBefore = pulls.count;
  const untilAll = [];
  const toEach = [];
  let missed = 0;
  for (let m = 0; m < FANOUT_MESSAGES; m += 1) {
    const body = `fan-out ${m}`;
    const sentAt = Date.now();
    const { response } = sender.send(room, 'Sender', body);
    const answer = await response;
    if (answer.status !== 200) throw new Error(`push: ${answer.status} ${answer.text}`);
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      let have = 0;
      for (let r = 0; r < receivers; r += 1) if (seen.has(`${r}:${body}`)) have += 1;
      if (have === receivers) break;
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const times = [];
    for (let r = 0; r < receivers; r += 1) {
      const at = seen.get(`${r}:${body}`);
      if (at === undefined) missed += 1;
      else times.push(at - sentAt);
    }
    toEach.push(...times);
    if (times.length === receivers) untilAll.push(Math.max(...times));
  }
  // The topic object logs its fan-out after the last session answered: let that line
  // land inside this phase before counting it.
  await new Promise((resolve) => setTimeout(resolve, 500));
  for (const c of clients) c.close();
  if (missed) log(`fan-out ${receivers}: ${missed} deliveries missed the 15 s window`);
  return {
    receivers,
    messages: FANOUT_MESSAGES,
    missed,
    receiver_pulls: pulls.count - pullsBefore,
    until_all_ms: summarize(untilAll),
    per_receiver_ms: summarize(toEach),
  };
}

function mutation(c, roomId, body) {
  return { id: newId('outbox'), name: 'sendMessage', args: { roomId, authorId: c.subject, authorName: 'Loader', body }, record_id: newId('message') };
}

/** 5xx answers retried (as the browser's outbox does); counted in the report. */
const retried = { push: 0, pull: 0 };

/** Pushes; a 5xx is retried with the same ids, which the connector applies once. */
async function pushWithRetry(c, mutations) {
  for (let attempt = 0; ; attempt += 1) {
    const answer = await c.push(mutations);
    if (answer.status < 500 || attempt === 5) return answer;
    retried.push += 1;
    log(`push answered ${answer.status}, retrying: ${answer.text.slice(0, 120)}`);
    await new Promise((resolve) => setTimeout(resolve, 200 * (attempt + 1)));
  }
}

async function pushBatches(c, room, batches, label) {
  for (let b = 0; b < batches; b += 1) {
    const mutations = Array.from({ length: BATCH }, (_, i) => mutation(c, room, `${label} ${b * BATCH + i}`));
    const answer = await pushWithRetry(c, mutations);
    if (answer.status !== 200) throw new Error(`push: ${answer.status} ${answer.text}`);
    const rejected = answer.json.results.filter((r) => r.status !== 'confirmed');
    if (rejected.length) throw new Error(`push rejected ${rejected.length}: ${JSON.stringify(rejected[0])}`);
  }
}

async function throughput(url, writers) {
  const token = await guestToken(url, 'Loader');
  const room = newId('room').slice(-8);
  const clients = Array.from({ length: writers }, () => client(url, token));
  const started = performance.now();
  await Promise.all(clients.map((c, i) => pushBatches(c, room, PUSH_BATCHES, `writer ${i}`)));
  const seconds = (performance.now() - started) / 1000;
  const mutations = writers * PUSH_BATCHES * BATCH;
  return { writers, batch: BATCH, mutations, seconds, per_second: mutations / seconds };
}

/** Seeds `total` messages into `room` with 4 writers, batches of 100. */
async function seedRoom(url, room, total, label) {
  const token = await guestToken(url, 'Seeder');
  const writers = 4;
  const perWriter = Math.ceil(total / BATCH / writers);
  await Promise.all(Array.from({ length: writers }, (_, i) => pushBatches(client(url, token), room, perWriter, `${label} ${i}`)));
  return writers * perWriter * BATCH;
}

const shown = (page) => page.evaluate(() => document.querySelectorAll('[data-testid="message"]').length);

/** Waits until the page lays out `n` messages from its local store (not the server's render). */
async function untilShown(page, n) {
  await page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid="message"]').length === n
      && document.querySelector('[data-testid="message-count"]')?.dataset.more !== undefined,
    n,
    { timeout: 300_000, polling: 'raf' },
  );
}

async function initialSync(url) {
  const room = newId('room').slice(-8);
  log(`seeding ${INITIAL} messages`);
  const expected = await seedRoom(url, room, INITIAL, 'seed');
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    const started = Date.now();
    await page.goto(`${url}/room/${room}`);
    const interactiveAt = Date.now();
    // A room opens with its window: done when the newest are laid out.
    await untilShown(page, Math.min(expected, WINDOW));
    const done = Date.now();
    return { messages: expected, seconds: (done - started) / 1000, after_load_seconds: (done - interactiveAt) / 1000 };
  } finally {
    await browser.close();
  }
}

/**
 * Clicks the element `testId` and resolves to the ms, timed in the page, until it
 * lays out `n` messages (a MutationObserver set before the click).
 */
async function timedClick(page, testId, n) {
  await page.evaluate(({ testId, n }) => {
    window.__timed = new Promise((resolve, reject) => {
      const started = performance.now();
      setTimeout(() => reject(new Error(`${testId}: ${n} messages not shown within 120 s`)), 120_000);
      const done = () => document.querySelectorAll('[data-testid="message"]').length === n;
      const observer = new MutationObserver(() => {
        if (done()) {
          observer.disconnect();
          resolve(performance.now() - started);
        }
      });
      observer.observe(document.body, { childList: true, subtree: true });
      document.querySelector(`[data-testid="${testId}"]`).click();
    });
  }, { testId, n });
  return page.evaluate(() => window.__timed);
}

/** Resident memory of every workerd process on this machine (KB). */
function workerdRss() {
  const out = spawnSync('ps', ['-C', 'workerd', '-o', 'rss='], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n').map(Number).filter((n) => n > 0).reduce((sum, n) => sum + n, 0);
}

async function engineStats(url) {
  const answer = await fetch(`${url}/sync/admin/stats`, { headers: { 'x-sync-engine-secret': TEST_VARS.SYNC_ENGINE_SECRET } });
  return answer.ok ? answer.json() : null;
}

/** Runs a read-only SELECT in the page's local database (the devtools' console). */
async function localSql(page, sql) {
  if (!(await page.getByTestId('sync-devtools').isVisible())) await page.keyboard.press('Alt+Shift+KeyD');
  await page.getByTestId('devtools-tab-data').click();
  await page.getByTestId('devtools-sql').fill(sql);
  const button = page.getByTestId('devtools-sql-run');
  const run = Number(await button.getAttribute('data-runs')) + 1;
  await button.click();
  const result = page.locator(`[data-testid="devtools-sql-result"][data-run="${run}"] tbody tr td`).first();
  await result.waitFor({ timeout: 30_000 });
  const value = Number(await result.textContent());
  await page.getByTestId('devtools-close').click();
  return value;
}

/**
 * Rooms far larger than a window: joining one of LARGE_ROOM messages, loading
 * earlier pages, what a browser keeps after visiting many rooms (past the queries'
 * time to live), and the worker's memory while many clients join at once.
 */
async function largeRoom(url) {
  const room = newId('room').slice(-8);
  log(`large room: seeding ${LARGE_ROOM} messages`);
  const seededAt = Date.now();
  const total = await seedRoom(url, room, LARGE_ROOM, 'large');
  log(`large room: seeded in ${((Date.now() - seededAt) / 1000).toFixed(0)} s`);
  const firstWindow = [];
  const coldWindow = [];
  const loadMore = [];
  for (let run = 0; run < 3; run += 1) {
    // A fresh browser (no store, no cache) opens the app on a small room, then joins
    // the large one from the page: timed in the page, from the click to the newest
    // WINDOW laid out.
    const browser = await launchBrowser();
    try {
      const page = await browser.context.newPage();
      await page.goto(`${url}/room/${newId('room').slice(-8)}`);
      await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 30_000 });
      await page.getByTestId('room-input').fill(room);
      firstWindow.push(await timedClick(page, 'room-join', WINDOW));
      for (let more = 1; more <= 3; more += 1) {
        loadMore.push(await timedClick(page, 'show-earlier', WINDOW * (more + 1)));
      }
    } finally {
      await browser.close();
    }
    // And straight to the large room's address in another fresh browser: the page's
    // own load, the worker's start and the sign-in come first.
    const cold = await launchBrowser();
    try {
      const page = await cold.context.newPage();
      const started = Date.now();
      await page.goto(`${url}/room/${room}`);
      await untilShown(page, WINDOW);
      coldWindow.push(Date.now() - started);
    } finally {
      await cold.close();
    }
  }
  // Many rooms visited in one page, each left for the next; past the queries' time
  // to live only the window in use is kept.
  const ttlMs = 2_000;
  const rooms = Array.from({ length: VISITED_ROOMS }, () => newId('room').slice(-8));
  log(`large room: seeding ${VISITED_ROOMS} rooms of ${VISITED_ROOM_SIZE}`);
  for (const visited of rooms) await seedRoom(url, visited, VISITED_ROOM_SIZE, 'visited');
  const browser = await launchBrowser();
  let localRows;
  let localRowsBeforeTtl;
  let leftRoomFrames;
  const leftRoomMessages = 2 * (rooms.length - 1);
  try {
    const page = await browser.context.newPage();
    // What the page's session socket brings it.
    const frames = [];
    page.on('websocket', (socket) => socket.on('framereceived', (frame) => frames.push(String(frame.payload))));
    await page.goto(`${url}/room/${rooms[0]}?sync_ttl_ms=${ttlMs}`);
    await untilShown(page, WINDOW);
    for (const visited of rooms.slice(1)) {
      await page.getByTestId('room-input').fill(visited);
      await page.getByTestId('room-join').click();
      await page.getByTestId('room-id').filter({ hasText: visited }).waitFor();
      await untilShown(page, WINDOW);
    }
    const countAll = 'SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM private_rooms) + (SELECT count(*) FROM room_members)';
    localRowsBeforeTtl = await localSql(page, countAll);
    await page.waitForTimeout(ttlMs + 2_000);
    localRows = await localSql(page, countAll);
    // Writes in the rooms it left (two each): what reaches this browser for them
    // (its session unwatched them at their time to live).
    const left = rooms.slice(0, -1);
    const writer = client(url, await guestToken(url, 'Writer'));
    const mark = frames.length;
    for (const room of left) {
      for (let i = 0; i < 2; i += 1) await writer.send(room, 'Writer', `after leaving ${i}`).response;
    }
    await page.waitForTimeout(2_000);
    leftRoomFrames = frames
      .slice(mark)
      .filter((frame) => !frame.startsWith('{"type":"unwatched"') && left.some((room) => frame.includes(room))).length;
  } finally {
    await browser.close();
  }
  // JOINERS clients join the large room at once (each its window's first page).
  const before = { rss_kb: workerdRss(), stats: await engineStats(url) };
  let peakRss = before.rss_kb;
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, workerdRss()); }, 100);
  const token = await guestToken(url, 'Joiner');
  const joinedAt = Date.now();
  const answers = await Promise.all(Array.from({ length: JOINERS }, async () => {
    const joiner = client(url, token);
    const started = Date.now();
    const answer = await joiner.query('roomMessages', { roomId: room });
    return { status: answer.status, rows: answer.json?.rows?.length ?? 0, ms: Date.now() - started };
  }));
  const joinSeconds = (Date.now() - joinedAt) / 1000;
  clearInterval(sampler);
  const after = { rss_kb: workerdRss(), stats: await engineStats(url) };
  const failed = answers.filter((a) => a.status !== 200 || a.rows !== WINDOW).length;
  return {
    messages: total,
    first_window_ms: summarize(firstWindow),
    first_window_cold_page_ms: summarize(coldWindow),
    load_more_ms: summarize(loadMore),
    visited_rooms: VISITED_ROOMS,
    visited_room_size: VISITED_ROOM_SIZE,
    ttl_ms: ttlMs,
    local_rows_before_ttl: localRowsBeforeTtl,
    local_rows_after_ttl: localRows,
    left_room_messages: leftRoomMessages,
    left_room_socket_messages: leftRoomFrames,
    joiners: JOINERS,
    join_all_seconds: joinSeconds,
    join_ms: summarize(answers.map((a) => a.ms)),
    joins_failed: failed,
    workerd_rss_kb: { before: before.rss_kb, peak: peakRss, after: after.rss_kb },
    worker_wasm_memory_bytes: {
      before: before.stats?.isolate?.wasm_memory_bytes ?? before.stats?.wasm_memory_bytes ?? null,
      after: after.stats?.isolate?.wasm_memory_bytes ?? after.stats?.wasm_memory_bytes ?? null,
    },
  };
}

async function sizes() {
  const sizeOf = async (path) => {
    const bytes = await readFile(path);
    return { raw: bytes.length, gzip: gzipSync(bytes, { level: 9 }).length };
  };
  const workerDir = join(ROOT, 'worker', 'build');
  const workerWasm = (await readdir(workerDir, { recursive: true })).find((f) => f.endsWith('.wasm'));
  return {
    client_wasm: await sizeOf(join(ROOT, 'target', 'site', 'pkg', 'frontend_bg.wasm')),
    client_js: await sizeOf(join(ROOT, 'target', 'site', 'pkg', 'frontend.js')),
    db_worker_wasm: await sizeOf(join(ROOT, 'target', 'site', 'pkg', 'frontend-db_bg.wasm')),
    worker_wasm: workerWasm ? await sizeOf(join(workerDir, workerWasm)) : null,
  };
}

const TARGETS = {
  local_state_update_ms: { median: 1 },
  local_db_write_ms: { median: 2 },
  upstream_db_write_ms: { median: 15 },
  send_to_render_ms: { median: 25 },
  fan_out_10_ms: { median: 40 },
  fan_out_100_p99_ms: 150,
  initial_sync_10k_s: 1,
  large_room_first_window_ms: 300,
  large_room_load_more_ms: 150,
};

function table(report) {
  const f = (x) => (x === undefined || x === null ? '-' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
  // Costs below one per message keep their digits.
  const g = (x) => (x === undefined || x === null ? '-' : x > 0 && x < 1 ? x.toFixed(3) : f(x));
  const rows = [];
  const timing = (label, s, target) => rows.push([label, f(s.median), f(s.p95), f(s.p99), String(s.n), target]);
  timing('local state update (ms)', report.sends.local_state_update_ms, '< 1 median');
  timing('local DB write (ms)', report.sends.local_db_write_ms, '< 2 median');
  timing('upstream DB write (ms)', report.sends.upstream_db_write_ms, '< 15 median');
  timing('send -> render on 2nd client (ms)', report.sends.send_to_render_ms, '< 25 median');
  timing('send -> render, 3 senders at once (ms)', report.three_senders.send_to_render_ms, '< 25 median');
  for (const fan of report.fan_out) timing(`fan-out to ${fan.receivers}, until all (ms)`, fan.until_all_ms, fan.receivers === 100 ? '< 150 p99' : fan.receivers === 10 ? '< 40 median' : '');
  const lines = [['measure', 'median', 'p95', 'p99', 'n', 'target'], ...rows];
  for (const t of report.throughput) lines.push([`push throughput, ${t.writers} writer(s), batches of ${t.batch} (mutations/s)`, f(t.per_second), '', '', String(t.mutations), '']);
  lines.push([`initial sync of a room of ${report.initial_sync.messages}, fresh browser, until its window shows (s)`, f(report.initial_sync.seconds), '', '', '1', '< 1']);
  const big = report.large_room;
  const timed = (label, t, target) => [label, f(t.median), f(t.p95), f(t.p99), String(t.n), target];
  if (big) {
    lines.push(timed(`large room (${big.messages}): join from the open page, fresh browser, until the newest ${WINDOW} show (ms)`, big.first_window_ms, '< 300 median'));
    lines.push(timed(`large room: the same, opening its address in a fresh browser (page load, sign-in) (ms)`, big.first_window_cold_page_ms, ''));
    lines.push(timed(`large room: load the next ${WINDOW} earlier (ms)`, big.load_more_ms, '< 150 median'));
    lines.push([`local rows after visiting ${big.visited_rooms} rooms of ${big.visited_room_size}, before / after the TTL`, `${big.local_rows_before_ttl} / ${big.local_rows_after_ttl}`, '', '', '', `${WINDOW} + room rows`]);
    lines.push([`socket messages to that browser for ${big.left_room_messages} writes in the rooms it left`, String(big.left_room_socket_messages), '', '', '', '0']);
    lines.push(timed(`large room: ${big.joiners} clients join at once, each (ms)`, big.join_ms, ''));
    const rss = big.workerd_rss_kb;
    lines.push([`workerd RSS while ${big.joiners} join: before / peak / after (MB)`, `${(rss.before / 1024).toFixed(0)} / ${(rss.peak / 1024).toFixed(0)} / ${(rss.after / 1024).toFixed(0)}`, '', '', '', '']);
    const wasm = big.worker_wasm_memory_bytes;
    if (wasm.after) lines.push(['worker isolate wasm memory, before / after the joins (MB)', `${(wasm.before / 1048576).toFixed(1)} / ${(wasm.after / 1048576).toFixed(1)}`, '', '', '', '']);
  }
  const c = report.cost;
  if (c.d1_rows_written_per_message !== undefined) {
    lines.push(['D1 rows written per message (sends phase)', f(c.d1_rows_written_per_message), '', '', '', '<= 3']);
    lines.push(['D1 rows read per message (sender + receiver)', f(c.d1_rows_read_per_message), '', '', '', '']);
    lines.push(['D1 statements per push', f(c.d1_queries_per_push), '', '', '', '']);
  }
  const widest = report.fan_out[report.fan_out.length - 1];
  lines.push([`Durable Object requests per message per receiver (fan-out ${widest.receivers})`, g(c.do_requests_per_message_per_receiver), '', '', '', '']);
  lines.push([`WebSocket messages per message per receiver (fan-out ${widest.receivers})`, g(c.websocket_messages_per_message_per_receiver), '', '', '', '']);
  lines.push([`Durable Object storage rows written per message per receiver (fan-out ${widest.receivers})`, g(c.do_storage_rows_written_per_message_per_receiver), '', '', '', '']);
  lines.push([`Durable Object requests per idle client per hour (${report.idle.clients} clients, ${report.idle.seconds} s)`, g(c.do_requests_per_idle_client_hour), '', '', '', '0']);
  const s = report.sizes;
  lines.push(['client wasm raw / gzip (KB)', `${(s.client_wasm.raw / 1024).toFixed(0)} / ${(s.client_wasm.gzip / 1024).toFixed(0)}`, '', '', '', '']);
  if (s.db_worker_wasm) lines.push(['SQLite Web Worker wasm raw / gzip (KB)', `${(s.db_worker_wasm.raw / 1024).toFixed(0)} / ${(s.db_worker_wasm.gzip / 1024).toFixed(0)}`, '', '', '', '']);
  if (s.worker_wasm) lines.push(['worker wasm raw / gzip (KB)', `${(s.worker_wasm.raw / 1024).toFixed(0)} / ${(s.worker_wasm.gzip / 1024).toFixed(0)}`, '', '', '', '']);
  const widths = lines[0].map((_, c) => Math.max(...lines.map((l) => l[c].length)));
  return lines.map((l) => l.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ')).join('\n');
}

/** A bar chart (median and p99 against the target) rendered by Chromium to PNG. */
async function chart(report, path) {
  const bars = [
    ['local state update', report.sends.local_state_update_ms, 1],
    ['local DB write', report.sends.local_db_write_ms, 2],
    ['upstream DB write', report.sends.upstream_db_write_ms, 15],
    ['send -> render', report.sends.send_to_render_ms, 25],
    ['3 senders -> render', report.three_senders.send_to_render_ms, 25],
    ...report.fan_out.map((fan) => [`fan-out ${fan.receivers}`, fan.until_all_ms, fan.receivers === 100 ? 150 : null]),
  ];
  const max = Math.max(...bars.map(([, s, t]) => Math.max(s.p99, t ?? 0)));
  const scale = (x) => (x / max) * 560;
  const rowHeight = 46;
  const svgRows = bars.map(([label, s, target], i) => {
    const y = 40 + i * rowHeight;
    return `<text x="10" y="${y + 18}" font-size="14">${label}</text>
      <rect x="190" y="${y + 4}" width="${scale(s.p99)}" height="16" fill="#c9d8fb"/>
      <rect x="190" y="${y + 4}" width="${scale(s.median)}" height="16" fill="#2f6fed"/>
      ${target ? `<line x1="${190 + scale(target)}" x2="${190 + scale(target)}" y1="${y}" y2="${y + 24}" stroke="#b42323" stroke-width="2"/>` : ''}
      <text x="${196 + scale(s.p99)}" y="${y + 17}" font-size="12" fill="#333">${s.median.toFixed(1)} / ${s.p99.toFixed(1)} ms</text>`;
  }).join('\n');
  const height = 60 + bars.length * rowHeight;
  const html = `<!DOCTYPE html><body style="margin:0;font-family:sans-serif;background:#fff">
    <svg xmlns="http://www.w3.org/2000/svg" width="900" height="${height}">
      <text x="10" y="22" font-size="16" font-weight="700">Serverless Sync benchmark: median (dark) and p99 (light), target in red (ms)</text>
      ${svgRows}
    </svg></body>`;
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    await page.setViewportSize({ width: 900, height });
    await page.setContent(html);
    await page.screenshot({ path, fullPage: true });
  } finally {
    await browser.close();
  }
}

async function main() {
  await mkdir(OUT, { recursive: true });
  const app = await startApp();
  const report = { date: new Date().toISOString(), upstream: UPSTREAM, machine: { cpus: (await import('node:os')).cpus().length }, targets: TARGETS };
  try {
    report.sends = await phase(app, report, `browser sends (${SENDS})`, () => browserSends(app.url));
    report.cost = messageCost(report.upstream_costs[`browser sends (${SENDS})`]);
    report.waterfall = waterfall(report.sends, report.upstream_costs[`browser sends (${SENDS})`], report.object_costs[`browser sends (${SENDS})`]);
    report.three_senders = await phase(app, report, 'three senders', () => threeSenders(app.url));
    report.fan_out = [];
    for (const receivers of FANOUT) {
      const name = `fan-out to ${receivers}`;
      const fan = await phase(app, report, name, () => fanOut(app.url, receivers));
      Object.assign(fan, fanOutCost(report.object_costs[name], fan.messages, receivers));
      report.fan_out.push(fan);
    }
    // The largest room's figures stand for a message's cost per receiver.
    const widest = report.fan_out[report.fan_out.length - 1];
    report.cost.do_requests_per_message_per_receiver = widest.do_requests_per_message_per_receiver;
    report.cost.websocket_messages_per_message_per_receiver = widest.websocket_messages_per_message_per_receiver;
    report.cost.do_storage_rows_written_per_message_per_receiver = widest.do_storage_rows_written_per_message_per_receiver;
    report.idle = await phase(app, report, 'idle clients', () => idleClients(app, app.url));
    report.cost.do_requests_per_idle_client_hour = report.idle.do_requests_per_idle_client_hour;
    report.throughput = [];
    for (const writers of [1, 4]) {
      report.throughput.push(await phase(app, report, `push throughput, ${writers} writer(s)`, () => throughput(app.url, writers)));
    }
    report.initial_sync = await phase(app, report, `initial sync of ${INITIAL}`, () => initialSync(app.url));
    if (LARGE_ROOM > 0) {
      report.large_room = await phase(app, report, 'large room', () => largeRoom(app.url));
      report.cost.websocket_messages_per_message_in_a_left_room =
        report.large_room.left_room_socket_messages / report.large_room.left_room_messages;
    }
    report.sizes = await sizes();
    report.retried_5xx = retried;
  } catch (error) {
    console.error(`wrangler said:\n${app.logs.join('').split('\n').slice(-40).join('\n')}`);
    throw error;
  } finally {
    await app.stop();
  }
  // The per-send times served the waterfall; the report keeps its figures only.
  delete report.sends.timeline;
  for (const costs of Object.values(report.upstream_costs)) delete costs.push_at;
  for (const costs of Object.values(report.object_costs)) delete costs.poke_at;
  await writeFile(join(OUT, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  await chart(report, join(OUT, 'report.png'));
  console.log(`upstream: ${UPSTREAM}`);
  console.log(table(report));
  console.log('\nthe median send, hop by hop (ms, medians of each part):');
  for (const { hop, ms } of report.waterfall) console.log(`  ${hop.padEnd(62)} ${ms.toFixed(1).padStart(7)}`);
  console.log('\nserver time per request (wrangler), median / p99 ms (n):');
  for (const [name, paths] of Object.entries(report.server_ms)) {
    const parts = Object.entries(paths).map(([path, t]) => `${path} ${t.median}/${t.p99} (${t.n})`);
    console.log(`  ${name}: ${parts.join(', ')}`);
  }
  if (retried.push || retried.pull) console.log(`\n5xx answers retried: ${retried.push} push(es), ${retried.pull} pull(s)`);
  for (const fan of report.fan_out) if (fan.missed) console.log(`fan-out ${fan.receivers}: ${fan.missed} deliveries not seen within 15 s`);
  for (const fan of report.fan_out) console.log(`fan-out ${fan.receivers}: the receivers pulled ${fan.receiver_pulls ?? '?'} times for ${fan.messages} messages`);
  console.log(`\nwrote ${join(OUT, 'report.json')} and ${join(OUT, 'report.png')}`);
  await stat(join(OUT, 'report.png'));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
