// Reads the `parameters` text chunk of a PNG file the user dropped or picked, in the browser.

import { decodePngText, pngTextChunks } from '../io/png-text.ts';

async function inflate(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new DecompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The file's `parameters` text, or undefined when it has none; throws for a file that is not a PNG. */
export async function readPngParameters(file: Blob): Promise<string | undefined> {
  const chunk = pngTextChunks(new Uint8Array(await file.arrayBuffer())).find((c) => c.keyword === 'parameters');
  if (!chunk) return undefined;
  return decodePngText(chunk, chunk.compressed ? await inflate(chunk.body) : chunk.body);
}
