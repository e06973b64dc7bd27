// Linux's socket tables under /proc/net (unix, tcp, tcp6): what the kernel says about a socket that Node cannot
// (an inherited fd's address, a listening socket's accept queue). Rows of whitespace-separated fields, the
// header line left out; none where there is no /proc.
import { readFileSync } from 'node:fs';

export function procNetRows(table: 'unix' | 'tcp' | 'tcp6'): string[][] {
  let text: string;
  try {
    text = readFileSync(`/proc/net/${table}`, 'latin1');
  } catch {
    return [];
  }
  const rows: string[][] = [];
  for (const line of text.split('\n').slice(1)) {
    const trimmed = line.trim();
    if (trimmed !== '') rows.push(trimmed.split(/\s+/));
  }
  return rows;
}
