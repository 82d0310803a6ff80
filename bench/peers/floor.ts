// The floor of a Node gateway, for the peers section of `npm run bench` (bench/README.md, "Peers"):
// node:http's server and undici's client, forwarding a request and its answer and nothing else.
// No authentication, no limits, no hold, no price, no usage event, no logging: what any gateway
// written on Node's HTTP stack spends per request before it does its own work. Its req/s over
// Portkey's in the same run is the most a Node gateway can reach against Portkey on this machine.
//
// Started by bench/peers.ts as a child process, configured by the environment:
//   FLOOR_PORT      the port to listen on, 127.0.0.1 (required)
//   FLOOR_UPSTREAM  the upstream's origin, e.g. http://127.0.0.1:4010 (required)
// GET /health answers 200 (readiness); every other request is forwarded to FLOOR_UPSTREAM with
// the same method, path, body and the three headers an Anthropic request needs. A failed
// forward answers 502 with an Anthropic-shaped error.
import { createServer } from 'node:http';
import { Agent, request } from 'undici';

const port = Number(process.env.FLOOR_PORT);
const upstream = process.env.FLOOR_UPSTREAM ?? '';
if (!Number.isInteger(port) || port <= 0 || !/^https?:\/\//.test(upstream)) {
  process.stderr.write('bench/peers/floor: FLOOR_PORT (a port) and FLOOR_UPSTREAM (an http origin) are required\n');
  process.exit(2);
}

// Keep-alive connections to the upstream, as Tollgate's own upstream client keeps.
const dispatcher = new Agent({ keepAliveTimeout: 10_000, connections: 256 });
const FORWARDED = ['content-type', 'anthropic-version', 'x-api-key'] as const;

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const headers: Record<string, string> = {};
    for (const h of FORWARDED) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    request(`${upstream}${req.url ?? '/'}`, { method: req.method as 'POST', headers, body: Buffer.concat(chunks), dispatcher })
      .then(async (r) => {
        const body = Buffer.from(await r.body.arrayBuffer());
        const type = r.headers['content-type'];
        res.writeHead(r.statusCode, { 'content-type': typeof type === 'string' ? type : 'application/json', 'content-length': body.length });
        res.end(body);
      })
      .catch((err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        res.writeHead(502, { 'content-type': 'application/json' })
          .end(JSON.stringify({ type: 'error', error: { type: 'api_error', message: `upstream: ${message}` } }));
      });
  });
});
server.keepAliveTimeout = 10_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
