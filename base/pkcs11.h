/*
 * Private keys in a PKCS#11 token, named by an RFC 7512 URI wherever a configuration key names a
 * private key file, e.g.
 *   "pkcs11:token=cmpgw;object=signer;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so"
 * The "module-path" query attribute chooses the module (one per process; without it libp11's
 * default, p11-kit's proxy); the PIN comes from the key's passphrase file, never from the URI.
 */
#ifndef GW_PKCS11_H
#define GW_PKCS11_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/evp.h>

#define GW_PKCS11_MAX_URI 1024

/* Whether |s| is a PKCS#11 URI rather than a file name. */
bool gw_pkcs11_is_uri(const char *s);

/*
 * Whether |uri| may be handed to libp11: not too long, and naming no PIN ("pin-value" or "pin-source" in
 * its query or among its path attributes, where libp11 takes one too). 0, or GW_ERR_INVAL with the reason
 * in |err| (|cap| bytes).
 */
int gw_pkcs11_check_uri(const char *uri, char *err, size_t cap);

/*
 * gw_pkcs11_load_key returns the private key |uri| names, logged in with |pin| (NUL-terminated; NULL is
 * refused before the token is asked: libp11 would log in with the PIN of an earlier load, another
 * token's, or ask for one). Nothing is ever prompted for, nor written to stderr. The module is the
 * process's once a key loaded from it; one that fails to load, or loads no key, is not. Signing with it
 * happens in the token. NULL with a one-line reason in |err| (|cap| bytes): a PIN the token refused
 * says so ("PIN incorrect", "PIN locked"). Any thread.
 */
EVP_PKEY *gw_pkcs11_load_key(const char *uri, const char *pin, char *err, size_t cap);

#endif
