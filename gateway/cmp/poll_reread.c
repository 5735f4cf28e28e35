/*
 * The ends of shared records whose every answer was lost (gw_cluster_end_record's left->unread), read back
 * at the expiry ticks (poll.h: cmp_poll_reread_later, cmp_poll_reread, cmp_poll_reread_drop): a certificate
 * a call put beside the record, which the end took and nobody received, is withdrawn as poll.c withdraws an
 * uncollected one.
 */
#include "gateway/cmp/poll.h"
#include "gateway/cmp/poll_local.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/status.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/x509.h"
#include "upstream/upstream.h"

#include <pthread.h>
#include <stdio.h>
#include <openssl/crypto.h>

/*
 * An end of a shared record whose every answer was lost (gw_cluster_end_record's left->unread) while its
 * result was this instance's to withdraw (cmp_poll_withdraw_left): what it took is read back at the next
 * ticks (cmp_poll_reread). What the withdrawal needs is copied: the transaction is gone by then.
 */
struct unread_end {
    const struct gw_cluster *cl; /* compared only: the engines that share it read it back */
    unsigned char tid[GW_MAX_TID_LEN];
    size_t tid_len;
    unsigned long long id;
    int aborted;
    uint64_t until_ms;              /* what the end took is kept so long at least (left->unread_until_ms) */
    char epoch[GW_STATE_EPOCH_LEN]; /* the shared state's epoch the end went out in (left->unread_epoch) */
    char identity[GW_IDENTITY_LEN];
    char upstream[GW_MAX_NAME_LEN + 1];
};

static pthread_mutex_t unread_lock = PTHREAD_MUTEX_INITIALIZER;
static struct unread_end unread[GW_STATE_MAX_UNREAD_ENDS];
static size_t n_unread;

/* The end |u| given up on, for |why|: what it took, if anything, is not read back. */
static void unread_lost(const struct unread_end *u, const char *why)
{
    char tid[2 * GW_MAX_TID_LEN + 1];

    gw_hex(tid, u->tid, u->tid_len);
    gw_log_kv(
        GW_LOG_ERROR, "txn_end_unread", "tid", tid, "identity", u->identity, "reason", why, "msg",
        "what the record's end took, its answers lost, is not read back: a certificate a call put beside "
        "the record meanwhile is neither delivered nor withdrawn (its \"issued\" record is on the "
        "instance that made the call)",
        NULL);
}

/* |u| back on the list, or given up on when it is full. */
static void unread_put(const struct unread_end *u)
{
    bool room;

    pthread_mutex_lock(&unread_lock);
    if ((room = n_unread < GW_STATE_MAX_UNREAD_ENDS))
        unread[n_unread++] = *u;
    pthread_mutex_unlock(&unread_lock);
    if (!room)
        unread_lost(u, "too many ends wait to be read back");
}

void cmp_poll_reread_later(struct gw_cmp_engine *e, const struct cmp_txn *view, const char *upstream,
                           const char *tid, const struct gw_txn_result *left, int aborted)
{
    struct unread_end u = {.cl = e->cluster, .id = left->unread, .aborted = aborted};

    u.until_ms = left->unread_until_ms;
    snprintf(u.epoch, sizeof(u.epoch), "%s", left->unread_epoch);
    snprintf(u.identity, sizeof(u.identity), "%s", view->identity);
    snprintf(u.upstream, sizeof(u.upstream), "%s", upstream != NULL ? upstream : "");
    if (left->unread != 0 && OPENSSL_hexstr2buf_ex(u.tid, sizeof(u.tid), &u.tid_len, tid, '\0') == 1)
        unread_put(&u);
}

/* One end of cmp_poll_reread's, |e| the engine of the tick: 1 once done with it, 0 to ask again later. */
static int reread_one(struct gw_cmp_engine *e, const struct unread_end *u)
{
    struct gw_txn_result left;
    struct cmp_txn view = {.up = NULL};
    char tid[2 * GW_MAX_TID_LEN + 1], err[GW_ERR_LEN] = "";
    int rc = gw_cluster_reread_end(e->cluster, u->tid, u->tid_len, u->id, u->epoch, &left, err);
    bool late = gw_now_ms() >= u->until_ms;
    X509 *cert = NULL;

    gw_hex(tid, u->tid, u->tid_len);
    /* GW_ERR_IO: Redis lost it; asked again, it tells no more. GW_ERR_UNAVAILABLE, also at once while Redis
       is known to be unreachable (nothing sent): asked again at a later tick, until |until_ms| */
    if (rc < 0 && rc != GW_ERR_IO && !late)
        return 0;
    if (rc < 0)
        unread_lost(u, err);
    /* nothing kept under its id: that end never ran, unless Redis answered only once what it took may
       have expired there */
    if (rc == 0 && late)
        unread_lost(u, "Redis answered only after what the end took may have expired there (30 s from the "
                       "end, GW_STATE_TOOK_SECS)");
    if (rc == 1 && left.present && left.cert_len > 0)
        cert = gw_x509_d2i_exact(left.cert, (long)left.cert_len);
    gw_txn_result_cleanup(&left);
    if (cert == NULL)
        return 1;
    snprintf(view.identity, sizeof(view.identity), "%s", u->identity);
    gw_x509_cert_serial_hex(cert, view.serial, sizeof(view.serial));
    view.up = cmp_status_withdrawer(e, gw_upstream_set_get0(e->ups, u->upstream), cert);
    gw_log_kv(
        GW_LOG_WARN, "txn_end_unread", "tid", tid, "identity", u->identity, "serial", view.serial, "msg",
        "read back what the record's end took, its answers lost: a certificate nobody received; withdrawn",
        NULL);
    cmp_poll_withdraw_undelivered(e, &view, &view, tid, NULL, u->aborted, cert);
    X509_free(cert);
    return 1;
}

void cmp_poll_reread(struct gw_cmp_engine *e)
{
    struct unread_end mine[GW_STATE_MAX_UNREAD_ENDS];
    size_t n = 0, kept = 0;

    /* taken out while Redis is asked, so that workers adding ends never wait for it */
    pthread_mutex_lock(&unread_lock);
    for (size_t i = 0; i < n_unread; i++)
        if (unread[i].cl == e->cluster)
            mine[n++] = unread[i];
        else
            unread[kept++] = unread[i];
    n_unread = kept;
    pthread_mutex_unlock(&unread_lock);
    for (size_t i = 0; i < n; i++)
        if (!reread_one(e, &mine[i]))
            unread_put(&mine[i]);
}

void cmp_poll_reread_drop(const struct gw_cluster *cl)
{
    size_t kept = 0;

    pthread_mutex_lock(&unread_lock);
    for (size_t i = 0; i < n_unread; i++)
        if (unread[i].cl == cl)
            unread_lost(&unread[i], "the gateway stopped first");
        else
            unread[kept++] = unread[i];
    n_unread = kept;
    pthread_mutex_unlock(&unread_lock);
}
