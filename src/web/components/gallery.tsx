// Past results from the server's history, newest first, each with the settings that made it.

import { useEffect, useState } from 'preact/hooks';
import { type Job, listJobs } from '../api.ts';
import { jobSize, settingsLine } from '../generate-settings.ts';
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
