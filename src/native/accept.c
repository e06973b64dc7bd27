// The native accept path (README "Native accept"): owns a worker's uwsgi listening sockets on Node's own loop.
// It accepts, reads until the 4-byte header and the vars block are whole, and hands JavaScript one call per
// request with the count of bytes read into a buffer JavaScript holds. It reads the header's size and moves bytes: the vars are decoded by the
// TypeScript codec. JavaScript answers with respond() (a short complete response: one write, then close) or
// takes the connection over with release() (its fd becomes a net.Socket: bodies, streams, Upgrades).
//
// Ownership of a connection's fd: C until the request callback runs; from then on JavaScript decides (respond,
// release or close), and C never closes it on its own: a closed fd number is reused at once by the next accept.
// Node-API + libuv 1.x (uv_poll_t, uv_timer_t, uv_backend_fd) only, and Linux's epoll: one binary for Node 20 and 24.
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/stat.h>

#define MAX_HEAD (4 + 65535)
#define READ_SIZE (MAX_HEAD + 16384)
#define ACCEPT_BATCH 64

// Wake-ups (README "Native accept"): every worker's listener shares the one listening socket. Watched by a plain
// uv_poll, each connection woke every worker (their loops' epoll sets all wait on the socket). Instead the listening
// fd goes into the loop's own epoll set (uv_backend_fd) with EPOLLEXCLUSIVE, so that the kernel wakes one worker
// among those waiting in epoll_wait; a worker whose loop is busy is not waiting, and the wake-up goes on to the
// next (fs/eventpoll.c ep_poll_callback). libuv finds a watcher by the fd in an event's data: the socket's entry
// carries the fd of `key`, an eventfd nobody writes, watched by `poll`, so its events reach on_listen_event.
// An epoll set of our own watched by libuv would not do: the exclusive wake-up needs a waiter in epoll_wait on the
// set that holds the socket, and libuv's loop waits on its own set.
typedef struct listener {
  uv_poll_t poll;   // on `key` (or on `fd` itself where the kernel has no EPOLLEXCLUSIVE: key -1)
  uv_timer_t retry; // EMFILE: the listener pauses, then tries again
  int fd;
  int key;
  int backend; // the loop's epoll fd
  int closing;
  napi_env env;
  napi_ref on_request; // (fd, bytes, complete) => void
  napi_ref on_abort;   // (fd) => void: the peer hung up while the app runs
  napi_ref on_error;   // (errno) => void: accept failed
  napi_async_context actx;
  char *rbuf; // the env's read buffer (readBuffer): JavaScript reads the request from it during onRequest
  uv_timer_t sweep; // hands connections still waiting for a first byte to JavaScript (its --header-timeout)
  uint64_t ticks;
  int waiting;
} listener_t;

// A connection JavaScript holds after its request callback returned without an answer: watched for the peer's
// hang-up (UV_DISCONNECT / EOF) so that the app's signal can be aborted.
typedef struct conn {
  uv_poll_t poll;
  listener_t *l;
  int fd;
  int waiting;   // accepted before a byte arrived: C waits for the head (JavaScript has not seen the fd)
  uint64_t tick; // when it started waiting (the listener's sweep count)
  char peer[INET6_ADDRSTRLEN]; // a TCP peer's address while waiting ("" for Unix sockets)
} conn_t;

// Reads land in a Buffer JavaScript holds (exports.readBuffer, one per env): onRequest gets the byte count, not a
// new Buffer. Node-API's buffer from C (napi_create_buffer_copy) cost a malloc, a typed array given its prototype
// from C++ and a finalizer per request (bench/README.md, "Figures the source cites"). JavaScript copies what it
// keeps past the call (a body that came with the head, the bytes of a hand-over).
// What each env (the main thread, a worker thread) holds: its read buffer, given to JavaScript as readBuffer.
typedef struct env_data {
  char *rbuf;
  napi_ref buffer;
} env_data_t;

static conn_t **conns; // by fd: watched connections
static int nconns;
static int reserve_fd = -1; // kept free for EMFILE (on_listen_event)
static int pending_fd = -1; // the fd whose request callback is running
static int pending_done;    // set by respond/release/close during that callback

static napi_value undefined_value(napi_env env) { napi_value v; napi_get_undefined(env, &v); return v; }
static napi_value int_value(napi_env env, int64_t n) { napi_value v; napi_create_int64(env, n, &v); return v; }

static void throw_errno(napi_env env, const char *what, int err) {
  char msg[128];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, err == EADDRINUSE ? "EADDRINUSE" : NULL, msg);
}

static void free_handle(uv_handle_t *h) { free(h->data); }

static void call(listener_t *l, napi_ref ref, size_t argc, napi_value *argv) {
  napi_env env = l->env;
  napi_value fn, recv, res;
  if (napi_get_reference_value(env, ref, &fn) != napi_ok || fn == NULL) return;
  napi_get_global(env, &recv); // make_callback wants an object as the receiver
  // make_callback runs the microtasks and ticks the call queued: an app that answers at once has answered.
  if (napi_make_callback(env, l->actx, recv, fn, argc, argv, &res) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value e;
      napi_get_and_clear_last_exception(env, &e);
      napi_fatal_exception(env, e);
    }
  }
}

static void unwatch(int fd) {
  if (fd < 0 || fd >= nconns || conns[fd] == NULL) return;
  conn_t *c = conns[fd];
  conns[fd] = NULL;
  uv_poll_stop(&c->poll); // takes the fd out of the loop's epoll set at once (uv__platform_invalidate_fd)
  c->poll.data = c;
  uv_close((uv_handle_t *)&c->poll, free_handle);
}

static void dispatch(listener_t *l, int fd, ssize_t got, const char *peer);

static void stop_waiting(conn_t *c) {
  if (!c->waiting) return;
  c->waiting = 0;
  if (--c->l->waiting == 0) uv_timer_stop(&c->l->sweep);
}

static void on_conn_event(uv_poll_t *p, int status, int events) {
  conn_t *c = (conn_t *)p;
  if (c->waiting) {
    int fd = c->fd;
    listener_t *l = c->l;
    ssize_t got = -1;
    if (status == 0) {
      do got = read(fd, l->rbuf, READ_SIZE); while (got < 0 && errno == EINTR);
      if (got < 0 && errno == EAGAIN) return;
    }
    char peer[INET6_ADDRSTRLEN];
    memcpy(peer, c->peer, sizeof peer);
    stop_waiting(c);
    unwatch(fd);
    if (got <= 0) close(fd); // gone before a byte: nothing to answer
    else dispatch(l, fd, got, peer);
    return;
  }
  if (status == 0 && (events & UV_READABLE) && !(events & UV_DISCONNECT)) {
    // Bytes after a complete body-less request: read and dropped (nginx sends none); EOF means the peer left.
    ssize_t n = read(c->fd, c->l->rbuf, READ_SIZE);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) return;
  }
  int fd = c->fd;
  listener_t *l = c->l;
  uv_poll_stop(p); // the fd stays open: JavaScript closes it (respond or close)
  napi_handle_scope scope;
  napi_open_handle_scope(l->env, &scope);
  napi_value arg = int_value(l->env, fd);
  unwatch(fd);
  call(l, l->on_abort, 1, &arg);
  napi_close_handle_scope(l->env, scope);
}

static int watch(listener_t *l, int fd) {
  if (fd >= nconns) {
    int n = nconns ? nconns : 1024;
    while (n <= fd) n *= 2;
    conn_t **grown = realloc(conns, n * sizeof *conns);
    if (grown == NULL) return -ENOMEM;
    memset(grown + nconns, 0, (n - nconns) * sizeof *conns);
    conns = grown;
    nconns = n;
  }
  conn_t *c = malloc(sizeof *c);
  if (c == NULL) return -ENOMEM;
  uv_loop_t *loop;
  napi_get_uv_event_loop(l->env, &loop);
  c->l = l;
  c->fd = fd;
  c->waiting = 0;
  c->tick = l->ticks;
  c->peer[0] = 0;
  int r = uv_poll_init(loop, &c->poll, fd);
  if (r == 0) r = uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, on_conn_event);
  if (r != 0) {
    c->poll.data = c;
    uv_close((uv_handle_t *)&c->poll, free_handle);
    return r;
  }
  conns[fd] = c;
  return 0;
}

static void on_sweep(uv_timer_t *t) {
  listener_t *l = t->data;
  uint64_t now = ++l->ticks;
  for (int fd = 0; fd < nconns && l->waiting > 0; fd++) {
    conn_t *c = conns[fd];
    if (c == NULL || c->l != l || !c->waiting || now - c->tick < 2) continue;
    char peer[INET6_ADDRSTRLEN];
    memcpy(peer, c->peer, sizeof peer);
    stop_waiting(c);
    unwatch(fd);
    dispatch(l, fd, 0, peer); // JavaScript takes it over, and times the head out
  }
}

/** One accepted connection: one read. A whole head goes to JavaScript as a request; a partial one goes to
 * JavaScript to take over (it has the header timeout and the error answers); nothing yet, and C waits for the
 * first bytes, for 1 to 2 s, before JavaScript takes it over. */
static void serve(listener_t *l, int fd, const char *peer) {
  ssize_t got;
  do got = read(fd, l->rbuf, READ_SIZE); while (got < 0 && errno == EINTR);
  if (got == 0 || (got < 0 && errno != EAGAIN)) { close(fd); return; } // gone before a byte: nothing to answer
  if (got < 0) {
    if (watch(l, fd) != 0) { dispatch(l, fd, 0, peer); return; }
    conns[fd]->waiting = 1;
    memcpy(conns[fd]->peer, peer, sizeof conns[fd]->peer);
    if (l->waiting++ == 0) uv_timer_start(&l->sweep, on_sweep, 1000, 1000);
    return;
  }
  dispatch(l, fd, got, peer);
}

/** Hands JavaScript the `got` bytes in the read buffer read from `fd`: a request if the head is whole, else a hand-over.
 * `peer`: a TCP peer's address, for --allow-from ("" for Unix sockets). */
static void dispatch(listener_t *l, int fd, ssize_t got, const char *peer) {
  const unsigned char *head = (const unsigned char *)l->rbuf;
  int complete = got >= 4 && (size_t)got >= 4 + (head[1] | ((size_t)head[2] << 8));
  napi_env env = l->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[4];
  argv[0] = int_value(env, fd);
  argv[1] = int_value(env, got);
  napi_get_boolean(env, complete, &argv[2]);
  if (peer[0]) napi_create_string_latin1(env, peer, NAPI_AUTO_LENGTH, &argv[3]);
  else napi_get_undefined(env, &argv[3]);
  pending_fd = fd;
  pending_done = 0;
  call(l, l->on_request, 4, argv);
  // Not answered yet (an app that awaits): watch for the peer's hang-up until JavaScript decides.
  if (!pending_done && watch(l, fd) != 0) { /* no watch: the request runs on, without abort on hang-up */ }
  pending_fd = -1;
  napi_close_handle_scope(env, scope);
}

static void on_listen_event(uv_poll_t *p, int status, int events);
static int accept_one(int lfd, char peer[INET6_ADDRSTRLEN]);

/** Puts the listening socket in (on) or out of the loop's epoll set: EPOLLEXCLUSIVE entries take no
 * EPOLL_CTL_MOD, so a pause removes it. Returns 0 or -errno. */
static int arm(listener_t *l, int on) {
  if (l->key < 0) return on ? uv_poll_start(&l->poll, UV_READABLE, on_listen_event) : uv_poll_stop(&l->poll);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = l->key};
  if (!on) return epoll_ctl(l->backend, EPOLL_CTL_DEL, l->fd, &ev) < 0 ? -errno : 0;
  // The key's watcher first (libuv stops it on an error event): an event naming an unwatched key is dropped by
  // libuv, and the socket's entry would wake the loop again and again.
  int r = uv_poll_start(&l->poll, UV_READABLE, on_listen_event);
  return r != 0 ? r : epoll_ctl(l->backend, EPOLL_CTL_ADD, l->fd, &ev) < 0 ? -errno : 0;
}

static void on_retry(uv_timer_t *t) {
  listener_t *l = t->data;
  if (!l->closing) arm(l, 1);
}

static void on_listen_event(uv_poll_t *p, int status, int events) {
  listener_t *l = (listener_t *)p;
  if (l->closing) return;
  if (status < 0) {
    // An error event (libuv has stopped the watcher): paused like a failed accept, then tried again.
    arm(l, 0);
    uv_timer_start(&l->retry, on_retry, 100, 0);
    return;
  }
  for (int i = 0; i < ACCEPT_BATCH && !l->closing; i++) {
    char peer[INET6_ADDRSTRLEN];
    int fd = accept_one(l->fd, peer);
    if (fd >= 0) {
      serve(l, fd, peer);
      continue;
    }
    int err = -fd;
    if (err == EAGAIN || err == EINTR || err == ECONNABORTED) return;
    if ((err == EMFILE || err == ENFILE) && reserve_fd >= 0) {
      // libuv's uv__emfile_trick: with the reserve descriptor freed, the queued connections are accepted and
      // closed unserved (nginx answers 502 at once instead of waiting on a backlog nobody takes from).
      close(reserve_fd);
      int q;
      while ((q = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) close(q);
      reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    } else {
      // No reserve, or another error (ENOBUFS...): the listener is level-triggered, so it pauses instead of spinning.
      arm(l, 0);
      uv_timer_start(&l->retry, on_retry, 100, 0);
    }
    napi_handle_scope scope;
    napi_open_handle_scope(l->env, &scope);
    napi_value arg = int_value(l->env, err);
    call(l, l->on_error, 1, &arg);
    napi_close_handle_scope(l->env, scope);
    return;
  }
}

/** One accept4 on a listening socket for a connection to serve: the fd (non-blocking, TCP_NODELAY for TCP) and
 * the TCP peer's address in `peer` ("" for Unix sockets), or -errno. */
static int accept_one(int lfd, char peer[INET6_ADDRSTRLEN]) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return -errno;
  peer[0] = 0;
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, peer, INET6_ADDRSTRLEN);
    else inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, peer, INET6_ADDRSTRLEN);
  }
  return fd;
}

static int get_fd(napi_env env, napi_value v) {
  int32_t fd = -1;
  if (napi_get_value_int32(env, v, &fd) != napi_ok) return -1;
  return fd;
}

/** The fd of a call that takes one (release, close, refuseNew); -1 if it is missing or not an int32. */
static int fd_arg(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  return argc == 1 ? get_fd(env, a[0]) : -1;
}

/** listen(fd, onRequest, onAbort, onError): serves the listening socket `fd` (already bound and listening);
 * returns an external to pass to stop(). onRequest(fd, length, complete, peer): the request's first `length` bytes
 * are in readBuffer until it returns. */
static napi_value Listen(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value a[4];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  int fd = argc == 4 ? get_fd(env, a[0]) : -1;
  napi_valuetype t1, t2, t3;
  if (fd < 0 || napi_typeof(env, a[1], &t1) != napi_ok || napi_typeof(env, a[2], &t2) != napi_ok ||
      napi_typeof(env, a[3], &t3) != napi_ok || t1 != napi_function || t2 != napi_function || t3 != napi_function) {
    napi_throw_type_error(env, NULL, "listen(fd, onRequest, onAbort, onError)");
    return NULL;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) { throw_errno(env, "listen", errno); return NULL; }
  if (reserve_fd < 0) reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  env_data_t *data = NULL;
  if (napi_get_instance_data(env, (void **)&data) != napi_ok || data == NULL) { napi_throw_error(env, NULL, "listen: no read buffer"); return NULL; }
  listener_t *l = calloc(1, sizeof *l);
  if (l == NULL) { throw_errno(env, "listen", ENOMEM); return NULL; }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  l->fd = fd;
  l->env = env;
  napi_create_reference(env, a[1], 1, &l->on_request);
  napi_create_reference(env, a[2], 1, &l->on_abort);
  napi_create_reference(env, a[3], 1, &l->on_error);
  l->rbuf = data->rbuf;
  napi_value name;
  napi_create_string_utf8(env, "uwsgi-native", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &l->actx);
  uv_timer_init(loop, &l->retry);
  l->retry.data = l;
  uv_timer_init(loop, &l->sweep);
  l->sweep.data = l;
  uv_unref((uv_handle_t *)&l->sweep);
  // EPOLLEXCLUSIVE: Linux 4.5+. Without it (EINVAL) the listening fd is polled itself, and every worker wakes
  // per connection. The socket's entry goes in first: no epoll_wait runs before the key's watcher exists.
  l->backend = uv_backend_fd(loop);
  l->key = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = l->key};
  int r = l->key < 0 ? -errno : 0;
  if (r == 0 && epoll_ctl(l->backend, EPOLL_CTL_ADD, fd, &ev) < 0) {
    r = errno == EINVAL ? 0 : -errno; // EEXIST: this loop watches the fd already
    close(l->key);
    l->key = -1;
  }
  if (r == 0) r = uv_poll_init(loop, &l->poll, l->key >= 0 ? l->key : fd);
  if (r == 0) r = uv_poll_start(&l->poll, UV_READABLE, on_listen_event);
  if (r != 0) {
    if (l->key >= 0) arm(l, 0);
    napi_throw_error(env, NULL, uv_strerror(r));
    return NULL; // the listener leaks: a failed start ends the worker
  }
  napi_value ext;
  napi_create_external(env, l, NULL, NULL, &ext);
  return ext;
}

/** stop(listener, serveQueue): stops accepting and closes the listening fd (this process's copy); with
 * serveQueue, first accepts and serves what is queued (this close may be the socket's last). The listener's callbacks
 * stay: the requests it started still hear of their peers' hang-ups while they finish (a draining worker); its
 * few bytes are not freed (a worker stops its listeners once, on its way out). */
static napi_value Stop(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  listener_t *l = NULL;
  bool serve_queue = false;
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  if (argc < 1 || napi_get_value_external(env, a[0], (void **)&l) != napi_ok || l == NULL || l->closing) return undefined_value(env);
  if (argc >= 2) napi_get_value_bool(env, a[1], &serve_queue);
  l->closing = 1;
  uv_timer_stop(&l->retry);
  // Out of the loop's epoll set before the key goes: a stopped listener takes no wake-up from the others, and no
  // event may name a key whose fd number is reused.
  arm(l, 0);
  uv_poll_stop(&l->poll);
  // What is queued is served before the close (README "Deploys that lose nothing"): closing the last fd of a
  // listening socket resets every connection still in its queue, and nginx has written its request on them (a
  // POST it cannot retry). At a stop this process's close is the last one once the other workers have stopped,
  // so it accepts until the queue is empty, then closes in the same breath; with the master's SYN filter in place
  // (refuseNew) nothing new joins the queue meanwhile. Measured: bench/stop-loss.js. Not when the master keeps
  // the socket (a reload, recycling): the queue waits for the other workers, and a worker recycled for its memory
  // takes no more requests.
  while (serve_queue) {
    char peer[INET6_ADDRSTRLEN];
    int fd = accept_one(l->fd, peer);
    if (fd == -EINTR || fd == -ECONNABORTED) continue;
    if (fd < 0) break; // EAGAIN: empty; EMFILE and the like: the rest is lost as before
    serve(l, fd, peer);
  }
  // Connections still waiting for their first bytes go to JavaScript now, as the sweep would hand them over: they
  // are requests nginx has sent or is sending (closing them was a 502 at every graceful reload that caught one).
  for (int fd = 0; fd < nconns && l->waiting > 0; fd++) {
    conn_t *c = conns[fd];
    if (c == NULL || c->l != l || !c->waiting) continue;
    char peer[INET6_ADDRSTRLEN];
    memcpy(peer, c->peer, sizeof peer);
    stop_waiting(c);
    unwatch(fd);
    dispatch(l, fd, 0, peer);
  }
  uv_timer_stop(&l->sweep);
  close(l->fd);
  uv_close((uv_handle_t *)&l->poll, NULL);
  if (l->key >= 0) close(l->key);
  uv_close((uv_handle_t *)&l->retry, NULL);
  uv_close((uv_handle_t *)&l->sweep, NULL);
  return undefined_value(env);
}

static void settle(int fd) {
  unwatch(fd);
  if (fd == pending_fd) pending_done = 1;
}

/** respond(fd, bytes): one write of a whole response. Returns the bytes written: all of them, and the
 * connection is closed; fewer (the peer's buffer is full), and the fd is JavaScript's to finish (release
 * semantics); -errno on a write error, the connection closed. */
static napi_value Respond(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  int fd = argc == 2 ? get_fd(env, a[0]) : -1;
  void *p = NULL;
  size_t len = 0;
  bool isbuf = false;
  if (fd < 0 || napi_is_buffer(env, a[1], &isbuf) != napi_ok || !isbuf || napi_get_buffer_info(env, a[1], &p, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "respond(fd, buffer)");
    return NULL;
  }
  settle(fd);
  ssize_t n;
  do n = send(fd, p, len, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) n = 0;
  if (n < 0) { int err = errno; close(fd); return int_value(env, -err); }
  if ((size_t)n == len) close(fd);
  return int_value(env, n);
}

/** release(fd): JavaScript takes the connection over (new net.Socket({ fd })). */
static napi_value Release(napi_env env, napi_callback_info info) {
  int fd = fd_arg(env, info);
  if (fd >= 0) settle(fd);
  return undefined_value(env);
}

/** close(fd): drops the connection without an answer. */
static napi_value Close(napi_env env, napi_callback_info info) {
  int fd = fd_arg(env, info);
  if (fd >= 0) { settle(fd); close(fd); }
  return undefined_value(env);
}

/** adoptFd(fd, backlog): an inherited socket (fd://N, systemd's LISTEN_FDS) made ready for listen(): it must be
 * a listening stream socket; made non-blocking, its queue set to `backlog` (as Node's listen({ fd }) does).
 * Returns "unix" or "tcp"; throws an Error whose code says what the fd is not (ENOTSOCK, EPROTOTYPE, EINVAL). */
static napi_value AdoptFd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  int fd = argc == 2 ? get_fd(env, a[0]) : -1;
  int32_t backlog = 0;
  if (fd < 0 || napi_get_value_int32(env, a[1], &backlog) != napi_ok) {
    napi_throw_type_error(env, NULL, "adoptFd(fd, backlog)");
    return NULL;
  }
  int type = 0, domain = 0, accepting = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
    int err = errno;
    napi_throw_error(env, err == EBADF ? "EBADF" : "ENOTSOCK", err == EBADF ? "not open" : "not a socket");
    return NULL;
  }
  len = sizeof domain;
  getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
  len = sizeof accepting;
  getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len);
  if (type != SOCK_STREAM) { napi_throw_error(env, "EPROTOTYPE", "not a stream socket"); return NULL; }
  if (domain != AF_UNIX && domain != AF_INET && domain != AF_INET6) { napi_throw_error(env, "EAFNOSUPPORT", "neither a Unix nor a TCP socket"); return NULL; }
  if (!accepting) { napi_throw_error(env, "EINVAL", "a socket nobody called listen() on"); return NULL; }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || listen(fd, backlog) < 0) { throw_errno(env, "adoptFd", errno); return NULL; }
  napi_value kind;
  napi_create_string_latin1(env, domain == AF_UNIX ? "unix" : "tcp", NAPI_AUTO_LENGTH, &kind);
  return kind;
}

/** bindUnix(path, backlog): a listening Unix socket's fd (the master binds, workers inherit); throws on error. */
static napi_value BindUnix(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value a[2];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t plen = 0;
  int32_t backlog = 0;
  if (argc != 2 || napi_get_value_string_utf8(env, a[0], sa.sun_path, sizeof sa.sun_path, &plen) != napi_ok ||
      napi_get_value_int32(env, a[1], &backlog) != napi_ok) {
    napi_throw_type_error(env, NULL, "bindUnix(path, backlog)");
    return NULL;
  }
  if (plen == 0 || plen >= sizeof sa.sun_path - 1) { throw_errno(env, "bindUnix", ENAMETOOLONG); return NULL; }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { throw_errno(env, "socket", errno); return NULL; }
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    throw_errno(env, "bind", err);
    return NULL;
  }
  return int_value(env, fd);
}

/** bindTcp(host, port, backlog): a listening TCP socket's fd (the master binds, workers inherit); throws on error. */
static napi_value BindTcp(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value a[3];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  char host[256];
  size_t hl = 0;
  int32_t port = 0, backlog = 0;
  if (argc != 3 || napi_get_value_string_utf8(env, a[0], host, sizeof host, &hl) != napi_ok ||
      napi_get_value_int32(env, a[1], &port) != napi_ok || napi_get_value_int32(env, a[2], &backlog) != napi_ok ||
      port < 0 || port > 65535) {
    napi_throw_type_error(env, NULL, "bindTcp(host, port, backlog)");
    return NULL;
  }
  char service[8];
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int gai = getaddrinfo(hl ? host : NULL, service, &hints, &res);
  if (gai != 0 || res == NULL) {
    napi_throw_error(env, "ENOTFOUND", gai_strerror(gai));
    return NULL;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
    throw_errno(env, "bind", err);
    return NULL;
  }
  freeaddrinfo(res);
  return int_value(env, fd);
}

/** refuseNew(fd): a TCP listening socket completes no new handshake: a socket filter drops incoming SYNs (the ACKs
 * of handshakes under way and everything else pass). The kernel can stop a TCP port from queueing connections
 * only by closing it, which resets the queue; with the filter, a peer's connect gets no answer, its SYN
 * retransmitted a second later meets a closed port (refused) or a new server, and nginx moves on to the next
 * upstream with nothing sent, while the queue is served. The filter belongs to the socket, not to this fd: every
 * process holding it sees it. Returns 0, or -errno (a Unix socket: -EINVAL; nothing to do there, unlink does it). */
static napi_value RefuseNew(napi_env env, napi_callback_info info) {
  int fd = fd_arg(env, info);
  if (fd < 0) { napi_throw_type_error(env, NULL, "refuseNew(fd)"); return NULL; }
  int domain = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) return int_value(env, -errno);
  if (domain != AF_INET && domain != AF_INET6) return int_value(env, -EINVAL);
  // A socket filter on TCP runs with the packet at the TCP header (tcp_v4_rcv / tcp_v6_rcv, tcp_filter): byte 13
  // holds the flags. Drop SYN without ACK; keep the rest.
  static struct sock_filter code[] = {
    BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),
    BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0x12),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, 0),
    BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
  };
  struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) return int_value(env, -errno);
  return int_value(env, 0);
}

/** acceptAll(fd): accepts until the queue of listening socket `fd` is empty; returns the connections' fds
 * (non-blocking), for the JavaScript path to serve right before it closes the listener (as Stop does in C). */
static napi_value AcceptAll(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  int lfd = argc == 1 ? get_fd(env, a[0]) : -1;
  if (lfd < 0) { napi_throw_type_error(env, NULL, "acceptAll(fd)"); return NULL; }
  // Non-blocking whoever listens (libuv makes its fds so, but a blocking one would hang here on an empty queue).
  int flags = fcntl(lfd, F_GETFL);
  if (flags < 0 || fcntl(lfd, F_SETFL, flags | O_NONBLOCK) < 0) { throw_errno(env, "acceptAll", errno); return NULL; }
  napi_value list;
  napi_create_array(env, &list);
  uint32_t n = 0;
  for (;;) {
    char peer[INET6_ADDRSTRLEN];
    int fd = accept_one(lfd, peer);
    if (fd == -EINTR || fd == -ECONNABORTED) continue;
    if (fd < 0) break;
    napi_set_element(env, list, n++, int_value(env, fd));
  }
  return list;
}

static void free_env_data(napi_env env, void *data, void *hint) {
  (void)hint;
  napi_delete_reference(env, ((env_data_t *)data)->buffer);
  free(data);
}

/** unixQueue(fd): [queue, backlog] of a listening Unix socket, from sock_diag (UDIAG_SHOW_RQLEN, what `ss -xl`
 * prints as Recv-Q and Send-Q), asked by the socket's inode; -errno where the kernel does not say. The master reads
 * its sockets' queues so, instead of running ss every 2 s (a fork of the master each time: README "The listen
 * queue"). The answer comes from the kernel, not from a peer. */
static napi_value UnixQueue(napi_env env, napi_callback_info info) {
  int fd = fd_arg(env, info);
  if (fd < 0) { napi_throw_type_error(env, NULL, "unixQueue(fd)"); return NULL; }
  struct stat st;
  if (fstat(fd, &st) < 0) return int_value(env, -errno);
  if (!S_ISSOCK(st.st_mode)) return int_value(env, -ENOTSOCK); // a file's inode number could name a socket's
  int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return int_value(env, -errno);
  struct {
    struct nlmsghdr nlh;
    struct unix_diag_req req;
  } ask = {
    .nlh = {.nlmsg_len = sizeof ask, .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST},
    .req = {.sdiag_family = AF_UNIX, .udiag_states = 1 << 10 /* TCP_LISTEN */, .udiag_ino = (__u32)st.st_ino,
            .udiag_show = UDIAG_SHOW_RQLEN, .udiag_cookie = {~0U, ~0U} /* INET_DIAG_NOCOOKIE: by inode alone */},
  };
  long answer[1024]; // aligned for the netlink headers
  ssize_t n = send(nl, &ask, sizeof ask, 0) < 0 ? -1 : recv(nl, answer, sizeof answer, 0);
  int err = n < 0 ? errno : ENOENT;
  close(nl);
  for (struct nlmsghdr *h = (struct nlmsghdr *)answer; n > 0 && NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
    if (h->nlmsg_type == NLMSG_ERROR) {
      struct nlmsgerr *e = NLMSG_DATA(h);
      err = h->nlmsg_len >= NLMSG_LENGTH(sizeof *e) && e->error < 0 ? -e->error : ENOENT;
      break;
    }
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg))) continue;
    int left = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(struct unix_diag_msg)));
    for (struct rtattr *a = (struct rtattr *)((char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct unix_diag_msg)));
         RTA_OK(a, left); a = RTA_NEXT(a, left)) {
      if (a->rta_type != UNIX_DIAG_RQLEN || RTA_PAYLOAD(a) < sizeof(struct unix_diag_rqlen)) continue;
      struct unix_diag_rqlen *q = RTA_DATA(a);
      napi_value pair;
      napi_create_array_with_length(env, 2, &pair);
      napi_set_element(env, pair, 0, int_value(env, q->udiag_rqueue));
      napi_set_element(env, pair, 1, int_value(env, q->udiag_wqueue));
      return pair;
    }
  }
  return int_value(env, -err);
}

NAPI_MODULE_INIT() {
  env_data_t *data = calloc(1, sizeof *data);
  napi_value buffer;
  if (data == NULL || napi_create_buffer(env, READ_SIZE, (void **)&data->rbuf, &buffer) != napi_ok) {
    free(data);
    napi_throw_error(env, NULL, "accept: no memory for the read buffer");
    return NULL;
  }
  if (napi_create_reference(env, buffer, 1, &data->buffer) != napi_ok || napi_set_instance_data(env, data, free_env_data, NULL) != napi_ok) {
    free(data);
    napi_throw_error(env, NULL, "accept: cannot keep the read buffer");
    return NULL;
  }
  napi_set_named_property(env, exports, "readBuffer", buffer);
  static const struct { const char *name; napi_callback cb; } fns[] = {
    {"listen", Listen}, {"stop", Stop}, {"respond", Respond}, {"release", Release}, {"close", Close}, {"bindUnix", BindUnix}, {"bindTcp", BindTcp},
    {"adoptFd", AdoptFd}, {"refuseNew", RefuseNew}, {"acceptAll", AcceptAll}, {"unixQueue", UnixQueue},
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn);
    napi_set_named_property(env, exports, fns[i].name, fn);
  }
  return exports;
}
