// The billing shapes are defined once, where they are produced (libs/warehouse/src/billing.ts).
export type { Invoice, InvoiceLine, Statement } from '@tollgate/warehouse';
