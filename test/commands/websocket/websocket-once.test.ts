import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { type CliResult } from '../../helpers/cli.js';
import { expectLine, NUM, runOnce, escapeRegex } from '../../helpers/once.js';

/**
 * `vigil once ID` for a websocket check, through the built CLI as an operator or Nagios runs it,
 * against a ws server the test starts on 127.0.0.1 that echoes every message: the printed line and
 * the Nagios exit code.
 */

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

function once(id: string, attributes: Record<string, unknown>): Promise<CliResult> {
  return runOnce(dir, { id, command: 'websocket', attributes });
}



describe('vigil once: websocket', () => {
  it('prints OK with the connect and reply times and exits 0 when the reply matches', async () => {
    const result = await once('live', { url, send: 'ping', expect: 'echo: ping' });
    expectLine(result, `live OK ok: connected to ${escapeRegex(url)} in ${NUM} ms, reply matched "echo: ping" in ${NUM} ms \\| connect_time=${NUM}ms reply_time=${NUM}ms`, 0);
  });

  it('prints CRIT unexpected-reply and exits 2 when the server closes after a reply that does not match', async () => {
    server.removeAllListeners('connection');
    server.on('connection', (ws) => ws.on('message', () => ws.send('busy', () => ws.close(1013, 'try again later'))));
    const result = await once('live', { url, send: 'ping', expect: '/^pong/' });
    expectLine(
      result,
      `live CRIT unexpected-reply: expected a reply matching /\\^pong/ from ${escapeRegex(url)}, got "busy"; then the server closed the connection with code 1013 "try again later" \\| connect_time=${NUM}ms`,
      2,
    );
  });
});
