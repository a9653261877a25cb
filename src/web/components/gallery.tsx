// Past results from the server's history, newest first, each with the settings that made it.

import { useEffect, useState } from 'preact/hooks';
import { type Job, listJobs } from '../api.ts';
import { SAMPLER_LABELS } from '../../schedulers/labels.ts';
import type { SchedulerName } from '../../schedulers/index.ts';
import { jobSeed } from '../generate-settings.ts';
import { ImageBox } from './image-box.tsx';

const PAGE = 24;

interface GalleryProps {
  /** Changes when the history should be read again (a job finished). */
  version: number;
  onUse: (job: Job) => void;
  onImg2img: (job: Job, url: string) => void;
  onEdit: (job: Job, url: string) => void;
}

export function Gallery({ version, onUse, onImg2img, onEdit }: GalleryProps) {
  const [jobs, setJobs] = useState<Job[]>();
  // How far into the history the page has read, and how long it is.
  const [read, setRead] = useState({ offset: 0, total: 0 });
  const [error, setError] = useState<string>();
  const load = (offset: number) =>
    listJobs(offset, PAGE)
      .then((page) => {
        const results = page.jobs.filter((j) => j.type === 'generate' && j.status === 'completed' && j.images.length > 0);
        setJobs((before) => (offset === 0 ? results : [...(before ?? []), ...results]));
        setRead({ offset: offset + page.jobs.length, total: page.total });
      })
      .catch((e: Error) => setError(e.message));
  useEffect(() => void load(0), [version]);

  return (
    <section class="gallery" aria-labelledby="gallery-title">
      <h2 id="gallery-title">Results</h2>
      {error && <p class="error">Could not read the history: {error}</p>}
      {jobs?.length === 0 && <p class="hint">Nothing yet: the images you make appear here.</p>}
      <ul class="cards">
        {jobs?.map((job) => (
          <li class="card" key={job.id} data-job={job.id}>
            {job.images.map((url, i) => (
              <a href={url} target="_blank" rel="noopener" key={url} aria-label={`Open image ${i + 1} of “${String(job.params.prompt)}”`}>
                <ImageBox src={url} alt={String(job.params.prompt)} width={jobSize(job).width} height={jobSize(job).height} />
              </a>
            ))}
            <p class="card-prompt">{String(job.params.prompt)}</p>
            <p class="card-settings">{settingsLine(job)}</p>
            <div class="card-actions">
              <button type="button" onClick={() => onUse(job)} aria-label={`Use these settings: ${String(job.params.prompt)}`}>
                Use these settings
              </button>
              <button type="button" class="secondary" onClick={() => onImg2img(job, job.images[0])} aria-label={`img2img from ${String(job.params.prompt)}`}>
                img2img
              </button>
              <button type="button" class="secondary" onClick={() => onEdit(job, job.images[0])} aria-label={`Edit ${String(job.params.prompt)}`}>
                Edit
              </button>
            </div>
          </li>
        ))}
      </ul>
      {read.offset < read.total && (
        <button type="button" class="secondary more" onClick={() => void load(read.offset)}>
          Show older results
        </button>
      )}
    </section>
  );
}

/** The size the job made (the server records it in info when the request left it to the model). */
export function jobSize(job: Job): { width: number; height: number } {
  const pick = (key: 'width' | 'height') => [job.params[key], job.info[key]].find((v): v is number => typeof v === 'number') ?? 1;
  return { width: pick('width'), height: pick('height') };
}

/** "seed 42 · 20 steps · DDIM · CFG 7.5 · 64×64 · model". */
export function settingsLine(job: Job): string {
  const p = job.params;
  const parts = [
    jobSeed(job) !== undefined && `seed ${jobSeed(job)}`,
    p.steps !== undefined && `${String(p.steps)} steps`,
    typeof p.scheduler === 'string' && (SAMPLER_LABELS[p.scheduler as SchedulerName] ?? p.scheduler),
    p.guidance !== undefined && `CFG ${String(p.guidance)}`,
    jobSize(job).width > 1 && `${jobSize(job).width}×${jobSize(job).height}`,
    typeof p.model === 'string' && p.model,
    typeof p.initImage === 'string' && `${p.mask !== undefined ? 'inpaint' : p.outpaint !== undefined ? 'outpaint' : 'img2img'} ${String(p.strength ?? '')}`,
    Array.isArray(p.controlnet) && p.controlnet.length > 0 && `ControlNet ${p.controlnet.map((c: { model?: unknown }) => String(c.model)).join(', ')}`,
  ];
  return parts.filter(Boolean).join(' · ');
}
