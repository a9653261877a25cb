#!/usr/bin/env node
// The `nuri` command. Nuri is TypeScript run directly through tsx's loader: no build step, so a
// fresh `npm install` is ready to use.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
