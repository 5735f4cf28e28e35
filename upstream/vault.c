/*
 * The vault adapter: Vault / OpenBao PKI secrets engine (docs/design.md U1).
 *
 * A p10cr's CSR goes to sign/<role> or sign-verbatim[/<role>] unchanged: Vault verifies its
 * self-signature, so a CRMF request (no CSR) is refused here and left to the route's crmf setting
 * (docs/design.md D5). A sign call with a token in hand runs on the HTTP client's transfer thread
 * and completes there (docs/design.md D24); without one (the first call, a renewal) it runs on the
 * calling thread. Every other call is synchronous.
 *
 * Authentication (vault_token.c): a token from token_file (re-read once on 403), or a cert-auth
 * login with the gateway's TLS client certificate whose token is cached and re-obtained
 * GW_VAULT_TOKEN_RENEW_MARGIN seconds before its lease ends, one login at a time (the others wait
 * for it). The token never reaches a log.
 *
 * Retries (vault_token.c): only answers that say nothing happened (403 with a new token, 412, 429,
 * 503) are retried, with doubling backoff, inside the upstream's deadline; a sign's only when Vault's
 * own (gw_vault_own_refusal). A timeout or transport error on sign has an unknown outcome and is
 * reported as such, never repeated; so has a sign's 403, 412, 429 or 503 of another, a proxy's or a
 * WAF's, which may have passed the call on.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/cmp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "base/err.h"
#include "base/limits.h"
#include "base/log.h"
#include "upstream/answers.h"
#include "upstream/field.h"
#include "upstream/http_client.h"
#include "upstream/upstream.h"
#include "upstream/upstream_int.h"
#include "upstream/vault_local.h"
#include "base/conf.h"
#include "base/clock.h"
#include "base/x509.h"

const char *vault_up_name(const struct vault *v)
{
    return v->conf->name != NULL ? v->conf->name : "vault";
}

void vault_set_err(char *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, GW_ERR_LEN, fmt, ap);
    va_end(ap);
}

/* ---- sign ---- */

static int safe_segment(const char *s)
{
    return s != NULL && gw_conf_segment_ok(s, strlen(s));
}

/* A mount path: plain names separated by single slashes ("pki", "pki/int"). */
static int safe_mount(const char *m)
{
    char seg[GW_MAX_MOUNT_LEN + 1];
    const char *p = m, *slash;
    size_t n;

    if (m == NULL || strlen(m) > GW_MAX_MOUNT_LEN)
        return 0;
    do {
        slash = strchr(p, '/');
        n = slash != NULL ? (size_t)(slash - p) : strlen(p);
        snprintf(seg, sizeof(seg), "%.*s", (int)n, p);
        if (!safe_segment(seg))
            return 0;
        p = slash + 1;
    } while (slash != NULL);
    return 1;
}

/* The sign path of |role| (docs/design.md U1.2, U1.3); 0 or GW_ERR_INVAL with |err|. */
static int sign_path(const struct vault *v, const struct gw_role *role, char *path, size_t cap, char *err)
{
    const char *urole = role->upstream_role != NULL ? role->upstream_role : role->name;
    char issuer[GW_MAX_NAME_LEN + 16] = "";
    int n;

    if (role->issuer_ref != NULL) {
        if (!safe_segment(role->issuer_ref)) {
            vault_set_err(err, "issuer_ref %.64s is not a plain name", role->issuer_ref);
            return GW_ERR_INVAL;
        }
        snprintf(issuer, sizeof(issuer), "issuer/%.64s/", role->issuer_ref);
    }
    if (role->sign_policy == GW_SIGN_VERBATIM) {
        /*
         * sign-verbatim/<role> when a Vault role is named (it then sets ttl, max_ttl, issuer); the
         * upstream role "sign-verbatim" (the default of the role Vault's default_path_policy
         * "sign-verbatim" names) means Vault's plain sign-verbatim.
         */
        const char *vr = role->upstream_role != NULL && strcmp(role->upstream_role, "sign-verbatim") != 0
                             ? role->upstream_role
                             : NULL;

        if (vr != NULL && !safe_segment(vr))
            goto bad_role;
        n = snprintf(path, cap, "/v1/%s/%ssign-verbatim%s%s", v->mount, issuer, vr != NULL ? "/" : "",
                     vr != NULL ? vr : "");
    } else {
        if (!safe_segment(urole))
            goto bad_role;
        n = snprintf(path, cap, "/v1/%s/%ssign/%s", v->mount, issuer, urole);
    }
    if (n < 0 || (size_t)n >= cap) {
        vault_set_err(err, "sign path too long");
        return GW_ERR_INVAL;
    }
    return 0;
bad_role:
    vault_set_err(err, "upstream role %.64s is not a plain name", urole);
    return GW_ERR_INVAL;
}

/* Vault's SAN lists of a sign call, in the order they are sent (docs/vault.md). */
enum san_list { SAN_ALT, SAN_IP, SAN_URI, SAN_NONE };
static const char *const san_keys[] = {"alt_names", "ip_sans", "uri_sans"};

_Static_assert(INET6_ADDRSTRLEN <= GW_MAX_PATTERN_LEN + 1, "an IP address's text fits a name's room");

/* Appends |s| (|n| bytes) to the list of *used bytes in |buf|: 0, or -1 when it would not fit whole. */
static int append(char *buf, size_t cap, size_t *used, const char *s, size_t n)
{
    size_t sep = *used != 0;

    if (*used + sep + n >= cap)
        return -1;
    if (sep != 0)
        buf[(*used)++] = ',';
    memcpy(buf + *used, s, n);
    *used += n;
    buf[*used] = '\0';
    return 0;
}

/*
 * The list |gn| goes into, its text into |text| (GW_MAX_PATTERN_LEN + 1 bytes) and *len; SAN_NONE for
 * one left out. A name with a comma or NUL would change the list: left out (an email address or URI
 * may hold a comma), and the certificate without it is a change the result check reports.
 */
static enum san_list san_text(const GENERAL_NAME *gn, char *text, size_t *len)
{
    const ASN1_OCTET_STRING *ip = gn->d.iPAddress;
    const ASN1_IA5STRING *s = gn->d.ia5;

    if (gn->type == GEN_IPADD) {
        if ((ip->length != 4 && ip->length != 16) ||
            inet_ntop(ip->length == 4 ? AF_INET : AF_INET6, ip->data, text, INET6_ADDRSTRLEN) == NULL)
            return SAN_NONE;
        *len = strlen(text);
        return SAN_IP;
    }
    if (gn->type != GEN_DNS && gn->type != GEN_EMAIL && gn->type != GEN_URI)
        return SAN_NONE;
    if (s->length <= 0 || (size_t)s->length > GW_MAX_PATTERN_LEN ||
        memchr(s->data, ',', (size_t)s->length) != NULL || memchr(s->data, 0, (size_t)s->length) != NULL)
        return SAN_NONE;
    memcpy(text, s->data, (size_t)s->length);
    *len = (size_t)s->length;
    return gn->type == GEN_URI ? SAN_URI : SAN_ALT;
}

/*
 * The plan's SANs as Vault's alt_names (DNS, email), ip_sans and uri_sans, every name whole: 0, or
 * GW_ERR_LIMIT when a list would not fit GW_VAULT_SAN_LIST_LEN (more names than a plan may hold), or
 * GW_ERR_NOMEM. A list cut short would ask Vault for a name's prefix, another name.
 */
static int add_sans(json_object *req, const GENERAL_NAMES *sans)
{
    char *list = malloc(GW_VAULT_SAN_LIST_LEN), text[GW_MAX_PATTERN_LEN + 1];
    size_t used, len;
    int rc = 0;

    if (list == NULL)
        return GW_ERR_NOMEM;
    for (enum san_list l = SAN_ALT; rc == 0 && l < SAN_NONE; l++) {
        used = 0;
        for (int i = 0; rc == 0 && i < sk_GENERAL_NAME_num(sans); i++) {
            if (san_text(sk_GENERAL_NAME_value(sans, i), text, &len) == l &&
                append(list, GW_VAULT_SAN_LIST_LEN, &used, text, len) != 0)
                rc = GW_ERR_LIMIT;
        }
        if (rc == 0 && used != 0)
            json_object_object_add(req, san_keys[l], json_object_new_string_len(list, (int)used));
    }
    free(list);
    return rc;
}

static char *csr_pem(const X509_REQ *csr)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL, *out = NULL;
    long n;

    if (b != NULL && PEM_write_bio_X509_REQ(b, (X509_REQ *)csr) == 1 && (n = BIO_get_mem_data(b, &data)) > 0)
        out = strndup(data, (size_t)n);
    BIO_free(b);
    return out;
}

/*
 * sign-verbatim puts key_usage and ext_key_usage of the call into a certificate whose CSR names none,
 * and Vault's defaults (DigitalSignature, KeyAgreement, KeyEncipherment) when the call names none
 * either: the role's usages are sent, so that a plain CSR comes back within the role. cmcRA has no
 * Vault name: it goes as an OID (RFC 6402 §2.10).
 */
static void add_usages(json_object *o, const struct gw_cert_plan *plan)
{
    json_object *ku = json_object_new_array(), *eku = json_object_new_array(),
                *oids = json_object_new_array();
    char cmc_ra[GW_MAX_OID_TEXT];
    size_t i;

    for (i = 0; ku != NULL && i < gw_vault_n_key_usages; i++) {
        if ((plan->key_usage & gw_vault_key_usages[i].bit) != 0)
            json_object_array_add(ku, json_object_new_string(gw_vault_key_usages[i].name));
    }
    for (i = 0; eku != NULL && i < gw_vault_n_ext_key_usages; i++) {
        if ((plan->ext_key_usage & gw_vault_ext_key_usages[i].bit) != 0)
            json_object_array_add(eku, json_object_new_string(gw_vault_ext_key_usages[i].name));
    }
    if (oids != NULL && (plan->ext_key_usage & GW_EKU_CMC_RA) != 0 &&
        OBJ_obj2txt(cmc_ra, sizeof(cmc_ra), OBJ_nid2obj(NID_cmcRA), 1) > 0)
        json_object_array_add(oids, json_object_new_string(cmc_ra));
    json_object_object_add(o, "key_usage", ku);
    json_object_object_add(o, "ext_key_usage", eku);
    json_object_object_add(o, "ext_key_usage_oids", oids);
}

/*
 * The JSON body of a sign call; NULL with |err| and *fail_info (systemFailure, or badCertTemplate for
 * names that do not fit). The CN comes from the CSR, so none is sent.
 */
static char *sign_body(const struct gw_sign_req *req, int *fail_info, char *err)
{
    json_object *o = json_object_new_object();
    char *pem = csr_pem(req->csr), *out = NULL;
    time_t ttl = req->plan->not_after - time(NULL);
    int rc;

    *fail_info = OSSL_CMP_PKIFAILUREINFO_systemFailure;
    if (o == NULL || pem == NULL) {
        vault_set_err(err, "cannot encode the CSR");
        goto out;
    }
    if (ttl <= 0) {
        vault_set_err(err, "the planned validity has already ended");
        goto out;
    }
    json_object_object_add(o, "csr", json_object_new_string(pem));
    json_object_object_add(o, "ttl", json_object_new_int64((int64_t)ttl));
    json_object_object_add(o, "format", json_object_new_string("pem"));
    json_object_object_add(o, "exclude_cn_from_sans",
                           json_object_new_boolean(req->role->exclude_cn_from_sans));
    if ((rc = add_sans(o, req->plan->sans)) == GW_ERR_LIMIT) {
        *fail_info = OSSL_CMP_PKIFAILUREINFO_badCertTemplate;
        vault_set_err(
            err,
            "the subjectAltNames do not fit the call to Vault whole (at most %d names of %d bytes): "
            "ask for fewer",
            GW_MAX_SANS, GW_MAX_PATTERN_LEN);
        goto out;
    }
    if (rc != 0) {
        vault_set_err(err, "out of memory");
        goto out;
    }
    if (req->role->sign_policy == GW_SIGN_VERBATIM)
        add_usages(o, req->plan);
    if ((out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN))) == NULL)
        vault_set_err(err, "out of memory");
out:
    free(pem);
    json_object_put(o);
    return out;
}

/* Logs what Vault said beside the certificate: serial, expiration, warnings. */
static void log_issued(const struct vault *v, const char *rid, const struct gw_vault_signed *sig)
{
    char want[GW_VAULT_SERIAL_LEN], exp[32];

    snprintf(exp, sizeof(exp), "%lld", (long long)sig->expiration);
    if (gw_x509_serial_hex_colons(X509_get0_serialNumber(sig->cert), want, sizeof(want)) != 0)
        want[0] = '\0';
    if (sig->serial_number[0] != '\0' && strcasecmp(sig->serial_number, want) != 0)
        gw_log_kv(GW_LOG_WARN, "vault_serial_mismatch", "upstream", vault_up_name(v), "request_id", rid,
                  "serial_number", sig->serial_number, "certificate_serial", want, NULL);
    if (sig->warnings[0] != '\0')
        gw_log_kv(GW_LOG_WARN, "vault_warning", "upstream", vault_up_name(v), "request_id", rid, "warnings",
                  sig->warnings, NULL);
    gw_log_kv(GW_LOG_INFO, "vault_issued", "upstream", vault_up_name(v), "request_id", rid, "serial", want,
              "expiration", exp, NULL);
}

/*
 * parse_signed turns a 2xx answer into |res|: anything out of range refuses the whole answer, and so
 * does a status other than 200 and 204, which Vault's sign never answers (a 201 or 202 is a proxy's,
 * or an API that is not Vault's sign): its certificate, if any, is refused and handed on like any
 * other refused answer's (recorded, revoked), never delivered, never dropped.
 */
static void parse_signed(const struct vault *v, const char *rid, const struct gw_http_response *rsp,
                         const char *tok, struct gw_sign_result *res)
{
    struct gw_vault_signed sig;
    char why[GW_ERR_LEN];
    int rc;

    if ((rc = gw_vault_parse_sign(rsp->body, rsp->body_len, tok, &sig, why)) == GW_ERR_NOT_FOUND) {
        gw_sign_result_fail(res, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "%s", why);
        return;
    }
    if (rc == 0 && rsp->status != 200 && rsp->status != 204) {
        snprintf(why, sizeof(why), "Vault's sign answers HTTP 200");
        rc = GW_ERR_UPSTREAM;
    }
    if (rc != 0) {
        gw_field_reason(why, GW_MAX_VAULT_WHY, why, "",
                        "Vault's answer (HTTP %ld) is refused: ", rsp->status);
        gw_sign_result_fail(res, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure, "%s", why);
        res->cert = sig.cert; /* issued all the same: the engine records and revokes it (upstream.h) */
        sig.cert = NULL;
        gw_vault_signed_cleanup(&sig);
        return;
    }
    log_issued(v, rid, &sig);
    res->cert = sig.cert;
    res->chain = sig.chain;
    sig.cert = NULL;
    sig.chain = NULL;
    res->status = 0;
    gw_vault_signed_cleanup(&sig);
}

/*
 * Why a sign call got no answer to read (|rc|, |err|) into |why| (GW_ERR_LEN): |err| may be a refused
 * login's reason quoting Vault, cut between UTF-8 characters where the words around it need the room.
 */
static void unanswered(int rc, const struct gw_http_response *rsp, const char *err, char *why)
{
    if (rc == GW_ERR_IO && rsp->not_sent)
        gw_field_reason(why, GW_MAX_VAULT_SIGN_ERR, err, "); nothing was sent", "Vault is unreachable (");
    else if (rc == GW_ERR_TIMEOUT || rc == GW_ERR_IO) /* it may have reached Vault: never repeat it blindly */
        gw_field_reason(why, GW_MAX_VAULT_SIGN_ERR, err, "); the outcome is unknown, do not retry blindly",
                        "Vault did not answer (");
    else if (rc == GW_ERR_FORBIDDEN)
        gw_field_reason(why, GW_MAX_VAULT_SIGN_ERR, err, ": an operator must fix the gateway's Vault login",
                        "%s", "");
    else
        gw_field_reason(why, GW_MAX_VAULT_SIGN_ERR, err, "", "Vault could not be asked: ");
}

/* What a sign call's answer, to the token |tok|, means for the client: |res| filled in every case. */
static void sign_answer(const struct vault *v, const char *rid, const char *path, int rc,
                        const struct gw_http_response *rsp, const char *tok, const char *err,
                        struct gw_sign_result *res)
{
    bool unread = false;
    char why[GW_ERR_LEN], what[GW_ERR_LEN];
    X509 *cert;

    if (rc != 0) {
        unanswered(rc, rsp, err, why);
        gw_sign_result_fail(res, rc, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "%s", why);
        unread = rsp->too_large; /* nor is an answer over the cap read, data.certificate neither */
    } else if (gw_field_unread(rsp->body, rsp->body_len, why) != 0) {
        /* not a field of it is read, data.certificate neither: Vault may have issued a certificate that is
           neither recorded nor withdrawn, which only Vault can tell */
        gw_sign_result_fail(res, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure,
                            "Vault's answer (HTTP %ld) could not be read (%s); the outcome is unknown (Vault "
                            "may have issued: see its audit device), do not retry blindly",
                            rsp->status, why);
        unread = true;
    } else if (rsp->status >= 200 &&
               rsp->status < 300) { /* a certificate in any 2xx is kept (parse_signed) */
        parse_signed(v, rid, rsp, tok, res);
    } else if ((cert = gw_vault_answer_cert(rsp->body, rsp->body_len)) != NULL) {
        /* issued all the same: the engine records and revokes it (upstream.h), never dropped */
        gw_sign_result_fail(
            res, GW_ERR_UPSTREAM, OSSL_CMP_PKIFAILUREINFO_systemFailure,
            "Vault's answer (HTTP %ld) is refused: it holds a certificate beside an error status",
            rsp->status);
        res->cert = cert;
    } else if (vault_resent_status(rsp->status) &&
               !gw_vault_own_refusal(rsp->status, rsp->body, rsp->body_len)) {
        /* what answered is not Vault (a proxy, a WAF), and may have passed the call on: never sent again */
        snprintf(
            what, sizeof(what),
            "HTTP %ld, not Vault's own answer: what answered in front of Vault may have passed the call on",
            rsp->status);
        unanswered(GW_ERR_IO, rsp, what, why);
        gw_sign_result_fail(res, GW_ERR_IO, OSSL_CMP_PKIFAILUREINFO_systemUnavail, "%s", why);
    } else {
        gw_vault_map_error(rsp->status, rsp->body, rsp->body_len, tok, &res->status, &res->fail_info,
                           res->reason);
    }
    if (res->status != 0)
        gw_log_kv(unread ? GW_LOG_ERROR : GW_LOG_WARN, "vault_sign_failed", "upstream", vault_up_name(v),
                  "request_id", rid, "path", path, "reason", res->reason, "error", err != NULL ? err : "",
                  NULL);
}

/*
 * One sign call in flight without a thread (docs/design.md D24): the path and body are made on the
 * worker, the POST runs on the HTTP client's transfer thread, and the answer is read there. An
 * answer that says nothing happened and asks for another try (Vault's own 403 for an expired token,
 * 412, 429, 503) goes on to a thread of its own that repeats the call the synchronous way (vault_call).
 */
struct sign_call {
    struct vault *v;
    char rid[2 * GW_MAX_TID_LEN + 1];
    char path[GW_MAX_PATH_LEN];
    char *body;
    struct attempts a;          /* its tok: the token the asynchronous call sent, then each repetition */
    uint64_t sleep_ms;          /* before the call is sent again */
    bool on_caller;             /* repeated on the caller's thread, not a thread of its own */
    struct gw_sign_result *res; /* allocated up front: a completion cannot fail to report */
    gw_upstream_done_fn done;
    void *arg;
};

static void sign_call_end(struct sign_call *sc, int rc, const struct gw_http_response *rsp, const char *err)
{
    struct gw_sign_result *res = sc->res;
    gw_upstream_done_fn done = sc->done;
    void *arg = sc->arg;

    sign_answer(sc->v, sc->rid, sc->path, rc, rsp, sc->a.tok, err, res);
    vault_attempts_cleanup(&sc->a);
    free(sc->body);
    free(sc);
    done(arg, res);
}

/* The synchronous repetition of a call the asynchronous way could not finish (own thread). */
static void *sign_call_retry(void *arg)
{
    struct sign_call *sc = arg;
    struct gw_http_response rsp;
    char err[GW_ERR_LEN] = "";
    int rc;

    gw_sleep_ms(sc->sleep_ms);
    rc = vault_call_on(sc->v, "POST", sc->path, sc->body, &rsp, err, &sc->a);
    if (!sc->on_caller) /* |done| may let the client be freed: this thread's handle goes first */
        gw_http_client_thread_done(sc->v->http);
    sign_call_end(sc, rc, &rsp, err);
    gw_http_response_cleanup(&rsp);
    return NULL;
}

/* The transfer thread: the answer to an asynchronous sign call. */
static void sign_call_done(void *arg, int rc, const struct gw_http_response *rsp)
{
    struct sign_call *sc = arg;

    if (sc->a.tok != NULL)
        vault_mask_token(rsp, sc->a.tok);
    if (rc == 0 && vault_send_again(sc->v, &sc->a, sc->path, rsp, &sc->sleep_ms) &&
        gw_upstream_detach(sign_call_retry, sc) == 0)
        return;
    sign_call_end(sc, rc, rsp, rsp->error);
}

/*
 * Submits the POST of |sc| without waiting: 0 (|sc| is the transfer's), or -1 when it must run
 * the synchronous way (no token in hand: getting one may wait for a login).
 */
static int sign_call_submit(struct sign_call *sc)
{
    struct call_headers h;
    char *tok = NULL, err[GW_ERR_LEN];
    int rc = -1;

    if (vault_token_peek(sc->v, &tok, &sc->a.gen) != 0)
        return -1;
    sc->a.tok = tok; /* the answer is masked of it (vault_mask_token, sign_answer) */
    if (vault_headers_make(sc->v, tok, &h, err) == 0 &&
        gw_http_request_async(sc->v->http, "POST", sc->path, sc->body, h.list, sign_call_done, sc) == 0)
        rc = 0;
    vault_headers_cleanup(&h);
    if (rc != 0)
        vault_attempts_cleanup(&sc->a);
    return rc;
}

static int vault_sign(struct gw_upstream *up, const struct gw_sign_req *req, gw_upstream_done_fn done,
                      void *arg)
{
    struct vault *v = gw_upstream_get0_impl(up);
    struct sign_call *sc;
    char err[GW_ERR_LEN] = "";
    int fi = OSSL_CMP_PKIFAILUREINFO_systemFailure;

    /* Vault signs CSRs only: a CRMF request is the route's to reject or delegate */
    if (v == NULL || req->csr == NULL || req->role == NULL || req->plan == NULL)
        return GW_ERR_INVAL;
    if ((sc = calloc(1, sizeof(*sc))) == NULL || (sc->res = malloc(sizeof(*sc->res))) == NULL) {
        free(sc);
        return GW_ERR_NOMEM;
    }
    gw_sign_result_init(sc->res);
    sc->v = v;
    sc->a = vault_attempts_start(v);
    sc->a.whole_sends = true;
    sc->done = done;
    sc->arg = arg;
    snprintf(sc->rid, sizeof(sc->rid), "%s", req->request_id != NULL ? req->request_id : "");
    if (sign_path(v, req->role, sc->path, sizeof(sc->path), err) != 0 ||
        (sc->body = sign_body(req, &fi, err)) == NULL) {
        gw_sign_result_fail(sc->res, GW_ERR_INVAL, fi, "upstream %s: %s", vault_up_name(v), err);
        gw_log_kv(GW_LOG_WARN, "vault_sign_failed", "upstream", vault_up_name(v), "request_id", sc->rid,
                  "path", sc->path, "reason", sc->res->reason, NULL);
        done(arg, sc->res);
        free(sc);
        return 0;
    }
    if (sign_call_submit(sc) != 0) {
        sc->on_caller = true;
        (void)sign_call_retry(sc); /* here, on the caller's thread */
    }
    return 0;
}

/* ---- revoke, role policy, certificate status ---- */

/*
 * A 404 that is not Vault's "nothing there" (gw_vault_no_entry): no mount at the upstream's "mount",
 * or no such path on it. Vault answers a revocation of a serial it does not know with a 400 (Vault
 * and OpenBao alike; Vault's cross-cluster revocation queue, a 200 "pending"), never so: the
 * gateway's configuration is wrong, which an operator fixes, and a client may retry later. Vault's
 * words name its paths: they go to the log, not into |err|, which a client may be told.
 */
static int no_route(const struct vault *v, const char *method, const char *path, char *err)
{
    gw_log_kv(GW_LOG_ERROR, "vault_no_route", "upstream", vault_up_name(v), "method", method, "path", path,
              "reason", err, "msg", "Vault has no such path: check the upstream's url and mount", NULL);
    vault_set_err(err, "Vault has no such path (HTTP 404): the gateway's configuration is wrong");
    return GW_ERR_UPSTREAM;
}

/*
 * Runs one synchronous call from |a| and maps a non-2xx answer into |err|; 0 with the 2xx answer in
 * |rsp|, which the caller parses (masked of a->tok) and cleans up. GW_ERR_NOT_FOUND: Vault has no such
 * entry.
 */
static int simple_call(struct vault *v, const char *method, const char *path, const char *body,
                       struct gw_http_response *rsp, long *status, struct attempts *a, char *err)
{
    int st, fi, rc;

    if ((rc = vault_call_on(v, method, path, body, rsp, err, a)) != 0) {
        gw_field_reason(err, GW_MAX_VAULT_CALL_ERR, err, "", "upstream %s: %s %s: ", vault_up_name(v), method,
                        path);
        goto out;
    }
    *status = rsp->status;
    if (rsp->status != 200 && rsp->status != 204) {
        gw_vault_map_error(rsp->status, rsp->body, rsp->body_len, a->tok, &st, &fi, err);
        rc = rsp->status != 404                            ? st
             : gw_vault_no_entry(rsp->body, rsp->body_len) ? GW_ERR_NOT_FOUND
                                                           : no_route(v, method, path, err);
    }
out:
    if (rc != 0)
        gw_http_response_cleanup(rsp);
    return rc;
}

/* The reason for a 2xx answer of |path| that its parser refused (|why|, which may quote the answer). */
static int refused(const struct vault *v, const char *method, const char *path, const char *why, char *err)
{
    gw_field_reason(err, GW_MAX_VAULT_WHY, why, "",
                    "upstream %s: %s %s: the answer is refused: ", vault_up_name(v), method, path);
    return GW_ERR_UPSTREAM;
}

static int cert_serial(const X509 *cert, char *hex, size_t cap, char *err)
{
    if (cert == NULL || gw_x509_serial_hex_colons(X509_get0_serialNumber(cert), hex, cap) != 0) {
        vault_set_err(err, "certificate has no usable serial number");
        return GW_ERR_INVAL;
    }
    return 0;
}

/* |s| as Vault writes serials: GW_ERR_NOT_FOUND for one Vault never issues (negative, too long). */
static int serial_text(const ASN1_INTEGER *s, char serial[GW_VAULT_SERIAL_LEN], char *err)
{
    if (s != NULL && ASN1_STRING_type(s) != V_ASN1_NEG_INTEGER &&
        gw_x509_serial_hex_colons(s, serial, GW_VAULT_SERIAL_LEN) == 0)
        return 0;
    vault_set_err(err, "not a serial number Vault issues");
    return GW_ERR_NOT_FOUND;
}

/*
 * POST revoke by serial: Vault takes no reason code (the caller audits it), and revokes by serial
 * within the mount, whatever |issuer| says. Unknown serial: GW_ERR_NOT_FOUND. A refusal Vault would
 * repeat (a 4xx, an expired certificate) is GW_ERR_REFUSED with badRequest: Vault names no failInfo.
 * A 404 naming a path Vault does not have is the gateway's configuration (no_route). Its attempts end
 * by *end too (NULL or 0: the timeout alone), which may be lowered while they run; *not_sent when none
 * reached Vault to act on (attempts.sent). Worker.
 */
static int vault_revoke_serial(struct gw_upstream *up, const X509_NAME *issuer,
                               const ASN1_INTEGER *serial_int, int reason, const _Atomic uint64_t *end,
                               int *fail_info, int *not_sent, char *err)
{
    struct vault *v = gw_upstream_get0_impl(up);
    char path[GW_MAX_PATH_LEN], serial[GW_VAULT_SERIAL_LEN], why[GW_ERR_LEN], when[32];
    struct gw_http_response rsp;
    struct gw_vault_revoked rv;
    struct attempts a = vault_attempts_start(v);
    json_object *req = NULL;
    uint64_t end_ms = end != NULL ? atomic_load(end) : 0;
    long status = 0;
    int rc;

    (void)issuer;
    (void)reason;
    (void)fail_info;
    a.end = end;
    if (end_ms != 0 && end_ms < a.deadline)
        a.deadline = end_ms;
    if ((rc = serial_text(serial_int, serial, err)) != 0)
        return rc;
    if ((req = json_object_new_object()) == NULL)
        return GW_ERR_NOMEM;
    json_object_object_add(req, "serial_number", json_object_new_string(serial));
    snprintf(path, sizeof(path), "/v1/%s/revoke", v->mount);
    rc = simple_call(v, "POST", path, json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN), &rsp,
                     &status, &a, err);
    if (rc != 0 && status == 400 && strstr(err, "not found") != NULL)
        rc = GW_ERR_NOT_FOUND; /* "certificate with serial ... not found." (docs/design.md U1.5) */
    else if (rc != 0 && status != 404 && gw_http_status_refuses(status)) /* 404: no entry, or no route */
        rc = GW_ERR_REFUSED;
    if (rc != 0)
        goto out;
    if (gw_vault_parse_revoke(rsp.body, rsp.body_len, a.tok, &rv, why) != 0) {
        rc = refused(v, "POST", path, why, err);
    } else if (!rv.has_data) {
        /* 200 with only a warning: the certificate has expired, and Vault puts no expired one on its CRL */
        gw_field_reason(err, GW_MAX_VAULT_QUOTE,
                        rv.warnings[0] != '\0' ? rv.warnings : "no data in the answer", ")",
                        "Vault did not revoke %s: it has expired (Vault: ", serial);
        rc = GW_ERR_REFUSED;
    } else if (!rv.revoked) {
        vault_set_err(err, "Vault did not confirm the revocation of %s (state \"%s\", revocation_time %lld)",
                      serial, rv.state, (long long)rv.revocation_time);
        rc = GW_ERR_UPSTREAM;
    } else {
        snprintf(when, sizeof(when), "%lld", (long long)rv.revocation_time);
        gw_log_kv(GW_LOG_INFO, "vault_revoked", "upstream", vault_up_name(v), "serial", serial,
                  "revocation_time", when, NULL);
    }
    gw_http_response_cleanup(&rsp);
out:
    *not_sent = rc != 0 && !a.sent;
    vault_attempts_cleanup(&a);
    json_object_put(req);
    return rc;
}

/*
 * GET sys/health, unauthenticated: 200 from an active node, and from a standby too with the two
 * flags (a standby forwards requests; by default it would answer 429 or 473). Sealed, uninitialised
 * or unreachable is down. Prober thread.
 */
static int vault_probe(struct gw_upstream *up, const _Atomic uint64_t *end, char *err)
{
    static const char path[] = "/v1/sys/health?standbyok=true&perfstandbyok=true";
    struct vault *v = gw_upstream_get0_impl(up);
    struct gw_http_response rsp;
    int rc;

    if ((rc = gw_http_request_until(v->http, "GET", path, NULL, NULL, 0, end, &rsp)) != 0)
        gw_field_reason(err, GW_MAX_VAULT_WHY, rsp.error[0] != '\0' ? rsp.error : gw_err_str(rc), "",
                        "GET /v1/sys/health: ");
    else if (rsp.status != 200)
        vault_set_err(err, "GET /v1/sys/health: HTTP %ld%s", rsp.status,
                      rsp.status == 503   ? " (sealed)"
                      : rsp.status == 501 ? " (not initialised)"
                                          : "");
    rc = rc != 0 ? rc : rsp.status == 200 ? 0 : GW_ERR_UPSTREAM;
    gw_http_response_cleanup(&rsp);
    return rc;
}

/*
 * GET <mount>/crl: the default issuer's complete CRL, DER (docs/design.md U1.6); with |issuer_ref|,
 * GET <mount>/issuer/<ref>/crl/der: that issuer's (Vault's multi-issuer mounts keep one CRL per
 * issuer, and a certificate is on its own issuer's only). Worker.
 */
static int vault_crl(struct gw_upstream *up, const char *issuer_ref, unsigned char **der, size_t *len,
                     char *err)
{
    struct vault *v = gw_upstream_get0_impl(up);
    struct gw_http_response rsp;
    const unsigned char *p;
    X509_CRL *crl = NULL;
    char path[GW_MAX_PATH_LEN];
    int rc;

    if (issuer_ref != NULL && !safe_segment(issuer_ref)) {
        vault_set_err(err, "upstream %s: issuer_ref %.64s is not a plain name", vault_up_name(v), issuer_ref);
        return GW_ERR_INVAL;
    }
    if (issuer_ref != NULL)
        snprintf(path, sizeof(path), "/v1/%s/issuer/%s/crl/der", v->mount, issuer_ref);
    else
        snprintf(path, sizeof(path), "/v1/%s/crl", v->mount);
    if ((rc = vault_call(v, "GET", path, NULL, &rsp, err)) != 0) {
        gw_field_reason(err, GW_MAX_VAULT_CALL_ERR, err, "", "upstream %s: GET %s: ", vault_up_name(v), path);
        goto out;
    }
    rc = GW_ERR_UPSTREAM;
    if (rsp.status != 200) {
        vault_set_err(err, "upstream %s: GET %s: HTTP %ld", vault_up_name(v), path, rsp.status);
        goto out;
    }
    p = (const unsigned char *)rsp.body;
    if (rsp.body_len == 0 || (crl = d2i_X509_CRL(NULL, &p, (long)rsp.body_len)) == NULL ||
        p != (const unsigned char *)rsp.body + rsp.body_len) {
        vault_set_err(err, "upstream %s: GET %s: the answer is not a DER CRL", vault_up_name(v), path);
        goto out;
    }
    if ((*der = malloc(rsp.body_len)) == NULL) {
        rc = GW_ERR_NOMEM;
        goto out;
    }
    memcpy(*der, rsp.body, rsp.body_len);
    *len = rsp.body_len;
    rc = 0;
out:
    X509_CRL_free(crl);
    gw_http_response_cleanup(&rsp);
    return rc;
}

/* GET roles/<name> (docs/design.md U1.7). Worker. */
static int vault_role_policy(struct gw_upstream *up, const char *role, struct gw_role_policy *out, char *err)
{
    struct vault *v = gw_upstream_get0_impl(up);
    char path[GW_MAX_PATH_LEN], why[GW_ERR_LEN];
    struct gw_http_response rsp;
    struct attempts a = vault_attempts_start(v);
    long status = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!safe_segment(role)) {
        vault_set_err(err, "upstream role %.64s is not a plain name", role != NULL ? role : "(null)");
        return GW_ERR_INVAL;
    }
    snprintf(path, sizeof(path), "/v1/%s/roles/%s", v->mount, role);
    if ((rc = simple_call(v, "GET", path, NULL, &rsp, &status, &a, err)) != 0)
        goto out;
    if ((rc = gw_vault_parse_role(rsp.body, rsp.body_len, a.tok, out, why)) == GW_ERR_UPSTREAM)
        rc = refused(v, "GET", path, why, err);
    gw_http_response_cleanup(&rsp);
out:
    vault_attempts_cleanup(&a);
    return rc;
}

/*
 * GET cert/<serial> (docs/design.md U1.6): its revocation time into |c| and the certificate into *x
 * (an RA's rr: the caller checks issuer and names before anything is revoked). With |want|, the
 * answer must be that certificate: a revocation time of another says nothing about it (Vault answers
 * cert/ca, the colon hex of serial 0xca, with its CA certificate). Worker.
 */
static int read_cert(struct vault *v, const char *serial, const X509 *want, struct gw_vault_cert *c, X509 **x,
                     char *err)
{
    char path[GW_MAX_PATH_LEN], why[GW_ERR_LEN];
    struct gw_http_response rsp;
    struct attempts a = vault_attempts_start(v);
    long status = 0;
    int rc;

    snprintf(path, sizeof(path), "/v1/%s/cert/%s", v->mount, serial);
    rc = simple_call(v, "GET", path, NULL, &rsp, &status, &a, err);
    vault_attempts_cleanup(&a); /* its answer's strings reach no reason (gw_vault_parse_cert) */
    if (rc != 0) {
        if (rc == GW_ERR_NOT_FOUND)
            vault_set_err(err, "Vault does not know certificate %s", serial);
        return rc;
    }
    rc = gw_vault_parse_cert_x509(rsp.body, rsp.body_len, c, x, why);
    if (rc == 0 && want != NULL && X509_cmp(*x, want) != 0) {
        snprintf(why, sizeof(why), "data.certificate is not the certificate asked about");
        X509_free(*x);
        *x = NULL;
        rc = GW_ERR_UPSTREAM;
    }
    if (rc == GW_ERR_UPSTREAM)
        rc = refused(v, "GET", path, why, err);
    gw_http_response_cleanup(&rsp);
    return rc;
}

/* Revoked when revocation_time != 0. Worker. */
static int vault_cert_status(struct gw_upstream *up, const X509 *cert, int *revoked, char *err)
{
    char serial[GW_VAULT_SERIAL_LEN];
    struct gw_vault_cert c;
    X509 *got = NULL;
    int rc;

    *revoked = 0;
    if ((rc = cert_serial(cert, serial, sizeof(serial), err)) == 0 &&
        (rc = read_cert(gw_upstream_get0_impl(up), serial, cert, &c, &got, err)) == 0)
        *revoked = c.revocation_time != 0;
    X509_free(got);
    return rc;
}

/* The certificate of that serial in this mount, whichever issuer signed it. Worker. */
static int vault_cert_by_serial(struct gw_upstream *up, const ASN1_INTEGER *serial_int, X509 **cert,
                                char *err)
{
    char serial[GW_VAULT_SERIAL_LEN];
    int rc;

    if ((rc = serial_text(serial_int, serial, err)) != 0)
        return rc;
    return read_cert(gw_upstream_get0_impl(up), serial, NULL, NULL, cert, err);
}

/* ---- life cycle ---- */

static void vault_free(struct vault *v)
{
    if (v == NULL)
        return;
    gw_http_client_free(v->http);
    vault_free_token(v->token);
    pthread_cond_destroy(&v->cond);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

static int vault_init(struct gw_upstream *up, const _Atomic uint64_t *end, char *err)
{
    const struct gw_upstream_conf *conf = gw_upstream_get0_conf(up);
    const struct gw_vault_conf *vc = conf->impl;
    struct vault *v;
    int rc = GW_ERR_INVAL;

    (void)end; /* nothing it does as it starts waits for its upstream */
    if ((v = calloc(1, sizeof(*v))) == NULL) {
        vault_set_err(err, "upstream %s: out of memory", conf->name);
        return GW_ERR_NOMEM;
    }
    pthread_mutex_init(&v->lock, NULL);
    /* a login is waited for until gw_now_ms deadlines */
    if (gw_cond_init_monotonic(&v->cond) != 0) {
        pthread_mutex_destroy(&v->lock);
        free(v);
        vault_set_err(err, "upstream %s: out of memory", conf->name);
        return GW_ERR_NOMEM;
    }
    v->conf = conf;
    v->vc = vc;
    v->mount = vc->mount != NULL ? vc->mount : "pki";
    v->timeout_ms = conf->timeout_ms != 0 ? conf->timeout_ms : GW_DEFAULT_UPSTREAM_TIMEOUT_MS;
    if (!safe_mount(v->mount)) {
        vault_set_err(err, "upstream %s: mount %.64s is not a plain path", conf->name, v->mount);
        goto fail;
    }
    if (vc->auth_cert_mount != NULL && !safe_segment(vc->auth_cert_mount)) {
        vault_set_err(err, "upstream %s: auth cert mount %.64s is not a plain name", conf->name,
                      vc->auth_cert_mount);
        goto fail;
    }
    /* its own class: a token file removed since the load is not written again yet, the system's
       (gw_vault_conf_check); one there but refused is the configuration's */
    if (vc->auth_cert_mount == NULL && vc->token_file != NULL &&
        (rc = vault_read_token_file(vc->token_file, &v->token, err)) != 0)
        goto fail;
    if ((v->http = gw_http_client_new(conf->name, &vc->http, conf->timeout_ms, GW_HTTP_SECRETS, &rc, err)) ==
        NULL)
        goto fail;
    gw_upstream_set0_impl(up, v);
    return 0;
fail:
    vault_free(v);
    return rc;
}

static void vault_cleanup(struct gw_upstream *up)
{
    vault_free(gw_upstream_get0_impl(up));
    gw_upstream_set0_impl(up, NULL);
}

const struct gw_upstream_ops gw_upstream_vault_ops = {
    .dialect = "vault",
    .caps = GW_UP_SIGN_CSR | GW_UP_REVOKE | GW_UP_ROLE_POLICY | GW_UP_CERT_STATUS | GW_UP_CRL |
            GW_UP_CERT_LOOKUP | GW_UP_ISSUER_CRLS | GW_UP_CN_IN_SANS,
    .role_keys = GW_ROLE_KEY_UPSTREAM_ROLE | GW_ROLE_KEY_SIGN | GW_ROLE_KEY_ISSUER_REF |
                 GW_ROLE_KEY_EXCLUDE_CN | GW_ROLE_KEY_CRMF | GW_ROLE_KEY_DELEGATE,
    .conf_size = sizeof(struct gw_vault_conf),
    .conf_def = &gw_vault_conf_def,
    .http = GW_UPSTREAM_HTTP_API | GW_UPSTREAM_HTTP_CERT,
    .conf_check = gw_vault_conf_check,
    .conf_free = gw_vault_conf_free,
    .conf_access = gw_vault_conf_access,
    .init = vault_init,
    .cleanup = vault_cleanup,
    .sign = vault_sign,
    .revoke_serial = vault_revoke_serial,
    .crl = vault_crl,
    .probe = vault_probe,
    .role_policy = vault_role_policy,
    .cert_status = vault_cert_status,
    .cert_by_serial = vault_cert_by_serial,
};
