// A1111's extra-network syntax in prompts: `<lora:NAME:WEIGHT>` (also `<lyco:…>`, and the newer
// `<lora:NAME:TE_WEIGHT:UNET_WEIGHT>`, of which Nuri uses the first weight for both models, since it
// merges one weight per LoRA). The tags are taken out of the prompt text, as A1111 does.

export interface PromptNetworks {
  /** The prompt without its tags. */
  prompt: string;
  loras: { name: string; weight: number }[];
  /** Tags Nuri cannot apply (hypernetworks, malformed weights), for the notes. */
  ignored: string[];
}

const TAG = /<(\w+):([^>]+)>/g;

export function extractNetworks(prompt: string): PromptNetworks {
  const loras: PromptNetworks['loras'] = [];
  const ignored: string[] = [];
  const text = prompt.replace(TAG, (tag: string, kind: string, body: string) => {
    const type = kind.toLowerCase();
    if (type !== 'lora' && type !== 'lyco') {
      ignored.push(`${tag}: ${kind} networks are not supported`);
      return '';
    }
    const [name, weight = '1'] = body.split(':');
    const value = Number(weight);
    if (!name.trim() || weight.trim() === '' || !Number.isFinite(value)) {
      ignored.push(`${tag}: not <lora:name:weight>`);
      return '';
    }
    const existing = loras.find((l) => l.name === name.trim());
    if (existing) existing.weight = value;
    else loras.push({ name: name.trim(), weight: value });
    return '';
  });
  // Removing a tag leaves doubled spaces and dangling commas ("a cat, , on a hat").
  const cleaned = text
    .replace(/[ \t]{2,}/g, ' ')
    .replace(/\s*,(\s*,)+/g, ',')
    .replace(/^[\s,]+|[\s,]+$/g, '');
  return { prompt: cleaned, loras, ignored };
}
