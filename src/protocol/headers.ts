// HTTP header rules that the response writer (server/response.ts) and the WSGI validator (interfaces/validate.ts)
// both apply. Pure. RFC 9110 section 5.1 (token), section 7.6.1 (connection-specific fields).

/** A field name: RFC 9110's token. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Response headers the server owns, not the app: RFC 9110's connection-specific fields (Connection,
 * Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade; PEP 3333's hop-by-hop, whose RFC 2616 list also
 * had Proxy-Authenticate/-Authorization, which RFC 9110 makes end-to-end) and Trailer, since the server never
 * sends trailers (never chunked: the connection's close ends the body).
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'proxy-connection', 'keep-alive', 'te', 'transfer-encoding', 'upgrade', 'trailer']);
