// AUTOMATIC1111's sampler names and Nuri's schedulers. A1111 (from 1.9) splits a sampler into
// `sampler_name` ("DPM++ 2M") and `scheduler` ("Karras"); older clients send the joined name
// ("DPM++ 2M Karras") or the legacy `sampler_index`. All three forms land on one Nuri scheduler.

import { SCHEDULER_NAMES, type SchedulerName } from '../../schedulers/index.ts';
import { SAMPLER_LABELS } from '../../schedulers/labels.ts';

export interface A1111Sampler {
  /** The name A1111 lists and writes into infotexts (Nuri's PNGs carry the same label). */
  name: string;
  aliases: string[];
  options: Record<string, string>;
  scheduler: SchedulerName;
}

// k-diffusion's historical aliases, as A1111 lists them.
const ALIASES: Record<SchedulerName, string[]> = {
  ddpm: ['ddpm'],
  ddim: ['ddim'],
  pndm: ['plms'],
  lms: ['k_lms'],
  euler: ['k_euler'],
  'euler-a': ['k_euler_a', 'k_euler_ancestral'],
  'dpmpp-2m': ['k_dpmpp_2m'],
  'dpmpp-2m-karras': ['k_dpmpp_2m_ka'],
  lcm: ['k_lcm'],
};

export const A1111_SAMPLERS: readonly A1111Sampler[] = SCHEDULER_NAMES.map((scheduler): A1111Sampler => ({
  name: SAMPLER_LABELS[scheduler],
  aliases: ALIASES[scheduler],
  options: scheduler === 'dpmpp-2m-karras' ? { scheduler: 'karras' } : {},
  scheduler,
}));

/** A1111's noise-schedule choices (`scheduler` field, GET /sdapi/v1/schedulers) that Nuri can honour. */
export const A1111_SCHEDULES = [
  { name: 'automatic', label: 'Automatic', aliases: null, default_rho: -1, need_inner_model: false },
  { name: 'uniform', label: 'Uniform', aliases: null, default_rho: -1, need_inner_model: true },
  { name: 'karras', label: 'Karras', aliases: null, default_rho: 7, need_inner_model: false },
] as const;

/** The A1111 sampler default of the API (`sampler_index` = "Euler"). */
export const DEFAULT_SAMPLER = 'Euler';

const norm = (name: string) => name.trim().toLowerCase();

/**
 * Resolves `sampler_name` (+ optional `scheduler`) to a Nuri scheduler. Returns undefined for an
 * unknown sampler; `note` says when the schedule could not be honoured.
 */
export function resolveSampler(samplerName: string, schedule?: string | null): { scheduler: SchedulerName; label: string; note?: string } | undefined {
  const wanted = norm(samplerName);
  const sampler = A1111_SAMPLERS.find((s) => norm(s.name) === wanted || s.aliases.includes(wanted) || s.scheduler === wanted);
  if (!sampler) return undefined;
  const kind = schedule ? norm(schedule) : 'automatic';
  if (kind === 'automatic' || kind === 'uniform' || kind === 'normal') return { scheduler: sampler.scheduler, label: sampler.name };
  if (kind === 'karras' && (sampler.scheduler === 'dpmpp-2m' || sampler.scheduler === 'dpmpp-2m-karras')) {
    return { scheduler: 'dpmpp-2m-karras', label: SAMPLER_LABELS['dpmpp-2m-karras'] };
  }
  return {
    scheduler: sampler.scheduler,
    label: sampler.name,
    note: `scheduler ${JSON.stringify(schedule)} is not available with ${sampler.name}; its own noise schedule was used`,
  };
}

export function samplerNames(): string[] {
  return A1111_SAMPLERS.map((s) => s.name);
}
