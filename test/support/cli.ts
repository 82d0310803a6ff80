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

/**
 * Runs `argv` (a program and its arguments) with `env` added to this process's environment
 * (through childEnv: a mode variable such as REDIS_CLUSTER_NODES is not passed on), stdin
 * closed, or `input` written to it and then ended; resolves with the exit code and both outputs
 * when it exits, rejects when it cannot be started. `cwd` defaults to this process's; killed
 * (SIGTERM) after `timeoutMs` when given.
 */
export function runCommand(argv: readonly string[], env: Record<string, string> = {}, opts: { cwd?: string; timeoutMs?: number; input?: string } = {}): Promise<CliResult> {
  return new Promise((done, fail) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: childEnv(env), stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      ...(opts.cwd ? { cwd: opts.cwd } : {}), ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
    });
    // A command that exits before reading its input closes the pipe: not this test's failure.
    if (opts.input !== undefined) child.stdin!.on('error', () => {}).end(opts.input);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
    child.once('error', fail);
    child.once('close', (code) => done({ code, stdout, stderr }));
  });
}

/** `tollgate <args…>` with `env` added to this process's environment (and `input` on its stdin); resolves when it exits. */
export function runTollgate(args: readonly string[], env: Record<string, string> = {}, input?: string): Promise<CliResult> {
  return runCommand([process.execPath, TOLLGATE_MAIN, ...args], env, input === undefined ? {} : { input });
}
