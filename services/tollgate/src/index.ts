export { startTollgate, DEFAULT_CATALOG } from './runtime.ts';
export type { Tollgate } from './runtime.ts';
