import { describe, expect, it } from 'vitest';
import { SCHEDULER_NAMES } from '../../src/schedulers/index.ts';
import { SAMPLER_LABELS, samplerFromLabel } from '../../src/schedulers/labels.ts';

describe('sampler labels', () => {
  it('maps every A1111 label back to its sampler, in any case', () => {
    for (const name of SCHEDULER_NAMES) expect(samplerFromLabel(SAMPLER_LABELS[name].toUpperCase())).toBe(name);
    expect(new Set(Object.values(SAMPLER_LABELS)).size).toBe(SCHEDULER_NAMES.length);
  });

  it('knows no sampler Nuri lacks', () => {
    expect(samplerFromLabel('DPM++ SDE Karras')).toBeUndefined();
  });
});
