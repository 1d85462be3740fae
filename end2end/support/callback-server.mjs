// A stand-in for an app's own backend: a real HTTP server on loopback that records
// what the connector sends and answers as the test says.
import { createServer } from 'node:http';

export async function startCallbackServer() {
  const received = [];
  // (kind, body, headers) -> { status, json } | { status, text } | { delayMs, ... }
  let behaviour = () => ({ status: 200, json: { allow: true } });
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', async () => {
      const kind = request.url.endsWith('/mutation') ? 'mutation' : 'query';
      let parsed;
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = body;
      }
      received.push({ kind, headers: request.headers, body: parsed, raw: body });
      const answer = behaviour(kind, parsed, request.headers);
      if (answer.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs));
      response.writeHead(answer.status ?? 200, { 'content-type': 'application/json' });
      response.end(answer.text ?? JSON.stringify(answer.json));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    answer(fn) { behaviour = fn; },
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}
