// The one way a model's config.json is read: every failure — missing, empty, truncated, `null`, a
// bad field — comes out as one error that starts with the file's path, so the user knows which of
// a model's five config files to fix.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export type ConfigJson = Record<string, unknown>;

/** The JSON object in `path`; `what` names the component for a missing file ("UNet config"). */
export function readConfigFile(path: string, what = 'config'): ConfigJson {
  if (!existsSync(path)) throw new Error(`no ${what} at ${path}`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read the ${what} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (text.trim() === '') throw new Error(`${path}: the ${what} is empty`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: the ${what} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`${path}: the ${what} must be a JSON object, got ${json === null ? 'null' : Array.isArray(json) ? 'a list' : typeof json}`);
  }
  return json as ConfigJson;
}

/** `folder/config.json` read and parsed by `parse`; a parse error is prefixed with the file's path. */
export function parseConfigFile<T>(path: string, what: string, parse: (json: ConfigJson) => T): T {
  const json = readConfigFile(path, what);
  return inFile(path, () => parse(json));
}

/** Runs `f`, prefixing any error with the file it concerns (unless the message already names it). */
export function inFile<T>(path: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const message = (e as Error).message ?? String(e);
    if (message.includes(path)) throw e;
    throw new Error(`${path}: ${message}`, { cause: e });
  }
}

export function configPath(dir: string): string {
  return join(dir, 'config.json');
}

/** A model folder's `config.json`. */
export function readConfigJson(dir: string): ConfigJson {
  return readConfigFile(configPath(dir), 'config.json');
}
