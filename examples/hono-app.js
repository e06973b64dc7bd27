// Hono 4, unmodified (a fetch app): `npx node-uwsgi examples/hono-app.js`.
import { Hono } from 'hono';

const app = new Hono();
app.get('/', (c) => c.text(`Hello from Hono over ${new URL(c.req.url).protocol}\n`));
export default app;
