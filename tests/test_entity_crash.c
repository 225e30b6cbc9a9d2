/*
 * test_entity_crash.c: what an entity acknowledged survives kill -9.
 *
 * Each round forks a child that runs persistent accounts on a RocksDB
 * journal with sync on and deposits continuously from several threads; a
 * deposit is acknowledged (written to a pipe) only after its reply, which
 * the entity sends once the event is durable. The parent kills the child
 * with SIGKILL at a random moment, then checks the journal: every stream is
 * contiguous from 1 (no gaps, no duplicates), every acknowledged deposit is
 * at its sequence number with its amount, and the entity recovered in the
 * parent has exactly the fold of the stored events as its state.
 * Rounds: CRASH_ROUNDS (default 12).
 */
#include "tt.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "entity_fixtures.h"

#define ACCOUNTS 4
#define MAX_ACKS 200000

static char dir[256];
static char spec[300];

typedef struct ack {
  int acct;
  uint64_t seq;
  int64_t amount;
} ack;

typedef struct child_arg {
  troupe_system *sys;
  troupe_ref ref;
  int acct;
  int fd;
  int round;
} child_arg;

static void *depositor(void *p) {
  child_arg *a = p;
  for (int64_t i = 1;; i++) {
    amount_msg m = {(int64_t)a->round * 1000000 + i};
    troupe_reply_msg rep;
    if (troupe_ask_blocking(a->sys, a->ref, &C_DEPOSIT, &m, 10000, &rep) < 0)
      continue;
    balance_msg *b = rep.data;
    ack k = {a->acct, b->seq, m.amount};
    troupe_reply_free(&rep);
    if (write(a->fd, &k, sizeof k) != (ssize_t)sizeof k) _exit(3);
  }
  return NULL;
}

static troupe_entity_def def = {
  .type_name = "account",
  .state_type = &T_ACCT,
  .command = acct_command,
  .apply = acct_apply,
  .tagger = acct_tagger,
  .snapshot_every = 50,      /* snapshots too, so recovery mixes both */
  .snapshot_keep = 2,
};

static void child(int fd, int round) {
  alarm(120);   /* never outlive a parent that died before killing us */
  if (acct_register_types() < 0) _exit(2);
  troupe_store_options so;
  troupe_store_options_init(&so);
  so.create_if_missing = 1;
  so.sync = 1;
  troupe_journal *j;
  troupe_snapshot_store *ss;
  if (troupe_journal_open(spec, &so, &j) < 0) _exit(2);
  if (troupe_snapshot_store_open(spec, &so, &ss) < 0) _exit(2);
  troupe_persistence *p;
  if (troupe_persistence_create(&p, j, ss) < 0) _exit(2);
  troupe_system *sys;
  troupe_system_opts o = {.name = "crash", .log_level = TROUPE_LOG_OFF};
  if (troupe_system_create(&sys, &o) < 0) _exit(2);
  child_arg args[ACCOUNTS];
  for (int i = 0; i < ACCOUNTS; i++) {
    char id[16];
    snprintf(id, sizeof id, "a%d", i);
    if (troupe_entity_spawn(sys, NULL, p, &def, id, &args[i].ref) < 0)
      _exit(2);
    args[i].sys = sys;
    args[i].acct = i;
    args[i].fd = fd;
    args[i].round = round;
  }
  if (troupe_system_start(sys) < 0) _exit(2);
  pthread_t th[ACCOUNTS];
  for (int i = 0; i < ACCOUNTS; i++)
    pthread_create(&th[i], NULL, depositor, &args[i]);
  for (;;) pause();
}

typedef struct verify {
  uint64_t expect;
  int64_t *amounts;   /* by seq */
  uint64_t cap;
  int bad;
} verify;

static int on_events(int status, const troupe_event *ev, size_t n, int done,
                     void *data) {
  verify *v = data;
  if (status < 0) {
    v->bad = 1;
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (ev[i].seq != v->expect) {
      fprintf(stderr, "gap or duplicate: seq %llu where %llu expected\n",
              (unsigned long long)ev[i].seq, (unsigned long long)v->expect);
      v->bad = 1;
      return 1;
    }
    amount_msg a;
    if (troupe_decode(&T_DEPOSITED, ev[i].payload, ev[i].payload_len, &a,
                      NULL) < 0) {
      v->bad = 1;
      return 1;
    }
    if (v->expect >= v->cap) {
      uint64_t nc = v->cap ? v->cap * 2 : 1024;
      int64_t *na = realloc(v->amounts, nc * sizeof *na);
      if (!na) { v->bad = 1; return 1; }
      v->amounts = na;
      v->cap = nc;
    }
    v->amounts[v->expect] = a.amount;
    v->expect++;
  }
  return 0;
}

static void test_kill9_rounds(void) {
  TT_EQ_INT(acct_register_types(), 0);
  const char *r = getenv("CRASH_ROUNDS");
  int rounds = r ? atoi(r) : 12;
  static ack acks[MAX_ACKS];
  /* create the store first: a child killed early may not have */
  {
    troupe_store_options so;
    troupe_store_options_init(&so);
    so.create_if_missing = 1;
    troupe_journal *j;
    TT_EQ_INT(troupe_journal_open(spec, &so, &j), 0);
    troupe_journal_close(j);
  }
  uint64_t total_acks = 0;
  srand((unsigned)time(NULL));
  for (int round = 1; round <= rounds; round++) {
    int fds[2];
    TT_ASSERT(pipe(fds) == 0);
    pid_t pid = fork();
    TT_ASSERT(pid >= 0);
    if (pid == 0) {
      /* a fresh process image: no threads or store handles inherited
       * (sanitizers refuse threads after a multi-threaded fork) */
      close(fds[0]);
      char fd_s[16], round_s[16];
      snprintf(fd_s, sizeof fd_s, "%d", fds[1]);
      snprintf(round_s, sizeof round_s, "%d", round);
      execl("/proc/self/exe", "test_entity_crash", "--child", fd_s, round_s,
            spec, (char *)NULL);
      _exit(4);
    }
    close(fds[1]);
    /* read acks for a random while, then kill */
    int flags = fcntl(fds[0], F_GETFL);
    fcntl(fds[0], F_SETFL, flags | O_NONBLOCK);
    /* kill at a random moment once deposits flow (the child may take a
     * while to start under sanitizers): 50-450 ms after the first ack,
     * giving up on waiting after 20 s */
    uint64_t run_ms = 50 + (uint64_t)(rand() % 400);
    uint64_t t0 = tt_now_ms(), first = 0;
    size_t nacks = 0;
    char partial[sizeof(ack)];
    size_t have = 0;
    while (first ? tt_now_ms() - first < run_ms : tt_now_ms() - t0 < 20000) {
      if (!first && nacks) first = tt_now_ms();
      ssize_t got = read(fds[0], partial + have, sizeof partial - have);
      if (got > 0) {
        have += (size_t)got;
        if (have == sizeof partial) {
          if (nacks < MAX_ACKS) memcpy(&acks[nacks++], partial, sizeof(ack));
          have = 0;
        }
      } else {
        /* wait for the next ack, or the deadline check above */
        struct pollfd pfd = {fds[0], POLLIN, 0};
        poll(&pfd, 1, 5);
      }
    }
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    /* acks already in the pipe were acknowledged before the kill */
    fcntl(fds[0], F_SETFL, flags);
    for (;;) {
      ssize_t got = read(fds[0], partial + have, sizeof partial - have);
      if (got <= 0) break;
      have += (size_t)got;
      if (have == sizeof partial) {
        if (nacks < MAX_ACKS) memcpy(&acks[nacks++], partial, sizeof(ack));
        have = 0;
      }
    }
    close(fds[0]);
    TT_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    total_acks += nacks;

    /* verify the journal and recover the entities in this process */
    troupe_store_options so;
    troupe_store_options_init(&so);
    troupe_journal *j;
    troupe_snapshot_store *ss;
    TT_EQ_INT(troupe_journal_open(spec, &so, &j), 0);
    TT_EQ_INT(troupe_snapshot_store_open(spec, &so, &ss), 0);
    verify v[ACCOUNTS];
    memset(v, 0, sizeof v);
    for (int a = 0; a < ACCOUNTS; a++) {
      char pid_s[32];
      snprintf(pid_s, sizeof pid_s, "account|a%d", a);
      v[a].expect = 1;
      TT_EQ_INT(troupe_journal_replay_sync(j, pid_s, 1, UINT64_MAX, 0,
                                           on_events, &v[a]), 0);
      TT_ASSERT(!v[a].bad);
    }
    for (size_t i = 0; i < nacks; i++) {
      verify *w = &v[acks[i].acct];
      TT_ASSERT(acks[i].seq < w->expect);          /* acknowledged: stored */
      TT_EQ_INT(w->amounts[acks[i].seq], acks[i].amount);
    }
    troupe_persistence *p;
    TT_EQ_INT(troupe_persistence_create(&p, j, ss), 0);
    troupe_system *sys;
    troupe_system_opts o = {.name = "verify", .log_level = TROUPE_LOG_OFF};
    TT_EQ_INT(troupe_system_create(&sys, &o), 0);
    troupe_ref refs[ACCOUNTS];
    for (int a = 0; a < ACCOUNTS; a++) {
      char id[16];
      snprintf(id, sizeof id, "a%d", a);
      TT_EQ_INT(troupe_entity_spawn(sys, NULL, p, &def, id, &refs[a]), 0);
    }
    TT_EQ_INT(troupe_system_start(sys), 0);
    for (int a = 0; a < ACCOUNTS; a++) {
      int64_t fold = 0;
      for (uint64_t s = 1; s < v[a].expect; s++) fold += v[a].amounts[s];
      amount_msg q = {0};
      troupe_reply_msg rep;
      TT_EQ_INT(troupe_ask_blocking(sys, refs[a], &C_GET, &q, 10000, &rep), 0);
      balance_msg *b = rep.data;
      int64_t bal = b->balance;
      uint64_t seq = b->seq;
      troupe_reply_free(&rep);
      TT_EQ_INT(seq, v[a].expect - 1);
      TT_EQ_INT(bal, fold);
      free(v[a].amounts);
    }
    troupe_system_destroy(sys);
    troupe_persistence_destroy(p);
    troupe_snapshot_store_close(ss);
    troupe_journal_close(j);
  }
  printf("# %d kill -9 rounds, %llu acknowledged deposits, all present\n",
         rounds, (unsigned long long)total_acks);
  TT_ASSERT(total_acks > 0);
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "--child") == 0) {
    snprintf(spec, sizeof spec, "%s", argv[4]);
    child(atoi(argv[2]), atoi(argv[3]));
  }
  tt_init(argc, argv);
  snprintf(dir, sizeof dir, "/tmp/troupe-entity-crash-XXXXXX");
  if (!mkdtemp(dir)) return 1;
  snprintf(spec, sizeof spec, "rocksdb:%s/db", dir);
  TT_RUN(test_kill9_rounds);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return tt_done();
}
