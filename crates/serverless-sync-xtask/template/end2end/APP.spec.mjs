// {{Title}}, end to end: two real browsers on one board, against the real worker
// (wrangler dev: workerd and a local D1; PostgreSQL with SYNC_E2E_POSTGRES_URL).
// The fixtures (end2end/support/fixtures.mjs) start the app once and give each user a
// browser of their own; `expect(locator)` waits until what it checks holds.
import { test, expect } from './support/fixtures.mjs';

/** The model's fields, as the generator wrote them: the page has an input for each. */
const FIELDS = {{fields_json}};
/** The field rows are told apart by (each row's `data-key`). */
const KEY = FIELDS.find((field) => field.type !== 'bool');
const TEXT = FIELDS.find((field) => field.type === 'text');

/** A value of `field` for the n-th row a test writes. */
function valueOf(field, n) {
  switch (field.type) {
    case 'text': return `${field.name} ${n}`;
    case 'integer': return String(1000 + n);
    case 'real': return `${n}.5`;
    default: return n % 2 === 1;
  }
}

const board = () => `b${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const status = (page) => page.getByTestId('sync-status');
const rows = (page) => page.getByTestId('{{row_testid}}');
const row = (page, key) => page.locator(`[data-testid="{{row_testid}}"][data-key="${key}"]`);

async function open(app, browser, id) {
  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => message.type() === 'error' && errors.push(`console: ${message.text()}`));
  await page.goto(`${app.url}/board/${id}`);
  await expect(status(page)).toHaveAttribute('data-state', 'online', { timeout: 20_000 });
  return { page, errors };
}

/** Fills the form with the n-th row's values and adds it; `overrides` replace some. */
async function add(page, n, overrides = {}) {
  for (const field of FIELDS) {
    const value = overrides[field.name] ?? valueOf(field, n);
    const input = page.getByTestId(`new-${field.name}`);
    if (field.type === 'bool') await input.setChecked(value);
    else await input.fill(value);
  }
  await page.getByTestId('add-{{row_testid}}').click();
}

/** Waits until the page shows the n-th row, confirmed, with every value. */
async function expectRow(page, n, key = valueOf(KEY, n)) {
  const shown = row(page, key);
  await expect(shown).toHaveAttribute('data-status', 'confirmed', { timeout: 15_000 });
  for (const field of FIELDS.filter((field) => field !== KEY)) {
    const input = shown.getByTestId(`{{row_testid}}-${field.name}`);
    if (field.type === 'bool') await expect(input).toBeChecked({ checked: valueOf(field, n) });
    else await expect(input).toHaveValue(valueOf(field, n));
  }
}

test('two browsers share a board: add, edit and delete show on the other', async ({ app, alice, bob }) => {
  const id = board();
  const a = await open(app, alice, id);
  const b = await open(app, bob, id);
  await add(a.page, 1);
  await expectRow(a.page, 1);
  await expectRow(b.page, 1);

  // B edits the row's key field: A sees the new value, in place of the old.
  const edited = KEY.type === 'text' ? 'edited' : '77';
  const input = row(b.page, valueOf(KEY, 1)).getByTestId(`{{row_testid}}-${KEY.name}`);
  await input.fill(edited);
  await input.press('Enter');
  await expectRow(a.page, 1, edited);
  await expect(rows(a.page)).toHaveCount(1);

  // A deletes it: gone on B.
  await row(a.page, edited).getByTestId('{{row_testid}}-delete').click();
  await expect(rows(b.page)).toHaveCount(0);
  await expect(rows(a.page)).toHaveCount(0);

  // Another board is another topic: nothing from this one shows there.
  const elsewhere = await open(app, bob, board());
  await add(a.page, 2);
  await expectRow(b.page, 2);
  await expect(rows(elsewhere.page)).toHaveCount(0);
  expect(a.errors).toEqual([]);
  expect(b.errors).toEqual([]);
  for (const page of [a.page, b.page, elsewhere.page]) await page.close();
});

test('a write made offline shows at once, waits, and syncs once back online', async ({ app, alice, bob }) => {
  const id = board();
  const a = await open(app, alice, id);
  const b = await open(app, bob, id);
  await alice.context.setOffline(true);
  await expect(status(a.page)).toHaveAttribute('data-state', 'offline', { timeout: 5_000 });
  await add(a.page, 3);
  await expect(row(a.page, valueOf(KEY, 3)), 'queued while offline').toHaveAttribute('data-status', 'pending');
  await b.page.waitForTimeout(500);
  await expect(rows(b.page), 'nothing reached the other browser').toHaveCount(0);

  await alice.context.setOffline(false);
  await expectRow(a.page, 3);
  await expectRow(b.page, 3);
  await expect(rows(b.page), 'applied once').toHaveCount(1);
  await expect(status(a.page)).toHaveAttribute('data-state', 'online', { timeout: 15_000 });
  for (const page of [a.page, b.page]) await page.close();
});

test('a write the rules refuse is rolled back with its reason, and never reaches the other browser', async ({ app, alice, bob }) => {
  test.skip(!TEXT, 'the model has no text field, so the rules refuse nothing');
  const id = board();
  const a = await open(app, alice, id);
  const b = await open(app, bob, id);
  await add(a.page, 4);
  await expectRow(b.page, 4);

  await add(a.page, 5, { [TEXT.name]: 'x'.repeat(501) });
  await expect(a.page.getByTestId('refusal').filter({ hasText: 'at most 500 characters' })).toBeVisible({ timeout: 15_000 });
  await expect(rows(a.page), 'the refused row is rolled back').toHaveCount(1);
  await b.page.waitForTimeout(300);
  await expect(rows(b.page)).toHaveCount(1);
  await expect(b.page.getByTestId('refusal')).toHaveCount(0);
  for (const page of [a.page, b.page]) await page.close();
});
{{#offline}}

test('once opened, the page opens again with no network, with what the store holds', async ({ app, alice, bob }) => {
  const id = board();
  const a = await open(app, alice, id);
  await expect(a.page.getByTestId('offline-ready')).toHaveAttribute('data-ready', 'true', { timeout: 15_000 });
  await add(a.page, 6);
  await expectRow(a.page, 6);

  await alice.context.setOffline(true);
  await a.page.reload();
  await expect(status(a.page)).toHaveAttribute('data-state', 'offline', { timeout: 15_000 });
  await expect(row(a.page, valueOf(KEY, 6)), 'the store kept the row').toBeVisible();
  await add(a.page, 7);
  await expect(row(a.page, valueOf(KEY, 7)), 'queued while offline').toHaveAttribute('data-status', 'pending');

  await alice.context.setOffline(false);
  await expectRow(a.page, 7);
  const b = await open(app, bob, id);
  await expectRow(b.page, 7);
  for (const page of [a.page, b.page]) await page.close();
});
{{/offline}}
{{#ssr}}

test('the worker renders a board with the rows its visitor may read, and the page hydrates', async ({ app, alice }) => {
  const id = board();
  const a = await open(app, alice, id);
  await add(a.page, 8);
  await expectRow(a.page, 8);
  // The HTML as the worker sends it, before any script runs: with Alice's sign-in
  // cookie, her board's rows.
  const html = await (await a.page.request.get(`${app.url}/board/${id}`)).text();
  expect(html).toContain(`data-key="${valueOf(KEY, 8)}"`);
  // Nobody signed in: the same page without rows (the browser's store fills them in).
  const anonymous = await (await fetch(`${app.url}/board/${id}`)).text();
  expect(anonymous).toContain('data-testid="{{row_testid}}-list"');
  expect(anonymous).not.toContain(`data-key="${valueOf(KEY, 8)}"`);
  // A reload shows the rows at once and hydrates without an error.
  await a.page.reload();
  await expectRow(a.page, 8);
  expect(a.errors).toEqual([]);
  await a.page.close();
});
{{/ssr}}
