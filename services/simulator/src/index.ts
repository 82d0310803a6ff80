export { buildSimulator } from './app.ts';
export type { SimulatorOptions } from './app.ts';
export type { Directives, Fault } from './directives.ts';
export type { RecordedRequest } from './recorder.ts';
export { MODELS } from './models.ts';
export type { ModelInfo } from './models.ts';
export { IMAGE_TOKENS } from './tokens.ts';
export type { Message, OutputBlock, StopReason, StreamEvent, Usage } from './wire.ts';
