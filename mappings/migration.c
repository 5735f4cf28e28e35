/*
 * Staged migration: the configuration of a role's "migration" and its cohort (migration.h).
 */
#include "mappings/migration.h"
#include "base/err.h"
#include "base/limits.h"
#include "base/x509.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/evp.h>

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The cohort's allow-list: one one-line subject per line, '#' comments, sorted for bsearch. */
static int load_cohort(struct gw_conf_ctx *pc, const char *path, struct gw_cohort *m)
{
    char buf[GW_MAX_ALLOWLIST_LINE + 2], *s, shown[GW_ERR_LEN];
    long lineno = 0;
    int len, rc = 0;
    BIO *bio;

    if ((bio = gw_conf_open(pc, path, m->allowlist_file)) == NULL)
        return GW_ERR_INVAL;
    gw_conf_show_file(m->allowlist_file, shown, sizeof(shown));
    while (rc == 0 && (len = BIO_gets(bio, buf, sizeof(buf))) > 0) {
        char **tmp;

        lineno++;
        if (buf[len - 1] != '\n' && len == (int)sizeof(buf) - 1) {
            rc = gw_conf_fail(pc, path, "\"%s\" line %ld: longer than %d characters", shown, lineno,
                              GW_MAX_ALLOWLIST_LINE);
            break;
        }
        for (s = buf; *s == ' ' || *s == '\t'; s++)
            ;
        s[strcspn(s, "\r\n")] = '\0';
        for (size_t n = strlen(s); n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'); n--)
            s[n - 1] = '\0';
        if (s[0] == '\0' || s[0] == '#')
            continue;
        if (s[0] != '/') {
            rc = gw_conf_fail(
                pc, path, "\"%s\" line %ld: expected a one-line subject (\"/O=.../CN=...\"), got \"%.40s\"",
                shown, lineno, s);
            break;
        }
        if (m->n_allow >= GW_MAX_ALLOWLIST_ENTRIES) {
            rc = gw_conf_fail(pc, path, "\"%s\": more than %d entries", shown, GW_MAX_ALLOWLIST_ENTRIES);
            break;
        }
        if ((tmp = realloc(m->allow, (m->n_allow + 1) * sizeof(*tmp))) == NULL ||
            (tmp[m->n_allow] = strdup(s)) == NULL) {
            if (tmp != NULL)
                m->allow = tmp;
            rc = GW_ERR_NOMEM;
            break;
        }
        m->allow = tmp;
        m->n_allow++;
    }
    BIO_free(bio);
    if (rc == 0 && m->n_allow > 1)
        qsort(m->allow, m->n_allow, sizeof(*m->allow), by_string);
    return rc;
}

static const struct gw_conf_enum mode_names[] = {{"off", GW_MIGRATION_OFF, NULL},
                                                 {"shadow", GW_MIGRATION_SHADOW, NULL},
                                                 {"live", GW_MIGRATION_LIVE, NULL},
                                                 {NULL, 0, NULL}};

static const struct gw_conf_enum by_names[] = {{"signer_subject", GW_COHORT_SIGNER_SUBJECT, NULL},
                                               {"subject", GW_COHORT_SUBJECT, NULL},
                                               {NULL, 0, NULL}};

/* "percent" absent is told from 0 (a rollback) by this value. */
#define PERCENT_UNSET 1000

static int check_cohort(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_cohort *m = base;
    char kpath[GW_CONF_PATH_LEN];

    if ((m->allowlist_file != NULL) == (m->percent != PERCENT_UNSET))
        return gw_conf_fail(pc, path, "expected exactly one of \"allowlist\" and \"percent\"");
    gw_conf_join_key(kpath, path, "allowlist");
    return m->allowlist_file != NULL ? load_cohort(pc, kpath, m) : 0;
}

static const struct gw_conf_field cohort_fields[] = {
    GW_CONF_OPT("allowlist", gw_conf_p_file, struct gw_cohort, allowlist_file),
    GW_CONF_OPT("percent", gw_conf_p_u32, struct gw_cohort, percent, .min = 0, .max = 100,
                .def = PERCENT_UNSET),
    GW_CONF_OPT("by", gw_conf_p_enum, struct gw_cohort, by, .def = GW_COHORT_SIGNER_SUBJECT, .aux = by_names),
};
GW_CONF_OBJDEF(cohort_def, cohort_fields, check_cohort);

static const struct gw_conf_field migration_fields[] = {
    GW_CONF_OPT("name", gw_conf_p_name, struct gw_migration, name, .aux = &gw_conf_names_plain),
    GW_CONF_REQ("from", gw_conf_p_name, struct gw_migration, from_name, .aux = &gw_conf_names_plain),
    GW_CONF_REQ("to", gw_conf_p_name, struct gw_migration, to_name, .aux = &gw_conf_names_plain),
    GW_CONF_OPT("mode", gw_conf_p_enum, struct gw_migration, mode, .def = GW_MIGRATION_OFF,
                .aux = mode_names),
    GW_CONF_REQ("cohort", gw_conf_p_obj, struct gw_migration, cohort, .aux = &cohort_def),
};

static int check_migration(struct gw_conf_ctx *pc, const char *path, void *base)
{
    struct gw_migration *m = base;

    if (strcmp(m->from_name, m->to_name) == 0)
        return gw_conf_fail(pc, path, "\"from\" and \"to\" name the same upstream \"%s\"", m->to_name);
    return 0;
}
const struct gw_conf_obj gw_migration_conf_def = {
    migration_fields, sizeof(migration_fields) / sizeof(migration_fields[0]), check_migration};

bool gw_migration_in_cohort(const struct gw_migration *m, const char *key)
{
    unsigned char md[32];
    unsigned int md_len = 0;
    uint64_t h = 0;
    EVP_MD_CTX *ctx;
    bool ok;

    /* the whole fleet: also a device whose subject has no one-line form to hash or look up (none, or a
       '/' or backslash inside a value), or it would be the one request left to the old CA */
    if (m->cohort.allowlist_file == NULL && m->cohort.percent >= 100)
        return true;
    if (key == NULL || key[0] == '\0')
        return false;
    if (m->cohort.allowlist_file != NULL)
        return m->cohort.n_allow > 0 &&
               bsearch(&key, m->cohort.allow, m->cohort.n_allow, sizeof(*m->cohort.allow), by_string) != NULL;
    if (m->cohort.percent == 0)
        return false;
    if ((ctx = EVP_MD_CTX_new()) == NULL)
        return false;
    /* name || 0x00 || key: no name and key can be shifted into another pair with the same hash input */
    ok = EVP_DigestInit_ex(ctx, gw_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(ctx, m->name, strlen(m->name) + 1) == 1 &&
         EVP_DigestUpdate(ctx, key, strlen(key)) == 1 && EVP_DigestFinal_ex(ctx, md, &md_len) == 1 &&
         md_len >= 8;
    EVP_MD_CTX_free(ctx);
    for (int i = 0; ok && i < 8; i++)
        h = h << 8 | md[i];
    return ok && h % 10000 < (uint64_t)m->cohort.percent * 100;
}

void gw_migration_cleanup(struct gw_migration *m)
{
    free(m->name);
    free(m->from_name);
    free(m->to_name);
    free(m->cohort.allowlist_file);
    gw_conf_free_strings(m->cohort.allow, m->cohort.n_allow);
    memset(m, 0, sizeof(*m));
}
