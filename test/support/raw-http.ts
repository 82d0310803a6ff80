// A raw TCP connection to an HTTP server, for tests that must control what is sent and when
// (a request head split across writes, a body that never ends, pipelining) and read the bytes
// exactly as they came.
import { connect, type Socket } from 'node:net';

/** A connected raw socket to `url`'s host and port; `text()` is everything received so far (UTF-8), `closed` resolves at its close. */
export async function rawConnection(url: string | URL): Promise<{ socket: Socket; closed: Promise<void>; text: () => string }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject); });
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => { text += chunk; });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, closed, text: () => text };
}
