// One training step as one graph: the loss traced once, differentiated in-graph, compiled once.
// Each run feeds a micro-batch and returns the loss, a gradient per trainable parameter and any
// scalar metrics (reconstruction vs KL, …) the loss wants to report.

import { type CompiledGraph, type Feeds, type KernelForms, type Parameter, type RunOptions, type Tensor, compile, grad } from '../engine/index.ts';

export interface TrainStepSpec {
  /** Graph inputs fed per micro-batch (latents, noise, timesteps, token ids, …). */
  inputs: readonly Tensor[];
  /** Scalar loss. */
  loss: Tensor;
  /** The parameters to train; they become graph inputs fed with their current values. */
  params: readonly Parameter[];
  /** Extra scalar outputs reported with the loss, e.g. `{ kl, reconstruction }`. */
  metrics?: Record<string, Tensor>;
  run?: RunOptions;
  /** ONNX forms of the graph, e.g. `{ keptBytes }`: how much of the forward the backward may keep. */
  kernels?: Partial<KernelForms>;
}

export interface StepOutput {
  loss: number;
  /** d loss / d param, in the order of `params`. */
  grads: Float32Array[];
  metrics: Record<string, number>;
}

export interface TrainStep {
  readonly params: readonly Parameter[];
  readonly graph: CompiledGraph;
  run(feeds: Feeds): Promise<StepOutput>;
}

const gradName = (p: Parameter) => `grad.${p.name}`;
const metricName = (k: string) => `metric.${k}`;

/**
 * Compiles loss + gradients with `params` trainable. Trainable parameters are graph inputs, so
 * updating their values does not change the graph: the session is built once per run.
 */
export async function compileTrainStep(spec: TrainStepSpec): Promise<TrainStep> {
  if (spec.loss.rank !== 0) throw new Error(`training loss must be a scalar, got ${spec.loss}`);
  if (!spec.params.length) throw new Error('nothing to train: no parameters were given');
  const grads = grad(spec.loss, spec.params.map((p) => p.tensor));
  const outputs: Record<string, Tensor> = { loss: spec.loss };
  spec.params.forEach((p, i) => (outputs[gradName(p)] = grads[i]));
  for (const [k, t] of Object.entries(spec.metrics ?? {})) {
    if (t.rank !== 0) throw new Error(`metric "${k}" must be a scalar, got ${t}`);
    outputs[metricName(k)] = t;
  }
  const graph = await compile({ inputs: spec.inputs, outputs, trainable: spec.params, kernels: spec.kernels }, spec.run);
  const metricKeys = Object.keys(spec.metrics ?? {});
  return {
    params: spec.params,
    graph,
    async run(feeds) {
      const out = await graph.run(feeds);
      return {
        loss: (out.loss.data as Float32Array)[0],
        grads: spec.params.map((p) => out[gradName(p)].data as Float32Array),
        metrics: Object.fromEntries(metricKeys.map((k) => [k, (out[metricName(k)].data as Float32Array)[0]])),
      };
    },
  };
}
