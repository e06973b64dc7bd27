// Express 5, unmodified: `npx node-uwsgi examples/express-app.js`.
import express from 'express';

const app = express();
app.get('/', (req, res) => res.send(`Hello from Express, ${req.ip} over ${req.protocol}\n`));
export default app;
