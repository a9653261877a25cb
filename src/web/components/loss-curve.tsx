// Training loss per step as a small line chart (SVG, scaled to the points so far).

const [W, H, PAD] = [320, 120, 4];

export function LossCurve({ points }: { points: { step: number; loss: number }[] }) {
  const last = points[points.length - 1];
  const label = last ? `Loss curve: ${points.length} steps, last loss ${last.loss.toFixed(4)}` : 'Loss curve: no steps yet';
  let path = '';
  if (points.length > 0) {
    const steps = points.map((p) => p.step);
    const losses = points.map((p) => p.loss);
    const [s0, s1] = [Math.min(...steps), Math.max(...steps)];
    const [l0, l1] = [Math.min(...losses), Math.max(...losses)];
    const x = (s: number) => PAD + ((s - s0) / Math.max(1, s1 - s0)) * (W - 2 * PAD);
    const y = (l: number) => H - PAD - ((l - l0) / (l1 - l0 || 1)) * (H - 2 * PAD);
    path = points.map((p, i) => `${i ? 'L' : 'M'}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ');
  }
  return (
    <figure class="loss-curve">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={label} data-points={points.length} preserveAspectRatio="none">
        <rect x="0" y="0" width={W} height={H} class="frame" />
        {path && <path d={path} class="line" vector-effect="non-scaling-stroke" />}
      </svg>
      <figcaption>{last ? `loss ${last.loss.toFixed(4)} at step ${last.step}` : 'The loss appears here while training.'}</figcaption>
    </figure>
  );
}
