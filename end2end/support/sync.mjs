// Small client for the connector's JSON API, as the browser SDK will speak it.
import { randomBytes } from 'node:crypto';

const ULID_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** `{prefix}_{ULID}`: 48-bit time + 80 random bits, Crockford base32. */
export function newId(prefix) {
  let time = BigInt(Date.now());
  let random = BigInt(`0x${randomBytes(10).toString('hex')}`);
  let value = (time << 80n) | random;
  let text = '';
  for (let i = 0; i < 26; i += 1) {
    text = ULID_ALPHABET[Number(value & 31n)] + text;
    value >>= 5n;
  }
  return `${prefix}_${text}`;
}

export const PROTOCOL_VERSION = 1;

export async function guestToken(url, name) {
  const response = await fetch(`${url}/api/auth/guest`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) throw new Error(`guest token: ${response.status} ${await response.text()}`);
  return (await response.json()).token;
}

/** A client identity with helpers for query / push / pull. */
export function client(url, token) {
  const ids = { client_id: newId('client'), session_id: newId('session') };
  const call = async (path, body, headers = {}) => {
    const response = await fetch(`${url}/sync/${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...headers,
      },
      body: typeof body === 'string' ? body : JSON.stringify({ protocol_version: PROTOCOL_VERSION, ...ids, ...body }),
    });
    const text = await response.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, json, text };
  };
  return {
    ...ids,
    call,
    query: (name, args) => call('query', { name, args }),
    push: (mutations) => call('push', { mutations }),
    pull: (cursor, subscriptions) => call('pull', { cursor, subscriptions }),
    send: (roomId, authorName, body) => {
      const mutation = { id: newId('outbox'), name: 'sendMessage', args: { roomId, authorName, body }, record_id: newId('message') };
      return { mutation, response: call('push', { mutations: [mutation] }) };
    },
  };
}

/**
 * Opens the session's poke socket. `next()` resolves with the next poke, or rejects
 * after `timeoutMs`.
 */
export async function pokeSocket(url, { client_id, session_id }) {
  const socket = new WebSocket(`${url.replace('http', 'ws')}/sync/socket?client_id=${client_id}&session_id=${session_id}`);
  const queue = [];
  const waiters = [];
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(event.data);
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
    next(timeoutMs = 5_000) {
      if (queue.length) return Promise.resolve(queue.shift());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no poke within ${timeoutMs} ms`)), timeoutMs);
        waiters.push((message) => { clearTimeout(timer); resolve(message); });
      });
    },
    close() { socket.close(); },
  };
}
