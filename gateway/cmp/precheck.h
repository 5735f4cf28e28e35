/*
 * Step 2 of a request (docs/design.md O10.1): what is refused before OpenSSL sees the message, and
 * what each body type gets once it passes (precheck.c).
 */
#ifndef GW_CMP_PRECHECK_H
#define GW_CMP_PRECHECK_H

#include <openssl/cmp.h>
#include "gateway/cmp/cmp_local.h"

/* What a body type gets before OpenSSL sees it. */
enum cmp_body_action {
    CMP_ACT_REFUSE = 0,
    CMP_ACT_START,    /* starts a transaction: fresh SRV_CTX */
    CMP_ACT_CONTINUE, /* continues a parked transaction */
    CMP_ACT_ERROR,    /* the client aborts its transaction */
};

/* cmp_bodies says what each body does; one not listed is refused before OpenSSL (docs/design.md O10). */
extern const enum cmp_body_action cmp_bodies[GW_CMP_BODY_MAX + 1];

/*
 * cmp_pbm_refused refuses an unknown or foreign PBM reference as a wrong secret is refused (its
 * answer and its cost), logged with |why|; returns 1 with |r| set.
 */
int cmp_pbm_refused(struct cmp_call *c, const char *why, struct cmp_refusal *r);

/*
 * cmp_check_pbm checks the PBM protection of |c|'s message: its cost capped, its senderKID one of the
 * role's credentials (for a message that starts a transaction); sets c->pbm (and c->pbm_gone).
 * 0, or 1 with |r| set.
 */
int cmp_check_pbm(struct cmp_call *c, struct cmp_refusal *r);

/*
 * cmp_precheck runs every check of step 2 on |msg| (header decoded into c->hdr, c->body set): 0 to let
 * it reach OpenSSL, or 1 with |r| set; c->rsp->auth_failed says whether the refusal counts against
 * the client's address. Sets c->req_key, c->role (a certProfile may choose it), c->profile, c->pbm.
 */
int cmp_precheck(struct cmp_call *c, const OSSL_CMP_MSG *msg, struct cmp_refusal *r);

#endif
