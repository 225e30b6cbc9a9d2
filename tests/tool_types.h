/*
 * tool_types.h: the event and snapshot types of the `troupe` tool's test
 * (tests/tool_fixture.c writes them, tests/tool_plugin.c registers them
 * for the tool, with an upcaster from version 1 to 2).
 */
#ifndef TROUPE_TESTS_TOOL_TYPES_H
#define TROUPE_TESTS_TOOL_TYPES_H

#include <troupe/troupe.h>

typedef struct fx_deposited_v1 {
  int64_t amount;
  char *account;
} fx_deposited_v1;

static const troupe_field fx_deposited_v1_fields[] = {
    TROUPE_FIELD(fx_deposited_v1, amount, I64),
    TROUPE_FIELD(fx_deposited_v1, account, STRING),
};
static troupe_type fx_deposited_v1_type = TROUPE_TYPE(
    "fixture.Deposited", 1, fx_deposited_v1, fx_deposited_v1_fields);

/* Version 2 adds the currency; the upcaster says "EUR". */
typedef struct fx_deposited_v2 {
  int64_t amount;
  char *account;
  char *currency;
} fx_deposited_v2;

static const troupe_field fx_deposited_v2_fields[] = {
    TROUPE_FIELD(fx_deposited_v2, amount, I64),
    TROUPE_FIELD(fx_deposited_v2, account, STRING),
    TROUPE_FIELD(fx_deposited_v2, currency, STRING),
};
static troupe_type fx_deposited_v2_type = TROUPE_TYPE(
    "fixture.Deposited", 2, fx_deposited_v2, fx_deposited_v2_fields);

typedef struct fx_balance {
  int64_t balance;
} fx_balance;

static const troupe_field fx_balance_fields[] = {
    TROUPE_FIELD(fx_balance, balance, I64),
};
static troupe_type fx_balance_type =
    TROUPE_TYPE("fixture.Balance", 1, fx_balance, fx_balance_fields);

#endif
