// Fastify 5, unmodified (node-uwsgi awaits ready(), then routes): `npx node-uwsgi examples/fastify-app.js`.
import Fastify from 'fastify';

const app = Fastify();
app.get('/', async (request) => `Hello from Fastify, ${request.ip} over ${request.protocol}\n`);
export default app;
