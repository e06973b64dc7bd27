# The uWSGI (C) peer of examples/hello-wsgi.js: the same body and headers, served by
# `uwsgi --plugin python3 --wsgi-file bench/hello-wsgi.py` (Debian: uwsgi-core, uwsgi-plugin-python3).
def application(environ, start_response):
    body = ('Hello from node-uwsgi: %s %s\n' % (environ['REQUEST_METHOD'], environ['PATH_INFO'])).encode('utf-8')
    start_response('200 OK', [('Content-Type', 'text/plain; charset=utf-8'), ('Content-Length', str(len(body)))])
    return [body]
