// One timer renewing the leases of every running claim of a store.

/** What Renewals needs of a claim: its place in the list, and its renewal. */
export interface Renewable {
  /** The Renewals renewing it, while they do. */
  renewals: Renewals | null
  previousRenewal: Renewable | null
  nextRenewal: Renewable | null
  renew (): void
}

/**
 * Renews the lease of every running claim of one store, from one timer ticking every third of
 * the lease while any claim runs (a timer per request cost more than the claim itself). A claim
 * is renewed within a third of the lease of being made, and every third of the lease after.
 */
export class Renewals {
  // A doubly linked list through the claims themselves: adding and removing one costs no
  // allocation and no hashing, as a Set's would.
  private head: Renewable | null = null
  private count = 0
  private timer: NodeJS.Timeout | null = null
  /** The renewal interval, in ms: a third of the lease. */
  readonly interval: number
  /** The instance closed: answers that could not be stored are no longer tried again. */
  closed = false

  constructor (lease: number) {
    this.interval = Math.max(Math.floor(lease / 3), 1)
  }

  /** How many claims are being renewed (for tests and monitoring). */
  get size (): number {
    return this.count
  }

  /** Whether the timer is running. */
  get ticking (): boolean {
    return this.timer !== null
  }

  /** Puts a claim in, unless it is in already. */
  add (claim: Renewable): void {
    if (claim.renewals === this) return
    claim.renewals = this
    claim.nextRenewal = this.head
    if (this.head !== null) this.head.previousRenewal = claim
    this.head = claim
    this.count++
    if (this.timer !== null) return
    this.timer = setInterval(() => this.tick(), this.interval)
    this.timer.unref()
  }

  /** Takes out a claim that `add` put in (and not yet taken out). */
  delete (claim: Renewable): void {
    const { previousRenewal: previous, nextRenewal: next } = claim
    if (previous === null) this.head = next
    else previous.nextRenewal = next
    if (next !== null) next.previousRenewal = previous
    claim.previousRenewal = null
    claim.nextRenewal = null
    this.count--
  }

  private tick (): void {
    // Stopped on a tick that finds nothing to renew, not each time the set empties: under load
    // it empties and fills many times a second.
    if (this.head === null) {
      this.stop()
      return
    }
    // The next one is read first: a renewal that finds the lease lost takes its claim out.
    for (let claim: Renewable | null = this.head, next; claim !== null; claim = next) {
      next = claim.nextRenewal
      claim.renew()
    }
  }

  private stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  /** The instance closed: no more renewals, and no more tries at storing an answer. */
  close (): void {
    this.closed = true
    this.stop()
  }
}
