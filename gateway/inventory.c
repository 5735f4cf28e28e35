/*
 * `cmpgw inventory`: what the local issuers recorded in their stores (docs/design.md D5), as one
 * table sorted by notBefore.
 */
#include "gateway/inventory.h"
#include "base/err.h"
#include "upstream/store.h"
#include "upstream/upstream.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct inv_row {
    const struct gw_store_entry *e;
    const char *upstream;
};

static int by_not_before(const void *a, const void *b)
{
    const struct inv_row *x = a, *y = b;

    if (x->e->not_before != y->e->not_before)
        return x->e->not_before < y->e->not_before ? -1 : 1;
    return strcmp(x->e->serial, y->e->serial);
}

static void iso_time(time_t t, char *buf, size_t cap)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Prints the entries of all |lists| as one table sorted by notBefore. */
static int print_inventory(const struct gw_config *cfg, const struct gw_store_list *lists)
{
    struct inv_row *rows;
    size_t i, j, n = 0;
    char nb[32], na[32];

    for (i = 0; i < cfg->n_upstreams; i++)
        n += lists[i].n;
    if ((rows = calloc(n + 1, sizeof(*rows))) == NULL)
        return -1;
    for (i = 0, n = 0; i < cfg->n_upstreams; i++)
        for (j = 0; j < lists[i].n; j++)
            rows[n++] = (struct inv_row){&lists[i].v[j], cfg->upstreams[i].name};
    qsort(rows, n, sizeof(*rows), by_not_before);
    printf("serial\tnot_before\tnot_after\tsubject\tsans\tupstream\n");
    for (i = 0; i < n; i++) {
        iso_time(rows[i].e->not_before, nb, sizeof(nb));
        iso_time(rows[i].e->not_after, na, sizeof(na));
        printf("%s\t%s\t%s\t%s\t%s\t%s\n", rows[i].e->serial, nb, na, rows[i].e->subject, rows[i].e->sans,
               rows[i].upstream);
    }
    free(rows);
    return 0;
}

/* Which upstreams to list: |name| (a local issuer with a store) or every one that has a store. 0, or
   GW_INVENTORY_UNKNOWN_UPSTREAM (said on stderr). */
static int pick_stores(const struct gw_config *cfg, const char *name, bool *pick)
{
    size_t i, n = 0;

    for (i = 0; i < cfg->n_upstreams; i++) {
        const struct gw_upstream_conf *u = &cfg->upstreams[i];

        pick[i] = u->store_dir != NULL && (name == NULL || strcmp(name, u->name) == 0);
        n += pick[i];
        if (name != NULL && strcmp(name, u->name) == 0 && !pick[i]) {
            fprintf(stderr, "cmpgw: upstream %s is not a local issuer with a \"store\"\n", name);
            return GW_INVENTORY_UNKNOWN_UPSTREAM;
        }
    }
    if (name != NULL && n == 0) {
        fprintf(stderr, "cmpgw: no upstream named %s in %s\n", name, cfg->path);
        return GW_INVENTORY_UNKNOWN_UPSTREAM;
    }
    if (n == 0)
        fprintf(stderr, "cmpgw: no local upstream in %s has a \"store\": nothing to list\n", cfg->path);
    return 0;
}

int gw_inventory_run(const struct gw_config *cfg, const char *name)
{
    char err[GW_ERR_LEN];
    struct gw_store_list *lists = NULL;
    bool *pick = NULL;
    int rc = 1, bad = 0;
    size_t i;

    if ((lists = calloc(cfg->n_upstreams + 1, sizeof(*lists))) == NULL ||
        (pick = calloc(cfg->n_upstreams + 1, sizeof(*pick))) == NULL)
        goto out;
    if ((rc = pick_stores(cfg, name, pick)) != 0)
        goto out;
    rc = 1;
    for (i = 0; i < cfg->n_upstreams; i++) {
        if (pick[i] && gw_store_list(cfg->upstreams[i].store_dir, &lists[i], err) != 0) {
            fprintf(stderr, "cmpgw: upstream %s: %s\n", cfg->upstreams[i].name, err);
            bad = 1;
        } else if (pick[i] && lists[i].n_bad > 0) {
            fprintf(stderr, "cmpgw: upstream %s: %zu unreadable record(s); the last: %s\n",
                    cfg->upstreams[i].name, lists[i].n_bad, err);
            bad = 1;
        }
    }
    if (print_inventory(cfg, lists) != 0) {
        fprintf(stderr, "cmpgw: out of memory\n");
        goto out;
    }
    rc = bad;
out:
    for (i = 0; lists != NULL && i < cfg->n_upstreams; i++)
        gw_store_list_cleanup(&lists[i]);
    free(lists);
    free(pick);
    return rc;
}
