export { buildGateway, registerGateway, type GatewayHandle } from './app.ts';
export type { GatewayDeps, UpstreamOptions } from './deps.ts';
export { upstreamHeaders } from './upstream.ts';
export { upstreamSearch, decodersFor, DEFAULT_UPSTREAM_CONNECTIONS } from './upstream.ts';
export { ConcurrencyGates, DEFAULT_KEY_MAX_CONCURRENT } from './limits.ts';
export { HoldRegistry, RESTORE_POLL_MS } from './hold-registry.ts';
export type { HoldRegistryOptions } from './hold-registry.ts';
