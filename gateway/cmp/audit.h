/*
 * The audit log: one JSON line per CMP transaction event (docs/design.md D8). The intent is
 * written before the upstream is asked, the outcome after it; a record that carries a certificate
 * is fsync'd before the response that carries it leaves. If the log cannot be written, nothing is
 * issued. Reopened on SIGUSR1 for log rotation. Thread-safe (one mutex; one write() per line).
 */
#ifndef GW_AUDIT_H
#define GW_AUDIT_H

#include <openssl/x509.h>
#include <openssl/x509v3.h> /* GENERAL_NAMES */
#include "gateway/cmp/conf.h"

struct gw_audit;

/* The end of a field value cut at its cap; the record then has "truncated": true. */
#define GW_AUDIT_TRUNCATED "...[truncated]"

/* One record. Strings may be NULL (omitted), and are cut at GW_AUDIT_TXN_FIELD_MAX escaped
   (GW_AUDIT_TRUNCATED, "truncated": true). Borrowed for the call. */
struct gw_audit_rec {
    const char *event; /* "intent", "issued", "rejected", "confirmed", "rejected_by_client",
                          "expired_unconfirmed", "revoked", "revoke_failed" */
    const char *tid;   /* transactionID hex */
    const char *route; /* request path */
    const char *role;
    const char *identity; /* CMP identity */
    const char *tls_subject;
    const char *credential_status; /* how the signer's and TLS certificate's revocation status was known */
    const char *body_type;         /* "ir", "p10cr", ... */
    const char *upstream;
    const char *serial;       /* hex */
    const char *status;       /* "accepted", "grantedWithMods", "rejection: <failInfo>: <text>" */
    const X509_NAME *subject; /* requested or issued subject, for audit_fields */
    const GENERAL_NAMES *sans;
    const EVP_PKEY *pubkey;
    const X509_REQ *csr;      /* "csr" field (PEM) when configured */
    int exclude_cn_from_sans; /* echoed when configured */
};

/*
 * gw_audit_open opens (creates, appends, 0600) |conf->file|, a regular file of |owner| (the user the
 * gateway serves as) or root with one name that group and others may not write, never through a
 * link, in a directory only they may add names to (or one with the sticky bit); a reopen holds it to
 * the same. As root it creates one as |owner| and |group| (gw_user_openat_as): in a directory that user
 * may not write it makes none. NULL with |err| on failure, and *|rc| (unless |rc| is NULL) its class:
 * GW_ERR_NOMEM, GW_ERR_UNAVAILABLE (descriptors run out, a failing disk), or another for what the file,
 * its directory or the configuration say (gw_err_file_class classes it). 0 on success.
 */
struct gw_audit *gw_audit_open(const struct gw_audit_conf *conf, uid_t owner, gid_t group, int *rc,
                               char *err);

/*
 * gw_audit_file_check: what gw_audit_open would refuse of |file| as it stands (`cmpgw check`): 0 when
 * it is absent (the start creates it) or as gw_audit_open wants it, else an error with |err|.
 */
int gw_audit_file_check(const char *file, uid_t owner, char *err);

/* gw_audit_share returns |a| with one more holder if it writes |conf|'s file with its fields and that
 * file and its directory still pass what gw_audit_open asks (two generations of the configuration
 * then share one log), else NULL: the reload opens the log anew, and so says what is wrong. */
struct gw_audit *gw_audit_share(struct gw_audit *a, const struct gw_audit_conf *conf);

/* gw_audit_close lets go of one holder; the last one syncs and closes the file. NULL-safe. */
void gw_audit_close(struct gw_audit *a);

/*
 * gw_audit_write appends one line: time, the record's fields, then the configured audit_fields
 * under Vault's names (common_name, alt_names, ip_sans, uri_sans, ...). |sync| = 1 fsyncs before
 * returning. Returns 0 or GW_ERR_IO (the caller must then not issue / not release a certificate).
 */
int gw_audit_write(struct gw_audit *a, const struct gw_audit_rec *r, int sync);

/* gw_audit_fsyncs counts the fsyncs of every audit log since start (group commit: fewer than records). */
unsigned long gw_audit_fsyncs(void);

/*
 * gw_audit_probe starts one fsync of the file now written when its last one failed (gw_audit_status says
 * so until one works), and none else: with readiness down no request may come to run it. The health
 * prober calls it once a tick; a failure it repeats is not logged again. The fsync runs on a detached
 * thread holding a reference to |a|, at most one at a time, and this returns without waiting for it: a
 * hung disk holds that thread, not the caller; gw_audit_close does not wait for it either (the thread
 * frees |a| if its reference is the last). Nor does the stop: past its fsync the thread touches |a| and
 * this module's count of fsyncs alone (the metric registry reads that count; no log line), so it may
 * return after gw_metrics_free_all.
 */
void gw_audit_probe(struct gw_audit *a);

/* gw_audit_probe_wait waits until no fsync started by gw_audit_probe runs (tests). NULL-safe. */
void gw_audit_probe_wait(struct gw_audit *a);

/* gw_audit_reopen reopens the file at its path (after rotation). 0 or GW_ERR_IO (old fd kept). */
int gw_audit_reopen(struct gw_audit *a);

/* gw_audit_status is GW_ERR_IO, with what failed in |why| (|cap| bytes), when the last write failed (the next
 * write that works or a reopen clears it, not gw_audit_probe: an fsync does not show that a write works), the
 * last fsync of the file now written failed (a write since does not clear it: the next fsync that works or
 * a reopen does), or the last reopen failed; else 0. A gateway that cannot record what it issues is not
 * ready. */
int gw_audit_status(struct gw_audit *a, char *why, size_t cap);

#endif
