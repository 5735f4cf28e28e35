/*
 * What the rest of the gateway asks of a CMP engine besides its requests: whether its audit log, shared
 * state and signer are up, whether anything of it is still running, how many transactions it holds open.
 */
#include "gateway/cmp/engine.h"
#include "gateway/cmp/audit.h"
#include "gateway/cmp/cmp_local.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/engine_test.h"
#include "gateway/cmp/poll.h"
#include "gateway/cmp/record.h"
#include "gateway/cmp/revoked.h"
#include "gateway/cmp/signer.h"
#include "gateway/cmp/txn.h"
#include "base/err.h"

int gw_cmp_engine_audit_status(struct gw_cmp_engine *e, char *why, size_t cap)
{
    return gw_audit_status(e != NULL ? e->audit : NULL, why, cap);
}

int gw_cmp_engine_state_status(struct gw_cmp_engine *e, char *why, size_t cap)
{
    return e != NULL ? gw_cluster_status(e->cluster, why, cap) : 0;
}

int gw_cmp_engine_signer_status(struct gw_cmp_engine *e, char *why, size_t cap)
{
    return e != NULL ? cmp_signer_status(e->signer, why, cap) : 0;
}

void gw_cmp_engine_probe_signer(struct gw_cmp_engine *e)
{
    if (e != NULL)
        cmp_signer_probe(e->signer);
}

void gw_cmp_engine_probe_audit(struct gw_cmp_engine *e)
{
    if (e != NULL)
        gw_audit_probe(e->audit);
}

int gw_cmp_engine_reopen_audit(struct gw_cmp_engine *e)
{
    if (e == NULL || e->audit == NULL)
        return GW_ERR_INVAL;
    return gw_audit_reopen(e->audit);
}

bool gw_cmp_engine_busy(struct gw_cmp_engine *e)
{
    return e != NULL && (atomic_load(&e->live) != 0 || cmp_poll_busy(e) || cmp_withdrawals_busy(e));
}

bool gw_cmp_engine_calls_running(struct gw_cmp_engine *e)
{
    return cmp_poll_busy(e);
}

void gw_cmp_engine_settle_withdrawals(struct gw_cmp_engine *e)
{
    if (e != NULL)
        cmp_withdrawals_settle(e);
}

void gw_cmp_engine_set_withdrawal_backoff(struct gw_cmp_engine *e, uint64_t ms)
{
    if (e != NULL)
        cmp_withdrawals_set_backoff(e, ms);
}

void gw_cmp_engine_set_withdrawal_record_ms(struct gw_cmp_engine *e, uint64_t ms)
{
    if (e != NULL)
        cmp_withdrawals_set_record_ms(e, ms);
}

void gw_cmp_engine_set_withdrawal_over_cap(struct gw_cmp_engine *e, size_t cap)
{
    if (e != NULL)
        cmp_withdrawals_set_over_cap(e, cap);
}

size_t gw_cmp_engine_revocations_waiting(struct gw_cmp_engine *e)
{
    return e != NULL && e->revoked != NULL ? cmp_revoked_waiting(e->revoked) : 0;
}

void gw_cmp_engine_set_clock(struct gw_cmp_engine *e, time_t (*clock)(void))
{
    if (e != NULL)
        e->clock = clock;
}

size_t gw_cmp_engine_open_transactions(struct gw_cmp_engine *e)
{
    return e != NULL ? gw_txn_count(e->txns) : 0;
}

struct gw_txn_table *gw_cmp_engine_txns(struct gw_cmp_engine *e)
{
    return e->txns;
}
