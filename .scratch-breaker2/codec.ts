import kafkajs, { CompressionTypes } from 'kafkajs';
import { registerKafkaCodecs } from '@tollgate/events';
import { gzipSync, zstdCompressSync, constants } from 'node:zlib';
import { randomBytes, createHash } from 'node:crypto';
registerKafkaCodecs();
const C = (kafkajs as any).CompressionCodecs;
const gz = C[CompressionTypes.GZIP](), zs = C[CompressionTypes.ZSTD]();
const h = (b: Buffer) => createHash('sha256').update(b).digest('hex').slice(0, 16);
// 4 MiB fallback: exact boundary and above, both codecs
for (const n of [4 << 20, (4 << 20) + 1, 64 << 20]) {
  const raw = Buffer.alloc(n, 'a'); raw.write('xyz', n - 3);
  for (const [name, c, comp] of [['gzip', gz, gzipSync], ['zstd', zs, (b: Buffer) => zstdCompressSync(b)]] as const) {
    const z = comp(raw);
    const out = await c.decompress(z);
    console.log(name, n, 'in', z.length, 'ok', out.length === n && h(out) === h(raw));
  }
}
// concatenated gzip members and zlib framing
const a = Buffer.from('hello '), b = Buffer.from('world');
console.log('multi-member', (await gz.decompress(Buffer.concat([gzipSync(a), gzipSync(b)]))).toString());
// corrupt data errors propagate (not swallowed)
try { await gz.decompress(randomBytes(100)); console.log('corrupt: no error!'); } catch (e: any) { console.log('corrupt gzip err', e.code); }
try { await zs.decompress(randomBytes(100)); console.log('corrupt: no error!'); } catch (e: any) { console.log('corrupt zstd err', e.code); }
// truncated stream with big output
const big = gzipSync(Buffer.alloc(8 << 20, 'b'));
try { const o = await gz.decompress(big.subarray(0, big.length - 10)); console.log('truncated gzip gave', o.length); } catch (e: any) { console.log('truncated gzip err', e.code); }
// concurrency: 2000 calls at once, all complete, order of results, loop stall
const inputs = Array.from({ length: 2000 }, (_, i) => gzipSync(Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(20000) }))));
let maxGap = 0, last = performance.now(); let stop = false;
const tick = () => { const n = performance.now(); maxGap = Math.max(maxGap, n - last); last = n; if (!stop) setImmediate(tick); };
setImmediate(tick);
const t0 = performance.now();
const outs = await Promise.all(inputs.map((x) => gz.decompress(x)));
stop = true;
console.log('2000 concurrent', outs.every((o, i) => JSON.parse(o.toString()).i === i), 'ms', (performance.now() - t0).toFixed(0), 'maxGap', maxGap.toFixed(1));
// completion order
const order: number[] = [];
await Promise.all(inputs.slice(0, 300).map((x, i) => gz.decompress(x).then(() => order.push(i))));
let inv = 0; for (let i = 1; i < order.length; i++) if (order[i]! < order[i - 1]!) inv++;
console.log('completion inversions', inv);
// interleaved compress + decompress
const enc = inputs.slice(0, 500).map((x, i) => ({ buffer: Buffer.from(JSON.stringify({ i, pad: 'y'.repeat(5000) })) }));
const both = await Promise.all([...enc.map((e) => gz.compress(e)), ...inputs.slice(0, 500).map((x) => gz.decompress(x))]);
console.log('mixed ok', both.length);
