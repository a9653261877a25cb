// ControlNet (Zhang et al. 2023; diffusers' ControlNetModel): a trainable copy of the UNet's down
// half — conv_in, time embedding, down blocks, mid block, with the UNet's names — that also sees a
// control image (edges, pose, depth …) and returns one residual per UNet skip plus one for the
// mid block. The UNet adds them (UNetForwardOptions.controlResidual).
//
//   control image [B, 3, 8h, 8w] in [0, 1] ─ conditioning embedding (convs, SiLU) ─┐
//   sample [B, 4, h, w] ─ conv_in ───────────────────────────────────────────────(+)─ down blocks ─ mid block
//                                         each skip ─ 1×1 "zero conv" · scale ─► down residuals  │
//                                                         mid output ─ 1×1 "zero conv" · scale ─► mid residual

import { Conv2d, Module, type Tensor, add, joinName, mul, silu } from '../engine/index.ts';
import type { ControlNetConfig } from './checkpoint/controlnet-config.ts';
import { UNet2DConditionModel } from './unet.ts';

export type { ControlNetConfig } from './checkpoint/controlnet-config.ts';

/** Brings the control image to latent size: conv_in, then (conv, stride-2 conv) per level, SiLU after each, and conv_out. */
class ControlNetConditioningEmbedding extends Module {
  readonly conv_in: Conv2d;
  readonly blocks: Conv2d[];
  readonly conv_out: Conv2d;

  constructor(name: string, inChannels: number, widths: readonly number[], outChannels: number) {
    super(name);
    this.conv_in = new Conv2d(joinName(name, 'conv_in'), inChannels, widths[0], 3, { padding: 1 });
    this.blocks = widths.slice(1).flatMap((next, i) => [
      new Conv2d(joinName(name, `blocks.${2 * i}`), widths[i], widths[i], 3, { padding: 1 }),
      new Conv2d(joinName(name, `blocks.${2 * i + 1}`), widths[i], next, 3, { padding: 1, stride: 2 }),
    ]);
    this.conv_out = new Conv2d(joinName(name, 'conv_out'), widths.at(-1)!, outChannels, 3, { padding: 1 });
  }

  forward(image: Tensor): Tensor {
    let x = silu(this.conv_in.forward(image));
    for (const conv of this.blocks) x = silu(conv.forward(x));
    return this.conv_out.forward(x);
  }
}

/** The graph name of residual `index` (a skip's number, or 'mid'): diffusers' output names. */
export function controlResidualName(index: number | 'mid'): string {
  return index === 'mid' ? 'mid_block_res_sample' : `down_block_res_sample_${index}`;
}

export interface ControlResiduals {
  /** One per UNet skip connection, in the order the UNet makes them (12 for SD). */
  down: Tensor[];
  mid: Tensor;
}

export class ControlNetModel extends Module {
  readonly conv_in: Conv2d;
  readonly time_embedding: UNet2DConditionModel['time_embedding'];
  readonly controlnet_cond_embedding: ControlNetConditioningEmbedding;
  readonly down_blocks: UNet2DConditionModel['down_blocks'];
  readonly controlnet_down_blocks: Conv2d[];
  readonly mid_block: UNet2DConditionModel['mid_block'];
  readonly controlnet_mid_block: Conv2d;
  /** Private (#) so that parameters(), which walks the fields, does not see its up half. */
  readonly #unet: UNet2DConditionModel;

  constructor(readonly config: ControlNetConfig) {
    super('');
    const c = config.unet;
    // The down half is the UNet's own modules (same names, as diffusers' ControlNetModel.from_unet
    // copies them); the up half is built here but never used, so it holds no weights.
    const unet = new UNet2DConditionModel(c);
    this.#unet = unet;
    this.conv_in = unet.conv_in;
    this.time_embedding = unet.time_embedding;
    this.down_blocks = unet.down_blocks;
    this.mid_block = unet.mid_block;
    const channels = c.block_out_channels;
    this.controlnet_cond_embedding = new ControlNetConditioningEmbedding('controlnet_cond_embedding', config.conditioning_channels, config.conditioning_embedding_out_channels, channels[0]);
    // One zero conv per skip: conv_in's, then each resnet's and each downsampler's.
    const skipChannels = [channels[0], ...channels.flatMap((ch, i) => new Array<number>(c.layers_per_block[i] + (i < channels.length - 1 ? 1 : 0)).fill(ch))];
    this.controlnet_down_blocks = skipChannels.map((ch, i) => new Conv2d(`controlnet_down_blocks.${i}`, ch, ch, 1));
    this.controlnet_mid_block = new Conv2d('controlnet_mid_block', channels.at(-1)!, channels.at(-1)!, 1);
  }

  /** How much smaller the conditioning embedding makes the control image (8 for SD's). */
  get conditioningDownscale(): number {
    return 2 ** (this.config.conditioning_embedding_out_channels.length - 1);
  }

  /**
   * sample [B, 4, h, w], timestep [B], encoderHiddenStates [B, tokens, C], controlImage
   * [B, 3, h·f, w·f] in [0, 1] (f = conditioningDownscale), conditioningScale [1] or a number
   * → the residuals, already multiplied by the scale.
   */
  forward(sample: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, controlImage: Tensor, conditioningScale: Tensor | number): ControlResiduals {
    const temb = this.time_embedding.forward(this.#unet.timeProjection(timestep));
    const f = { temb, context: encoderHiddenStates, site: () => undefined };
    let x = add(this.conv_in.forward(sample), this.controlnet_cond_embedding.forward(controlImage));
    const skips = [x];
    for (const block of this.down_blocks) {
      const r = block.forward(x, f);
      x = r.out;
      skips.push(...r.skips);
    }
    x = this.mid_block.forward(x, f);
    return {
      down: skips.map((s, i) => mul(this.controlnet_down_blocks[i].forward(s), conditioningScale)),
      mid: mul(this.controlnet_mid_block.forward(x), conditioningScale),
    };
  }
}
