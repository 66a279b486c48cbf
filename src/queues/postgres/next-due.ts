/** A claim or nextDueAt that finds due work it cannot take looks again this much later, in ms (never a busy loop). */
export const RETRY_SOON_MS = 25;

/**
 * The earliest due time the database gave, kept until it expires or a claim finds out more, so that a
 * server that looks often does not ask the database for what it already knows. Registry writes,
 * notifications and completions lower it when something may be due earlier. Epoch ms throughout.
 */
export class NextDue {
  #known = false;
  /** `null`: nothing is scheduled. */
  #at: number | null = null;
  #until = 0;

  /** The database said `at` (`null`: nothing scheduled); believed until `until`. */
  set(at: number | null, until: number): void {
    this.#known = true;
    this.#at = at;
    this.#until = until;
  }

  /** Nothing is known: the next look asks the database. */
  forget(): void {
    this.#known = false;
  }

  /** Something may be due at `at`: lowers the known time. False when the server wakes by then anyway. */
  lower(at: number): boolean {
    if (this.#known) {
      if (this.#at !== null && at >= this.#at) return false;
      this.#at = at;
    }
    return true;
  }

  /** True when, as known at `now`, nothing can be due at `claimAt`: a claim need not ask the database. */
  rulesOut(claimAt: number, now: number): boolean {
    return this.#known && now < this.#until && (this.#at === null || claimAt < this.#at);
  }

  /** True when the database must be asked again at `now`. */
  stale(now: number): boolean {
    return !this.#known || now >= this.#until;
  }

  /**
   * When to look next: the known due time, by the expiry at the latest (changes that came without a
   * notification), and never at once for due work that could not be taken (locked by another
   * instance's claim right now).
   */
  wakeAt(now: number): number {
    const at = this.#at === null ? this.#until : Math.min(this.#at, this.#until);
    return at > now ? at : now + RETRY_SOON_MS;
  }
}
