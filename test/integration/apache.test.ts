// The shipped apache/*.conf in front of the server through a real Apache (mod_proxy_uwsgi): every interface,
// mounted at the root and at /app, over a Unix socket and over TCP, with an upload and a streamed download.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snippet, startApacheStack, type ApacheStack, type Mount } from './apache.js';
import { ROOT, expectedDownload, httpDigest, httpRequest, seededBytes, sha256, type Transport } from './nginx.js';

const CASES: Array<{ file: string; mount: Mount; transport: Transport }> = [
  { file: 'apache/site-unix.conf', mount: 'root', transport: 'unix' },
  { file: 'apache/site-tcp.conf', mount: 'root', transport: 'tcp' },
  { file: 'apache/subpath-unix.conf', mount: 'subpath', transport: 'unix' },
  { file: 'apache/subpath-tcp.conf', mount: 'subpath', transport: 'tcp' },
];
const INTERFACES = [
  { name: 'wsgi', app: 'mounted-wsgi.mjs' },
  { name: 'node', app: 'mounted-node.mjs' },
  { name: 'fetch', app: 'mounted-fetch.mjs' },
] as const;

const DOWNLOAD = expectedDownload();

const json = (body: Buffer): Record<string, unknown> => JSON.parse(body.toString('utf8')) as Record<string, unknown>;

describe("the README's Apache section", () => {
  it('shows directives exactly as the shipped files have them', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Apache\n'), readme.indexOf('\n## ', readme.indexOf('\n## Apache\n') + 1));
    const block = /```apache\n([\s\S]*?)```/.exec(section)?.[1];
    expect(block, 'a ```apache block in "## Apache"').toBeDefined();
    const directives = block!.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
    expect(directives.length).toBeGreaterThan(0);
    const shipped = CASES.flatMap(({ mount, transport }) => snippet(mount, transport).text.split('\n').map((line) => line.trim()));
    for (const directive of directives) expect(shipped, directive).toContain(directive);
  });
});

describe.each(CASES)('$file', ({ file, mount, transport }) => {
  const { file: path, mountPoint } = snippet(mount, transport);
  /** The app's own path /x as the client addresses it through this mount. */
  const at = (path: string): string => (mountPoint === '/' ? path : `${mountPoint}${path}`);
  const base = mountPoint === '/' ? '' : mountPoint;

  it('is the file the harness loads, mounting the app where its name says', () => {
    expect(path.endsWith(file)).toBe(true);
    expect(mountPoint).toBe(mount === 'root' ? '/' : '/app');
  });

  describe.each(INTERFACES)('$name app', ({ name, app }) => {
    let stack: ApacheStack;
    beforeAll(async () => {
      stack = await startApacheStack({ app, mount, transport, env: { APP_BASE: base } });
    });
    afterAll(async () => {
      await stack?.stop();
    });

    it("serves a GET with the client's address and query", async () => {
      const res = await httpRequest(stack.url(at('/hello?via=apache')));
      expect(res.status, stack.apache.errorLog()).toBe(200);
      const seen = json(res.body);
      expect(seen).toMatchObject({ interface: name, method: 'GET', path: '/hello', query: 'via=apache', scheme: 'http', host: `127.0.0.1:${stack.port}` });
      if (name !== 'fetch') expect(seen.remoteAddress).toBe('127.0.0.1');
      if (name !== 'fetch') expect(seen.remotePort).toBe(res.localPort);
    });

    if (name === 'wsgi') {
      it(`gives SCRIPT_NAME=${JSON.stringify(base)} and PATH_INFO the rest, decoded`, async () => {
        const res = await httpRequest(stack.url(at('/where?q=1')));
        expect(res.status).toBe(200);
        expect(json(res.body)).toMatchObject({ scriptName: base, pathInfo: '/where', query: 'q=1', requestUri: at('/where?q=1') });
        const encoded = await httpRequest(stack.url(at('/a%20b')));
        // wsgi.mjs answers 404 with the PATH_INFO it got.
        expect(encoded.status).toBe(404);
        expect(json(encoded.body)).toEqual({ error: 'not found', path: '/a b' });
      });

      it('passes Authorization on (mod_proxy_uwsgi adds it) and never a Proxy header (httpoxy)', async () => {
        const res = await httpRequest(stack.url(at('/where')), { headers: { authorization: 'Basic dTpw', proxy: 'http://evil.test' } });
        expect(json(res.body)).toMatchObject({ authorization: 'Basic dTpw', proxy: null });
      });

      it('answers 411 to a chunked upload: mod_proxy_uwsgi forbids chunked request bodies', async () => {
        const res = await httpRequest(stack.url(at('/upload')), { method: 'POST', body: [Buffer.from('a'.repeat(1000)), Buffer.from('b')] });
        expect(res.status).toBe(411);
        expect(stack.apache.errorLog()).toMatch(/chunked Transfer-Encoding forbidden/);
      });

      it('gets a 500 from Apache, not a broken packet, for headers over the 64 KB vars block', async () => {
        const headers: Record<string, string> = {};
        for (let i = 0; i < 10; i++) headers[`x-big-${i}`] = 'v'.repeat(7000);
        const res = await httpRequest(stack.url(at('/where')), { headers });
        expect(res.status).toBe(500);
        expect(stack.apache.errorLog()).toMatch(/AH10259: .*packet size too large/);
      });

      it('drains a body the app never reads, so Apache answers with the app (not 503)', async () => {
        const res = await httpRequest(stack.url(at('/hello')), { method: 'POST', body: seededBytes(9, 3 * 1024 * 1024) });
        expect(res.status).toBe(200);
        expect(json(res.body)).toMatchObject({ interface: 'wsgi', method: 'POST' });
      });
    } else {
      it(`sees the whole target, ${at('/where?q=1')}, as the client sent it`, async () => {
        const res = await httpRequest(stack.url(at('/where?q=1')));
        expect(res.status).toBe(200);
        const seen = json(res.body);
        if (name === 'node') expect(seen.url).toBe(at('/where?q=1'));
        else expect(seen.url).toBe(stack.url(at('/where?q=1')));
      });
    }

    if (mount === 'subpath') {
      it(`serves ${mountPoint} and ${mountPoint}/ as the app's root, and leaves ${mountPoint}le to Apache`, async () => {
        for (const path of [mountPoint, `${mountPoint}/`]) {
          const res = await httpRequest(stack.url(`${path}?root=1`));
          // Every fixture app answers 404 with the path it routed on: "/" here.
          expect(res.status, path).toBe(404);
          expect(json(res.body), path).toMatchObject({ error: 'not found', path: '/' });
        }
        if (name === 'wsgi') {
          // Apache sends SCRIPT_NAME=/app/ for /app/ (PATH_INFO=/); the app must see /app either way.
          for (const path of [mountPoint, `${mountPoint}/`]) {
            const res = await httpRequest(stack.url(`${path}?where`));
            expect(json(res.body), path).toMatchObject({ scriptName: mountPoint, pathInfo: '/', sentScriptName: path });
          }
        }
        const outside = await httpRequest(stack.url(`${mountPoint}le`));
        expect(outside.status).toBe(404);
        expect(outside.headers['content-type']).toMatch(/^text\/html/);
      });
    }

    it('receives a 3 MiB upload whole (sha256)', async () => {
      const body = seededBytes(transport === 'unix' ? 6 : 7, 3 * 1024 * 1024 + 17);
      const res = await httpRequest(stack.url(at('/upload')), { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
      expect(res.status, stack.apache.errorLog()).toBe(200);
      expect(json(res.body)).toEqual({ length: body.length, sha256: sha256(body) });
    });

    it('streams a 16 MiB download whole (sha256)', async () => {
      const res = await httpDigest(stack.url(at('/download')));
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toBe('application/octet-stream');
      expect({ length: res.length, sha256: res.sha256 }).toEqual(DOWNLOAD);
    });
  });
});
