// Upstream misbehaviour on demand: the bytes on the wire for every fault directive.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { buildSimulator } from '../src/index.ts';
import type { RecordedRequest } from '../src/index.ts';

const MODEL = 'claude-sonnet-4-6';
const ENCODINGS = ['gzip', 'deflate', 'br', 'zstd'] as const;
type Encoding = (typeof ENCODINGS)[number];

let sim: FastifyInstance;
let baseURL: string;

before(async () => {
  sim = buildSimulator();
  baseURL = await sim.listen({ port: 0, host: '127.0.0.1' });
});

after(async () => {
  await sim.close();
});

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  bytes: Buffer;
  /** The number in request-id req_sim_<n>, which also names msg_sim_<n>. */
  n: string;
}

/**
 * POST with node:http so the body arrives exactly as sent (fetch would decompress it), asking
 * for no compression: a forced encoding must come anyway. A socket destroyed mid-body resolves
 * with the bytes received so far.
 */
function raw(path: string, body: unknown, headers: Record<string, string> = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${baseURL}${path}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': 'sk-upstream-1', 'accept-encoding': 'identity', ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        const done = (): void =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            bytes: Buffer.concat(chunks),
            n: String(res.headers['request-id']).replace('req_sim_', ''),
          });
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', done);
        res.on('error', done);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** Decodes a body; `truncated` accepts a stream cut before its end (the flushed part decodes). */
function decode(encoding: Encoding, bytes: Buffer, truncated = false): string {
  const c = zlib.constants;
  switch (encoding) {
    case 'gzip':
      return zlib.gunzipSync(bytes, truncated ? { finishFlush: c.Z_SYNC_FLUSH } : {}).toString();
    case 'deflate':
      return zlib.inflateSync(bytes, truncated ? { finishFlush: c.Z_SYNC_FLUSH } : {}).toString();
    case 'br':
      return zlib.brotliDecompressSync(bytes, truncated ? { finishFlush: c.BROTLI_OPERATION_FLUSH } : {}).toString();
    case 'zstd':
      return zlib.zstdDecompressSync(bytes, truncated ? { finishFlush: c.ZSTD_e_flush } : {}).toString();
  }
}

function body(extra: Record<string, unknown> = {}): Record<string, unknown> {
  // 'Hi' is 2 chars → 1 input token.
  return { model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: 'Hi' }], ...extra };
}

const USAGE_TAIL = '"cache_creation_input_tokens":0,"cache_read_input_tokens":0';
const START_USAGE = `{"input_tokens":1,"output_tokens":1,${USAGE_TAIL},"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"service_tier":"standard"}`;

function frame(data: string): string {
  // Not JSON.parse: some frames deliberately carry NaN.
  const type = /^\{"type":"(\w+)"/.exec(data)?.[1];
  return `event: ${type}\ndata: ${data}\n\n`;
}

/** The exact SSE text of an `output=3` reply to 'Hi' (one text delta: 'Simulated reply to:'). */
function threeWordStream(n: string, tail: readonly string[]): string {
  return [
    `{"type":"message_start","message":{"id":"msg_sim_${n}","type":"message","role":"assistant","model":"${MODEL}","content":[],"stop_reason":null,"stop_sequence":null,"usage":${START_USAGE}}}`,
    '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    '{"type":"ping"}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Simulated reply to:"}}',
    '{"type":"content_block_stop","index":0}',
    ...tail,
  ]
    .map(frame)
    .join('');
}

const FINAL_DELTA = `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3,"input_tokens":1,${USAGE_TAIL}}}`;
const STOP = '{"type":"message_stop"}';

function threeWordMessage(n: string, usage: string): string {
  return `{"id":"msg_sim_${n}","type":"message","role":"assistant","model":"${MODEL}","content":[{"type":"text","text":"Simulated reply to:"}],"stop_reason":"end_turn","stop_sequence":null,"usage":${usage}}`;
}

const MESSAGE_USAGE = `{"input_tokens":1,"output_tokens":3,${USAGE_TAIL},"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"service_tier":"standard"}`;

describe('encoding: a CDN that compresses whatever the client accepts', () => {
  test('compressed JSON message: each of gzip, deflate, br, zstd decodes to the exact message', async () => {
    for (const encoding of ENCODINGS) {
      const res = await raw('/v1/messages', body(), { 'x-sim-encoding': encoding, 'x-sim-output': '3' });
      assert.equal(res.status, 200, encoding);
      assert.equal(res.headers['content-encoding'], encoding);
      assert.equal(res.headers['content-length'], String(res.bytes.length));
      assert.equal(decode(encoding, res.bytes), threeWordMessage(res.n, MESSAGE_USAGE), encoding);
    }
  });

  test('compressed SSE stream: decodes to the exact event sequence, directive in the prompt text', async () => {
    for (const encoding of ENCODINGS) {
      // Directives are prompt text: 'Hi [[sim output=3 encoding=gzip]]' is 33 chars → 9 input tokens.
      const prompt = `Hi [[sim output=3 encoding=${encoding}]]`;
      const input = { gzip: 9, deflate: 9, br: 8, zstd: 9 }[encoding];
      assert.equal(input, Math.ceil(prompt.length / 4));
      const res = await raw('/v1/messages', body({ stream: true, messages: [{ role: 'user', content: prompt }] }));
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'text/event-stream; charset=utf-8');
      assert.equal(res.headers['content-encoding'], encoding);
      const expected = threeWordStream(res.n, [FINAL_DELTA, STOP]).replaceAll('"input_tokens":1,', `"input_tokens":${input},`);
      assert.equal(decode(encoding, res.bytes), expected, encoding);
    }
  });

  test('compressed stream cut mid-way: every event sent before the drop is decodable (flushed per event)', async () => {
    for (const encoding of ENCODINGS) {
      // output=6 → two text deltas; the socket is destroyed after the first.
      const res = await raw('/v1/messages', body({ stream: true }), {
        'x-sim-encoding': encoding,
        'x-sim-output': '6',
        'x-sim-fault': 'drop_after:1',
      });
      assert.equal(res.headers['content-encoding'], encoding);
      assert.throws(() => decode(encoding, res.bytes), /unexpected end of file/, `${encoding}: the stream really was cut`);
      const expected = threeWordStream(res.n, []).split('event: content_block_stop')[0];
      assert.equal(decode(encoding, res.bytes, true), expected, encoding);
    }
  });

  test('compressed error body and count_tokens body', async () => {
    const error = await raw('/v1/messages', body(), { 'x-sim-encoding': 'gzip', 'x-sim-status': '529' });
    assert.equal(error.status, 529);
    assert.equal(error.headers['content-encoding'], 'gzip');
    assert.equal(
      decode('gzip', error.bytes),
      `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_sim_${error.n}"}`,
    );
    const count = await raw('/v1/messages/count_tokens', { model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }, { 'x-sim-encoding': 'zstd' });
    assert.equal(count.status, 200);
    assert.equal(count.headers['content-encoding'], 'zstd');
    assert.equal(decode('zstd', count.bytes), '{"input_tokens":1}');
  });
});

describe('sse: upstream stream anomalies', () => {
  const stream = (sse: string): Promise<RawResponse> => raw('/v1/messages', body({ stream: true }), { 'x-sim-sse': sse, 'x-sim-output': '3' });

  test('sse=no_message_stop: the stream ends after the final message_delta', async () => {
    const res = await stream('no_message_stop');
    assert.equal(res.bytes.toString(), threeWordStream(res.n, [FINAL_DELTA]));
  });

  test('sse=duplicate_message_start: the same message_start again right after the first block starts', async () => {
    const res = await stream('duplicate_message_start');
    const start = `{"type":"message_start","message":{"id":"msg_sim_${res.n}","type":"message","role":"assistant","model":"${MODEL}","content":[],"stop_reason":null,"stop_sequence":null,"usage":${START_USAGE}}}`;
    const expected = [
      start,
      '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
      start,
      '{"type":"ping"}',
      '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Simulated reply to:"}}',
      '{"type":"content_block_stop","index":0}',
      FINAL_DELTA,
      STOP,
    ];
    assert.equal(res.bytes.toString(), expected.map(frame).join(''));
  });

  test('sse=delta_after_stop: one more message_delta after message_stop, with output doubled', async () => {
    const res = await stream('delta_after_stop');
    const late = FINAL_DELTA.replace('"output_tokens":3', '"output_tokens":6');
    assert.equal(res.bytes.toString(), threeWordStream(res.n, [FINAL_DELTA, STOP, late]));
  });

  test('sse=delta_lower: the final usage reports input and cache reads as 0, below message_start', async () => {
    const res = await raw('/v1/messages', body({ stream: true }), { 'x-sim-sse': 'delta_lower', 'x-sim-output': '3', 'x-sim-cache-read': '40' });
    const expected = threeWordStream(res.n, [
      `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3,"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}`,
      STOP,
    ]).replace('"cache_read_input_tokens":0,"cache_creation"', '"cache_read_input_tokens":40,"cache_creation"');
    assert.equal(res.bytes.toString(), expected);
  });

  test('sse on a non-streaming request is a 400: the anomaly could not happen', async () => {
    const res = await raw('/v1/messages', body(), { 'x-sim-sse': 'no_message_stop' });
    assert.equal(res.status, 400);
    assert.equal(
      res.bytes.toString(),
      `{"type":"error","error":{"type":"invalid_request_error","message":"simulator directive sse=no_message_stop applies to streaming requests only"},"request_id":"req_sim_${res.n}"}`,
    );
  });
});

describe('bad_usage and body: corrupt 2xx bodies', () => {
  const LITERALS = { negative: '-5', string: '"12"', nan: 'NaN', huge: '1e20', null: 'null' } as const;

  test('bad_usage=<kind> corrupts output_tokens in the JSON message, written literally', async () => {
    for (const [kind, literal] of Object.entries(LITERALS)) {
      const res = await raw('/v1/messages', body(), { 'x-sim-bad-usage': kind, 'x-sim-output': '3' });
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
      assert.equal(res.bytes.toString(), threeWordMessage(res.n, MESSAGE_USAGE.replace('"output_tokens":3', `"output_tokens":${literal}`)), kind);
    }
  });

  test('bad_usage=<kind> corrupts output_tokens in the final message_delta only', async () => {
    for (const [kind, literal] of Object.entries(LITERALS)) {
      const res = await raw('/v1/messages', body({ stream: true }), { 'x-sim-bad-usage': kind, 'x-sim-output': '3' });
      const expected = threeWordStream(res.n, [FINAL_DELTA.replace('"output_tokens":3', `"output_tokens":${literal}`), STOP]);
      assert.equal(res.bytes.toString(), expected, kind);
    }
  });

  test('body=no_usage: a 2xx message without a usage field', async () => {
    const res = await raw('/v1/messages', body(), { 'x-sim-body': 'no_usage', 'x-sim-output': '3' });
    assert.equal(res.status, 200);
    assert.equal(
      res.bytes.toString(),
      `{"id":"msg_sim_${res.n}","type":"message","role":"assistant","model":"${MODEL}","content":[{"type":"text","text":"Simulated reply to:"}],"stop_reason":"end_turn","stop_sequence":null}`,
    );
  });

  test('body=not_json: a 2xx labelled application/json whose body is not JSON', async () => {
    const res = await raw('/v1/messages', body(), { 'x-sim-body': 'not_json' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(res.bytes.toString(), 'not json');
  });

  test('body on a streaming request is a 400', async () => {
    const res = await raw('/v1/messages', body({ stream: true }), { 'x-sim-body': 'no_usage' });
    assert.equal(res.status, 400);
  });
});

describe('error responses that carry upstream-account state', () => {
  test('retry_after with status=429: retry-after, x-should-retry and the rejected rate-limit headers', async () => {
    const res = await raw('/v1/messages', body(), { 'x-sim-status': '429', 'x-sim-retry-after': '7' });
    assert.equal(res.status, 429);
    assert.equal(res.headers['retry-after'], '7');
    assert.equal(res.headers['x-should-retry'], 'true');
    assert.equal(res.headers['anthropic-ratelimit-requests-limit'], '50');
    assert.equal(res.headers['anthropic-ratelimit-requests-remaining'], '0');
    assert.match(String(res.headers['anthropic-ratelimit-requests-reset']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(res.headers['anthropic-ratelimit-unified-status'], 'rejected');
    assert.equal(
      res.bytes.toString(),
      `{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"},"request_id":"req_sim_${res.n}"}`,
    );
  });

  test('echo_key with status=401: the error message echoes the credential received', async () => {
    const res = await raw('/v1/messages', body({ messages: [{ role: 'user', content: 'Hi [[sim status=401 echo_key=1]]' }] }));
    assert.equal(res.status, 401);
    assert.equal(
      res.bytes.toString(),
      `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key: sk-upstream-1"},"request_id":"req_sim_${res.n}"}`,
    );
    const bearer = await raw('/v1/messages', body(), { 'x-api-key': '', authorization: 'Bearer sk-bearer-2', 'x-sim-status': '401', 'x-sim-echo-key': '1' });
    assert.match(bearer.bytes.toString(), /"message":"invalid x-api-key: sk-bearer-2"/);
  });

  test('retry_after or echo_key without an error status is a 400', async () => {
    const cases: Record<string, string>[] = [{ 'x-sim-retry-after': '3' }, { 'x-sim-echo-key': '1' }];
    for (const headers of cases) {
      const res = await raw('/v1/messages', body(), headers);
      assert.equal(res.status, 400, JSON.stringify(headers));
    }
  });
});

describe('latency_ms: waiting for upstream headers', () => {
  async function recordedCount(): Promise<number> {
    const res = await fetch(`${baseURL}/_sim/requests`);
    return ((await res.json()) as RecordedRequest[]).length;
  }

  test('a request held by latency_ms gets no headers until the client leaves, JSON and stream alike; the simulator keeps serving', async () => {
    for (const stream of [false, true]) {
      await fetch(`${baseURL}/_sim/requests`, { method: 'DELETE' });
      let headersArrived = false;
      const req = http.request(`${baseURL}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': 'k', 'x-sim-latency-ms': '600000' },
      });
      req.on('response', () => {
        headersArrived = true;
      });
      const closed = new Promise((resolve) => req.on('close', resolve));
      req.on('error', () => undefined);
      req.end(JSON.stringify(body({ stream })));
      while ((await recordedCount()) === 0) await new Promise((r) => setImmediate(r));
      // Received and recorded, yet with 10 minutes of latency nothing can have been answered.
      assert.equal(headersArrived, false);
      req.destroy();
      await closed;
      const next = await raw('/v1/messages', body({ stream }), { 'x-sim-output': '3' });
      assert.equal(next.status, 200);
    }
  });

  test('a small latency_ms delays but does not change the reply', async () => {
    const res = await raw('/v1/messages', body({ stream: true }), { 'x-sim-latency-ms': '5', 'x-sim-output': '3' });
    assert.equal(res.bytes.toString(), threeWordStream(res.n, [FINAL_DELTA, STOP]));
    const json = await raw('/v1/messages', body(), { 'x-sim-latency-ms': '5', 'x-sim-output': '3' });
    assert.equal(json.bytes.toString(), threeWordMessage(json.n, MESSAGE_USAGE));
  });
});
