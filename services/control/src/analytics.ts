import type { FastifyInstance } from 'fastify';
import type { ReportDeps } from './reports.ts';

/** GET /admin/v1/usage and /admin/v1/usage/events (issue 9, outcome 2). */
export function registerAnalytics(_app: FastifyInstance, _deps: ReportDeps): void {
  // filled in by the analytics work
}
