// Master/worker message cost: Node's JSON IPC versus msgpackr over 'advanced' (V8) IPC, for the messages the
// process manager actually sends (a heartbeat with a few in-flight requests). Prints messages/s received by the
// parent and the parent's CPU time per message. `node bench/ipc.js` (any Node version; quote Node 24).
import { fork } from 'node:child_process';
import { cpus, release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';

const COUNT = Number(process.env.IPC_COUNT ?? 200_000);
const heartbeat = {
  t: 'hb',
  requests: 123456,
  rss: 87_654_321,
  inflight: [
    ['GET', '/api/orders/12345?expand=lines', 1796060000000],
    ['POST', '/api/checkout', 1796060000123],
  ],
};

if (process.argv[2] === 'child') {
  const mode = process.argv[3];
  const packr = new Packr();
  const send = () => {
    for (let i = 0; i < 1000; i++) {
      process.send(mode === 'msgpackr' ? packr.pack(heartbeat) : heartbeat);
    }
  };
  process.on('message', (m) => {
    if (m === 'go') {
      let sent = 0;
      const loop = () => {
        send();
        sent += 1000;
        if (sent < COUNT) setImmediate(loop);
      };
      loop();
    }
  });
} else {
  const results = [];
  for (const mode of ['json', 'advanced', 'msgpackr']) {
    const serialization = mode === 'json' ? 'json' : 'advanced';
    const child = fork(fileURLToPath(import.meta.url), ['child', mode], { serialization });
    const packr = new Packr();
    let received = 0;
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await new Promise((resolve) => {
      child.on('message', (m) => {
        const value = mode === 'msgpackr' ? packr.unpack(Buffer.from(m.buffer ?? m, m.byteOffset, m.byteLength)) : m;
        if (value.t !== 'hb') throw new Error('bad message');
        if (++received === COUNT) resolve();
      });
      child.send('go');
    });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    child.kill();
    results.push({
      mode: mode === 'msgpackr' ? 'msgpackr over advanced IPC' : `${mode} IPC`,
      perSecond: Math.round(COUNT / seconds),
      parentCpuMicrosPerMessage: ((cpu.user + cpu.system) / COUNT).toFixed(2),
    });
  }
  console.log(`node ${process.version}, ${cpus()[0]?.model} x${cpus().length}, linux ${release()}; ${COUNT} heartbeats each`);
  console.table(results);
}
