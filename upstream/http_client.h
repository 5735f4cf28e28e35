/*
 * The upstream HTTP client (libcurl), shared by the JSON adapters. One easy handle per worker
 * thread and upstream, reused so connections stay alive (docs/design.md, libh2o §6); CURLOPT_NOSIGNAL, a
 * total timeout on every call, TLS verification with the upstream's CA bundle, optional client
 * certificate. No retries here: a sign call that timed out has an unknown outcome and is never
 * repeated blindly (the caller decides; only idempotent reads and 412/429/503 answers that
 * guarantee nothing happened are retried, with backoff, by the adapter).
 */
#ifndef GW_HTTP_CLIENT_H
#define GW_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include "gateway/config.h"

struct gw_http_client;

struct gw_http_response {
    long status;   /* HTTP status; 0 if no answer (transport error or timeout) */
    int timed_out; /* 1 if the deadline passed (outcome unknown) */
    int not_sent;  /* 1 if the request never left (connect or TLS handshake failed): nothing
                      happened upstream */
    char *body;    /* NUL-terminated; at most GW_MAX_UPSTREAM_BODY bytes */
    size_t body_len;
    char content_type[128];
    char error[GW_ERR_LEN]; /* transport error, "" if an answer came */
};

/* gw_http_client_new: for |conf| (url, tls_ca, tls_cert/key, timeout_ms). NULL with |err|. */
struct gw_http_client *gw_http_client_new(const struct gw_upstream_conf *conf, char *err);
void gw_http_client_free(struct gw_http_client *c);

/*
 * gw_http_request performs |method| ("GET", "POST") on |path| (appended to the base URL) with
 * optional JSON |body| and extra |headers| (NULL-terminated "Name: value" strings; secrets are
 * never logged). Fills |rsp| (free with gw_http_response_cleanup). Returns 0 if an HTTP answer
 * came (any status), or GW_ERR_TIMEOUT / GW_ERR_IO.
 */
int gw_http_request(struct gw_http_client *c, const char *method, const char *path, const char *body,
                    const char *const *headers, struct gw_http_response *rsp);
void gw_http_response_cleanup(struct gw_http_response *rsp);

#endif
