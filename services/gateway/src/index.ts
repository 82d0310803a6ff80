export { buildGateway, registerGateway } from './app.ts';
export type { GatewayDeps, UpstreamOptions } from './deps.ts';
export { upstreamHeaders } from './upstream.ts';
