/*
 * Internal sharing of the CMP engine: cmp_engine.c (per-request dispatch, pre-checks, refusals,
 * error rewriting) and cmp_srv.c (per-transaction SRV_CTX and its OpenSSL callbacks).
 */
#ifndef GW_CMP_LOCAL_H
#define GW_CMP_LOCAL_H

#include <openssl/cmp.h>
#include "cmp.h"
#include "cmp_shim.h"
#include "config.h"
#include "replay.h"
#include "txn.h"

struct gw_cmp_engine {
    const struct gw_config *cfg;
    struct gw_upstream_set *ups;
    struct gw_txn_table *txns;
    struct gw_replay *replay;
    time_t (*clock)(void); /* tests only; NULL = time(NULL) */
};

/* One request being processed on a worker; lives on that worker's stack. */
struct cmp_call {
    struct gw_cmp_engine *e;
    const struct gw_cmp_request *req;
    struct gw_cmp_response *rsp;
    const struct gw_role *role;
    struct gw_hdr_info hdr;
    int body;
    time_t now;
    int reserved; /* holds a slot for hdr.tid in the txn table */
    int fail_bit; /* >= 0: a callback chose the error's failInfo */
    char fail_text[GW_ERR_LEN];
    char diag[GW_ERR_LEN]; /* first OpenSSL diagnostic captured by the log cb */
};

/* The state of one transaction: its SRV_CTX and who may continue it. Owned by a struct gw_txn. */
struct cmp_txn {
    OSSL_CMP_SRV_CTX *srv;
    const struct gw_role *role;
    int pbm; /* PBM-protected: continue only with the same senderKID */
    unsigned char kid[GW_MAX_KID_LEN];
    size_t kid_len;
    X509_NAME *sender; /* the request's sender DN */
    X509 *signer;      /* signature: who signed the request */
    X509 *issued;      /* our reference to the certificate issued */
    char identity[GW_IDENTITY_LEN];
    char serial[2 * 20 + 1];
    struct cmp_call *call; /* the request in progress, NULL between requests */
};

/* cmp_srv.c */
struct cmp_txn *cmp_txn_new(struct cmp_call *c, int refusal);
void cmp_txn_free(void *txn);
void cmp_log_capture_begin(struct cmp_call *c);
void cmp_log_capture_end(void);

/* cmp_engine.c */
void cmp_set_outcome(struct cmp_call *c, const char *status, int fail_bit, const char *text);
const char *cmp_fail_name(int bit);

#endif
