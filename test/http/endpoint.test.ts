import { Gauge, register as globalRegistry, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { Health } from '../../src/core/health.js';
import { startHttpEndpoint, type HttpEndpoint, type HttpEndpointOptions } from '../../src/http/endpoint.js';
import { capturingLogger, silentLogger } from '../helpers/logger.js';

const healthy: Health = { status: 'ok', instanceId: 'vigil-a', epoch: 3, version: '0.1.0', uptimeSeconds: 42, checks: 7 };

const started: HttpEndpoint[] = [];

async function start(options: Partial<HttpEndpointOptions> = {}): Promise<HttpEndpoint> {
  const endpoint = await startHttpEndpoint({
    host: '127.0.0.1',
    port: 0,
    registry: new Registry(),
    health: () => healthy,
    logger: silentLogger(),
    ...options,
  });
  started.push(endpoint);
  return endpoint;
}

afterEach(async () => {
  await Promise.all(started.splice(0).map((endpoint) => endpoint.close()));
});

describe('HTTP endpoint', () => {
  it('listens on the given host and a free port', async () => {
    const endpoint = await start();
    expect(endpoint.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(endpoint.url).not.toBe('http://127.0.0.1:0');
  });

  it('serves the given registry on /metrics, not the global one', async () => {
    const registry = new Registry();
    new Gauge({ name: 'vigil_test_answer', help: 'a test metric', registers: [registry] }).set(42);
    const globalOnly = new Gauge({ name: 'vigil_test_global_only', help: 'registered on the global registry' });
    globalOnly.set(1);
    try {
      const endpoint = await start({ registry });
      const response = await fetch(`${endpoint.url}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(registry.contentType);
      const text = await response.text();
      expect(text).toContain('vigil_test_answer 42');
      expect(text).not.toContain('vigil_test_global_only');
    } finally {
      globalRegistry.removeSingleMetric('vigil_test_global_only');
    }
  });

  it('answers /healthz with the health as JSON and 200 while ok', async () => {
    const endpoint = await start();
    const response = await fetch(`${endpoint.url}/healthz`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await response.json()).toEqual(healthy);
  });

  it('answers /healthz with 503 while stopping, asking health on every request', async () => {
    let status: Health['status'] = 'ok';
    const endpoint = await start({ health: () => Promise.resolve({ ...healthy, status }) });
    expect((await fetch(`${endpoint.url}/healthz`)).status).toBe(200);
    status = 'stopping';
    const response = await fetch(`${endpoint.url}/healthz`);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ status: 'stopping', instanceId: 'vigil-a', epoch: 3 });
  });

  it('answers unknown routes with 404 JSON', async () => {
    const endpoint = await start();
    const response = await fetch(`${endpoint.url}/nope?x=1`);
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await response.json()).toEqual({ error: 'not found', details: 'no route for GET /nope?x=1' });
  });

  it('answers a failing route with 500 JSON and logs the error', async () => {
    const { logger, lines } = capturingLogger();
    const endpoint = await start({ health: () => Promise.reject(new Error('queue unreachable')), logger });
    const response = await fetch(`${endpoint.url}/healthz`);
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'internal server error', details: 'queue unreachable' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 50, msg: 'HTTP request failed', method: 'GET', url: '/healthz', err: { message: 'queue unreachable' } });
  });

  it('answers client errors with their status as JSON', async () => {
    const endpoint = await start({
      routes(app) {
        app.post('/echo', (request) => request.body);
      },
    });
    const response = await fetch(`${endpoint.url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: string; details: string };
    expect(body.error).toBe('bad request');
    expect(body.details).toMatch(/JSON/);
  });

  it('adds the caller’s routes before listening', async () => {
    const endpoint = await start({
      async routes(app) {
        await Promise.resolve();
        app.get('/api/checks', () => ({ checks: ['web'] }));
      },
    });
    const response = await fetch(`${endpoint.url}/api/checks`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ checks: ['web'] });
  });

  it('passes on an error of the caller’s routes and does not listen', async () => {
    await expect(
      startHttpEndpoint({
        host: '127.0.0.1',
        port: 0,
        registry: new Registry(),
        health: () => healthy,
        logger: silentLogger(),
        routes() {
          throw new Error('bad route');
        },
      }),
    ).rejects.toThrow('bad route');
  });

  it('rejects, naming the address, when the port is taken', async () => {
    const first = await start();
    const port = Number(new URL(first.url).port);
    const attempt = start({ port });
    await expect(attempt).rejects.toThrow(`Cannot listen on 127.0.0.1:${port}: the address is already in use (EADDRINUSE)`);
    // The first endpoint is unharmed.
    expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
  });

  it('stops listening on close, and close can be called twice', async () => {
    const endpoint = await startHttpEndpoint({ host: '127.0.0.1', port: 0, registry: new Registry(), health: () => healthy, logger: silentLogger() });
    await fetch(`${endpoint.url}/healthz`);
    await Promise.all([endpoint.close(), endpoint.close()]);
    await expect(fetch(`${endpoint.url}/healthz`)).rejects.toThrow();
  });

  it('closes on asyncDispose', async () => {
    let url: string;
    {
      await using endpoint = await startHttpEndpoint({ host: '127.0.0.1', port: 0, registry: new Registry(), health: () => healthy, logger: silentLogger() });
      url = endpoint.url;
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
    }
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });
});
