/*
 * `cmpgw report` (report.h). The audit log is read line by line; the counts are kept in a JSON
 * tree, printed as it is with --json or as a table. The log is the gateway's own, but a line is
 * still treated as data (an older gateway wrote characters the log's escaper now replaces, a JSON
 * escape decodes to a control): every name is kept repaired (gw_utf8_repair) and printed through the
 * shared escaper, and a line that is not an audit record is counted and skipped.
 */
#include "gateway/report.h"
#include "base/conf.h"
#include "base/limits.h"
#include "base/log.h"
#include "mappings/role.h"
#include "upstream/upstream.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <openssl/asn1.h>

/* What a shadow record's status begins with (gateway/cmp/policy.c), and its key in the report. */
static const struct {
    const char *prefix, *key;
} shadow_kinds[] = {
    {"would issue", "issue"},
    {"would refuse", "refuse"},
    {"would change", "change"},
    {"not checked", "unchecked"},
};

bool gw_report_since_ok(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    char gen[] = "00000000000000Z"; /* GeneralizedTime, YYYYMMDDHHMMSSZ: what is not given stays 0 */
    size_t n = strlen(s), g = 0;

    if (n > 0 && s[n - 1] == 'Z')
        n--;
    if (n < 10 || n > sizeof(shape) - 1 || (n != 10 && n != 13 && n != 16 && n != 19))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return false;
        if (shape[i] == 'd')
            gen[g++] = s[i];
    }
    /* OpenSSL's check of the fields' ranges (a month's days, leap years): 2026-13-01 or 2026-02-30 is
       no time, and as a prefix of the records' times it would still sort, and count, as one */
    return ASN1_GENERALIZEDTIME_set_string(NULL, gen) == 1;
}

/* |obj|[key], created as |make|() when absent. */
static json_object *child(json_object *obj, const char *key, json_object *(*make)(void))
{
    json_object *v;

    if (json_object_object_get_ex(obj, key, &v))
        return v;
    v = make();
    json_object_object_add(obj, key, v);
    return v;
}

static json_object *zero(void)
{
    return json_object_new_int64(0);
}

static void bump(json_object *obj, const char *key)
{
    json_object_int_inc(child(obj, key, zero), 1);
}

static const char *str(json_object *rec, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(rec, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

/*
 * |rec|[key] as a name the report keeps (a key of its tree, printed as the table's or the JSON's):
 * repaired into |buf|, so that no character a reader would not see as itself reaches either; |dflt|
 * when absent or empty.
 */
static const char *name_of(json_object *rec, const char *key, char buf[GW_REPORT_NAME_LEN], const char *dflt)
{
    const char *s = str(rec, key);

    if (s == NULL || s[0] == '\0')
        return dflt;
    gw_utf8_repair(buf, GW_REPORT_NAME_LEN, s);
    return buf;
}

/* Whether |upstream| issues for a migrating role's new CA: "to" itself, or a delegate standing in for it. */
static bool new_side(const struct gw_role *r, const char *upstream)
{
    if (strcmp(upstream, r->migration.to_name) == 0)
        return true;
    return r->delegate_name != NULL && strcmp(upstream, r->delegate_name) == 0 &&
           gw_upstream_delegated_for(r) == r->migration.to;
}

struct report {
    const struct gw_config *cfg;
    json_object *roles;   /* role -> {"upstreams": {...}, "shadow": {...}, ...} */
    json_object *devices; /* role -> {device: true (last issued by "to") | false} */
};

static json_object *role_entry(struct report *rp, const char *name)
{
    json_object *e;
    const struct gw_role *r;

    if (json_object_object_get_ex(rp->roles, name, &e))
        return e;
    e = json_object_new_object();
    json_object_object_add(rp->roles, name, e);
    json_object_object_add(e, "upstreams", json_object_new_object());
    if ((r = gw_role_named(rp->cfg->roles, rp->cfg->n_roles, name)) != NULL &&
        gw_migration_configured(&r->migration)) {
        static const char *const modes[] = {"off", "shadow", "live"};
        json_object *m = json_object_new_object();

        json_object_object_add(m, "name", json_object_new_string(r->migration.name));
        json_object_object_add(m, "from", json_object_new_string(r->migration.from_name));
        json_object_object_add(m, "to", json_object_new_string(r->migration.to_name));
        json_object_object_add(m, "mode", json_object_new_string(modes[r->migration.mode]));
        json_object_object_add(e, "migration", m);
        json_object_object_add(rp->devices, name, json_object_new_object());
    }
    return e;
}

static json_object *upstream_entry(json_object *role, const char *upstream)
{
    json_object *ups, *u;

    json_object_object_get_ex(role, "upstreams", &ups);
    if (json_object_object_get_ex(ups, upstream, &u))
        return u;
    u = json_object_new_object();
    json_object_object_add(ups, upstream, u);
    for (const char *const *k = (const char *const[]){"requests", "issued", "revoked", "unconfirmed", NULL};
         *k; k++)
        json_object_object_add(u, *k, zero());
    json_object_object_add(u, "refused", json_object_new_object());
    return u;
}

/* "rejection: <failInfo>: <text>" -> failInfo (repaired into |buf|), or "unknown". */
static const char *fail_info(const char *status, char buf[GW_REPORT_NAME_LEN])
{
    const char *p = status != NULL ? strstr(status, "rejection: ") : NULL;
    char word[GW_REPORT_NAME_LEN];
    size_t n;

    if (p == NULL)
        return "unknown";
    p += strlen("rejection: ");
    n = strcspn(p, ":");
    if (n == 0 || n >= sizeof(word) || p[n] != ':')
        return "unknown";
    memcpy(word, p, n);
    word[n] = '\0';
    gw_utf8_repair(buf, GW_REPORT_NAME_LEN, word);
    return buf;
}

static void add_record(struct report *rp, json_object *rec)
{
    char role_buf[GW_REPORT_NAME_LEN], up_buf[GW_REPORT_NAME_LEN], buf[GW_REPORT_NAME_LEN];
    const char *event = str(rec, "event"), *role = name_of(rec, "role", role_buf, "-");
    const char *up = name_of(rec, "upstream", up_buf, "-");
    const char *status = str(rec, "status"), *body = str(rec, "body_type");
    const struct gw_role *r;
    json_object *e, *devices;

    e = role_entry(rp, role);
    if (strcmp(event, "shadow") == 0) {
        const char *kind = "unchecked";

        for (size_t i = 0; status != NULL && i < sizeof(shadow_kinds) / sizeof(shadow_kinds[0]); i++)
            if (strncmp(status, shadow_kinds[i].prefix, strlen(shadow_kinds[i].prefix)) == 0)
                kind = shadow_kinds[i].key;
        bump(child(e, "shadow", json_object_new_object), kind);
        return;
    }
    if (strcmp(event, "intent") == 0 && (body == NULL || strcmp(body, "rr") != 0)) /* rr: see "revoked" */
        bump(upstream_entry(e, up), "requests");
    else if (strcmp(event, "issued") == 0)
        bump(upstream_entry(e, up), "issued");
    else if (strcmp(event, "revoked") == 0)
        bump(upstream_entry(e, up), "revoked");
    else if (strcmp(event, "rejected_by_client") == 0 || strcmp(event, "expired_unconfirmed") == 0)
        bump(upstream_entry(e, up), "unconfirmed");
    else if (strcmp(event, "rejected") == 0)
        bump(json_object_object_get(upstream_entry(e, up), "refused"), fail_info(status, buf));
    /* a device's side is that of the last certificate issued to it (the log is in time order) */
    if (strcmp(event, "issued") == 0 && (r = gw_role_named(rp->cfg->roles, rp->cfg->n_roles, role)) != NULL &&
        json_object_object_get_ex(rp->devices, role, &devices)) {
        const char *dev = str(rec, "common_name");

        if (dev == NULL || dev[0] == '\0')
            dev = str(rec, "identity");
        if (dev != NULL && dev[0] != '\0')
            json_object_object_add(devices, dev, json_object_new_boolean(new_side(r, up)));
    }
}

/* The devices' counts into each migrating role's entry. */
static void count_devices(struct report *rp)
{
    json_object_object_foreach(rp->devices, role, devs)
    {
        int64_t moved = 0, stayed = 0;
        json_object *e, *d = json_object_new_object();

        json_object_object_foreach(devs, dev, side)
        {
            (void)dev;
            if (json_object_get_boolean(side))
                moved++;
            else
                stayed++;
        }
        json_object_object_add(d, "on_to", json_object_new_int64(moved));
        json_object_object_add(d, "on_from", json_object_new_int64(stayed));
        if (json_object_object_get_ex(rp->roles, role, &e))
            json_object_object_add(e, "devices", d);
        else
            json_object_put(d);
    }
}

/* A name, as the shared escaper writes plain text, padded to |width| characters. */
static void put_name(FILE *out, const char *s, int width)
{
    char buf[6 * GW_REPORT_NAME_LEN + 1];
    int n = 0;

    gw_text_escape(buf, sizeof(buf), s != NULL ? s : "", s != NULL ? strlen(s) : 0);
    fputs(buf, out);
    for (const char *p = buf; *p != '\0'; p++)
        n += ((unsigned char)*p & 0xc0) != 0x80; /* a character starts here */
    for (; n < width; n++)
        fputc(' ', out);
}

static int64_t num(json_object *obj, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(obj, key, &v) ? json_object_get_int64(v) : 0;
}

static void print_role(FILE *out, const char *name, json_object *e)
{
    json_object *m = NULL, *ups, *shadow, *devs;

    fprintf(out, "role ");
    put_name(out, name, 0);
    if (json_object_object_get_ex(e, "migration", &m)) {
        fprintf(out, ": migration ");
        put_name(out, str(m, "name"), 0);
        fprintf(out, ", ");
        put_name(out, str(m, "from"), 0);
        fprintf(out, " -> ");
        put_name(out, str(m, "to"), 0);
        fprintf(out, ", mode %s", str(m, "mode"));
    }
    fprintf(out, "\n  %-20s %10s %10s %10s %12s %10s\n", "upstream", "requests", "issued", "revoked",
            "unconfirmed", "refused");
    json_object_object_get_ex(e, "upstreams", &ups);
    json_object_object_foreach(ups, up, u)
    {
        int64_t refused = 0;

        json_object_object_foreach(json_object_object_get(u, "refused"), fi, n)
        {
            (void)fi;
            refused += json_object_get_int64(n);
        }
        fprintf(out, "  ");
        put_name(out, up, 20);
        fprintf(out, " %10lld %10lld %10lld %12lld %10lld\n", (long long)num(u, "requests"),
                (long long)num(u, "issued"), (long long)num(u, "revoked"), (long long)num(u, "unconfirmed"),
                (long long)refused);
        if (refused > 0) {
            fprintf(out, "    refused by failInfo:");
            json_object_object_foreach(json_object_object_get(u, "refused"), fi2, n2)
            {
                fprintf(out, " ");
                put_name(out, fi2, 0);
                fprintf(out, " %lld", (long long)json_object_get_int64(n2));
            }
            fprintf(out, "\n");
        }
    }
    if (json_object_object_get_ex(e, "shadow", &shadow))
        fprintf(out,
                "  shadow checks against the new CA: %lld would be issued, %lld refused, %lld changed, "
                "%lld not checked\n",
                (long long)num(shadow, "issue"), (long long)num(shadow, "refuse"),
                (long long)num(shadow, "change"), (long long)num(shadow, "unchecked"));
    if (json_object_object_get_ex(e, "devices", &devs) && m != NULL) {
        fprintf(out, "  devices last issued by ");
        put_name(out, str(m, "to"), 0);
        fprintf(out, ": %lld; still on ", (long long)num(devs, "on_to"));
        put_name(out, str(m, "from"), 0);
        fprintf(out, ": %lld\n", (long long)num(devs, "on_from"));
    }
}

/* The roles the audit log names, for the error of a --role it does not (a few: GW_REPORT_ROLES_NAMED). */
struct known_roles {
    json_object *names; /* name -> null, repaired as name_of keeps it */
    size_t more;        /* names past the cap, not kept */
    bool asked;         /* the --role asked for is among them */
};

static void know_role(struct known_roles *k, json_object *rec, const char *asked)
{
    char buf[GW_REPORT_NAME_LEN];
    const char *name = name_of(rec, "role", buf, NULL);

    if (strcmp(str(rec, "role"), asked) == 0)
        k->asked = true;
    if (name == NULL || json_object_object_get_ex(k->names, name, NULL))
        return;
    if (json_object_object_length(k->names) >= GW_REPORT_ROLES_NAMED)
        k->more++;
    else
        json_object_object_add(k->names, name, NULL);
}

/*
 * Says on stderr that neither |cfg| nor the audit log |log| knows the role |asked| (`--role`, a typo most
 * likely), and which roles they do know: a report of no records would read as a role with no traffic.
 */
static void unknown_role(const struct gw_config *cfg, const char *log, const char *asked,
                         const struct known_roles *k)
{
    const char *sep = "";

    fprintf(stderr, "cmpgw: --role \"");
    put_name(stderr, asked, 0);
    fprintf(stderr, "\": no role of that name in %s or the audit log %s; known: ", cfg->path, log);
    for (size_t i = 0; i < cfg->n_roles; i++, sep = ", ") {
        fputs(sep, stderr);
        put_name(stderr, cfg->roles[i].name, 0);
    }
    json_object_object_foreach(k->names, name, v)
    {
        (void)v;
        if (gw_role_named(cfg->roles, cfg->n_roles, name) != NULL)
            continue;
        fputs(sep, stderr);
        put_name(stderr, name, 0);
        sep = ", ";
    }
    if (k->more > 0)
        fprintf(stderr, "%s%zu more", sep, k->more);
    fprintf(stderr, "%s\n", sep[0] == '\0' ? "none" : "");
}

int gw_report_run(const struct gw_config *cfg, const struct gw_report_opts *o, FILE *out)
{
    const char *path = o->audit_file != NULL ? o->audit_file : cfg->audit.file;
    struct report rp = {cfg, json_object_new_object(), json_object_new_object()};
    char *line = NULL, since[32] = "", shown[GW_ERR_LEN];
    size_t cap = 0, lineno = 0, records = 0, bad = 0;
    struct known_roles known = {json_object_new_object(), 0, false};
    ssize_t len;
    int rc = 1;
    FILE *in;

    if (path == NULL) {
        fprintf(stderr, "cmpgw: %s configures no audit log (\"audit\": {\"file\": ...})\n", cfg->path);
        goto out;
    }
    gw_conf_show_file(path, shown, sizeof(shown));
    if ((in = fopen(path, "r")) == NULL) {
        fprintf(stderr, "cmpgw: cannot read the audit log %s: %s\n", shown, strerror(errno));
        goto out;
    }
    if (o->since !=
        NULL) /* "2026-12-01T10:00:00Z" -> a prefix that sorts before every record of that second */
        snprintf(since, sizeof(since), "%.*s", (int)strcspn(o->since, "Z"), o->since);
    while ((len = getline(&line, &cap, in)) > 0) {
        json_object *rec = NULL;
        const char *t, *role;

        lineno++;
        if (len == 1 && line[0] == '\n')
            continue;
        if ((rec = json_tokener_parse(line)) == NULL || !json_object_is_type(rec, json_type_object) ||
            str(rec, "event") == NULL || (t = str(rec, "time")) == NULL) {
            if (bad++ < 5)
                fprintf(stderr, "cmpgw: %s line %zu: not an audit record; skipped\n", path, lineno);
            json_object_put(rec);
            continue;
        }
        role = str(rec, "role");
        if (role != NULL && o->role != NULL)
            know_role(&known, rec, o->role);
        if ((since[0] == '\0' || strcmp(t, since) >= 0) &&
            (o->role == NULL || (role != NULL && strcmp(role, o->role) == 0))) {
            add_record(&rp, rec);
            records++;
        }
        json_object_put(rec);
    }
    free(line);
    fclose(in);
    if (o->role != NULL && !known.asked && gw_role_named(cfg->roles, cfg->n_roles, o->role) == NULL) {
        unknown_role(cfg, shown, o->role, &known);
        rc = GW_REPORT_UNKNOWN_ROLE;
        goto out;
    }
    count_devices(&rp);
    if (o->json) {
        json_object *top = json_object_new_object();

        json_object_object_add(top, "audit_log", json_object_new_string(path));
        if (o->since != NULL)
            json_object_object_add(top, "since", json_object_new_string(o->since));
        json_object_object_add(top, "records", json_object_new_int64((int64_t)records));
        json_object_object_add(top, "unreadable_lines", json_object_new_int64((int64_t)bad));
        json_object_object_add(top, "roles", json_object_get(rp.roles));
        fprintf(
            out, "%s\n",
            json_object_to_json_string_ext(top, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(top);
    } else {
        fprintf(out, "audit log %s%s%s: %zu records", path, o->since != NULL ? " since " : "",
                o->since != NULL ? o->since : "", records);
        if (bad > 0)
            fprintf(out, ", %zu unreadable lines", bad);
        fprintf(out, "\n");
        json_object_object_foreach(rp.roles, name, e)
        {
            fprintf(out, "\n");
            print_role(out, name, e);
        }
    }
    if (bad > 0)
        fprintf(stderr, "cmpgw: %zu line(s) of %s were not audit records\n", bad, path);
    rc = bad > 0 ? 1 : 0;
out:
    json_object_put(rp.roles);
    json_object_put(rp.devices);
    json_object_put(known.names);
    return rc;
}
