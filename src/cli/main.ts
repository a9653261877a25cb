// The `nuri` command line: one subcommand per job, each in its own file.

import { Command } from 'commander';
import { registerAttention } from './attention.ts';
import { registerEdit } from './edit.ts';
import { registerGenerate } from './generate.ts';
import { checkArgumentLength } from './inputs.ts';
import { INTERRUPTED_EXIT_CODE, interruptedMessage } from './interrupt.ts';
import { registerServe } from './serve.ts';
import { registerTrain } from './train.ts';
import { registerPersonalisation } from './train-personalise.ts';
import { registerWorker } from './worker.ts';

const program = new Command('nuri')
  .description('Text-to-image latent diffusion: generate, edit, train and personalise.')
  .configureOutput({ outputError: (text, write) => write(text.trimEnd().split('\n')[0] + '\n') });

registerGenerate(program);
registerEdit(program);
registerAttention(program);
registerPersonalisation(registerTrain(program));
registerServe(program);
registerWorker(program);

try {
  checkArgumentLength();
  await program.parseAsync(process.argv);
} catch (error) {
  const interrupted = interruptedMessage(error);
  console.error(interrupted ?? `nuri: ${(error as Error).message}`);
  if (process.env.NURI_DEBUG) console.error(error);
  process.exit(interrupted ? INTERRUPTED_EXIT_CODE : 1);
}
