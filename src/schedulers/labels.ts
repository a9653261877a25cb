// The names AUTOMATIC1111 gives Nuri's samplers, in its `parameters` text and its API. Kept apart
// from the scheduler classes (a type import only), so the browser page can map them too.

import type { SchedulerName } from './index.ts';

/** The names AUTOMATIC1111 writes in its `parameters` text, so other tools read ours. */
export const SAMPLER_LABELS: Record<SchedulerName, string> = {
  ddpm: 'DDPM',
  ddim: 'DDIM',
  pndm: 'PLMS',
  lms: 'LMS',
  euler: 'Euler',
  'euler-a': 'Euler a',
  'dpmpp-2m': 'DPM++ 2M',
  'dpmpp-2m-karras': 'DPM++ 2M Karras',
  lcm: 'LCM',
};

/** The sampler an A1111 label names (case-insensitive), or undefined for one Nuri does not have. */
export function samplerFromLabel(label: string): SchedulerName | undefined {
  const wanted = label.trim().toLowerCase();
  const entry = Object.entries(SAMPLER_LABELS).find(([, l]) => l.toLowerCase() === wanted);
  return entry?.[0] as SchedulerName | undefined;
}
