/*
 * What store.c and store_crl.c (the local issuer's CRL state, generation and lock) share of the store's
 * implementation. Not for other modules: they use store.h.
 */
#ifndef GW_UPSTREAM_STORE_INT_H
#define GW_UPSTREAM_STORE_INT_H

#include <stddef.h>
#include <sys/types.h>

#define TMP_NAME_MAX 128

/* "store <dir><what>" into |err|, |dir| written as gw_conf_show_file writes a configured name. */
void store_fail(char *err, const char *dir, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A temporary name for |name| in the store, unique across threads and processes, into |out|. */
void store_tmp_name(char *out, size_t cap, const char *name);

/* Writes |pem| to <dirfd>/|tmp| and fsyncs it. 0, or -1 with errno. */
int store_write_tmp(int dirfd, const char *tmp, const char *pem, size_t len);

/* Parses "<key>=<decimal>" in [min, max] at *p, advancing past it and one following space or newline: 1,
   or 0 when it is not there or malformed. */
int store_parse_field(const char **p, const char *key, long long min, long long max, long long *out);

/*
 * What the CRL is built from, as it would be read at run time: crl.lock (a regular file of |owner| or
 * root, mode 0600, not followed), crl.state, crl.gen and every record of revoked/, so that a store
 * restored from a backup, or damaged, is refused as the gateway starts or is checked, not when its CRL is
 * next asked for. 0, or an error with |err| (|key|, then the file). (gw_store_check)
 */
int store_check_crl_files(const char *key, const char *dir, uid_t owner, char *err);

#endif
