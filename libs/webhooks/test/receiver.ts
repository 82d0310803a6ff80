// A local webhook receiver for tests: a node:http server that records every request (headers
// and exact body) and answers with the statuses it is told, in order (then 200).
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Receiver {
  url: string;
  received: Received[];
  /** statuses for the next requests, in order; afterwards 200 */
  answers: number[];
  /** statuses for the next requests to one path (e.g. `/hook/retry`), before `answers` */
  answersAt: Record<string, number[]>;
  /** resolves once `n` requests have arrived */
  waitFor(n: number): Promise<Received[]>;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const waiters: Array<{ n: number; resolve: (r: Received[]) => void }> = [];
  const r: Partial<Receiver> & { answers: number[]; answersAt: Record<string, number[]> } = { answers: [], answersAt: {} };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const status = r.answersAt[req.url ?? '']?.shift() ?? r.answers.shift() ?? 200;
      if (status >= 300 && status < 400) res.setHeader('location', 'http://127.0.0.1:1/elsewhere');
      res.writeHead(status, { 'content-type': 'text/plain' }).end(String(status));
      for (const w of [...waiters]) if (received.length >= w.n) { waiters.splice(waiters.indexOf(w), 1); w.resolve(received.slice()); }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(r, {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    waitFor: (n: number) => (received.length >= n ? Promise.resolve(received.slice()) : new Promise<Received[]>((resolve) => waiters.push({ n, resolve }))),
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  }) as Receiver;
}
