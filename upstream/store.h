/*
 * The durable inventory of a local issuer ("store": DESIGN.md decision 5): one <serial hex>.pem per
 * certificate issued, on disk before the certificate is released. `cmpgw inventory` lists it.
 * No I/O on h2o objects; callable from any thread (each call works on its own files).
 */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stddef.h>
#include <time.h>
#include <openssl/x509.h>

/*
 * gw_store_put writes |cert| as <dir>/<serial hex>.pem durably: a temporary file, fsync, a hard link
 * to the final name (which never replaces an existing one), fsync of the directory. Returns 0, or
 * GW_ERR_EXISTS (that serial is already recorded) or GW_ERR_IO / GW_ERR_NOMEM with a one-line reason
 * in |err| (GW_ERR_LEN). On failure nothing is left under the final name. (worker)
 */
int gw_store_put(const char *dir, const X509 *cert, char *err);

/* gw_store_serial_hex writes the serial of |cert| as lowercase hex (the file name, the audit "serial"). */
void gw_store_serial_hex(const X509 *cert, char *out, size_t cap);

struct gw_store_entry {
    char serial[2 * 20 + 1]; /* RFC 5280 §4.1.2.2: at most 20 octets */
    time_t not_before, not_after;
    char *subject; /* RFC 2253 one line, control characters escaped */
    char *sans;    /* "DNS:a,IP:127.0.0.1,URI:...,email:...", control characters escaped */
};

struct gw_store_list {
    struct gw_store_entry *v;
    size_t n;
    size_t n_bad; /* files named *.pem that could not be read as a certificate */
};

/*
 * gw_store_list reads every <dir>/<name>.pem, sorted by notBefore (then serial). Unreadable files are
 * counted in |out->n_bad| and named in |err| (the last one), not fatal. Returns 0, or GW_ERR_IO /
 * GW_ERR_NOMEM / GW_ERR_LIMIT (more than GW_STORE_LIST_MAX) with |err|; |out| is then empty.
 */
int gw_store_list(const char *dir, struct gw_store_list *out, char *err);
void gw_store_list_cleanup(struct gw_store_list *l);

#endif
