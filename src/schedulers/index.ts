// Noise schedules and samplers, by name. Each takes a diffusers scheduler_config.json (any class's:
// fields a sampler does not use are ignored, absent ones take that sampler's diffusers default).

import type { DiffusersSchedulerConfig } from './config.ts';
import { DDIMScheduler } from './ddim.ts';
import { DDPMScheduler } from './ddpm.ts';
import { DPMSolverMultistepScheduler } from './dpm-solver.ts';
import { EulerAncestralDiscreteScheduler } from './euler-ancestral.ts';
import { EulerDiscreteScheduler } from './euler.ts';
import { LCMScheduler } from './lcm.ts';
import { LMSDiscreteScheduler } from './lms.ts';
import { PNDMScheduler } from './pndm.ts';
import type { Scheduler } from './scheduler.ts';

export const SCHEDULER_NAMES = ['ddpm', 'ddim', 'pndm', 'lms', 'euler', 'euler-a', 'dpmpp-2m', 'dpmpp-2m-karras', 'lcm'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/** diffusers' class name for each sampler (what `_class_name` in a config says). */
export const DIFFUSERS_CLASS_NAMES: Record<SchedulerName, string> = {
  ddpm: 'DDPMScheduler',
  ddim: 'DDIMScheduler',
  pndm: 'PNDMScheduler',
  lms: 'LMSDiscreteScheduler',
  euler: 'EulerDiscreteScheduler',
  'euler-a': 'EulerAncestralDiscreteScheduler',
  'dpmpp-2m': 'DPMSolverMultistepScheduler',
  'dpmpp-2m-karras': 'DPMSolverMultistepScheduler',
  lcm: 'LCMScheduler',
};

/**
 * The sampler a model's scheduler_config.json names (`_class_name`), for a run that names none.
 * PNDM — what every SD-1.x release and conversion writes, chosen by no one in particular — and
 * classes Nuri lacks give DDIM; a few-step model's own (LCM, SD-Turbo's trailing Euler) is kept.
 */
export function defaultSchedulerFor(config: DiffusersSchedulerConfig): SchedulerName {
  const className = config._class_name;
  if (className === 'DPMSolverMultistepScheduler') return config.use_karras_sigmas === true ? 'dpmpp-2m-karras' : 'dpmpp-2m';
  return SCHEDULER_NAMES.find((name) => name !== 'pndm' && DIFFUSERS_CLASS_NAMES[name] === className) ?? 'ddim';
}

export function createScheduler(name: SchedulerName, config: DiffusersSchedulerConfig = {}): Scheduler {
  switch (name) {
    case 'ddpm':
      return new DDPMScheduler(config);
    case 'ddim':
      return new DDIMScheduler(config);
    case 'pndm':
      return new PNDMScheduler(config);
    case 'lms':
      return new LMSDiscreteScheduler(config);
    case 'euler':
      return new EulerDiscreteScheduler(config);
    case 'euler-a':
      return new EulerAncestralDiscreteScheduler(config);
    case 'dpmpp-2m':
      return new DPMSolverMultistepScheduler({ ...config, algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: false });
    case 'dpmpp-2m-karras':
      return new DPMSolverMultistepScheduler({ ...config, algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: true });
    case 'lcm':
      return new LCMScheduler(config);
    default:
      throw new Error(`unknown scheduler ${JSON.stringify(name)}; expected one of ${SCHEDULER_NAMES.join(', ')}`);
  }
}

export { alphasCumprodFromBetas, linspaceFloat32, makeBetas, type BetaSchedule } from './betas.ts';
export type { CommonConfig, DiffusersSchedulerConfig, PredictionType } from './config.ts';
export { DDIMScheduler, ddimTransfer, type DDIMConfig, type DDIMStepOptions } from './ddim.ts';
export { DDPMScheduler, type DDPMConfig } from './ddpm.ts';
export { DPMSolverMultistepScheduler, type DPMSolverConfig } from './dpm-solver.ts';
export { EulerAncestralDiscreteScheduler } from './euler-ancestral.ts';
export { EulerDiscreteScheduler } from './euler.ts';
export { LCMScheduler, type LCMConfig } from './lcm.ts';
export { LMSDiscreteScheduler, type LMSStepOptions } from './lms.ts';
export { PNDMScheduler, type PNDMConfig } from './pndm.ts';
export { addNoiseVp, img2imgTimesteps, velocity, type Scheduler, type StepOptions, type StepResult } from './scheduler.ts';
export { SigmaScheduler } from './sigma-scheduler.ts';
export { karrasSigmas, sigmasFromAlphasCumprod, sigmaToTimestep } from './sigmas.ts';
export { img2imgStart, spacedTimesteps, type TimestepSpacing } from './timesteps.ts';
