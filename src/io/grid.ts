// Image grids: samples side by side, or one attention heat map per prompt token with the token
// written under it. Labels are SVG <text> rendered by sharp (librsvg + the system's fonts),
// wrapped to the tile's width (a long prompt under a 32-px tile takes several lines, never cut).
import sharp from 'sharp';
import { createImage, type Rgb, type RgbImage } from './image.ts';

export interface GridOptions {
  /** Tiles per row; default ceil(sqrt(n)). */
  columns?: number;
  /** Pixels between tiles and around the edge; default 0. */
  padding?: number;
  /** Colour behind and between the tiles, components in [0, 1]; default white. */
  background?: Rgb;
  /** One caption per image, drawn under its tile. */
  labels?: readonly string[];
  /** Caption size in pixels; default 14. */
  fontSize?: number;
}

/**
 * Lays images out row by row in cells the size of the largest image (smaller ones are centred).
 * Tile i sits at column i % columns, row floor(i / columns).
 */
export async function imageGrid(images: readonly RgbImage[], options: GridOptions = {}): Promise<RgbImage> {
  if (images.length === 0) throw new Error('imageGrid: no images');
  const { labels, padding = 0, background = [1, 1, 1], fontSize = 14 } = options;
  const columns = options.columns ?? Math.ceil(Math.sqrt(images.length));
  if (!Number.isInteger(columns) || columns < 1) throw new Error(`imageGrid: columns must be a positive integer, got ${columns}`);
  if (!Number.isInteger(padding) || padding < 0) throw new Error(`imageGrid: padding must be a non-negative integer, got ${padding}`);
  if (labels && labels.length !== images.length) {
    throw new Error(`imageGrid: ${labels.length} labels for ${images.length} images`);
  }

  const rows = Math.ceil(images.length / columns);
  const cellWidth = Math.max(...images.map((image) => image.width));
  const cellHeight = Math.max(...images.map((image) => image.height));
  const lines = labels?.map((label) => wrapLabel(label, cellWidth, fontSize));
  const labelHeight = lines ? Math.ceil(fontSize * (1.5 + LINE_HEIGHT * (Math.max(...lines.map((l) => l.length)) - 1))) : 0;
  const grid = createImage(
    columns * cellWidth + (columns + 1) * padding,
    rows * (cellHeight + labelHeight) + (rows + 1) * padding,
    background,
  );

  const ink = luminance(background) > 0.5 ? 'black' : 'white';
  await Promise.all(
    images.map(async (image, i) => {
      const left = padding + (i % columns) * (cellWidth + padding);
      const top = padding + Math.floor(i / columns) * (cellHeight + labelHeight + padding);
      paste(grid, image, left + ((cellWidth - image.width) >> 1), top + ((cellHeight - image.height) >> 1));
      if (lines) {
        const label = await renderLabel(lines[i], cellWidth, labelHeight, fontSize, ink);
        blend(grid, label, left, top + cellHeight);
      }
    }),
  );
  return grid;
}

/** Copies `tile` into `target` with its top-left corner at (left, top). */
function paste(target: RgbImage, tile: RgbImage, left: number, top: number): void {
  const targetPlane = target.width * target.height;
  const tilePlane = tile.width * tile.height;
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < tile.height; y++) {
      const from = c * tilePlane + y * tile.width;
      target.data.set(tile.data.subarray(from, from + tile.width), c * targetPlane + (top + y) * target.width + left);
    }
  }
}

interface Rgba8 {
  width: number;
  height: number;
  /** HWC, 4 channels, not premultiplied. */
  data: Buffer;
}

// Glyph advance as a share of the font size: ~0.5 on average in sans-serif fonts; 0.6 leaves room
// for wide letters, since the system font is not known here.
const CHAR_WIDTH = 0.6;
const LINE_HEIGHT = 1.2;

/** The label's lines: words wrapped to fit `width`, a word longer than a line cut into pieces. */
export function wrapLabel(text: string, width: number, fontSize: number): string[] {
  const perLine = Math.max(1, Math.floor((width - 2) / (CHAR_WIDTH * fontSize)));
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const pieces = Array.from({ length: Math.ceil([...word].length / perLine) }, (_, k) => [...word].slice(k * perLine, (k + 1) * perLine).join(''));
    for (const piece of pieces) {
      if (line && [...line].length + 1 + [...piece].length <= perLine) line += ` ${piece}`;
      else {
        if (line) lines.push(line);
        line = piece;
      }
    }
  }
  lines.push(line);
  return lines;
}

async function renderLabel(lines: readonly string[], width: number, height: number, fontSize: number, ink: string): Promise<Rgba8> {
  const spans = lines.map((line, k) => `<tspan x="${width / 2}" y="${fontSize * (LINE_HEIGHT * k + 1.1)}">${escapeXml(line)}</tspan>`).join('');
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
    `<text text-anchor="middle" font-family="sans-serif" font-size="${fontSize}" fill="${ink}">${spans}</text></svg>`;
  const { data, info } = await sharp(Buffer.from(svg)).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data };
}

/** Alpha-blends an RGBA overlay onto `target` at (left, top). */
function blend(target: RgbImage, overlay: Rgba8, left: number, top: number): void {
  const plane = target.width * target.height;
  for (let y = 0; y < overlay.height; y++) {
    for (let x = 0; x < overlay.width; x++) {
      const i = (y * overlay.width + x) * 4;
      const alpha = overlay.data[i + 3] / 255;
      if (alpha === 0) continue;
      const j = (top + y) * target.width + left + x;
      for (let c = 0; c < 3; c++) {
        target.data[c * plane + j] = target.data[c * plane + j] * (1 - alpha) + (overlay.data[i + c] / 255) * alpha;
      }
    }
  }
}

function luminance([r, g, b]: Rgb): number {
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
