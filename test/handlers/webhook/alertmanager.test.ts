import { Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { initialCheckState, type CheckSpec } from '../../../src/checks/check.js';
import type { HandlerContext, Outcome } from '../../../src/handlers/handler.js';
import { webhookHandler, webhookHandlerType, type WebhookHandler } from '../../../src/handlers/webhook/webhook-handler.js';
import type { Incident, IncidentEventType } from '../../../src/results/incident.js';
import type { Result, State } from '../../../src/results/result.js';
import { TestAlertmanager, type GettableAlert } from '../../helpers/alertmanager.js';
import { checkSpec } from '../../helpers/checks.js';
import { capturingLogger, silentLogger } from '../../helpers/logger.js';

const ctx: HandlerContext = { signal: new AbortController().signal };

let alertmanager: TestAlertmanager | undefined;
const handlers: WebhookHandler[] = [];

/**
 * The Alertmanager of this file, started by the first test that needs it: inside a test, a missing
 * binary fails that test with its message (a failing `beforeAll` would list the tests as skipped).
 */
async function started(): Promise<TestAlertmanager> {
  alertmanager ??= await TestAlertmanager.start();
  return alertmanager;
}

afterEach(async () => {
  await Promise.all(handlers.splice(0).map((handler) => handler.close()));
});

afterAll(async () => {
  await alertmanager?.stop();
});

function setup(am: TestAlertmanager): { handler: WebhookHandler; registry: Registry; errors: () => Record<string, unknown>[] } {
  const parsed = webhookHandlerType.parseOptions({ url: am.url, format: 'alertmanager', retries: 0 });
  if (!parsed.ok) throw new Error(`unexpected option issues: ${JSON.stringify(parsed.issues)}`);
  const registry = new Registry();
  const { logger, lines } = capturingLogger('warn');
  const handler = webhookHandler('alertmanager', parsed.value, { logger, registry });
  handlers.push(handler);
  return { handler, registry, errors: () => lines };
}

function result(state: State, message: string): Result {
  return { state, reason: state === 'ok' ? 'ok' : 'refused', message, metrics: [], startedAt: Date.now(), durationMs: 2 };
}

/** Passes one incident event through the handler and waits until Alertmanager has answered it. */
async function send(handler: WebhookHandler, check: CheckSpec, type: IncidentEventType, incident: Incident, run: Result): Promise<void> {
  const outcome: Outcome = {
    check,
    result: run,
    previous: initialCheckState,
    state: { ...initialCheckState, hardState: run.state, lastResult: run, incident: type === 'resolve' ? null : incident },
    incident: { type, incident },
    logger: silentLogger(),
  };
  handler.process(outcome, ctx);
  await handler.idle();
}

async function delivered(registry: Registry): Promise<number> {
  const values = (await registry.getSingleMetric('vigil_webhook_deliveries_total')?.get())?.values ?? [];
  return values.find((value) => value.labels.result === 'delivered')?.value ?? Number.NaN;
}

async function alertsOf(am: TestAlertmanager, checkId: string): Promise<GettableAlert[]> {
  return (await am.alerts()).filter((alert) => alert.labels.check === checkId);
}

describe('webhook handler against a real Alertmanager', () => {
  it('fires an alert on open, relabels it on a severity change and resolves it', async () => {
    const am = await started();
    const { handler, registry, errors } = setup(am);
    const check = checkSpec({ id: 'web-frontend', command: 'tcp', metadata: { team: 'ops', 'runbook-url': 'https://wiki.example/web', priority: 2 } });
    const openedAt = Date.now() - 1_000;
    const opened: Incident = {
      id: `web-frontend:${openedAt}`,
      checkId: 'web-frontend',
      openedAt,
      updatedAt: openedAt,
      resolvedAt: null,
      state: 'warn',
      worstState: 'warn',
      reason: 'slow',
      acknowledgedAt: null,
      externalId: null,
    };

    await send(handler, check, 'open', opened, result('warn', 'connected in 900 ms'));
    expect(errors()).toEqual([]);
    expect(await delivered(registry)).toBe(1);
    // Alertmanager lists a new alert `unprocessed` until its dispatcher has routed it.
    await vi.waitFor(async () => expect((await alertsOf(am, 'web-frontend')).map((alert) => alert.status.state)).toEqual(['active']), { timeout: 10_000, interval: 50 });
    const [firing] = await alertsOf(am, 'web-frontend');
    expect(firing?.labels).toEqual({
      alertname: 'VigilCheck',
      check: 'web-frontend',
      command: 'tcp',
      severity: 'warning',
      team: 'ops',
      runbook_url: 'https://wiki.example/web',
    });
    expect(firing?.annotations).toEqual({ summary: 'connected in 900 ms', reason: 'refused', incident: opened.id });
    expect(Date.parse(firing?.startsAt ?? '')).toBe(openedAt);
    // Firing for minutes, not until Alertmanager's resolve_timeout: vigil sets endsAt and re-sends.
    expect(Date.parse(firing?.endsAt ?? '')).toBeGreaterThan(Date.now() + 3 * 60_000);

    const updated: Incident = { ...opened, state: 'crit', worstState: 'crit', reason: 'refused', updatedAt: Date.now() };
    await send(handler, check, 'update', updated, result('crit', 'connection refused'));
    expect(await delivered(registry)).toBe(2);
    await vi.waitFor(
      async () => expect((await alertsOf(am, 'web-frontend')).map((alert) => `${alert.labels.severity} ${alert.status.state}`)).toEqual(['critical active']),
      { timeout: 10_000, interval: 50 },
    );

    const resolved: Incident = { ...updated, resolvedAt: Date.now(), updatedAt: Date.now() };
    await send(handler, check, 'resolve', resolved, result('ok', 'connected in 3 ms'));
    expect(await delivered(registry)).toBe(3);
    // Resolved alerts are no longer listed.
    await vi.waitFor(async () => expect(await alertsOf(am, 'web-frontend')).toEqual([]), { timeout: 10_000, interval: 50 });
    expect(errors()).toEqual([]);
  });
});
