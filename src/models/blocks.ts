// Convolutional building blocks shared by the UNet and the VAE, with diffusers' parameter names:
// the residual block (ResnetBlock2D) and the stride-2 down / nearest-2× up resamplers.

import { Conv2d, GroupNorm, Linear, Module, add, div, joinName, mul, pad, resizeNearestLike, silu, sumPool2x, type Tensor, unsqueeze, upsampleNearest2x } from '../engine/index.ts';

export interface ResnetBlockOptions {
  inChannels: number;
  outChannels: number;
  /** Width of the time embedding; undefined for blocks without one (the VAE's). */
  tembChannels?: number;
  groups?: number;
  eps: number;
  /** The sum of skip and residual is divided by this (diffusers' `output_scale_factor`). */
  outputScaleFactor?: number;
}

/**
 * GroupNorm–SiLU–conv twice, with the projected time embedding added between, and a 1×1
 * `conv_shortcut` on the skip path when the channel count changes.
 */
export class ResnetBlock2D extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj: Linear | undefined;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly conv_shortcut: Conv2d | undefined;
  readonly outputScaleFactor: number;

  constructor(name: string, o: ResnetBlockOptions) {
    super(name);
    const groups = o.groups ?? 32;
    this.norm1 = new GroupNorm(joinName(name, 'norm1'), groups, o.inChannels, o.eps);
    this.conv1 = new Conv2d(joinName(name, 'conv1'), o.inChannels, o.outChannels, 3, { padding: 1 });
    this.time_emb_proj = o.tembChannels === undefined ? undefined : new Linear(joinName(name, 'time_emb_proj'), o.tembChannels, o.outChannels);
    this.norm2 = new GroupNorm(joinName(name, 'norm2'), groups, o.outChannels, o.eps);
    this.conv2 = new Conv2d(joinName(name, 'conv2'), o.outChannels, o.outChannels, 3, { padding: 1 });
    this.conv_shortcut = o.inChannels === o.outChannels ? undefined : new Conv2d(joinName(name, 'conv_shortcut'), o.inChannels, o.outChannels, 1);
    this.outputScaleFactor = o.outputScaleFactor ?? 1;
  }

  /** x [B, Cin, H, W], temb [B, tembChannels] → [B, Cout, H, W] */
  forward(x: Tensor, temb?: Tensor): Tensor {
    let h = this.conv1.forward(silu(this.norm1.forward(x)));
    if (this.time_emb_proj) {
      if (!temb) throw new Error(`${this.name}: this block needs a time embedding`);
      h = add(h, unsqueeze(this.time_emb_proj.forward(silu(temb)), [2, 3]));
    }
    h = this.conv2.forward(silu(this.norm2.forward(h)));
    const skip = this.conv_shortcut ? this.conv_shortcut.forward(x) : x;
    const out = add(skip, h);
    return this.outputScaleFactor === 1 ? out : div(out, this.outputScaleFactor);
  }
}

export interface DownsampleOptions {
  /** A stride-2 3×3 `conv` (true, as in SD) or a 2×2 average pool (no parameters). */
  useConv?: boolean;
  /** The conv's padding. 0 means diffusers' asymmetric pad: one zero row and column after, none before. */
  padding?: number;
}

/** Halves H and W. */
export class Downsample2D extends Module {
  readonly conv: Conv2d | undefined;
  readonly padding: number;

  constructor(name: string, readonly channels: number, o: DownsampleOptions = {}) {
    super(name);
    this.padding = o.padding ?? 1;
    this.conv = o.useConv === false ? undefined : new Conv2d(joinName(name, 'conv'), channels, channels, 3, { stride: 2, padding: this.padding });
  }

  forward(x: Tensor): Tensor {
    if (!this.conv) return mul(sumPool2x(x), 0.25);
    // NCHW pads: [begin N, C, H, W, end N, C, H, W]
    const padded = this.padding === 0 ? pad(x, [0, 0, 0, 0, 0, 0, 1, 1]) : x;
    return this.conv.forward(padded);
  }
}

/**
 * Doubles H and W (nearest-neighbour 2×) then a 3×3 `conv`; given `like`, resizes to its H and W
 * instead — diffusers' `upsample_size`, for sizes a stride-2 conv rounded up.
 */
export class Upsample2D extends Module {
  readonly conv: Conv2d;

  constructor(name: string, readonly channels: number) {
    super(name);
    this.conv = new Conv2d(joinName(name, 'conv'), channels, channels, 3, { padding: 1 });
  }

  forward(x: Tensor, like?: Tensor): Tensor {
    return this.conv.forward(like ? resizeNearestLike(x, like) : upsampleNearest2x(x));
  }
}
