// What the gateway's edge costs per request body, before anything is held or forwarded: the
// body's JSON through JSON.parse alone, through parseJsonBody (depth, UTF-8, surrogate escapes,
// numbers beyond a float, repeated keys), and then through validateMessagesRequest (the fields
// the gateway reads, keys differing from an API field only in case). In one process, the three
// taking turns. See bench/README.md "The edge's body checks".
import { validateMessagesRequest } from '@tollgate/anthropic';
import { parseJsonBody } from '@tollgate/http';
import { commandLine, exitUsage, numberValue, runMain } from './cli.ts';

const USAGE = `Usage: node bench/body-parse.ts [options]

CPU ns per request body at the gateway's edge, for three bodies: a one-message request
(~100 bytes), a Claude Code-like one (20 tools, 60 turns, ~72 KB) and the same written by a
Python client with ensure_ascii (every non-ASCII character, emoji included, a \\u escape: the
surrogate check walks its strings). Each is run through JSON.parse alone, parseJsonBody, and
parseJsonBody then validateMessagesRequest, taking turns. No services needed. The first two
rounds are warm-up and not counted.

Options:
  --rounds <n>   rounds, 3 to 1000 (default 10)
  --ms <n>       ms each step of a round runs, 10 to 10000 (default 200)
  -h, --help     show this help

Prints one line per body and step on stdout: mean ns per body over the counted rounds, min-max,
and the ratio to JSON.parse alone.

Example:
  node bench/body-parse.ts --rounds 20

Exit status: 0 done, 1 the run failed (a body is refused), 2 bad usage.`;

const { values } = commandLine({ name: 'bench/body-parse', usage: USAGE, options: {
  rounds: { type: 'string' }, ms: { type: 'string' },
} });
let ROUNDS: number, MS: number;
try {
  ROUNDS = numberValue('--rounds', values.rounds, 10, { min: 3, max: 1000, integer: true });
  MS = numberValue('--ms', values.ms, 200, { min: 10, max: 10_000, integer: true });
} catch (err) {
  exitUsage('bench/body-parse', (err as Error).message);
}

/** A Claude Code-like body: a long system prompt, 20 tools with schemas, 60 turns of tool use. */
function agentBody(): Record<string, unknown> {
  const tools = Array.from({ length: 20 }, (_, i) => ({
    name: `tool_${i}`, description: `Does thing ${i}. ${'d'.repeat(380)}`,
    input_schema: { type: 'object', properties: { path: { type: 'string', description: 'x'.repeat(80) }, limit: { type: 'integer' } }, required: ['path'] },
  }));
  const messages = Array.from({ length: 60 }, (_, i) => (i % 2 === 1
    ? { role: 'assistant', content: [{ type: 'text', text: `Working on it ✓ 🚀 ${'y'.repeat(300)}` }, { type: 'tool_use', id: `toolu_${i}`, name: 'tool_1', input: { path: `src/file_${i}.ts` } }] }
    : { role: 'user', content: [{ type: 'tool_result', tool_use_id: `toolu_${i - 1}`, content: `résultat — ${'r'.repeat(1200)}` }] }));
  messages[0] = { role: 'user', content: [{ type: 'text', text: 'Fix the failing test 🙏' }] };
  return { model: 'claude-sonnet-4-5', max_tokens: 8000, system: 's'.repeat(5000), tools, messages, stream: true };
}

/** JSON as Python's json.dumps writes it by default (ensure_ascii): non-ASCII as \\u escapes, astral characters as surrogate pairs. */
function asciiOnly(json: string): string {
  return json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

runMain('bench/body-parse', async () => {
  const agent = JSON.stringify(agentBody());
  const bodies: Array<[string, Buffer]> = [
    ['one message', Buffer.from(JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'Hello there' }] }))],
    ['agent, 72 KB', Buffer.from(agent)],
    ['agent, ensure_ascii', Buffer.from(asciiOnly(agent))],
  ];
  const steps: Array<[string, (b: Buffer) => unknown]> = [
    ['JSON.parse', (b) => JSON.parse(b.toString('utf8'))],
    ['parseJsonBody', (b) => parseJsonBody(b)],
    ['+ validateMessagesRequest', (b) => validateMessagesRequest(parseJsonBody(b))],
  ];
  for (const [, b] of bodies) steps[2]![1](b); // each is accepted, or the run fails here
  const ns = bodies.map(() => steps.map(() => [] as number[]));
  for (let r = 0; r < ROUNDS; r++) {
    for (let bi = 0; bi < bodies.length; bi++) {
      const body = bodies[bi]![1];
      const order = r % 2 === 0 ? steps.map((_, i) => i) : steps.map((_, i) => steps.length - 1 - i);
      for (const si of order) {
        const run = steps[si]![1];
        let n = 0;
        const c0 = process.cpuUsage();
        const until = performance.now() + MS;
        while (performance.now() < until) {
          for (let k = 0; k < 16; k++) run(body);
          n += 16;
        }
        const c = process.cpuUsage(c0);
        if (r >= 2) ns[bi]![si]!.push(((c.user + c.system) * 1000) / n);
      }
    }
    process.stderr.write(`  round ${r + 1}/${ROUNDS}${r < 2 ? ' (warm-up)' : ''}\n`);
  }
  for (let bi = 0; bi < bodies.length; bi++) {
    const [name, body] = bodies[bi]!;
    const base = ns[bi]![0]!.reduce((a, b) => a + b, 0) / ns[bi]![0]!.length;
    for (let si = 0; si < steps.length; si++) {
      const xs = ns[bi]![si]!;
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      console.log(`${`${name} (${body.length} B)`.padEnd(30)} ${steps[si]![0].padEnd(27)} ${mean.toFixed(0).padStart(8)} ns (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})  ×${(mean / base).toFixed(2)}`);
    }
  }
  return 0;
});
