// Every config file of a model is read one way: an empty, truncated or `null` file, a size beyond
// the bounds (which once built modules until V8 ran out of memory), an ε or scale that turns the
// picture into NaN, and a config that disagrees with its weights each give one error that starts
// with the file's path and names the field.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadStableDiffusion } from '../../../src/models/load.ts';
import { copyTinySd, editJson } from '../../model-copy.ts';
import { errorOf } from '../../support/error-of.ts';

describe('config.json files', () => {
  const model = copyTinySd();
  const broken = (file: string, text: string): string => {
    const copy = copyTinySd();
    writeFileSync(join(copy, file), text);
    return copy;
  };

  for (const [what, text, message] of [
    ['empty', '', 'is empty'],
    ['truncated', '{"in_channels": 4, "block_', 'is not valid JSON'],
    ['null', 'null', 'must be a JSON object, got null'],
    ['a list', '[1, 2]', 'must be a JSON object, got a list'],
  ] as const) {
    for (const file of ['unet/config.json', 'vae/config.json', 'text_encoder/config.json', 'scheduler/scheduler_config.json']) {
      it(`names ${file} when it is ${what}`, () => {
        const copy = broken(file, text);
        expect(errorOf(() => loadStableDiffusion(copy))).toContain(`${join(copy, file)}: the `);
        expect(errorOf(() => loadStableDiffusion(copy))).toContain(message);
      });
    }
  }

  const fields: [string, string, unknown, RegExp][] = [
    ['unet/config.json', 'layers_per_block', 1e9, /"layers_per_block" must be an integer from 1 to 64/],
    ['unet/config.json', 'transformer_layers_per_block', 1e9, /"transformer_layers_per_block" must be an integer from 1 to 64/],
    ['unet/config.json', 'block_out_channels', [32, 32, 32, 1e9], /"block_out_channels" must be a list of 1 to 8 integers from 1 to 16384/],
    ['unet/config.json', 'norm_eps', -1, /"norm_eps" must be a number above 0 and at most 1, got -1/],
    ['unet/config.json', 'norm_eps', 0, /"norm_eps" must be a number above 0/],
    ['vae/config.json', 'layers_per_block', 1e9, /"layers_per_block" must be an integer from 1 to 64/],
    ['vae/config.json', 'scaling_factor', 1e-300, /"scaling_factor" must be a number from 0.001 to 1000, got 1e-300/],
    ['vae/config.json', 'scaling_factor', 1e300, /"scaling_factor" must be a number from 0.001 to 1000/],
    ['text_encoder/config.json', 'num_hidden_layers', 1e9, /"num_hidden_layers" must be an integer from 1 to 64/],
    ['text_encoder/config.json', 'layer_norm_eps', -1, /"layer_norm_eps" must be a number above 0/],
    ['text_encoder/config.json', 'vocab_size', 1e12, /"vocab_size" must be an integer from 1 to 1048576/],
    ['scheduler/scheduler_config.json', 'num_train_timesteps', 1e9, /"num_train_timesteps" must be an integer from 2 to 100000/],
    ['scheduler/scheduler_config.json', 'steps_offset', 5000, /"steps_offset" must be an integer from 0 to 999/],
  ];
  for (const [file, field, value, message] of fields) {
    it(`refuses ${file} ${field} ${JSON.stringify(value)}, naming the file and field`, () => {
      const copy = copyTinySd();
      const path = editJson(copy, file, (json) => (json[field] = value));
      const error = errorOf(() => loadStableDiffusion(copy));
      expect(error).toContain(`${path}: `);
      expect(error).toMatch(message);
    });
  }

  it('checks a config against its weights before building, naming both files', () => {
    const copy = copyTinySd();
    const path = editJson(copy, 'unet/config.json', (json) => (json.layers_per_block = 3));
    expect(() => loadStableDiffusion(copy)).toThrow(`${path} does not match the weights in ${join(copy, 'unet', 'diffusion_pytorch_model.safetensors')}`);
    expect(() => loadStableDiffusion(copy)).toThrow('layers_per_block[0] asks for 3 of down_blocks.0.resnets.*, the weights have 2');
    const other = copyTinySd();
    const text = editJson(other, 'text_encoder/config.json', (json) => (json.num_hidden_layers = 7));
    expect(() => loadStableDiffusion(other)).toThrow(`${text} does not match the weights`);
    const third = copyTinySd();
    const vae = editJson(third, 'vae/config.json', (json) => (json.layers_per_block = 1));
    expect(() => loadStableDiffusion(third)).toThrow(`${vae} does not match the weights`);
  });

  it('loads the untouched copy', () => {
    expect(loadStableDiffusion(model).unet.config.layers_per_block).toEqual([2, 2, 2, 2]);
  });
});
