// Small client for the connector's JSON API, as the browser SDK will speak it.
import { createHash, randomBytes } from 'node:crypto';

const ULID_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A 128-bit value as a ULID (Crockford base32, 26 characters). */
function ulid(value) {
  let text = '';
  for (let i = 0; i < 26; i += 1) {
    text = ULID_ALPHABET[Number(value & 31n)] + text;
    value >>= 5n;
  }
  return text;
}

/** `{prefix}_{ULID}`: 48-bit time + 80 random bits, Crockford base32. */
export function newId(prefix) {
  const time = BigInt(Date.now());
  const random = BigInt(`0x${randomBytes(10).toString('hex')}`);
  return `${prefix}_${ulid((time << 80n) | random)}`;
}

/** The client id a client key proves: `client_` + SHA-256(key)'s first 128 bits as a ULID. */
export function clientIdForKey(key) {
  const digest = createHash('sha256').update(key).digest('hex').slice(0, 32);
  return `client_${ulid(BigInt(`0x${digest}`))}`;
}

/** A fresh client key (64 hex digits), as the browser makes one. */
export const newClientKey = () => randomBytes(32).toString('hex');

export const CLIENT_KEY_HEADER = 'x-sync-client-key';

export const PROTOCOL_VERSION = 1;

/** A guest token for `name`: a new subject, or `previous`'s when given (a renewal). */
export async function guestToken(url, name, previous) {
  const response = await fetch(`${url}/api/auth/guest`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(previous ? { authorization: `Bearer ${previous}` } : {}) },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) throw new Error(`guest token: ${response.status} ${await response.text()}`);
  return (await response.json()).token;
}

/** The claims of a JWT (not verified: the test's own tokens). */
export function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** The subject a guest token names: the identity the chat's rules compare. */
export const subjectOf = (token) => claimsOf(token).sub;

/** A response's status, text and JSON (when it is JSON). */
async function answerOf(response) {
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, json, text, headers: response.headers };
}

/** A client identity with helpers for query / push / pull. */
export function client(url, token, clientKey = newClientKey()) {
  const ids = { client_id: clientIdForKey(clientKey), session_id: newId('session') };
  const call = async (path, body, headers = {}) => {
    const response = await fetch(`${url}/sync/${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        [CLIENT_KEY_HEADER]: clientKey,
        ...headers,
      },
      body: typeof body === 'string' ? body : JSON.stringify({ protocol_version: PROTOCOL_VERSION, ...ids, ...body }),
    });
    return answerOf(response);
  };
  return {
    ...ids,
    client_key: clientKey,
    token,
    subject: token ? subjectOf(token) : undefined,
    call,
    query: (name, args) => call('query', { name, args }),
    push: (mutations) => call('push', { mutations }),
    pull: (cursor, subscriptions) => call('pull', { cursor, subscriptions }),
    send: (roomId, authorName, body) => {
      const args = { roomId, authorId: token ? subjectOf(token) : '', authorName, body };
      const mutation = { id: newId('outbox'), name: 'sendMessage', args, record_id: newId('messages') };
      return { mutation, response: call('push', { mutations: [mutation] }) };
    },
  };
}

/** An answer as a replay gives it: the same, without the first answer's image. */
export const withoutImage = (results) => results.map((result) => (result.status === 'confirmed' ? { ...result, row: null } : result));

/** Asks for a one-time socket ticket, as the browser does (key and sign-in in headers). */
export async function socketTicket(url, { client_id, session_id, client_key, token }) {
  const response = await fetch(`${url}/sync/ticket`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      [CLIENT_KEY_HEADER]: client_key ?? '',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify({ protocol_version: PROTOCOL_VERSION, client_id, session_id }),
  });
  return answerOf(response);
}

/**
 * Opens the session's poke socket with a fresh ticket. `next()` resolves with the
 * next poke, or rejects after `timeoutMs`.
 */
export async function pokeSocket(url, identity) {
  const granted = await socketTicket(url, identity);
  if (granted.status !== 200) throw new Error(`socket ticket: ${granted.status} ${granted.text}`);
  return openSocket(url, granted.json.ticket);
}

/** Opens the poke socket with `ticket` (see {@link pokeSocket}). */
export async function openSocket(url, ticket) {
  const socket = new WebSocket(`${url.replace('http', 'ws')}/sync/socket?ticket=${encodeURIComponent(ticket)}`);
  const queue = [];
  const waiters = [];
  const all = [];
  const closed = new Promise((resolve) => {
    socket.addEventListener('close', (event) => resolve({ code: event.code, reason: event.reason }), { once: true });
  });
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(event.data);
    all.push(message);
    const waiter = waiters.shift();
    if (waiter) waiter(message);
    else queue.push(message);
  });
  await new Promise((resolve, reject) => {
    socket.addEventListener('open', resolve, { once: true });
    socket.addEventListener('error', () => reject(new Error('socket failed to open')), { once: true });
  });
  return {
    socket,
    received: queue,
    /** Every message the socket received, in order. */
    all,
    /** Resolves with the close code and reason once the socket closes. */
    closed,
    next(timeoutMs = 5_000) {
      if (queue.length) return Promise.resolve(queue.shift());
      return new Promise((resolve, reject) => {
        const waiter = (message) => { clearTimeout(timer); resolve(message); };
        // A waiter that timed out leaves the line: the next message is the next call's.
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`no poke within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    close() { socket.close(); },
  };
}
