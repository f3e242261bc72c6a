// Recognition by shape: what the layer modules ask of an object they were handed.

/** Whether `value` has a method `name` (objects and functions alike: a Knex transaction is a function). */
export function hasMethod (value: unknown, name: string): boolean {
  return (typeof value === 'object' || typeof value === 'function') && value !== null &&
    typeof (value as Record<string, unknown>)[name] === 'function'
}

/** `value` for an error message: its class, or its type. */
export function describe (value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'function') return `a function ${value.name === '' ? '' : `${value.name} `}of ${value.length} parameters`
  if (typeof value !== 'object') return `${typeof value} ${String(value)}`
  const name = (Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null)?.constructor?.name
  const keys = Object.keys(value).slice(0, 5)
  return `${name === undefined || name === '' || name === 'Object' ? 'an object' : `a ${name}`}${keys.length === 0 ? '' : ` with ${keys.join(', ')}`}`
}

/** The engine's name, for the sentence that refuses a layer of another engine. */
export const ENGINE_NAME = { postgres: 'PostgreSQL', mysql: 'MySQL' } as const
