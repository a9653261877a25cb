// The checkpoint layer: everything that turns files on disk into a model's config and bound
// weights. Model files (unet.ts, vae.ts, clip-*.ts) describe architecture; loading uses these.
//
// Component loaders (components.ts): loadUNet, loadVae, loadAutoencoderTiny, loadClipTextModel,
// loadClipVisionModel, loadClipModel — all (dir, { variant }).
// Each is four steps:
//   const config = parseConfigFile(configPath(dir), 'VAE config', parseVaeConfig); // errors start with the file's path
//   const weights = openWeights(dir, 'diffusion_pytorch_model', variant);          // plain / fp16 / sharded index
//   checkLayerCounts(weights, configPath(dir), [...]);                               // config vs tensor names, before building
//   bindWeights(model.parameters(), weights, { what: 'VAE', aliases, sameBytes, ignore });
//
// - config-file.ts: readConfigFile / parseConfigFile / readConfigJson / inFile — one error style:
//   `<path>: <what is wrong, naming the field>`.
// - config-reader.ts: ConfigReader(json) reads fields by their snake_case names with defaults and
//   bounds (int, number, bool, oneOf, ints, perBlock, types, only): `"field" must be …, got …`.
// - unet-config.ts, vae-config.ts, autoencoder-tiny-config.ts, clip-config.ts, controlnet-config.ts: each model's
//   config type with diffusers' / transformers' field names, and its parser (parseVaeConfig, …).
// - bounds.ts: CONFIG_BOUNDS, boundedInt, boundedNumber — every size in a config is bounded.
// - weights.ts: findWeights(dir, stem, variant?) picks the file; Weights.open(path) opens a
//   .safetensors file or a `*.safetensors.index.json` and its shards as one name → tensor lookup
//   (names, has, fileOf, entry); Weights.of(file) wraps an open SafetensorsFile.
// - bind.ts: bindWeights(params, weights, options) binds by name (plus aliases) and reports
//   missing, misshapen and unexpected tensors in one error; bindLocated(params, locate, what, from)
//   does the same through a locator (single files, fused q/k/v rows, two folders into one model).
// - layer-counts.ts: checkLayerCounts(weights, configPath, expectations).

export * from './autoencoder-tiny-config.ts';
export * from './bind.ts';
export * from './bounds.ts';
export * from './clip-config.ts';
export * from './components.ts';
export * from './config-file.ts';
export * from './config-reader.ts';
export * from './controlnet-config.ts';
export * from './layer-counts.ts';
export * from './unet-config.ts';
export * from './vae-config.ts';
export * from './weights.ts';
