// An image in a box whose shape is reserved before the image arrives, so nothing below it moves.

interface ImageBoxProps {
  src?: string;
  alt: string;
  width: number;
  height: number;
  /** Laid over the image (a heat map), semi-transparent. */
  overlay?: string;
  class?: string;
  pixelated?: boolean;
}

export function ImageBox({ src, alt, width, height, overlay, class: className, pixelated = true }: ImageBoxProps) {
  return (
    <div class={`image-box ${className ?? ''} ${pixelated ? 'pixelated' : ''}`} style={{ aspectRatio: `${width} / ${height}` }}>
      {src ? <img src={src} alt={alt} width={width} height={height} /> : <span class="placeholder" aria-hidden="true" />}
      {overlay && <img class="overlay" src={overlay} alt="" aria-hidden="true" width={width} height={height} />}
    </div>
  );
}
