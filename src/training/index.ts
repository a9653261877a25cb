// Training: the generic resumable loop, its checkpoints, schedules and EMA, and the losses.
export * from './trainer.ts';
export * from './train-step.ts';
export * from './checkpoint.ts';
export * from './lr-schedule.ts';
export * from './ema.ts';
export * from './diffusion-loss.ts';
export * from './vae-loss.ts';
export * from './clip-loss.ts';
