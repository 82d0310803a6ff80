// Clients that leave at a chosen phase of a Messages request, for the settlement tests: a raw
// socket that sends a whole request and closes at once, and an HTTP client that closes when
// told (the official SDK cannot leave at every phase).
import { connect } from 'node:net';
import { request as httpRequest } from 'node:http';
import { simRequests } from './tollgate.ts';

/** Polls until the simulator has received a request whose body contains `marker` (up to ~8 s). */
export async function upstreamSaw(simUrl: string, marker: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const seen = await simRequests(simUrl, 50);
    if (seen.some((r) => JSON.stringify(r.body).includes(marker))) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`the upstream never saw ${marker}`);
}

/** A raw HTTP/1.1 request over a socket: the whole body is written, then the socket is closed at once. */
export function sendAndLeave(url: string, secret: string, body: string): Promise<void> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(
        `POST /v1/messages HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\n` +
        `x-api-key: ${secret}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        () => {
          socket.destroy();
          resolve();
        });
    });
    socket.on('error', reject);
  });
}

/**
 * Sends a request and calls `leave` with the response as it arrives (chunks of text so far);
 * when it returns true the client destroys its connection. Resolves with the gateway's
 * request id (the `request-id` header) once the client has left, or null if no header came.
 */
export function requestUntil(
  url: string, secret: string, body: string,
  onHeaders: 'leave' | 'read', leave: (textSoFar: string) => boolean,
): { done: Promise<string | null>; abort(): void } {
  let abort = () => {};
  const done = new Promise<string | null>((resolve, reject) => {
    const req = httpRequest(`${url}/v1/messages`, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': secret },
    }, (res) => {
      const id = (res.headers['request-id'] as string | undefined) ?? null;
      if (onHeaders === 'leave') {
        req.destroy();
        resolve(id);
        return;
      }
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (leave(text)) {
          req.destroy();
          resolve(id);
        }
      });
      res.on('end', () => resolve(id));
      res.on('error', () => resolve(id));
    });
    req.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') resolve(null);
      else reject(err);
    });
    abort = () => { req.destroy(); resolve(null); };
    req.end(body);
  });
  return { done, abort: () => abort() };
}

