import { loadConfig } from '@tollgate/config';
for (const v of [undefined, ' ZSTD ', 'Gzip', '', '  ', 'NONE\n', 'zstd\u00a0', 'lz4', 'LZ4']) {
  try { const c: any = loadConfig({ KAFKA_COMPRESSION: v, KAFKA_BROKERS: '127.0.0.1:9092', REDIS_URL: 'redis://127.0.0.1:6379', ADMIN_TOKEN: 'a'.repeat(40), KEY_HASH_SECRET: 'x'.repeat(40) } as any); console.log(JSON.stringify(v), '->', c.kafka?.compression); }
  catch (e: any) { console.log(JSON.stringify(v), 'ERR', e.message.split('\n').slice(0, 2).join(' ')); }
}
for (const v of ['TRUE', ' 1 ', 'yes']) { try { const c: any = loadConfig({ REDIS_AUTO_PIPELINING: v } as any); console.log('pipelining', JSON.stringify(v), Object.entries(c).filter(([k]) => /pipelin/i.test(k))); } catch (e: any) { console.log('pipelining', v, 'ERR', e.message.split('\n')[0]); } }
