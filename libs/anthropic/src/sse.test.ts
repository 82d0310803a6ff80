import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseFramer, StreamMeter, createStreamMeter, isErrorFrame } from './sse.ts';

function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

// A full stream as Anthropic sends it: thinking (with signature), text with non-ASCII, then a
// tool_use with streamed JSON input, and a message_delta carrying cumulative usage.
const MESSAGE_START = {
  type: 'message_start',
  message: {
    id: 'msg_01XFDUDYJgAACzvnptvVoYEL',
    type: 'message',
    role: 'assistant',
    model: 'claude-sonnet-4-5-20250929',
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: {
      input_tokens: 472,
      cache_creation_input_tokens: 2048,
      cache_read_input_tokens: 10240,
      cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 2048 },
      output_tokens: 3,
      service_tier: 'standard',
    },
  },
};

const BODY = [
  frame('message_start', MESSAGE_START),
  frame('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } }),
  frame('ping', { type: 'ping' }),
  frame('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'The user wants the weather in Zürich — 天気. ' } }),
  frame('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'I should call get_weather. 🌦️' } }),
  frame('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds' } }),
  frame('content_block_stop', { type: 'content_block_stop', index: 0 }),
  frame('content_block_start', { type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } }),
  frame('content_block_delta', { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: "I'll check the weather in Zürich for you — один момент." } }),
  frame('content_block_stop', { type: 'content_block_stop', index: 1 }),
  frame('content_block_start', { type: 'content_block_start', index: 2, content_block: { type: 'tool_use', id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6', name: 'get_weather', input: {} } }),
  frame('content_block_delta', { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '' } }),
  frame('content_block_delta', { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: '{"location": "Zür' } }),
  frame('content_block_delta', { type: 'content_block_delta', index: 2, delta: { type: 'input_json_delta', partial_json: 'ich, CH", "unit": "celsius"}' } }),
  frame('content_block_stop', { type: 'content_block_stop', index: 2 }),
  frame('message_delta', {
    type: 'message_delta',
    delta: { stop_reason: 'tool_use', stop_sequence: null },
    // cumulative: input/cache fields repeated, output is the total so far
    usage: { input_tokens: 472, cache_creation_input_tokens: 2048, cache_read_input_tokens: 10240, output_tokens: 189 },
  }),
  frame('message_stop', { type: 'message_stop' }),
].join('');

const EXPECTED_FULL = {
  messageId: 'msg_01XFDUDYJgAACzvnptvVoYEL',
  model: 'claude-sonnet-4-5-20250929',
  stopReason: 'tool_use',
  sawMessageStart: true,
  completed: true,
  error: null,
  malformed: 0,
  usage: { input: 472, output: 189, cacheRead: 10240, cacheWrite5m: 0, cacheWrite1h: 2048 },
  answered: true,
  anomalies: [] as string[],
};

// Content, then an overloaded error after HTTP 200; no message_delta, no message_stop.
const ERROR_BODY = [
  frame('message_start', MESSAGE_START),
  frame('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
  frame('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Partial answer…' } }),
  // non-ASCII message: byte splits inside a character must still decode exactly
  frame('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded — 过载 🔥' } }),
].join('');

// Cut off in the middle of the message_delta frame.
const CUT_BODY = BODY.slice(0, BODY.indexOf('event: message_delta') + 60);

type Snapshot = {
  messageId: string | null;
  model: string | null;
  stopReason: string | null;
  sawMessageStart: boolean;
  completed: boolean;
  error: { type: string; message: string } | null;
  malformed: number;
  usage: ReturnType<StreamMeter['usage']>;
  answered: boolean;
  anomalies: string[];
};

function snapshot(m: StreamMeter): Snapshot {
  return {
    messageId: m.messageId,
    model: m.model,
    stopReason: m.stopReason,
    sawMessageStart: m.sawMessageStart,
    completed: m.completed,
    error: m.error,
    malformed: m.malformed,
    usage: m.usage(),
    answered: m.answered,
    anomalies: m.anomalies,
  };
}

// Deterministic PRNG so a failure reproduces.
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function meterBytes(chunks: Uint8Array[]): Snapshot {
  const m = new StreamMeter();
  for (const c of chunks) m.push(c);
  m.end();
  return snapshot(m);
}

function splits(bytes: Uint8Array, rand: () => number, maxLen: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < bytes.length) {
    const n = 1 + Math.floor(rand() * maxLen);
    out.push(bytes.subarray(i, i + n));
    i += n;
  }
  return out;
}

function checkAllSplits(body: string, expected: Snapshot): void {
  const bytes = new TextEncoder().encode(body);
  assert.deepEqual(meterBytes([bytes]), expected, 'whole');
  const oneByOne: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i++) oneByOne.push(bytes.subarray(i, i + 1));
  assert.deepEqual(meterBytes(oneByOne), expected, 'byte by byte');
  const rand = mulberry32(0x70116a7e);
  for (let round = 0; round < 200; round++) {
    assert.deepEqual(meterBytes(splits(bytes, rand, round % 2 === 0 ? 16 : 700)), expected, `random split ${round}`);
  }
  // string chunks (the gateway may hand over decoded text) split at random code units
  for (let round = 0; round < 50; round++) {
    const m = new StreamMeter();
    let i = 0;
    while (i < body.length) {
      const n = 1 + Math.floor(rand() * 50);
      m.push(body.slice(i, i + n));
      i += n;
    }
    m.end();
    assert.deepEqual(snapshot(m), expected, `string split ${round}`);
  }
}

test('full stream: thinking + text + tool_use, cumulative usage with cache fields', () => {
  checkAllSplits(BODY, EXPECTED_FULL);
});

test('CRLF line endings give the same result', () => {
  checkAllSplits(BODY.replaceAll('\n', '\r\n'), EXPECTED_FULL);
});

test('error event after content (HTTP 200 already sent)', () => {
  checkAllSplits(ERROR_BODY, {
    ...EXPECTED_FULL,
    stopReason: null,
    completed: false,
    answered: false,
    error: { type: 'overloaded_error', message: 'Overloaded — 过载 🔥' },
    // message_start's output is a placeholder, not a count: no delta gave one (0)
    usage: { input: 472, output: 0, cacheRead: 10240, cacheWrite5m: 0, cacheWrite1h: 2048 },
  });
});

test('stream cut off mid-event: the partial event is not counted', () => {
  checkAllSplits(CUT_BODY, {
    ...EXPECTED_FULL,
    stopReason: null,
    completed: false,
    answered: false,
    // cut before the final message_delta: message_start's placeholder output is no count (0)
    usage: { input: 472, output: 0, cacheRead: 10240, cacheWrite5m: 0, cacheWrite1h: 2048 },
  });
});

test('message_delta usage is cumulative: later fields replace, absent fields keep', () => {
  const m = createStreamMeter();
  m.push(frame('message_start', {
    type: 'message_start',
    message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'x', content: [], stop_reason: null, usage: { input_tokens: 100, output_tokens: 1, cache_read_input_tokens: 50 } },
  }));
  m.push(frame('message_delta', { type: 'message_delta', delta: {}, usage: { output_tokens: 40 } }));
  m.push(frame('message_delta', { type: 'message_delta', delta: { stop_reason: 'max_tokens' }, usage: { output_tokens: 90, input_tokens: null, cache_creation_input_tokens: 7 } }));
  assert.deepEqual(m.usage(), { input: 100, output: 90, cacheRead: 50, cacheWrite5m: 7, cacheWrite1h: 0 });
  assert.equal(m.stopReason, 'max_tokens');
  assert.equal(m.completed, false);
  assert.deepEqual(m.wireUsage(), { input_tokens: 100, output_tokens: 90, cache_read_input_tokens: 50, cache_creation_input_tokens: 7 });
});

test('malformed data lines are ignored, never thrown', () => {
  const m = new StreamMeter();
  const body =
    frame('message_start', MESSAGE_START) +
    'event: content_block_delta\ndata: {"type":"content_block_delta", broken\n\n' +
    'event: message_delta\ndata: [1,2,3]\n\n' +
    'data: null\n\n' +
    ': a comment line\n\n' +
    'garbage line without colon\n\n' +
    'event: ping\ndata:\n\n' +
    frame('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 12 } }) +
    frame('message_stop', { type: 'message_stop' });
  assert.doesNotThrow(() => {
    for (const ch of body) m.push(ch);
    m.end();
  });
  assert.equal(m.malformed, 4);
  assert.equal(m.completed, true);
  assert.equal(m.stopReason, 'end_turn');
  assert.equal(m.usage().output, 12);
});

test('an error event with a malformed error object still counts as an error', () => {
  const m = new StreamMeter();
  m.push('event: error\ndata: {"type":"error"}\n\n');
  assert.deepEqual(m.error, { type: 'api_error', message: 'Unknown streaming error' });
  // the first error wins
  m.push(frame('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }));
  assert.equal(m.error?.type, 'api_error');
});

test('push never changes the chunk it is given', () => {
  const bytes = new TextEncoder().encode(BODY);
  const copy = bytes.slice();
  const m = new StreamMeter();
  m.push(bytes.subarray(0, 1000));
  m.push(bytes.subarray(1000));
  assert.deepEqual(bytes, copy);
});

test('an event over maxEventBytes stops parsing without throwing', () => {
  const m = new StreamMeter({ maxEventBytes: 1024 });
  m.push(frame('message_start', MESSAGE_START));
  assert.doesNotThrow(() => {
    m.push('event: content_block_delta\ndata: ' + 'x'.repeat(4096));
    m.push('more\n\n');
    m.push(frame('message_stop', { type: 'message_stop' }));
    m.end();
  });
  assert.equal(m.overflowed, true);
  assert.equal(m.messageId, 'msg_01XFDUDYJgAACzvnptvVoYEL');
  assert.equal(m.completed, false);
});

test('no message_start: nothing seen, zero usage', () => {
  const m = new StreamMeter();
  m.push('event: ping\ndata: {"type": "ping"}\n\n');
  m.end();
  assert.equal(m.sawMessageStart, false);
  assert.equal(m.messageId, null);
  assert.deepEqual(m.usage(), { input: 0, output: 0, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 });
});

// Upstream anomalies (issue 6): each kind through the same split-independence check.
const start = (usage: Record<string, unknown>, id = 'msg_1') => frame('message_start', {
  type: 'message_start',
  message: { id, type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [], stop_reason: null, usage },
});
const delta = (usage: unknown, stop: string | null = 'end_turn') =>
  frame('message_delta', { type: 'message_delta', delta: { stop_reason: stop, stop_sequence: null }, usage });
const STOP = frame('message_stop', { type: 'message_stop' });
const TEXT = frame('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'hi — 你好' } });
const base = {
  messageId: 'msg_1', model: 'claude-sonnet-4-5', stopReason: 'end_turn', sawMessageStart: true, completed: true,
  error: null, malformed: 0, answered: true, anomalies: [] as string[],
};

test('no message_stop after a final message_delta with stop_reason (item 5): answered, charged in full, flagged', () => {
  checkAllSplits(start({ input_tokens: 500, output_tokens: 1 }) + TEXT + delta({ output_tokens: 40 }), {
    ...base, completed: false, anomalies: ['missing_message_stop'],
    usage: { input: 500, output: 40, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 },
  });
});

test('message_delta lower than message_start (item 6): counters only grow, per class', () => {
  checkAllSplits(start({ input_tokens: 1200, cache_read_input_tokens: 3000, output_tokens: 1 }) + TEXT + delta({ input_tokens: 0, output_tokens: 50 }) + STOP, {
    ...base, anomalies: ['count_decreased'],
    usage: { input: 1200, output: 50, cacheRead: 3000, cacheWrite5m: 0, cacheWrite1h: 0 },
  });
});

test('a second message_start merges by max, keeps the first id, and is flagged', () => {
  checkAllSplits(start({ input_tokens: 300, output_tokens: 1 }) + start({ input_tokens: 200, output_tokens: 1, cache_read_input_tokens: 50 }, 'msg_2') + TEXT + delta({ output_tokens: 20 }) + STOP, {
    ...base, anomalies: ['count_decreased', 'duplicate_message_start'],
    usage: { input: 300, output: 20, cacheRead: 50, cacheWrite5m: 0, cacheWrite1h: 0 },
  });
});

test('events after message_stop are ignored and flagged: a later delta cannot raise the cost', () => {
  checkAllSplits(start({ input_tokens: 300, output_tokens: 1 }) + TEXT + delta({ output_tokens: 20 }) + STOP + delta({ output_tokens: 9000 }, 'max_tokens') + frame('error', { type: 'error', error: { type: 'api_error', message: 'late' } }), {
    ...base, anomalies: ['event_after_stop'],
    usage: { input: 300, output: 20, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 },
  });
});

test('bad final output_tokens (negative, string, 1e20, null): no count was given, 0 as the JSON answer reads it (message_start\'s 1 is a placeholder), invalid_count', () => {
  for (const bad of ['-5', '"12"', '1e20', 'null']) {
    checkAllSplits(start({ input_tokens: 300, output_tokens: 1 }) + TEXT + frame('message_delta', `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":${bad}}}`) + STOP, {
      ...base, anomalies: ['invalid_count'],
      usage: { input: 300, output: 0, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 },
    });
  }
});

test('a NaN count makes the event unparsable: malformed_event, the answer framing from the rest', () => {
  checkAllSplits(start({ input_tokens: 300, output_tokens: 1 }) + TEXT + frame('message_delta', '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":NaN}}') + STOP, {
    // the final report could not be read: no output count was given (0, invalid_count), never the placeholder
    ...base, stopReason: null, malformed: 1, anomalies: ['invalid_count', 'malformed_event'],
    usage: { input: 300, output: 0, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 },
  });
});

test('message_start without usage: no counts seen (the gateway records it unmetered)', () => {
  const m = new StreamMeter();
  m.push(frame('message_start', { type: 'message_start', message: { id: 'm', type: 'message' } }) + STOP);
  m.end();
  assert.equal(m.hasUsage, false);
  assert.equal(m.answered, true);
  assert.deepEqual(m.anomalies, []);
});

test('SSE framing at event granularity: any line ending (LF, CRLF, CR, mixed), any chunking, bytes unchanged, partial tail carried', () => {
  const stream = 'event: a\ndata: 1\n\n' + 'event: b\r\ndata: 2\r\n\r\n' + 'event: c\rdata: 3\r\r' + ': comment\ndata: x\ndata: y\n\r\n' + 'event: d\ndata: 4';
  const expected = [
    ['event: a\ndata: 1\n\n', 'a', '1'],
    ['event: b\r\ndata: 2\r\n\r\n', 'b', '2'],
    ['event: c\rdata: 3\r\r', 'c', '3'],
    [': comment\ndata: x\ndata: y\n\r\n', '', 'x\ny'],
  ];
  const bytes = Buffer.from(stream);
  // every split into two chunks, and byte by byte
  const chunkings = [...Array.from({ length: bytes.length + 1 }, (_, i) => [bytes.subarray(0, i), bytes.subarray(i)]), [...bytes].map((b) => Buffer.from([b]))];
  for (const chunks of chunkings) {
    const f = new SseFramer();
    const frames = chunks.flatMap((c) => f.push(c));
    const got = frames.map((fr) => [fr.raw.toString(), fr.event, fr.data]);
    // A CRLF split between chunks is one line ending: the LF opens the next frame's bytes.
    const joined = frames.map((fr) => fr.raw.toString()).join('');
    assert.equal(joined, stream.slice(0, joined.length));
    assert.equal(joined.length + f.tailBytes, stream.length);
    assert.ok(f.tailBytes === 'event: d\ndata: 4'.length || f.tailBytes === '\nevent: d\ndata: 4'.length);
    assert.deepEqual(got.map((g) => [g[1], g[2]]), expected.map((e) => [e[1], e[2]]));
  }
  const whole = new SseFramer().push(bytes).map((fr) => [fr.raw.toString(), fr.event, fr.data]);
  assert.deepEqual(whole, expected);
});

test('SSE framing: an unfinished event past maxEventBytes overflows instead of growing', () => {
  const f = new SseFramer({ maxEventBytes: 10 });
  assert.deepEqual(f.push(Buffer.from('data: 12345')), []);
  assert.equal(f.overflowed, true);
  assert.deepEqual(f.push(Buffer.from('\n\n')), []);
});

test('an error frame is event: error or data.type error, whatever the other field says', () => {
  const frames = new SseFramer().push(Buffer.from(
    'event: error\ndata: not json\n\n' + 'event: ping\ndata: {"type":"error","error":{}}\n\n' + 'event: message_delta\ndata: {"type":"message_delta","error":1}\n\n',
  ));
  assert.deepEqual(frames.map(isErrorFrame), [true, true, false]);
});

test('error after a complete answer (final message_delta with stop_reason): the answer stands, flagged error_after_answer', () => {
  const m = createStreamMeter();
  m.push(frame('message_start', { type: 'message_start', message: { usage: { input_tokens: 500, output_tokens: 1 } } }));
  m.push(frame('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 40 } }));
  m.push(frame('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }));
  m.end();
  assert.equal(m.error, null);
  assert.equal(m.answered, true);
  assert.deepEqual(m.usage(), { input: 500, output: 40, cacheRead: 0, cacheWrite5m: 0, cacheWrite1h: 0 });
  assert.deepEqual(m.anomalies, ['error_after_answer', 'missing_message_stop']);
});

test('stream pricing facts: serving model (bounded), stop_reason, output seen only once content arrives, server tool units and iterations from the final delta', () => {
  const m = new StreamMeter();
  m.push(start({ input_tokens: 10, output_tokens: 1 }));
  m.push(frame('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }));
  assert.equal(m.outputSeen, false, 'an empty text block is no output yet');
  m.push(TEXT);
  m.push(delta({ output_tokens: 5, server_tool_use: { web_search_requests: 2 }, service_tier: 'batch', iterations: [{ type: 'message', input_tokens: 10, output_tokens: 5 }] }));
  m.push(STOP);
  m.end();
  assert.deepEqual([m.outputSeen, m.stopReason, m.tally.serverToolUse(), m.tally.labels().service_tier, m.tally.iterations()?.length],
    [true, 'end_turn', { web_search_requests: 2 }, 'batch', 1]);

  const refusal = new StreamMeter();
  refusal.push(frame('message_start', { type: 'message_start', message: { id: 'msg_r', model: 'm'.repeat(300), usage: { input_tokens: 10, output_tokens: 0 } } }));
  refusal.push(delta({ output_tokens: 0 }, 'refusal'));
  refusal.push(STOP);
  refusal.end();
  assert.deepEqual([refusal.outputSeen, refusal.stopReason, refusal.model, refusal.anomalies], [false, 'refusal', null, ['invalid_label']]);
});

test('a complete stream whose final message_delta gives no output count: 0 output and invalid_count, never the placeholder (absent usage, usage without output_tokens, message_start alone)', () => {
  const delta = (usage?: Record<string, unknown>) => frame('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, ...(usage ? { usage } : {}) });
  for (const [name, body, anomalies] of [
    ['no usage key', start({ input_tokens: 100, output_tokens: 1 }) + TEXT + delta() + STOP, ['invalid_count']],
    ['usage {}', start({ input_tokens: 100, output_tokens: 1 }) + TEXT + delta({}) + STOP, ['invalid_count']],
    ['a placeholder of 30, delta without usage', start({ input_tokens: 100, output_tokens: 30 }) + TEXT + delta() + STOP, ['invalid_count']],
  ] as const) {
    const m = new StreamMeter();
    m.push(body);
    m.end();
    assert.deepEqual([m.usage().output, m.usage().input, m.anomalies], [0, 100, anomalies], name);
  }
  // the same with an output count: as before
  const ok = new StreamMeter();
  ok.push(start({ input_tokens: 100, output_tokens: 1 }) + TEXT + delta({ output_tokens: 50 }) + STOP);
  ok.end();
  assert.deepEqual([ok.usage().output, ok.anomalies], [50, []]);
});

test('steps only message_start reported (usage.iterations) are placeholders too: their output is 0 unless a later report gives steps; their input stands', () => {
  const it = (output: number) => [{ type: 'message', model: 'claude-sonnet-4-5-20250929', input_tokens: 10, output_tokens: output }];
  const delta = (usage: Record<string, unknown>) => frame('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage });
  const run = (body: string) => {
    const m = new StreamMeter();
    m.push(body);
    m.end();
    return { output: m.usage().output, steps: m.tally.iterations()?.map((s) => [s.usage.input, s.usage.output]), anomalies: m.anomalies };
  };
  // the final delta gives output 5 and no steps: the step's 30 was message_start's, not a count
  assert.deepEqual(run(start({ input_tokens: 10, output_tokens: 30, iterations: it(30) }) + TEXT + delta({ output_tokens: 5 }) + STOP),
    { output: 5, steps: [[10, 0]], anomalies: [] });
  // no usage in the final delta: 0 everywhere, invalid_count
  assert.deepEqual(run(start({ input_tokens: 10, output_tokens: 30, iterations: it(30) }) + TEXT + delta({}) + STOP),
    { output: 0, steps: [[10, 0]], anomalies: ['invalid_count'] });
  // the final delta gives its steps: they count
  assert.deepEqual(run(start({ input_tokens: 10, output_tokens: 1, iterations: it(1) }) + TEXT + delta({ output_tokens: 40, iterations: it(40) }) + STOP),
    { output: 40, steps: [[10, 40]], anomalies: [] });
  // the final delta gives its steps but no top-level output: the steps carry the output (charged
  // from them); the delta still lacks the output_tokens every report carries (invalid_count)
  assert.deepEqual(run(start({ input_tokens: 10, output_tokens: 1 }) + TEXT + delta({ iterations: it(40) }) + STOP),
    { output: 0, steps: [[10, 40]], anomalies: ['invalid_count'] });
  // a message_start repeated after the delta's steps does not replace them
  assert.deepEqual(run(start({ input_tokens: 10, output_tokens: 1, iterations: it(1) }) + delta({ output_tokens: 40, iterations: it(40) })
    + start({ input_tokens: 10, output_tokens: 1, iterations: it(99) }) + STOP).steps, [[10, 40]]);
});
