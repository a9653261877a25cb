// `nuri generate --model tiny-sdxl` with SDXL's size-conditioning flags reproduces diffusers'
// StableDiffusionXLPipeline run (sdxl_pipeline_euler_g5_negative_sizes) from the command line.
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runNuri } from '../support/cli.ts';
import { readSafetensors, writeSafetensors } from '../../src/engine/safetensors.ts';
import { parseParameters } from '../../src/io/parameters.ts';
import { readPngText } from '../../src/io/png.ts';
import { TINY_SDXL, referenceCase } from '../fixtures.ts';
import { maxAbsDiff } from '../schedulers/reference.ts';


const nuri = (args: string[], cwd: string) => runNuri(args, { cwd, env: { ...process.env, NURI_CACHE: join(cwd, 'cache') } });

describe('nuri generate on SDXL', () => {
  it('--original-size WxH, --crop-top-left top,left, --target-size match diffusers within 1e-4', async () => {
    const ref = readSafetensors(referenceCase('sdxl_pipeline_euler_g5_negative_sizes').file);
    const dir = mkdtempSync(join(tmpdir(), 'nuri-sdxl-cli-'));
    writeSafetensors(join(dir, 'noise.safetensors'), { latents: { dtype: 'F32', shape: [1, 4, 8, 8], data: ref.get('initial_latents')!.data as Float32Array } });
    const r = await nuri(
      [
        'generate', 'an astronaut riding a horse on mars', '--negative-prompt', 'blurry, low quality', '--model', TINY_SDXL,
        '--scheduler', 'euler', '--steps', '6', '--guidance', '5', '--latents', 'noise.safetensors',
        '--original-size', '768x512', '--crop-top-left', '32,64', '--target-size', '1024x1024',
        '--out', 'astronaut.png', '--save-latents', 'out.safetensors',
      ],
      dir,
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const ours = readSafetensors(join(dir, 'out.safetensors')).get('latents')!.data as Float32Array;
    expect(maxAbsDiff(ours, ref.get('latents_out')!.data as Float32Array)).toBeLessThan(1e-4);
    // The PNG records the conditioning, so that the picture can be made again.
    const recorded = parseParameters(readPngText(join(dir, 'astronaut.png')).parameters);
    expect(recorded.sizeConditioning).toEqual({ originalSize: [512, 768], cropTopLeft: [32, 64], targetSize: [1024, 1024] });
    expect(recorded.extra).toBeUndefined();
  });

  it('refuses a malformed size in one line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nuri-sdxl-cli-'));
    for (const [args, message] of [
      [['--model', TINY_SDXL, '--target-size', '1024'], /--target-size.*WIDTHxHEIGHT/],
    ] as const) {
      const r = await nuri(['generate', 'x', '--steps', '1', '--out', 'x.png', ...args], dir);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
    expect(readdirSync(dir).filter((f) => f.endsWith('.png'))).toEqual([]);
  });
});
