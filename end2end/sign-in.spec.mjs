// An expired sign-in pauses sending; it never rejects. Guest tokens here last 4 s
// (AUTH_TOKEN_LIFETIME_S), so a test outlives its token in seconds.
import { test, before, after } from './support/playwright.mjs';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, watchErrors } from './support/app.mjs';
import { client, guestToken, newId } from './support/sync.mjs';

const LIFETIME_S = 4;
let app;

before(async () => {
  app = await startApp({ vars: { AUTH_TOKEN_LIFETIME_S: String(LIFETIME_S) } });
});

after(async () => {
  await app?.stop();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function openRoom(context, room) {
  const page = await context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}/room/${room}`);
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });
  return { page, errors, signedInAt: Date.now() };
}

async function send(page, text) {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('composer-send').click();
  await page.locator('[data-testid="message"][data-status="pending"]').filter({ hasText: text }).waitFor();
}

async function serverBodies(room) {
  const reader = client(app.url, await guestToken(app.url, 'Reader'));
  const answer = await reader.query('roomMessages', { roomId: room });
  assert.equal(answer.status, 200, answer.text);
  return answer.json.rows.map((row) => row.body).sort();
}


test('5 messages queued offline past the token expiry are confirmed once after the sign-in is renewed', async () => {
  const browser = await launchBrowser();
  const { context } = browser;
  const room = newId('room').slice(-8);
  const { page, errors, signedInAt } = await openRoom(context, room);
  const renewals = [];
  page.on('request', (request) => {
    if (request.url().endsWith('/api/auth/guest')) renewals.push(Date.now());
  });

  await context.setOffline(true);
  const texts = [1, 2, 3, 4, 5].map((n) => `queued offline ${n}`);
  for (const text of texts) await send(page, text);
  await sleep(Math.max(0, signedInAt + (LIFETIME_S + 1) * 1000 - Date.now()));
  const onlineAt = Date.now();
  await context.setOffline(false);

  for (const text of texts) {
    await page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: text })
      .waitFor({ timeout: 30_000 });
  }
  assert.equal(await page.getByTestId('rejected-message').count(), 0, 'nothing rolled back');
  assert.deepEqual(await serverBodies(room), texts, 'each applied once');
  assert.ok(renewals.some((at) => at >= onlineAt), 'the server asked for a new sign-in and the page renewed it');
  assert.deepEqual(errors.filter((error) => !/401|ERR_INTERNET_DISCONNECTED|Failed to fetch/.test(error)), []);
  await browser.close();
});

test('when the token cannot be renewed, the chat asks to sign in again and keeps the messages', async () => {
  const browser = await launchBrowser();
  const room = newId('room').slice(-8);
  const { page, errors, signedInAt } = await openRoom(browser.context, room);
  // The sign-in service is unreachable: the automatic renewal fails.
  await page.route('**/api/auth/guest', (route) => route.abort());
  await sleep(Math.max(0, signedInAt + (LIFETIME_S + 1) * 1000 - Date.now()));

  const texts = [1, 2, 3, 4, 5].map((n) => `after expiry ${n}`);
  for (const text of texts) await send(page, text);
  await page.getByTestId('needs-auth').waitFor({ timeout: 15_000 });
  await page.locator('[data-testid="sync-status"][data-state="needs_auth"]').waitFor();
  await sleep(1_500);
  for (const text of texts) {
    assert.equal(
      await page.getByTestId('message').filter({ hasText: text }).getAttribute('data-status'),
      'pending',
      `${text} waits`,
    );
  }
  assert.equal(await page.getByTestId('rejected-message').count(), 0, 'nothing rolled back');
  assert.deepEqual(await serverBodies(room), [], 'nothing applied without a sign-in');

  await page.unroute('**/api/auth/guest');
  await page.getByTestId('sign-in-again').click();
  for (const text of texts) {
    await page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: text })
      .waitFor({ timeout: 30_000 });
  }
  await page.getByTestId('needs-auth').waitFor({ state: 'detached' });
  assert.equal(await page.getByTestId('rejected-message').count(), 0, 'nothing rolled back');
  assert.deepEqual(await serverBodies(room), texts, 'each applied once');
  assert.deepEqual(errors.filter((error) => !/401|auth\/guest|guest token|Failed to fetch/.test(error)), []);
  await browser.close();
});
