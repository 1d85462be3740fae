// Only the app says no: a write sent while the app's mutation callback is down is
// kept, shown as sending, retried, and confirmed once when the callback is back.
import { test, before, after } from './support/playwright.mjs';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, watchErrors } from './support/app.mjs';
import { startCallbackServer } from './support/callback-server.mjs';
import { client, guestToken, newId } from './support/sync.mjs';

let app;
let callbacks;
let browser;

before(async () => {
  callbacks = await startCallbackServer();
  app = await startApp({ vars: { SYNC_MUTATION_CALLBACK_URL: `${callbacks.url}/mutation` } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await app?.stop();
  await callbacks?.close();
});

test('a message sent during a 3-second callback outage is confirmed once after recovery', async () => {
  const room = newId('room').slice(-8);
  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}/room/${room}`);
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });

  let down = true;
  callbacks.answer((kind, body) => (down
    ? { status: 503, text: 'maintenance' }
    : { json: { operations: body.operations.map((op) => ({ allow: true, id: op.id })) } }));
  await page.getByTestId('composer-input').fill('sent during the outage');
  await page.getByTestId('composer-send').click();
  const message = page.getByTestId('message').filter({ hasText: 'sent during the outage' });
  await message.waitFor();
  // The callback was asked and could not answer: the message stays, still sending.
  const deadline = Date.now() + 10_000;
  while (!callbacks.received.some((call) => call.kind === 'mutation') && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(callbacks.received.some((call) => call.kind === 'mutation'), 'the push reached the callback');
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  assert.equal(await message.getAttribute('data-status'), 'pending');
  assert.equal(await page.getByTestId('rejected-message').count(), 0, 'not rolled back');
  assert.notEqual(await page.getByTestId('sync-status').getAttribute('data-state'), 'offline', 'the browser is online');

  down = false;
  await page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: 'sent during the outage' })
    .waitFor({ timeout: 30_000 });
  const rows = (await client(app.url, await guestToken(app.url, 'Reader')).query('roomMessages', { roomId: room })).json.rows;
  assert.deepEqual(rows.map((row) => row.body), ['sent during the outage'], 'applied once');
  assert.deepEqual(errors.filter((error) => !error.includes('503')), []);
  await page.close();
});
