// Private rooms in the browser: `/` makes a room nobody can guess, private to its
// creator; the invite link lets another person in; without it, the room stays shut,
// on the page and on the server-rendered first paint.
import { test, before, after } from './support/playwright.mjs';
import assert from 'node:assert/strict';
import { startApp, launchBrowser, watchErrors } from './support/app.mjs';

let app;
let ada;
let bob;
let eve;

before(async () => {
  app = await startApp();
  [ada, bob, eve] = await Promise.all([launchBrowser(), launchBrowser(), launchBrowser()]);
});

after(async () => {
  for (const browser of [ada, bob, eve]) await browser?.close();
  await app?.stop();
});

async function open(browser, path) {
  const page = await browser.context.newPage();
  const errors = watchErrors(page);
  await page.goto(`${app.url}${path}`);
  await page.getByTestId('app-status').filter({ hasText: 'interactive' }).waitFor();
  await page.getByTestId('sync-status').filter({ hasText: 'online' }).waitFor({ timeout: 15_000 });
  return { page, errors };
}

const shown = (page, text) =>
  page.locator('[data-testid="message"][data-status="confirmed"]').filter({ hasText: text }).waitFor({ timeout: 15_000 });

async function send(page, text) {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('composer-send').click();
}

test('a room from "/" is private: the invite link lets Bob in, Eve without it sees nothing', async () => {
  const a = await open(ada, '/');
  const room = new URL(a.page.url()).pathname.split('/').pop();
  const invite = a.page.getByTestId('invite-link');
  await invite.waitFor({ timeout: 15_000 });
  const link = await invite.inputValue();
  assert.match(link, new RegExp(`^/room/${room}\\?invite=[0-9a-z]{32,}$`));
  await send(a.page, 'only for the invited');
  await shown(a.page, 'only for the invited');

  // Eve has the room's address but not the invite: the page says why, shows nothing.
  const e = await open(eve, `/room/${room}`);
  await e.page.getByTestId('query-error').filter({ hasText: 'is private' }).waitFor({ timeout: 15_000 });
  assert.equal(await e.page.getByTestId('message').count(), 0);
  assert.equal(await e.page.getByTestId('invite-link').count(), 0, 'the invite is for members only');
  // Her message to it is refused, and taken back.
  await send(e.page, 'let me in');
  await e.page.getByTestId('rejection-reason').filter({ hasText: 'is private' }).waitFor({ timeout: 15_000 });
  assert.equal(await e.page.getByTestId('message').count(), 0);

  // Bob follows the invite: he joins, reads what was there and writes.
  const b = await open(bob, link);
  await shown(b.page, 'only for the invited');
  await b.page.waitForFunction(() => !location.search.includes('invite'));
  await send(b.page, 'thanks for the invite');
  await shown(a.page, 'thanks for the invite');
  // A reload keeps him in (the server-rendered page has the messages too).
  await b.page.reload();
  await shown(b.page, 'thanks for the invite');

  // Eve, still outside, received none of it.
  await e.page.waitForTimeout(500);
  assert.equal(await e.page.getByTestId('message').count(), 0);
  const html = await e.page.content();
  assert.ok(!html.includes('only for the invited') && !html.includes('thanks for the invite'));
  for (const { errors } of [a, b]) assert.deepEqual(errors, []);
});
