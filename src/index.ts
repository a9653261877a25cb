// Nuri as a library: `import { loadPipeline, generate } from 'nuri'`. Every long call takes
// `signal` (an AbortSignal checked between UNet steps, inversion iterations and training steps;
// it rejects with an Error named 'AbortError') and `onProgress` (called after every step).
//
//   const sd = await loadPipeline('path/to/sd15');                 // or loadPipeline() for the bundled model
//   const { images } = await generate(sd, { prompts: ['a red apple'], steps: 20, seed: 1, signal,
//                                          onProgress: (p) => console.log(p.step, p.total, p.timestep) });
//   await writePng('apple.png', images[0], { parameters: formatParameters({ prompt: 'a red apple', steps: 20, seed: 1 }) });

export { loadPipeline, type PipelineOptions } from './pipelines/load-pipeline.ts';
export { StableDiffusion, type LoadOptions } from './pipelines/stable-diffusion.ts';
export { generate, type GenerateOptions, type GenerateResult, type StepProgress } from './pipelines/generate.ts';
export { edit, checkEdit, type EditOptions, type EditResult } from './pipelines/edit.ts';
export { crossAttentionMaps, crossAttentionMaps as attention, type AttentionMapsOptions, type AttentionMapsResult, type TokenAttention } from './pipelines/attention-maps.ts';
export { invertImage, type InversionOptions, type InversionProgress, type InvertedImage, type NullTextOptions } from './pipelines/inversion.ts';
export { personalise, parseLoraSpec, type LoraSpec, type Personalisation, type PersonaliseOptions } from './pipelines/personalise.ts';
export { trainTextualInversion, trainLora, trainDreamBooth, type TextualInversionRunOptions, type LoraRunOptions, type DreamBoothRunOptions, type PersonaliseRunOptions, type SampleOptions, type TrainingOutput } from './training/personalise-runs.ts';
export type { TrainingImage, TrainingImages } from './training/training-images.ts';
export type { TrainingProgress, TrainingRunOptions } from './training/training-run.ts';
export { SCHEDULER_NAMES, type SchedulerName } from './schedulers/index.ts';
export { AbortError, isAbortError } from './engine/abort.ts';
export { executionProviders } from './engine/providers.ts';
export { readImage, type ReadImageOptions, type RgbImage } from './io/image.ts';
export { canny, type CannyOptions } from './io/canny.ts';
export { readControlImage, type ControlNetUnit, type ControlPreprocessor } from './pipelines/controlnet.ts';
export type { ControlNetModel } from './models/controlnet.ts';
export { encodePng, writePng, parsePngText, readPngText, type PngTextOptions } from './io/png.ts';
export { formatParameters, parseParameters, type GenerationParameters } from './io/parameters.ts';
