// A NestJS 12 app behind a real nginx, written as Nest's docs write one (TypeScript with experimentalDecorators
// and emitDecoratorMetadata, test/fixtures/apps/nest/), compiled here with tsc: handed over from a factory
// (`main.js:createApp()`), as an exported, never-listened INestApplication (`app.js:app`), and on Nest's Fastify
// platform (`main-fastify.js:createApp()`).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, ROOT, seededBytes, sha256, startStack, type Stack } from './nginx.js';

const SOURCES = join(ROOT, 'test/fixtures/apps/nest');
let out: string;

beforeAll(() => {
  out = mkdtempSync(join(tmpdir(), 'nu-nest-'));
  // ESM output (top-level await in app.ts); the compiled files find the packages through this link.
  writeFileSync(join(out, 'package.json'), JSON.stringify({ type: 'module' }));
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'), 'dir');
  writeFileSync(
    join(out, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        experimentalDecorators: true,
        emitDecoratorMetadata: true,
        skipLibCheck: true,
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules/@types')],
        rootDir: SOURCES,
        outDir: out,
      },
      files: ['main.ts', 'main-fastify.ts', 'app.ts', 'app.module.ts', 'app.controller.ts'].map((file) => join(SOURCES, file)),
    }),
  );
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(out, 'tsconfig.json')], { encoding: 'utf8' });
  if (tsc.status !== 0) throw new Error(`tsc failed (${tsc.status}):\n${tsc.stdout}${tsc.stderr}`);
}, 120_000);

afterAll(() => {
  if (out) rmSync(out, { recursive: true, force: true });
});

const DATA = seededBytes(0x4e57, 768 * 1024).toString('base64');

describe.each([
  { name: 'a factory', spec: 'main.js:createApp()' },
  { name: 'an exported app', spec: 'app.js:app' },
  { name: 'a factory on the Fastify platform', spec: 'main-fastify.js:createApp()' },
])('NestJS as $name through nginx', ({ spec }) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ app: join(out, spec) });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('is served as a node app (init() run by the loader)', async () => {
    const ready = await stack.server.waitForLog((line) => line.msg === 'ready');
    expect(ready.interface).toBe('node');
    expect(ready.detectedBy).toBe('NestJS application (init(), getHttpServer())');
  });

  it('answers a GET route with what Express (or Fastify) computed behind it', async () => {
    const res = await httpRequest(stack.url('/hello'));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({ hello: 'nest', ip: '127.0.0.1', protocol: 'http' });
  });

  it('gives @Body() a 1 MiB JSON body whole', async () => {
    const body = Buffer.from(JSON.stringify({ data: DATA }));
    expect(body.length).toBeGreaterThan(1024 * 1024);
    const res = await httpRequest(stack.url('/digest'), { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(201);
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({ length: DATA.length, sha256: sha256(DATA) });
  });
});
