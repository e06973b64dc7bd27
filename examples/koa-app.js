// Koa 3, unmodified (node-uwsgi uses app.callback()): `npx node-uwsgi examples/koa-app.js`.
import Koa from 'koa';

const app = new Koa();
app.use((ctx) => {
  ctx.body = `Hello from Koa, ${ctx.ip} over ${ctx.protocol}\n`;
});
export default app;
