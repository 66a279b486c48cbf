import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';

/** Where screenshots of failed runs go, and how many each check keeps. */
export interface ScreenshotPolicy {
  /** The directory, made when first needed (`<dataDir>/screenshots`). */
  readonly dir: string;
  /** Screenshots kept per check: the newest; older ones are deleted as new ones are saved. */
  readonly keep: number;
}

/** The default of `keepScreenshots`: enough to compare a few failures, bounded on disk (a few hundred KB a check). */
export const DEFAULT_KEEP_SCREENSHOTS = 5;

/**
 * Saves what the page shows (the viewport, not the whole page: bounded size) as
 * `<dir>/<checkId>-<UTC time>.png`, deletes the check's oldest beyond `keep`, and returns the file.
 */
export async function saveScreenshot(page: Page, checkId: string, policy: ScreenshotPolicy, timeoutMs: number, now = new Date()): Promise<string> {
  await mkdir(policy.dir, { recursive: true });
  const file = join(policy.dir, `${fileSafe(checkId)}-${timestamp(now)}.png`);
  await page.screenshot({ path: file, timeout: timeoutMs });
  await pruneScreenshots(checkId, policy);
  return file;
}

/** Deletes the check's screenshots but the newest `keep`; their names sort by time. */
export async function pruneScreenshots(checkId: string, policy: ScreenshotPolicy): Promise<void> {
  // Exactly this check's names: `web-\d{8}T…` is not also taken for the screenshots of `web-2`.
  const pattern = new RegExp(`^${escapeRegex(fileSafe(checkId))}-\\d{8}T\\d{9}Z\\.png$`);
  const names = (await readdir(policy.dir)).filter((name) => pattern.test(name)).sort();
  const old = names.slice(0, Math.max(0, names.length - policy.keep));
  await Promise.all(old.map((name) => rm(join(policy.dir, name), { force: true })));
}

/** `20240501T123000123Z`: sorts as time does, and has no characters that need quoting in a shell. */
function timestamp(date: Date): string {
  return date.toISOString().replace(/[-:.]/g, '');
}

/** Config ids are file-safe already; an id from the library API may not be. */
function fileSafe(checkId: string): string {
  return checkId.replace(/[^A-Za-z0-9_.:-]/g, '_');
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
