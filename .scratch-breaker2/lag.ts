import kafkajs, { CompressionTypes } from 'kafkajs';
import { registerKafkaCodecs } from '@tollgate/events';
import { gzipSync } from 'node:zlib';
registerKafkaCodecs();
const gz = (kafkajs as any).CompressionCodecs[CompressionTypes.GZIP]();
const inputs = Array.from({ length: 3000 }, (_, i) => gzipSync(Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(20000) }))));
let ticks = 0, maxGap = 0, last = performance.now(), stop = false;
const tick = () => { const n = performance.now(); maxGap = Math.max(maxGap, n - last); last = n; ticks++; if (!stop) setTimeout(tick, 0); };
setTimeout(tick, 0);
await new Promise((r) => setTimeout(r, 5));
last = performance.now();
const t0 = performance.now();
// nested chains like kafkajs: sequential per partition, partitions in parallel
const parts = 12;
await Promise.all(Array.from({ length: parts }, async (_, p) => { for (let i = p; i < inputs.length; i += parts) await gz.decompress(inputs[i]); }));
stop = true;
console.log('ms', (performance.now() - t0).toFixed(0), 'ticks', ticks, 'maxGap timers', maxGap.toFixed(1));
