// Image grids: samples side by side, or one attention heat map per prompt token with the token
// written under it. Labels are SVG <text> rendered by sharp (librsvg + the system's fonts).
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
  const labelHeight = labels ? Math.ceil(fontSize * 1.5) : 0;
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
      if (labels) {
        const label = await renderLabel(labels[i], cellWidth, labelHeight, fontSize, ink);
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

async function renderLabel(text: string, width: number, height: number, fontSize: number, ink: string): Promise<Rgba8> {
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
    `<text x="${width / 2}" y="${(height + fontSize * 0.7) / 2}" text-anchor="middle" ` +
    `font-family="sans-serif" font-size="${fontSize}" fill="${ink}">${escapeXml(text)}</text></svg>`;
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
