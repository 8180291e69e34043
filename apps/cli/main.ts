// The `onnx-compress` CLI: one commander program composed from apps/cli/commands/*.ts. Each command module exports
// `register(program)`; add a command by adding one line to `commands` below. Command modules hold only definitions
// (arguments, options, help): each loads its work (../actions/*.ts, the engine, the service stack) with a dynamic
// import when it runs, so `--help` and every command start without loading what the others need.
import { Command, CommanderError } from 'commander';
import * as inspect from './commands/inspect.js';
import * as convert from './commands/convert.js';
import * as compress from './commands/compress.js';
import * as evaluate from './commands/eval.js';
import * as serve from './commands/serve.js';
import * as worker from './commands/worker.js';
import * as start from './commands/start.js';
import * as soup from './commands/soup.js';
import * as keys from './commands/keys.js';

const commands: { register(program: Command): void }[] = [
  inspect, // onnx-compress inspect MODEL [--json]
  convert, // onnx-compress convert MODEL -o OUT [--external-data | --inline]
  compress, // onnx-compress compress MODEL --recipe R.json [--calibration F] [--eval F] -o OUT.onnx [--report F]
  evaluate, // onnx-compress eval DENSE.onnx COMPRESSED.onnx --data F [--task auto|classification|lm] [--json]
  serve, // onnx-compress serve: the HTTP API
  worker, // onnx-compress worker: a compress worker
  start, // onnx-compress start: API + worker in one process (npm start)
  keys, // onnx-compress keys create --tenant NAME [--name N] [--json] | list | revoke
  soup, // onnx-compress soup A.onnx B.onnx … --recipe R.json --eval HELD.npz -o SOUP.onnx [--report REPORT.json]
];

export function buildProgram(): Command {
  const program = new Command('onnx-compress')
    .description('Compress ONNX models: N:M sparsity, SLiM, sparse soups. Runs locally or as a service.')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const c of commands) c.register(program);
  return program;
}

/** Runs the CLI; returns the exit code: 0 ok, 1 failure (one `error:` line on stderr), 2 usage error. */
export async function runCli(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // commander already printed the message
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`error: ${message.split('\n')[0]}\n`);
    if (process.env.ONNX_COMPRESS_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return 1;
  }
}

process.exitCode = await runCli(process.argv);
