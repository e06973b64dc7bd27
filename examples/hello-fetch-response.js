// The fetch hello with node-uwsgi's own Response, which the server writes without a stream (README, "fetch"):
// `npx node-uwsgi examples/hello-fetch-response.js`.
import { Response } from 'node-uwsgi';

export default {
  fetch(request) {
    const url = new URL(request.url);
    return new Response(`Hello from node-uwsgi: ${request.method} ${url.pathname}\n`, {
      headers: { 'Content-Type': 'text/plain; charset=utf-8' },
    });
  },
};
