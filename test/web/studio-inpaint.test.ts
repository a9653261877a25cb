// Inpainting and ControlNet from the Studio's Generate page, in headless Chromium against a real
// `nuri serve` whose models folder holds the tiny fixtures: a mask brushed over the starting image
// repaints only there (the result equals the picture beyond the stroke and its blur), the settings
// and the mask survive a reload, "Only masked" keeps a picture's own size, and a ControlNet unit
// reaches the job; a refused unit field and a
// ControlNet that fails at run time show their errors beside the field. The steps and guidance
// follow the chosen model's own until the user sets them.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseParameters } from '../../src/io/parameters.ts';
import { parsePngText } from '../../src/io/png.ts';
import { FIXTURES, TINY_SD } from '../fixtures.ts';
import { copyTinySd, tinyInpaintModel } from '../model-copy.ts';
import { POLL, type RunningServer, type Studio, openStudio, saveScreenshot, waitForStatus } from './harness.ts';

const SIZE = 64;
const EDGES = join(FIXTURES, 'reference-2', 'controlnet_cond_128.png');

let dir: string;
let inpaintModel: string;
let ownDefaults: string;
let photo: string;
let studio: Studio;
let server: RunningServer;
let page: Page;

interface JobJson {
  id: string;
  status: string;
  images: string[];
  params: Record<string, unknown>;
  error: string | null;
}

async function latestJob(): Promise<JobJson> {
  const response = await fetch(`${server.url}/api/v1/jobs?limit=1`);
  return ((await response.json()) as { jobs: JobJson[] }).jobs[0];
}

async function bytes(url: string): Promise<Buffer> {
  return Buffer.from(await (await fetch(server.url + url)).arrayBuffer());
}

async function rgb(png: Buffer): Promise<Buffer> {
  return sharp(png).removeAlpha().raw().toBuffer();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nuri-studio-inpaint-'));
  const models = join(dir, 'models');
  mkdirSync(join(models, 'controlnet'), { recursive: true });
  inpaintModel = tinyInpaintModel();
  symlinkSync(TINY_SD, join(models, 'tiny-sd'));
  symlinkSync(inpaintModel, join(models, 'tiny-sd-inpaint'));
  ownDefaults = copyTinySd();
  writeFileSync(join(ownDefaults, 'nuri.json'), JSON.stringify({ defaults: { steps: 3, guidance: 5 } }));
  symlinkSync(ownDefaults, join(models, 'own-sd'));
  symlinkSync(join(FIXTURES, 'tiny-controlnet'), join(models, 'controlnet', 'tiny-controlnet'));
  // A ControlNet whose file went away (a link into a moved folder): listed, and only loading it fails.
  symlinkSync(join(dir, 'moved', 'gone.safetensors'), join(models, 'controlnet', 'gone.safetensors'));
  // The starting picture at the job's size, so the kept pixels can be compared one for one.
  photo = join(dir, 'photo.png');
  await sharp(join(FIXTURES, 'reference-2', 'inpaint_image_128.png')).resize(SIZE, SIZE).png().toFile(photo);
  studio = await openStudio(dir, ['--models', models], { width: 1280, height: 1000 });
  ({ server, page } = studio);
}, 180_000);

afterAll(async () => {
  await studio?.close();
  // The server's low-priority graph builder may still be writing into dir/cache: retry while it does.
  if (dir) rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 });
  for (const model of [inpaintModel, ownDefaults]) if (model) rmSync(dirname(model), { recursive: true, force: true });
});

const gen = () => page.getByRole('region', { name: 'Generate' });

/** The page, with the mask editor or a ControlNet unit open, still fits a 390-px phone screen. */
async function fitsAPhone(): Promise<void> {
  await page.setViewportSize({ width: 390, height: 844 });
  // What sticks out, innermost first, to say which control is too wide.
  const wide = await page.evaluate(`[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 390 && ![...e.children].some((c) => c.getBoundingClientRect().right > 390)).map((e) => e.tagName.toLowerCase() + '.' + e.className + ' ' + (e.getAttribute('aria-label') ?? e.textContent.slice(0, 30)))`);
  expect(await page.evaluate('document.documentElement.scrollWidth'), String(wide)).toBeLessThanOrEqual(390);
  await page.setViewportSize({ width: 1280, height: 1000 });
}
const maskCanvas = () => gen().getByRole('application', { name: /^Mask over the starting image/ });

describe("Studio: a model's own steps and guidance", () => {
  it("follows the chosen model's (a folder's nuri.json) until the user picks theirs", async () => {
    const [model, steps, guidance] = [gen().getByLabel('Model', { exact: true }), gen().getByLabel('Steps'), gen().getByLabel('Guidance')];
    await expect.poll(() => model.locator('option').count(), POLL).toBe(4);
    const first = await model.inputValue();
    await model.selectOption('own-sd');
    await expect.poll(() => Promise.all([steps.inputValue(), guidance.inputValue()]), POLL).toEqual(['3', '5']);
    await model.selectOption('tiny-sd');
    await expect.poll(() => Promise.all([steps.inputValue(), guidance.inputValue()]), POLL).toEqual(['30', '7.5']);
    await guidance.fill('6');
    await model.selectOption('own-sd');
    await page.waitForTimeout(200); // a change would come with the model's, at once
    expect(await Promise.all([steps.inputValue(), guidance.inputValue()])).toEqual(['30', '6']);
    await guidance.fill('7.5');
    await model.selectOption(first);
  });
});

describe('Studio: inpainting', () => {
  it('a brushed mask repaints only under the stroke and its blur; the job gets the mask, blur, fill and strength', async () => {
    await expect.poll(() => gen().getByLabel('Model', { exact: true }).locator('option').count(), POLL).toBe(4);
    await gen().getByLabel('Model', { exact: true }).selectOption('tiny-sd-inpaint');
    await gen().getByLabel('Prompt', { exact: true }).fill('a red bench');
    await gen().getByLabel('Steps').fill('4');
    await gen().getByLabel('Width').fill(String(SIZE));
    await gen().getByLabel('Height').fill(String(SIZE));
    await gen().getByLabel('Upload a starting image').setInputFiles(photo);
    await maskCanvas().waitFor();
    expect(await maskCanvas().getAttribute('aria-label')).toMatch(/ 0% painted$/);

    // One stroke along y = 16 from x = 8 to x = 40 (image pixels), with a 12-px brush.
    await gen().getByLabel(/^Brush size/).fill('12');
    const box = (await maskCanvas().boundingBox())!;
    const client = (x: number, y: number): [number, number] => [box.x + (x / SIZE) * box.width, box.y + (y / SIZE) * box.height];
    await page.mouse.move(...client(8, 16));
    await page.mouse.down();
    await page.mouse.move(...client(40, 16), { steps: 8 });
    await page.mouse.up();
    await expect.poll(() => maskCanvas().getAttribute('aria-label'), POLL).toMatch(/ [1-9]\d*% painted$/);
    await gen().getByLabel('Mask blur').fill('2');
    await gen().getByLabel('Masked content').selectOption('latent-noise');
    await gen().getByLabel(/^Strength/).fill('0.75');
    await saveScreenshot(page, dir, 'inpaint');
    await gen().getByRole('button', { name: 'Generate', exact: true }).click();
    const status = await waitForStatus(gen(), ['completed', 'failed'], 120_000);
    const job = await latestJob();
    expect(status, job.error ?? '').toBe('completed');
    expect(job.params).toMatchObject({ model: 'tiny-sd-inpaint', mask: expect.stringMatching(/^upload-/), maskBlur: 2, inpaintFill: 'latent-noise', strength: 0.75, width: SIZE, height: SIZE });

    // Beyond the brush (6 px), the blur's window (5 px at σ 2) and a pixel of slack, the result is
    // the picture itself; along the stroke's core it is repainted.
    const [before, after] = await Promise.all([rgb(readFileSync(photo)), bytes(job.images[0]).then(rgb)]);
    const distance = (x: number, y: number) => (x < 8 ? Math.hypot(x + 0.5 - 8, y + 0.5 - 16) : x > 40 ? Math.hypot(x + 0.5 - 40, y + 0.5 - 16) : Math.abs(y + 0.5 - 16));
    let [kept, keptSame, core, coreChanged] = [0, 0, 0, 0];
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const i = 3 * (y * SIZE + x);
        const same = before[i] === after[i] && before[i + 1] === after[i + 1] && before[i + 2] === after[i + 2];
        if (distance(x, y) > 13) [kept, keptSame] = [kept + 1, keptSame + (same ? 1 : 0)];
        if (distance(x, y) <= 3) [core, coreChanged] = [core + 1, coreChanged + (same ? 0 : 1)];
      }
    }
    expect(kept).toBeGreaterThan(2000);
    expect(keptSame).toBe(kept);
    expect(coreChanged / core).toBeGreaterThan(0.8);
  });

  it('keeps the mask and the inpainting settings across a reload; invert, clear, the keyboard brush and an uploaded mask image work', async () => {
    const painted = await maskCanvas().getAttribute('aria-label');
    await page.reload();
    await expect.poll(() => gen().getByLabel('Model', { exact: true }).inputValue(), POLL).toBe('tiny-sd-inpaint');
    expect(await maskCanvas().getAttribute('aria-label')).toBe(painted);
    expect(await gen().getByLabel('Mask blur').inputValue()).toBe('2');
    expect(await gen().getByLabel('Masked content').inputValue()).toBe('latent-noise');
    expect(await gen().getByLabel(/^Strength/).inputValue()).toBe('0.75');
    expect([await gen().getByLabel('Width').inputValue(), await gen().getByLabel('Prompt', { exact: true }).inputValue()]).toEqual([String(SIZE), 'a red bench']);

    const percent = async () => Number(/ (\d+)% painted$/.exec((await maskCanvas().getAttribute('aria-label'))!)![1]);
    const before = await percent();
    await gen().getByRole('button', { name: 'Invert mask' }).click();
    expect(await percent()).toBe(100 - before);
    await gen().getByRole('button', { name: 'Clear mask' }).click();
    expect(await percent()).toBe(0);
    await maskCanvas().focus();
    await page.keyboard.press('Space');
    expect(await percent()).toBeGreaterThan(0);
    await page.keyboard.press('Shift+ArrowRight');
    await page.keyboard.press('Shift+ArrowRight');
    const stroke = await percent();
    expect(stroke).toBeGreaterThan(0);
    await gen().getByRole('button', { name: 'Clear mask' }).click();

    // An uploaded mask image (128 px, white on 22.7% of it) is read at the job's 64 px.
    await gen().getByLabel(/^Upload a mask image/).setInputFiles(join(FIXTURES, 'reference-2', 'inpaint_mask_rect_128.png'));
    await expect.poll(percent, POLL).toBeGreaterThan(0);
    expect(Math.abs((await percent()) - 23)).toBeLessThanOrEqual(1);
    await gen().getByRole('button', { name: 'Clear mask' }).click();
    await fitsAPhone();
    await gen().getByRole('button', { name: 'Remove starting image' }).click();
  });

  it('"Only masked" keeps a 96×64 picture at its size: the mask is painted at it, the job draws around it at 64 px', async () => {
    const wide = join(dir, 'wide.png');
    await sharp(join(FIXTURES, 'reference-2', 'inpaint_image_128.png')).resize(96, 64, { fit: 'fill' }).png().toFile(wide);
    await gen().getByLabel('Upload a starting image').setInputFiles(wide);
    await maskCanvas().waitFor();
    await gen().getByLabel(/Only masked: keep/).check();
    await gen().getByLabel('Padding').fill('8');
    await expect.poll(() => maskCanvas().evaluate((c) => [(c as HTMLCanvasElement).width, (c as HTMLCanvasElement).height]), POLL).toEqual([96, 64]);
    // A dot at (70, 20) in picture pixels, 12 px wide.
    await gen().getByLabel(/^Brush size/).fill('12');
    await maskCanvas().scrollIntoViewIfNeeded();
    const box = (await maskCanvas().boundingBox())!;
    await page.mouse.click(box.x + (70 / 96) * box.width, box.y + (20 / 64) * box.height);
    await expect.poll(() => maskCanvas().getAttribute('aria-label'), POLL).toMatch(/ [1-9]\d*% painted$/);
    // Unticked, the mask is the job's 64×64 view of the picture (its middle, from x = 16): the dot
    // stays on the same part of the picture, and comes back when ticked again.
    const painted = (x: number, y: number) => maskCanvas().evaluate((c, [x, y]) => (c as HTMLCanvasElement).getContext('2d')!.getImageData(x, y, 1, 1).data[3] > 0, [x, y]);
    await gen().getByLabel(/Only masked: keep/).uncheck();
    await expect.poll(() => maskCanvas().evaluate((c) => (c as HTMLCanvasElement).width), POLL).toBe(64);
    expect([await painted(54, 20), await painted(63, 20), await painted(40, 20)]).toEqual([true, false, false]);
    await gen().getByLabel(/Only masked: keep/).check();
    await expect.poll(() => maskCanvas().evaluate((c) => (c as HTMLCanvasElement).width), POLL).toBe(96);
    expect([await painted(70, 20), await painted(54, 20)]).toEqual([true, false]);
    await gen().getByRole('button', { name: 'Generate', exact: true }).click();
    const status = await waitForStatus(gen(), ['completed', 'failed'], 120_000);
    const job = await latestJob();
    expect(status, job.error ?? '').toBe('completed');
    expect(job.params).toMatchObject({ onlyMasked: { padding: 8 }, width: SIZE, height: SIZE, mask: expect.stringMatching(/^upload-/) });
    expect(await sharp(join(dir, 'outputs', 'uploads', String(job.params.mask))).metadata()).toMatchObject({ width: 96, height: 64 });
    const result = await bytes(job.images[0]);
    expect(await sharp(result).metadata()).toMatchObject({ width: 96, height: 64 });
    expect(parseParameters(parsePngText(result).parameters).extra).toMatchObject({ 'Inpaint area': 'Only masked', 'Masked area padding': '8' });
    // Far from the dot (its 6-px radius, the blur's reach and slack), the picture is as it was.
    const [before, after] = await Promise.all([rgb(readFileSync(wide)), rgb(result)]);
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 96; x++) {
        if (Math.hypot(x + 0.5 - 70, y + 0.5 - 20) <= 20) continue;
        const i = 3 * (y * 96 + x);
        expect([after[i], after[i + 1], after[i + 2]]).toEqual([before[i], before[i + 1], before[i + 2]]);
      }
    }
    await gen().getByLabel(/Only masked: keep/).uncheck();
    await gen().getByRole('button', { name: 'Remove starting image' }).click();
  });
});

describe('Studio: ControlNet', () => {
  const unit = (n: number) => gen().getByRole('group', { name: `ControlNet unit ${n}` });
  const errorBeside = (n: number, label: string) => unit(n).locator('.field', { has: page.getByLabel(label, { exact: true }) }).locator('[data-field-error]');

  it('a canny unit with its weight and window reaches the job and its PNG', async () => {
    await gen().getByLabel('Model', { exact: true }).selectOption('tiny-sd');
    await gen().getByRole('button', { name: 'Add a ControlNet unit' }).click();
    await unit(1).getByLabel('ControlNet model').selectOption('tiny-controlnet');
    await unit(1).getByLabel('Control image').setInputFiles(EDGES);
    await expect.poll(() => unit(1).getByRole('img').count(), POLL).toBe(1);
    await unit(1).getByLabel('Preprocessor').selectOption('canny');
    await unit(1).getByLabel('Canny low').fill('50');
    await unit(1).getByLabel('Canny high').fill('150');
    await unit(1).getByLabel('Control weight').fill('0.8');
    await unit(1).getByLabel('End', { exact: true }).fill('0.5');
    await gen().getByLabel('Steps').fill('3');
    await gen().getByRole('button', { name: 'Generate', exact: true }).click();
    const status = await waitForStatus(gen(), ['completed', 'failed'], 120_000);
    const job = await latestJob();
    expect(status, job.error ?? '').toBe('completed');
    expect(job.params.controlnet).toEqual([{ model: 'tiny-controlnet', image: expect.stringMatching(/^upload-/), fit: 'fill', weight: 0.8, start: 0, end: 0.5, preprocess: 'canny', cannyLow: 50, cannyHigh: 150 }]);
    expect(job.params).not.toHaveProperty('initImage');
    const parameters = parseParameters(parsePngText(await bytes(job.images[0])).parameters);
    expect(parameters.extra?.['ControlNet 0']).toBe('Module: canny, Model: tiny-controlnet, Weight: 0.8, Resize Mode: Just Resize, Threshold A: 50, Threshold B: 150, Guidance Start: 0, Guidance End: 0.5');
    await saveScreenshot(page, dir, 'controlnet');
  });

  it("shows errors beside the unit's field: no image (the page's), a refused window (the server's), a ControlNet file that is gone (the run's)", async () => {
    await gen().getByRole('button', { name: 'Add a ControlNet unit' }).click();
    await gen().getByRole('button', { name: 'Generate', exact: true }).click();
    await expect.poll(() => errorBeside(2, 'Control image').textContent(), POLL).toBe('choose a control image for this unit');
    await gen().getByRole('button', { name: 'Remove ControlNet unit 2' }).click();

    await unit(1).getByLabel('Start', { exact: true }).fill('0.7');
    await unit(1).getByLabel('End', { exact: true }).fill('0.2');
    await gen().getByRole('button', { name: 'Generate', exact: true }).click();
    await expect.poll(() => errorBeside(1, 'Start').textContent(), POLL).toBe('start (0.7) must be below end (0.2)');
    expect(await unit(1).getByLabel('Start', { exact: true }).getAttribute('aria-invalid')).toBe('true');
    expect(await errorBeside(1, 'End').count()).toBe(0);

    await unit(1).getByLabel('Start', { exact: true }).fill('0');
    await unit(1).getByLabel('End', { exact: true }).fill('1');
    await unit(1).getByLabel('ControlNet model').selectOption('gone');
    await gen().getByRole('button', { name: 'Generate', exact: true }).click();
    expect(await waitForStatus(gen(), ['completed', 'failed'], 120_000)).toBe('failed');
    expect((await latestJob()).error).toMatch(/ControlNet not found: .*gone\.safetensors/);
    await expect.poll(() => errorBeside(1, 'ControlNet model').textContent(), POLL).toMatch(/^ControlNet not found: .*gone\.safetensors$/);
    expect(await unit(1).getByLabel('ControlNet model').getAttribute('aria-invalid')).toBe('true');
    expect(await gen().locator('form > p.error').count()).toBe(0);
    await fitsAPhone();
  });
});
