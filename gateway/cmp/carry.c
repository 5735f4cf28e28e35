/*
 * The certificate an answer carries (carry.h, exchange.h). The engine counts a certificate as delivered once
 * the answer carrying it is built: with implicitConfirm its transaction closes at once, else it waits for the
 * certConf. The answer may still never leave: the client went away before the listener could write it. Nobody
 * has the certificate then, and nobody can confirm it (the client never had the senderNonce a certConf must
 * answer): it is withdrawn like one whose answer could not be built (record.h), and a transaction waiting for
 * its certConf is closed rather than left to expire with a valid certificate.
 */
#include "gateway/cmp/carry.h"
#include "gateway/cmp/cluster.h"
#include "gateway/cmp/poll.h"
#include "gateway/cmp/record.h"
#include "gateway/cmp/txn.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/x509v3.h>

/* Why the answer never left (exchange.h): the audit record's status, and the log line's message. */
static const struct {
    const char *status, *msg;
} lost[] = {
    [GW_CMP_LOST_CLIENT_GONE] = {"not delivered: the client left before its answer was sent",
                                 "the client left before its answer was sent; the certificate is withdrawn"},
    [GW_CMP_LOST_STOPPED] = {"not delivered: the gateway stopped before its answer was sent",
                             "the gateway stopped before its answer was sent; the certificate is withdrawn"},
};

struct gw_cmp_carried {
    struct gw_cmp_engine *e;      /* the transaction's, held (live): |view| borrows its role and upstream */
    struct cmp_txn view;          /* the transaction's audit fields */
    char quota[GW_QUOTA_KEY_LEN]; /* its share of the per-identity caps (cmp_quota_key), not its identity's */
    X509 *cert;
    unsigned char tid[GW_MAX_TID_LEN];
    size_t tid_len;
    int parked;                      /* its transaction waits for the certConf */
    char holder[GW_STATE_OWNER_LEN]; /* the transaction's cmp_txn.holder */
};

void gw_cmp_carried_free(struct gw_cmp_carried *k)
{
    if (k == NULL)
        return;
    X509_free(k->cert);
    atomic_fetch_sub(&k->e->live, 1);
    free(k);
}

void cmp_carry(struct cmp_call *c, const struct cmp_txn *t, int parked)
{
    struct gw_cmp_carried *k;

    /* without memory the answer goes as it always did: the certificate counts as delivered */
    if (t->issued == NULL || (k = calloc(1, sizeof(*k))) == NULL)
        return;
    if (X509_up_ref(t->issued) != 1) {
        free(k);
        return;
    }
    k->cert = t->issued;
    k->e = t->e;
    atomic_fetch_add(&k->e->live, 1);
    cmp_audit_view(&k->view, t);
    memcpy(k->quota, t->quota, sizeof(k->quota));
    memcpy(k->tid, c->hdr.tid, k->tid_len = c->hdr.tid_len);
    k->parked = parked;
    memcpy(k->holder, t->holder, sizeof(k->holder));
    c->rsp->carried = k;
}

/*
 * The shared record of |tid| ended on every instance, also while another instance holds its lease: that
 * one is answering a message of it, and would otherwise leave the record to be continued or to expire
 * as open.
 */
static void end_record(struct gw_cmp_engine *e, const unsigned char *tid, size_t tid_len, const char *holder,
                       const char *quota, struct gw_txn_result *left)
{
    (void)gw_cluster_end_record(e->cluster, tid, tid_len, holder, left);
    gw_cluster_release(e->cluster, tid, tid_len, quota); /* after: the record gone, so may it */
}

void cmp_release_slot(struct gw_cmp_engine *e, const unsigned char *tid, size_t tid_len, const char *holder,
                      const char *quota, struct gw_txn_result *left)
{
    gw_txn_release(e->txns, tid, tid_len);
    end_record(e, tid, tid_len, holder, quota, left);
}

void cmp_close_slot(struct gw_cmp_engine *e, const struct cmp_txn *t, const unsigned char *tid,
                    size_t tid_len, const char *quota, struct gw_txn_result *left)
{
    /* closed before the call may end the slot: a later message finds no open transaction, not a busy one */
    gw_txn_end_held(e->txns, tid, tid_len);
    /* the record before the slot is left to the call, which may end it at once: ended after the record,
       the reservation goes with it (end_record) */
    (void)gw_cluster_end_record(e->cluster, tid, tid_len, t->holder, left);
    if (cmp_poll_hold_slot(t->pending, tid, tid_len, quota))
        return;
    gw_txn_release(e->txns, tid, tid_len);
    gw_cluster_release(e->cluster, tid, tid_len, quota);
}

void cmp_txn_return(struct cmp_call *c, struct gw_txn *txn)
{
    const struct cmp_txn *t = txn->data;

    if (gw_txn_put(c->e->txns, txn) == 0)
        return;
    /* its slot was ended while this message held it (close_parked): its certificate is withdrawn and on
       record so, the transaction closes with no more said */
    gw_log_kv(
        GW_LOG_INFO, "txn_closed", "tid", c->rsp->tid, "identity", txn->identity, "serial", t->serial, "msg",
        "its certificate was withdrawn meanwhile: the answer carrying it never reached the client", NULL);
    end_record(c->e, txn->tid, txn->tid_len, t->holder, txn->quota, NULL);
    gw_txn_free(txn);
}

/*
 * The transaction of |k|, waiting for a certConf nobody can send: closed if it is still open here with
 * the certificate. One another message holds meanwhile is marked ended, under the table's lock, for
 * that message to close as it puts it back (cmp_txn_return): open again, it would expire as a
 * certificate that stays valid. Its shared record ends now all the same, whoever holds it: that
 * message may never put it back (claim_copy gives up a copy its record replaces, slot, mark and all).
 * Without a copy here (it was answered from its shared record, or it expired), the record is ended
 * too, else its expiry would put on record as valid the certificate withdrawn.
 */
static void close_parked(const struct gw_cmp_carried *k)
{
    int ended;
    struct gw_txn *txn = gw_txn_take_or_end(k->e->txns, k->tid, k->tid_len, &ended);
    const struct cmp_txn *t = txn != NULL ? txn->data : NULL;

    if (txn == NULL) {
        end_record(k->e, k->tid, k->tid_len, k->holder, k->quota, NULL);
        return;
    }
    if (t->issued == NULL || X509_cmp(t->issued, k->cert) != 0) { /* another transaction of that ID since */
        (void)gw_txn_put(k->e->txns, txn);
        return;
    }
    cmp_release_slot(k->e, k->tid, k->tid_len, t->holder, txn->quota, NULL);
    gw_txn_free(txn);
}

void gw_cmp_undelivered(struct gw_cmp_response *rsp, enum gw_cmp_lost why)
{
    struct gw_cmp_carried *k = rsp->carried;

    if (k == NULL)
        return;
    rsp->carried = NULL;
    gw_log_kv(GW_LOG_ERROR, "cert_undelivered", "tid", rsp->tid, "identity", k->view.identity, "serial",
              k->view.serial, "outcome", rsp->outcome, "msg", lost[why].msg, NULL);
    if (k->parked)
        close_parked(k);
    (void)cmp_audit_cert(k->e, &k->view, rsp->tid, "rejected", lost[why].status, k->cert, 1);
    /* at shutdown too: the engine's drain waits for it, up to its deadline (cmp_withdrawals_drain) */
    cmp_withdraw(k->e, &k->view, rsp->tid, k->cert, CRL_REASON_CESSATION_OF_OPERATION);
    gw_cmp_carried_free(k);
}
