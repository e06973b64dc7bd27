// `node-uwsgi top`: not written yet.
export async function run(_args: string[]): Promise<number> {
  process.stderr.write('node-uwsgi top: not implemented yet\n');
  return 1;
}
