// The text chunks of a PNG (tEXt, zTXt, iTXt), read from plain bytes with no Node APIs, so the
// server and the browser page (which reads `parameters` from a dropped file) share one reader.
// Decompression is the caller's: zlib in Node, DecompressionStream in a browser.

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export interface PngTextChunk {
  keyword: string;
  /** The text's bytes, still deflated when `compressed`. */
  body: Uint8Array;
  compressed: boolean;
  /** tEXt and zTXt hold Latin-1, iTXt UTF-8. */
  encoding: 'latin1' | 'utf8';
}

/** Walks the chunks of PNG bytes up to IEND and returns the text ones, in file order. */
export function pngTextChunks(png: Uint8Array): PngTextChunk[] {
  if (png.length < 8 || SIGNATURE.some((b, i) => png[i] !== b)) throw new Error('not a PNG file');
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const chunks: PngTextChunk[] = [];
  for (let offset = 8; ; ) {
    if (offset + 12 > png.length) throw new Error('truncated PNG: no IEND chunk');
    const length = view.getUint32(offset);
    const type = latin1(png.subarray(offset + 4, offset + 8));
    const end = offset + 8 + length;
    if (end + 4 > png.length) throw new Error(`truncated PNG: ${type} chunk runs past the end`);
    if (type === 'IEND') return chunks;
    if (type === 'tEXt' || type === 'zTXt' || type === 'iTXt') chunks.push(textChunk(type, png.subarray(offset + 8, end)));
    offset = end + 4;
  }
}

function textChunk(type: 'tEXt' | 'zTXt' | 'iTXt', data: Uint8Array): PngTextChunk {
  const keywordEnd = data.indexOf(0);
  if (keywordEnd < 0) throw new Error(`malformed PNG ${type} chunk`);
  const keyword = latin1(data.subarray(0, keywordEnd));
  if (type === 'tEXt') return { keyword, body: data.subarray(keywordEnd + 1), compressed: false, encoding: 'latin1' };
  // zTXt: compression method, then the deflated text.
  if (type === 'zTXt') return { keyword, body: data.subarray(keywordEnd + 2), compressed: true, encoding: 'latin1' };
  // iTXt: flag, method, language tag NUL, translated keyword NUL, text.
  const languageEnd = data.indexOf(0, keywordEnd + 3);
  const translatedEnd = languageEnd < 0 ? -1 : data.indexOf(0, languageEnd + 1);
  if (translatedEnd < 0) throw new Error('malformed PNG iTXt chunk');
  return { keyword, body: data.subarray(translatedEnd + 1), compressed: data[keywordEnd + 1] === 1, encoding: 'utf8' };
}

/** A chunk's text from its (inflated) body bytes. */
export function decodePngText(chunk: PngTextChunk, body: Uint8Array = chunk.body): string {
  return chunk.encoding === 'utf8' ? new TextDecoder('utf-8').decode(body) : latin1(body);
}

// TextDecoder's "latin1" is windows-1252; PNG text is true ISO-8859-1, byte = code point.
function latin1(bytes: Uint8Array): string {
  let text = '';
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return text;
}
