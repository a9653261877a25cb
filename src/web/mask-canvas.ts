// The mask between the page's canvases and files: drawn as a tint over the picture, sent as a black
// and white PNG, and read from a mask image the user uploads (placed as the server places it).

import { type Mask, maskFromRgba, maskToRgba } from './mask.ts';

const TINT = [230, 40, 60, 150];
const CLEAR = [0, 0, 0, 0];

/** Shows the mask on a canvas of its size: tinted where it repaints, see-through elsewhere. */
export function drawMask(canvas: HTMLCanvasElement, mask: Mask): void {
  if (canvas.width !== mask.width || canvas.height !== mask.height) [canvas.width, canvas.height] = [mask.width, mask.height];
  canvas.getContext('2d')!.putImageData(new ImageData(maskToRgba(mask, TINT, CLEAR), mask.width, mask.height), 0, 0);
}

/** The PNG the server reads as a mask: white repaints, black keeps, opaque (it flattens onto white). */
export function maskPng(mask: Mask): Promise<Blob> {
  const canvas = document.createElement('canvas');
  [canvas.width, canvas.height] = [mask.width, mask.height];
  canvas.getContext('2d')!.putImageData(new ImageData(maskToRgba(mask, [255, 255, 255, 255], [0, 0, 0, 255]), mask.width, mask.height), 0, 0);
  return new Promise((resolve, reject) => canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error('the browser could not make a PNG of the mask'))), 'image/png'));
}

/**
 * A mask image file at width × height: scaled to cover and centred (the server's fit for masks
 * and pictures), see-through parts over white, then black and white at ½.
 */
export async function maskFromFile(file: Blob, width: number, height: number): Promise<Mask> {
  const bitmap = await createImageBitmap(file).catch(() => {
    throw new Error('not an image the browser can read');
  });
  const canvas = document.createElement('canvas');
  [canvas.width, canvas.height] = [width, height];
  const context = canvas.getContext('2d')!;
  const scale = Math.max(width / bitmap.width, height / bitmap.height);
  const [w, h] = [bitmap.width * scale, bitmap.height * scale];
  context.drawImage(bitmap, (width - w) / 2, (height - h) / 2, w, h);
  bitmap.close();
  // Alpha stays in the pixels: maskFromRgba lays them over white.
  return maskFromRgba(context.getImageData(0, 0, width, height).data, width, height);
}

/** A picked file as a data: URL, which (unlike a blob: URL) still shows after a reload. */
export function fileDataUrl(file: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error ?? new Error('the file could not be read'));
    reader.readAsDataURL(file);
  });
}
