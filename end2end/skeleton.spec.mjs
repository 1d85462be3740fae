// The walking skeleton: the worker renders the page, serves the bundle, and the
// browser hydrates it.
import { test, before, after } from './support/playwright.mjs';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, watchErrors } from './support/app.mjs';
import { client, guestToken } from './support/sync.mjs';

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

test('the worker renders the chat shell on the server', async () => {
  const response = await fetch(`${app.url}/room/94462`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /text\/html/);
  const html = await response.text();
  assert.match(html, /<span data-testid="room-id"[^>]*>94462<\/span>/);
  assert.match(html, /data-testid="app-status"[^>]*>server-rendered</);
  // The hydration script asks for the bundle wasm-bindgen produced.
  assert.match(html, /\/pkg\/frontend\.js/);
  assert.match(html, /\/pkg\/frontend_bg\.wasm/);
});

test('the client bundle and stylesheet are served as static assets', async () => {
  const wasm = await fetch(`${app.url}/pkg/frontend_bg.wasm`);
  assert.equal(wasm.status, 200);
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
  const bytes = new Uint8Array(await wasm.arrayBuffer());
  assert.deepEqual([...bytes.slice(0, 4)], [0x00, 0x61, 0x73, 0x6d]);
  const css = await fetch(`${app.url}/style/main.css`);
  assert.equal(css.status, 200);
  assert.match(await css.text(), /\.composer/);
});

test('the API answers JSON, including for unknown endpoints', async () => {
  const health = await fetch(`${app.url}/api/health`);
  assert.equal(health.status, 200);
  const body = await health.json();
  assert.equal(body.ok, true);
  assert.equal(typeof body.protocol_version, 'number');
  assert.equal(body.upstream, 'd1', 'D1 is the default upstream');

  const missing = await fetch(`${app.url}/api/nope`);
  assert.equal(missing.status, 404);
  const error = await missing.json();
  assert.equal(error.error, 'not_found');
  assert.match(error.reason, /\/api\/nope/);
});

test('hydration makes the composer work in Chromium', async () => {
  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}/room/94462`);
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor({ timeout: 15_000 });
  await page.getByTestId('composer-input').fill('hello from the skeleton');
  await page.getByTestId('composer-send').click();
  const message = page.getByTestId('message');
  await message.first().waitFor();
  assert.equal(await message.count(), 1);
  assert.equal(await message.first().getByTestId('message-body').textContent(), 'hello from the skeleton');
  assert.equal(await page.getByTestId('composer-input').inputValue(), '');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a wrong upstream setting is a clear 503, not a crash', async () => {
  // PostgreSQL named, but no Hyperdrive binding (this config has none); and a name
  // that is no upstream at all.
  for (const [upstream, reason] of [['postgres', /Hyperdrive binding HYPERDRIVE/], ['mysql', /SYNC_UPSTREAM is `mysql`/]]) {
    const other = await startApp({ vars: { SYNC_UPSTREAM: upstream } });
    try {
      const response = await client(other.url, await guestToken(other.url, 'Ada')).query('roomMessages', { roomId: 'r1' });
      const body = response.json;
      assert.equal(response.status, 503, response.text);
      assert.equal(body.error, 'not_configured');
      assert.match(body.reason, reason);
      // The worker is still up, and its health probe says what is wrong.
      const health = await fetch(`${other.url}/api/health`);
      assert.equal(health.status, 503);
      const probe = await health.json();
      assert.deepEqual([probe.ok, probe.error], [false, 'not_configured']);
      assert.match(probe.reason, reason);
    } finally {
      await other.stop();
    }
  }
});
