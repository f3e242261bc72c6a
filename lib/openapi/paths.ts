// Where @fastify/swagger puts a route in the document it generates: the key of `paths` it makes of
// the route's URL, so the plugin finds a route's operations without touching the route's schema.

const NAME = /[A-Za-z0-9_]/

/**
 * A Fastify URL as @fastify/swagger writes it in `paths` (its `formatParamUrl`, step for step):
 * `/items/:id` → `/items/{id}`, `/files/*` → `/files/{*}`, `/:id(\\d+)` → `/{id}`, an unnamed
 * pattern `{regexp1}`, `::` a literal colon.
 */
export function swaggerPath (url: string): string {
  let path = ''
  let unnamed = 0
  let i = 0
  while (i < url.length) {
    const char = url[i++]
    if (char === ':' && url[i] === ':') {
      path += ':'
      i++
    } else if (char === '*') {
      path += '{*}'
    } else if (char !== ':' && char !== '(') {
      path += char
    } else {
      let name = ''
      if (char === ':') while (i < url.length && NAME.test(url[i])) name += url[i++]
      if (char === '(' || url[i] === '(') {
        if (char === ':') i++
        let level = 1
        while (i < url.length && level > 0) {
          const inner = url[i++]
          if (inner === '(') level++
          else if (inner === ')') level--
        }
        // An unclosed pattern ends the path, as swagger's does.
        if (level > 0) break
        path += `{${name === '' ? `regexp${++unnamed}` : name}}`
      } else if (i < url.length) {
        // The character that ended the name is taken as it is, whatever it is.
        path += `{${name}}${url[i++]}`
      } else if (name !== '') {
        path += `{${name}}`
      }
    }
  }
  return path
}

/**
 * The keys of `paths` a route's URL may have in `document`: with the base path stripped, as
 * @fastify/swagger does by default (`stripBasePath`), the OpenAPI servers' paths or the Swagger 2.0
 * `basePath`; then as it is.
 */
export function documentPaths (url: string, document: Record<string, unknown>): string[] {
  let stripped = url
  if (document.swagger === '2.0') {
    const basePath = document.basePath
    if (typeof basePath === 'string' && url.startsWith(basePath)) stripped = url.replace(basePath, '')
    if (!stripped.startsWith('/')) stripped = '/' + stripped
  } else if (Array.isArray(document.servers)) {
    for (const server of document.servers as Array<{ url?: unknown, variables?: Record<string, { default?: unknown }> }>) {
      if (typeof server?.url !== 'string') continue
      const serverUrl = server.url.replace(/\{([^{}]+)\}/g, (whole, name: string) => String(server.variables?.[name]?.default ?? whole))
      const basePath = serverUrl.startsWith('/') ? serverUrl : URL.canParse(serverUrl) ? new URL(serverUrl).pathname : '/'
      if (stripped.startsWith(basePath) && basePath !== '/') stripped = stripped.replace(basePath, '')
    }
  }
  return [...new Set([swaggerPath(stripped), swaggerPath(url)])]
}
