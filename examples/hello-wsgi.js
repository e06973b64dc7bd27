// A WSGI-shaped app: `npx node-uwsgi examples/hello-wsgi.js --socket 127.0.0.1:3031` (what `npm start` runs).
export function application(environ, startResponse) {
  const body = `Hello from node-uwsgi: ${environ.REQUEST_METHOD} ${environ.PATH_INFO}\n`;
  startResponse('200 OK', [
    ['Content-Type', 'text/plain; charset=utf-8'],
    ['Content-Length', String(Buffer.byteLength(body))],
  ]);
  return [body];
}
