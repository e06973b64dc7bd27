// A fetch handler (Request) => Response: `npx node-uwsgi examples/hello-fetch.js`.
export default {
  fetch(request) {
    const url = new URL(request.url);
    return new Response(`Hello from node-uwsgi: ${request.method} ${url.pathname}\n`, {
      headers: { 'Content-Type': 'text/plain; charset=utf-8' },
    });
  },
};
