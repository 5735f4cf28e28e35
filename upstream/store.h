/*
 * The durable inventory of a local issuer ("store": docs/design.md D5): one <serial hex>.pem per
 * certificate issued, on disk before the certificate is released. `cmpgw inventory` lists it.
 * No I/O on h2o objects; callable from any thread (each call works on its own files).
 */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <sys/types.h>
#include <openssl/x509.h>

/*
 * gw_store_put writes |cert| as <dir>/<serial hex>.pem durably: a temporary file, fsync, a hard link
 * to the final name (which never replaces an existing one), fsync of the directory. Returns 0, or
 * GW_ERR_EXISTS (that serial is already recorded) or GW_ERR_IO / GW_ERR_NOMEM with a one-line reason
 * in |err| (GW_ERR_LEN). On failure nothing is left under the final name. (worker)
 */
int gw_store_put(const char *dir, const X509 *cert, char *err);

/*
 * gw_store_check: 0 when only |owner| (the user the gateway serves as) or root may change what |dir|
 * holds, else an error with |err| (|key| names the setting). Its names are trusted for being there:
 * whoever may add or remove one could revoke a certificate (a record in revoked/), let a revoked one
 * authenticate again (its record removed), answer a lookup by serial with a certificate of their own,
 * or set the CRL number back. So |dir| and its revoked/ are held to gw_conf_check_own_dir (the sticky
 * bit is no help there), and |dir|'s own directory and those above it to gw_conf_check_dir: the store
 * is opened by name at every use, and whoever could rename it, or a directory on its way, could put
 * another in its place. Neither |dir|, nor its revoked/, nor the directory holding it may be a
 * symbolic link, which whoever may replace it could point elsewhere; a link higher up is judged where
 * it leads. What the CRL is built from is read as it would be at run time, so that a store restored
 * from a backup or damaged is refused here, naming the file: crl.lock (where there is one: a regular
 * file of |owner| or root, mode 0600, not followed), crl.state, crl.gen and every record of revoked/.
 * A directory on the way that could not be read for what another try may mend (descriptors run out, a
 * failing disk) is GW_ERR_UNAVAILABLE or GW_ERR_NOMEM (gw_conf_check_dir). (start-up, reload, `cmpgw check`)
 */
int gw_store_check(const char *key, const char *dir, uid_t owner, char *err);

struct gw_store_entry {
    char serial[2 * 20 + 1]; /* RFC 5280 §4.1.2.2: at most 20 octets */
    time_t not_before, not_after;
    char *subject; /* RFC 2253 one line, as gw_text_escape writes it */
    char *sans;    /* "DNS:a,IP:127.0.0.1,URI:...,email:...", as gw_text_escape writes it */
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

/*
 * Revocations of a local issuer, beside its inventory: one <dir>/revoked/<serial hex> per revoked
 * certificate, holding "time=<unix seconds> reason=<CRLReason> not_after=<unix seconds>\n" (the
 * certificate's notAfter; an earlier version wrote none), written with the same durable create as
 * gw_store_put. The files are the issuer's CRL source (RFC 5280 §5.1.2.6). None is ever removed: the
 * record of an expired certificate stays, left out of the CRL (gw_store_crl_next).
 */
#define GW_STORE_REVOKED_DIR "revoked"

struct gw_store_revocation {
    char serial[2 * 20 + 1];
    time_t when;
    int reason;       /* CRL_REASON_* of openssl/x509v3.h; CRL_REASON_NONE (-1) = none given */
    time_t not_after; /* the certificate's notAfter; 0: not recorded (an earlier version's record) */
};

/*
 * gw_store_revoke records that the certificate <dir>/<serial hex>.pem is revoked as of |when|
 * with |reason|. Returns 0, GW_ERR_NOT_FOUND (no such certificate in the store), GW_ERR_EXISTS
 * (already revoked, also by a concurrent call: the first record stands), GW_ERR_LIMIT (revoked/ holds
 * GW_STORE_LIST_MAX records, expired ones counted: a CRL could list no more, and none is removed; calls
 * at once may each pass the count; one recorded already is GW_ERR_EXISTS before it), or GW_ERR_IO /
 * GW_ERR_NOMEM with |err|. A record linked whose directory's fsync then failed stays (GW_ERR_IO:
 * gw_store_revocation_get finds it): a CRL built meanwhile may list it, and a later one must not list
 * less. (worker)
 */
int gw_store_revoke(const char *dir, const ASN1_INTEGER *serial, int reason, time_t when, char *err);

/* Test hook: from now on revoked/ holds at most |n| records (gw_store_revoke refuses one more, a CRL lists
 * no more) instead of GW_STORE_LIST_MAX; 0: GW_STORE_LIST_MAX again. */
void gw_store_test_revocations_max(size_t n);

/* Test hook: the next |n| fsyncs of a directory a certificate or revocation was just linked into fail
 * (EIO), as on a failing disk; 0: none. */
void gw_store_test_fail_dir_syncs(int n);

/*
 * gw_store_get reads the certificate <dir>/<serial_hex>.pem into *out (the caller frees it): 0,
 * GW_ERR_NOT_FOUND (no such certificate), or GW_ERR_IO with |err|. (worker)
 */
int gw_store_get(const char *dir, const char *serial_hex, X509 **out, char *err);

/* gw_store_revocation_get reads the record of |serial_hex|: 0, GW_ERR_NOT_FOUND, or GW_ERR_IO. */
int gw_store_revocation_get(const char *dir, const char *serial_hex, struct gw_store_revocation *out,
                            char *err);

/*
 * gw_store_revocations reads every record, sorted by serial, into a malloc'd *v of *n (free()), but
 * those whose certificate expired before |expired_before| (a record without notAfter is always listed).
 * Each record is read: the cost grows with all of them, expired or not. A missing revoked/ directory is
 * an empty list. A malformed record is an error (GW_ERR_IO), not skipped: a CRL that silently leaves
 * out a revocation is worse than none. GW_ERR_LIMIT past GW_STORE_LIST_MAX listed.
 */
int gw_store_revocations(const char *dir, time_t expired_before, struct gw_store_revocation **v, size_t *n,
                         char *err);

/*
 * gw_store_sweep removes the temporary files that a crash left in |dir| and its revoked/ directory
 * (hidden names ending in ".tmp", older than GW_STORE_TMP_STALE_SECS so that another process's
 * write in progress is left alone). *removed counts them. 0, or GW_ERR_IO with |err| (where |dir| could not
 * be opened for what another try may mend, descriptors run out, a failing disk: its class, gw_err_errno_io).
 * (start-up)
 */
int gw_store_sweep(const char *dir, time_t now, size_t *removed, char *err);

/*
 * The local issuer's CRL state, <dir>/crl.state: the CRL number and thisUpdate of the last CRL it
 * signed, so that the number keeps growing across restarts whatever the clock does (RFC 5280 §5.2.3).
 * _get: 0, GW_ERR_NOT_FOUND (no CRL signed yet), or GW_ERR_IO (unreadable or malformed: a CRL
 * number must not be guessed). _put replaces the file durably (temporary file, fsync, rename, fsync
 * of the directory): 0 or GW_ERR_IO.
 */
int gw_store_crl_state_get(const char *dir, uint64_t *number, time_t *this_update, char *err);
int gw_store_crl_state_put(const char *dir, uint64_t number, time_t this_update, char *err);

/*
 * Instances sharing a store ("shared_store") learn of each other's revocations through <dir>/crl.gen,
 * the generation of revoked/: it changes after each revocation is recorded (gw_store_revocations_bump),
 * and an instance whose CRL was built at another generation builds it again before serving it. Reading
 * it is one small file, not a listing of revoked/. It is changed under an exclusive flock(2) of
 * <dir>/crl.lock, a file that holds nothing.
 *
 * gw_store_revocations_gen reads it into *gen: 0 (0 too when there is none yet), or GW_ERR_IO with
 * |err| (unreadable or malformed: whether a CRL is current cannot be told). (worker)
 */
int gw_store_revocations_gen(const char *dir, uint64_t *gen, char *err);

/*
 * gw_store_revocations_bump gives the generation a value no instance can hold: past the last one and
 * past the wall clock's microseconds (so a file lost or damaged starts again from a new one), replaced
 * durably under the lock. Called after a revocation's record is written. 0, GW_ERR_TIMEOUT (crl.lock
 * held by another for GW_CRL_LOCK_WAIT_MS: no wait is longer) or GW_ERR_IO with |err|.
 * (worker)
 */
int gw_store_revocations_bump(const char *dir, char *err);

/*
 * What the next CRL of a store is built from, taken under the lock of crl.lock, so that the instances
 * sharing the store number their CRLs (RFC 5280 §5.2.3: increasing) in the order they read revoked/:
 * a CRL with a higher number lists every revocation one with a lower number lists, but those whose
 * certificate expired meanwhile (RFC 5280 §5.1.2.6).
 */
struct gw_store_crl_next {
    uint64_t number;    /* in: the least the caller takes (its clock's µs); out: past crl.state's */
    time_t this_update; /* in: the caller's now; out: held to crl.state's if that is ahead by at most
                           GW_CRL_CLOCK_SKEW_SECS, else kept as it is: the number orders the CRLs */
    time_t last_update; /* out: crl.state's thisUpdate (0: none), for a caller to judge its clock by */
    uint64_t gen;       /* out: the generation revoked/ was read at (gw_store_revocations_gen) */
    struct gw_store_revocation *v; /* out: as gw_store_revocations gives them (free()) */
    size_t n;
};

/*
 * gw_store_crl_next locks crl.lock; reads crl.state, the generation and revoked/ (leaving out the
 * certificates that expired GW_CRL_EXPIRED_KEEP_SECS before |this_update|); writes the number it settled
 * on and |this_update| to crl.state (as gw_store_crl_state_put); lets the lock go. A thisUpdate taken
 * from crl.state instead of the clock, beyond the skew a reader allows, would pin a clock's step ahead, once
 * written there, on every later CRL of every instance until the time caught up, each refused by its relying
 * parties. 0, or a gw_err with |err|: GW_ERR_TIMEOUT when another held crl.lock GW_CRL_LOCK_WAIT_MS (next->v
 * NULL, next->n 0; crl.state unchanged unless writing it was what failed). (worker)
 */
int gw_store_crl_next(const char *dir, struct gw_store_crl_next *next, char *err);

#endif
