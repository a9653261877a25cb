// One zod schema per job kind: what POST /api/v1/jobs accepts, with the CLI's long options in
// camelCase and the CLI's defaults, bounded by the server's limits. The OpenAPI document is
// generated from these same schemas (openapi.ts), so the two cannot drift apart.

import { z } from 'zod';
import { WEIGHT_DTYPES } from '../engine/quantize.ts';
import { DEFAULTS } from '../pipelines/generate.ts';
import { CANNY_DEFAULTS } from '../io/canny.ts';
import { CONTROL_PREPROCESSORS } from '../pipelines/controlnet.ts';
import { INPAINT_FILLS, OUTPAINT_SIDES } from '../pipelines/inpaint.ts';
import { SCHEDULER_NAMES } from '../schedulers/index.ts';
import { PERSONALISE_DEFAULTS } from '../training/personalise-runs.ts';
import { LR_SCHEDULES } from '../training/lr-schedule.ts';
import { TRAINING_DEFAULTS } from '../training/training-run.ts';
import { JOB_ID, JOB_TYPES, type JobType } from './jobs.ts';

/** What one request may ask of the server; each is a `nuri serve` option. */
export interface ServerLimits {
  /** width × height of one image. */
  maxPixels: number;
  maxSteps: number;
  maxBatch: number;
  /** Characters in a prompt (or negative prompt, or target). */
  maxPromptLength: number;
  maxUploadBytes: number;
  maxTrainSteps: number;
  /** Images in one training set. */
  maxTrainImages: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxPixels: 1024 * 1024,
  maxSteps: 150,
  maxBatch: 8,
  maxPromptLength: 2000,
  maxUploadBytes: 20 * 1024 * 1024,
  maxTrainSteps: 5000,
  maxTrainImages: 100,
};

/** The option that sets each limit, for error messages. */
const LIMIT_OPTION: Record<keyof ServerLimits, string> = {
  maxPixels: '--max-pixels',
  maxSteps: '--max-steps',
  maxBatch: '--max-batch',
  maxPromptLength: '--max-prompt-length',
  maxUploadBytes: '--max-upload-bytes',
  maxTrainSteps: '--max-train-steps',
  maxTrainImages: '--max-train-images',
};

export function limitMessage(key: keyof ServerLimits, limits: ServerLimits, what: string): string {
  return `${what} is over this server's limit of ${limits[key]} (${LIMIT_OPTION[key]})`;
}

/** Names of uploads ("upload-….png") and result images ("job-…-1.png"): no paths. */
export const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;
const fileName = z.string().regex(FILE_NAME, 'must be the name of an upload or a result image (letters, digits, . _ -)');
const modelName = z.string().min(1).max(500).describe('a model name from GET /api/v1/models');
const fraction = z.number().min(0).max(1);
/** Seeds are 32-bit, as in AUTOMATIC1111 and diffusers' generators. */
export const MAX_SEED = 2 ** 32 - 1;
const seed = z.int().min(0).max(MAX_SEED).describe('random when absent; the one used is recorded');
const clipSkip = z.int().min(1).max(12).describe('use the text encoder layer n from the end (1 = last)');
const pixelSize = z.strictObject({ width: z.int().min(1).max(16384), height: z.int().min(1).max(16384) });
const cropCorner = z.strictObject({ top: z.int().min(0).max(16384), left: z.int().min(0).max(16384) });
/** SDXL's size and crop conditioning (the CLI's --original-size, --target-size, --crop-top-left). */
const sizeConditioning = {
  originalSize: pixelSize.optional().describe('SDXL: the size the picture should look taken at (default: the output size)'),
  targetSize: pixelSize.optional().describe('SDXL: the size to aim for (default: the output size)'),
  cropTopLeft: cropCorner.optional().describe('SDXL: where the picture should look cropped from (default: 0, 0)'),
  // The CLI's --negative-* twins: the unconditional half's own sizes, used only as a pair (diffusers).
  negativeOriginalSize: pixelSize.optional().describe('SDXL: the unconditional half\'s original size (with negativeTargetSize; otherwise that half repeats originalSize)'),
  negativeTargetSize: pixelSize.optional().describe('SDXL: the unconditional half\'s target size (with negativeOriginalSize)'),
  negativeCropTopLeft: cropCorner.optional().describe('SDXL: the unconditional half\'s crop (default: 0, 0; with the negative sizes)'),
};

/** The negative sizes go together, as the CLI's flags do: one alone would be silently ignored. */
function negativeSizesPaired(p: { negativeOriginalSize?: unknown; negativeTargetSize?: unknown }, ctx: z.RefinementCtx): void {
  if ((p.negativeOriginalSize === undefined) !== (p.negativeTargetSize === undefined)) {
    const missing = p.negativeOriginalSize === undefined ? 'negativeOriginalSize' : 'negativeTargetSize';
    ctx.addIssue({ code: 'custom', path: [missing], message: 'negativeOriginalSize and negativeTargetSize are given together (the unconditional half repeats the conditional sizes otherwise)' });
  }
}

function bounded(limits: ServerLimits) {
  const text = z.string().max(limits.maxPromptLength, limitMessage('maxPromptLength', limits, 'the text'));
  const anySteps = z.int().min(1).max(limits.maxSteps, limitMessage('maxSteps', limits, 'steps'));
  const steps = Object.assign((dflt: number) => anySteps.default(dflt), { optional: () => anySteps.optional() });
  const side = z.int().min(8).max(4096).multipleOf(8).describe("a multiple of 8; default: the model's own size");
  return { text, steps, side };
}

/** LCM's timesteps come from its distillation grid: a spacing would be silently ignored. */
function spacingApplies(p: { scheduler?: string; timestepSpacing?: string; eta?: number }, ctx: z.RefinementCtx) {
  if (p.scheduler === 'lcm' && p.timestepSpacing !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['timestepSpacing'], message: 'does not apply to lcm: its timesteps come from its distillation grid' });
  }
  // A named sampler is checked here; the model's own is checked when the job runs (makeSampler).
  if (p.eta !== undefined && p.scheduler !== undefined && p.scheduler !== 'ddim') {
    ctx.addIssue({ code: 'custom', path: ['eta'], message: `is DDIM's η; the ${p.scheduler} sampler has none` });
  }
}

/** width × height within the limit, reported on `width`. */
function pixelLimit(limits: ServerLimits) {
  return (p: { width?: number; height?: number }, ctx: z.RefinementCtx) => {
    if (p.width !== undefined && p.height !== undefined && p.width * p.height > limits.maxPixels) {
      ctx.addIssue({ code: 'custom', path: ['width'], message: limitMessage('maxPixels', limits, `width × height (${p.width}×${p.height})`) });
    }
  };
}

export function jobSchemas(limits: ServerLimits = DEFAULT_LIMITS) {
  const { text, steps, side } = bounded(limits);
  const sampling = {
    model: modelName.default('default'),
    negativePrompt: text.optional().describe('what to steer away from'),
    // The sampler's defaults, as the CLI's: 30 at 7.5, or LCM's 4 steps (guidance 8.5 for an LCM-distilled UNet, 1 for LCM-LoRA).
    steps: steps.optional().describe(`default ${DEFAULTS.steps}; 4 with the lcm sampler`),
    scheduler: z.enum(SCHEDULER_NAMES).optional().describe("the sampler; default: the model's own (its scheduler config), ddim for SD 1.x's PNDM and for editing a real image"),
    timestepSpacing: z.enum(['leading', 'linspace', 'trailing']).optional().describe("which training timesteps the steps visit (default: the model's scheduler config; trailing for SD-Turbo); not with lcm"),
    guidance: z.number().min(0).max(100).optional().describe(`classifier-free guidance scale (≤ 1 disables it), or an LCM-distilled UNet's own input; default ${DEFAULTS.guidance}, with lcm 1 (8.5 for an LCM-distilled model)`),
    seed: seed.optional(),
    width: side.optional(),
    height: side.optional(),
    clipSkip: clipSkip.optional(),
    promptSyntax: z.boolean().default(true).describe("read AUTOMATIC1111's emphasis syntax — (word), [word], (word:1.3), \\( — and BREAK; false reads the prompts literally"),
    vae: z.string().min(1).max(500).optional().describe("a VAE from GET /api/v1/models (the models folder's vae/) that decodes (and encodes) instead of the model's own: an AutoencoderKL, or an AutoencoderTiny (TAESD: fast, a little less detail)"),
    dtype: z.enum(WEIGHT_DTYPES).default('fp32').describe("weights of the UNet and text encoder: fp32, or q8 (int8 per channel, quantised at load; the VAE stays fp32)"),
  };
  // LoRA files and Textual Inversion embeddings from the models folder, for the jobs that draw.
  const personal = {
    loras: z.array(z.strictObject({ name: z.string().min(1), weight: z.number().min(-10).max(10).default(1) })).max(16).default([]),
    embeddings: z.array(z.string().min(1)).max(16).default([]),
  };

  const generate = z
    .strictObject({
      ...sampling,
      prompt: text.min(1).describe('what to draw'),
      eta: fraction.optional().describe("DDIM's η: 0 is deterministic; refused with a sampler that has none"),
      batch: z.int().min(1).max(limits.maxBatch, limitMessage('maxBatch', limits, 'batch')).default(1),
      initImage: fileName.optional().describe('img2img: an upload or an earlier result image to start from'),
      strength: z.number().min(0.01).max(1).optional().describe(`img2img: how much to change the picture, default ${DEFAULTS.strength}; 1 when inpainting`),
      mask: fileName.optional().describe('inpainting: an upload, white where initImage is repainted, black where it is kept'),
      maskBlur: z.number().min(0).max(64).optional().describe('inpainting: Gaussian blur of the mask in pixels, default 4 (0: the hard edge diffusers uses)'),
      inpaintFill: z.enum(INPAINT_FILLS).optional().describe("inpainting below strength 1: what the masked area starts from, default 'original'"),
      onlyMasked: z
        .strictObject({ padding: z.int().min(0).max(4096).default(32).describe('pixels of the picture around the mask that the model sees') })
        .optional()
        .describe("inpainting, AUTOMATIC1111's \"Only masked\": the part around the mask is drawn at width × height and laid into initImage, which keeps its own size"),
      outpaint: z
        .strictObject(Object.fromEntries(OUTPAINT_SIDES.map((side) => [side, z.int().min(0).max(2048).multipleOf(8).optional()])) as Record<(typeof OUTPAINT_SIDES)[number], z.ZodOptional<z.ZodInt>>)
        .optional()
        .describe('outpainting: pixels to grow initImage by on each side (multiples of 8); the border is painted'),
      ...personal,
      ...sizeConditioning,
      controlnet: z
        .array(
          z.strictObject({
            model: z.string().min(1).describe("a ControlNet in the models folder's controlnet/ (GET /api/v1/models)"),
            image: fileName.describe('the control image (an upload or a result image)'),
            fit: z.enum(['fill', 'cover']).default('fill').describe('to the output size: fill stretches, cover scales and crops the centre'),
            weight: z.number().min(0).max(10).default(1).describe('conditioning scale'),
            start: fraction.default(0).describe('acts from this fraction of the steps'),
            end: fraction.default(1).describe('until this fraction of the steps'),
            preprocess: z.enum(CONTROL_PREPROCESSORS).default('none').describe('canny: Canny edges of an ordinary picture'),
            cannyLow: z.number().min(0).max(2000).default(CANNY_DEFAULTS.low),
            cannyHigh: z.number().min(0).max(2000).default(CANNY_DEFAULTS.high),
          }),
        )
        .max(4)
        .default([])
        .describe('ControlNets; their residuals add up'),
    })
    .superRefine(pixelLimit(limits))
    .superRefine(spacingApplies)
    .superRefine(negativeSizesPaired)
    .superRefine((p, ctx) => {
      if (p.strength !== undefined && p.initImage === undefined) ctx.addIssue({ code: 'custom', path: ['strength'], message: 'strength needs initImage' });
      p.controlnet.forEach((c, i) => {
        if (c.start >= c.end) ctx.addIssue({ code: 'custom', path: ['controlnet', i, 'start'], message: `start (${c.start}) must be below end (${c.end})` });
        if (c.cannyLow > c.cannyHigh) ctx.addIssue({ code: 'custom', path: ['controlnet', i, 'cannyLow'], message: `cannyLow (${c.cannyLow}) must not be above cannyHigh (${c.cannyHigh})` });
      });
      for (const field of ['mask', 'outpaint'] as const) {
        if (p[field] !== undefined && p.initImage === undefined) ctx.addIssue({ code: 'custom', path: [field], message: `${field} needs initImage, the picture to paint in` });
      }
      for (const field of ['maskBlur', 'inpaintFill'] as const) {
        if (p[field] !== undefined && p.mask === undefined && p.outpaint === undefined) ctx.addIssue({ code: 'custom', path: [field], message: `${field} needs mask or outpaint` });
      }
      if (p.onlyMasked && p.mask === undefined) ctx.addIssue({ code: 'custom', path: ['onlyMasked'], message: 'onlyMasked needs mask, the area to draw' });
      if (p.onlyMasked && p.outpaint !== undefined) ctx.addIssue({ code: 'custom', path: ['onlyMasked'], message: 'onlyMasked and outpaint cannot be combined: outpainting draws the grown canvas whole' });
      if (p.onlyMasked && p.controlnet.length > 0) ctx.addIssue({ code: 'custom', path: ['onlyMasked'], message: 'onlyMasked and controlnet cannot be combined yet: the control images are not cut out with the picture' });
    })
    .describe('txt2img, img2img with initImage, inpainting with initImage and mask, outpainting with initImage and outpaint');

  const edit = z
    .strictObject({
      ...sampling,
      prompt: text.min(1).describe('the source prompt (describes `image` when one is given)'),
      target: text.optional().describe('the edited prompt (default: the source, for pure re-weighting)'),
      refine: z.boolean().default(false).describe('the target adds or removes words: align tokens instead of swapping words'),
      crossReplace: z
        .union([fraction, z.strictObject({ default: fraction.optional(), words: z.record(z.string(), fraction).optional() })])
        .optional()
        .describe("fraction of the steps the edit follows the source's cross-attention: one number, or per word"),
      selfReplace: fraction.optional(),
      reweight: z.record(z.string(), z.number().min(-100).max(100)).optional().describe('scale the attention to words of the target'),
      reweightCarry: z.boolean().optional().describe("also scale what a re-weighted word left in the words after it (default: the model's nuri.json, else false)"),
      localBlend: z.array(z.string().min(1)).max(16).optional().describe('change only where these words are'),
      blendThreshold: fraction.optional(),
      image: fileName.optional().describe('edit this picture (an upload): inverted with the source prompt first'),
      nullTextSteps: z.int().min(0).max(100).default(10),
      eta: fraction.optional(),
      attentionMaps: z.boolean().default(false).describe("also return the edit's cross-attention heat map per target token, as images after the source and the edit (info.tokens)"),
      ...personal,
    })
    .superRefine(pixelLimit(limits))
    .superRefine(spacingApplies)
    .superRefine((p, ctx) => {
      if (p.image !== undefined && p.scheduler !== undefined && p.scheduler !== 'ddim') ctx.addIssue({ code: 'custom', path: ['scheduler'], message: `editing a real image needs ddim (its inversion, DDIM then null-text, retraces DDIM's steps), not ${p.scheduler}` });
      if (p.blendThreshold !== undefined && !p.localBlend) ctx.addIssue({ code: 'custom', path: ['blendThreshold'], message: 'blendThreshold needs localBlend' });
    })
    .describe('Prompt-to-Prompt: the source and the edited prompt, from noise or from a real image');

  const attention = z
    .strictObject({ ...sampling, prompt: text.min(1).regex(/\S/, 'prompt has no tokens to map').describe('what to draw') })
    .superRefine(pixelLimit(limits))
    .superRefine(spacingApplies)
    .describe('an image and one cross-attention heat map per prompt token');

  const training = (dflt: { lr: number; steps: number; loraLr?: number }) => ({
    model: modelName.default('default'),
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/, 'letters, digits, _ and - only').describe('file name of the result under the models folder'),
    images: z.array(fileName).min(1).max(limits.maxTrainImages, limitMessage('maxTrainImages', limits, 'the number of images')).describe('uploads to train on'),
    captions: z.array(text).optional().describe('one caption per image'),
    steps: z.int().min(1).max(limits.maxTrainSteps, limitMessage('maxTrainSteps', limits, 'steps')).default(dflt.steps),
    lr: z.number().positive().max(1).optional().describe(`peak learning rate; default ${dflt.lr}${'loraLr' in dflt ? ` (${dflt.loraLr} with loraRank)` : ''}`),
    lrSchedule: z.enum(LR_SCHEDULES).default(TRAINING_DEFAULTS.lrSchedule),
    warmup: z.int().min(0).default(0),
    batch: z.int().min(1).max(limits.maxBatch, limitMessage('maxBatch', limits, 'batch')).default(1),
    gradAccum: z.int().min(1).max(64).default(1),
    resolution: z.int().min(8).max(4096).optional().refine((r) => r === undefined || r * r <= limits.maxPixels, limitMessage('maxPixels', limits, 'resolution²')),
    seed: z.int().min(0).max(MAX_SEED).default(TRAINING_DEFAULTS.seed),
    maxGradNorm: z.number().positive().optional(),
    weightDecay: z.number().min(0).default(TRAINING_DEFAULTS.weightDecay),
    flip: z.boolean().default(false),
    resume: z.string().regex(JOB_ID, 'a job id').optional().describe('continue a cancelled training job (same method and settings) from its last checkpoint'),
    sampleEvery: z.int().min(1).optional().describe('draw a sample picture every this many steps, sent as the job\'s preview'),
    samplePrompt: text.optional().describe('what the samples draw; default: the token (Textual Inversion), the first caption (LoRA) or the instance prompt (DreamBooth)'),
    sampleSteps: z.int().min(1).max(limits.maxSteps, limitMessage('maxSteps', limits, 'steps')).default(10).describe('denoising steps of each sample'),
  });
  const captionsMatch = (p: { images: string[]; captions?: string[] }, ctx: z.RefinementCtx) => {
    if (p.captions && p.captions.length !== p.images.length) ctx.addIssue({ code: 'custom', path: ['captions'], message: `${p.captions.length} captions for ${p.images.length} images` });
  };
  const train = z
    .discriminatedUnion('method', [
      z.strictObject({
        method: z.literal('textual-inversion'),
        ...training(PERSONALISE_DEFAULTS.textualInversion),
        token: z.string().min(1).max(100).describe('the new word, e.g. "<cat-toy>"'),
        initToken: z.string().min(1).max(100).describe('a one-token word the new word starts from'),
        learnable: z.enum(['object', 'style']).default('object'),
      }),
      z.strictObject({
        method: z.literal('lora'),
        ...training(PERSONALISE_DEFAULTS.lora),
        rank: z.int().min(1).max(1024).default(PERSONALISE_DEFAULTS.lora.rank),
        alpha: z.number().min(0).optional(),
        trainTextEncoder: z.boolean().default(false),
        captionDropout: fraction.default(0),
        keyStyle: z.enum(['diffusers', 'kohya']).default('diffusers'),
      }),
      z.strictObject({
        method: z.literal('dreambooth'),
        ...training(PERSONALISE_DEFAULTS.dreamBooth),
        instancePrompt: text.min(1).describe('the subject with its rare token, e.g. "a photo of sks dog"'),
        classPrompt: text.optional().describe('turns on prior preservation'),
        classImages: z.int().min(1).max(limits.maxTrainImages, limitMessage('maxTrainImages', limits, 'classImages')).default(PERSONALISE_DEFAULTS.dreamBooth.classImages),
        classSteps: steps(PERSONALISE_DEFAULTS.dreamBooth.classSteps),
        priorLossWeight: z.number().min(0).default(1),
        trainTextEncoder: z.boolean().default(false),
        loraRank: z.int().min(1).max(1024).optional().describe('train a LoRA of this rank instead of the whole UNet'),
        loraAlpha: z.number().min(0).optional(),
      }),
    ])
    .superRefine(captionsMatch)
    .describe('personalise a model: textual-inversion (an embedding), lora or dreambooth (a LoRA, or a whole model folder)');

  return { generate, edit, attention, train } satisfies Record<JobType, z.ZodType>;
}

export type JobSchemas = ReturnType<typeof jobSchemas>;
export type GenerateParams = z.output<JobSchemas['generate']>;
export type EditParams = z.output<JobSchemas['edit']>;
export type AttentionParams = z.output<JobSchemas['attention']>;
export type TrainParams = z.output<JobSchemas['train']>;

/** A request that does not fit its schema: the field (dotted path under params) and why. */
export class ParamsError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** Validates `{type, params}`, fills in the defaults and a random seed; throws ParamsError. */
export function parseJobRequest(body: unknown, schemas: JobSchemas): { type: JobType; params: Record<string, unknown> } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ParamsError('body', 'expected a JSON object {type, params}');
  const { type, params, ...rest } = body as Record<string, unknown>;
  const extra = Object.keys(rest)[0];
  if (extra !== undefined) throw new ParamsError(extra, 'unknown field (expected only type and params)');
  if (typeof type !== 'string' || !(JOB_TYPES as readonly string[]).includes(type)) throw new ParamsError('type', `expected one of ${JOB_TYPES.join(', ')}`);
  const parsed = schemas[type as JobType].safeParse(params ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const keys = issue.code === 'unrecognized_keys' ? `${issue.keys.join(', ')}: ` : '';
    throw new ParamsError(['params', ...issue.path.map(String), ...(issue.code === 'unrecognized_keys' ? [issue.keys[0]] : [])].join('.'), `${keys}${issue.message}`);
  }
  const out = parsed.data as Record<string, unknown>;
  if (type !== 'train' && out.seed === undefined) out.seed = Math.floor(Math.random() * (MAX_SEED + 1));
  return { type: type as JobType, params: out };
}
