// The ceiling for Node behind `uwsgi_pass`: read the uwsgi header and vars block, answer one fixed response,
// close. No parsing of the vars and no body (GET only), so nothing a real server could do is cheaper.
import net from 'node:net';

const BODY = 'Hello from node-uwsgi: GET /\n';
const RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(BODY)}\r\nConnection: close\r\n\r\n${BODY}`,
);

net
  .createServer((socket) => {
    let head = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      if (head === null) return;
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      // Header: modifier1 (u8), vars block size (u16 LE), modifier2 (u8); the vars block follows.
      if (head.length >= 4 && head.length >= 4 + head.readUInt16LE(1)) {
        head = null;
        socket.end(RESPONSE);
      }
    });
    socket.on('error', () => {});
  })
  .listen(process.argv[2]);
