import type { CheckSpec } from '../../checks/check.js';
import type { Incident } from '../../results/incident.js';
import type { Result, State } from '../../results/result.js';

/**
 * The mapping of vigil incidents onto Alertmanager's `POST /api/v2/alerts` format.
 *
 * Alertmanager identifies an alert by its label set alone: labels must stay the same from the first send
 * to the resolution, so they hold only what identifies the problem (check, command, severity, metadata);
 * what changes between runs goes into annotations. An alert is firing while its `endsAt` lies in the
 * future and resolved once it has passed.
 */

/** The `alertname` label of every alert vigil sends. */
export const ALERT_NAME = 'VigilCheck';

/** Path of the alerts endpoint, relative to the Alertmanager base URL. */
export const ALERTS_PATH = 'api/v2/alerts';

/** One element of the list `POST /api/v2/alerts` takes (Alertmanager's `postableAlert`). */
export interface AlertmanagerAlert {
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** RFC 3339. */
  readonly startsAt: string;
  /** RFC 3339: in the future while firing, at or before now once resolved. */
  readonly endsAt: string;
}

/** Alertmanager's `severity` convention: `warning` for `warn`, `critical` for `crit` and `unknown`. */
export function severityOf(state: State): 'warning' | 'critical' {
  return state === 'warn' ? 'warning' : 'critical';
}

/** The labels vigil itself sets; metadata cannot override them. */
const OWN_LABELS = new Set(['alertname', 'check', 'command', 'severity']);
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * The identity of a check's alert: `alertname`, `check` (the check id), `command`, `severity` (of the
 * incident's current state), plus the check's metadata entries whose values are non-empty strings.
 * Metadata keys that are not valid label names are made so (`runbook-url` → `runbook_url`), as
 * Alertmanager 0.25 rejects the whole request for one invalid name; keys starting `__` are reserved
 * by Prometheus and left out.
 */
export function alertLabels(check: CheckSpec, incidentState: State): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(check.metadata)) {
    if (typeof value !== 'string' || value === '') continue;
    const name = labelName(key);
    if (name === null || OWN_LABELS.has(name)) continue;
    labels[name] = value;
  }
  labels.alertname = ALERT_NAME;
  labels.check = check.id;
  labels.command = check.command;
  labels.severity = severityOf(incidentState);
  return labels;
}

function labelName(key: string): string | null {
  const name = LABEL_NAME.test(key) ? key : key.replace(/[^a-zA-Z0-9_]/g, '_').replace(/^(?=[0-9])/, '_');
  return name === '' || name.startsWith('__') ? null : name;
}

/**
 * Annotations: `summary` (the result's message), `reason` (its reason code), `incident` (the incident
 * id) and, once acknowledged, `acknowledged` (RFC 3339).
 */
export function alertAnnotations(result: Result, incident: Incident): Record<string, string> {
  const annotations: Record<string, string> = { summary: result.message, reason: result.reason, incident: incident.id };
  if (incident.acknowledgedAt !== null) annotations.acknowledged = new Date(incident.acknowledgedAt).toISOString();
  return annotations;
}

/**
 * An alert that started at `startsAt` (epoch ms, the incident's `openedAt`) and fires until `endsAt`
 * (epoch ms) unless sent again with a later one.
 */
export function firingAlert(labels: Readonly<Record<string, string>>, annotations: Readonly<Record<string, string>>, startsAt: number, endsAt: number): AlertmanagerAlert {
  return { labels, annotations, startsAt: new Date(startsAt).toISOString(), endsAt: new Date(endsAt).toISOString() };
}

/**
 * The same alert, resolved at `resolvedAt` (epoch ms). Alertmanager refuses an `endsAt` before
 * `startsAt`, which a clock stepping backwards could produce: it is clamped.
 */
export function resolvedAlert(labels: Readonly<Record<string, string>>, annotations: Readonly<Record<string, string>>, startsAt: number, resolvedAt: number): AlertmanagerAlert {
  return { labels, annotations, startsAt: new Date(startsAt).toISOString(), endsAt: new Date(Math.max(resolvedAt, startsAt)).toISOString() };
}

/** A stable key of a label set, to tell whether two alerts are the same one for Alertmanager. */
export function labelsKey(labels: Readonly<Record<string, string>>): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** `<base>/api/v2/alerts`, keeping a path prefix of the base (Alertmanager's `--web.route-prefix`). */
export function alertsUrl(base: string): string {
  const url = new URL(base);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return new URL(ALERTS_PATH, url).toString();
}
