export { buildControl, registerControl } from './app.ts';
export type { ControlDeps } from './deps.ts';
export { planView, requirePlan, registerPlanRoutes } from './plans.ts';
