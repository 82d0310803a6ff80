// One simulator per test file, on a free loopback port, with the official SDK pointed at it.
import { after, before } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import type { FastifyInstance } from 'fastify';
import { buildSimulator } from '../src/index.ts';

export interface SimHandle {
  sim: FastifyInstance;
  baseURL: string;
  /** the official SDK, no retries: a fault surfaces exactly once, as the client would see it */
  client: Anthropic;
}

/**
 * Registers `before`/`after` hooks that start a default simulator (calling `onReady` with it)
 * and close it when the file's tests are done.
 */
export function useSimulator(onReady: (h: SimHandle) => void): void {
  let sim: FastifyInstance | undefined;
  before(async () => {
    sim = buildSimulator();
    const baseURL = await sim.listen({ port: 0, host: '127.0.0.1' });
    onReady({ sim, baseURL, client: new Anthropic({ apiKey: 'sk-test', baseURL, maxRetries: 0, logLevel: 'error' }) });
  });
  after(async () => {
    await sim?.close();
  });
}
