// A plain Node (req, res) handler: `npx node-uwsgi examples/hello-node.js`.
export default function handler(req, res) {
  const body = `Hello from node-uwsgi: ${req.method} ${req.url}\n`;
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
