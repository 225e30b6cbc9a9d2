/* entity_fixtures.h: a bank account entity shared by tests, benches and
 * the crash test. */
#ifndef ENTITY_FIXTURES_H
#define ENTITY_FIXTURES_H

#include <troupe/troupe.h>
#include <troupe/persistence.h>

typedef struct acct_state {
  int64_t balance;
  int64_t events;
} acct_state;

typedef struct amount_msg {
  int64_t amount;
} amount_msg;

typedef struct balance_msg {
  int64_t balance;
  uint64_t seq;
  int64_t error;      /* 0, or a negative code (insufficient funds) */
} balance_msg;

static const troupe_field acct_state_fields[] = {
  TROUPE_FIELD(acct_state, balance, I64),
  TROUPE_FIELD(acct_state, events, I64),
};
static const troupe_field amount_fields[] = {
  TROUPE_FIELD(amount_msg, amount, I64),
};
static const troupe_field balance_fields[] = {
  TROUPE_FIELD(balance_msg, balance, I64),
  TROUPE_FIELD(balance_msg, seq, U64),
  TROUPE_FIELD(balance_msg, error, I64),
};

static troupe_type T_ACCT = TROUPE_TYPE("bank.Account", 1, acct_state,
                                        acct_state_fields);
/* events */
static troupe_type T_DEPOSITED = TROUPE_TYPE("bank.Deposited", 1, amount_msg,
                                             amount_fields);
static troupe_type T_WITHDRAWN = TROUPE_TYPE("bank.Withdrawn", 1, amount_msg,
                                             amount_fields);
/* commands and replies */
static troupe_type C_DEPOSIT = TROUPE_TYPE("bank.Deposit", 1, amount_msg,
                                           amount_fields);
static troupe_type C_DEPOSIT_ASYNC = TROUPE_TYPE("bank.DepositAsync", 1,
                                                 amount_msg, amount_fields);
static troupe_type C_WITHDRAW = TROUPE_TYPE("bank.Withdraw", 1, amount_msg,
                                            amount_fields);
static troupe_type C_GET = TROUPE_TYPE("bank.GetBalance", 1, amount_msg,
                                       amount_fields);
static troupe_type R_BALANCE = TROUPE_TYPE("bank.Balance", 1, balance_msg,
                                           balance_fields);

#define E_INSUFFICIENT (-2000)

static inline int acct_register_types(void) {
  troupe_type *all[] = {&T_ACCT, &T_DEPOSITED, &T_WITHDRAWN, &C_DEPOSIT,
                        &C_DEPOSIT_ASYNC, &C_WITHDRAW, &C_GET, &R_BALANCE};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
    int rc = troupe_type_register(all[i]);
    if (rc < 0 && rc != TROUPE_EEXIST) return rc;
  }
  return 0;
}

static inline void acct_reply_balance(troupe_entity *e, const void *st,
                                      void *data) {
  const acct_state *s = st;
  balance_msg b = {s->balance, troupe_entity_seq(e), 0};
  (void)data;
  troupe_entity_reply(e, &R_BALANCE, &b);
}

static inline int acct_command(troupe_entity *e, const void *st,
                               const troupe_msg *cmd) {
  const acct_state *s = st;
  if (cmd->type == &C_DEPOSIT || cmd->type == &C_DEPOSIT_ASYNC) {
    const amount_msg *a = cmd->data;
    int rc = troupe_entity_persist(e, &T_DEPOSITED, a,
                                   cmd->type == &C_DEPOSIT_ASYNC
                                       ? TROUPE_PERSIST_ASYNC : 0);
    if (rc < 0) return rc;
    /* the balance after the event, once durable */
    balance_msg b = {s->balance + a->amount, troupe_entity_seq(e) + 1, 0};
    if (cmd->sender.uid) return troupe_entity_reply(e, &R_BALANCE, &b);
    return 0;
  }
  if (cmd->type == &C_WITHDRAW) {
    const amount_msg *a = cmd->data;
    if (a->amount > s->balance) {
      balance_msg b = {s->balance, troupe_entity_seq(e), E_INSUFFICIENT};
      return troupe_entity_reply(e, &R_BALANCE, &b);
    }
    int rc = troupe_entity_persist(e, &T_WITHDRAWN, a, 0);
    if (rc < 0) return rc;
    balance_msg b = {s->balance - a->amount, troupe_entity_seq(e) + 1, 0};
    return troupe_entity_reply(e, &R_BALANCE, &b);
  }
  if (cmd->type == &C_GET)   /* after every batch ahead of it is applied */
    return troupe_entity_after(e, acct_reply_balance, NULL);
  return TROUPE_UNHANDLED;
}

static inline int acct_apply(void *st, const troupe_type *t, const void *ev) {
  acct_state *s = st;
  const amount_msg *a = ev;
  if (t == &T_DEPOSITED) s->balance += a->amount;
  else if (t == &T_WITHDRAWN) s->balance -= a->amount;
  else return TROUPE_ETYPE;
  s->events++;
  return 0;
}

static inline size_t acct_tagger(const troupe_type *t, const void *ev,
                                 const char **tags, size_t max) {
  (void)t; (void)ev;
  if (max < 1) return 0;
  tags[0] = "bank";
  return 1;
}

#endif
