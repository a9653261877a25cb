// The Studio's inpainting mask without a browser: the brush's strokes, invert, coverage, resize,
// an uploaded mask image read as the server reads one, and the text kept across reloads.

import { describe, expect, it } from 'vitest';
import { decodeMask, emptyMask, encodeMask, invertMask, maskCoverage, maskFromRgba, maskToRgba, paintSegment, refitMask, resizeMask } from '../../src/web/mask.ts';

/** Rows of the mask as strings, '#' painted, '.' kept. */
function picture(mask: { width: number; height: number; data: Float32Array }): string[] {
  return Array.from({ length: mask.height }, (_, y) => Array.from(mask.data.subarray(y * mask.width, (y + 1) * mask.width), (v) => (v ? '#' : '.')).join(''));
}

describe('Studio mask', () => {
  it('a dab paints the pixels whose centres lie within the radius; a stroke paints the capsule between its ends', () => {
    const mask = emptyMask(7, 5);
    paintSegment(mask, { x: 3.5, y: 2.5 }, { x: 3.5, y: 2.5 }, 1.5, 1);
    expect(picture(mask)).toEqual(['.......', '..###..', '..###..', '..###..', '.......']);
    const line = emptyMask(8, 3);
    paintSegment(line, { x: 1.5, y: 1.5 }, { x: 6.5, y: 1.5 }, 0.5, 1);
    expect(picture(line)).toEqual(['........', '.######.', '........']);
    // Erasing clears along its own path only; a brush past the edge is clipped.
    paintSegment(line, { x: 3.5, y: 1.5 }, { x: 4.5, y: 1.5 }, 0.5, 0);
    paintSegment(line, { x: -3, y: -3 }, { x: 0.5, y: 0.5 }, 0.7, 1);
    expect(picture(line)).toEqual(['#.......', '.##..##.', '........']);
  });

  it('invert, coverage and nearest resize', () => {
    const mask = emptyMask(4, 2);
    paintSegment(mask, { x: 0.5, y: 0.5 }, { x: 1.5, y: 0.5 }, 0.5, 1);
    expect(picture(mask)).toEqual(['##..', '....']);
    expect(maskCoverage(mask)).toBe(2 / 8);
    expect(picture(invertMask(mask))).toEqual(['..##', '####']);
    expect(maskCoverage(invertMask(mask))).toBe(6 / 8);
    expect(picture(resizeMask(mask, 8, 4))).toEqual(['####....', '####....', '........', '........']);
    expect(resizeMask(mask, 4, 2)).toBe(mask);
  });

  it("refits a mask between the job's size and the picture's own over the same part of the picture (Only masked)", () => {
    // An 8×4 picture at a 4×4 job: scaled to cover, the job sees its middle four columns.
    const photo = { width: 8, height: 4 };
    const atJob = emptyMask(4, 4);
    paintSegment(atJob, { x: 0.5, y: 0.5 }, { x: 0.5, y: 3.5 }, 0.5, 1); // the job's left column
    const atPicture = refitMask(atJob, 8, 4, photo);
    expect(picture(atPicture)).toEqual(['..#.....', '..#.....', '..#.....', '..#.....']);
    expect(picture(refitMask(atPicture, 4, 4, photo))).toEqual(picture(atJob));
    // At twice the size the job sees the same middle; paint the picture's edge and the job sees none of it.
    expect(picture(refitMask(atJob, 8, 8, photo))).toEqual(Array(8).fill('##......'));
    const edge = emptyMask(8, 4);
    paintSegment(edge, { x: 0.5, y: 0.5 }, { x: 0.5, y: 3.5 }, 0.5, 1);
    expect(maskCoverage(refitMask(edge, 4, 4, photo))).toBe(0);
    // Without the picture's size: a stretch.
    expect(picture(refitMask(atJob, 8, 4))).toEqual(['##......', '##......', '##......', '##......']);
  });

  it('reads a mask image as the server does: over white, grey level binarised at ½ (127 keeps, 128 repaints)', () => {
    const rgba = [
      [255, 255, 255, 255], // white: repaint
      [0, 0, 0, 255], // black: keep
      [127, 127, 127, 255],
      [128, 128, 128, 255],
      [0, 0, 0, 0], // transparent: white underneath, repaint
      [255, 0, 0, 255], // red's grey level is 76: keep
    ].flat();
    expect(picture(maskFromRgba(rgba, 6, 1))).toEqual(['#..##.']);
    // And the PNG the page sends is white where it repaints, opaque everywhere.
    expect(Array.from(maskToRgba(maskFromRgba(rgba, 6, 1), [255, 255, 255, 255], [0, 0, 0, 255]).subarray(0, 8))).toEqual([255, 255, 255, 255, 0, 0, 0, 255]);
  });

  it('keeps a painted mask as run lengths and reads it back; refuses text that is not one', () => {
    const mask = emptyMask(64, 48);
    paintSegment(mask, { x: 5, y: 5 }, { x: 50, y: 40 }, 6, 1);
    const text = encodeMask(mask);
    expect(text.length).toBeLessThan(600);
    expect(decodeMask(text)).toEqual(mask);
    expect(decodeMask(encodeMask(invertMask(mask)))).toEqual(invertMask(mask));
    expect(decodeMask(encodeMask(emptyMask(3, 3)))).toEqual(emptyMask(3, 3));
    for (const bad of ['', '4x4:', '4x4:z', '4x4:1.2', 'x', 42, undefined, '0x4:0']) expect(decodeMask(bad)).toBeUndefined();
  });
});
