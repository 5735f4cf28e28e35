/*
 * What the policy checks' files share (policy.c, policy_vault.c, policy_exts.c, policy_issued.c):
 * how a refusal is worded and the checks more than one of them runs. Not for other modules: they
 * call mappings/policy.h.
 */
#ifndef GW_POLICY_LOCAL_H
#define GW_POLICY_LOCAL_H

#include <stddef.h>
#include <time.h>
#include <openssl/cmp.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "mappings/policy.h"

#define SHOWN_LEN 80 /* a client-supplied value quoted in a message; the message itself is GW_ERR_LEN */

#define DENY OSSL_CMP_PKIFAILUREINFO_notAuthorized
/*
 * Names and keys a role does not allow are refused with badCertTemplate, not notAuthorized:
 * RFC 9483 §4.1.1 uses badCertTemplate for a template whose content the PKI management entity does not
 * accept, and notAuthorized for a requester who may not use the service at all (gw_policy_authorize).
 * The requester can fix the first by asking for other names; the second needs another identity.
 */
#define BADT OSSL_CMP_PKIFAILUREINFO_badCertTemplate

/* Messages (policy.c): each definition has its contract. */
const char *policy_rname(const struct gw_role *role);
const char *policy_shown(char buf[SHOWN_LEN], const char *s, size_t len);
const char *policy_join(char *buf, size_t size, const struct gw_patterns *ps);
int policy_say(int *fail_info, int bit, char *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *policy_dur(char buf[SHOWN_LEN], long long secs);
const char *policy_when(char buf[SHOWN_LEN], time_t t);
const char *policy_key_name(char buf[SHOWN_LEN], const EVP_PKEY *pkey);
const char *policy_san_text(char buf[GW_ERR_LEN / 2], const GENERAL_NAME *gn);

/* Names (policy.c). */
int policy_glob(const char *p, size_t pn, const char *s, size_t sn, int fold);
int policy_eq_fold(const char *a, size_t an, const char *b, size_t bn);
int policy_vault_hostname(const char *s);
/* Whether |len| bytes of |v| hold a byte below 0x20 or 0x7f, which no name may hold. */
int policy_has_control(const char *v, size_t len);
char *policy_entry_utf8(const X509_NAME *name, int i, size_t *len);
int policy_cn_copy(const X509_NAME *subject, const GENERAL_NAME *gn);
int policy_check_san(const struct gw_role *role, const GENERAL_NAME *gn, int *fail_info, char *err);
int policy_check_names(const struct gw_role *role, const X509_NAME *subject, const GENERAL_NAMES *sans,
                       int *fail_info, char *err);
/*
 * policy_check_cn_as_san (policy_vault.c): |subject|'s last common name as the subjectAltName an upstream
 * that copies it adds (an email address, a hostname; none for another CN), held to |role|'s SAN types
 * and patterns (policy_check_san). 0, or GW_ERR_POLICY with |err| saying the CN is that copy.
 */
int policy_check_cn_as_san(const struct gw_role *role, const X509_NAME *subject, int *fail_info, char *err);
/*
 * policy_check_allowed_subject: |subject| (|who|'s: "requested") within the role's allowed_subjects,
 * read as one line; an empty one passes (require_subject judges it). 0, or GW_ERR_POLICY with |err|.
 */
int policy_check_allowed_subject(const struct gw_role *role, const char *who, const X509_NAME *subject,
                                 int *fail_info, char *err);

/* Chains (policy.c). */
int policy_verify(X509_STORE *store, X509 *cert, STACK_OF(X509) *untrusted, time_t now, int purpose,
                  int issued, int *code, int *depth, STACK_OF(X509) **path);
const char *policy_verify_why(int code, int depth);

/* What makes |cert| a CA certificate, which no role issues (policy_issued.c); NULL for an end entity. */
const char *policy_issued_ca(X509 *cert);

/* Extensions (policy_exts.c). */
int policy_exts_malformed(const STACK_OF(X509_EXTENSION) *exts, char *why);
int policy_exts_outside(const struct gw_role *role, const STACK_OF(X509_EXTENSION) *exts,
                        const STACK_OF(X509_EXTENSION) *asked, int issued, char *why);

#endif
