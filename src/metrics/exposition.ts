import { Readable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { Registry, type RegistryContentType } from 'prom-client';
import { defaultLabelsText, escapeText, familyHeader } from './exposition-text.js';

/*
 * `/metrics` written in slices. prom-client's `registry.metrics()` builds the whole exposition as one
 * string in one go: with 100,000 checks, a million samples, that blocked the event loop for seconds and
 * held ~64 MB of text plus every line on the heap. Here the registry's own metrics are still formatted
 * by the registry (they are few), while a metric that can write its own samples (the `prometheus`
 * handler's per-check series) writes them in pieces; between pieces the writer hands the event loop back
 * once a slice of `sliceMs` has been used, and sends the text on as chunks of about `chunkChars`.
 */

/** The key of `SampleTextMetric`'s method. */
export const SAMPLE_TEXT = Symbol('vigil.sampleText');

/** One exposition in the making, as a `SampleTextMetric` sees it. */
export interface Scrape {
  /** The registry speaks OpenMetrics (counters' samples end in `_total`, the exposition in `# EOF`). */
  readonly openMetrics: boolean;
  /**
   * `,name="value"` of the registry's default labels a sample carries after its own, leaving out those
   * named in `labelNames` (the sample's own and shared label names); memoised per array, so pass a constant.
   */
  defaultLabels(labelNames: readonly string[]): string;
}

/**
 * A metric on a prom-client registry that writes the sample lines of its family itself. The writer
 * writes `# HELP`/`# TYPE` and everything around them; the metric yields its samples' lines, each
 * ended with `\n`, in pieces of bounded work (a few hundred lines): between two pieces the writer may
 * let the event loop run, so a piece must not rely on anything staying as it was.
 *
 * `registry.metrics()` must still work for such a metric (`getForPromString()`/`get()`), and write the
 * same text.
 */
export interface SampleTextMetric {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  /**
   * The sample lines. `sampleName` is the escaped name each line starts with (`_total` added for an
   * OpenMetrics counter); `scrape` is the same object for every metric of one exposition, so metrics
   * may key what they share within one (a snapshot of their records) by it.
   */
  [SAMPLE_TEXT](sampleName: string, scrape: Scrape): Iterable<string>;
}

export function isSampleTextMetric(metric: object): metric is SampleTextMetric {
  return SAMPLE_TEXT in metric;
}

export interface ExpositionOptions {
  /**
   * Longest stretch, in ms, the writer keeps the event loop before letting other work run. Default 2:
   * a 100,000-check scrape then delays a timer by ~2–3 ms at worst, at ~10 % more CPU than not yielding.
   */
  readonly sliceMs?: number;
  /** Characters of text gathered before they are handed to the stream. Default 64 Ki. */
  readonly chunkChars?: number;
  /** Stops writing (the stream ends early) when aborted: the client went away. */
  readonly signal?: AbortSignal;
}

const DEFAULT_SLICE_MS = 2;
const DEFAULT_CHUNK_CHARS = 64 * 1024;

/**
 * The registry's text exposition (as `registry.metrics()` writes it, byte for byte), in chunks. Every
 * metric is collected first, together, as `registry.metrics()` does: a collect that throws rejects the
 * first `next()`, before anything was sent. The samples of `SampleTextMetric`s are then written in
 * slices, yielding the event loop between them.
 */
export async function* exposition(registry: Registry<RegistryContentType>, options: ExpositionOptions = {}): AsyncGenerator<string, void, undefined> {
  const sliceMs = options.sliceMs ?? DEFAULT_SLICE_MS;
  const chunkChars = options.chunkChars ?? DEFAULT_CHUNK_CHARS;
  const { signal } = options;
  const openMetrics = (registry.contentType as string) === Registry.OPENMETRICS_CONTENT_TYPE;
  const metrics = registry.getMetricsAsArray() as unknown as RegisteredMetric[];
  if (openMetrics) {
    // What `registry.metrics()` does to every counter, ours and prom-client's, before writing any.
    for (const metric of metrics) if (metric.type === 'counter') metric.name = metric.name.replace(/_total$/, '');
  }
  const formatter = registry as unknown as FamilyFormatter;
  const texts = await Promise.all(metrics.map((metric) => (isSampleTextMetric(metric) ? Promise.resolve(null) : formatter.getMetricsAsString(metric))));
  if (metrics.length === 0) {
    yield openMetrics ? '\n# EOF\n' : '\n';
    return;
  }

  const scrape = createScrape(openMetrics, defaultLabelsOf(registry));
  let pending = '';
  let sliceStart = performance.now();
  for (let index = 0; index < metrics.length; index++) {
    // Families are separated by a blank line in the text format, by nothing in OpenMetrics.
    if (index > 0 && !openMetrics) pending += '\n';
    const text = texts[index];
    if (text !== null && text !== undefined) {
      pending += `${text}\n`;
      continue;
    }
    const metric = metrics[index] as unknown as SampleTextMetric;
    const name = escapeText(metric.name);
    pending += familyHeader(name, metric.help, metric.type);
    for (const piece of metric[SAMPLE_TEXT](openMetrics && metric.type === 'counter' ? `${name}_total` : name, scrape)) {
      pending += piece;
      if (pending.length >= chunkChars) {
        yield pending;
        pending = '';
        if (signal?.aborted) return;
      }
      if (performance.now() - sliceStart >= sliceMs) {
        await nextTurn();
        if (signal?.aborted) return;
        sliceStart = performance.now();
      }
    }
  }
  if (openMetrics) pending += '# EOF\n';
  if (pending !== '') yield pending;
}

/**
 * The exposition as a readable stream of strings for an HTTP response, once its first chunk is written:
 * it rejects, as `registry.metrics()` did, when a metric fails to collect, so that the route can still
 * answer with an error instead of a cut stream. At most one chunk waits in the stream (the response's
 * own buffer holds the rest), and destroying it (the client went away) stops the writing.
 */
export async function expositionStream(registry: Registry<RegistryContentType>, options: Omit<ExpositionOptions, 'signal'> = {}): Promise<Readable> {
  const controller = new AbortController();
  const chunks = exposition(registry, { ...options, signal: controller.signal });
  const first = await chunks.next();
  async function* all(): AsyncGenerator<string, void, undefined> {
    if (first.done === true) return;
    yield first.value;
    yield* chunks;
  }
  const stream = Readable.from(all(), { highWaterMark: 1 });
  // The generator is told at once; `destroy` alone would only stop it at its next chunk.
  stream.once('close', () => controller.abort());
  return stream;
}

/** What the writer reads of a registered metric (prom-client's classes have more). */
interface RegisteredMetric {
  name: string;
  readonly help: string;
  readonly type: string;
}

/**
 * The registry's formatting of one family (`# HELP` to its last sample, no line feed after it): the
 * method `metrics()` and `getSingleMetricAsString()` use, which prom-client's typings leave out.
 */
interface FamilyFormatter {
  getMetricsAsString(metric: object): Promise<string>;
}

function createScrape(openMetrics: boolean, labels: Readonly<Record<string, unknown>>): Scrape {
  const none = Object.keys(labels).length === 0;
  const memo = new Map<readonly string[], string>();
  return {
    openMetrics,
    defaultLabels(labelNames) {
      if (none) return '';
      let text = memo.get(labelNames);
      if (text === undefined) {
        text = defaultLabelsText(labels, labelNames);
        memo.set(labelNames, text);
      }
      return text;
    },
  };
}

/** prom-client keeps a registry's default labels in `_defaultLabels` and offers no getter for them. */
function defaultLabelsOf(registry: Registry<RegistryContentType>): Readonly<Record<string, unknown>> {
  const labels = (registry as unknown as { _defaultLabels?: unknown })._defaultLabels;
  return typeof labels === 'object' && labels !== null ? (labels as Record<string, unknown>) : {};
}
