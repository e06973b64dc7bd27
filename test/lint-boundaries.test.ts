// The import boundaries of eslint.config.js hold: a file placed in src/protocol that imports the server fails
// lint with the boundary's message, and the imports its layer allows pass; README.md's Architecture table says the
// same as the rules.
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const eslint = new ESLint({ cwd: root });

async function boundaryErrors(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('import boundaries (eslint no-restricted-imports)', () => {
  it('reports a protocol module importing the server', async () => {
    const errors = await boundaryErrors('src/protocol/probe.ts', "import { listenOn } from '../server/listen.js';\nexport const probe = listenOn;\n");
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('src/protocol may import only errors');
  });

  it('passes the imports a layer allows', async () => {
    expect(await boundaryErrors('src/protocol/probe.ts', "import { UwsgiError } from '../errors.js';\nimport { getVar } from './vars.js';\nimport net from 'node:net';\nexport const probe = [UwsgiError, getVar, net];\n")).toEqual([]);
    expect(await boundaryErrors('src/master/probe.ts', "import { parseAppSpec } from '../app-loader/spec.js';\nexport const probe = parseAppSpec;\n")).toEqual([]);
  });

  it('reports the other imports against the grain', async () => {
    const cases: Array<[string, string]> = [
      ['src/ops/probe.ts', '../master/policy.js'],
      ['src/server/probe.ts', '../options.js'],
      ['src/server/probe.ts', '../master/messages.js'],
      ['src/interfaces/probe.ts', '../server/server.js'],
      ['src/master/probe.ts', '../app-loader/index.js'],
      ['src/worker/probe.ts', '../master/policy.js'],
      ['src/commands/probe.ts', '../server/http.js'],
      ['src/address.ts', './options.js'],
    ];
    for (const [file, source] of cases) {
      const errors = await boundaryErrors(file, `import * as probe from '${source}';\nexport { probe };\n`);
      expect(errors, `${file} importing ${source}`).toHaveLength(1);
    }
  });
});

describe("README's Architecture imports column", () => {
  it('matches IMPORTS in eslint.config.js', async () => {
    const config = (await import(pathToFileURL(`${root}eslint.config.js`).href)) as { IMPORTS: Record<string, string[]> };
    const readme = readFileSync(`${root}README.md`, 'utf8');
    const section = readme.slice(readme.indexOf('## Architecture'), readme.indexOf('Data flows one way per request'));
    const column: Record<string, string[]> = {};
    for (const [, part, imports] of section.matchAll(/^\| `([^`]+)` \| .* \| ([^|]+) \|$/gm)) {
      const cell = imports!.trim();
      if (cell === 'anything' || cell === '(C)') continue;
      column[`src/${part!.replace(/\/$/, '')}`] = cell === 'nothing' ? [] : cell.split(', ');
    }
    expect(column).toEqual(config.IMPORTS);
  });
});
