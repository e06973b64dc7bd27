// A CommonJS WSGI-shaped app: `npx node-uwsgi examples/hello-cjs.cjs`.
exports.application = function application(environ, startResponse) {
  startResponse('200 OK', [['Content-Type', 'text/plain; charset=utf-8']]);
  return ['Hello from a CommonJS app\n'];
};
