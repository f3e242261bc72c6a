// The Idempotency-Key tests over real HTTP again, with the key claimed in a preHandler hook, as the
// plugin does on routes where its precondition hooks or write gate come after the claim.
process.env.IDEMPOTENCY_CLAIM_IN = 'preHandler'
await import('./idempotency-http.test.js')
