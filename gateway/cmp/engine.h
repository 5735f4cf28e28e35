/*
 * The CMP engine: one request in, one response out. Runs on worker threads.
 *
 * OpenSSL's OSSL_CMP_SRV_CTX does the CMP (protection, POPO, sequencing, building and protecting
 * responses); the engine adds what OpenSSL 3.0 leaves out (docs/design.md D3): a body-type
 * allow-list before OpenSSL sees the message, PBM secret selection by senderKID and an iteration
 * cap, the messageTime window, replay and transactionID-reuse detection, kur only by the holder
 * of the old certificate, certConf/pollReq only from the transaction's sender and TLS client and
 * on a path of its role, certHash checked, caps on open transactions. One SRV_CTX per transaction lives in
 * the transaction table between the request and its certConf.
 */
#ifndef GW_CMP_ENGINE_H
#define GW_CMP_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "gateway/cmp/conf.h"
#include "gateway/cmp/exchange.h"

struct gw_cmp_engine;
struct gw_upstream_set;

/*
 * gw_cmp_engine_new builds an engine over the settings of a config snapshot and its upstreams
 * (|cfg| is copied; the snapshot and the upstreams are borrowed: they must outlive the engine) and
 * opens the audit log of |cfg->audit|. NULL with |err| on failure, including an audit log that
 * cannot be opened (nothing may be issued without one), and with *|rc| (0 on success; |rc| may be
 * NULL): GW_ERR_INVAL for what the configuration names (no signer, the audit log, cmp.revoked_file),
 * GW_ERR_UNAVAILABLE for the shared state's Redis (unreachable, or refusing its settings), GW_ERR_NOMEM.
 *
 * A reload builds the next engine with |prev|, the running one: the two share the open
 * transactions and the replay cache (their caps stay those of the first engine), and the audit log
 * while its file and fields are unchanged. A transaction ends under the engine it began in, so
 * |prev| and its snapshot must live until gw_cmp_engine_busy(prev) is false.
 */
struct gw_cmp_engine *gw_cmp_engine_new(const struct gw_cmp_settings *cfg, struct gw_upstream_set *ups,
                                        struct gw_cmp_engine *prev, int *rc, char *err);

/* gw_cmp_engine_busy: transactions or upstream calls begun under |e| are still open (any thread). */
bool gw_cmp_engine_busy(struct gw_cmp_engine *e);

/* gw_cmp_engine_close_all ends every open transaction of every engine sharing |e|'s, each logged
 * as abandoned by the engine it began under (shutdown, while every engine still lives). */
void gw_cmp_engine_close_all(struct gw_cmp_engine *e);

/*
 * gw_cmp_engine_free_until frees the engine; the last of the engines sharing transactions ends those
 * still open, logged as abandoned. NULL-safe. Its upstream calls and withdrawals get until |until_ms|
 * (gw_now_ms), one deadline a stop gives all its engines. false: a revocation was still running when
 * it passed (cmp_withdrawals_drain), and the engine, its upstreams and its configuration are left to
 * the process exit. gw_cmp_engine_free gives it GW_DRAIN_TIMEOUT_MS from now.
 */
bool gw_cmp_engine_free_until(struct gw_cmp_engine *e, uint64_t until_ms);
bool gw_cmp_engine_free(struct gw_cmp_engine *e);

/* gw_cmp_process answers one request (worker). Always fills |rsp|; never fails. */
void gw_cmp_process(struct gw_cmp_engine *e, const struct gw_cmp_request *req, struct gw_cmp_response *rsp);

/*
 * gw_cmp_engine_reopen_audit reopens the audit log at its configured path, after log rotation
 * (SIGUSR1). Returns 0 or GW_ERR_IO (the old file stays in use). Any thread.
 */
int gw_cmp_engine_reopen_audit(struct gw_cmp_engine *e);

/* gw_cmp_engine_audit_status is gw_audit_status of the engine's audit log (any thread). */
int gw_cmp_engine_audit_status(struct gw_cmp_engine *e, char *why, size_t cap);

/* gw_cmp_engine_state_status: 0 when the shared state ("cmp.state") answers, or there is none;
 * else GW_ERR_UNAVAILABLE with the reason in |why| (any thread). */
int gw_cmp_engine_state_status(struct gw_cmp_engine *e, char *why, size_t cap);

/* gw_cmp_engine_signer_status: 0 when the signer's key made its last signature, else GW_ERR_UNAVAILABLE
 * with why in |why| (any thread; it only reads: gateway/cmp/signer.h). */
int gw_cmp_engine_signer_status(struct gw_cmp_engine *e, char *why, size_t cap);

/* gw_cmp_engine_probe_signer makes a test signature with the signer's key when its last signature failed
 * or is older than GW_SIGNER_CHECK_MS, at most once in that span (the prober's thread). NULL-safe. */
void gw_cmp_engine_probe_signer(struct gw_cmp_engine *e);

/* gw_cmp_engine_probe_audit is gw_audit_probe of the engine's audit log: one fsync while the last one
 * failed, so that readiness comes back with the disk, no request needed (the prober's thread; the fsync
 * runs on a thread of its own, which it does not wait for). NULL-safe. */
void gw_cmp_engine_probe_audit(struct gw_cmp_engine *e);

/* gw_cmp_engine_expire closes transactions whose TTL passed, logging each (any thread). */
void gw_cmp_engine_expire(struct gw_cmp_engine *e, time_t now);

/* gw_cmp_engine_open_transactions counts open transactions (for logs and tests). */
size_t gw_cmp_engine_open_transactions(struct gw_cmp_engine *e);

/*
 * gw_cmp_engine_crl answers GET <prefix>/crl/<upstream> (worker): the current CRL of the upstream
 * named |upstream| as DER with 200, 404 for an upstream the engine does not have, 500 when the CRL
 * cannot be had now. Always fills |rsp|.
 */
void gw_cmp_engine_crl(struct gw_cmp_engine *e, const char *upstream, struct gw_cmp_response *rsp);

#endif
