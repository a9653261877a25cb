// The Studio shell: three pages behind tabs (the URL hash keeps the page), the models catalogue
// they share, and the hand-over of a result from Generate to Edit. Pages stay mounted when hidden
// so a running job keeps its progress while the user looks elsewhere.

import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, type Catalogue, type Job, getCatalogue } from './api.ts';
import { SignIn } from './components/sign-in.tsx';
import { type EditSource, EditPage } from './pages/edit.tsx';
import { GeneratePage } from './pages/generate.tsx';
import { PersonalisePage } from './pages/personalise.tsx';

const PAGES = [
  ['generate', 'Generate'],
  ['edit', 'Edit'],
  ['personalise', 'Personalise'],
] as const;
type PageName = (typeof PAGES)[number][0];

function pageFromHash(): PageName {
  const name = location.hash.replace(/^#\/?/, '');
  return PAGES.some(([p]) => p === name) ? (name as PageName) : 'generate';
}

export function App() {
  const [page, setPage] = useState<PageName>(pageFromHash);
  const [catalogue, setCatalogue] = useState<Catalogue>({ models: [], loras: [], embeddings: [], controlnets: [], vaes: [] });
  const [catalogueError, setCatalogueError] = useState<string>();
  const [editSource, setEditSource] = useState<EditSource>();

  useEffect(() => {
    const onHash = () => setPage(pageFromHash());
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  const reloadCatalogue = useCallback(() => {
    getCatalogue()
      .then((c) => (setCatalogue(c), setCatalogueError(undefined)))
      .catch((e: Error) => setCatalogueError(e instanceof ApiError && e.status === 401 ? 'token' : e.message));
  }, []);
  useEffect(reloadCatalogue, []);

  const openInEdit = (job: Job, url: string) => {
    setEditSource({ kind: 'result', job, url });
    location.hash = '#/edit';
  };

  return (
    <>
      <header class="top">
        <h1>Nuri Studio</h1>
        <nav aria-label="Pages">
          {PAGES.map(([name, label]) => (
            <a key={name} href={`#/${name}`} aria-current={page === name ? 'page' : undefined}>
              {label}
            </a>
          ))}
        </nav>
      </header>
      {catalogueError === 'token' && <SignIn />}
      {catalogueError && catalogueError !== 'token' && (
        <p class="error banner" role="alert">
          Could not read the models: {catalogueError}
        </p>
      )}
      <main>
        <section hidden={page !== 'generate'} aria-label="Generate">
          <GeneratePage catalogue={catalogue} onEdit={openInEdit} />
        </section>
        <section hidden={page !== 'edit'} aria-label="Edit">
          <EditPage catalogue={catalogue} source={editSource} onSource={setEditSource} />
        </section>
        <section hidden={page !== 'personalise'} aria-label="Personalise">
          <PersonalisePage catalogue={catalogue} onTrained={reloadCatalogue} />
        </section>
      </main>
    </>
  );
}
