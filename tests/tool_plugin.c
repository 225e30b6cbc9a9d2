/*
 * tool_plugin.c: a type plugin for the `troupe` tool's test: registers
 * fixture.Deposited v1 and v2 with an upcaster between them, and
 * fixture.Balance. See docs/tool.md, "Type plugins".
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tests/tool_types.h"

int troupe_plugin_init(unsigned troupe_version_hex);

static int deposited_1_to_2(void *data, const troupe_type *from,
                            const void *old_value, const troupe_type *to,
                            void *new_value) {
  (void)data;
  (void)to;
  fx_deposited_v2 *n = new_value;
  if (from && old_value) {     /* move the account out of the old value */
    fx_deposited_v1 *o = (fx_deposited_v1 *)old_value;
    n->amount = o->amount;
    n->account = o->account;
    o->account = NULL;
  }
  n->currency = strdup("EUR");
  return n->currency ? 0 : TROUPE_ENOMEM;
}

int troupe_plugin_init(unsigned troupe_version_hex) {
  /* built against the same major version (0.x: the same minor too) */
  if ((troupe_version_hex >> 8) != (TROUPE_VERSION_HEX >> 8))
    return TROUPE_EUNSUPPORTED;
  int rc;
  if ((rc = troupe_type_register(&fx_deposited_v1_type)) < 0 ||
      (rc = troupe_type_register(&fx_deposited_v2_type)) < 0 ||
      (rc = troupe_type_register(&fx_balance_type)) < 0)
    return rc;
  return troupe_upcaster_register("fixture.Deposited", 1,
                                  &fx_deposited_v2_type, deposited_1_to_2,
                                  NULL);
}
