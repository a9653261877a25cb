// A picture's own size in pixels, as the browser reads it: for an uploaded picture that keeps its
// size (the Edit page's source; "Only masked" inpainting, whose mask is painted at it).

import { useEffect, useState } from 'preact/hooks';

export function imageSize(url: string): Promise<{ width: number; height: number }> {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve({ width: image.naturalWidth, height: image.naturalHeight });
    image.onerror = () => reject(new Error('that file is not an image the browser can read'));
    image.src = url;
  });
}

/** The size of the picture at `url` once loaded; undefined before, without a url, or when it will not load. */
export function useImageSize(url: string | undefined): { width: number; height: number } | undefined {
  const [size, setSize] = useState<{ url: string; width: number; height: number }>();
  useEffect(() => {
    if (!url) return;
    let current = true;
    imageSize(url).then(
      (s) => current && setSize({ url, ...s }),
      () => current && setSize(undefined),
    );
    return () => {
      current = false;
    };
  }, [url]);
  return size && size.url === url ? { width: size.width, height: size.height } : undefined;
}
