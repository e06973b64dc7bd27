// The README's tables are documentation users act on: keep them in step with the error and option tables.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../src/errors.js';
import { OPTIONS } from '../src/options.js';
import { formatSocketAddress } from '../src/address.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

function tableAfter(heading: string): string[][] {
  const start = readme.indexOf(`\n## ${heading}\n`);
  expect(start, `README has a "## ${heading}" section`).toBeGreaterThan(-1);
  const rows: string[][] = [];
  for (const line of readme.slice(start).split('\n').slice(2)) {
    if (line.startsWith('## ')) break;
    if (!line.startsWith('|') || /^\|[-| ]+\|$/.test(line)) continue;
    rows.push(line.split('|').slice(1, -1).map((cell) => cell.trim()));
  }
  return rows.slice(1);
}

describe('README', () => {
  it('lists every error code with its status, and no other', () => {
    const rows = tableAfter('Errors');
    const documented = rows.map(([code, status]) => [code!.replaceAll('`', ''), status]);
    const actual = Object.entries(ERRORS).map(([code, spec]) => [
      code,
      'status' in spec && spec.status !== undefined ? String(spec.status) : '—',
    ]);
    expect(documented).toEqual(actual);
  });

  it('lists every option with its default, and no other', () => {
    const rows = tableAfter('Options');
    const documented = rows.map(([flag, def]) => [flag!.replaceAll('`', ''), def]);
    const actual = OPTIONS.map((spec) => {
      const flag = `--${spec.flag}${'arg' in spec && spec.arg ? ` <${spec.arg}>` : ''}`;
      const value = spec.default as unknown;
      const def = Array.isArray(value) ? value.map(formatSocketAddress).join(', ') : value === undefined ? '—' : String(value);
      return [flag, def];
    });
    expect(documented).toEqual(actual);
  });
});
