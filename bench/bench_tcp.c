/*
 * bench_tcp.c: TCP on 127.0.0.1 between two processes (this program
 * re-executes itself as the child), raw libuv baselines and troupe's TCP
 * transport side by side:
 *
 *   raw-tcp mode=batched    length-prefixed 16-byte frames, 64 KiB writes
 *   raw-tcp mode=unbatched  one uv_write per frame
 *   raw-tcp mode=pingpong   one frame bounced; rt/s
 *   tcp-frames mode=oneway  frames through the troupe TCP transport
 *                           (handshake, framing, batching, bounded queue)
 *   tcp-frames mode=pingpong
 *   tcp-tell mode=oneway    actor to remote actor through remoting over
 *                           the TCP transport (int32 described message)
 *   tcp-tell mode=pingpong
 *
 * The one-way figures are counted by the receiver (first frame to last);
 * the ping-pong figures by the side that starts each round trip. Sizes:
 * BENCH_TCP_N (default 5M frames one way), BENCH_TCP_RT (50k round trips).
 *
 *   bench_tcp [workload...]     all by default: raw-batched raw-unbatched
 *                               raw-pingpong frames-oneway frames-pingpong
 *                               tell-oneway tell-pingpong
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "bench_util.h"
#include "cluster/tcp.h"
#include <troupe/remote.h>

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAYLOAD 16

/* Remoting's resolve types; registered here in case the remoting layer
 * does not register them itself yet (see the report of issue 7). */
extern troupe_type TROUPE__T_IDENTIFY;
static void register_types(void);

static troupe_type T_GO_B = {.manifest = "bench.TcpGo", .version = 1, .size = 0};

static long N_ONEWAY, N_UNBATCHED, N_RT;
static uv_loop_t *loop;

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_tcp: %s: %s (%s)\n", what,
          rc > -30 ? troupe_strerror(rc) : uv_strerror(rc), troupe_errmsg());
  exit(1);
}

/* ------------------------------------------------------------------ */
/* Raw libuv                                                           */

typedef struct raw {
  uv_tcp_t srv, tcp;
  uv_connect_t creq;
  uint8_t rbuf[256 << 10];
  uint8_t part[4 + PAYLOAD];   /* a frame split across reads */
  size_t part_len;
  long frames, target;
  double t0;
  const char *mode;
  bool sender, echo;
  long sent, inflight;
} raw;

static raw R;

static void raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  *b = uv_buf_init((char *)R.rbuf, sizeof R.rbuf);
}

static void free_write(uv_write_t *w, int status) {
  if (status < 0) die("write", status);
  free(w);
}

static void raw_send_frames(long n);
static void raw_ping(void);

/* Parse frames (all are 4 + PAYLOAD bytes); the count is what matters. */
static long raw_count(const uint8_t *p, size_t n) {
  long f = 0;
  while (n) {
    size_t take = sizeof R.part - R.part_len;
    if (take > n) take = n;
    memcpy(R.part + R.part_len, p, take);   /* small: the frame is 20 B */
    R.part_len += take;
    p += take;
    n -= take;
    if (R.part_len == sizeof R.part) {
      uint32_t len = (uint32_t)R.part[0] << 24 | R.part[1] << 16 |
                     R.part[2] << 8 | R.part[3];
      if (len != PAYLOAD) die("raw frame length", -1);
      R.part_len = 0;
      f++;
    }
  }
  return f;
}

static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  if (nread < 0) {
    uv_close((uv_handle_t *)s, NULL);
    if (R.srv.data) uv_close((uv_handle_t *)&R.srv, NULL);
    return;
  }
  if (!R.frames && !R.sender && nread) R.t0 = bench_now();
  long f = raw_count((const uint8_t *)b->base, (size_t)nread);
  R.frames += f;
  if (R.echo) {
    for (long i = 0; i < f; i++) raw_send_frames(1);
    return;
  }
  if (R.sender) {                       /* ping-pong initiator */
    if (R.frames >= R.target) {
      double dt = bench_now() - R.t0;
      printf("workload=raw-tcp system=libuv value=%.0f unit=rt/s mode=pingpong "
             "n=%ld size=%d\n", R.target / dt, R.target, PAYLOAD);
      uv_close((uv_handle_t *)s, NULL);
      return;
    }
    for (long i = 0; i < f; i++) raw_ping();
    return;
  }
  if (R.frames >= R.target) {
    double dt = bench_now() - R.t0;
    printf("workload=raw-tcp system=libuv value=%.0f unit=msgs/s mode=%s "
           "n=%ld size=%d\n", R.target / dt, R.mode, R.target, PAYLOAD);
    uv_close((uv_handle_t *)s, NULL);
    uv_close((uv_handle_t *)&R.srv, NULL);
  }
}

static void frame_at(uint8_t *p, long seq) {
  p[0] = p[1] = p[2] = 0;
  p[3] = PAYLOAD;
  memset(p + 4, 0, PAYLOAD);
  memcpy(p + 4, &seq, sizeof seq);
}

/* One write per frame. */
static void raw_send_frames(long n) {
  for (long i = 0; i < n; i++) {
    uv_write_t *w = malloc(sizeof *w + 4 + PAYLOAD);
    uint8_t *p = (uint8_t *)(w + 1);
    frame_at(p, R.sent++);
    uv_buf_t b = uv_buf_init((char *)p, 4 + PAYLOAD);
    int rc = uv_write(w, (uv_stream_t *)&R.tcp, &b, 1, free_write);
    if (rc) die("uv_write", rc);
  }
}

static void raw_ping(void) { raw_send_frames(1); }

/* Batched: 64 KiB writes, two in flight. */
#define BATCH_FRAMES ((64 << 10) / (4 + PAYLOAD))
static void batch_write_cb(uv_write_t *w, int status);
static void raw_send_batch(void) {
  if (R.sent >= R.target) return;
  long n = R.target - R.sent;
  if (n > BATCH_FRAMES) n = BATCH_FRAMES;
  uv_write_t *w = malloc(sizeof *w + (size_t)n * (4 + PAYLOAD));
  uint8_t *p = (uint8_t *)(w + 1);
  for (long i = 0; i < n; i++) frame_at(p + i * (4 + PAYLOAD), R.sent++);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)(n * (4 + PAYLOAD)));
  int rc = uv_write(w, (uv_stream_t *)&R.tcp, &b, 1, batch_write_cb);
  if (rc) die("uv_write", rc);
  R.inflight++;
}
static void batch_write_cb(uv_write_t *w, int status) {
  if (status < 0) die("write", status);
  free(w);
  R.inflight--;
  while (R.inflight < 2 && R.sent < R.target) raw_send_batch();
  if (R.sent >= R.target && R.inflight == 0)
    uv_close((uv_handle_t *)&R.tcp, NULL);
}

static void unbatched_write_cb(uv_write_t *w, int status) {
  if (status < 0) die("write", status);
  free(w);
  R.inflight--;
  if (R.inflight == 0 && R.sent >= R.target) uv_close((uv_handle_t *)&R.tcp, NULL);
}

static void raw_connected(uv_connect_t *req, int status) {
  if (status < 0) die("connect", status);
  uv_tcp_nodelay(&R.tcp, 1);
  if (strcmp(R.mode, "batched") == 0) {
    raw_send_batch();
    raw_send_batch();
  } else if (strcmp(R.mode, "unbatched") == 0) {
    /* One uv_write (one send syscall) per frame, as a naive sender. */
    for (long i = 0; i < R.target; i++) {
      uv_write_t *w = malloc(sizeof *w + 4 + PAYLOAD);
      uint8_t *p = (uint8_t *)(w + 1);
      frame_at(p, R.sent++);
      uv_buf_t b = uv_buf_init((char *)p, 4 + PAYLOAD);
      int rc = uv_write(w, (uv_stream_t *)&R.tcp, &b, 1, unbatched_write_cb);
      if (rc) die("uv_write", rc);
      R.inflight++;
    }
  } else {                                    /* pingpong initiator */
    R.sender = true;
    uv_read_start((uv_stream_t *)&R.tcp, raw_alloc, raw_read);
    R.t0 = bench_now();
    raw_ping();
  }
}

static void raw_on_conn(uv_stream_t *srv, int status) {
  if (status < 0) die("accept", status);
  uv_tcp_init(loop, &R.tcp);
  uv_accept(srv, (uv_stream_t *)&R.tcp);
  uv_tcp_nodelay(&R.tcp, 1);
  uv_read_start((uv_stream_t *)&R.tcp, raw_alloc, raw_read);
}

/* ------------------------------------------------------------------ */
/* Spawning                                                            */

static pid_t spawn_child(const char *role, const char *addr, long n) {
  char self[4096], nb[32];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0) die("readlink", -1);
  self[len] = '\0';
  snprintf(nb, sizeof nb, "%ld", n);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    execl(self, self, "--child", role, addr, nb, (char *)NULL);
    _exit(127);
  }
  return pid;
}

static void wait_child(pid_t pid) {
  int st;
  if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "bench_tcp: child failed\n");
    exit(1);
  }
}

static void run_raw(const char *mode, long n) {
  memset(&R, 0, sizeof R);
  R.mode = mode;
  R.target = n;
  R.echo = strcmp(mode, "pingpong") == 0;
  uv_tcp_init(loop, &R.srv);
  R.srv.data = &R;
  struct sockaddr_in sa;
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_bind(&R.srv, (struct sockaddr *)&sa, 0);
  int rc = uv_listen((uv_stream_t *)&R.srv, 16, raw_on_conn);
  if (rc) die("listen", rc);
  int l = sizeof sa;
  uv_tcp_getsockname(&R.srv, (struct sockaddr *)&sa, &l);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
  char role[32];
  snprintf(role, sizeof role, "raw-%s", mode);
  pid_t pid = spawn_child(role, addr, n);
  if (R.echo) {
    /* The child measures; we echo until it closes. */
    uv_run(loop, UV_RUN_DEFAULT);
  } else {
    uv_run(loop, UV_RUN_DEFAULT);
    if (R.frames < n) {
      fprintf(stderr, "bench_tcp: raw %s: %ld of %ld frames\n", mode,
              R.frames, n);
      exit(1);
    }
  }
  wait_child(pid);
}

static int child_raw(const char *mode, const char *addr, long n) {
  memset(&R, 0, sizeof R);
  R.mode = mode;
  R.target = n;
  char host[64];
  int port;
  troupe__addr_parse(addr, host, sizeof host, &port);
  struct sockaddr_in sa;
  uv_ip4_addr(host, port, &sa);
  uv_tcp_init(loop, &R.tcp);
  uv_tcp_connect(&R.creq, &R.tcp, (struct sockaddr *)&sa, raw_connected);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Through the troupe TCP transport (frame level)                      */

typedef struct tb {
  troupe__transport *t;
  troupe__conn *c;
  uv_idle_t prod;
  long frames, target, sent;
  double t0;
  bool pingpong, initiator, done;
} tb;

static tb T;

static void tb_destroy(void) {
  if (T.done) return;
  T.done = true;
  if (uv_is_active((uv_handle_t *)&T.prod)) uv_idle_stop(&T.prod);
  uv_close((uv_handle_t *)&T.prod, NULL);
  T.t->cls->destroy(T.t, NULL, NULL);
}

static void tb_frame(void *data, troupe__conn *c, uint8_t flags,
                     const uint8_t *body, size_t len) {
  if (T.frames++ == 0 && !T.initiator) T.t0 = bench_now();
  if (T.pingpong) {
    if (T.initiator && T.frames >= T.target) {
      double dt = bench_now() - T.t0;
      printf("workload=tcp-frames system=troupe value=%.0f unit=rt/s "
             "mode=pingpong n=%ld size=%zu\n", T.target / dt, T.target, len);
      tb_destroy();
      return;
    }
    troupe__tcp_send_frame(c, 0, body, len);   /* echo, or the next ping */
    return;
  }
  if (T.frames >= T.target) {
    double dt = bench_now() - T.t0;
    troupe__tcp_stats st;
    troupe__tcp_get_stats(T.t, &st);
    printf("workload=tcp-frames system=troupe value=%.0f unit=msgs/s "
           "mode=oneway n=%ld size=%zu\n", T.target / dt, T.target, len);
    tb_destroy();
  }
}

/* One-way producer: bursts while the queue has room. */
static void tb_produce(uv_idle_t *h) {
  uint8_t body[PAYLOAD] = {0};
  for (int i = 0; i < 4096 && T.sent < T.target; i++) {
    memcpy(body, &T.sent, sizeof T.sent);
    int rc = troupe__tcp_send_frame(T.c, 0, body, sizeof body);
    if (rc == TROUPE_EFULL) return;         /* try next turn */
    if (rc) die("send_frame", rc);
    T.sent++;
  }
  if (T.sent >= T.target) uv_idle_stop(h);
}

static void tb_up(void *data, troupe__conn *c, const troupe__peer_info *p) {
  T.c = c;
  if (!T.initiator) return;
  if (T.pingpong) {
    uint8_t body[PAYLOAD] = {0};
    T.t0 = bench_now();
    troupe__tcp_send_frame(c, 0, body, sizeof body);
  } else {
    uv_idle_start(&T.prod, tb_produce);
  }
}

static void tb_down(void *data, troupe__conn *c, int err) {
  if (T.c == c) T.c = NULL;
  tb_destroy();                 /* the peer finished (or failed) */
}

static void tb_create(const char *name) {
  memset(&T, 0, sizeof T);
  troupe__transport_opts o = {.system = name, .secret = (const uint8_t *)"b",
                              .secret_len = 1, .max_outbound = 8 << 20};
  troupe__transport_cbs cbs = {NULL, tb_up, tb_down, NULL};
  troupe__tcp_hooks hooks = {NULL, tb_frame, NULL};
  int rc = troupe__tcp_create_on(loop, NULL, &o, &cbs, &hooks, &T.t);
  if (rc) die("tcp create", rc);
  uv_idle_init(loop, &T.prod);
}

static void run_frames(bool pingpong, long n) {
  tb_create("parent");
  T.pingpong = pingpong;
  T.target = n;
  char bound[64];
  int rc = T.t->cls->listen(T.t, "127.0.0.1:0", bound, sizeof bound);
  if (rc) die("listen", rc);
  pid_t pid = spawn_child(pingpong ? "frames-pingpong" : "frames-oneway",
                          bound, n);
  uv_run(loop, UV_RUN_DEFAULT);
  if (!pingpong && T.frames < n) {
    fprintf(stderr, "bench_tcp: frames: %ld of %ld\n", T.frames, n);
    exit(1);
  }
  wait_child(pid);
}

static int child_frames(bool pingpong, const char *addr, long n) {
  tb_create("child");
  T.pingpong = pingpong;
  T.initiator = true;
  T.target = n;
  troupe__conn *c;
  int rc = T.t->cls->connect(T.t, addr, &c);
  if (rc) die("connect", rc);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}

/* ------------------------------------------------------------------ */
/* tcp-tell: actors on two nodes through remoting                      */

typedef struct int_msg { int32_t v; } int_msg;
static const troupe_field int_fields[] = {TROUPE_FIELD(int_msg, v, I32)};
static troupe_type T_MSG = TROUPE_TYPE("bench.TcpInt", 1, int_msg, int_fields);

static long tell_n;
static _Atomic long tell_got;
static double tell_t0, tell_t1;
static troupe_ref tell_target;

/* Parent: counts one-way messages; answers pings (v < 0). */
static int recv_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  const int_msg *x = m->data;
  if (x->v < 0) return troupe_reply(ctx, &T_MSG, x);
  long got = atomic_fetch_add(&tell_got, 1) + 1;
  if (got == 1) tell_t0 = bench_now();
  if (got == tell_n) tell_t1 = bench_now();
  return 0;
}
static const troupe_behavior recv_b = {.name = "recv",
                                       .receive = recv_receive,
                                       .mailbox = {.throughput = 4096}};

/* Child: bursts of tells, one burst per turn. */
typedef struct tsend_st { long sent, rt; } tsend_st;
static int tsend_receive(troupe_ctx *ctx, void *st, const troupe_msg *m) {
  tsend_st *s = st;
  if (m->type == &T_MSG) {               /* a pong */
    if (++s->rt == tell_n) {
      double dt = bench_now() - tell_t0;
      printf("workload=tcp-tell system=troupe value=%.0f unit=rt/s "
             "mode=pingpong n=%ld\n", tell_n / dt, tell_n);
      fflush(stdout);
      troupe_system_stop(troupe_ctx_system(ctx));
      return 0;
    }
    int_msg ping = {-1};
    return troupe_send(ctx, tell_target, &T_MSG, &ping);
  }
  int_msg v = {1};
  long n = tell_n - s->sent < 1024 ? tell_n - s->sent : 1024;
  for (long i = 0; i < n; i++) troupe_tell(tell_target, &T_MSG, &v, TROUPE_REF_NONE);
  s->sent += n;
  if (s->sent < tell_n) troupe_send(ctx, troupe_self(ctx), &T_GO_B, NULL);
  return 0;
}

static void register_types(void) {
  troupe_type_register(&T_MSG);
  if (!troupe_type_lookup(TROUPE__T_IDENTIFY.manifest, 1))
    troupe_type_register(&TROUPE__T_IDENTIFY);
  if (!troupe_type_lookup(TROUPE_T_ACTOR_IDENTITY.manifest, 1))
    troupe_type_register(&TROUPE_T_ACTOR_IDENTITY);
}

static troupe_system *remote_system(const char *name, const char *listen) {
  troupe_system *sys = NULL;
  troupe_system_opts o = {.name = name, .log_level = TROUPE_LOG_WARN};
  int rc = troupe_system_create(&sys, &o);
  if (rc) die("system", rc);
  troupe_remote_opts ro = {.listen = listen, .scheme = "tcp",
                           .secret = "bench", .secret_len = 5};
  if ((rc = troupe_remote_start(sys, &ro))) die("remote_start", rc);
  return sys;
}

static void run_tell(bool pingpong, long n) {
  tell_n = n;
  atomic_store(&tell_got, 0);
  troupe_system *sys = remote_system("parent", "tcp://127.0.0.1:0");
  troupe_spawn_opts so = {.name = "recv"};
  troupe_ref r;
  int rc = troupe_system_spawn(sys, &recv_b, &so, &r);
  if (rc) die("spawn", rc);
  if ((rc = troupe_system_start(sys))) die("start", rc);
  char addr[128];
  if ((rc = troupe_remote_address(sys, addr, sizeof addr)) < 0) die("address", rc);
  pid_t pid = spawn_child(pingpong ? "tell-pingpong" : "tell-oneway", addr, n);
  if (pingpong) {
    wait_child(pid);
  } else {
    double dl = bench_now() + 60;
    while (atomic_load(&tell_got) < n && bench_now() < dl) {
      struct timespec ts = {0, 2000000};
      nanosleep(&ts, NULL);
    }
    long got = atomic_load(&tell_got);
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    if (got < n) {
      fprintf(stderr, "bench_tcp: tcp-tell: FAILED %ld of %ld (dead letters "
              "%llu)\n", got, n,
              (unsigned long long)troupe_system_dead_letters(sys));
      exit(1);
    }
    printf("workload=tcp-tell system=troupe value=%.0f unit=msgs/s "
           "mode=oneway n=%ld\n", n / (tell_t1 - tell_t0), n);
  }
  troupe_system_stop(sys);
  troupe_system_wait(sys, 0);
  troupe_system_destroy(sys);
}

static int child_tell(bool pingpong, const char *addr, long n) {
  tell_n = n;
  troupe_system *sys = remote_system("child", "tcp://127.0.0.1:0");
  int rc = troupe_system_start(sys);
  if (rc) die("start", rc);
  char uri[256];
  snprintf(uri, sizeof uri, "troupe://parent@%s/user/recv", addr);
  if ((rc = troupe_resolve_blocking(sys, uri, 10000, &tell_target)))
    die("resolve", rc);
  static const troupe_behavior sb = {.name = "sender",
                                     .state_size = sizeof(tsend_st),
                                     .receive = tsend_receive,
                                     .mailbox = {.throughput = 1}};
  troupe_ref s;
  if ((rc = troupe_system_spawn(sys, &sb, NULL, &s))) die("spawn", rc);
  tell_t0 = bench_now();
  if (pingpong) {
    int_msg ping = {-1};
    troupe_tell(tell_target, &T_MSG, &ping, s);
  } else {
    troupe_tell(s, &T_GO_B, NULL, TROUPE_REF_NONE);
  }
  troupe_system_wait(sys, 0);     /* stopped by the last pong, or killed */
  troupe_system_destroy(sys);
  return 0;
}

/* ------------------------------------------------------------------ */

static bool wanted(int argc, char **argv, const char *name) {
  if (argc <= 1) return true;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return true;
  return false;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  N_ONEWAY = bench_env_long("BENCH_TCP_N", 5000000);
  N_UNBATCHED = bench_env_long("BENCH_TCP_N_UNBATCHED", 200000);
  N_RT = bench_env_long("BENCH_TCP_RT", 50000);
  if (argc == 5 && strcmp(argv[1], "--child") == 0) {
    const char *role = argv[2], *addr = argv[3];
    long n = atol(argv[4]);
    if (strncmp(role, "raw-", 4) == 0) return child_raw(role + 4, addr, n);
    if (strcmp(role, "frames-oneway") == 0) return child_frames(false, addr, n);
    if (strcmp(role, "frames-pingpong") == 0) return child_frames(true, addr, n);
    register_types();
    if (strcmp(role, "tell-oneway") == 0) return child_tell(false, addr, n);
    if (strcmp(role, "tell-pingpong") == 0) return child_tell(true, addr, n);
    return 2;
  }
  if (wanted(argc, argv, "raw-batched")) run_raw("batched", N_ONEWAY);
  if (wanted(argc, argv, "raw-unbatched")) run_raw("unbatched", N_UNBATCHED);
  if (wanted(argc, argv, "raw-pingpong")) run_raw("pingpong", N_RT);
  if (wanted(argc, argv, "frames-oneway")) run_frames(false, N_ONEWAY);
  if (wanted(argc, argv, "frames-pingpong")) run_frames(true, N_RT);
  /* Remoting finds the class by scheme through a weak reference; name it
   * so that the static link keeps the TCP transport. */
  if (!troupe__transport_tcp.scheme) return 1;
  register_types();
  if (wanted(argc, argv, "tell-oneway"))
    run_tell(false, bench_env_long("BENCH_TCP_TELL_N", 1000000));
  if (wanted(argc, argv, "tell-pingpong")) run_tell(true, N_RT);
  uv_loop_close(loop);
  return 0;
}
