// The dtype field of drawing jobs: fp32 by default, q8 accepted, anything else refused naming the field.

import { describe, expect, it } from 'vitest';
import { jobSchemas } from '../../src/server/schemas.ts';

describe('job dtype', () => {
  const schemas = jobSchemas();
  for (const kind of ['generate', 'edit', 'attention'] as const) {
    it(`${kind}: fp32 by default, q8 accepted, q4 refused`, () => {
      expect(schemas[kind].parse({ prompt: 'a cat' }).dtype).toBe('fp32');
      expect(schemas[kind].parse({ prompt: 'a cat', dtype: 'q8' }).dtype).toBe('q8');
      const refused = schemas[kind].safeParse({ prompt: 'a cat', dtype: 'q4' });
      expect(refused.success).toBe(false);
      expect(refused.error?.issues[0].path).toEqual(['dtype']);
    });
  }
});
