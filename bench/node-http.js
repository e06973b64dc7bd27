// The baseline: a plain node:http server on a Unix socket, as Node users run it today behind nginx's
// `proxy_pass` with upstream keep-alive; its handler is examples/hello-node.js, so the same code runs both ways.
import http from 'node:http';

const server = http.createServer((req, res) => {
  const body = `Hello from node-uwsgi: ${req.method} ${req.url}\n`;
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});
// Longer than nginx's upstream keepalive_timeout (60 s): otherwise Node may close an idle connection just as
// nginx reuses it, and the client gets a 502 (the usual advice for Node behind a keep-alive proxy).
server.keepAliveTimeout = 65_000;
server.listen(process.argv[2]);
