/*
 * Route table: request path -> role. Pure: no I/O, no h2o, no curl.
 *
 * Paths (prefix from the config, default "/pki"; RFC 9811 §3 for the well-known ones):
 *   <prefix>/cmp                      default_path_policy
 *   <prefix>/roles/<role>/cmp         that role
 *   /.well-known/cmp                  default_path_policy
 *   /.well-known/cmp/p/<label>        label_to_path_policy[label]
 * Each may be followed by one RFC 9483 operation segment (initialization, certification,
 * keyupdate, pkcs10, revocation, getcacerts, getrootupdate, getcertreqtemplate, getcrls, nested)
 * and by a trailing slash. The operation label is a hint only: the PKIBody type decides.
 *
 * Besides CMP (POST), one GET path: <prefix>/crl/<upstream>[.crl], the CRL of a local issuer
 * (public, like any CRL: no role, no client authentication).
 */
#ifndef GW_ROUTE_H
#define GW_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include "mappings/role.h"

enum gw_route_kind {
    GW_ROUTE_DEFAULT = 0, /* <prefix>/cmp */
    GW_ROUTE_ROLE,        /* <prefix>/roles/<role>/cmp */
    GW_ROUTE_WELLKNOWN,   /* /.well-known/cmp */
    GW_ROUTE_LABEL,       /* /.well-known/cmp/p/<label> */
    GW_ROUTE_CRL,         /* <prefix>/crl/<upstream>[.crl]: GET, a local issuer's CRL */
};

struct gw_route_match {
    enum gw_route_kind kind;
    const struct gw_role *role; /* borrowed from the config; NULL for GW_ROUTE_CRL */
    const char *upstream;       /* GW_ROUTE_CRL: the upstream's name; else NULL */
    char operation[32];         /* RFC 9483 operation segment, "" if none */
};

/* An upstream as the CRL path sees it: its name, and whether cmpgw is its CA (then it serves its CRL). */
struct gw_route_upstream {
    const char *name;
    bool own_ca;
};

/* What routing reads of a configuration snapshot: borrowed pointers into it, which outlive it. */
struct gw_routes {
    const char *path_prefix; /* "/pki" when NULL */
    const struct gw_role *roles;
    size_t n_roles;
    const struct gw_path_policy *default_policy;
    const struct gw_label *labels;
    size_t n_labels;
    const struct gw_profile *profiles;
    size_t n_profiles;
    const struct gw_route_upstream *upstreams;
    size_t n_upstreams;
};

/*
 * gw_route_match maps |path| (no query string) to a role. Returns 0, GW_ERR_NOT_FOUND for an
 * unknown path, role or label, or GW_ERR_FORBIDDEN when the path's policy is "forbid"; |err|
 * (GW_ERR_LEN) gets a one-line reason fit for an HTTP body.
 */
int gw_route_match(const struct gw_routes *rt, const char *path, size_t len, struct gw_route_match *out,
                   char *err);

/*
 * gw_route_profile applies the certificate profile a request names (RFC 9483 §3.1:
 * id-it-certProfile) to the route |m| matched: on <prefix>/cmp and /.well-known/cmp the profile
 * selects its role ("profiles"); on a role or label path it must name the role the path serves.
 * |name| "" (none named) keeps the path's role. Returns 0 with *role set, GW_ERR_NOT_FOUND for an
 * unknown profile or GW_ERR_POLICY for one of another role, with *role NULL and the same statusString
 * in |err| for both (GW_TEXT_PROFILE_NOT_SERVED): a client without credentials cannot tell them apart,
 * the log can.
 */
#define GW_TEXT_PROFILE_NOT_SERVED                                                                           \
    "certProfile \"%s\" is not served on this path: name a profile this server's operator gave you for "     \
    "this path, or leave certProfile out"
int gw_route_profile(const struct gw_routes *rt, const struct gw_route_match *m, const char *name,
                     const struct gw_role **role, char *err);

/* gw_route_is_get tells whether the route of |m| is served by GET (and HEAD); CMP routes take POST. */
int gw_route_is_get(const struct gw_route_match *m);

/* gw_route_operation_valid tells whether |seg| is a registered RFC 9483 operation label. */
int gw_route_operation_valid(const char *seg, size_t len);

#endif
