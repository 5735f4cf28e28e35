/* Unit tests for gateway/cmp/audit.c: JSON lines, audit_fields, fsync, rotation, failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <grp.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "tests/unit/testutil.h"
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include "gateway/cmp/audit.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/metrics.h"

#define ALL_FIELDS ((GW_AUDIT_ADD_BASIC_CONSTRAINTS << 1) - 1)

static char dir[64];
static char path[128];
static EVP_PKEY *ec_key, *rsa_key, *ed_key;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/cmpgw-audit-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    return ec_key != NULL && rsa_key != NULL && ed_key != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    EVP_PKEY_free(ec_key);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(ed_key);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/*
 * fsync as the code under test calls it: the system's, but for descriptor |held.fd|, whose fsync hangs
 * (a disk behind multipath's queue_if_no_path, a hard NFS mount) until the test lets it go, then fails.
 * An fsync of it on the thread that set it is counted and fails at once, so a test that would hang
 * says so instead.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fd;           /* -1: none held */
    pthread_t setter; /* the thread that set |fd| */
    int entered, inline_calls, released;
} held = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, -1, 0, 0, 0, 0};

int fsync(int fd)
{
    pthread_mutex_lock(&held.lock);
    if (fd != held.fd) {
        pthread_mutex_unlock(&held.lock);
        return (int)syscall(SYS_fsync, fd);
    }
    if (pthread_equal(pthread_self(), held.setter))
        held.inline_calls++;
    else
        held.entered++;
    pthread_cond_broadcast(&held.cond);
    while (!held.released && !pthread_equal(pthread_self(), held.setter))
        pthread_cond_wait(&held.cond, &held.lock);
    pthread_mutex_unlock(&held.lock);
    errno = EIO;
    return -1;
}

/* Holds every fsync of |fd| by other threads from now on (-1: none), counting afresh. */
static void hold_fsync(int fd)
{
    pthread_mutex_lock(&held.lock);
    held.fd = fd;
    held.setter = pthread_self();
    held.entered = held.inline_calls = held.released = 0;
    pthread_mutex_unlock(&held.lock);
}

/* Lets the held fsyncs return (failing), and those that come after at once. */
static void release_fsync(void)
{
    pthread_mutex_lock(&held.lock);
    held.released = 1;
    pthread_cond_broadcast(&held.cond);
    pthread_mutex_unlock(&held.lock);
}

/* Waits (10 s at most) until threads other than the test's entered the held fsync |n| times: whether they
 * did. */
static bool held_entered(int n)
{
    struct timespec until;
    bool in;

    until = tu_deadline(10);
    pthread_mutex_lock(&held.lock);
    while (held.entered < n && tu_wait_until(&held.cond, &held.lock, &until) == 0)
        ;
    in = held.entered >= n;
    pthread_mutex_unlock(&held.lock);
    return in;
}

/* A fresh log path per test. */
static const char *fresh(const char *name)
{
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
    return path;
}

static struct gw_audit *open_log(const char *p, unsigned fields)
{
    struct gw_audit_conf conf = {.file = (char *)p, .fields = fields};
    char err[GW_ERR_LEN] = "";
    struct gw_audit *a = gw_audit_open(&conf, geteuid(), getegid(), NULL, err);

    if (a == NULL)
        print_message("open: %s\n", err);
    return a;
}

/* The lines of |p| parsed; each must be one JSON object ending in '\n'. Returns the count. */
static size_t read_lines(const char *p, json_object **out, size_t max)
{
    FILE *f = fopen(p, "r");
    char *line = NULL;
    size_t cap = 0, n = 0;
    ssize_t len;

    assert_non_null(f);
    while ((len = getline(&line, &cap, f)) > 0) {
        assert_true(n < max);
        assert_int_equal(line[len - 1], '\n');
        assert_int_equal(strlen(line), (size_t)len); /* no raw NUL */
        out[n] = json_tokener_parse(line);
        assert_non_null(out[n]);
        assert_true(json_object_is_type(out[n], json_type_object));
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

static void free_lines(json_object **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_object_put(v[i]);
}

static const char *str(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

static int has(json_object *o, const char *key)
{
    return json_object_object_get_ex(o, key, NULL);
}

static X509_NAME *name_of(const char *const *kv)
{
    X509_NAME *n = X509_NAME_new();

    for (; kv[0] != NULL; kv += 2)
        assert_int_equal(
            X509_NAME_add_entry_by_txt(n, kv[0], MBSTRING_UTF8, (const unsigned char *)kv[1], -1, -1, 0), 1);
    return n;
}

static GENERAL_NAMES *sans_of(const char *conf)
{
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, conf);
    GENERAL_NAMES *g;

    assert_non_null(e);
    assert_non_null(g = X509V3_EXT_d2i(e));
    X509_EXTENSION_free(e);
    return g;
}

/* A CSR over |key| with |subject|, |sans| (conf string or NULL), optional CA:TRUE request, signed with |md|.
 */
static X509_REQ *make_csr(EVP_PKEY *key, X509_NAME *subject, const char *sans, int ask_ca, const char *md,
                          int pss)
{
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;

    X509_REQ_set_version(req, 0);
    X509_REQ_set_subject_name(req, subject);
    X509_REQ_set_pubkey(req, key);
    if (sans != NULL)
        sk_X509_EXTENSION_push(exts, X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, sans));
    if (ask_ca)
        sk_X509_EXTENSION_push(exts,
                               X509V3_EXT_nconf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE"));
    if (sk_X509_EXTENSION_num(exts) > 0)
        assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    assert_int_equal(EVP_DigestSignInit_ex(mctx, &pctx, md, NULL, NULL, key, NULL), 1);
    if (pss)
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    assert_true(X509_REQ_sign_ctx(req, mctx) > 0);
    EVP_MD_CTX_free(mctx);
    return req;
}

static const char *const full_subject[] = {
    "CN",
    "first-cn",
    "CN",
    "device-7.example",
    "O",
    "Example \"Corp\"",
    "OU",
    "ops",
    "OU",
    "iot",
    "C",
    "DE",
    "L",
    "Berlin",
    "ST",
    "Berlin-Land",
    "street",
    "Hauptstr. 1",
    "postalCode",
    "10115",
    "serialNumber",
    "SN-0042",
    NULL,
};

#define FULL_SANS                                                                                            \
    "DNS:dev.example,email:ops@example.com,IP:127.0.0.1,IP:::1,URI:urn:example:dev:7,"                       \
    "otherName:1.3.6.1.4.1.311.20.2.3;UTF8:devops@example.com"

/* Every field, from the record's own subject/SANs/key and the CSR's signature. */
static void test_all_fields(void **state)
{
    X509_NAME *subject = name_of(full_subject);
    GENERAL_NAMES *sans = sans_of(FULL_SANS);
    X509_REQ *csr = make_csr(ec_key, subject, NULL, 1, "SHA384", 0);
    struct gw_audit_rec r = {
        .event = "issued",
        .tid = "00ff",
        .route = "/pki/roles/dev/cmp",
        .role = "dev",
        .identity = "CN=client",
        .tls_subject = "CN=tls",
        .body_type = "ir",
        .upstream = "local",
        .serial = "1a2b",
        .status = "accepted",
        .subject = subject,
        .sans = sans,
        .pubkey = ec_key,
        .csr = csr,
        .exclude_cn_from_sans = 1,
    };
    struct gw_audit *a;
    json_object *l[4], *v;
    struct stat st;

    (void)state;
    assert_non_null(a = open_log(fresh("all.log"), ALL_FIELDS));
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    gw_audit_close(a);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(read_lines(path, l, 4), 1);
    assert_non_null(str(l[0], "time"));
    assert_int_equal(strlen(str(l[0], "time")), strlen("2025-01-01T00:00:00.000Z"));
    assert_string_equal(str(l[0], "event"), "issued");
    assert_string_equal(str(l[0], "tid"), "00ff");
    assert_string_equal(str(l[0], "route"), "/pki/roles/dev/cmp");
    assert_string_equal(str(l[0], "role"), "dev");
    assert_string_equal(str(l[0], "identity"), "CN=client");
    assert_string_equal(str(l[0], "tls_subject"), "CN=tls");
    assert_string_equal(str(l[0], "body_type"), "ir");
    assert_string_equal(str(l[0], "upstream"), "local");
    assert_string_equal(str(l[0], "serial"), "1a2b");
    assert_string_equal(str(l[0], "status"), "accepted");
    assert_string_equal(str(l[0], "common_name"), "device-7.example"); /* the last CN, as Go/Vault */
    assert_string_equal(str(l[0], "alt_names"), "dev.example,ops@example.com");
    assert_string_equal(str(l[0], "ip_sans"), "127.0.0.1,::1");
    assert_string_equal(str(l[0], "uri_sans"), "urn:example:dev:7");
    assert_string_equal(str(l[0], "other_sans"), "1.3.6.1.4.1.311.20.2.3;UTF8:devops@example.com");
    assert_string_equal(str(l[0], "ou"), "ops,iot");
    assert_string_equal(str(l[0], "organization"), "Example \"Corp\"");
    assert_string_equal(str(l[0], "country"), "DE");
    assert_string_equal(str(l[0], "locality"), "Berlin");
    assert_string_equal(str(l[0], "province"), "Berlin-Land");
    assert_string_equal(str(l[0], "street_address"), "Hauptstr. 1");
    assert_string_equal(str(l[0], "postal_code"), "10115");
    assert_string_equal(str(l[0], "serial_number"), "SN-0042");
    assert_string_equal(str(l[0], "key_type"), "ec");
    assert_true(json_object_object_get_ex(l[0], "key_bits", &v));
    assert_int_equal(json_object_get_int(v), 256);
    assert_true(json_object_object_get_ex(l[0], "signature_bits", &v));
    assert_int_equal(json_object_get_int(v), 384);
    assert_non_null(strstr(str(l[0], "csr"), "-----BEGIN CERTIFICATE REQUEST-----\n"));
    assert_true(json_object_object_get_ex(l[0], "exclude_cn_from_sans", &v));
    assert_true(json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v));
    assert_true(json_object_object_get_ex(l[0], "use_pss", &v));
    assert_false(json_object_get_boolean(v));
    assert_true(json_object_object_get_ex(l[0], "add_basic_constraints", &v));
    assert_true(json_object_get_boolean(v));
    free_lines(l, 1);
    X509_REQ_free(csr);
    GENERAL_NAMES_free(sans);
    X509_NAME_free(subject);
}

/* Only the configured fields appear; NULL record strings are omitted. Table-driven. */
static void test_fields_per_config(void **state)
{
    static const struct {
        unsigned fields;
        const char *present[4];
        const char *absent[4];
    } cases[] = {
        {0, {NULL}, {"common_name", "alt_names", "csr", "key_type"}},
        {GW_AUDIT_COMMON_NAME, {"common_name"}, {"alt_names", "ip_sans", "csr"}},
        {GW_AUDIT_COMMON_NAME | GW_AUDIT_ALT_NAMES | GW_AUDIT_IP_SANS | GW_AUDIT_URI_SANS,
         {"common_name", "alt_names", "ip_sans", "uri_sans"},
         {"other_sans", "csr", "key_bits"}},
        {GW_AUDIT_CSR | GW_AUDIT_KEY_BITS, {"csr", "key_bits"}, {"key_type", "common_name"}},
        {GW_AUDIT_USE_PSS, {"use_pss"}, {"signature_bits", "csr"}},
    };
    X509_NAME *subject = name_of(full_subject);
    X509_REQ *csr = make_csr(ec_key, subject, FULL_SANS, 0, "SHA256", 0);
    struct gw_audit_rec r = {.event = "intent", .csr = csr};
    struct gw_audit *a;
    json_object *l[8];
    size_t i, j, n;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_non_null(a = open_log(fresh("fields.log"), cases[i].fields));
        assert_int_equal(gw_audit_write(a, &r, 0), 0);
        gw_audit_close(a);
        assert_int_equal(n = read_lines(path, l, 8), 1);
        for (j = 0; j < 4 && cases[i].present[j] != NULL; j++)
            assert_true(has(l[0], cases[i].present[j]));
        for (j = 0; j < 4 && cases[i].absent[j] != NULL; j++)
            assert_false(has(l[0], cases[i].absent[j]));
        assert_false(has(l[0], "tid")); /* NULL: omitted */
        assert_false(has(l[0], "serial"));
        assert_string_equal(str(l[0], "event"), "intent");
        free_lines(l, n);
    }
    X509_REQ_free(csr);
    X509_NAME_free(subject);
}

/* A record with only a CSR takes subject, SANs and key from it; key and signature variants. */
static void test_from_csr_and_key_types(void **state)
{
    static const struct {
        int key; /* 0 ec, 1 rsa, 2 rsa-pss, 3 ed25519 */
        const char *md;
        const char *key_type;
        int key_bits, sig_bits, pss;
    } cases[] = {
        {0, "SHA256", "ec", 256, 256, 0},
        {1, "SHA512", "rsa", 2048, 512, 0},
        {2, "SHA256", "rsa", 2048, 256, 1},
        {3, NULL, "ed25519", 0, 0, 0},
    };
    static const char *const subj[] = {"CN", "from-csr", NULL};
    X509_NAME *subject = name_of(subj);
    struct gw_audit *a;
    json_object *l[2], *v;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EVP_PKEY *k = cases[i].key == 0 ? ec_key : cases[i].key == 3 ? ed_key : rsa_key;
        X509_REQ *csr = make_csr(k, subject, "DNS:a.example,IP:10.1.2.3", 0, cases[i].md, cases[i].key == 2);
        struct gw_audit_rec r = {.event = "intent", .csr = csr};

        assert_non_null(a = open_log(fresh("csr.log"), ALL_FIELDS));
        assert_int_equal(gw_audit_write(a, &r, 0), 0);
        gw_audit_close(a);
        assert_int_equal(read_lines(path, l, 2), 1);
        assert_string_equal(str(l[0], "common_name"), "from-csr");
        assert_string_equal(str(l[0], "alt_names"), "a.example");
        assert_string_equal(str(l[0], "ip_sans"), "10.1.2.3");
        assert_string_equal(str(l[0], "uri_sans"), "");
        assert_string_equal(str(l[0], "key_type"), cases[i].key_type);
        assert_true(json_object_object_get_ex(l[0], "key_bits", &v));
        assert_int_equal(json_object_get_int(v), cases[i].key_bits);
        assert_true(json_object_object_get_ex(l[0], "signature_bits", &v));
        assert_int_equal(json_object_get_int(v), cases[i].sig_bits);
        assert_true(json_object_object_get_ex(l[0], "use_pss", &v));
        assert_int_equal(json_object_get_boolean(v), cases[i].pss);
        assert_true(json_object_object_get_ex(l[0], "add_basic_constraints", &v));
        assert_false(json_object_get_boolean(v));
        free_lines(l, 1);
        X509_REQ_free(csr);
    }
    X509_NAME_free(subject);
}

/* No subject, SANs, key or CSR: every configured field is still there, empty. */
static void test_empty_record(void **state)
{
    struct gw_audit_rec r = {.event = "rejected", .status = "rejection: badPOP: x"};
    struct gw_audit *a;
    json_object *l[2], *v;

    (void)state;
    assert_non_null(a = open_log(fresh("empty.log"), ALL_FIELDS));
    assert_int_equal(gw_audit_write(a, &r, 0), 0);
    gw_audit_close(a);
    assert_int_equal(read_lines(path, l, 2), 1);
    assert_string_equal(str(l[0], "common_name"), "");
    assert_string_equal(str(l[0], "alt_names"), "");
    assert_string_equal(str(l[0], "csr"), "");
    assert_string_equal(str(l[0], "key_type"), "");
    assert_true(json_object_object_get_ex(l[0], "key_bits", &v));
    assert_int_equal(json_object_get_int(v), 0);
    free_lines(l, 1);
}

/* Hostile strings: quotes, newlines, control bytes, an embedded NUL in a SAN stay inside one valid line. */
static void test_hostile_strings(void **state)
{
    static const char *const subj[] = {"CN", "evil\"}\n{\"event\":\"issued\"", NULL};
    X509_NAME *subject = name_of(subj);
    GENERAL_NAMES *sans = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    struct gw_audit_rec r = {
        .event = "intent", .identity = "a\\b\"c\x01\x1f\x7f", .subject = subject, .sans = sans};
    struct gw_audit *a;
    json_object *l[4];

    (void)state;
    assert_int_equal(ASN1_STRING_set(ia5, "a\0b.example", 11), 1);
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    sk_GENERAL_NAME_push(sans, gn);
    assert_non_null(a = open_log(fresh("hostile.log"), GW_AUDIT_COMMON_NAME | GW_AUDIT_ALT_NAMES));
    assert_int_equal(gw_audit_write(a, &r, 0), 0);
    assert_int_equal(gw_audit_write(a, &r, 0), 0);
    gw_audit_close(a);
    assert_int_equal(read_lines(path, l, 4), 2);
    assert_string_equal(str(l[0], "identity"), "a\\b\"c\x01\x1f\x7f");
    assert_string_equal(str(l[0], "common_name"), "evil\"}\n{\"event\":\"issued\"");
    assert_string_equal(str(l[0], "event"), "intent");
    assert_int_equal(json_object_get_string_len(json_object_object_get(l[0], "alt_names")), 11);
    assert_memory_equal(str(l[0], "alt_names"), "a\0b.example", 11);
    free_lines(l, 2);
    GENERAL_NAMES_free(sans);
    X509_NAME_free(subject);
}

static int status(struct gw_audit *a, char *why);

/*
 * A record that cannot be built (a configured "csr" that does not encode; out of memory) is refused
 * whole: GW_ERR_IO, nothing written. It says nothing of the disk, so it leaves the audit check of
 * readiness up. The twin, the same record with a CSR that encodes, is written.
 */
static void test_unbuilt(void **state)
{
    X509_NAME *subject = name_of((const char *const[]){"CN", "dev.example", NULL});
    X509_REQ *empty = X509_REQ_new(), *csr = make_csr(ec_key, subject, NULL, 0, "SHA256", 0);
    struct gw_audit_rec r = {.event = "intent", .csr = empty};
    char why[GW_ERR_LEN];
    struct gw_audit *a;
    json_object *l[2];
    struct stat st;

    (void)state;
    assert_non_null(empty);
    assert_non_null(a = open_log(fresh("unbuilt.log"), GW_AUDIT_CSR));
    assert_int_equal(gw_audit_write(a, &r, 1), GW_ERR_IO);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    /* the disk did nothing wrong: readiness stays up */
    assert_int_equal(status(a, why), 0);
    assert_string_equal(why, "");
    r.csr = csr;
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    gw_audit_close(a);
    assert_int_equal(read_lines(path, l, 2), 1);
    assert_non_null(strstr(str(l[0], "csr"), "-----BEGIN CERTIFICATE REQUEST-----"));
    free_lines(l, 1);
    X509_REQ_free(empty);
    X509_REQ_free(csr);
    X509_NAME_free(subject);
}

/*
 * The transaction's own fields come from the gateway's fixed buffers, but gw_audit_write takes any
 * string: each is cut at GW_AUDIT_TXN_FIELD_MAX escaped, with the marker and "truncated", so a value of
 * 1 MiB (alone over GW_AUDIT_LINE_MAX, of control characters six times as long escaped) is recorded
 * rather than refusing the record; the twin, the longest value the gateway's buffers hold, is whole.
 */
static void test_txn_fields_bounded(void **state)
{
    static const char *const keys[] = {
        "event",     "tid",      "route",  "role",  "identity", "tls_subject", "credential_status",
        "body_type", "upstream", "serial", "status"};
    size_t n = GW_AUDIT_LINE_MAX, m = strlen(GW_AUDIT_TRUNCATED), i;
    char *big = malloc(n + 1), *whole = malloc(2 * GW_ERR_LEN), why[GW_ERR_LEN];
    struct gw_audit_rec r;
    struct gw_audit *a;
    json_object *l[2];

    (void)state;
    assert_non_null(big);
    assert_non_null(whole);
    memset(big, '\x01', n);
    big[n] = '\0';
    memset(whole, '\x01', 2 * GW_ERR_LEN - 1);
    whole[2 * GW_ERR_LEN - 1] = '\0';
    assert_non_null(a = open_log(fresh("txn-fields.log"), 0));
    for (i = 0; i < 2; i++) {
        const char *v = i == 0 ? big : whole;

        r = (struct gw_audit_rec){.event = v,
                                  .tid = v,
                                  .route = v,
                                  .role = v,
                                  .identity = v,
                                  .tls_subject = v,
                                  .credential_status = v,
                                  .body_type = v,
                                  .upstream = v,
                                  .serial = v,
                                  .status = v};
        assert_int_equal(gw_audit_write(a, &r, 1), 0);
    }
    assert_int_equal(status(a, why), 0);
    gw_audit_close(a);
    assert_int_equal(read_lines(path, l, 2), 2);
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *cut = str(l[0], keys[i]);
        size_t len = strlen(cut);

        if (len <= m || 6 * (len - m) > GW_AUDIT_TXN_FIELD_MAX ||
            strcmp(cut + len - m, GW_AUDIT_TRUNCATED) != 0)
            fail_msg("%s: %zu bytes, not cut at %d escaped", keys[i], len, GW_AUDIT_TXN_FIELD_MAX);
        assert_string_equal(str(l[1], keys[i]), whole);
    }
    assert_true(has(l[0], "truncated"));
    assert_false(has(l[1], "truncated"));
    free_lines(l, 2);
    free(big);
    free(whole);
}

/* A name of |n| bytes of |c| as an ASN.1 string of |type|, set as is (no size rule of a table). */
static ASN1_STRING *long_string(int type, size_t n, char c)
{
    ASN1_STRING *s = ASN1_STRING_type_new(type);
    char *p = malloc(n);

    assert_non_null(s);
    assert_non_null(p);
    memset(p, c, n);
    assert_int_equal(ASN1_STRING_set(s, p, (int)n), 1);
    free(p);
    return s;
}

/* The value of |key| in |l|: at most GW_AUDIT_FIELD_MAX bytes, ending in GW_AUDIT_TRUNCATED. */
static void assert_cut(json_object *l, const char *key)
{
    const char *v = str(l, key);
    size_t n = strlen(v), m = strlen(GW_AUDIT_TRUNCATED);

    assert_true(n > m);
    assert_true(n <= GW_AUDIT_FIELD_MAX);
    assert_string_equal(v + n - m, GW_AUDIT_TRUNCATED);
}

/*
 * What a certificate holds reaches the record, and a hostile upstream writes the certificate: names of
 * hundreds of KiB, of control characters six times as long escaped, would make a line over
 * GW_AUDIT_LINE_MAX. Each name field is cut at GW_AUDIT_FIELD_MAX, with a marker and "truncated", so
 * the record is written and readiness stays up; the twin, names of ordinary size, is written whole.
 */
static void test_hostile_names_bounded(void **state)
{
    static const size_t big = 300 * 1024;
    X509_NAME *subject = X509_NAME_new();
    GENERAL_NAMES *sans = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gn;
    struct gw_audit_rec r = {.event = "issued", .status = "accepted"};
    struct gw_audit *a;
    json_object *l[4];
    char why[GW_ERR_LEN];
    int i;

    (void)state;
    /* two CNs and two OUs (the last CN and every OU are shown), two DNS and two URI SANs */
    for (i = 0; i < 4; i++) {
        ASN1_STRING *v = long_string(V_ASN1_UTF8STRING, big, i % 2 == 0 ? '\x01' : 'x');
        X509_NAME_ENTRY *ne =
            X509_NAME_ENTRY_create_by_NID(NULL, i < 2 ? NID_commonName : NID_organizationalUnitName,
                                          V_ASN1_UTF8STRING, ASN1_STRING_get0_data(v), (int)big);

        assert_non_null(ne);
        assert_int_equal(X509_NAME_add_entry(subject, ne, -1, 0), 1);
        X509_NAME_ENTRY_free(ne);
        ASN1_STRING_free(v);
    }
    for (i = 0; i < 4; i++) {
        assert_non_null(gn = GENERAL_NAME_new());
        GENERAL_NAME_set0_value(gn, i < 2 ? GEN_DNS : GEN_URI, long_string(V_ASN1_IA5STRING, big, '\x02'));
        sk_GENERAL_NAME_push(sans, gn);
    }
    r.subject = subject;
    r.sans = sans;
    assert_non_null(a = open_log(fresh("hostile-names.log"), ALL_FIELDS));
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    assert_int_equal(status(a, why), 0);
    /* the twin: the same fields of ordinary size are whole, and no "truncated" */
    X509_NAME_free(subject);
    GENERAL_NAMES_free(sans);
    r.subject = subject = name_of((const char *const[]){"CN", "dev.example", "OU", "lab", NULL});
    r.sans = sans = sans_of("DNS:dev.example,URI:urn:x");
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    gw_audit_close(a);
    assert_int_equal(read_lines(path, l, 4), 2);
    assert_cut(l[0], "common_name");
    assert_cut(l[0], "ou");
    assert_cut(l[0], "alt_names");
    assert_cut(l[0], "uri_sans");
    assert_string_equal(str(l[0], "status"), "accepted");
    assert_true(has(l[0], "truncated"));
    assert_string_equal(str(l[1], "common_name"), "dev.example");
    assert_string_equal(str(l[1], "ou"), "lab");
    assert_string_equal(str(l[1], "alt_names"), "dev.example");
    assert_string_equal(str(l[1], "uri_sans"), "urn:x");
    assert_false(has(l[1], "truncated"));
    free_lines(l, 2);
    X509_NAME_free(subject);
    GENERAL_NAMES_free(sans);
}

/* Rotation: rename, lines still go to the renamed file until reopen; then to a fresh file. */
static void test_reopen_rotation(void **state)
{
    char rotated[160];
    struct gw_audit_rec r = {.event = "issued"};
    struct gw_audit *a;
    json_object *l[4];

    (void)state;
    assert_non_null(a = open_log(fresh("rot.log"), 0));
    snprintf(rotated, sizeof(rotated), "%s.1", path);
    r.tid = "1";
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    assert_int_equal(rename(path, rotated), 0);
    r.tid = "2";
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(gw_audit_reopen(a), 0);
    r.tid = "3";
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    gw_audit_close(a);
    assert_int_equal(read_lines(rotated, l, 4), 2);
    assert_string_equal(str(l[0], "tid"), "1");
    assert_string_equal(str(l[1], "tid"), "2");
    free_lines(l, 2);
    assert_int_equal(read_lines(path, l, 4), 1);
    assert_string_equal(str(l[0], "tid"), "3");
    free_lines(l, 1);
    unlink(rotated);
}

/*
 * The log lines of a reopen name the file as a configuration error does (gw_conf_show_file): a name
 * that reads as a URL with userinfo keeps its password out of the log.
 */
static void test_reopen_names_masked(void **state)
{
    char sub[128], moved[128], logged[160], buf[4096] = "";
    int saved, fd;
    ssize_t n;
    struct gw_audit *a;

    (void)state;
    snprintf(sub, sizeof(sub), "%s/https:", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(sub, sizeof(sub), "%s/https:/u:s.abcdefgh@h", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(moved, sizeof(moved), "%s/https:/moved", dir);
    snprintf(path, sizeof(path), "%s/https://u:s.abcdefgh@h/m.log", dir);
    snprintf(logged, sizeof(logged), "%s/reopen-stderr.log", dir);
    assert_non_null(a = open_log(path, 0));
    fflush(stderr);
    assert_true((saved = dup(STDERR_FILENO)) >= 0);
    assert_true((fd = open(logged, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
    assert_int_equal(gw_audit_reopen(a), 0);
    assert_int_equal(rename(sub, moved), 0); /* the path cannot be created any more */
    assert_int_equal(gw_audit_reopen(a), GW_ERR_IO);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    gw_audit_close(a);
    assert_true((fd = open(logged, O_RDONLY | O_CLOEXEC)) >= 0);
    assert_true((n = read(fd, buf, sizeof(buf) - 1)) > 0);
    close(fd);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "audit_reopened"));
    assert_non_null(strstr(buf, "audit_reopen_failed"));
    assert_non_null(strstr(buf, "https://***@h/m.log"));
    assert_null(strstr(buf, "s.abcdefgh"));
    snprintf(logged, sizeof(logged), "%s/m.log", moved);
    unlink(logged);
    rmdir(moved);
    snprintf(sub, sizeof(sub), "%s/https:", dir);
    rmdir(sub);
}

#define OTHER_ID 65534 /* the user and group the gateway serves as here: need not exist to own a file */

/* Whether uid and gid OTHER_ID may open |p| to append, as a reopen after root is given up does. */
static bool appendable_as_other(const char *p)
{
    pid_t pid = fork();
    int status, fd;

    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(OTHER_ID) != 0 || setuid(OTHER_ID) != 0)
            _exit(2);
        fd = open(p, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
        _exit(fd >= 0 ? 0 : 1);
    }
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * Started as root for another user, the log root creates, at open and at a reopen, is that user's and
 * group's: the user reopens it once root is given up (SIGUSR1), and logrotate run as that user renames
 * and compresses it. A log that was there is left as it is (the owner check allows root's). The
 * directory is the user's, as the package's /var/log/cmpgw: root creates the log as that user.
 */
static void test_created_as_root_given(void **state)
{
    static const struct {
        const char *name;
        bool there; /* made by root before the open */
        uid_t uid;
    } cases[] = {{"new", false, OTHER_ID}, {"there", true, 0}};
    struct gw_audit_conf conf = {0};
    char err[GW_ERR_LEN], rotated[160];
    struct gw_audit *a;
    struct stat st;
    int fd;

    (void)state;
    if (geteuid() != 0)
        skip();
    assert_int_equal(chown(dir, OTHER_ID, OTHER_ID), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        conf.file = (char *)fresh(cases[i].name);
        if (cases[i].there) {
            assert_true((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0);
            close(fd);
        }
        assert_non_null(a = gw_audit_open(&conf, OTHER_ID, OTHER_ID, NULL, err));
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_uid, cases[i].uid);
        assert_int_equal(st.st_gid, cases[i].uid);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(appendable_as_other(path), cases[i].uid == OTHER_ID);
        /* a rotation's reopen, still as root: the new file too */
        snprintf(rotated, sizeof(rotated), "%s.1", path);
        assert_int_equal(rename(path, rotated), 0);
        assert_int_equal(gw_audit_reopen(a), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_uid, OTHER_ID);
        assert_int_equal(st.st_gid, OTHER_ID);
        assert_true(appendable_as_other(path));
        gw_audit_close(a);
        unlink(rotated);
        unlink(path);
    }
    assert_int_equal(chown(dir, 0, 0), 0);
}

/*
 * Started as root for another user, the log's directory must be one that user reaches by its path, as a
 * reopen after root is given up does: the log is opened from the directory the check judged, where the
 * user's rights on the directories above it are not asked, so one of the user's own under a directory of
 * root's 0700 was given a log that no rotation could reopen.
 */
static void test_unreachable_directory_refused(void **state)
{
    struct gw_audit_conf conf = {0};
    char outer[160], logs[192], log[224], err[GW_ERR_LEN] = "";
    struct gw_audit *a;

    (void)state;
    if (geteuid() != 0)
        skip();
    assert_int_equal(chmod(dir, 0711), 0);
    snprintf(outer, sizeof(outer), "%s/outer", dir); /* root's, 0700: the user cannot pass */
    snprintf(logs, sizeof(logs), "%s/logs", outer);
    snprintf(log, sizeof(log), "%s/a.log", logs);
    assert_int_equal(mkdir(outer, 0700), 0);
    assert_int_equal(mkdir(logs, 0755), 0);
    assert_int_equal(chown(logs, OTHER_ID, OTHER_ID), 0);
    conf.file = log;
    assert_null(gw_audit_open(&conf, OTHER_ID, OTHER_ID, NULL, err));
    assert_non_null(strstr(err, "the gateway's user cannot reach the directory of"));
    assert_int_not_equal(access(log, F_OK), 0);
    assert_int_equal(chmod(outer, 0711), 0); /* passable: opened, as that user's */
    assert_non_null(a = gw_audit_open(&conf, OTHER_ID, OTHER_ID, NULL, err));
    gw_audit_close(a);
    assert_true(appendable_as_other(log));
    unlink(log);
    rmdir(logs);
    rmdir(outer);
    assert_int_equal(chmod(dir, 0700), 0);
}

/*
 * Started as root for another user, the log is created as that user: in a directory the user may not
 * write (root's, 0700 here) it is refused, though root could create it there. Whoever runs as that
 * user could otherwise swap a directory on the way, after its check and before the open, for a link
 * to any directory, and be given a file of their own there (a root start creating the log with root's
 * rights).
 */
static void test_root_creates_as_the_user(void **state)
{
    struct gw_audit_conf conf = {0};
    struct gw_audit *a;
    char err[GW_ERR_LEN];
    struct stat st;

    (void)state;
    if (geteuid() != 0)
        skip();
    conf.file = (char *)fresh("not-the-users.log");
    assert_null(gw_audit_open(&conf, OTHER_ID, OTHER_ID, NULL, err));
    assert_non_null(strstr(err, "Permission denied"));
    assert_int_equal(lstat(path, &st), -1);
    assert_int_equal(errno, ENOENT);
    /* the thread's file accesses are root's again: root's own log is made there */
    assert_non_null(a = open_log(fresh("roots.log"), 0));
    gw_audit_close(a);
}

/* A failed reopen keeps the old file: GW_ERR_IO, and lines still land. */
static void test_reopen_failure_keeps_old(void **state)
{
    char sub[96], moved[96], file[128];
    struct gw_audit_rec r = {.event = "issued", .tid = "after"};
    struct gw_audit *a;
    json_object *l[2];

    (void)state;
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    snprintf(moved, sizeof(moved), "%s/moved", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/a.log", sub);
    assert_non_null(a = open_log(path, 0));
    assert_int_equal(rename(sub, moved), 0); /* the path cannot be created any more */
    assert_int_equal(gw_audit_reopen(a), GW_ERR_IO);
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    gw_audit_close(a);
    snprintf(file, sizeof(file), "%s/a.log", moved);
    assert_int_equal(read_lines(file, l, 2), 1);
    assert_string_equal(str(l[0], "tid"), "after");
    free_lines(l, 1);
    unlink(file);
    rmdir(moved);
    assert_int_equal(gw_audit_reopen(NULL), GW_ERR_IO);
}

/* The audit check of readiness names the failure: *why holds it; "" when there is none. */
static int status(struct gw_audit *a, char *why)
{
    return gw_audit_status(a, why, GW_ERR_LEN);
}

/*
 * Unopenable files are refused at open with the path named, and so is anything but a regular file
 * (a device, a directory); a full disk is GW_ERR_IO on write.
 */
static void test_unwritable(void **state)
{
    static const struct {
        const char *file, *named;
    } bad[] = {{"/nonexistent-dir/audit.log", "\"/nonexistent-dir\""},
               {"/tmp", "\"/tmp\""},
               {"/dev/full", "\"/dev/full\" is not a regular file"},
               {"/dev/null", "\"/dev/null\" is not a regular file"},
               {"", NULL}};
    struct gw_audit_conf conf = {0};
    struct gw_audit_rec r = {.event = "issued"};
    char err[GW_ERR_LEN], why[GW_ERR_LEN];
    struct gw_audit *a;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        conf.file = (char *)bad[i].file;
        err[0] = '\0';
        assert_null(gw_audit_open(&conf, geteuid(), getegid(), NULL, err));
        assert_non_null(strstr(err, "audit"));
        if (bad[i].named != NULL && strstr(err, bad[i].named) == NULL)
            fail_msg("\"%s\" lacks %s", err, bad[i].named);
    }
    assert_null(gw_audit_open(NULL, geteuid(), getegid(), NULL, err));
    /* the disk full: open works, every write fails (EFBIG) */
    assert_non_null(a = open_log(fresh("full.log"), 0));
    tu_cap_files(0);
    assert_int_equal(gw_audit_write(a, &r, 0), GW_ERR_IO);
    assert_int_equal(gw_audit_write(a, &r, 1), GW_ERR_IO);
    assert_int_equal(status(a, why), GW_ERR_IO);
    assert_non_null(strstr(why, "write"));
    tu_uncap_files();
    /* the twin: room again, it takes writes (and fsync); a write that works clears a failed one */
    assert_int_equal(gw_audit_write(a, &r, 0), 0);
    assert_int_equal(status(a, why), 0);
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    gw_audit_close(a);
    assert_int_equal(gw_audit_write(NULL, &r, 1), GW_ERR_IO);
    gw_audit_close(NULL);
}

/*
 * A failed write is not the prober's to clear: an fsync says nothing of whether a write works (here the
 * file may not grow, as on a full disk or a spent quota, and its fsync works all the same), and the
 * prober writes no record. Readiness comes back with the next record written whole, or a reopen.
 */
static void test_write_failure_not_probed(void **state)
{
    struct gw_audit_rec r = {.event = "issued"};
    char why[GW_ERR_LEN];
    struct gw_audit *a;
    struct stat st;
    unsigned long n;
    int fd;

    (void)state;
    assert_non_null(a = open_log(fresh("full2.log"), 0));
    tu_cap_files(0);
    assert_int_equal(gw_audit_write(a, &r, 1), GW_ERR_IO);
    assert_true((fd = open(path, O_WRONLY | O_CLOEXEC)) >= 0);
    assert_int_equal(fsync(fd), 0); /* what a probe by fsync would have seen */
    close(fd);
    n = gw_audit_fsyncs();
    gw_audit_probe(a);
    gw_audit_probe_wait(a);
    assert_int_equal(gw_audit_fsyncs(), n);
    assert_int_equal(status(a, why), GW_ERR_IO);
    assert_non_null(strstr(why, "write"));
    tu_uncap_files();
    gw_audit_probe(a); /* room again: still not cleared, and nothing written */
    gw_audit_probe_wait(a);
    assert_int_equal(status(a, why), GW_ERR_IO);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(gw_audit_reopen(a), 0); /* SIGUSR1 clears it */
    assert_int_equal(status(a, why), 0);
    tu_cap_files(0);
    assert_int_equal(gw_audit_write(a, &r, 0), GW_ERR_IO);
    assert_int_equal(status(a, why), GW_ERR_IO);
    tu_uncap_files();
    assert_int_equal(gw_audit_write(a, &r, 0), 0); /* so does the next record written whole */
    assert_int_equal(status(a, why), 0);
    gw_audit_close(a);
}

/* The first |cap| bytes of the file at |p| into |buf|, NUL-terminated: how many. */
static size_t slurp(const char *p, char *buf, size_t cap)
{
    FILE *f = fopen(p, "r");
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n;
}

/*
 * A failed write that wrote nothing leaves nothing to close: the next record starts the file, no blank
 * line before it (which a JSON-lines reader refuses). Its twins: a write cut short leaves a torn line,
 * ended with a newline before the next record, and a failure that wrote nothing after it keeps it torn;
 * one that wrote only that newline closes it.
 */
static void test_failed_write_torn_lines(void **state)
{
    struct gw_audit_rec r = {.event = "issued"};
    struct gw_audit *a;
    json_object *l[2];
    char text[1024];

    (void)state;
    assert_non_null(a = open_log(fresh("nothing-written.log"), 0));
    tu_cap_files(0); /* EFBIG at the first byte */
    assert_int_equal(gw_audit_write(a, &r, 0), GW_ERR_IO);
    tu_uncap_files();
    assert_int_equal(gw_audit_write(a, &r, 0), 0);
    gw_audit_close(a);
    assert_true(slurp(path, text, sizeof(text)) > 0);
    assert_int_equal(text[0], '{');
    assert_int_equal(read_lines(path, l, 2), 1);
    free_lines(l, 1);

    assert_non_null(a = open_log(fresh("torn.log"), 0));
    tu_cap_files(10); /* 10 bytes of the line, then EFBIG */
    assert_int_equal(gw_audit_write(a, &r, 0), GW_ERR_IO);
    assert_int_equal(gw_audit_write(a, &r, 0), GW_ERR_IO); /* nothing more written: still torn */
    tu_uncap_files();
    assert_int_equal(gw_audit_write(a, &r, 0), 0);
    gw_audit_close(a);
    assert_true(slurp(path, text, sizeof(text)) > 11);
    assert_int_equal(text[10], '\n');
    assert_int_equal(text[11], '{');
    assert_string_equal(strchr(text + 11, '\n'), "\n"); /* one whole record after the torn line */
    assert_non_null(l[0] = json_tokener_parse(text + 11));
    assert_string_equal(str(l[0], "event"), "issued");
    free_lines(l, 1);

    /* a write that gets out only the newline closing a torn line leaves none torn: no blank line */
    assert_non_null(a = open_log(fresh("closed.log"), 0));
    tu_cap_files(10);
    assert_int_equal(gw_audit_write(a, &r, 0), GW_ERR_IO);
    tu_uncap_files();
    tu_cap_files(11); /* the torn line's newline, then EFBIG */
    assert_int_equal(gw_audit_write(a, &r, 0), GW_ERR_IO);
    tu_uncap_files();
    assert_int_equal(gw_audit_write(a, &r, 0), 0);
    gw_audit_close(a);
    assert_true(slurp(path, text, sizeof(text)) > 11);
    assert_int_equal(text[10], '\n');
    assert_int_equal(text[11], '{');
    assert_string_equal(strchr(text + 11, '\n'), "\n");
}

/* The descriptor this process holds |file| open with (by /proc/self/fd), or -1. */
static int fd_of(const char *file)
{
    char link[64], target[256];
    ssize_t n;

    for (int fd = 0; fd < 1024; fd++) {
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        if ((n = readlink(link, target, sizeof(target) - 1)) <= 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, file) == 0)
            return fd;
    }
    return -1;
}

/*
 * A log (fresh, <name>.log) that then writes to a FIFO instead, at |path|, which fsync refuses
 * (EINVAL) where write works; *rd reads it, and *at (unless NULL) is the log's descriptor. The gateway
 * never opens a FIFO as its log: the descriptor is swapped under it.
 */
static struct gw_audit *open_on_fifo(const char *name, int *rd, int *at)
{
    char log[160];
    struct gw_audit *a;
    int wr, next;

    snprintf(log, sizeof(log), "%s/%s.log", dir, name);
    unlink(log);
    assert_int_equal(mkfifo(fresh(name), 0600), 0);
    assert_true((*rd = open(path, O_RDONLY | O_NONBLOCK)) >= 0);
    assert_true((wr = open(path, O_WRONLY)) >= 0);
    assert_non_null(a = open_log(log, 0));
    assert_true((next = fd_of(log)) >= 0);
    assert_int_equal(dup2(wr, next), next);
    close(wr);
    unlink(log);
    if (at != NULL)
        *at = next;
    return a;
}

/* The fsync path: on a FIFO, write succeeds and fsync fails (EINVAL), so only sync=1 reports GW_ERR_IO. */
static void test_fsync_checked(void **state)
{
    struct gw_audit_rec r = {.event = "issued"};
    struct gw_audit *a;
    char buf[4096];
    int rd;

    (void)state;
    a = open_on_fifo("fifo", &rd, NULL);
    assert_int_equal(gw_audit_write(a, &r, 0), 0);
    assert_int_equal(gw_audit_write(a, &r, 1), GW_ERR_IO);
    assert_true(read(rd, buf, sizeof(buf)) > 0);
    gw_audit_close(a);
    close(rd);
    unlink(path);
}

/*
 * Readiness after a failed fsync where write still works (a full thin pool, an NFS quota): it stays
 * not ok through records that need no fsync (each issuance's intent), until an fsync of the log
 * succeeds; and a reopen starts afresh.
 */
static void test_fsync_failure_stays(void **state)
{
    struct gw_audit_rec r = {.event = "intent"};
    char why[GW_ERR_LEN], log[160];
    struct gw_audit *a;
    int rd, at, fd;

    (void)state;
    a = open_on_fifo("fifo3", &rd, &at);
    assert_int_equal(status(a, why), 0);
    assert_int_equal(gw_audit_write(a, &r, 1), GW_ERR_IO);
    assert_int_equal(status(a, why), GW_ERR_IO);
    assert_non_null(strstr(why, "fsync"));
    assert_int_equal(gw_audit_write(a, &r, 0), 0);
    assert_int_equal(status(a, why), GW_ERR_IO);
    assert_non_null(strstr(why, "fsync"));
    /* the disk works again (the log's descriptor now on a regular file): a write alone does not
       show it, the next fsync does */
    snprintf(log, sizeof(log), "%s/fifo3.log", dir);
    assert_true((fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0);
    assert_int_equal(dup2(fd, at), at);
    close(fd);
    assert_int_equal(gw_audit_write(a, &r, 0), 0);
    assert_int_equal(status(a, why), GW_ERR_IO);
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    assert_int_equal(status(a, why), 0);
    assert_string_equal(why, "");
    gw_audit_close(a);
    close(rd);
    unlink(path);
    unlink(log);

    /* a reopen: the new file has not failed (the rotated one's fsync failing is logged apart) */
    a = open_on_fifo("fifo4", &rd, NULL);
    assert_int_equal(gw_audit_write(a, &r, 1), GW_ERR_IO);
    assert_int_equal(status(a, why), GW_ERR_IO);
    assert_int_equal(gw_audit_reopen(a), 0);
    assert_int_equal(status(a, why), 0);
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    gw_audit_close(a);
    close(rd);
    unlink(path);
    snprintf(log, sizeof(log), "%s/fifo4.log", dir);
    unlink(log);
}

/*
 * The prober's fsync (gw_audit_probe): with /readyz down a balancer sends no request, so no record
 * would run the fsync that shows the disk works again. While the last fsync failed it tries one, and
 * readiness comes back without a record; while none failed it runs none.
 */
static void test_fsync_failure_probed(void **state)
{
    struct gw_audit_rec r = {.event = "issued"};
    char why[GW_ERR_LEN], log[160];
    struct gw_audit *a;
    unsigned long n;
    int rd, at, fd;

    (void)state;
    a = open_on_fifo("fifo5", &rd, &at);
    n = gw_audit_fsyncs();
    gw_audit_probe(a); /* nothing failed: no fsync */
    assert_int_equal(gw_audit_fsyncs(), n);
    assert_int_equal(gw_audit_write(a, &r, 1), GW_ERR_IO);
    assert_int_equal(status(a, why), GW_ERR_IO);
    gw_audit_probe(a); /* the disk still fails: so does readiness */
    gw_audit_probe_wait(a);
    assert_int_equal(gw_audit_fsyncs(), n + 2);
    assert_int_equal(status(a, why), GW_ERR_IO);
    assert_non_null(strstr(why, "fsync"));
    snprintf(log, sizeof(log), "%s/fifo5.log", dir);
    assert_true((fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600)) >= 0);
    assert_int_equal(dup2(fd, at), at);
    close(fd);
    gw_audit_probe(a); /* the disk works again: ready, no record written */
    gw_audit_probe_wait(a);
    assert_int_equal(gw_audit_fsyncs(), n + 3);
    assert_int_equal(status(a, why), 0);
    assert_string_equal(why, "");
    gw_audit_probe(a);
    gw_audit_probe_wait(a);
    assert_int_equal(gw_audit_fsyncs(), n + 3);
    assert_int_equal(gw_audit_write(a, &r, 1), 0);
    gw_audit_close(a);
    close(rd);
    unlink(path);
    unlink(log);
}

/*
 * The prober's fsync on a hung disk: gw_audit_probe returns at once, the fsync held on a thread of its
 * own, not the prober's (whose upstream probes, test signatures and a reload's or shutdown's join of it
 * would wait as long as the disk); the next ticks start no second one while it hangs; closing the log
 * meanwhile does not wait for it, and the log lives on until it returns.
 */
static void test_fsync_probe_hung(void **state)
{
    struct gw_audit_rec r = {.event = "issued"};
    char why[GW_ERR_LEN];
    struct gw_audit *a;
    int rd, at;

    (void)state;
    a = open_on_fifo("fifo6", &rd, &at);
    assert_int_equal(gw_audit_write(a, &r, 1), GW_ERR_IO);
    hold_fsync(at);
    gw_audit_probe(a);
    assert_int_equal(held.inline_calls, 0); /* before: the probe's fsync ran on the calling thread */
    assert_true(held_entered(1));
    gw_audit_probe(a); /* the next tick: one is hung already */
    gw_audit_probe(a);
    assert_int_equal(status(a, why), GW_ERR_IO);
    pthread_mutex_lock(&held.lock);
    assert_int_equal(held.entered, 1);
    assert_int_equal(held.inline_calls, 0);
    pthread_mutex_unlock(&held.lock);
    gw_audit_close(a); /* the thread's reference keeps it; its end frees it */
    release_fsync();
    assert_true(held_entered(2)); /* the last holder's close syncs once more, then the number is free */
    hold_fsync(-1);
    close(rd);
    unlink(path);
}

/*
 * A stop while the prober's fsync hangs: the gateway closes the log and frees the metrics registry
 * (its last steps), and only then does the fsync return. The thread touches neither: it holds its own
 * reference to the log, and the fsyncs it counts are read by the registry when rendered, not added to
 * it. Under ASan, a thread that added to the registry is a use after free.
 */
static void test_fsync_probe_outlives_teardown(void **state)
{
    struct gw_audit_rec r = {.event = "issued"};
    char *text = NULL, line[96];
    struct gw_audit *a;
    size_t len;
    int rd, at;

    (void)state;
    a = open_on_fifo("fifo7", &rd, &at);
    assert_int_equal(gw_audit_write(a, &r, 1), GW_ERR_IO); /* an fsync counted: the counter is in use */
    assert_int_equal(gw_metrics_render(&text, &len), 0);
    snprintf(line, sizeof(line), "\ncmpgw_audit_fsyncs_total %lu\n", gw_audit_fsyncs());
    assert_non_null(strstr(text, line));
    free(text);
    hold_fsync(at);
    gw_audit_probe(a);
    assert_true(held_entered(1));
    gw_audit_close(a);
    gw_metrics_free_all(); /* every handle is invalid from here on */
    release_fsync();
    assert_true(held_entered(2)); /* the thread is past its fsync: its last close syncs once more */
    hold_fsync(-1);
    close(rd);
    unlink(path);
}

/* Group commit: writers that share a failed fsync each learn that it failed (a FIFO cannot be
 * fsync'd); none is told its record is on disk on the strength of a later one. */
static void *sync_writer(void *arg)
{
    struct gw_audit_rec r = {.event = "issued"};

    for (int i = 0; i < 20; i++)
        if (gw_audit_write(arg, &r, 1) != GW_ERR_IO)
            return (void *)1;
    return NULL;
}

static void *drain(void *arg)
{
    char buf[65536];
    int fd = *(int *)arg;

    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    return NULL;
}

static void test_group_commit_failure_shared(void **state)
{
    pthread_t t[4], d;
    struct gw_audit *a;
    void *rv;
    int rd;

    (void)state;
    a = open_on_fifo("fifo2", &rd, NULL);
    fcntl(rd, F_SETFL, 0); /* blocking reads: the drain keeps the writers going */
    assert_int_equal(pthread_create(&d, NULL, drain, &rd), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, sync_writer, a), 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    gw_audit_close(a); /* the last writer gone: the drain reads EOF */
    assert_int_equal(pthread_join(d, NULL), 0);
    close(rd);
    unlink(path);
}

/* Many threads: every line whole. */
#define THREADS 4
#define PER_THREAD 200

static void *writer(void *arg)
{
    struct gw_audit_rec r = {.event = "issued", .identity = "CN=concurrent writer with a longish identity"};
    int i;

    for (i = 0; i < PER_THREAD; i++)
        if (gw_audit_write(arg, &r, i % 50 == 0) != 0)
            return (void *)1;
    return NULL;
}

static void test_concurrent(void **state)
{
    static json_object *l[THREADS * PER_THREAD + 1];
    pthread_t t[THREADS];
    struct gw_audit *a;
    void *rv;
    unsigned long before = gw_audit_fsyncs();
    int i;

    (void)state;
    assert_non_null(a = open_log(fresh("conc.log"), GW_AUDIT_COMMON_NAME));
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, a), 0);
    for (i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    /* each synced record was covered by an fsync, some of them shared (at most one each) */
    assert_true(gw_audit_fsyncs() - before >= 1);
    assert_true(gw_audit_fsyncs() - before <= THREADS * (PER_THREAD / 50));
    gw_audit_close(a);
    assert_int_equal(read_lines(path, l, THREADS * PER_THREAD + 1), THREADS * PER_THREAD);
    free_lines(l, THREADS * PER_THREAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_fields),
        cmocka_unit_test(test_fields_per_config),
        cmocka_unit_test(test_from_csr_and_key_types),
        cmocka_unit_test(test_empty_record),
        cmocka_unit_test(test_hostile_strings),
        cmocka_unit_test(test_unbuilt),
        cmocka_unit_test(test_txn_fields_bounded),
        cmocka_unit_test(test_hostile_names_bounded),
        cmocka_unit_test(test_reopen_rotation),
        cmocka_unit_test(test_reopen_failure_keeps_old),
        cmocka_unit_test(test_reopen_names_masked),
        cmocka_unit_test(test_unwritable),
        cmocka_unit_test(test_write_failure_not_probed),
        cmocka_unit_test(test_failed_write_torn_lines),
        cmocka_unit_test(test_fsync_checked),
        cmocka_unit_test(test_fsync_failure_stays),
        cmocka_unit_test(test_fsync_probe_hung),
        cmocka_unit_test(test_fsync_probe_outlives_teardown),
        cmocka_unit_test(test_fsync_failure_probed),
        cmocka_unit_test(test_group_commit_failure_shared),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_created_as_root_given),
        cmocka_unit_test(test_root_creates_as_the_user),
        cmocka_unit_test(test_unreachable_directory_refused),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
