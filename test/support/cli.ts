// Runs the `tollgate` program as an operator would (a child process under this Node), for
// tests of its commands: exit code, stdout (the report) and stderr (progress, diagnostics).
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { childEnv } from './services.ts';

/** services/tollgate/src/main.ts, the program's entry point. */
export const TOLLGATE_MAIN = resolve(import.meta.dirname, '../../services/tollgate/src/main.ts');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `tollgate <args…>` with `env` added to this process's environment; resolves when it exits. */
export function runTollgate(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [TOLLGATE_MAIN, ...args], {
      env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
    child.once('error', fail);
    child.once('close', (code) => done({ code, stdout, stderr }));
  });
}
