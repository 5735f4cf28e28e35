/*
 * Certificate profile and request field mapping. Pure: no I/O.
 *
 * The CMP layer reduces a request (CRMF template or PKCS#10) to struct gw_cert_req; the role then
 * turns it into struct gw_cert_plan, the exact content of the certificate to issue. The profile
 * is the route's, never the client's: key usage, extended key usage and basicConstraints come
 * from the role (a client can never get CA:TRUE), only allow-listed SAN types are copied,
 * validity is capped by the role's max_ttl.
 */
#ifndef GW_PROFILE_H
#define GW_PROFILE_H

#include <stddef.h>
#include <time.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "mappings/role.h"

enum gw_req_kind {
    GW_REQ_IR = 0,
    GW_REQ_CR,
    GW_REQ_KUR,
    GW_REQ_P10CR,
};

/* What the client asked for. Every pointer is owned by the struct (gw_cert_req_cleanup). */
struct gw_cert_req {
    enum gw_req_kind kind;
    X509_NAME *subject;  /* NULL if the template has none */
    GENERAL_NAMES *sans; /* NULL if none requested */
    EVP_PKEY *pubkey;    /* always set on success */
    X509_PUBKEY *spki;   /* pubkey as the request carried it (gw_x509_pubkey_copy); NULL: not kept,
                            or handed to a plan (gw_cert_plan_make) */
    time_t not_before;   /* 0 = not requested */
    time_t not_after;    /* 0 = not requested */
    int other_exts;      /* requested extensions other than subjectAltName (never copied) */
    STACK_OF(X509_EXTENSION) *csr_exts; /* a CSR's other extensions, as asked (NULL for CRMF, whose
                                           template the gateway rebuilds): the CA may copy them */
};

/* What will be issued. Owned by the struct (gw_cert_plan_cleanup). */
struct gw_cert_plan {
    X509_NAME *subject;  /* never NULL after gw_cert_plan_make; empty if none was asked */
    GENERAL_NAMES *sans; /* NULL = no SAN extension */
    EVP_PKEY *pubkey;
    X509_PUBKEY *spki; /* |pubkey| as the request carried it (the request's own; NULL: not kept) */
    time_t not_before;
    time_t not_after;
    int not_after_asked;    /* 1 if |not_after| is the client's (or max_ttl's cut of it): a later one
                               issued is a change too (grantedWithMods, RFC 9810 §5.2.3) */
    unsigned key_usage;     /* KU_* bits; never keyCertSign or cRLSign (the issued cert is CA:FALSE) */
    unsigned ext_key_usage; /* enum gw_eku bits */
    int modified;           /* 1 if the plan differs from what was asked (grantedWithMods) */
    STACK_OF(X509_EXTENSION) *csr_exts; /* the request's gw_cert_req.csr_exts: an issued certificate
                                           carrying a copy of one the role does not allow is refused */
};

void gw_cert_req_init(struct gw_cert_req *r);
void gw_cert_req_cleanup(struct gw_cert_req *r);
void gw_cert_plan_init(struct gw_cert_plan *p);
void gw_cert_plan_cleanup(struct gw_cert_plan *p);
/* gw_cert_plan_copy: |dst| (uninitialised) a deep copy of |src| (the key up-ref'd), for a call or a
 * check that outlives the request; 0 or GW_ERR_NOMEM (|dst| then empty). Clean up with
 * gw_cert_plan_cleanup. */
int gw_cert_plan_copy(const struct gw_cert_plan *src, struct gw_cert_plan *dst);

/*
 * gw_cert_plan_make applies |role| to |req| at time |now|. Returns 0, or GW_ERR_POLICY with a
 * reason fit for a CMP statusString in |err| (e.g. "subjectAltName type email is not allowed on
 * role iot"). |fail_info| gets the OSSL_CMP_PKIFAILUREINFO_* bit number to report. On success the
 * plan takes |req->spki| and a non-empty |req->subject| (each set to NULL) instead of copies, which
 * would duplicate the key and encode and decode the name again; a refused plan leaves them to |req|.
 */
int gw_cert_plan_make(const struct gw_role *role, struct gw_cert_req *req, time_t now,
                      struct gw_cert_plan *out, int *fail_info, char *err);

/*
 * gw_cert_uri_why says why the URI |d| (|n| bytes) may not be a subjectAltName, in words that follow
 * "it" ("it holds a '#', which begins a fragment"), or NULL where it may: a scheme first (RFC 5280
 * §4.2.1.6), printable ASCII without a space, exactly "//" and a host after the ':' of a WHATWG special
 * scheme (http, https, ws, wss, ftp; file: "///" and a path too), and nothing a URL parser (RFC 3986
 * §3.2, WHATWG) reads as the end of the host or another host than the name seems to give. A static string.
 */
const char *gw_cert_uri_why(const unsigned char *d, size_t n);

/*
 * gw_usage_exts_add appends the keyUsage (critical, for KU_* bits |ku|, RFC 5280 §4.2.1.3) and
 * extendedKeyUsage (for enum gw_eku bits |eku|) extensions to |*exts| (created if NULL), each only
 * when it has a bit set. One encoding of the profile's usages for every issuer: the local issuer,
 * the CMP upstream's template, genm's certReqTemplate. 1 on success, 0 on allocation failure.
 */
int gw_usage_exts_add(STACK_OF(X509_EXTENSION) **exts, unsigned ku, unsigned eku);

/*
 * The one table of usage names (the role configuration's spelling, used in refusals too):
 * gw_ku_name and gw_eku_name name the single KU_* or enum gw_eku bit |bit| ("digitalSignature",
 * "clientAuth"), NULL if it is none; gw_ku_from_bit is the KU_* value of keyUsage BIT STRING bit
 * |n| (RFC 5280 §4.2.1.3), 0 past decipherOnly; gw_eku_from_nid is the enum gw_eku bit of the
 * extendedKeyUsage purpose |nid|, 0 for a purpose no role can grant.
 */
const char *gw_ku_name(unsigned bit);
unsigned gw_ku_from_bit(int n);
const char *gw_eku_name(unsigned bit);
unsigned gw_eku_from_nid(int nid);

#endif
