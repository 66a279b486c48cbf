import { execFile, spawnSync } from 'node:child_process';
import { afterAll, afterEach, expect } from 'vitest';

/**
 * A test host in a network namespace of its own: tests that need a target which drops or rate-limits
 * packets (something loopback cannot be made to do without changing the whole machine) make one here.
 *
 * Each host is a namespace `vigil-test-<pid>-<n>` joined to this one by a veth pair on 10.213.<n>.0/30:
 * `vigil<n>` here with .1, `eth0` in the namespace with .2 (the host's `address`). The namespace's
 * sysctls are its own (`net.ipv4.icmp_*` included), so a test changes the host's behaviour without
 * touching the machine, and its traffic never leaves the machine.
 *
 * It needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2. Without them `createTestHost` rejects and
 * says what is missing: a test that needs a host fails rather than being skipped.
 */

export interface TestHostOptions {
  /** Namespace sysctls set before the host is handed out: `{ 'net.ipv4.icmp_echo_ignore_all': 1 }`. */
  readonly sysctls?: Readonly<Record<string, string | number>>;
}

export interface TestHost {
  /** The namespace's name: `vigil-test-<pid>-<n>`. */
  readonly name: string;
  /** The host's IPv4 address (its end of the veth pair): `10.213.<n>.2`. */
  readonly address: string;
  /** This side's address on the veth pair, where the host's replies go: `10.213.<n>.1`. */
  readonly localAddress: string;
  /** Sets a sysctl inside the host's namespace (`ip netns exec … sysctl -w name=value`). */
  setSysctl(name: string, value: string | number): Promise<void>;
  /** Removes the veth pair and the namespace. Idempotent; resolves once both are gone. */
  destroy(): Promise<void>;
}

/** Subnets 10.213.0.0/30 … 10.213.255.0/30: one host per third octet. */
const MAX_HOSTS = 256;
/** How long one `ip`/`sysctl` call may take (ms) before it counts as failed. */
const COMMAND_TIMEOUT_MS = 10_000;
const PREFIX = 'vigil-test-';
const OWN_PREFIX = `${PREFIX}${process.pid}-`;
const NAMESPACE_NAME = /^vigil-test-(\d+)-(\d+)$/;
/** What `sysctl -w` accepts as a name here: dotted lower-case words, no `=` or path characters. */
const SYSCTL_NAME = /^[a-z0-9_]+(?:\.[a-z0-9_-]+)+$/;

/** Hosts of this process that are not destroyed yet, by namespace name. */
const live = new Map<string, TestHost>();
let exitHookInstalled = false;

/**
 * Creates a test host (see above). The subnet index `n` is claimed machine-wide by creating the veth
 * `vigil<n>`, which the kernel refuses when another test process holds it, so test files running in
 * parallel get different subnets. Everything made so far is removed when a step fails.
 */
export async function createTestHost(options: TestHostOptions = {}): Promise<TestHost> {
  installExitHook();
  await removeStaleNamespaces();
  for (let n = 0; n < MAX_HOSTS; n++) {
    const name = `${OWN_PREFIX}${n}`;
    if (live.has(name)) continue;
    await createNamespace(name);
    const link = `vigil${n}`;
    const claimed = await run(['ip', 'link', 'add', link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]).then(
      () => true,
      async (error: unknown) => {
        await run(['ip', 'netns', 'delete', name]).catch(() => undefined);
        if (error instanceof CommandError && /File exists/i.test(error.stderr)) return false;
        if (error instanceof CommandError && /Unknown device type|not supported/i.test(error.stderr)) {
          throw new Error(`the network namespace tests need veth support in the kernel (module veth): ${error.message}`, { cause: error });
        }
        throw error;
      },
    );
    if (!claimed) continue;
    const host = testHost(name, link, n);
    live.set(name, host);
    try {
      await run(['ip', 'address', 'add', `${host.localAddress}/30`, 'dev', link]);
      await run(['ip', 'link', 'set', link, 'up']);
      await run(['ip', '-n', name, 'address', 'add', `${host.address}/30`, 'dev', 'eth0']);
      await run(['ip', '-n', name, 'link', 'set', 'eth0', 'up']);
      await run(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
      for (const [key, value] of Object.entries(options.sysctls ?? {})) await host.setSysctl(key, value);
    } catch (error) {
      await host.destroy();
      throw error;
    }
    return host;
  }
  throw new Error(`no free test subnet: veths vigil0…vigil${MAX_HOSTS - 1} all exist (left behind by crashed test runs? \`ip link show\`)`);
}

/** Echo replies are ICMP type 0: bit 0 of `icmp_ratemask`. */
const ECHO_REPLY_MASK = 1 << 0;

/**
 * Sysctls for a host that answers some echo requests and drops the rest. `icmp_ratelimit` is ms per
 * reply and destination; the kernel's limit is a token bucket per destination that holds up to 6 × the
 * limit and starts with 60 s in it, so a fresh host with a limit of 20 s answers the first 3 requests
 * (60 s / 20 s) and drops the rest: a run of 5 loses some but not all, whatever the timing. (With the
 * default 1 s it would answer the first 6.)
 */
export const RATE_LIMITED_ECHO: Readonly<Record<string, number>> = Object.freeze({ 'net.ipv4.icmp_ratemask': ECHO_REPLY_MASK, 'net.ipv4.icmp_ratelimit': 20_000 });

/** Sysctls for a host that answers no echo request. */
export const SILENT_ECHO: Readonly<Record<string, number>> = Object.freeze({ 'net.ipv4.icmp_echo_ignore_all': 1 });

/**
 * For the tests of one file or `describe`: a `createTestHost` whose hosts are destroyed after each test,
 * and an `afterAll` that makes sure no namespace of this process is left.
 */
export function useTestHosts(): (options?: TestHostOptions) => Promise<TestHost> {
  const hosts: TestHost[] = [];
  afterEach(async () => {
    for (const host of hosts.splice(0).reverse()) await host.destroy();
  });
  afterAll(async () => {
    await destroyTestHosts();
    expect(await testNamespacesLeft()).toEqual([]);
  });
  return async (options) => {
    const host = await createTestHost(options);
    hosts.push(host);
    return host;
  };
}

/** Destroys every host of this process still alive: an `afterAll` safety net behind per-test cleanup. */
export async function destroyTestHosts(): Promise<void> {
  for (const host of [...live.values()].reverse()) await host.destroy();
}

/** The namespaces of this process that exist now (`ip netns list`), for an `afterAll` to assert none are left. */
export async function testNamespacesLeft(): Promise<string[]> {
  return (await listNamespaces()).filter((name) => name.startsWith(OWN_PREFIX));
}

function testHost(name: string, link: string, n: number): TestHost {
  let destroyed: Promise<void> | undefined;
  return {
    name,
    address: `10.213.${n}.2`,
    localAddress: `10.213.${n}.1`,
    async setSysctl(key, value) {
      if (!SYSCTL_NAME.test(key)) throw new Error(`expected a sysctl name like net.ipv4.icmp_ratelimit, got ${JSON.stringify(key)}`);
      if (destroyed !== undefined) throw new Error(`cannot set ${key} on test host ${name}: it was destroyed`);
      await run(['ip', 'netns', 'exec', name, 'sysctl', '-q', '-w', `${key}=${value}`]);
    },
    destroy() {
      destroyed ??= (async () => {
        // The link first: deleting a namespace returns before the kernel has torn down its veth, which
        // would keep `vigil<n>` (the subnet's claim) for a while; deleting one end removes both at once.
        await run(['ip', 'link', 'delete', link]).catch(() => undefined);
        await run(['ip', 'netns', 'delete', name]).catch(async (error: unknown) => {
          if ((await listNamespaces()).includes(name)) throw error;
        });
        live.delete(name);
      })();
      return destroyed;
    },
  };
}

async function createNamespace(name: string): Promise<void> {
  try {
    await run(['ip', 'netns', 'add', name]).catch(async (error: unknown) => {
      // Not one of ours (those are in `live`): left by an earlier process that had this pid.
      if (!(error instanceof CommandError && /File exists/i.test(error.stderr))) throw error;
      await run(['ip', 'netns', 'delete', name]);
      await run(['ip', 'netns', 'add', name]);
    });
  } catch (error) {
    if (error instanceof CommandError && error.missing) {
      throw new Error('the network namespace tests need iproute2 (`ip`), which is not installed: apt-get install iproute2', { cause: error });
    }
    const uid = process.getuid?.();
    throw new Error(
      `the network namespace tests need root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create namespaces, running as uid ${uid ?? 'unknown'}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** Removes `vigil-test-<pid>-<n>` namespaces whose process is gone (a test run that was killed). */
async function removeStaleNamespaces(): Promise<void> {
  for (const name of await listNamespaces()) {
    const match = NAMESPACE_NAME.exec(name);
    if (match === null || isAlive(Number(match[1]))) continue;
    // Only the namespace: its veth goes with it, and a `vigil<n>` without it may be another process's by now.
    await run(['ip', 'netns', 'delete', name]).catch(() => undefined);
  }
}

async function listNamespaces(): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await run(['ip', 'netns', 'list']));
  } catch (error) {
    if (error instanceof CommandError && error.missing) {
      throw new Error('the network namespace tests need iproute2 (`ip`), which is not installed: apt-get install iproute2', { cause: error });
    }
    throw error;
  }
  // `vigil-test-1-0 (id: 3)`: the name is the first word.
  return stdout
    .split('\n')
    .map((line) => line.trim().split(/\s/, 1)[0] ?? '')
    .filter((name) => name.startsWith(PREFIX));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Last resort when a test file ends without its afterAll (an uncaught error): no namespace outlives the process. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const name of live.keys()) {
      const n = NAMESPACE_NAME.exec(name)?.[2];
      if (n !== undefined) spawnSync('ip', ['link', 'delete', `vigil${n}`], { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
      spawnSync('ip', ['netns', 'delete', name], { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
    }
  });
}

class CommandError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
    /** The program was not found. */
    readonly missing: boolean,
  ) {
    super(message);
  }
}

function run(argv: readonly [string, ...string[]]): Promise<{ stdout: string; stderr: string }> {
  const [program, ...args] = argv;
  return new Promise((resolve, reject) => {
    execFile(program, args, { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error === null) {
        resolve({ stdout, stderr });
        return;
      }
      const code = (error as NodeJS.ErrnoException).code;
      const missing = code === 'ENOENT';
      const why = missing ? `${program} not found on PATH` : stderr.trim() || error.message;
      reject(new CommandError(`\`${argv.join(' ')}\` failed: ${why}`, stderr, missing));
    });
  });
}
