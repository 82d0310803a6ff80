export { startTollgate, DEFAULT_CATALOG } from './runtime.ts';
export type { Tollgate, StartOptions } from './runtime.ts';
