// The engine's public surface: symbolic tensors, ops, autodiff, modules, sessions, optimisers.
export * from './dims.ts';
export * from './tensor.ts';
export * from './parameter.ts';
export * from './ops/elementwise.ts';
export * from './ops/reduce.ts';
export * from './ops/shape.ts';
export * from './ops/linalg.ts';
export * from './ops/nn.ts';
export * from './autodiff.ts';
export * from './module.ts';
export * from './session.ts';
export * from './optim.ts';
export * from './random.ts';
export * from './safetensors.ts';
export * from './finite.ts';
export { DEFAULT_KERNELS, type GraphSpec, type KernelForms } from './emit.ts';
export * from './quantize.ts';
