/*
 * PEM files named by the configuration: certificates, chains, CRLs and private keys (base/pem.h).
 */
#include "base/pem.h"
#include "base/err.h"
#include "base/pkcs11.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_dispatch.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

/* Whether PEM block |name| is what load_stack reads: a certificate, or a CRL when |crl|. */
static bool wanted(const char *name, bool crl)
{
    if (crl)
        return strcmp(name, PEM_STRING_X509_CRL) == 0;
    return strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0;
}

/*
 * Decodes a wanted PEM block onto |certs| or |crls|: 0, GW_ERR_NOMEM, or GW_ERR_INVAL when it does
 * not decode (an encrypted one among them: there is no passphrase to give for a certificate or CRL).
 */
static int push_block(const char *header, const unsigned char *der, long len, STACK_OF(X509) *certs,
                      STACK_OF(X509_CRL) *crls)
{
    EVP_CIPHER_INFO cipher;
    X509_CRL *crl = NULL;
    X509 *x = NULL;

    if (PEM_get_EVP_CIPHER_INFO((char *)header, &cipher) != 1 || cipher.cipher != NULL)
        return GW_ERR_INVAL;
    if (crls != NULL ? (crl = d2i_X509_CRL(NULL, &der, len)) == NULL
                     : (x = d2i_X509(NULL, &der, len)) == NULL)
        return GW_ERR_INVAL;
    if (crls != NULL ? sk_X509_CRL_push(crls, crl) != 0 : sk_X509_push(certs, x) != 0)
        return 0;
    X509_CRL_free(crl);
    X509_free(x);
    return GW_ERR_NOMEM;
}

/*
 * Every PEM certificate (|crls| NULL) or every PEM CRL of |file|, at least one, into a new stack; a
 * PEM block of another kind is refused when |only|, else skipped. The one reader behind
 * gw_pem_load_certs, gw_pem_load_cert_bundle and gw_pem_load_crls.
 */
static int load_stack(struct gw_conf_ctx *pc, const char *path, const char *file, STACK_OF(X509) **certs,
                      STACK_OF(X509_CRL) **crls, bool only)
{
    const char *what = crls != NULL ? "CRL" : "certificate";
    char *name = NULL, *header = NULL, shown[GW_ERR_LEN];
    unsigned char *der = NULL;
    BIO *bio = NULL;
    bool refused = false;
    unsigned long e;
    long len;
    int i, n = 0, rc = GW_ERR_NOMEM;

    if ((bio = gw_conf_open(pc, path, file)) == NULL)
        return GW_ERR_INVAL;
    gw_conf_show_file(file, shown, sizeof(shown));
    if (crls != NULL ? (*crls = sk_X509_CRL_new_null()) == NULL : (*certs = sk_X509_new_null()) == NULL)
        goto out;
    /* PEM_FLAG_SECURE: OpenSSL's line buffer is wiped when freed, and a key's block goes over it */
    for (i = 1, rc = 0; rc == 0 && PEM_read_bio_ex(bio, &name, &header, &der, &len,
                                                   PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE) == 1;
         i++) {
        if (wanted(name, crls != NULL)) {
            n++;
            rc = push_block(header, der, len, crls != NULL ? NULL : *certs, crls != NULL ? *crls : NULL);
        } else if (only) {
            rc =
                gw_conf_fail(pc, path, "PEM block %d of \"%s\" is a \"%.32s\", not a %s: keep only %ss in it",
                             i, shown, name, what, what);
            refused = true;
        }
        OPENSSL_secure_free(name);
        OPENSSL_secure_free(header);
        OPENSSL_secure_clear_free(der, (size_t)len); /* a block of another kind may hold a private key */
    }
    /* the end of the file is where no block starts: any other error is a damaged block */
    e = ERR_peek_last_error();
    if (rc == 0 && (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE))
        rc = GW_ERR_INVAL;
    if (rc == GW_ERR_INVAL && !refused)
        gw_conf_fail(pc, path, "cannot parse a PEM %s in \"%s\"", what, shown);
    else if (rc == 0 && n == 0)
        rc = gw_conf_fail(pc, path, "no PEM %s in \"%s\"", what, shown);
    ERR_clear_error();
out:
    BIO_free(bio);
    if (rc != 0 && crls != NULL) {
        sk_X509_CRL_pop_free(*crls, X509_CRL_free);
        *crls = NULL;
    } else if (rc != 0 && certs != NULL) {
        sk_X509_pop_free(*certs, X509_free);
        *certs = NULL;
    }
    return rc;
}

int gw_pem_load_certs(struct gw_conf_ctx *pc, const char *path, const char *file, STACK_OF(X509) **out)
{
    *out = NULL;
    return load_stack(pc, path, file, out, NULL, false);
}

int gw_pem_load_cert_bundle(struct gw_conf_ctx *pc, const char *path, const char *file, STACK_OF(X509) **out)
{
    *out = NULL;
    return load_stack(pc, path, file, out, NULL, true);
}

/* The first certificate of |file| into |out|, and those after it into |rest| unless it is NULL. */
static int load_leaf(struct gw_conf_ctx *pc, const char *path, const char *file, X509 **out,
                     STACK_OF(X509) **rest)
{
    STACK_OF(X509) *sk = NULL;

    *out = NULL;
    if (rest != NULL)
        *rest = NULL;
    if (gw_pem_load_certs(pc, path, file, &sk) != 0)
        return GW_ERR_INVAL;
    *out = sk_X509_shift(sk);
    if (rest != NULL)
        *rest = sk;
    else
        sk_X509_pop_free(sk, X509_free);
    return 0;
}

int gw_pem_load_cert(struct gw_conf_ctx *pc, const char *path, const char *file, X509 **out)
{
    return load_leaf(pc, path, file, out, NULL);
}

/* The passphrase of an encrypted key, handed to OpenSSL's decoders; never anything else. */
struct passphrase {
    const unsigned char *p;
    size_t len;
};

static int give_passphrase(char *buf, int size, int rwflag, void *u)
{
    const struct passphrase *pp = u;

    (void)rwflag;
    if (pp == NULL || pp->p == NULL || pp->len > (size_t)size)
        return -1; /* no passphrase configured: an encrypted key is refused, never prompted for */
    memcpy(buf, pp->p, pp->len);
    return (int)pp->len;
}

/* Whether PEM block |name| holds a private key: PKCS#8, encrypted or not, or a type's own ("EC ..."). */
static bool is_key_block(const char *name)
{
    size_t len = strlen(name), tail = strlen(PEM_STRING_PKCS8INF);

    return len >= tail && strcmp(name + len - tail, PEM_STRING_PKCS8INF) == 0;
}

/* The private key of DER |der| (PKCS#8, encrypted with |pp| or not, or a type's own), or NULL. */
static EVP_PKEY *decode_key(const unsigned char *der, size_t len, struct passphrase *pp)
{
    OSSL_DECODER_CTX *dctx;
    EVP_PKEY *key = NULL;

    dctx =
        OSSL_DECODER_CTX_new_for_pkey(&key, "DER", NULL, NULL, OSSL_KEYMGMT_SELECT_PRIVATE_KEY, NULL, NULL);
    if (dctx != NULL && OSSL_DECODER_CTX_set_pem_password_cb(dctx, give_passphrase, pp) == 1)
        OSSL_DECODER_from_data(dctx, &der, &len);
    OSSL_DECODER_CTX_free(dctx);
    return key;
}

/* The private key of a PEM block of |header| over |der|, which is decrypted in place when it says so. */
static EVP_PKEY *block_key(const char *header, unsigned char *der, long len, struct passphrase *pp)
{
    EVP_CIPHER_INFO cipher;

    if (PEM_get_EVP_CIPHER_INFO((char *)header, &cipher) != 1 ||
        PEM_do_header(&cipher, der, &len, give_passphrase, pp) != 1)
        return NULL;
    return decode_key(der, (size_t)len, pp);
}

/*
 * The first private key of key file |bio| (PEM, PKCS#8 or traditional, encrypted or not; or DER), or
 * NULL; frees |bio|, which holds the file whole (gw_conf_read_fd). Its PEM blocks pass through OpenSSL's
 * line buffer in its wiped mode, and each block's DER is wiped when freed: OpenSSL 3.0's file store
 * reads a key's PEM text through a line buffer it frees as it is.
 */
static EVP_PKEY *read_key(BIO *bio, struct passphrase *pp)
{
    char *name = NULL, *header = NULL, *all = NULL;
    unsigned char *der = NULL;
    EVP_PKEY *key = NULL;
    long len, total = BIO_get_mem_data(bio, &all);
    bool pem = false, done = false;

    while (!done &&
           PEM_read_bio_ex(bio, &name, &header, &der, &len, PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE) == 1) {
        pem = true;
        /* the first key decides, as other blocks (a certificate, EC PARAMETERS) are passed over */
        if ((done = is_key_block(name)))
            key = block_key(header, der, len, pp);
        OPENSSL_secure_free(name);
        OPENSSL_secure_free(header);
        OPENSSL_secure_clear_free(der, (size_t)len);
    }
    if (!pem && total > 0)
        key = decode_key((const unsigned char *)all, (size_t)total, pp);
    BIO_free(bio);
    return key;
}

/* One signature of a probe with |key|, in RSA |padding| where not 0; OpenSSL's reason in |why| if not. */
static bool signs_with(EVP_PKEY *key, int padding, char *why, size_t cap)
{
    static const unsigned char probe[] = "cmpgw: can this key sign?";
    bool eddsa = EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char *sig = NULL;
    size_t len = 0;
    bool ok = md != NULL && EVP_DigestSignInit(md, &pctx, eddsa ? NULL : EVP_sha256(), NULL, key) == 1 &&
              (padding == 0 || EVP_PKEY_CTX_set_rsa_padding(pctx, padding) == 1) &&
              EVP_DigestSign(md, NULL, &len, probe, sizeof(probe)) == 1 &&
              (sig = OPENSSL_malloc(len)) != NULL && EVP_DigestSign(md, sig, &len, probe, sizeof(probe)) == 1;
    const char *reason = ERR_reason_error_string(ERR_peek_error());

    if (!ok)
        snprintf(why, cap, "%s", reason != NULL ? reason : "no reason given");
    OPENSSL_free(sig);
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

bool gw_pem_key_signs(EVP_PKEY *key, enum gw_pem_key_use use, char *why, size_t cap)
{
    ERR_clear_error(); /* an error an earlier call left would pass for this signature's reason */
    if (signs_with(key, 0, why, cap))
        return true;
    return use == GW_PEM_KEY_TLS && EVP_PKEY_is_a(key, "RSA") &&
           signs_with(key, RSA_PKCS1_PSS_PADDING, why, cap);
}

/*
 * Whether OpenSSL 3.0's CMP can protect a message with |key|: it names the protection's algorithm by
 * the key's type and the context's digest, SHA-256, and has none for Ed25519, Ed448 or RSA-PSS keys,
 * whose every answer would fail to be signed (while a test signature with them succeeds).
 */
static bool cmp_can_protect(EVP_PKEY *key)
{
    int sig_nid;

    return OBJ_find_sigid_by_algs(&sig_nid, NID_sha256, EVP_PKEY_get_id(key)) == 1;
}

/* The reason a key in a token that signs, but not as |use| signs, is refused. */
static int refuse_pss_only(struct gw_conf_ctx *pc, const char *path, const char *uri, enum gw_pem_key_use use)
{
    char shown[GW_ERR_LEN];

    return gw_conf_fail(pc, path,
                        "the key %s signs in its token with RSA-PSS only, and %s with PKCS#1 v1.5: let the "
                        "token sign with it by CKM_RSA_PKCS (or CKM_SHA256_RSA_PKCS), or give another key",
                        gw_conf_show_file(uri, shown, sizeof(shown)),
                        use == GW_PEM_KEY_CMP ? "OpenSSL 3.0 protects CMP messages"
                                              : "certificates and CRLs are signed");
}

/*
 * A key in a token named without a PIN file, refused before the token is asked (base/pkcs11.h): libp11
 * would log in with the PIN of the key loaded before it, another token's, or ask for one on the console.
 */
static int refuse_no_pin(struct gw_conf_ctx *pc, const char *path, const char *uri)
{
    const char *key = strrchr(path, '.') != NULL ? strrchr(path, '.') + 1 : path;
    char shown[GW_ERR_LEN];

    gw_conf_show_file(uri, shown, sizeof(shown));
    return gw_conf_fail(pc, path,
                        "the key %s is in a PKCS#11 token: give its user PIN in \"%s_passphrase_file\"",
                        shown, key);
}

/* A key in a PKCS#11 token, its PIN the passphrase (base/pkcs11.h), that signs there as |use| signs. */
static int token_key(struct gw_conf_ctx *pc, const char *path, const char *uri, const struct passphrase *pp,
                     enum gw_pem_key_use use, EVP_PKEY **out)
{
    char pin[GW_MAX_PASSPHRASE_LEN + 1], why[GW_ERR_LEN], shown[GW_ERR_LEN];
    int rc;

    if (gw_pkcs11_check_uri(uri, why, sizeof(why)) != 0)
        return gw_conf_fail(pc, path, "%s", why);
    if (pp->p == NULL)
        return refuse_no_pin(pc, path, uri);
    memcpy(pin, pp->p, pp->len);
    pin[pp->len] = '\0';
    rc = gw_pkcs11_load_key(uri, pin, out, why, sizeof(why));
    OPENSSL_cleanse(pin, sizeof(pin));
    if (rc != 0) /* of its class: a token not present yet is not the file's (struct gw_conf_ctx) */
        return gw_conf_fail_as(pc, rc, path, "%s", why);
    if (gw_pem_key_signs(*out, use, why, sizeof(why)))
        return 0;
    /* the default scheme failed above: whether it signs with PSS alone says which reason */
    if (use != GW_PEM_KEY_TLS && EVP_PKEY_is_a(*out, "RSA") &&
        signs_with(*out, RSA_PKCS1_PSS_PADDING, NULL, 0))
        rc = refuse_pss_only(pc, path, uri, use);
    else /* a token gone since its keys were listed: another try may find it back */
        rc = gw_conf_fail_as(pc, GW_ERR_UNAVAILABLE, path,
                             "the key %s cannot sign in its token (gone, or lost and restored: restart; or "
                             "not allowed to sign): %s",
                             gw_conf_show_file(uri, shown, sizeof(shown)), why);
    EVP_PKEY_free(*out);
    *out = NULL;
    return rc;
}

/* A key for |use| GW_PEM_KEY_CMP must be one OpenSSL 3.0's CMP protects with (cmp_can_protect). */
static int check_use(struct gw_conf_ctx *pc, const char *path, enum gw_pem_key_use use, EVP_PKEY **key)
{
    if (use != GW_PEM_KEY_CMP || cmp_can_protect(*key))
        return 0;
    gw_conf_fail(pc, path, "OpenSSL 3.0 cannot protect CMP messages with a key of this type (%s)",
                 EVP_PKEY_get0_type_name(*key));
    EVP_PKEY_free(*key);
    *key = NULL;
    return GW_ERR_INVAL;
}

/* The key file |file|, read whole, holds no key that parses (with the passphrase of |passfile|, if any). */
static int refuse_key(struct gw_conf_ctx *pc, const char *path, const char *file, const char *passfile)
{
    char shown[GW_ERR_LEN], pass_shown[GW_ERR_LEN];

    gw_conf_show_file(file, shown, sizeof(shown));
    if (passfile != NULL)
        return gw_conf_fail(pc, path, "cannot read the private key in \"%s\" with the passphrase of \"%s\"",
                            shown, gw_conf_show_file(passfile, pass_shown, sizeof(pass_shown)));
    return gw_conf_fail(pc, path,
                        "cannot parse an unencrypted PEM private key in \"%s\" (an encrypted key needs "
                        "\"%s_passphrase_file\")",
                        shown, strrchr(path, '.') != NULL ? strrchr(path, '.') + 1 : path);
}

int gw_pem_load_key(struct gw_conf_ctx *pc, const char *path, const char *file, const char *passfile,
                    enum gw_pem_key_use use, EVP_PKEY **out)
{
    struct passphrase pp = {NULL, 0};
    unsigned char *secret = NULL;
    char ppath[GW_CONF_PATH_LEN];
    BIO *bio;
    int fd = -1, rc;

    *out = NULL;
    /* a key file is a secret: refused unread when others may read it (gw_conf_open_secret) */
    if (!gw_pkcs11_is_uri(file) && (fd = gw_conf_open_secret(pc, path, file, false)) < 0)
        return GW_ERR_INVAL;
    snprintf(ppath, sizeof(ppath), "%s_passphrase_file", path);
    if (passfile != NULL &&
        gw_conf_read_secret_sized(pc, ppath, passfile, 1, GW_MAX_PASSPHRASE_LEN, &secret, &pp.len) != 0) {
        if (fd >= 0)
            close(fd);
        return GW_ERR_INVAL;
    }
    pp.p = secret;
    if (gw_pkcs11_is_uri(file)) {
        rc = token_key(pc, path, file, &pp, use, out);
        OPENSSL_clear_free(secret, GW_MAX_PASSPHRASE_LEN + 3);
        return rc != 0 ? rc : check_use(pc, path, use, out);
    }
    if ((bio = gw_conf_read_fd(pc, path, file, fd)) == NULL) {
        OPENSSL_clear_free(secret, GW_MAX_PASSPHRASE_LEN + 3);
        return GW_ERR_INVAL;
    }
    *out = read_key(bio, &pp);
    OPENSSL_clear_free(secret, GW_MAX_PASSPHRASE_LEN + 3);
    ERR_clear_error();
    return *out != NULL ? check_use(pc, path, use, out) : refuse_key(pc, path, file, passfile);
}

int gw_pem_load_pair(struct gw_conf_ctx *pc, const char *path, const char *cert_file, const char *key_file,
                     const char *passfile, enum gw_pem_key_use use, X509 **cert, STACK_OF(X509) **rest,
                     EVP_PKEY **key)
{
    char cpath[GW_CONF_PATH_LEN], kpath[GW_CONF_PATH_LEN], key_shown[GW_ERR_LEN], cert_shown[GW_ERR_LEN];

    gw_conf_join_key(cpath, path, "cert");
    gw_conf_join_key(kpath, path, "key");
    if (load_leaf(pc, cpath, cert_file, cert, rest) != 0 ||
        gw_pem_load_key(pc, kpath, key_file, passfile, use, key) != 0)
        return GW_ERR_INVAL;
    if (X509_check_private_key(*cert, *key) != 1)
        return gw_conf_fail(pc, kpath, "key in \"%s\" does not match the certificate in \"%s\"",
                            gw_conf_show_file(key_file, key_shown, sizeof(key_shown)),
                            gw_conf_show_file(cert_file, cert_shown, sizeof(cert_shown)));
    return 0;
}

int gw_pem_load_chain(struct gw_conf_ctx *pc, const char *path, const char *file, STACK_OF(X509) **out)
{
    char cpath[GW_CONF_PATH_LEN];

    gw_conf_join_key(cpath, path, "chain");
    if (file != NULL)
        return gw_pem_load_certs(pc, cpath, file, out);
    return (*out = sk_X509_new_null()) != NULL ? 0 : GW_ERR_NOMEM;
}

int gw_pem_load_crls(struct gw_conf_ctx *pc, const char *path, const char *file, STACK_OF(X509_CRL) **out)
{
    *out = NULL;
    return load_stack(pc, path, file, NULL, out, false);
}

X509_STORE *gw_pem_anchor_store(const STACK_OF(X509) *certs)
{
    X509_STORE *store = X509_STORE_new();

    if (store == NULL)
        return NULL;
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(certs, i)) != 1)
            goto err;
    /* malformed certificates in chains are refused rather than guessed at */
    if (X509_STORE_set_flags(store, X509_V_FLAG_X509_STRICT) == 1)
        return store;
err:
    X509_STORE_free(store);
    return NULL;
}

int gw_pem_load_anchors(struct gw_conf_ctx *pc, const char *path, const char *file, X509_STORE **store,
                        STACK_OF(X509) **anchors)
{
    STACK_OF(X509) *certs = NULL;
    char shown[GW_ERR_LEN];
    int rc = GW_ERR_CRYPTO;

    *store = NULL;
    if (gw_pem_load_certs(pc, path, file, &certs) != 0)
        return GW_ERR_INVAL;
    if ((*store = gw_pem_anchor_store(certs)) != NULL)
        rc = 0;
    else
        gw_conf_fail(pc, path, "cannot make a trust store of \"%s\"",
                     gw_conf_show_file(file, shown, sizeof(shown)));
    if (rc == 0 && anchors != NULL)
        *anchors = certs;
    else
        sk_X509_pop_free(certs, X509_free);
    return rc;
}
