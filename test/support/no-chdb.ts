// `node --import ./test/support/no-chdb.ts …`: the process sees a tree without chDB's native
// library, as a linux/arm64 image does (chdb publishes no linux-arm64 binding we can install):
// resolving `chdb` or `@chdb/*` fails the way a missing optional package does.
import { registerHooks } from 'node:module';

registerHooks({
  resolve(specifier, context, nextResolve) {
    if (specifier === 'chdb' || specifier.startsWith('chdb/') || specifier.startsWith('@chdb/')) {
      const err = new Error(`Cannot find module '${specifier}' (no chDB binding for this platform)`) as Error & { code: string };
      err.code = 'MODULE_NOT_FOUND';
      throw err;
    }
    return nextResolve(specifier, context);
  },
});
