// A lease held in this process cannot be lost, so every such lease shares one signal that never
// aborts rather than allocating an AbortController per write. Its controller is dropped at once, so
// nothing can abort it. Listeners added to it could never run, so they are not kept: a caller that
// listens on every lease's signal and lets the lease go without removing its listener would
// otherwise pile them up on this one object for the life of the process. (The plugin compares
// against it and adds none.)
export const neverAborted: AbortSignal = new AbortController().signal
neverAborted.addEventListener = function addEventListener () {}
