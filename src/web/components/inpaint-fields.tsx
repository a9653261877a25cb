// Inpainting and outpainting over the starting image: the mask, its blur, what the masked area
// starts from, the inpaint area (whole picture, or only masked with its padding), and the margins
// that grow the canvas (the server's mask, maskBlur, inpaintFill, onlyMasked and outpaint fields).

import type { InpaintFill } from '../../pipelines/inpaint.ts';
import { type GenerateForm, INPAINT_FILL_LABELS, OUTPAINT_LABELS, type OutpaintSide } from '../generate-settings.ts';
import { Field, NumberInput } from './field.tsx';
import { MaskEditor } from './mask-editor.tsx';

interface InpaintFieldsProps {
  form: GenerateForm & { initImage: { url: string } };
  set: (patch: Partial<GenerateForm>) => void;
  errors: Record<string, string>;
  /** The mask's size: the job's, or the picture's own when inpainting only masked. */
  width: number;
  height: number;
  /** The picture's own size, once read. */
  picture?: { width: number; height: number };
}

export function InpaintFields({ form, set, errors, width, height, picture }: InpaintFieldsProps) {
  return (
    <>
      <MaskEditor imageUrl={form.initImage.url} width={width} height={height} picture={picture} mask={form.mask} onChange={(mask) => set({ mask })} error={errors.mask} />
      <div class="row">
        <Field label="Mask blur" error={errors.maskBlur} hint="px; soft edge of the repainted area">
          {(id, d) => <NumberInput id={id} name="maskBlur" describedBy={d} value={form.maskBlur} min={0} max={64} step={1} onChange={(maskBlur) => set({ maskBlur })} invalid={!!errors.maskBlur} />}
        </Field>
        <Field label="Masked content" error={errors.inpaintFill} hint="where the mask or the outpaint border starts from, below strength 1">
          {(id, d) => (
            <select id={id} name="inpaintFill" value={form.inpaintFill} aria-describedby={d} onChange={(e) => set({ inpaintFill: e.currentTarget.value as InpaintFill })}>
              {Object.entries(INPAINT_FILL_LABELS).map(([value, label]) => (
                <option key={value} value={value}>
                  {label}
                </option>
              ))}
            </select>
          )}
        </Field>
      </div>
      <div class="row">
        <label class="check">
          <input type="checkbox" name="onlyMasked" checked={form.onlyMasked} onChange={(e) => set({ onlyMasked: e.currentTarget.checked })} /> Only masked: keep the picture's size, draw the masked part at the job's size
        </label>
        {form.onlyMasked && (
          <Field label="Padding" error={errors.onlyMasked} hint="px of the picture around the mask that the model sees">
            {(id, d) => <NumberInput id={id} name="onlyMaskedPadding" describedBy={d} value={form.onlyMaskedPadding} min={0} step={8} onChange={(onlyMaskedPadding) => set({ onlyMaskedPadding })} invalid={!!errors.onlyMasked} />}
          </Field>
        )}
      </div>
      <fieldset class={`outpaint ${errors.outpaint ? 'has-error' : ''}`} aria-describedby={errors.outpaint ? 'outpaint-error' : undefined}>
        <legend>Outpaint: grow the canvas (px, multiples of 8)</legend>
        <div class="row">
          {(Object.entries(OUTPAINT_LABELS) as [OutpaintSide, string][]).map(([side, label]) => (
            <Field key={side} label={label}>
              {(id, d) => (
                <NumberInput id={id} name={`outpaint-${side}`} describedBy={d} value={form.outpaint[side]} min={0} step={8} onChange={(v) => set({ outpaint: { ...form.outpaint, [side]: v } })} invalid={!!errors[`outpaint.${side}`]} />
              )}
            </Field>
          ))}
        </div>
        {errors.outpaint && (
          <small id="outpaint-error" class="error" role="alert" data-field-error>
            {errors.outpaint}
          </small>
        )}
      </fieldset>
    </>
  );
}
