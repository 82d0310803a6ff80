import type { FastifyInstance } from 'fastify';
import type { ReportDeps } from './reports.ts';

/** Invoices, statements, the billing export and month close (issue 9, outcome 4). */
export function registerBilling(_app: FastifyInstance, _deps: ReportDeps): void {
  // filled in by the billing work
}
