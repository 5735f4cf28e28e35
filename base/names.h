/*
 * Lists of names a configuration gives (a role's "trust", its "ra_trust"...): the arrays of strings
 * gw_conf_p_names fills, looked up by name.
 */
#ifndef GW_NAMES_H
#define GW_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* Whether |name| is one of the |n| strings of |names| (none NULL); exact, case and all. */
bool gw_names_has(char *const *names, size_t n, const char *name);

#endif
