// Writes that bypass the connector: rows inserted, updated and deleted with plain SQL
// (`wrangler d1 execute` on the local D1, `psql` on PostgreSQL) reach every watching
// browser through the change-capture triggers and the change watcher's pokes, in
// order with the connector's own writes, each exactly once.
import { test, before, after } from './support/playwright.mjs';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, watchErrors } from './support/app.mjs';
import { client, guestToken, newId } from './support/sync.mjs';

let app;
let alice;
let bob;

before(async () => {
  app = await startApp();
  [alice, bob] = await Promise.all([launchBrowser(), launchBrowser()]);
});

after(async () => {
  await alice?.close();
  await bob?.close();
  await app?.stop();
});

/**
 * Pushes like the client SDK does: a failure that is nobody's fault (5xx, e.g. the
 * local D1 file locked by the direct writer's process) is tried again, same ids.
 */
async function pushUntilAnswered(writer, mutations) {
  for (let attempt = 1; ; attempt += 1) {
    const pushed = await writer.push(mutations);
    if (pushed.status < 500 || attempt >= 20) return pushed;
    await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
  }
}

const quote = (text) => `'${String(text).replaceAll("'", "''")}'`;

/** Opens a room; the page notes when each message body first shows up, and goes. */
async function openRoom(browser, room) {
  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}/room/${room}`);
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });
  await page.evaluate(() => {
    window.__shown = {};
    window.__gone = {};
    const scan = () => {
      const now = performance.timeOrigin + performance.now();
      const present = new Set([...document.querySelectorAll('[data-testid="message-body"]')].map((node) => node.textContent));
      for (const body of present) window.__shown[body] ??= now;
      for (const body of Object.keys(window.__shown)) if (!present.has(body)) window.__gone[body] ??= now;
    };
    new MutationObserver(scan).observe(document.body, { subtree: true, childList: true, characterData: true });
    scan();
  });
  return { page, errors };
}

/** When `body` first showed (or, with `gone`, left) on the page, in ms since the epoch. */
async function seenAt(page, body, { gone = false } = {}) {
  const handle = await page.waitForFunction(
    ([text, key]) => window[key][text],
    [body, gone ? '__gone' : '__shown'],
    { timeout: 15_000, polling: 20 },
  );
  return handle.jsonValue();
}

const bodies = (page) => page.getByTestId('message-body').allTextContents();

/** When the change log recorded the last change of `record` (the database's clock). */
async function loggedAt(record) {
  const [[at]] = await app.sql(`SELECT MAX(created_at) FROM sync_changes WHERE record_id = ${quote(record)}`);
  return Number(at);
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

test('rows inserted, updated and deleted with plain SQL show up in two watching browsers, in order with connector writes, once', async () => {
  const room = newId('room').slice(-8);
  const a = await openRoom(alice, room);
  const b = await openRoom(bob, room);
  const writer = client(app.url, await guestToken(app.url, 'Carol'));

  // 20 direct writes with nothing else going on (so only the change watcher can tell
  // the browsers): 8 inserts, 6 updates, 6 deletes; each timed from the change log's
  // own timestamp to the moment both pages show it.
  const delays = [];
  const ids = [];
  for (let i = 0; i < 8; i += 1) {
    const id = `messages_direct_${room}_${i}`;
    const body = `by hand ${i}`;
    await app.sql(
      `INSERT INTO messages (id, room_id, author_name, body, created_at, last_modified_by) ` +
        `VALUES (${quote(id)}, ${quote(room)}, 'Admin', ${quote(body)}, ${Date.now()}, 'admin')`,
    );
    const shown = Math.max(await seenAt(a.page, body), await seenAt(b.page, body));
    delays.push(shown - (await loggedAt(id)));
    ids.push(id);
  }
  for (let i = 0; i < 6; i += 1) {
    const body = `edited by hand ${i}`;
    await app.sql(`UPDATE messages SET body = ${quote(body)} WHERE id = ${quote(ids[i])}`);
    const shown = Math.max(await seenAt(a.page, body), await seenAt(b.page, body));
    delays.push(shown - (await loggedAt(ids[i])));
  }
  for (let i = 0; i < 6; i += 1) {
    const body = `edited by hand ${i}`;
    await app.sql(`DELETE FROM messages WHERE id = ${quote(ids[i])}`);
    const gone = Math.max(await seenAt(a.page, body, { gone: true }), await seenAt(b.page, body, { gone: true }));
    delays.push(gone - (await loggedAt(ids[i])));
  }
  console.log(
    `# direct SQL write -> shown in both browsers (${app.upstream}, change watcher only): ` +
      `median ${median(delays).toFixed(0)} ms, max ${Math.max(...delays).toFixed(0)} ms over ${delays.length} writes`,
  );
  for (const delay of delays) assert.ok(delay < 10_000, `a direct write took ${delay} ms to show`);

  // Then direct writes while the connector writes to the same room.
  let writing = true;
  const connectorSent = [];
  const connectorLoop = (async () => {
    for (let i = 0; writing; i += 1) {
      const body = `via connector ${i}`;
      const mutation = { id: newId('outbox'), name: 'sendMessage', args: { roomId: room, authorId: writer.subject, authorName: 'Carol', body }, record_id: newId('messages') };
      const pushed = await pushUntilAnswered(writer, [mutation]);
      assert.equal(pushed.status, 200, pushed.text);
      assert.equal(pushed.json.results[0].status, 'confirmed', pushed.text);
      connectorSent.push(body);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  for (let i = 0; i < 6; i += 1) {
    const id = `messages_during_${room}_${i}`;
    await app.sql(
      `INSERT INTO messages (id, room_id, author_name, body, created_at, last_modified_by) ` +
        `VALUES (${quote(id)}, ${quote(room)}, 'Admin', ${quote(`during ${i}`)}, ${Date.now()}, 'admin')`,
    );
    if (i % 2 === 1) await app.sql(`UPDATE messages SET body = ${quote(`during ${i} edited`)} WHERE id = ${quote(id)}`);
  }
  writing = false;
  await connectorLoop;

  // Both browsers end with exactly the upstream rows, in the room's order, once each.
  const upstream = (await app.sql(`SELECT body FROM messages WHERE room_id = ${quote(room)} ORDER BY created_at, id`)).map(([body]) => body);
  assert.equal(upstream.length, 2 + 6 + connectorSent.length);
  for (const page of [a.page, b.page]) {
    // The last direct write may still be on its way (the watcher polls every second).
    await page
      .waitForFunction(
        (expected) => JSON.stringify([...document.querySelectorAll('[data-testid="message-body"]')].map((node) => node.textContent)) === expected,
        JSON.stringify(upstream),
        { timeout: 15_000 },
      )
      .catch(() => {});
    assert.deepEqual(await bodies(page), upstream);
  }
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  await a.page.close();
  await b.page.close();
});

test('a mixed run of 200 direct and 200 connector writes: the rows and the change log match the reference', async () => {
  const room = newId('room').slice(-8);
  const watcher = await openRoom(alice, room);
  const writer = client(app.url, await guestToken(app.url, 'Dan'));

  // Connector: 200 sends in pushes of 20, on their own pace.
  const mutations = [];
  const connector = (async () => {
    for (let batch = 0; batch < 10; batch += 1) {
      const chunk = Array.from({ length: 20 }, (_, i) => ({
        id: newId('outbox'),
        name: 'sendMessage',
        args: { roomId: room, authorId: writer.subject, authorName: 'Dan', body: `connector ${batch * 20 + i}` },
        record_id: newId('messages'),
      }));
      mutations.push(...chunk);
      const pushed = await pushUntilAnswered(writer, chunk);
      assert.equal(pushed.status, 200, pushed.text);
      assert.ok(pushed.json.results.every((r) => r.status === 'confirmed'), pushed.text);
    }
  })();

  // Direct: 200 row changes in 10 scripts of 20 statements: 120 inserts, 50 updates
  // (of direct and connector rows alike), 30 deletes.
  const expected = new Map(); // id -> body (null: deleted), for the direct writes
  let directChanges = 0;
  const direct = (async () => {
    let n = 0;
    for (let script = 0; script < 10; script += 1) {
      const statements = [];
      for (let i = 0; i < 12; i += 1, n += 1) {
        const id = `messages_mixed_${room}_${n}`;
        statements.push(
          `INSERT INTO messages (id, room_id, author_name, body, created_at, last_modified_by) ` +
            `VALUES (${quote(id)}, ${quote(room)}, 'Admin', ${quote(`direct ${n}`)}, ${Date.now() + n}, 'admin')`,
        );
        expected.set(id, `direct ${n}`);
      }
      const live = [...expected].filter(([, body]) => body !== null).map(([id]) => id);
      for (let i = 0; i < 5; i += 1) {
        // Half the updates touch a connector row (already confirmed), half a direct one.
        const confirmed = mutations.slice(0, Math.max(0, mutations.length - 20));
        const target = i % 2 === 0 && confirmed.length > 0 ? confirmed[(script * 5 + i) % confirmed.length].record_id : live[(script * 7 + i) % live.length];
        statements.push(`UPDATE messages SET body = body || ' +edit' WHERE id = ${quote(target)}`);
      }
      for (let i = 0; i < 3; i += 1) {
        const target = live[(script * 3 + i * 4) % live.length];
        statements.push(`DELETE FROM messages WHERE id = ${quote(target)}`);
        expected.set(target, null);
      }
      await app.sql(statements.join(';\n'));
      directChanges += statements.length;
    }
  })();
  await Promise.all([connector, direct]);

  const rows = await app.sql(`SELECT id, body FROM messages WHERE room_id = ${quote(room)} ORDER BY id`);
  const log = await app.sql(
    `SELECT seq, record_id, kind, client_id, mutation_id, CAST(topics_json AS TEXT), ` +
      (app.upstream === 'postgres' ? `row_json->>'body'` : `json_extract(row_json, '$.body')`) +
      ` FROM sync_changes WHERE record_id IN (SELECT record_id FROM sync_changes WHERE CAST(topics_json AS TEXT) LIKE ${quote(`%${room}%`)}) ORDER BY seq`,
  );
  // Sequence numbers strictly increase; every change is on the room's topic.
  for (let i = 1; i < log.length; i += 1) assert.ok(Number(log[i][0]) > Number(log[i - 1][0]));
  const topic = JSON.stringify([`roomMessages{"roomId":"${room}"}`]);
  for (const entry of log) assert.equal(JSON.stringify(JSON.parse(entry[5])), topic, entry.join('|'));
  // Exactly once: one change per connector mutation, one per direct row change (some
  // updates touch a row deleted earlier in the same script: those change nothing).
  const byMutation = new Map();
  for (const [, , , clientId, mutationId] of log) if (clientId !== '') byMutation.set(mutationId, (byMutation.get(mutationId) ?? 0) + 1);
  assert.equal(byMutation.size, 200);
  assert.ok([...byMutation.values()].every((count) => count === 1));
  const directLogged = log.filter(([, , , clientId]) => clientId === '').length;
  assert.ok(directLogged <= directChanges && directLogged >= 120 + 30, `${directLogged} direct changes logged of ${directChanges} statements`);
  // The reference: replaying the log in order gives the table.
  const replay = new Map();
  for (const [, record, kind, , , , body] of log) {
    if (kind === 'delete') replay.delete(record);
    else replay.set(record, body);
  }
  assert.deepEqual(new Map(rows.map(([id, body]) => [id, body])), replay);
  for (const [id, body] of expected) {
    if (body === null) assert.ok(!replay.has(id), `${id} was deleted`);
    else assert.ok(replay.get(id)?.startsWith(body), `${id}: ${replay.get(id)}`);
  }
  // And the watching browser shows the room's window: its newest 200, as the query
  // orders them upstream.
  const newest = await app.sql(`SELECT body FROM messages WHERE room_id = ${quote(room)} ORDER BY created_at DESC, id DESC LIMIT 200`);
  assert.ok(rows.length > 200, `${rows.length} rows: more than the window`);
  const expectedBodies = newest.map(([body]) => body).sort();
  await watcher.page
    .waitForFunction(
      (expected) => JSON.stringify([...document.querySelectorAll('[data-testid="message-body"]')].map((node) => node.textContent).sort()) === expected,
      JSON.stringify(expectedBodies),
      { timeout: 20_000 },
    )
    .catch(() => {});
  assert.deepEqual((await bodies(watcher.page)).sort(), expectedBodies);
  assert.deepEqual(watcher.errors, []);
  await watcher.page.close();
});
