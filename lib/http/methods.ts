// RFC 9110 §9.2.1: the methods that never change a resource.

/** The safe methods: never refused with 428, never locked; their answers carry validators. */
export const SAFE_METHODS = ['GET', 'HEAD', 'OPTIONS', 'TRACE'] as const

/** Methods that never change a resource. */
export function isSafe (method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS' || method === 'TRACE'
}

/** A header field's single value: a repeated field is joined as a list (RFC 9110 §5.3). */
export function fieldValue (value: string | string[] | undefined): string | undefined {
  return typeof value === 'string' || value === undefined ? value : value.join(', ')
}
