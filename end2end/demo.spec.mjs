// The chat demo as a visitor meets it: a random room on "/", switching rooms, the
// server-rendered first paint, the explanation, and screenshots at two widths.
import { test, before, after } from './support/playwright.mjs';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startApp, launchBrowser, watchErrors, ARTIFACTS } from './support/app.mjs';
import { client, guestToken, newId } from './support/sync.mjs';

let app;
let browser;

before(async () => {
  app = await startApp();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

async function ready(page) {
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor({ timeout: 15_000 });
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });
}

test('"/" opens a fresh private room nobody can guess, and the room form switches rooms', async () => {
  const first = await fetch(`${app.url}/`, { redirect: 'manual' });
  const second = await fetch(`${app.url}/`, { redirect: 'manual' });
  const locations = [];
  for (const response of [first, second]) {
    assert.equal(response.status, 307);
    // 128 random bits: 26 lowercase Crockford base32 characters.
    assert.match(response.headers.get('location'), /^\/room\/[0-9a-hjkmnp-tv-z]{26}\?new$/);
    locations.push(response.headers.get('location'));
  }
  assert.notEqual(locations[0], locations[1]);

  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}/`);
  assert.match(new URL(page.url()).pathname, /^\/room\/[0-9a-hjkmnp-tv-z]{26}$/);
  await ready(page);
  // The page made it private to this browser's user: the invite link shows.
  await page.getByTestId('invite-link').waitFor({ timeout: 15_000 });
  await page.waitForFunction(() => !location.search.includes('new'));
  const privateRoom = new URL(page.url()).pathname;
  const room = newId('room').slice(-6).toLowerCase();
  await page.getByTestId('room-input').fill(` ${room}/?`);
  await page.getByTestId('room-join').click();
  await page.waitForURL(`${app.url}/room/${room}`);
  await page.getByTestId('room-id').filter({ hasText: room }).waitFor();
  await page.getByTestId('composer-input').fill('in the joined room');
  await page.getByTestId('composer-send').click();
  await page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: 'in the joined room' }).waitFor({ timeout: 15_000 });
  // Joining was a history entry: back shows the private room again (its invite
  // link), forward the joined room with its message, with no reload.
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.goBack();
  await page.getByTestId('invite-link').waitFor({ timeout: 15_000 });
  assert.equal(new URL(page.url()).pathname, privateRoom);
  assert.equal(`/room/${await page.getByTestId('room-id').textContent()}`, privateRoom);
  await page.goForward();
  await page.getByTestId('room-id').filter({ hasText: room }).waitFor();
  await page.getByTestId('message-body').filter({ hasText: 'in the joined room' }).waitFor();
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'back and forward stay in the page');
  assert.deepEqual(errors, []);
  await page.close();
});

test('the server renders a room with its messages for a signed-in visitor, and hydration keeps them', async () => {
  const room = newId('room').slice(-8);
  const token = await guestToken(app.url, 'Ada');
  const writer = client(app.url, token);
  const { response } = writer.send(room, 'Ada', 'rendered on the server');
  assert.equal((await response).status, 200);
  // The rows also travel to the page as JSON inside a <script>: a body that would
  // end or comment that element must arrive as text.
  const tricky = '</script><!-- <b>not markup</b>';
  assert.equal((await writer.send(room, 'Ada', tricky).response).status, 200);

  // Without the sign-in cookie the server does not read the room (the callback
  // would deny it): the list is empty and the browser fills it in.
  const anonymous = await (await fetch(`${app.url}/room/${room}`)).text();
  assert.doesNotMatch(anonymous, /rendered on the server/);

  // The guest endpoint sets the cookie; with it the first paint has the messages.
  const signIn = await fetch(`${app.url}/api/auth/guest`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'Bo' }),
  });
  const cookie = signIn.headers.get('set-cookie');
  assert.match(cookie, /^sync_token=[^;]+;.*HttpOnly/);
  const html = await (await fetch(`${app.url}/room/${room}`, { headers: { cookie: cookie.split(';')[0] } })).text();
  assert.match(html, /data-testid="message-body"[^>]*>rendered on the server</);

  // A browser with no JavaScript sees the same; with JavaScript, hydration keeps the
  // message on screen (no flash of an empty list) and raises no errors.
  const [name, value] = cookie.split(';')[0].split('=');
  await browser.context.addCookies([{ name, value, url: app.url }]);
  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}/room/${room}`, { waitUntil: 'commit' });
  await page.getByTestId('message-body').filter({ hasText: 'rendered on the server' }).waitFor();
  await ready(page);
  assert.deepEqual(await page.getByTestId('message-body').allTextContents(), ['rendered on the server', tricky]);
  // The offline copy of the page is the one rendered for nobody: the Service Worker's
  // cache holds no user's messages (nothing of them outlives a sign-out).
  await page.getByTestId('offline-ready').and(page.locator('[data-ready="true"]')).waitFor({ timeout: 15_000 });
  await page.reload();
  await ready(page);
  const kept = await page.evaluate(async () => {
    const texts = [];
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      for (const request of await cache.keys()) {
        if (new URL(request.url).pathname.startsWith('/room/')) texts.push(await (await cache.match(request)).text());
      }
    }
    return texts;
  });
  assert.ok(kept.length >= 1, 'the page is kept for offline loads');
  for (const html of kept) assert.doesNotMatch(html, /rendered on the server/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the page explains itself: steps, diagram, the model source and the callback shapes', async () => {
  const page = await browser.context.newPage();
  await page.goto(`${app.url}/room/${newId('room').slice(-8)}`);
  const section = page.getByTestId('how-it-works');
  await section.waitFor();
  assert.equal(await page.getByTestId('architecture-diagram').count(), 1);
  const diagram = await page.getByTestId('architecture-diagram').textContent();
  for (const part of ['Leptos UI', 'SQLite worker', 'Connector worker', 'Subscription DO', 'Session DO', 'D1 / PostgreSQL', 'Callbacks']) {
    assert.ok(diagram.includes(part), part);
  }
  assert.match(await page.getByTestId('model-code').textContent(), /ROOM_MESSAGES\s*\.define\(\)\s*\.require\("roomId", "room_id", Operator::Eq\)/);
  const text = await section.textContent();
  assert.match(text, /"operation_kind": "mutation"/);
  assert.match(text, /"mutation_kind": "insert"/);
  await page.close();
});

test('screenshots at desktop and phone width', async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  const room = newId('room').slice(-8);
  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}/room/${room}`);
  await ready(page);
  for (const text of ['Hello from the desktop', 'A second message, a little longer, to see how lines wrap on a narrow screen']) {
    await page.getByTestId('composer-input').fill(text);
    await page.getByTestId('composer-send').click();
    await page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: text.slice(0, 20) }).waitFor({ timeout: 15_000 });
  }
  for (const [label, viewport] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 844 }]]) {
    await page.setViewportSize(viewport);
    const path = join(ARTIFACTS, `chat-${label}.png`);
    await page.screenshot({ path, fullPage: true });
    // Nothing may stick out sideways: the page fits the phone's width.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${label}: ${overflow}px wider than the viewport`);
  }
  assert.deepEqual(errors, []);
  await page.close();
});
