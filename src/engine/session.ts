// The one place that talks to ONNX Runtime: compiles traced graphs into sessions (cached by the hash
// of the emitted graph, so tracing the same model twice reuses its session) and runs them.

import { createHash, randomBytes } from 'node:crypto';
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { arch, availableParallelism, constants as osConstants, cpus, freemem, homedir, setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { dimKey, shapeToString } from './dims.ts';
import { emitGraph, type EmittedGraph, type GraphSpec } from './emit.ts';
import { cacheMaxBytes, markUsed, prunePeriodically } from './graph-cache.ts';
import { removeStaleTemps } from './stale-temp.ts';
import type { WeightDType } from './quantize.ts';
import type { DType, Tensor, TypedData } from './tensor.ts';

export interface RunOptions {
  /** 'cpu' (default); 'cuda', 'coreml', 'dml', … pass through to ONNX Runtime. */
  executionProvider?: string;
  /** Intra-op threads; default $NURI_THREADS, else every core Node sees (see defaultThreads). */
  threads?: number;
  /**
   * Whether idle intra-op threads spin before sleeping (ONNX Runtime's default, true). Two sessions
   * run in quick alternation steal each other's cores while spinning: benchmarks that interleave turn it off.
   */
  spinning?: boolean;
  /** Where graphs with external weights are written; default $NURI_CACHE or ~/.cache/nuri. */
  cacheDir?: string;
  /**
   * Keep ONNX Runtime's optimised form of graphs with external weights (re-laid-out conv weights in a
   * file beside it) and start later sessions from it with optimisation off: the SD-1.5 UNet's session
   * then takes ~4 s instead of ~14–30 s. Costs one more copy of those weights on disk. Default true.
   */
  cacheOptimizedGraphs?: boolean;
  /**
   * 'q8': frozen linear and convolution weights quantised to int8 per output channel when the graph
   * is emitted (quantize.ts); the int8 weights are written once into the graph's cache folder.
   * Default 'fp32', the reference.
   */
  dtype?: WeightDType;
}

/** A concrete tensor value going into or coming out of a session. */
export interface TensorValue {
  data: TypedData;
  shape: readonly number[];
  dtype?: DType;
}

export type Feeds = Record<string, TensorValue | Float32Array>;

// onnxruntime-node has no bfloat16 tensors: such values stay inside graphs (cast from weights).
const ORT_TYPE: Partial<Record<DType, ort.Tensor.Type>> = {
  float32: 'float32',
  float16: 'float16',
  int64: 'int64',
  int32: 'int32',
  bool: 'bool',
};

export class CompiledGraph {
  constructor(
    readonly session: ort.InferenceSession,
    readonly graph: EmittedGraph,
    private readonly inputs: readonly Tensor[],
    private readonly key?: string,
  ) {}

  private released = false;

  /**
   * Frees the session's weights and buffers now, rather than at exit (a pipeline that is done with
   * its text encoder, say). Compiling the same graph twice shares one session: it is freed when the
   * last CompiledGraph holding it is released, so one pipeline never frees another's session.
   * Releasing twice does nothing.
   */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.key === undefined) return this.session.release();
    const entry = sessions.get(this.key);
    if (!entry || --entry.holders > 0) return;
    sessions.delete(this.key);
    await this.session.release();
  }

  /** Runs the graph. Trainable parameters are fed their current values unless given in `feeds`. */
  async run(feeds: Feeds): Promise<Record<string, TensorValue>> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    const bound = new Map<string, number>();
    for (const t of this.inputs) {
      const name = t.origin.kind === 'input' ? t.origin.name : '';
      const given = feeds[name];
      if (given === undefined) throw new Error(`missing input "${name}" ${shapeToString(t.shape)}`);
      if (ArrayBuffer.isView(given) && !t.shape.every((d) => typeof d === 'number')) {
        throw new Error(`input "${name}" ${shapeToString(t.shape)} has symbolic sizes: feed { data, shape }, not a bare array`);
      }
      const value: TensorValue = ArrayBuffer.isView(given) ? { data: given, shape: t.shape as number[] } : given;
      checkShape(name, t, value, bound);
      const type = ORT_TYPE[t.dtype];
      if (!type) throw new Error(`input "${name}": ${t.dtype} inputs are not supported by onnxruntime-node; feed float32 and cast in the graph`);
      ortFeeds[name] = new ort.Tensor(type, value.data as never, value.shape as number[]);
    }
    for (const p of this.graph.trainable) {
      const given = feeds[p.name];
      const data = given === undefined ? p.value() : ArrayBuffer.isView(given) ? given : given.data;
      ortFeeds[p.name] = new ort.Tensor('float32', data as Float32Array, p.shape as number[]);
    }
    const results = await this.session.run(ortFeeds);
    const out: Record<string, TensorValue> = {};
    for (const name of this.graph.outputNames) {
      const r = results[name];
      out[name] = { data: r.data as TypedData, shape: r.dims, dtype: r.type as DType };
    }
    return out;
  }
}

function checkShape(name: string, t: Tensor, value: TensorValue, bound: Map<string, number>): void {
  const size = value.shape.reduce((a, b) => a * b, 1);
  const ok = value.shape.length === t.rank && value.data.length === size;
  const mismatch = () => new Error(`input "${name}": expected shape ${shapeToString(t.shape)}, got [${value.shape.join(', ')}] with ${value.data.length} values`);
  if (!ok) throw mismatch();
  t.shape.forEach((d, i) => {
    if (typeof d === 'number') {
      if (d !== value.shape[i]) throw mismatch();
    } else {
      const key = dimKey(d);
      const seen = bound.get(key);
      if (seen !== undefined && seen !== value.shape[i]) throw new Error(`input "${name}": size ${key} is ${seen} elsewhere but ${value.shape[i]} here`);
      bound.set(key, value.shape[i]);
    }
  });
}

/** Sessions by graph hash, with how many unreleased CompiledGraphs hold each. */
const sessions = new Map<string, { session: Promise<ort.InferenceSession>; holders: number }>();

/**
 * Intra-op threads when a caller names none. Left to itself, onnxruntime-node 1.30 ran one thread on
 * the 2-core development machine (a 3×3 conv: 53 ms with its default, 25 ms with 2 threads), so Nuri
 * asks for every core Node sees; $NURI_THREADS overrides (e.g. the physical cores of an SMT machine).
 */
export function defaultThreads(): number {
  const fromEnv = Number(process.env.NURI_THREADS);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : availableParallelism();
}

export function defaultCacheDir(): string {
  return process.env.NURI_CACHE ?? join(homedir(), '.cache', 'nuri');
}

/** Traces nothing: emits the given graph, then creates (or reuses) its ONNX Runtime session. */
export async function compile(spec: GraphSpec, options: RunOptions = {}): Promise<CompiledGraph> {
  const graph = emitGraph(spec, { weights: options.dtype });
  // The weights' content identity is part of the key: a checkpoint rewritten in place must not be
  // served from the graph (and the optimised copy of its weights) cached for the old contents.
  const sources = [...graph.externalFiles].map(([link, source]) => [link, source, contentIdentity(source)]);
  for (const [name, derived] of graph.derivedFiles) sources.push([name, ...derived.sources.map((source) => `${source}@${contentIdentity(source)}`)]);
  const hash = createHash('sha256')
    .update(graph.bytes)
    .update(JSON.stringify([sources, options.executionProvider, options.threads ?? defaultThreads(), options.spinning ?? true]))
    .digest('hex')
    .slice(0, 24);
  let entry = sessions.get(hash);
  if (!entry) {
    const created = { session: createSession(graph, hash, options), holders: 0 };
    sessions.set(hash, created);
    created.session.catch(() => sessions.get(hash) === created && sessions.delete(hash));
    entry = created;
  }
  entry.holders++;
  try {
    return new CompiledGraph(await entry.session, graph, spec.inputs, hash);
  } catch (error) {
    entry.holders--;
    throw error;
  }
}

async function createSession(graph: EmittedGraph, hash: string, options: RunOptions): Promise<ort.InferenceSession> {
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: [options.executionProvider ?? 'cpu'],
    graphOptimizationLevel: 'all',
    // Memory patterns pre-plan buffers per input shape: on the SD-1.5 VAE decoder at 512² they raised
    // the peak from 1.74 to 3.01 GB for no gain in speed (bench/sd-session-options.ts).
    enableMemPattern: false,
    logSeverityLevel: 3,
    // NURI_ORT_PROFILE=prefix writes ONNX Runtime's per-node timings (Chrome trace JSON) for benchmarks.
    ...(process.env.NURI_ORT_PROFILE ? { enableProfiling: true, profileFilePrefix: process.env.NURI_ORT_PROFILE } : {}),
    intraOpNumThreads: options.threads ?? defaultThreads(),
    ...(options.spinning === false ? { extra: { session: { 'intra_op.allow_spinning': '0' } } } : {}),
  };
  if (!graph.externalFiles.size && !graph.derivedFiles.size) return ort.InferenceSession.create(graph.bytes, sessionOptions);

  const graphsDir = join(options.cacheDir ?? defaultCacheDir(), 'graphs');
  const dir = join(graphsDir, hash);
  // A new folder grows the cache: trim its least recently used folders when this turn's work yields.
  const maxBytes = cacheMaxBytes(); // a malformed NURI_CACHE_MAX_GB is refused here, not in the timer
  if (mkdirSync(dir, { recursive: true })) setTimeout(() => prunePeriodically(graphsDir, { maxBytes, inUse: new Set(sessions.keys()) }), 0).unref();
  else markUsed(dir);
  removeStaleTemps(dir, TEMP_FILE);
  removeStaleTemps(dir, OPTIMIZED_WEIGHTS, (name) => publishedWeights(dir) === name);
  const external: { path: string; data: Buffer }[] = [];
  for (const [link, source] of graph.externalFiles) {
    if (!placeLink(source, join(dir, link))) external.push({ path: link, data: readFileSync(source) });
  }
  for (const [name, derived] of graph.derivedFiles) {
    const path = join(dir, name);
    if (!existsSync(path)) {
      const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      await derived.write(temporary);
      renameSync(temporary, path);
    }
    if (external.length) external.push({ path: name, data: readFileSync(path) });
  }
  const modelPath = join(dir, 'model.onnx');
  if (!existsSync(modelPath)) {
    // Each process writes its own temporary file; the rename publishes a complete graph at once.
    const temporary = `${modelPath}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(temporary, graph.bytes);
    renameSync(temporary, modelPath);
  }
  if (external.length) return ort.InferenceSession.create(graph.bytes, { ...sessionOptions, externalData: external });
  if (options.cacheOptimizedGraphs === false) return ort.InferenceSession.create(modelPath, sessionOptions);
  return createFromOptimized(dir, modelPath, sessionOptions, firstRunOptimization(graph));
}

// ONNX Runtime's optimised graphs hold CPU-specific layouts (NCHWc blocks sized to the vector width)
// and kernels of its own version: the file name says which CPU and version made it.
const OPTIMIZED_NAME = `optimized-${ort.env.versions.common}-${arch()}-${createHash('sha256').update(cpus()[0]?.model ?? '').digest('hex').slice(0, 8)}`;

/**
 * A session from the cached optimised graph when there is one. Otherwise (a graph's first run) the
 * session is optimised here without saving, and a child process (optimize-graph.mjs) started when
 * this process exits writes the optimised graph: saving it doubled the CPU time of the first SD-1.5
 * UNet session and added 1 GB to its peak, which no one should wait for before their first picture.
 */
async function createFromOptimized(dir: string, modelPath: string, sessionOptions: ort.InferenceSession.SessionOptions, firstRunLevel: FirstRunLevel): Promise<ort.InferenceSession> {
  const optimized = join(dir, `${OPTIMIZED_NAME}.onnx`);
  if (existsSync(optimized)) return ort.InferenceSession.create(optimized, { ...sessionOptions, graphOptimizationLevel: 'disabled' });
  const session = await ort.InferenceSession.create(modelPath, { ...sessionOptions, graphOptimizationLevel: firstRunLevel });
  scheduleOptimizedGraph(dir, modelPath, sessionOptions);
  return session;
}

interface BuildJob {
  model: string;
  output: string;
  weights: string;
  publish: string;
  lock: string;
  stats: string;
  level: string;
  threads?: number;
  executionProvider?: string;
}

/** Optimised graphs this process's first runs left for a child to write, by graph folder. */
const pendingBuilds = new Map<string, BuildJob>();
let builderAtExit = false;

/** Leaves this folder's optimised graph to the child started when this process exits. */
function scheduleOptimizedGraph(dir: string, modelPath: string, sessionOptions: ort.InferenceSession.SessionOptions): void {
  if (!builderAtExit) process.once('exit', () => void startBuilder(false));
  builderAtExit = true;
  pendingBuilds.set(dir, {
    model: modelPath,
    // The child puts its own id in place of $PID: its temporary names are its own.
    output: join(dir, `${OPTIMIZED_NAME}.onnx.$PID.tmp`),
    weights: optimizedWeightsName('$PID'),
    publish: join(dir, `${OPTIMIZED_NAME}.onnx`),
    lock: join(dir, '..', '..', BUILDER_LOCK),
    stats: join(dir, `${OPTIMIZED_NAME}.build.json`),
    level: CACHED_OPTIMIZATION,
    threads: sessionOptions.intraOpNumThreads,
    executionProvider: sessionOptions.executionProviders?.[0] as string | undefined,
  });
}

/**
 * Starts one child for every pending graph. At exit it is left running on its own (spawning is
 * synchronous, so it starts even from an 'exit' handler); otherwise the promise says whether every
 * graph was published. A low-priority child yields the cores to whatever this process runs next.
 */
function startBuilder(wait: boolean, lowPriority = false, withinMemory = false): Promise<boolean> {
  const jobs: BuildJob[] = [];
  for (const [dir, job] of pendingBuilds) {
    if (withinMemory && !fitsInFreeMemory(job)) continue; // stays pending
    jobs.push(job);
    pendingBuilds.delete(dir);
  }
  if (!jobs.length) return Promise.resolve(pendingBuilds.size === 0);
  return new Promise((resolve) => {
    try {
      const child = spawn(process.execPath, [BUILDER, JSON.stringify(jobs)], { detached: true, stdio: wait ? ['ignore', 'ignore', 'inherit'] : 'ignore' });
      child.on('error', () => resolve(false));
      child.on('exit', (code) => resolve(code === 0));
      if (lowPriority && child.pid) lowerPriority(child.pid);
      if (!wait) child.unref();
    } catch {
      resolve(false); // no cache this time: the next run tries again
    }
  });
}

/**
 * Whether the machine has room for a build beside what runs now: the child holds its graph's
 * weights in float32 (the SD-1.5 UNet's build peaked at 3.9 GB for 3.4 GB of fp32 weights), so it
 * asks for 2.5× the weights files (fp16 checkpoints double in float32) of memory available.
 */
function fitsInFreeMemory(job: BuildJob): boolean {
  const dir = join(job.model, '..');
  let bytes = 0;
  for (const name of readdirSync(dir)) if (name !== 'model.onnx' && !name.startsWith('optimized-') && !TEMP_FILE.test(name)) bytes += statSync(join(dir, name)).size;
  return 2.5 * bytes < freemem();
}

/**
 * Makes a process the machine's last in line. A detached child leads a session of its own, which
 * Linux schedules as a group of its own (autogroup): its nice value counts only inside the group,
 * so the group's is lowered too. Best effort: a system that refuses keeps the default priority.
 */
function lowerPriority(pid: number): void {
  try {
    setPriority(pid, osConstants.priority.PRIORITY_LOW);
  } catch {}
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(osConstants.priority.PRIORITY_LOW));
  } catch {}
}

/**
 * Writes now the optimised graphs this process's first runs left for a child, and waits for it:
 * true when every one was published (by it or by another process). Otherwise they are written when
 * the process exits; a process that runs on (tests, a server going idle) can call this.
 * `lowPriority`: the child runs niced, so work that arrives meanwhile keeps the cores.
 * `withinMemory`: only graphs whose build fits in the memory available now (fitsInFreeMemory); the
 * others stay pending (false), for a later call or the exit.
 */
export function optimizeCachedGraphs(options: { lowPriority?: boolean; withinMemory?: boolean } = {}): Promise<boolean> {
  return startBuilder(true, options.lowPriority, options.withinMemory);
}

/** Whether graphs run for the first time here still wait for their optimised form to be written. */
export function hasPendingGraphBuilds(): boolean {
  return pendingBuilds.size > 0;
}

function optimizedWeightsName(pid: number | string): string {
  return `${OPTIMIZED_NAME}.${pid}.weights`;
}

type FirstRunLevel = 'basic' | 'all';

/**
 * How a graph's first run (no optimised graph cached yet) optimises its own session. ONNX Runtime's
 * `all` level re-lays out every float convolution weight into NCHWc blocks before the first step, a
 * cost that grows with those weights, while what it buys depends on the feature maps. Measured
 * quiet on the 2-vCPU EPYC (`npx tsx bench/sd-session-options.ts --component unet|vae --size N
 * --variants default,optBasic`): the SD-1.5 UNet's session took 13.6 s at `all` against 3.0 s at
 * `basic`, for steps no faster at 512² (10.1 s against 10.1–10.7) and 5% faster at 256²; the VAE
 * decoder's took 0.4 s against 0.1 s, for a 512² decode 20% faster (14.1 s against 17.6 s). So a
 * graph holding more float conv weights than this starts at `basic`; the graph the child caches
 * for later runs is optimised at `all` either way.
 */
const FIRST_RUN_CONV_WEIGHT_LIMIT = 512 * 2 ** 20;

function firstRunOptimization(graph: EmittedGraph): FirstRunLevel {
  return graph.frozenConvWeightBytes > FIRST_RUN_CONV_WEIGHT_LIMIT ? 'basic' : 'all';
}
/** The level of the optimised graph the child writes and later runs load (optimisation then off). */
const CACHED_OPTIMIZATION = 'all';

const BUILDER = fileURLToPath(new URL('./optimize-graph.mjs', import.meta.url));
/** In the cache folder: held (pid inside) by the one builder that runs at a time. */
const BUILDER_LOCK = 'graph-optimizer.lock';

/** This runtime's optimised graph's weights file, named after the process that wrote it. */
const OPTIMIZED_WEIGHTS = new RegExp(`^${OPTIMIZED_NAME.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)\\.weights$`);

/** The weights file the published optimised graph names (the one weights file to keep). */
function publishedWeights(dir: string): string | undefined {
  const optimized = join(dir, `${OPTIMIZED_NAME}.onnx`);
  if (!existsSync(optimized)) return undefined;
  const bytes = readFileSync(optimized);
  return readdirSync(dir).find((name) => OPTIMIZED_WEIGHTS.test(name) && bytes.includes(name));
}

/** Temporary files of a graph folder: `model.onnx.<pid>.<hex>.tmp`, `optimized-….onnx.<pid>.tmp`. */
const TEMP_FILE = /\.(\d+)(?:\.[0-9a-f]+)?\.tmp$/;

/**
 * Size, modification time (ns) and inode of a weights file: a rewrite in place changes the time, a
 * replacement the inode. Not ctime: the cache's own hard link to the file changes that.
 */
function contentIdentity(path: string): string {
  const s = statSync(path, { bigint: true });
  return `${s.size}:${s.mtimeNs}:${s.dev}:${s.ino}`;
}

/**
 * Hard-links the checkpoint beside the graph; false when the filesystem will not (then bytes are
 * copied). The link is to the file itself: link(2) does not follow a symbolic link, and ONNX
 * Runtime refuses external data that resolves outside the graph's folder, so a checkpoint linked
 * into a models folder is linked by its real path (and a link made to the symbolic link is redone).
 */
function placeLink(source: string, link: string): boolean {
  const real = realpathSync(source);
  const sameFile = () => {
    const [l, s] = [lstatSync(link), statSync(real)];
    return l.ino === s.ino && l.dev === s.dev;
  };
  try {
    if (lstatSync(link, { throwIfNoEntry: false })) {
      if (sameFile()) return true;
      if (!lstatSync(link).isSymbolicLink()) return false;
      unlinkSync(link);
    }
    linkSync(real, link);
    return true;
  } catch {
    // Another process may have linked it first.
    try {
      return sameFile();
    } catch {
      return false;
    }
  }
}

export function clearSessionCache(): void {
  sessions.clear();
}
