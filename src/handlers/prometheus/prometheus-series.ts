import { Histogram, type Metric as PromMetric, type Registry } from 'prom-client';
import type { Metric } from '../../results/metric.js';
import type { Result, State } from '../../results/result.js';
import { escapeLabelValue, labelValueText, sampleValueText } from '../../metrics/exposition-text.js';
import { SAMPLE_TEXT, type SampleTextMetric, type Scrape } from '../../metrics/exposition.js';

/*
 * The series of the `prometheus` handler: one plain record per check, updated in place by each run, and
 * metric objects on the registry that read the records only when it is scraped.
 *
 * prom-client's labelled children hash their labels and allocate on every `set`, and keep an object per
 * series: at 100,000 checks that was most of the process's heap. Its Registry asks no more of a metric
 * than `name`, `help`, `type`, `get()`, `reset()` and, for the text exposition, `getForPromString()`,
 * whose samples may carry `sharedLabels` after their `labels` (its histograms do): the text of a
 * `sharedLabels` object is cached by identity, `labels` are formatted on every scrape. So the labels of a
 * series besides `check` (`command` and `state`, `metric`) are objects shared by every check, and `check`
 * is formatted each time: caching it per check (and `{ check, command, state }` per check and state)
 * saved no measurable scrape time (the registry's own ~1 µs per sample dominates) but kept a string and a
 * weak entry per object for good.
 *
 * `/metrics` does not go through that path: each metric also writes its sample lines itself
 * (`SampleTextMetric`, see server/metrics-exposition.ts), a few hundred at a time, from a snapshot of the
 * records taken once per scrape (so that a check added, removed or re-added during a scrape shows at most
 * once in every family). A line there is the family's name, the check id's escaped text (kept per record:
 * the id itself, no new string, unless it holds `\`, `"` or a line feed), the text of the other labels
 * (made once per command and per Result Metric name, and again only when the registry's default labels
 * change) and the value. Values are formatted on every scrape: all of them take ~10 % of a scrape's CPU,
 * less than keeping the text of the float ones (~12 MB at 100,000 checks) would be worth.
 * `registry.metrics()` still works, and writes the same text.
 */

/** The handler's metrics, in the order they are registered, and exposed. */
const Names = {
  up: 'vigil_check_up',
  state: 'vigil_check_state',
  duration: 'vigil_check_duration_seconds',
  lastDuration: 'vigil_check_last_duration_seconds',
  lastRun: 'vigil_check_last_run_timestamp_seconds',
  attempts: 'vigil_check_attempts',
  runs: 'vigil_check_runs_total',
  metric: 'vigil_check_metric',
  metricTotal: 'vigil_check_metric_total',
} as const;

const DURATION_BUCKETS: readonly number[] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The series of every check seen, shared by the `prometheus` handlers of one registry. */
export interface CheckSeries {
  /** Updates the check's series with one run: its Result, and the check's attempt count after it. */
  recordRun(checkId: string, command: string, result: Result, attempt: number): void;
  /** Forgets every series of the check (the duration histogram is by command: it stays). */
  remove(checkId: string): void;
}

/**
 * The series the `prometheus` handlers keep on this registry: those another handler registered there
 * already, else new ones, registered with their metrics. Throws, registering nothing, when the registry
 * has a metric of one of these names that is not theirs.
 */
export function checkSeriesOn(registry: Registry): CheckSeries {
  const set = seriesSetOn(registry) ?? createSeriesSet();
  for (const metric of set.metrics) {
    const existing = registry.getSingleMetric(metric.name) as object | undefined;
    if (existing !== undefined && existing !== metric) throw conflict(metric, existing);
  }
  for (const metric of set.metrics) {
    // prom-client's typings name only its own classes; its registry uses no more than a RecordMetric has.
    if (registry.getSingleMetric(metric.name) === undefined) registry.registerMetric(metric as PromMetric);
  }
  return set.series;
}

/** `{ check }`: one object per check, the `labels` of every sample of the check. */
interface CheckLabels {
  readonly check: string;
}

/** `{ command, state }` of `vigil_check_runs_total`: four per command, shared by its checks. */
interface RunLabels {
  readonly command: string;
  readonly state: State;
}

/** `{ metric }` of `vigil_check_metric` and `vigil_check_metric_total`: one per name, shared by every check. */
interface MetricLabels {
  readonly metric: string;
}

/**
 * The text after the check id in a sample line (`"` + default labels + shared labels + `} `), made once
 * per scrape's default labels: concurrent scrapes of one registry have the same.
 */
interface LineTail {
  defaults: string | null;
  text: string;
}

/** What every check of a command shares: the labels of its runs, their text, its duration histogram child. */
interface CommandSeries {
  /** The labels of `vigil_check_runs_total` besides `check`, in `States` order. */
  readonly runLabels: readonly [RunLabels, RunLabels, RunLabels, RunLabels];
  /** `,command="…",state="…"` of each of `runLabels`. */
  readonly runText: readonly [string, string, string, string];
  readonly runTails: readonly [LineTail, LineTail, LineTail, LineTail];
  readonly duration: Histogram.Internal<string>;
}

/** A Result Metric name, shared by every check reporting it. */
interface MetricName {
  readonly name: string;
  readonly labels: MetricLabels;
  /** `,metric="…"` */
  readonly text: string;
  readonly tail: LineTail;
}

/** One Result Metric of a check. */
interface ResultSeries {
  readonly metric: MetricName;
  readonly counter: boolean;
  /** What is exposed: a gauge's last value; a counter's count since its series started. */
  value: number;
  /** A counter's last cumulative value as the check reported it, to tell an increase from a restart. */
  last: number;
}

/** What the runs of one check left. */
interface CheckRecord {
  readonly labels: CheckLabels;
  /** The check id as a label value in the text exposition, escaped (the id itself, nearly always). */
  readonly checkText: string;
  command: string;
  /** The series of the command, shared with its other checks. */
  commandSeries: CommandSeries;
  /** The command's child of the duration histogram. */
  duration: Histogram.Internal<string>;
  /** 1 while the last run was ok or warn, else 0. */
  up: number;
  /** Nagios code of the last run's state. */
  state: number;
  lastDurationSeconds: number;
  /** When the last run started, Unix seconds. */
  lastRunSeconds: number;
  attempts: number;
  /** Runs by state since the check got series (or its command changed). */
  ok: number;
  warn: number;
  crit: number;
  unknown: number;
  /** The Result Metrics the check reported, in the order first seen; `null` until it reports one. */
  results: ResultSeries[] | null;
}

/**
 * A sample as prom-client's text formatting takes it: `labels` formatted anew, then `sharedLabels`
 * formatted once per object (it caches their text by identity); a sample without `sharedLabels` gets a
 * fresh `{}`, and a cache entry, each time.
 */
interface TextSample {
  readonly value: number;
  readonly labels: object;
  readonly sharedLabels: object;
}

interface MetricData<V> {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly values: V;
  readonly aggregator: 'sum';
}

/** A metric over the records, as a prom-client Registry uses one, and as `/metrics` writes it. */
interface RecordMetric extends SampleTextMetric {
  /** Not readonly: an OpenMetrics registry renames counters in place, as it does prom-client's own. */
  name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  readonly labelNames: readonly string[];
  /** How a cluster's AggregatorRegistry combines workers' values: prom-client's default. */
  readonly aggregator: 'sum';
  readonly [OWNER]: SeriesSet;
  /** The samples with all their labels in one fresh object each (`getMetricsAsJSON`, cluster workers). */
  get(): Promise<MetricData<{ value: number; labels: Record<string, string> }[]>>;
  /**
   * The samples for the text exposition, made one at a time as the registry reads them (with for…of):
   * each dies young, instead of every check's samples living through the whole scrape.
   */
  getForPromString(): MetricData<Iterable<TextSample>>;
  /** Forgets every check's series: the records behind all the metrics of the set. */
  reset(): void;
}

/** prom-client's histogram, with the name its typings leave out. */
type NamedHistogram = Histogram & { readonly name: string };

/** The records and the metrics exposing them: one set per registry, shared by its handlers. */
interface SeriesSet {
  readonly series: CheckSeries;
  /** In registration order; the duration histogram is prom-client's own. */
  readonly metrics: readonly (RecordMetric | NamedHistogram)[];
}

/** Leads from a metric on a registry back to its set. */
const OWNER = Symbol('vigil.checkSeries');

const NO_LABELS: object = Object.freeze({});

function seriesSetOn(registry: Registry): SeriesSet | undefined {
  for (const name of Object.values(Names)) {
    const existing = registry.getSingleMetric(name) as object | undefined;
    if (existing !== undefined && OWNER in existing) return (existing as RecordMetric)[OWNER];
  }
  return undefined;
}

/** Characters of sample lines per piece a metric hands the exposition writer (about 500 lines): tens of µs of work. */
const PIECE_CHARS = 32 * 1024;

/** The lines `linesOf` writes for each record, handed on in pieces of about `PIECE_CHARS`; a record's lines stay together. */
function* inPieces(records: readonly CheckRecord[], linesOf: (record: CheckRecord) => string): Generator<string, void, undefined> {
  let text = '';
  for (const record of records) {
    text += linesOf(record);
    if (text.length >= PIECE_CHARS) {
      yield text;
      text = '';
    }
  }
  if (text !== '') yield text;
}

/** The label names of the families' samples (own and shared), to leave out of the default labels. */
const CHECK_LABEL: readonly string[] = ['check'];
const RUN_LABELS: readonly string[] = ['check', 'command', 'state'];
const METRIC_LABELS: readonly string[] = ['check', 'metric'];

function createSeriesSet(): SeriesSet {
  const records = new Map<string, CheckRecord>();
  const commands = new Map<string, CommandSeries>();
  const metricNames = new Map<string, MetricName>();
  /** The records of each scrape in progress, taken when its first family is written. */
  const snapshots = new WeakMap<Scrape, readonly CheckRecord[]>();
  // Per command, not per check: few series, observed through a child kept per command.
  const duration = new Histogram({
    name: Names.duration,
    help: 'Durations of check runs, in seconds, by command.',
    labelNames: ['command'],
    buckets: [...DURATION_BUCKETS],
    registers: [],
  }) as NamedHistogram;

  function commandSeriesOf(command: string): CommandSeries {
    let known = commands.get(command);
    if (known === undefined) {
      const runLabels = [
        { command, state: 'ok' },
        { command, state: 'warn' },
        { command, state: 'crit' },
        { command, state: 'unknown' },
      ] as const satisfies readonly RunLabels[];
      const text = (labels: RunLabels): string => `,command="${escapeLabelValue(labels.command)}",state="${labels.state}"`;
      known = {
        runLabels,
        runText: [text(runLabels[0]), text(runLabels[1]), text(runLabels[2]), text(runLabels[3])],
        runTails: [newTail(), newTail(), newTail(), newTail()],
        duration: duration.labels(command),
      };
      commands.set(command, known);
    }
    return known;
  }

  function metricNameOf(name: string): MetricName {
    let known = metricNames.get(name);
    if (known === undefined) {
      known = { name, labels: { metric: name }, text: `,metric="${escapeLabelValue(name)}"`, tail: newTail() };
      metricNames.set(name, known);
    }
    return known;
  }

  function recordOf(checkId: string, command: string): CheckRecord {
    const known = records.get(checkId);
    if (known === undefined) {
      const commandSeries = commandSeriesOf(command);
      const created: CheckRecord = {
        labels: { check: checkId },
        checkText: labelValueText(checkId),
        command,
        commandSeries,
        duration: commandSeries.duration,
        up: 0,
        state: 0,
        lastDurationSeconds: 0,
        lastRunSeconds: 0,
        attempts: 0,
        ok: 0,
        warn: 0,
        crit: 0,
        unknown: 0,
        results: null,
      };
      records.set(checkId, created);
      return created;
    }
    if (known.command !== command) {
      // Runs are counted by command, and the Result Metrics were the old command's: both start over, so
      // that a command change leaves no series behind.
      known.command = command;
      known.commandSeries = commandSeriesOf(command);
      known.duration = known.commandSeries.duration;
      known.ok = known.warn = known.crit = known.unknown = 0;
      known.results = null;
    }
    return known;
  }

  function recordResultMetric(record: CheckRecord, metric: Metric): void {
    const counter = metric.kind === 'counter';
    const value = metric.value;
    // A count below 0 is no counter value (prom-client threw on it).
    if (!Number.isFinite(value) || (counter && value < 0)) return;
    const results = (record.results ??= []);
    let index = 0;
    while (index < results.length && (results[index] as ResultSeries).metric.name !== metric.name) index++;
    let series = results[index];
    if (series?.counter !== counter) {
      // New, or its kind changed: the series of the other metric, from the start.
      series = { metric: metricNameOf(metric.name), counter, value: 0, last: 0 };
      results[index] = series;
    }
    if (!counter) series.value = value;
    else {
      // Below the last value the source restarted its count, and so does the series: a reset to Prometheus.
      series.value = value < series.last ? value : series.value + (value - series.last);
      series.last = value;
    }
  }

  const series: CheckSeries = {
    recordRun(checkId, command, result, attempt) {
      const record = recordOf(checkId, command);
      switch (result.state) {
        case 'ok':
          record.up = 1;
          record.state = 0;
          record.ok++;
          break;
        case 'warn':
          record.up = 1;
          record.state = 1;
          record.warn++;
          break;
        case 'crit':
          record.up = 0;
          record.state = 2;
          record.crit++;
          break;
        case 'unknown':
          record.up = 0;
          record.state = 3;
          record.unknown++;
          break;
      }
      const seconds = result.durationMs / 1000;
      record.lastDurationSeconds = seconds;
      record.lastRunSeconds = result.startedAt / 1000;
      record.attempts = attempt;
      record.duration.observe(seconds);
      for (const metric of result.metrics) recordResultMetric(record, metric);
    },
    remove(checkId) {
      records.delete(checkId);
    },
  };

  function snapshotFor(scrape: Scrape): readonly CheckRecord[] {
    let snapshot = snapshots.get(scrape);
    if (snapshot === undefined) {
      snapshot = Array.from(records.values());
      snapshots.set(scrape, snapshot);
    }
    return snapshot;
  }

  const metrics: (RecordMetric | NamedHistogram)[] = [];
  const set: SeriesSet = { series, metrics };
  const forget = (): void => records.clear();

  const perCheck = (name: string, help: string, read: (record: CheckRecord) => number): RecordMetric =>
    metricOverRecords(
      set,
      { name, help, type: 'gauge', labelNames: ['check'], reset: forget },
      function* () {
        for (const record of records.values()) yield { value: read(record), labels: record.labels, sharedLabels: NO_LABELS };
      },
      (sampleName, scrape) => {
        const head = `${sampleName}{check="`;
        const tail = `"${scrape.defaultLabels(CHECK_LABEL)}} `;
        return inPieces(snapshotFor(scrape), (record) => head + record.checkText + tail + sampleValueText(read(record)) + '\n');
      },
    );

  const resultMetric = (name: string, help: string, counter: boolean): RecordMetric =>
    metricOverRecords(
      set,
      { name, help, type: counter ? 'counter' : 'gauge', labelNames: ['check', 'metric'], reset: forget },
      function* () {
        for (const record of records.values()) {
          if (record.results === null) continue;
          for (const result of record.results) {
            if (result.counter === counter) yield { value: result.value, labels: record.labels, sharedLabels: result.metric.labels };
          }
        }
      },
      (sampleName, scrape) => {
        const head = `${sampleName}{check="`;
        const defaults = scrape.defaultLabels(METRIC_LABELS);
        return inPieces(snapshotFor(scrape), (record) => {
          if (record.results === null) return '';
          let lines = '';
          for (const result of record.results) {
            if (result.counter !== counter) continue;
            const { metric } = result;
            lines += head + record.checkText + tailText(metric.tail, defaults, metric.text) + sampleValueText(result.value) + '\n';
          }
          return lines;
        });
      },
    );

  const runs = metricOverRecords(
    set,
    { name: Names.runs, help: 'Runs of the check, by state.', type: 'counter', labelNames: ['check', 'command', 'state'], reset: forget },
    function* () {
      // Every state, from 0: so that `increase()` sees a check's first crit run.
      for (const record of records.values()) {
        const { labels } = record;
        const { runLabels } = record.commandSeries;
        yield { value: record.ok, labels, sharedLabels: runLabels[0] };
        yield { value: record.warn, labels, sharedLabels: runLabels[1] };
        yield { value: record.crit, labels, sharedLabels: runLabels[2] };
        yield { value: record.unknown, labels, sharedLabels: runLabels[3] };
      }
    },
    (sampleName, scrape) => {
      const head = `${sampleName}{check="`;
      const defaults = scrape.defaultLabels(RUN_LABELS);
      return inPieces(snapshotFor(scrape), (record) => {
        const { runTails, runText } = record.commandSeries;
        const start = head + record.checkText;
        return (
          start + tailText(runTails[0], defaults, runText[0]) + sampleValueText(record.ok) + '\n' +
          start + tailText(runTails[1], defaults, runText[1]) + sampleValueText(record.warn) + '\n' +
          start + tailText(runTails[2], defaults, runText[2]) + sampleValueText(record.crit) + '\n' +
          start + tailText(runTails[3], defaults, runText[3]) + sampleValueText(record.unknown) + '\n'
        );
      });
    },
  );

  metrics.push(
    perCheck(Names.up, 'Whether the last run of the check was ok or warn (1) or not (0).', (record) => record.up),
    perCheck(Names.state, 'State of the last run of the check: 0 ok, 1 warn, 2 crit, 3 unknown.', (record) => record.state),
    duration,
    perCheck(Names.lastDuration, 'Duration of the last run of the check, in seconds.', (record) => record.lastDurationSeconds),
    perCheck(Names.lastRun, 'When the last run of the check started, in Unix seconds.', (record) => record.lastRunSeconds),
    perCheck(Names.attempts, 'Consecutive non-OK results while a problem of the check is being confirmed.', (record) => record.attempts),
    runs,
    resultMetric(Names.metric, 'A value the last run of the check measured, by metric name.', false),
    resultMetric(Names.metricTotal, 'A cumulative count the check reports, by metric name.', true),
  );
  return set;
}

function newTail(): LineTail {
  return { defaults: null, text: '' };
}

/** `"` + the default labels + `shared` + `} `, made again only when the default labels changed. */
function tailText(tail: LineTail, defaults: string, shared: string): string {
  if (tail.defaults !== defaults) {
    tail.text = `"${defaults}${shared}} `;
    tail.defaults = defaults;
  }
  return tail.text;
}

/**
 * A metric over the records: `samples` for prom-client's registry, `text` for the sliced exposition;
 * both read the records when asked.
 */
function metricOverRecords(
  owner: SeriesSet,
  { name, help, type, labelNames, reset }: Pick<RecordMetric, 'name' | 'help' | 'type' | 'labelNames' | 'reset'>,
  samples: () => Iterable<TextSample>,
  text: (sampleName: string, scrape: Scrape) => Iterable<string>,
): RecordMetric {
  const metric: RecordMetric = {
    name,
    help,
    type,
    labelNames,
    aggregator: 'sum',
    [OWNER]: owner,
    getForPromString() {
      return { name: metric.name, help, type, values: samples(), aggregator: 'sum' };
    },
    get() {
      const values = Array.from(samples(), (sample) => ({ value: sample.value, labels: { ...sample.labels, ...sample.sharedLabels } }));
      return Promise.resolve({ name: metric.name, help, type, values, aggregator: 'sum' });
    },
    [SAMPLE_TEXT]: text,
    reset,
  };
  return metric;
}

function conflict(expected: RecordMetric | NamedHistogram, existing: object): Error {
  const wanted = `a ${typeOf(expected)} labelled ${labelNamesOf(expected).join(', ')}`;
  const got = describeMetric(existing);
  // Same kind, same labels, and still not ours: say whose it is, or the message would read "expected X, got X".
  if (typeOf(existing) === typeOf(expected) && sameLabels(labelNamesOf(existing), labelNamesOf(expected))) {
    const whose = OWNER in existing ? 'that other series of the prometheus handler keep' : 'that other code registered';
    return new Error(`Expected metric \`${expected.name}\` on the registry to be ${wanted} of vigil's prometheus handler, got ${got} ${whose}`);
  }
  return new Error(`Expected metric \`${expected.name}\` on the registry to be ${wanted}, got ${got}`);
}

// prom-client keeps the type and the label names on the instance but leaves the latter out of its typings.
function labelNamesOf(metric: object): readonly string[] {
  return (metric as { labelNames?: readonly string[] }).labelNames ?? [];
}

function typeOf(metric: object): string {
  const type = (metric as { type?: unknown }).type;
  return typeof type === 'string' ? type : 'metric';
}

function sameLabels(actual: readonly string[], expected: readonly string[]): boolean {
  return actual.length === expected.length && expected.every((label) => actual.includes(label));
}

function describeMetric(metric: object): string {
  const labels = labelNamesOf(metric);
  return `a ${typeOf(metric)} labelled ${labels.length === 0 ? '(none)' : labels.join(', ')}`;
}
