// A model folder's own sampling defaults: nuri.json beside model_index.json, read with the folder,
// used by every run that names no steps or guidance, and refused field by field when wrong.
import { rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { samplerDefaults } from '../../src/pipelines/generate.ts';
import { StableDiffusion } from '../../src/pipelines/stable-diffusion.ts';
import { copyTinySd } from '../model-copy.ts';

const model = copyTinySd();
afterAll(() => rmSync(dirname(model), { recursive: true, force: true }));
const settings = (text: string) => writeFileSync(join(model, 'nuri.json'), text);

describe("a model folder's nuri.json", () => {
  it('gives the steps and guidance of runs that name none; what a run names wins; the lcm sampler keeps its own', () => {
    settings(JSON.stringify({ defaults: { guidance: 5, steps: 12 } }));
    const sd = StableDiffusion.load(model);
    expect(sd.components.defaults).toEqual({ guidance: 5, steps: 12 });
    expect(samplerDefaults(sd, {})).toEqual({ steps: 12, guidance: 5 });
    expect(samplerDefaults(sd, { scheduler: 'euler', guidance: 7 })).toEqual({ steps: 12, guidance: 7 });
    expect(samplerDefaults(sd, { scheduler: 'lcm' })).toEqual({ steps: 4, guidance: 1 }); // an LCM-LoRA's few steps
    settings(JSON.stringify({ defaults: { guidance: 4 } }));
    expect(samplerDefaults(StableDiffusion.load(model), {})).toEqual({ steps: 30, guidance: 4 });
    rmSync(join(model, 'nuri.json'));
    expect(samplerDefaults(StableDiffusion.load(model), {})).toEqual({ steps: 30, guidance: 7.5 });
  });

  it('is refused with its path and the field at fault', () => {
    const path = join(model, 'nuri.json');
    const refused = (text: string) => {
      settings(text);
      return () => StableDiffusion.load(model);
    };
    expect(refused(JSON.stringify({ defaults: { guidance: -1 } }))).toThrow(`${path}: defaults.guidance: Too small: expected number to be >=0`);
    expect(refused(JSON.stringify({ defaults: { steps: 2.5 } }))).toThrow(/nuri\.json: defaults\.steps: .*int/);
    expect(refused(JSON.stringify({ defaults: { cfg: 5 } }))).toThrow(/nuri\.json: defaults: Unrecognized key: "cfg"/);
    expect(refused('{ "defaults": ')).toThrow(`${path}: the nuri.json is not valid JSON`);
    rmSync(path);
  });
});
