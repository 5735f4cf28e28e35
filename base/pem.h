/*
 * PEM files named by the configuration. Each loader reports a failure through the configuration
 * context (file, JSON path |path|, reason) and returns 0 or a negative gw_err. Encrypted keys are
 * refused rather than prompted for.
 */
#ifndef GW_BASE_PEM_H
#define GW_BASE_PEM_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "base/conf.h"

/* Every PEM certificate in |file| (at least one) into a new stack; PEM blocks of other kinds are skipped. */
int gw_pem_load_certs(struct gw_conf_ctx *pc, const char *path, const char *file, STACK_OF(X509) **out);

/*
 * gw_pem_load_certs for a file of certificates alone, such as a bundle of trust anchors: a PEM block
 * of another kind (a key, a CRL, a "TRUSTED CERTIFICATE") is refused, naming it, rather than skipped.
 */
int gw_pem_load_cert_bundle(struct gw_conf_ctx *pc, const char *path, const char *file, STACK_OF(X509) **out);

/* The first certificate of |file| (a leaf followed by its chain is fine). */
int gw_pem_load_cert(struct gw_conf_ctx *pc, const char *path, const char *file, X509 **out);

/*
 * What a key of the configuration signs, which decides how its load tries it (gw_pem_load_key) and
 * how it must sign (gw_pem_key_signs).
 */
enum gw_pem_key_use {
    /* TLS handshakes: for RSA PKCS#1 v1.5 or else PSS (a token may allow a key only that; TLS 1.3
     * signs with PSS) */
    GW_PEM_KEY_TLS,
    /* certificates and CRLs (X509_sign): in the key's default scheme, for RSA PKCS#1 v1.5 */
    GW_PEM_KEY_CERTS,
    /* CMP protection: as GW_PEM_KEY_CERTS (OpenSSL 3.0 protects with sha256WithRSAEncryption, never
     * PSS), and with a key of a type it has a protection algorithm for */
    GW_PEM_KEY_CMP,
};

/*
 * The private key in |file| (PEM or DER, PKCS#8 or traditional; in PEM the first private key block,
 * other blocks passed over), or in a token when |file| is a PKCS#11 URI. A key file is a secret: opened by
 * gw_conf_open_secret (refused unread when others may read or write it) and read from that descriptor. An
 * encrypted one needs |passfile|, a file holding its passphrase (one line; never logged; a secret too);
 * without it an encrypted key is refused rather than prompted for. Errors name "<key>_passphrase_file". A key
 * for |use| GW_PEM_KEY_CMP of a type OpenSSL 3.0's CMP cannot protect with (Ed25519, Ed448, RSA-PSS) is
 * refused; a key in a token makes a test signature as |use| signs (gw_pem_key_signs), or is refused.
 */
int gw_pem_load_key(struct gw_conf_ctx *pc, const char *path, const char *file, const char *passfile,
                    enum gw_pem_key_use use, EVP_PKEY **out);

/*
 * Whether |key| makes a signature as |use| makes one: SHA-256 (none for EdDSA), and for RSA
 * PKCS#1 v1.5, or for GW_PEM_KEY_TLS that or else PSS. A key in a token that went away since it
 * loaded, or one the token does not let sign, fails only when asked to sign. If not, OpenSSL's
 * reason in |why|. Empties the error queue before and after: the reason is this signature's own.
 */
bool gw_pem_key_signs(EVP_PKEY *key, enum gw_pem_key_use use, char *why, size_t cap);

/*
 * Loads |cert_file| and |key_file| (given at |path|.cert/.key; |passfile| and |use| as gw_pem_load_key) and
 * checks they are a pair: the first certificate of |cert_file| into |cert|, the ones after it (its
 * chain) into |rest| unless that is NULL. What was loaded is left for the caller to free, on failure too.
 */
int gw_pem_load_pair(struct gw_conf_ctx *pc, const char *path, const char *cert_file, const char *key_file,
                     const char *passfile, enum gw_pem_key_use use, X509 **cert, STACK_OF(X509) **rest,
                     EVP_PKEY **key);

/* An optional chain file (|path|.chain): loaded when given, else an empty stack. */
int gw_pem_load_chain(struct gw_conf_ctx *pc, const char *path, const char *file, STACK_OF(X509) **out);

/* Every PEM CRL in |file| (at least one) into a new stack. */
int gw_pem_load_crls(struct gw_conf_ctx *pc, const char *path, const char *file, STACK_OF(X509_CRL) **out);

/*
 * A new store with |certs| as its trust anchors (each up-referenced), refusing malformed
 * certificates in chains (X509_V_FLAG_X509_STRICT); NULL on failure.
 */
X509_STORE *gw_pem_anchor_store(const STACK_OF(X509) *certs);

/*
 * Every certificate of |file| (at least one) as the trust anchors of a new store that refuses
 * malformed certificates (X509_V_FLAG_X509_STRICT); the certificates themselves into |anchors|
 * unless it is NULL.
 */
int gw_pem_load_anchors(struct gw_conf_ctx *pc, const char *path, const char *file, X509_STORE **store,
                        STACK_OF(X509) **anchors);

#endif
