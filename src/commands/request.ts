// `node-uwsgi request`: not written yet.
export async function run(_args: string[]): Promise<number> {
  process.stderr.write('node-uwsgi request: not implemented yet\n');
  return 1;
}
