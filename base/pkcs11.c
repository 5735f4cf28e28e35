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

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/ui.h>

#define MODULE_PATH_ATTR "module-path="

/* The PKCS#11 return values (PKCS#11 v2.40 §5.1) libp11 puts on the error queue as reasons of its library
   "PKCS#11 module" when the token refuses a login. */
#define LIBP11_CKR_LIB "PKCS#11 module"
#define CKR_PIN_INCORRECT 0xA0
#define CKR_PIN_LOCKED 0xA4

/*
 * One engine per process, bound to one module: libp11 opens the module at the first key load, not at
 * ENGINE_init, so the module is taken for the process's once a key loaded from it, never before.
 * |libp11| is the engine, |engine| the same once its module is taken; |engine_tried| is the module libp11
 * was last told of ("" = its default) while none is taken.
 */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ENGINE *libp11, *engine;
static char engine_module[GW_PKCS11_MAX_URI];
static char engine_tried[GW_PKCS11_MAX_URI];
static UI_METHOD *no_prompt;

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

int gw_pkcs11_check_uri(const char *uri, char *err, size_t cap)
{
    if (strlen(uri) >= GW_PKCS11_MAX_URI) {
        snprintf(err, cap, "the PKCS#11 URI is longer than %d bytes", GW_PKCS11_MAX_URI - 1);
        return GW_ERR_INVAL;
    }
    if (names_pin(uri)) {
        snprintf(err, cap, "a PIN in the PKCS#11 URI is refused: put it in the key's passphrase file");
        return GW_ERR_INVAL;
    }
    return 0;
}

/* Splits |uri| into what libp11 reads (|path|) and the module it names ("" = libp11's default). */
static int split_uri(const char *uri, char *path, char *module, char *err, size_t cap)
{
    const char *q = strchr(uri, '?');
    size_t n = q != NULL ? (size_t)(q - uri) : strlen(uri);

    module[0] = '\0';
    if (gw_pkcs11_check_uri(uri, err, cap) != 0)
        return GW_ERR_INVAL;
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

/* The reader of |no_prompt|: no PIN is ever typed in, so a PIN libp11 would ask for is refused. */
static int refuse_read(UI *ui, UI_STRING *uis)
{
    (void)ui;
    (void)uis;
    return 0;
}

/*
 * Opens module |module|: its handle, for the caller to close once the key loaded (the module is mapped
 * once), or NULL with dlerror's reason in |why|, less the name, which the caller quotes masked. libp11
 * says only "Unable to load module" of a module it cannot open, and that on stderr.
 */
static void *open_module(const char *module, char *why, size_t cap)
{
    void *handle = dlopen(module, RTLD_LAZY | RTLD_LOCAL); /* as libp11 opens it */
    const char *reason;

    why[0] = '\0';
    if (handle != NULL)
        return handle;
    reason = dlerror();
    if (reason == NULL)
        reason = "no reason given";
    if (strncmp(reason, module, strlen(module)) == 0 && strncmp(reason + strlen(module), ": ", 2) == 0)
        reason += strlen(module) + 2;
    snprintf(why, cap, "%s", reason);
    return NULL;
}

/*
 * The engine told to stay quiet and never prompt: libp11 writes lines of its own to stderr (the JSON
 * log stream), quoting URIs as they are, unless told QUIET; and asks OpenSSL's console UI for a PIN it
 * lacks (a key whose CKA_ALWAYS_AUTHENTICATE asks for it at each signature), which waits on a terminal or
 * an open stdin, with |lock| held. Called with |lock| held.
 */
static int tame(ENGINE *e, char *err, size_t cap)
{
    if (no_prompt == NULL && (no_prompt = UI_create_method("cmpgw: no PIN prompt")) != NULL &&
        UI_method_set_reader(no_prompt, refuse_read) != 0) {
        UI_destroy_method(no_prompt);
        no_prompt = NULL;
    }
    if (no_prompt == NULL) {
        snprintf(err, cap, "out of memory");
        return GW_ERR_NOMEM;
    }
    if (ENGINE_ctrl_cmd_string(e, "QUIET", NULL, 0) != 1 ||
        ENGINE_ctrl(e, ENGINE_CTRL_SET_USER_INTERFACE, 0, no_prompt, NULL) != 1) {
        snprintf(err, cap,
                 "the OpenSSL engine \"pkcs11\" takes neither QUIET nor a user interface (libp11 "
                 "0.4.12 or later does)");
        return GW_ERR_INVAL;
    }
    return 0;
}

/*
 * The engine, initialised for |module|, with a functional reference the caller gives back with
 * ENGINE_finish unless the key it loads is kept (keep_engine). Called with |lock| held. Names from the
 * configuration are quoted as gw_conf_show_file quotes them, here as everywhere else. NULL with the
 * reason in |err| and *|rc| its class (gw_pkcs11_load_key): a second module is the configuration's.
 */
static ENGINE *engine_for(const char *module, int *rc, char *err, size_t cap)
{
    char shown[GW_ERR_LEN], used[GW_ERR_LEN];
    ENGINE *e;

    *rc = GW_ERR_UNAVAILABLE;
    gw_conf_show_file(module[0] != '\0' ? module : "(default)", shown, sizeof(shown));
    if (engine != NULL && strcmp(module, engine_module) == 0) {
        if (ENGINE_init(engine) == 1)
            return engine;
        snprintf(err, cap, "PKCS#11 module %s cannot be used again", shown);
        return NULL;
    }
    *rc = GW_ERR_INVAL;
    if (engine != NULL) {
        snprintf(
            err, cap, "PKCS#11 module %s: this process already uses %s (one module per process)", shown,
            gw_conf_show_file(engine_module[0] != '\0' ? engine_module : "the default", used, sizeof(used)));
        return NULL;
    }
    /* libp11 keeps the last MODULE_PATH, and takes no word for its default again */
    if (module[0] == '\0' && engine_tried[0] != '\0') {
        snprintf(err, cap, "PKCS#11 module (default): give its module-path (this process tried %s before)",
                 gw_conf_show_file(engine_tried, used, sizeof(used)));
        return NULL;
    }
    *rc = GW_ERR_UNAVAILABLE; /* the system's from here: what is installed, and what loads */
    /* the structural reference is kept for the life of the process, the engine's library loaded once:
       libp11 keeps its methods in statics of that library, as good as leaked were it unloaded at exit */
    if (libp11 == NULL && (libp11 = ENGINE_by_id("pkcs11")) == NULL) {
        snprintf(err, cap,
                 "the OpenSSL engine \"pkcs11\" is not installed (Debian: libengine-pkcs11-openssl)");
        return NULL;
    }
    e = libp11;
    if ((*rc = tame(e, err, cap)) != 0) {
        *rc = *rc == GW_ERR_NOMEM ? GW_ERR_NOMEM : GW_ERR_UNAVAILABLE;
        return NULL;
    }
    *rc = GW_ERR_UNAVAILABLE;
    if ((module[0] != '\0' && ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module, 0) != 1) ||
        ENGINE_init(e) != 1) {
        snprintf(err, cap, "PKCS#11 module %s cannot be loaded", shown);
        return NULL;
    }
    snprintf(engine_tried, sizeof(engine_tried), "%s", module);
    return e;
}

/*
 * Takes the module of |e| for the process's once a key loaded from it (|loaded|), keeping the functional
 * reference; else gives it back, which closes the module while none is taken (libp11's ctx_finish), so
 * that another module-path, a corrected one, is tried afresh. Called with |lock| held.
 */
static void keep_engine(ENGINE *e, const char *module, bool loaded)
{
    if (loaded && engine == NULL) {
        engine = e;
        snprintf(engine_module, sizeof(engine_module), "%s", module);
        return;
    }
    ENGINE_finish(e);
}

/*
 * Why the token refused the login, from the error queue, or NULL: libp11 puts the PKCS#11 return value of
 * C_Login there as a reason of its library "PKCS#11 module". A wrong PIN costs one of the token's tries
 * at each start, `cmpgw check` and reload: an HSM or a smartcard locks its PIN after a few.
 */
static const char *login_refusal(void)
{
    unsigned long e;
    const char *lib;

    while ((e = ERR_get_error()) != 0) {
        if ((lib = ERR_lib_error_string(e)) == NULL || strcmp(lib, LIBP11_CKR_LIB) != 0)
            continue;
        if (ERR_GET_REASON(e) == CKR_PIN_INCORRECT)
            return "the token refused the PIN (PIN incorrect; each try counts against the token's PIN "
                   "tries: correct the passphrase file before the next start, check or reload)";
        if (ERR_GET_REASON(e) == CKR_PIN_LOCKED)
            return "the token's user PIN is locked (PIN locked): unlock it with the token's SO PIN";
    }
    return NULL;
}

/*
 * The key |path| of the token through |e|, logged in with |pin|; NULL with the reason in |err| and *|rc|
 * its class: the token's refusal of the PIN is the configuration's, no token or no key there may be the
 * system's at this moment (a token not enumerated yet).
 */
static EVP_PKEY *load_key(ENGINE *e, const char *path, const char *pin, int *rc, char *err, size_t cap)
{
    char shown[GW_ERR_LEN];
    const char *refusal;
    EVP_PKEY *key;

    *rc = GW_ERR_UNAVAILABLE;
    ERR_clear_error();
    /* each load sets its own PIN: libp11 logs in to any token with the last one it was given */
    if (ENGINE_ctrl_cmd_string(e, "PIN", pin, 0) != 1) {
        snprintf(err, cap, "the PKCS#11 engine refused the PIN");
        return NULL;
    }
    key = ENGINE_load_private_key(e, path, no_prompt, NULL);
    if (key == NULL) {
        gw_conf_show_file(path, shown, sizeof(shown));
        if ((refusal = login_refusal()) != NULL) {
            snprintf(err, cap, "cannot log in to the token of %s: %s", shown, refusal);
            *rc = GW_ERR_INVAL;
        } else {
            snprintf(err, cap, "no private key %s in the token (or the PIN is wrong)", shown);
        }
    } else {
        *rc = 0;
    }
    /*
     * libp11 keeps the engine's copy of the PIN until the engine is destroyed, which it never is here:
     * overwritten (libp11 cleanses the old copy), that one does not outlive this load. The slot's own
     * copy, kept to log in again, stays while the token is logged in (docs/security.md).
     */
    (void)ENGINE_ctrl_cmd_string(e, "PIN", "", 0);
    return key;
}

int gw_pkcs11_load_key(const char *uri, const char *pin, EVP_PKEY **out, char *err, size_t cap)
{
    char path[GW_PKCS11_MAX_URI], module[GW_PKCS11_MAX_URI], why[GW_ERR_LEN], shown[GW_ERR_LEN];
    void *handle = NULL;
    ENGINE *e;
    int rc = GW_ERR_UNAVAILABLE;

    *out = NULL;
    if (split_uri(uri, path, module, err, cap) != 0)
        return GW_ERR_INVAL;
    if (pin == NULL) {
        snprintf(err, cap, "a key in a PKCS#11 token needs its user PIN");
        return GW_ERR_INVAL;
    }
    pthread_mutex_lock(&lock);
    /* a module not there: not installed yet, or on a file system not mounted yet */
    if (engine == NULL && module[0] != '\0' && (handle = open_module(module, why, sizeof(why))) == NULL)
        snprintf(err, cap, "PKCS#11 module %s cannot be loaded: %s",
                 gw_conf_show_file(module, shown, sizeof(shown)), why);
    else if ((e = engine_for(module, &rc, err, cap)) != NULL) {
        *out = load_key(e, path, pin, &rc, err, cap);
        keep_engine(e, module, *out != NULL);
    }
    if (handle != NULL)
        dlclose(handle);
    pthread_mutex_unlock(&lock);
    ERR_clear_error();
    return rc;
}
