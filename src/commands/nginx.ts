// `node-uwsgi nginx`: not written yet.
export async function run(_args: string[]): Promise<number> {
  process.stderr.write('node-uwsgi nginx: not implemented yet\n');
  return 1;
}
