import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { runCli, type CliResult } from '../../helpers/cli.js';

/**
 * `vigil once ID` for a websocket check, through the built CLI as an operator or Nagios runs it,
 * against a ws server the test starts on 127.0.0.1 that echoes every message: the printed line and
 * the Nagios exit code.
 */

const NUM = String.raw`\d+(?:\.\d+)?`;
let dir: string;
let server: WebSocketServer;
let url: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vigil-once-websocket-'));
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  server.on('connection', (ws) => ws.on('message', (data: Buffer) => ws.send(`echo: ${data.toString()}`)));
  await new Promise<void>((resolve) => server.once('listening', resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`;
});
afterEach(async () => {
  for (const client of server.clients) client.terminate();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

async function once(id: string, attributes: Record<string, unknown>): Promise<CliResult> {
  const file = join(dir, 'vigil.json.yaml');
  const config = { server: { host: '127.0.0.1', port: 0, dataDir: join(dir, 'data') }, checks: [{ id, command: 'websocket', timeout: '10s', attributes }] };
  await writeFile(file, JSON.stringify(config, null, 2));
  return runCli(['once', id, '-c', file]);
}

function expectLine(result: CliResult, line: string, code: number): void {
  expect(result.stdout).toMatch(new RegExp(`^${line}\\n$`));
  expect(result.stderr).toBe('');
  expect(result.code).toBe(code);
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('vigil once: websocket', () => {
  it('prints OK with the connect and reply times and exits 0 when the reply matches', async () => {
    const result = await once('live', { url, send: 'ping', expect: 'echo: ping' });
    expectLine(result, `live OK ok: connected to ${escape(url)} in ${NUM} ms, reply matched "echo: ping" in ${NUM} ms \\| connect_time=${NUM}ms reply_time=${NUM}ms`, 0);
  });

  it('prints CRIT unexpected-reply and exits 2 when the server closes after a reply that does not match', async () => {
    server.removeAllListeners('connection');
    server.on('connection', (ws) => ws.on('message', () => ws.send('busy', () => ws.close(1013, 'try again later'))));
    const result = await once('live', { url, send: 'ping', expect: '/^pong/' });
    expectLine(
      result,
      `live CRIT unexpected-reply: expected a reply matching /\\^pong/ from ${escape(url)}, got "busy"; then the server closed the connection with code 1013 "try again later" \\| connect_time=${NUM}ms`,
      2,
    );
  });
});
