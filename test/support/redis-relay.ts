// A TCP relay of a test's own in front of a real Redis (or any TCP server): the faults a test
// injects on the wire, between a client and the real engine. Used by the ledger's and the
// gateway's tests of lost replies and slow writes.
import { createServer, connect, type Server, type Socket } from 'node:net';

/** A running relay: clients connect to 127.0.0.1:`port`. */
export interface TcpRelay {
  port: number;
  /** Holds back the client → server bytes from now on (a slow server), until `release`. */
  hold(): void;
  /** Sends what was held back, in order, and stops holding. */
  release(): void;
  /**
   * Passes the next `bytes` bytes of the server's replies, then drops that connection (the
   * partial chunk is delivered first): what the server ran past that point goes unanswered.
   * The client may connect again; later connections are relayed as usual.
   */
  cutAfter(bytes: number): void;
  /**
   * From now on, replaces `from` by `to` in the server's replies (the same byte length, so a
   * RESP reply stays well-formed; within one chunk of a reply): a server that says something
   * else of itself, e.g. an older `redis_version` in `INFO server`. Throws a RangeError when the
   * lengths differ.
   */
  rewriteReplies(from: string, to: string): void;
  /** Destroys every connection and stops listening. */
  close(): Promise<void>;
}

/** Starts a relay to `target` (a `redis://host:port` URL; port 6379 when it names none). */
export async function startRelay(target: URL): Promise<TcpRelay> {
  let holding = false;
  const held: Array<() => void> = [];
  let left = -1;
  let rewrite: [string, string] | undefined;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    sockets.add(client).add(upstream);
    const end = () => { client.destroy(); upstream.destroy(); };
    client.on('data', (chunk) => {
      if (holding) held.push(() => upstream.write(chunk));
      else upstream.write(chunk);
    });
    upstream.on('data', (data: Buffer) => {
      const chunk = rewrite ? Buffer.from(data.toString('latin1').split(rewrite[0]).join(rewrite[1]), 'latin1') : data;
      if (left >= 0 && chunk.length > left) {
        // the partial chunk must reach the client before its connection closes
        upstream.off('close', end);
        upstream.destroy();
        client.end(chunk.subarray(0, left));
        left = -1;
        return;
      }
      if (left >= 0) left -= chunk.length;
      client.write(chunk);
    });
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    hold: () => { holding = true; },
    release: () => { holding = false; for (const f of held.splice(0)) f(); },
    cutAfter: (bytes) => { left = bytes; },
    rewriteReplies: (from, to) => {
      if (Buffer.byteLength(from) !== Buffer.byteLength(to)) throw new RangeError(`rewriteReplies: ${JSON.stringify(from)} and ${JSON.stringify(to)} differ in length`);
      rewrite = [Buffer.from(from).toString('latin1'), Buffer.from(to).toString('latin1')];
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
