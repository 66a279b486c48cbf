import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { CommandContext } from '../../src/commands/command.js';
import { dnsCommand, type DnsAttributes } from '../../src/commands/dns.js';
import type { CommandOutcome } from '../../src/results/result.js';
import { TestDnsServer, type DnsServerOptions, type DnsZone } from '../helpers/dns-server.js';
import { silentLogger } from '../helpers/logger.js';

const dns = dnsCommand();
const logger = silentLogger();

const zone: DnsZone = {
  'example.org': {
    A: ['192.0.2.10', '192.0.2.11'],
    AAAA: ['2001:db8::10'],
    NS: ['ns1.example.org', 'NS2.Example.org'],
    MX: [
      { priority: 10, exchange: 'mail.example.org' },
      { priority: 20, exchange: 'backup.example.org' },
    ],
    TXT: ['v=spf1 -all', ['part one, ', 'part two']],
  },
  'www.example.org': { CNAME: 'Web.Example.org' },
  'web.example.org': { A: ['192.0.2.20'] },
  'empty.example.org': {},
};

/** A context whose signal aborts at its deadline, as the server's does. */
function ctx(timeoutMs = 5000, signal: AbortSignal = AbortSignal.timeout(timeoutMs)): CommandContext {
  return { checkId: 't', signal, deadline: Date.now() + timeoutMs, logger, previous: null };
}

function parse(raw: unknown): DnsAttributes {
  const parsed = dns.parse(raw);
  if (!parsed.ok) throw new Error(`unexpected issues: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

const servers: TestDnsServer[] = [];

async function start(options: DnsServerOptions = {}): Promise<TestDnsServer> {
  const server = await TestDnsServer.start({ zone, ...options });
  servers.push(server);
  return server;
}

/** The address of a server that was started and closed again: nothing listens there now. */
async function closedAddress(): Promise<string> {
  const server = await TestDnsServer.start();
  const { address } = server;
  await server.close();
  return address;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** Runs against one test server, with a 5 s check timeout unless `context` says otherwise. */
async function run(server: TestDnsServer, raw: Record<string, unknown>, context: CommandContext = ctx()): Promise<CommandOutcome> {
  return dns.run(parse({ servers: [server.address], ...raw }), context);
}

function metric(outcome: CommandOutcome, name: string) {
  return outcome.metrics?.find((m) => m.name === name);
}

describe('dns command: record types', () => {
  it('resolves A records, listing them with the response time and metrics', async () => {
    const server = await start();
    const outcome = await run(server, { name: 'example.org' });
    expect(outcome.state).toBe('ok');
    expect(outcome.reason).toBe('ok');
    expect(outcome.message).toMatch(
      new RegExp(`^resolved example\\.org A at 127\\.0\\.0\\.1:${server.port} in \\d+(\\.\\d)? ms: 192\\.0\\.2\\.10, 192\\.0\\.2\\.11$`),
    );
    expect(metric(outcome, 'answers')).toEqual({ name: 'answers', value: 2, unit: '', kind: 'gauge' });
    const responseTime = metric(outcome, 'response_time');
    expect(responseTime).toMatchObject({ unit: 'ms', kind: 'gauge' });
    expect(responseTime?.value).toBeGreaterThanOrEqual(0);
    expect(responseTime?.value).toBeLessThan(5000);
    expect(responseTime).not.toHaveProperty('warn');
    expect(server.queries).toEqual(['example.org A']);
  });

  it('runs the documented example: A records of a name at one server, with an expected address', async () => {
    const server = await start();
    const example = parseYaml(`{ id: resolver, command: dns, attributes: { name: example.org, type: A, servers: ["127.0.0.1:${server.port}"], expect: [192.0.2.10] } }`) as {
      attributes: Record<string, unknown>;
    };
    const outcome = await dns.run(parse(example.attributes), ctx());
    expect(outcome).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('follows a CNAME for A records', async () => {
    const server = await start();
    const outcome = await run(server, { name: 'www.example.org', expect: ['192.0.2.20'], match: 'equals' });
    expect(outcome.state).toBe('ok');
    expect(outcome.message).toMatch(/: 192\.0\.2\.20$/);
  });

  it('compares AAAA records as addresses, whatever way they are written', async () => {
    const server = await start();
    const outcome = await run(server, { name: 'example.org', type: 'AAAA', expect: ['2001:DB8:0:0:0:0:0:10'] });
    expect(outcome.state).toBe('ok');
    expect(outcome.message).toMatch(/ms: 2001:db8::10$/);
  });

  it('compares CNAME targets case-insensitively and without the trailing dot', async () => {
    const server = await start();
    const outcome = await run(server, { name: 'www.example.org', type: 'CNAME', expect: ['web.example.org.'], match: 'equals' });
    expect(outcome.state).toBe('ok');
    expect(outcome.message).toMatch(/ms: web\.example\.org$/);
  });

  it('compares NS records as names', async () => {
    const server = await start();
    const outcome = await run(server, { name: 'example.org', type: 'NS', expect: ['ns2.example.org', 'NS1.example.org'], match: 'equals' });
    expect(outcome.state).toBe('ok');
    expect(metric(outcome, 'answers')?.value).toBe(2);
  });

  it('matches MX records by priority and exchange, or by exchange at any priority', async () => {
    const server = await start();
    const ok = await run(server, { name: 'example.org', type: 'MX', expect: ['10 mail.example.org', 'backup.example.org'], match: 'equals' });
    expect(ok.state).toBe('ok');
    expect(ok.message).toMatch(/ms: 10 mail\.example\.org, 20 backup\.example\.org$/);

    const wrongPriority = await run(server, { name: 'example.org', type: 'MX', expect: ['20 mail.example.org'] });
    expect(wrongPriority).toMatchObject({ state: 'crit', reason: 'unexpected-answer' });
    expect(wrongPriority.message).toBe(
      `expected example.org MX to include [20 mail.example.org], got [10 mail.example.org, 20 backup.example.org] from ${server.address}`,
    );
  });

  it('matches TXT records whole, joining a record sent in pieces, and quotes them in messages', async () => {
    const server = await start();
    const ok = await run(server, { name: 'example.org', type: 'TXT', expect: ['part one, part two'] });
    expect(ok.state).toBe('ok');
    expect(ok.message).toMatch(/ms: "v=spf1 -all", "part one, part two"$/);

    const wrong = await run(server, { name: 'example.org', type: 'TXT', expect: ['part one'] });
    expect(wrong.reason).toBe('unexpected-answer');
    expect(wrong.message).toBe(`expected example.org TXT to include ["part one"], got ["v=spf1 -all", "part one, part two"] from ${server.address}`);
  });
});

describe('dns command: contains and equals', () => {
  it('with contains (the default), is ok when every expected value is among more answers', async () => {
    const server = await start();
    expect(await run(server, { name: 'example.org', expect: ['192.0.2.11'] })).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('with contains, reports unexpected-answer when an expected value is missing, showing expected and got', async () => {
    const server = await start();
    const outcome = await run(server, { name: 'example.org', expect: ['192.0.2.10', '192.0.2.99'] });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'unexpected-answer' });
    expect(outcome.message).toBe(`expected example.org A to include [192.0.2.10, 192.0.2.99], got [192.0.2.10, 192.0.2.11] from ${server.address}`);
    expect(metric(outcome, 'answers')?.value).toBe(2);
    expect(metric(outcome, 'response_time')).toBeDefined();
  });

  it('with equals, is ok for the same set in another order and fails for a subset', async () => {
    const server = await start();
    expect((await run(server, { name: 'example.org', expect: ['192.0.2.11', '192.0.2.10'], match: 'equals' })).state).toBe('ok');

    const subset = await run(server, { name: 'example.org', expect: ['192.0.2.10'], match: 'equals' });
    expect(subset).toMatchObject({ state: 'crit', reason: 'unexpected-answer' });
    expect(subset.message).toBe(`expected example.org A to be exactly [192.0.2.10], got [192.0.2.10, 192.0.2.11] from ${server.address}`);
  });

  it('lists at most ten answers in a message', async () => {
    const many = Array.from({ length: 14 }, (_, i) => `192.0.2.${i + 1}`);
    const server = await start({ zone: { 'many.example.org': { A: many } } });
    const outcome = await run(server, { name: 'many.example.org', expect: ['192.0.2.99'] });
    expect(outcome.message).toContain(`got [${many.slice(0, 10).join(', ')} and 4 more] from`);
  });
});

describe('dns command: failures', () => {
  it('reports nxdomain for a name that does not exist', async () => {
    const server = await start();
    const outcome = await run(server, { name: 'missing.example.org', expect: ['192.0.2.10'] });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'nxdomain', message: `missing.example.org does not exist (NXDOMAIN from ${server.address})` });
    expect(metric(outcome, 'answers')?.value).toBe(0);
  });

  it('reports no-answer, with what was expected, for a name without records of the type', async () => {
    const server = await start();
    const outcome = await run(server, { name: 'empty.example.org', type: 'MX', expect: ['mail.example.org'] });
    expect(outcome).toMatchObject({
      state: 'crit',
      reason: 'no-answer',
      message: `empty.example.org has no MX records at ${server.address}; expected [mail.example.org]`,
    });
    expect((await run(server, { name: 'web.example.org', type: 'TXT' })).reason).toBe('no-answer');
  });

  it('reports servfail when the server answers SERVFAIL', async () => {
    const server = await start({ mode: 'servfail' });
    const outcome = await run(server, { name: 'example.org' });
    expect(outcome).toMatchObject({ state: 'crit', reason: 'servfail', message: `${server.address} answered SERVFAIL for example.org A` });
  });

  it('answers SERVFAIL from the first server without asking the next one (Node asks the next only on no response)', async () => {
    const failing = await start({ mode: 'servfail' });
    const working = await start();
    const outcome = await dns.run(parse({ name: 'example.org', servers: [failing.address, working.address] }), ctx());
    expect(outcome).toMatchObject({
      state: 'crit',
      reason: 'servfail',
      message: `one of ${failing.address}, ${working.address} answered SERVFAIL for example.org A`,
    });
    expect(working.queries).toEqual([]);
  });

  it('asks the next server when nothing listens at the first', async () => {
    const gone = await closedAddress();
    const working = await start();
    const outcome = await dns.run(parse({ name: 'example.org', servers: [gone, working.address] }), ctx());
    expect(outcome.state).toBe('ok');
    expect(outcome.message).toContain(`at one of ${gone}, ${working.address} in`);
    expect(working.queries).toEqual(['example.org A']);
  });

  it('reports dns-error with ECONNREFUSED when nothing listens at the only server', async () => {
    const gone = await closedAddress();
    const outcome = await dns.run(parse({ name: 'example.org', servers: [gone] }), ctx());
    expect(outcome).toMatchObject({
      state: 'crit',
      reason: 'dns-error',
      message: `querying ${gone} for example.org A failed (ECONNREFUSED: nothing answers on that address and port)`,
    });
  });

  it('reports dns-error with the code for other failures', async () => {
    const server = await start({ mode: 'refused' });
    const outcome = await run(server, { name: 'example.org' });
    expect(outcome).toMatchObject({
      state: 'crit',
      reason: 'dns-error',
      message: `querying ${server.address} for example.org A failed (EREFUSED: the server refused the query)`,
    });
  });
});

describe('dns command: time', () => {
  it('reports timeout when the server never answers, once the check times out', async () => {
    const server = await start({ mode: 'silent' });
    const started = performance.now();
    const outcome = await run(server, { name: 'example.org' }, ctx(300));
    const elapsed = performance.now() - started;
    expect(outcome.state).toBe('crit');
    expect(outcome.reason).toBe('timeout');
    expect(outcome.message).toMatch(new RegExp(`^no answer from 127\\.0\\.0\\.1:${server.port} for example\\.org A within \\d+ ms$`));
    expect(outcome.metrics ?? []).toEqual([]);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2000);
    // One try: the check's timeout is the whole wait.
    expect(server.queries).toEqual(['example.org A']);
  });

  it('with tries, asks again within the check timeout', async () => {
    const server = await start({ mode: 'silent' });
    const outcome = await run(server, { name: 'example.org', tries: 2 }, ctx(1200));
    expect(outcome.reason).toBe('timeout');
    expect(outcome.message).toMatch(/ \(2 tries\)$/);
    expect(server.queries).toEqual(['example.org A', 'example.org A']);
  });

  it('returns promptly when aborted while waiting, without further queries', async () => {
    const server = await start({ mode: 'silent' });
    const controller = new AbortController();
    const running = run(server, { name: 'example.org', tries: 3 }, ctx(10_000, controller.signal));
    await vi.waitFor(() => expect(server.queries).toHaveLength(1));
    const started = performance.now();
    controller.abort();
    const outcome = await running;
    expect(performance.now() - started).toBeLessThan(500);
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout' });
    expect(server.queries).toHaveLength(1);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('reports timeout without querying when the signal is already aborted', async () => {
    const server = await start();
    const outcome = await run(server, { name: 'example.org' }, ctx(5000, AbortSignal.abort()));
    expect(outcome).toMatchObject({ state: 'crit', reason: 'timeout', message: `timed out before querying ${server.address} for example.org A` });
    expect(server.queries).toEqual([]);
  });

  it('removes its abort listener after an answer', async () => {
    const server = await start();
    const controller = new AbortController();
    await run(server, { name: 'example.org' }, ctx(5000, controller.signal));
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('reports slow-response as warn or crit at its thresholds, with them on the metric', async () => {
    const server = await start({ delayMs: 120 });
    const warn = await run(server, { name: 'example.org', expect: ['192.0.2.10'], responseWarnMs: '50ms', responseCritMs: '10s' });
    expect(warn).toMatchObject({ state: 'warn', reason: 'slow-response' });
    expect(warn.message).toMatch(/: 192\.0\.2\.10, 192\.0\.2\.11; at or above the warning threshold of 50 ms$/);
    expect(metric(warn, 'response_time')).toMatchObject({ warn: 50, crit: 10_000 });
    expect(metric(warn, 'response_time')?.value).toBeGreaterThanOrEqual(100);

    const crit = await run(server, { name: 'example.org', responseWarnMs: 0, responseCritMs: '100ms' });
    expect(crit).toMatchObject({ state: 'crit', reason: 'slow-response' });
    expect(crit.message).toContain('at or above the critical threshold of 100 ms');

    server.delayMs = 0;
    const fast = await run(server, { name: 'example.org', responseWarnMs: '10s' });
    expect(fast).toMatchObject({ state: 'ok', reason: 'ok' });
  });

  it('reports a wrong answer as unexpected-answer even when it is also slow', async () => {
    const server = await start({ delayMs: 60 });
    const outcome = await run(server, { name: 'example.org', expect: ['192.0.2.99'], responseWarnMs: 0 });
    expect(outcome.reason).toBe('unexpected-answer');
  });

  it('waits for a slow answer as long as the check allows, even after fast runs of the same attributes', async () => {
    // A reused c-ares channel would time a query out after about 1 s once it has seen fast answers,
    // however long the check's timeout; each run must get the whole of its own.
    const server = await start();
    const attributes = parse({ name: 'example.org', servers: [server.address], responseCritMs: '1s' });
    for (let i = 0; i < 3; i++) expect((await dns.run(attributes, ctx())).state).toBe('ok');
    server.delayMs = 1300;
    const slow = await dns.run(attributes, ctx(5000));
    expect(slow).toMatchObject({ state: 'crit', reason: 'slow-response' });
  });
});

describe('dns command: attributes', () => {
  it('parses the documented example', () => {
    const example = parseYaml('{ id: resolver, command: dns, attributes: { name: example.org, type: A, servers: ["127.0.0.1:5353"], expect: [192.0.2.10] } }') as {
      attributes: unknown;
    };
    expect(parse(example.attributes)).toEqual({
      name: 'example.org',
      type: 'A',
      servers: ['127.0.0.1:5353'],
      expect: [{ value: '192.0.2.10' }],
      match: 'contains',
      tries: 1,
    });
  });

  it('defaults to A records at the system resolvers, any answer, one try', () => {
    expect(parse({ name: 'example.org' })).toEqual({ name: 'example.org', type: 'A', match: 'contains', tries: 1 });
  });

  it('normalizes servers to the forms the resolver takes', () => {
    const value = parse({ name: 'a.example', servers: ['192.0.2.53', '192.0.2.53:5353', '2001:db8::53', '[2001:db8::53]', '[2001:db8::53]:5353'] });
    expect(value.servers).toEqual(['192.0.2.53', '192.0.2.53:5353', '2001:db8::53', '2001:db8::53', '[2001:db8::53]:5353']);
  });

  it('normalizes expected answers: IPv6 canonical, names lower case without the dot, MX with or without priority', () => {
    expect(parse({ name: 'a.example', type: 'AAAA', expect: ['2001:DB8:0:0:1:0:0:1', '::FFFF:192.0.2.1'] }).expect).toEqual([
      { value: '2001:db8::1:0:0:1' },
      { value: '::ffff:c000:201' },
    ]);
    expect(parse({ name: 'a.example', type: 'MX', expect: ['10  Mail.Example.org.', 'backup.example.org'] }).expect).toEqual([
      { value: '10 mail.example.org' },
      { value: 'backup.example.org', anyPriority: true },
    ]);
    expect(parse({ name: 'a.example', type: 'TXT', expect: [' Keep As Is '] }).expect).toEqual([{ value: ' Keep As Is ' }]);
  });

  it('says what a type should be', () => {
    expect(dns.parse({ name: 'example.org', type: 'SRV' })).toEqual({
      ok: false,
      issues: [{ path: ['type'], message: 'expected one of A, AAAA, CNAME, MX, TXT, NS, got "SRV"' }],
    });
  });

  it('says what a server address should be, by position', () => {
    expect(dns.parse({ name: 'example.org', servers: ['192.0.2.53', 'ns1.example.org', '127.0.0.1:0', '[2001:db8::53]:70000', 'fe80::1%eth0'] })).toEqual({
      ok: false,
      issues: [
        { path: ['servers', 1], message: 'expected a name server address: an IP address, host:port or [v6]:port (not a host name), got "ns1.example.org"' },
        { path: ['servers', 2], message: 'expected a name server port 1–65535, got "127.0.0.1:0"' },
        { path: ['servers', 3], message: 'expected a name server port 1–65535, got "[2001:db8::53]:70000"' },
        { path: ['servers', 4], message: 'expected a name server address: an IP address, host:port or [v6]:port (not a host name), got "fe80::1%eth0"' },
      ],
    });
    expect(dns.parse({ name: 'example.org', servers: [] })).toEqual({
      ok: false,
      issues: [{ path: ['servers'], message: 'expected at least one name server address, got an array' }],
    });
    expect(dns.parse({ name: 'example.org', servers: '192.0.2.53' })).toMatchObject({ ok: false, issues: [{ path: ['servers'] }] });
  });

  it('says what shape expected answers take for the type', () => {
    expect(dns.parse({ name: 'example.org', type: 'A', expect: ['192.0.2.1', 'mail.example.org'] })).toEqual({
      ok: false,
      issues: [{ path: ['expect', 1], message: 'expected an IPv4 address for type A, got "mail.example.org"' }],
    });
    expect(dns.parse({ name: 'example.org', type: 'AAAA', expect: ['192.0.2.1'] })).toEqual({
      ok: false,
      issues: [{ path: ['expect', 0], message: 'expected an IPv6 address for type AAAA, got "192.0.2.1"' }],
    });
    expect(dns.parse({ name: 'example.org', type: 'MX', expect: ['10', 'ten mail.example.org', '70000 mail.example.org'] })).toMatchObject({
      ok: false,
      issues: [
        { path: ['expect', 0], message: 'expected `priority exchange` (10 mail.example.org) or an exchange name for type MX, got "10"' },
        { path: ['expect', 1] },
        { path: ['expect', 2] },
      ],
    });
    expect(dns.parse({ name: 'example.org', type: 'CNAME', expect: ['not a name'] })).toMatchObject({
      ok: false,
      issues: [{ path: ['expect', 0], message: 'expected a domain name for type CNAME, got "not a name"' }],
    });
    expect(dns.parse({ name: 'example.org', expect: [10] })).toEqual({ ok: false, issues: [{ path: ['expect', 0], message: 'expected a string, got 10' }] });
    expect(dns.parse({ name: 'example.org', expect: '192.0.2.1' })).toEqual({
      ok: false,
      issues: [{ path: ['expect'], message: 'expected a list of expected answers, got "192.0.2.1"' }],
    });
  });

  it('rejects a bad name, match without expect, an unknown match, bad thresholds and tries, and unknown keys', () => {
    expect(dns.parse({ name: 'two  words.example' })).toMatchObject({ ok: false, issues: [{ path: ['name'] }] });
    expect(dns.parse({ name: 'a..b' })).toMatchObject({ ok: false, issues: [{ path: ['name'] }] });
    expect(dns.parse({})).toEqual({ ok: false, issues: [{ path: ['name'], message: 'expected a domain name (labels of 1–63 characters, at most 253 in all), got nothing' }] });
    expect(dns.parse({ name: 'example.org', match: 'equals' })).toEqual({
      ok: false,
      issues: [{ path: ['match'], message: 'expected `expect` alongside `match`, got "equals"' }],
    });
    expect(dns.parse({ name: 'example.org', expect: ['192.0.2.1'], match: 'exact' })).toEqual({
      ok: false,
      issues: [{ path: ['match'], message: 'expected one of contains, equals, got "exact"' }],
    });
    expect(dns.parse({ name: 'example.org', responseWarnMs: '2s', responseCritMs: '1s' })).toEqual({
      ok: false,
      issues: [{ path: ['responseWarnMs'], message: 'expected a duration no longer than responseCritMs (1000ms), got "2s"' }],
    });
    expect(dns.parse({ name: 'example.org', tries: 0 })).toMatchObject({ ok: false, issues: [{ path: ['tries'] }] });
    expect(dns.parse({ name: 'example.org', timeout: '5s' })).toEqual({ ok: false, issues: [{ path: ['timeout'], message: 'unknown key' }] });
  });

  it('accepts the root and names with a trailing dot', () => {
    expect(parse({ name: '.', type: 'NS' }).name).toBe('.');
    expect(parse({ name: 'example.org.' }).name).toBe('example.org.');
  });

  it('describes its attributes in JSON Schema', () => {
    expect(dns.attributesJsonSchema).toMatchObject({
      type: 'object',
      required: ['name'],
      additionalProperties: false,
      properties: { type: { enum: ['A', 'AAAA', 'CNAME', 'MX', 'TXT', 'NS'] } },
    });
  });
});
