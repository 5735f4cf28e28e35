/*
 * Private keys in a PKCS#11 token (an HSM; SoftHSM in the tests) through libp11's "pkcs11" engine
 * (Debian libengine-pkcs11-openssl). Debian 12's OpenSSL 3.0 has neither a "pkcs11:" OSSL_STORE
 * loader nor a PKCS#11 provider package, so the ENGINE API, deprecated in 3.0, is the way in: this
 * is the only file that uses it, hence the one that asks for the deprecated declarations.
 */
#undef OPENSSL_NO_DEPRECATED /* set for the whole project (CMakeLists.txt); ENGINE is 3.0-deprecated */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "base/pkcs11.h"
#include "base/conf.h"
#include "base/err.h"
#include "base/limits.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <openssl/engine.h>
#include <openssl/err.h>

#define MODULE_PATH_ATTR "module-path="

/* One engine per process, bound to one module: libp11 loads it at ENGINE_init. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ENGINE *engine;
static char engine_module[GW_PKCS11_MAX_URI];

/* A URI's scheme is case-insensitive (RFC 3986 §3.1): "PKCS11:" is one too. */
bool gw_pkcs11_is_uri(const char *s)
{
    return s != NULL && strncasecmp(s, "pkcs11:", 7) == 0;
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
    memcpy(path, "pkcs11:", 7); /* libp11 takes the scheme in any case; one form of it is passed on */
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

/*
 * The engine, initialised for |module| on first use. Called with |lock| held. Names from the configuration
 * are quoted as gw_conf_show_file quotes them, here as everywhere else.
 */
static ENGINE *engine_for(const char *module, char *err, size_t cap)
{
    char shown[GW_ERR_LEN], used[GW_ERR_LEN];
    ENGINE *e;

    gw_conf_show_file(module[0] != '\0' ? module : "(default)", shown, sizeof(shown));
    if (engine != NULL) {
        if (strcmp(module, engine_module) == 0)
            return engine;
        snprintf(
            err, cap, "PKCS#11 module %s: this process already uses %s (one module per process)", shown,
            gw_conf_show_file(engine_module[0] != '\0' ? engine_module : "the default", used, sizeof(used)));
        return NULL;
    }
    if ((e = ENGINE_by_id("pkcs11")) == NULL) {
        snprintf(err, cap,
                 "the OpenSSL engine \"pkcs11\" is not installed (Debian: libengine-pkcs11-openssl)");
        return NULL;
    }
    if ((module[0] != '\0' && ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module, 0) != 1) ||
        ENGINE_init(e) != 1) {
        snprintf(err, cap, "PKCS#11 module %s cannot be loaded", shown);
        ENGINE_free(e);
        return NULL;
    }
    ENGINE_free(e); /* the functional reference of ENGINE_init keeps it */
    engine = e;
    snprintf(engine_module, sizeof(engine_module), "%s", module);
    return engine;
}

EVP_PKEY *gw_pkcs11_load_key(const char *uri, const char *pin, char *err, size_t cap)
{
    char path[GW_PKCS11_MAX_URI], module[GW_PKCS11_MAX_URI], shown[GW_ERR_LEN];
    EVP_PKEY *key = NULL;
    ENGINE *e;

    if (split_uri(uri, path, module, err, cap) != 0)
        return NULL;
    pthread_mutex_lock(&lock);
    if ((e = engine_for(module, err, cap)) != NULL) {
        if (pin != NULL && ENGINE_ctrl_cmd_string(e, "PIN", pin, 0) != 1)
            snprintf(err, cap, "the PKCS#11 engine refused the PIN");
        else if ((key = ENGINE_load_private_key(e, path, NULL, NULL)) == NULL)
            snprintf(err, cap, "no private key %s in the token (or the PIN is wrong)",
                     gw_conf_show_file(path, shown, sizeof(shown)));
    }
    pthread_mutex_unlock(&lock);
    ERR_clear_error();
    return key;
}
