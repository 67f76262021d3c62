/**
 * Runs one `rlhf <command>`: parse flags, print help, call the handler, turn errors into exit
 * codes, and handle Ctrl-C.
 *
 *   0    success (or --help)
 *   1    the command failed: `rlhf <name>: <message> [code]` (stack with RLHF_DEBUG=1)
 *   2    a usage mistake (CliError): `rlhf <name>: <message>` + `run "rlhf <name> --help" for usage`
 *   130  interrupted by Ctrl-C
 *
 * Ctrl-C: a command that can stop cleanly registers `onInterrupt(() => trainer.stop())`. The first
 * Ctrl-C calls those hooks (the trainer finishes its step and writes a checkpoint) and the command
 * then exits 130; a second Ctrl-C exits 130 at once. With no hook registered the first one does.
 */
import { CliError, parseCommand, type CommandSpec } from './args.js';
import { formatHelp } from './help.js';
import type { OutStream } from './progress.js';

export interface CommandIO {
  stdout?: OutStream;
  stderr?: OutStream;
  /** resolves command-line paths; default process.cwd() */
  cwd?: string;
  /** how an immediate exit (second Ctrl-C) happens; default process.exit */
  exit?: (code: number) => void;
}

export interface CommandContext {
  stdout: OutStream;
  stderr: OutStream;
}

export type CommandHandler = (options: Record<string, unknown>, ctx: CommandContext) => Promise<number | void>;

export const EXIT_INTERRUPTED = 130;

const interruptHooks = new Set<() => void>();
let interruptCount = 0;

/**
 * Registers `fn` to run on the first Ctrl-C while a command runs (ask a trainer to stop and
 * checkpoint). Returns a function that unregisters it.
 */
export function onInterrupt(fn: () => void): () => void {
  interruptHooks.add(fn);
  return () => void interruptHooks.delete(fn);
}

/** Whether Ctrl-C was pressed during the current command. */
export function interrupted(): boolean {
  return interruptCount > 0;
}

export async function runCommand(
  spec: CommandSpec,
  argv: string[],
  handler: CommandHandler,
  io: CommandIO = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const exit = io.exit ?? ((code: number) => process.exit(code));
  const prefix = `rlhf ${spec.name}:`;

  const onSigint = () => {
    interruptCount++;
    if (interruptCount === 1 && interruptHooks.size) {
      stderr.write(
        `\n${prefix} interrupted: stopping after the current step and saving a checkpoint (Ctrl-C again to quit now)\n`,
      );
      for (const hook of [...interruptHooks]) {
        try {
          hook();
        } catch (err) {
          stderr.write(`${prefix} interrupt hook failed: ${(err as Error)?.message ?? err}\n`);
        }
      }
      return;
    }
    stderr.write(`\n${prefix} interrupted\n`);
    exit(EXIT_INTERRUPTED);
  };

  interruptCount = 0;
  interruptHooks.clear();
  process.on('SIGINT', onSigint);
  try {
    const { options, help } = await parseCommand(spec, argv, { cwd: io.cwd });
    if (help) {
      stdout.write(formatHelp(spec));
      return 0;
    }
    const code = (await handler(options, { stdout, stderr })) ?? 0;
    return code === 0 && interruptCount > 0 ? EXIT_INTERRUPTED : code;
  } catch (err) {
    if (err instanceof CliError) {
      stderr.write(`${prefix} ${err.message}\nrun "rlhf ${spec.name} --help" for usage\n`);
      return err.exitCode;
    }
    const e = err instanceof Error ? (err as Error & { code?: unknown }) : undefined;
    const message = e ? e.message : String(err);
    const code = e && (typeof e.code === 'string' || typeof e.code === 'number') ? ` [${e.code}]` : '';
    stderr.write(`${prefix} ${message}${code}\n`);
    if (process.env.RLHF_DEBUG && e?.stack) stderr.write(`${e.stack}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSigint);
    interruptHooks.clear();
  }
}
