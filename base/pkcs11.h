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
 * gw_pkcs11_load_key loads the private key |uri| names into *|out|, logged in with |pin| (NUL-terminated;
 * NULL is refused before the token is asked: libp11 would log in with the PIN of an earlier load, another
 * token's, or ask for one). Nothing is ever prompted for, nor written to stderr. The module is the
 * process's once a key loaded from it; one that fails to load, or loads no key, is not. Signing with it
 * happens in the token. 0, or an error with a one-line reason in |err| (|cap| bytes) and *|out| NULL:
 * GW_ERR_INVAL where the configuration is at fault and no retry mends it (a URI refused, no PIN, a PIN the
 * token refused, which it says: "PIN incorrect", "PIN locked"; a second module); GW_ERR_UNAVAILABLE where
 * the system may lack at this moment what another try finds (a module that will not load, no token of
 * that label, USB not enumerated or a network HSM not reachable yet, no such key in it: a try with the
 * right PIN spends none of the token's tries); GW_ERR_NOMEM. Any thread.
 */
int gw_pkcs11_load_key(const char *uri, const char *pin, EVP_PKEY **out, char *err, size_t cap);

#endif
