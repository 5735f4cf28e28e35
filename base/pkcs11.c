/*
 * Private keys in a PKCS#11 token (an HSM; SoftHSM in the tests) through libp11's "pkcs11" engine
 * (Debian libengine-pkcs11-openssl). Debian 12's OpenSSL 3.0 has neither a "pkcs11:" OSSL_STORE
 * loader nor a PKCS#11 provider package, so the ENGINE API, deprecated in 3.0, is the way in: this
 * is the only file that uses it, hence the one that asks for the deprecated declarations.
 */
#undef OPENSSL_NO_DEPRECATED /* set for the whole project (CMakeLists.txt); ENGINE is 3.0-deprecated */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "base/pkcs11.h"
#include "base/err.h"
#include "base/limits.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define MODULE_PATH_ATTR "module-path="
#define LOGIN_MAC_LEN 32 /* HMAC-SHA256 of a PIN */

/*
 * A token this process logged in to, and the PIN it did so with. PKCS#11 keeps a login for the whole
 * application, and libp11 logs in only to a token not logged in yet: a later load of a key in it
 * succeeds whatever PIN it is given, the wrong one too, and only a restart would then find the PIN
 * wrong. The PIN is kept as an HMAC-SHA256 under a key of the process's own, not a copy: no guess
 * of it can be tested offline against the value alone.
 */
struct login {
    char path[GW_PKCS11_MAX_URI];     /* the URI it was logged in to through, without its query */
    unsigned char pin[LOGIN_MAC_LEN]; /* HMAC-SHA256 of the PIN under |pin_key| */
};

/* One engine per process, bound to one module: libp11 loads it at ENGINE_init. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ENGINE *engine;
static char engine_module[GW_PKCS11_MAX_URI];
static struct login logins[GW_MAX_PKCS11_TOKENS];
static size_t n_logins;
static unsigned char pin_key[LOGIN_MAC_LEN]; /* drawn at the first login */
static bool pin_key_drawn;

bool gw_pkcs11_is_uri(const char *s)
{
    return s != NULL && strncmp(s, "pkcs11:", 7) == 0;
}

/*
 * Whether |uri| names a PIN in any of its attributes. libp11 splits the URI at every ';', '?' and '&'
 * and logs in with a "pin-value" it finds among the path attributes as well as in the query
 * (RFC 7512 puts it in the query only): both are looked for, so that no PIN sits in a configuration
 * file others may read, nor in the error lines that quote the URI.
 */
static bool names_pin(const char *uri)
{
    for (const char *a = uri + strlen("pkcs11:"); *a != '\0'; a += strcspn(a, ";?&")) {
        a += strspn(a, ";?&");
        if (strncasecmp(a, "pin-value=", 10) == 0 || strncasecmp(a, "pin-source=", 11) == 0)
            return true;
    }
    return false;
}

/* Splits |uri| into what libp11 reads (|path|) and the module it names ("" = libp11's default). */
static int split_uri(const char *uri, char *path, char *module, char *err, size_t cap)
{
    const char *q = strchr(uri, '?');
    size_t n = q != NULL ? (size_t)(q - uri) : strlen(uri);

    module[0] = '\0';
    if (strlen(uri) >= GW_PKCS11_MAX_URI) {
        snprintf(err, cap, "the PKCS#11 URI is longer than %d bytes", GW_PKCS11_MAX_URI - 1);
        return GW_ERR_INVAL;
    }
    if (names_pin(uri)) {
        snprintf(err, cap, "a PIN in the PKCS#11 URI is refused: put it in the key's passphrase file");
        return GW_ERR_INVAL;
    }
    memcpy(path, uri, n);
    path[n] = '\0';
    for (const char *a = q; a != NULL; a = strchr(a + 1, '&')) {
        const char *v = a + 1, *end = strchr(v, '&');
        size_t len = end != NULL ? (size_t)(end - v) : strlen(v);

        if (strncmp(v, MODULE_PATH_ATTR, strlen(MODULE_PATH_ATTR)) == 0) {
            len -= strlen(MODULE_PATH_ATTR);
            memcpy(module, v + strlen(MODULE_PATH_ATTR), len);
            module[len] = '\0';
        }
    }
    return 0;
}

/* The engine, initialised for |module| on first use. Called with |lock| held. */
static ENGINE *engine_for(const char *module, char *err, size_t cap)
{
    ENGINE *e;

    if (engine != NULL) {
        if (strcmp(module, engine_module) == 0)
            return engine;
        snprintf(err, cap, "PKCS#11 module %s: this process already uses %s (one module per process)",
                 module[0] != '\0' ? module : "(default)",
                 engine_module[0] != '\0' ? engine_module : "the default");
        return NULL;
    }
    if ((e = ENGINE_by_id("pkcs11")) == NULL) {
        snprintf(err, cap,
                 "the OpenSSL engine \"pkcs11\" is not installed (Debian: libengine-pkcs11-openssl)");
        return NULL;
    }
    if ((module[0] != '\0' && ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module, 0) != 1) ||
        ENGINE_init(e) != 1) {
        snprintf(err, cap, "PKCS#11 module %s cannot be loaded", module[0] != '\0' ? module : "(default)");
        ENGINE_free(e);
        return NULL;
    }
    ENGINE_free(e); /* the functional reference of ENGINE_init keeps it */
    engine = e;
    snprintf(engine_module, sizeof(engine_module), "%s", module);
    return engine;
}

/* Whether the path attribute at |a| names the object within a token, not the token (RFC 7512 §2.3). */
static bool names_object(const char *a)
{
    return strncmp(a, "object=", 7) == 0 || strncmp(a, "id=", 3) == 0 || strncmp(a, "type=", 5) == 0;
}

/* The value of the attribute at |a| (|n| bytes) percent-decoded (RFC 3986 §2.1), as libp11 reads it, into
 * |out| (|n| bytes at least); its length. */
static size_t value_of(const char *a, size_t n, char *out)
{
    const char *eq = memchr(a, '=', n);
    size_t len = 0;

    for (size_t i = eq != NULL ? (size_t)(eq - a) + 1 : n; i < n; i++) {
        int hi = i + 2 < n && a[i] == '%' ? OPENSSL_hexchar2int((unsigned char)a[i + 1]) : -1;
        int lo = hi >= 0 ? OPENSSL_hexchar2int((unsigned char)a[i + 2]) : -1;

        out[len++] = lo >= 0 ? (char)(hi << 4 | lo) : a[i];
        i += lo >= 0 ? 2 : 0;
    }
    return len;
}

/*
 * Whether the paths |p| and |q| may name one token: no attribute naming a token (RFC 7512 §2.3: token,
 * serial, manufacturer, model...) is given by both with different values. The same token is named in
 * many ways (attributes in another order, one more or fewer, none where it is the only one, a label
 * percent-encoded): each must meet the PIN it was logged in with, or another PIN goes unnoticed until
 * a restart.
 */
static bool same_token(const char *p, const char *q)
{
    static char v[GW_PKCS11_MAX_URI], w[GW_PKCS11_MAX_URI]; /* called with |lock| held */

    for (const char *a = p + strlen("pkcs11:"); *a != '\0'; a += strspn(a, ";")) {
        size_t n = strcspn(a, ";"), name = strcspn(a, "=;");

        for (const char *b = q + strlen("pkcs11:"); !names_object(a) && *b != '\0'; b += strspn(b, ";")) {
            size_t m = strcspn(b, ";"), len;

            if (strcspn(b, "=;") == name && strncmp(a, b, name) == 0 &&
                ((len = value_of(a, n, v)) != value_of(b, m, w) || memcmp(v, w, len) != 0))
                return false;
            b += m;
        }
        a += n;
    }
    return true;
}

/* |pin| as a login records it, into |l|. Called with |lock| held. */
static bool pin_of(const char *pin, struct login *l)
{
    size_t len = 0;

    if (!pin_key_drawn && RAND_priv_bytes(pin_key, sizeof(pin_key)) != 1)
        return false;
    pin_key_drawn = true;
    return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pin_key, sizeof(pin_key), (const unsigned char *)pin,
                     strlen(pin), l->pin, sizeof(l->pin), &len) != NULL &&
           len == sizeof(l->pin);
}

/*
 * The login to the token of |path| with |pin|: 0 when no token |path| may name is logged in to yet
 * (|*first| then says so, and |*l| is what to record once a key loaded) or one was with this PIN, or when no
 * PIN is given (a key of a token logged in to for another key: an upstream's tls_key); else a one-line reason
 * in |err|. Called with |lock| held.
 */
static int check_login(const char *path, const char *pin, struct login *l, bool *first, char *err, size_t cap)
{
    bool named = false;

    *first = false;
    if (pin == NULL)
        return 0;
    if (!pin_of(pin, l)) {
        snprintf(err, cap, "cannot compare the PIN with the one the token was logged in to with");
        return GW_ERR_CRYPTO;
    }
    snprintf(l->path, sizeof(l->path), "%s", path);
    /* a URI that names no token in particular may reach several: the PIN of any of them passes */
    for (size_t i = 0; i < n_logins; i++) {
        if (!same_token(logins[i].path, path))
            continue;
        if (CRYPTO_memcmp(logins[i].pin, l->pin, sizeof(l->pin)) == 0)
            return 0;
        named = true;
    }
    if (named) {
        snprintf(err, cap,
                 "the PIN is not the one this process logged in to the token with; the token stays logged "
                 "in, so another PIN is checked only at a restart (\"cmpgw check\" checks it now)");
        return GW_ERR_INVAL;
    }
    if (n_logins == GW_MAX_PKCS11_TOKENS) {
        snprintf(err, cap, "this process logged in to %d PKCS#11 tokens already: restart it to use another",
                 GW_MAX_PKCS11_TOKENS);
        return GW_ERR_INVAL;
    }
    *first = true;
    return 0;
}

EVP_PKEY *gw_pkcs11_load_key(const char *uri, const char *pin, char *err, size_t cap)
{
    char path[GW_PKCS11_MAX_URI], module[GW_PKCS11_MAX_URI];
    EVP_PKEY *key = NULL;
    struct login l;
    bool first = false;
    ENGINE *e;

    if (split_uri(uri, path, module, err, cap) != 0)
        return NULL;
    pthread_mutex_lock(&lock);
    /* compared before the engine is given it: libp11 keeps the last PIN to log in with again */
    if ((e = engine_for(module, err, cap)) != NULL && check_login(path, pin, &l, &first, err, cap) == 0) {
        if (pin != NULL && ENGINE_ctrl_cmd_string(e, "PIN", pin, 0) != 1)
            snprintf(err, cap, "the PKCS#11 engine refused the PIN");
        else if ((key = ENGINE_load_private_key(e, path, NULL, NULL)) == NULL)
            snprintf(err, cap, "no private key %s in the token (or the PIN is wrong)", path);
        else if (first)
            logins[n_logins++] = l;
    }
    pthread_mutex_unlock(&lock);
    OPENSSL_cleanse(&l, sizeof(l));
    ERR_clear_error();
    return key;
}
