/**
 * The signal of a lease that cannot be lost (an in-process lock). One shared object: the plugin
 * adds no listener to it, and a lock costs no AbortController.
 */
export const neverAborted: AbortSignal = new AbortController().signal
