// Reads the Prometheus text exposition format (version 0.0.4) that every app server's /metrics
// answers with prom-client. Only what the sampler needs: sample lines as name, labels and value;
// `# HELP`/`# TYPE` lines and timestamps are skipped. Written here because the format is small and
// the npm parsers for it are unmaintained; the grammar is
// https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format.

/** One sample line. */
export interface PromSeries {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const namePattern = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

function unescape(value: string): string {
  return value.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
}

/** Parses labels `{a="x",b="y"}` starting at `text[start] === '{'`; returns them and the index after `}`. */
function parseLabels(text: string, start: number): { labels: Record<string, string>; end: number } | null {
  const labels: Record<string, string> = {};
  let i = start + 1;
  for (;;) {
    while (text[i] === ' ' || text[i] === ',') i++;
    if (text[i] === '}') return { labels, end: i + 1 };
    const match = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(text.slice(i));
    if (!match) return null;
    const key = match[0];
    i += key.length;
    while (text[i] === ' ') i++;
    if (text[i] !== '=') return null;
    i++;
    while (text[i] === ' ') i++;
    if (text[i] !== '"') return null;
    i++;
    let raw = '';
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\' && i + 1 < text.length) {
        raw += text[i]! + text[i + 1]!;
        i += 2;
      } else {
        raw += text[i]!;
        i++;
      }
    }
    if (text[i] !== '"') return null;
    i++;
    labels[key] = unescape(raw);
  }
}

function parseValue(token: string): number | null {
  switch (token) {
    case '+Inf':
      return Number.POSITIVE_INFINITY;
    case '-Inf':
      return Number.NEGATIVE_INFINITY;
    case 'NaN':
      return Number.NaN;
    default: {
      const value = Number(token);
      return token !== '' && Number.isFinite(value) ? value : null;
    }
  }
}

/** Every sample line of a scrape; malformed lines are skipped rather than failing the scrape. */
export function parsePrometheusText(text: string): PromSeries[] {
  const out: PromSeries[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const name = namePattern.exec(line)?.[0];
    if (!name) continue;
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      const parsed = parseLabels(rest, 0);
      if (!parsed) continue;
      labels = parsed.labels;
      rest = rest.slice(parsed.end);
    }
    const value = parseValue(rest.trim().split(/\s+/)[0] ?? '');
    if (value === null) continue;
    out.push({ name, labels, value });
  }
  return out;
}

/** The sum of every series of one name (all label sets). */
export function sumOf(series: readonly PromSeries[], name: string): number {
  let sum = 0;
  for (const s of series) if (s.name === name && Number.isFinite(s.value)) sum += s.value;
  return sum;
}
