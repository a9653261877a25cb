// The inpainting mask painted over the starting picture, as AUTOMATIC1111's Inpaint tab does: a
// round brush (paint or erase) dragged with the pointer, or moved with the arrow keys and applied
// with Space; clear, invert, or a mask image uploaded instead. The mask has the job's pixel size,
// and the picture is shown as the server reads it (scaled to cover, centred).

import { useId, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { drawMask, maskFromFile } from '../mask-canvas.ts';
import { type Mask, emptyMask, invertMask, maskCoverage, paintSegment, refitMask } from '../mask.ts';

interface MaskEditorProps {
  imageUrl: string;
  /** The job's size: the mask is painted at it. */
  width: number;
  height: number;
  /** The picture's own size, once known: a mask painted at another size is refitted over the same part of it. */
  picture?: { width: number; height: number };
  mask?: Mask;
  onChange: (mask: Mask | undefined) => void;
  error?: string;
}

type Point = { x: number; y: number };

export function MaskEditor({ imageUrl, width, height, picture, mask, onChange, error }: MaskEditorProps) {
  const id = useId();
  const canvas = useRef<HTMLCanvasElement>(null);
  // The mask being painted: strokes change it in place and redraw; it is handed over when a stroke ends.
  const working = useRef<Mask | undefined>(undefined);
  const last = useRef<Point | undefined>(undefined);
  const [brush, setBrush] = useState(() => Math.max(1, Math.round(Math.max(width, height) / 8)));
  const [erase, setErase] = useState(false);
  const [cursor, setCursor] = useState<Point>({ x: width / 2, y: height / 2 });
  const [note, setNote] = useState<string>();
  const maxBrush = Math.max(4, Math.round(Math.max(width, height) / 2));

  const fitted = () => (mask ? refitMask(mask, width, height, picture) : emptyMask(width, height));
  const shown = fitted();
  // Before the browser paints: a canvas given a new size is cleared, and would show empty for a frame.
  useLayoutEffect(() => {
    if (canvas.current) drawMask(canvas.current, shown);
  }, [mask, width, height, picture?.width, picture?.height]);

  const begin = () => {
    const base = fitted();
    working.current = { ...base, data: base.data.slice() };
  };
  const dab = (from: Point, to: Point) => {
    if (!working.current || !canvas.current) return;
    paintSegment(working.current, from, to, brush / 2, erase ? 0 : 1);
    drawMask(canvas.current, working.current);
  };
  const end = () => {
    if (working.current) onChange(working.current);
    working.current = undefined;
    last.current = undefined;
  };

  /** The pointer's place in image pixels (the canvas is stretched over the picture's box). */
  const at = (e: PointerEvent): Point => {
    const box = canvas.current!.getBoundingClientRect();
    return { x: ((e.clientX - box.left) / box.width) * width, y: ((e.clientY - box.top) / box.height) * height };
  };
  const onPointerDown = (e: PointerEvent) => {
    if (e.button !== 0) return;
    e.preventDefault();
    canvas.current!.setPointerCapture(e.pointerId);
    begin();
    const p = at(e);
    dab(p, p);
    last.current = p;
    setCursor(p);
  };
  const onPointerMove = (e: PointerEvent) => {
    const p = at(e);
    setCursor(p);
    if (!last.current) return;
    dab(last.current, p);
    last.current = p;
  };

  // Arrows move the brush by its radius (Shift+arrow paints along the way), Space or Enter paints
  // where it is, [ and ] make it smaller and larger.
  const onKeyDown = (e: KeyboardEvent) => {
    const step = Math.max(1, brush / 2);
    const moves: Record<string, Point> = { ArrowLeft: { x: -step, y: 0 }, ArrowRight: { x: step, y: 0 }, ArrowUp: { x: 0, y: -step }, ArrowDown: { x: 0, y: step } };
    if (e.key in moves) {
      e.preventDefault();
      const to = { x: clamp(cursor.x + moves[e.key].x, 0, width), y: clamp(cursor.y + moves[e.key].y, 0, height) };
      if (e.shiftKey) (begin(), dab(cursor, to), end());
      setCursor(to);
    } else if (e.key === ' ' || e.key === 'Enter') {
      e.preventDefault();
      begin();
      dab(cursor, cursor);
      end();
    } else if (e.key === '[' || e.key === ']') {
      e.preventDefault();
      setBrush((b) => clamp(b + (e.key === ']' ? 1 : -1) * Math.max(1, Math.round(b / 4)), 1, maxBrush));
    }
  };

  const upload = async (file: File) => {
    try {
      onChange(await maskFromFile(file, width, height));
      setNote(`mask read from ${file.name}`);
    } catch (e) {
      setNote(`${file.name}: ${(e as Error).message}`);
    }
  };

  const coverage = maskCoverage(shown);
  const hintId = `${id}-hint`;
  return (
    <fieldset class={`mask-editor ${error ? 'has-error' : ''}`} aria-describedby={error ? `${id}-error` : undefined}>
      <legend>Inpaint: paint where the picture changes</legend>
      <div class="mask-canvas image-box" style={{ aspectRatio: `${width} / ${height}` }}>
        <img src={imageUrl} alt="the starting image under the mask" />
        {/* Its own keys (arrows, Space, [ and ]) paint: an application, not an image, to assistive tools. */}
        <canvas
          ref={canvas}
          width={width}
          height={height}
          tabIndex={0}
          role="application"
          aria-label={`Mask over the starting image, ${Math.round(coverage * 100)}% painted`}
          aria-describedby={hintId}
          onPointerDown={onPointerDown}
          onPointerMove={onPointerMove}
          onPointerUp={end}
          onPointerCancel={end}
          onKeyDown={onKeyDown}
        />
        <span
          class="brush-cursor"
          aria-hidden="true"
          style={{ left: `${(cursor.x / width) * 100}%`, top: `${(cursor.y / height) * 100}%`, width: `${(brush / width) * 100}%`, height: `${(brush / height) * 100}%` }}
        />
      </div>
      <small id={hintId} class="hint">
        Drag to paint. From the keyboard: arrows move the brush, Shift+arrows paint, Space paints a dot, [ and ] resize it.
      </small>
      <div class="row mask-tools">
        <label class="radio">
          <input type="radio" name={`${id}-mode`} checked={!erase} onChange={() => setErase(false)} /> Paint
        </label>
        <label class="radio">
          <input type="radio" name={`${id}-mode`} checked={erase} onChange={() => setErase(true)} /> Erase
        </label>
        <button type="button" class="secondary" onClick={() => onChange(undefined)} disabled={coverage === 0}>
          Clear mask
        </button>
        <button type="button" class="secondary" onClick={() => onChange(invertMask(shown))}>
          Invert mask
        </button>
      </div>
      <label class="field">
        <span>Brush size: {brush} px</span>
        <input type="range" min={1} max={maxBrush} step={1} value={brush} onInput={(e) => setBrush(e.currentTarget.valueAsNumber)} />
      </label>
      <label class="field">
        <span>Upload a mask image (white repaints, black keeps)</span>
        <input type="file" accept="image/png,image/jpeg,image/webp" onChange={(e) => e.currentTarget.files?.[0] && void upload(e.currentTarget.files[0])} />
      </label>
      <p class="hint" role="status">
        {coverage === 0 ? 'Nothing painted: the whole picture is img2img.' : `${(coverage * 100).toFixed(1)}% of the picture is repainted.`}
        {note && ` ${note}`}
      </p>
      {error && (
        <small id={`${id}-error`} class="error" role="alert" data-field-error>
          {error}
        </small>
      )}
    </fieldset>
  );
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}
