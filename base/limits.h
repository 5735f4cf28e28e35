/*
 * Every size, count and time cap of cmpgw, in one place (curl's rule: a growable buffer has a
 * named cap). Configurable values have their default here and their bounds checked by config.c.
 */
#ifndef GW_LIMITS_H
#define GW_LIMITS_H

/* HTTP */
#define GW_MAX_CMP_BODY (64 * 1024)  /* request PKIMessage; RFC 9483 messages are a few KiB */
#define GW_MAX_PATH_LEN 512          /* request path incl. role/label segments */
#define GW_RETRY_AFTER_SECS 1        /* Retry-After on 503 queue full */
#define GW_MAX_RESPONSE (100 * 1024) /* openssl cmp rejects responses over 100 KiB */
#define GW_HTTP1_REQ_TIMEOUT_MS 5000 /* below the drain deadline (docs/design.md H8.12) */
#define GW_DRAIN_TIMEOUT_MS 10000    /* graceful shutdown: wait this long for in-flight work */
#define GW_MAX_WITHDRAWALS 1024      /* revocations of undelivered certificates queued per engine */
/* places one quota key's withdrawals take in the queue (more wait outside GW_MAX_WITHDRAWALS, after the
   others'); with more than these queued, running or waiting, its issuing requests wait */
#define GW_MAX_WITHDRAWALS_PER_KEY 8

/* a withdrawal (gateway/cmp/record.c) whose revocation at the CA fails for a reason that may pass */
#define GW_WITHDRAWAL_ATTEMPTS 3      /* upstream calls in all */
#define GW_WITHDRAWAL_BACKOFF_MS 2000 /* the wait before the second; 4 times as long before each next */
#define GW_WITHDRAWAL_RECORD_MS                                                                              \
    250 /* one asked during a drain: its call ends this long before the drain's                              \
           deadline, the time to put it on record */

/* connections, requests in flight and authentication attempts per client address (gateway/guard.c) */
#define GW_DEFAULT_MAX_CONNECTIONS 4096
#define GW_DEFAULT_MAX_CONNECTIONS_PER_ADDRESS 64
#define GW_DEFAULT_MAX_REQUESTS_PER_ADDRESS 64 /* in flight: as many as its HTTP/1 connections may hold */
#define GW_DEFAULT_IPV6_PREFIX 64              /* an IPv6 client's address for the limits: its /64 */
#define GW_MIN_IPV6_PREFIX 48
/* a connection whose last request that passed every check was answered this long ago is no longer one of a
   proven client at the connection caps: one cheap proven request (a genm) must not keep a place for good */
#define GW_PROVEN_HOLD_MS 30000
/* a connection with a verified TLS client certificate is not one to make room with for this long after its
   handshake, until its first request is answered: the time libh2o gives an HTTP/1 request to arrive whole */
#define GW_PEER_GRACE_MS GW_HTTP1_REQ_TIMEOUT_MS
#define GW_GUARD_PROBES 64 /* slots a lookup in the per-address table looks at, at most */
#define GW_GUARD_SITE_BITS                                                                                   \
    48 /* an IPv6 site, whose failures also count together when that table is crowded */
#define GW_MAX_CONNECTIONS 1000000
#define GW_DEFAULT_AUTH_FAILURES 50 /* failed authentications per address and window; then 429 */
#define GW_MAX_AUTH_FAILURES 1000000
#define GW_DEFAULT_AUTH_FAILURE_WINDOW 60 /* seconds */
#define GW_MAX_AUTH_FAILURE_WINDOW 86400
#define GW_MAX_ADMIN_CONNECTIONS 16 /* per loop thread, on the admin listener (outside the CMP limits) */
#define GW_MAX_INHERITED_FDS 256    /* listening sockets taken over per listener (activation, hand-over) */
#define GW_LOOP_LISTENS 64          /* listening sockets one loop thread serves (bound, inherited) */
#define GW_MAX_HANDOVER_FDS 253     /* listening sockets one hand-over sends: the kernel's SCM_MAX_FD */
#define GW_APPLY_TIMEOUT_MS 5000    /* a reload waits this long for every loop thread to take it up */
#define GW_SIGNER_CHECK_MS 5000     /* the signer's last signature older than this: the prober makes one */
#define GW_MAX_UNIX_PATH 90         /* a Unix socket path, below sun_path's 108 with a suffix to spare */
#define GW_MAX_DIR_LINKS 40         /* symbolic links followed on the way to a written file: Linux's own */
#define GW_MAX_PROXY_HEADER 1024    /* a PROXY protocol header, TLVs included (haproxy's are far smaller) */
#define GW_MAX_PROXY_PENDING 1024   /* per loop thread: proxied connections whose header has not arrived */
#define GW_MAX_TRUSTED_PROXIES 64   /* "trusted_proxies" ranges of one listener */
#define GW_MAX_TICKET_KEYS 8        /* "ticket_keys_file": keys of one listener (the first encrypts) */
#define GW_TICKET_KEY_LEN 80        /* one ticket key: name 16, AES-256 key 32, HMAC-SHA256 key 32 */
#define GW_TLS_SESSION_SECS 3600    /* how long a TLS session (ticket or cached) may be resumed */
#define GW_TLS_SESSION_CACHE 4096   /* TLS sessions a listener caches (clients without tickets) */
/* file descriptors a configuration needs (gw_config_fds) beyond its connections, listening sockets,
   upstream and Redis connections: stdio, the audit log and cmp.revoked_file (two of each during a
   reopen), every loop thread's event loop and wake-ups, libcurl's, the files a reload or a store reads */
#define GW_FD_RESERVE 256
/* Redis connections besides one per worker and loop thread: the main, prober, withdrawal, reload threads */
#define GW_FD_REDIS_THREADS 8
/* a hand-over of the listening sockets to a successor (gateway/handover.c, docs/design.md D19) */
#define GW_HANDOVER_TAKE_SECS 10      /* the successor waiting for the sockets */
#define GW_HANDOVER_READY_SECS 120    /* the predecessor waiting for its successor to start */
#define GW_HANDOVER_CONFIRM_SECS 10   /* the successor waiting for "draining" after its "ready" */
#define GW_HANDOVER_STOP_WAIT_SECS 10 /* a predecessor told to stop, waiting for the "ready" it answered */
#define GW_HANDOVER_GONE_WAIT_MS 1000 /* the successor, unconfirmed, waiting for its predecessor to exit */
/* an admin connection's input buffer, allocated whole as input arrives: libh2o 2.2.5's largest request
   head (H2O_MAX_REQLEN), the largest body it reads (GW_MAX_CMP_BODY) and the 4 KiB each read asks */
#define GW_ADMIN_INPUT_BUFFER ((8192 + 4096 * 100) + GW_MAX_CMP_BODY + 4096)
/* a TLS client's Certificate message: its certificate and chain, some 2 KiB each for RSA-4096, with room
   for eight; OpenSSL's default is 100 KiB, 400 small certificates it decodes before verifying any */
#define GW_MAX_TLS_CLIENT_CHAIN (16 * 1024)
#define GW_MAX_LOG_SAMPLE 1000000  /* "log_sample_success": at most 1 request line in a million */
#define GW_DEFAULT_BODY_TIMEOUT 10 /* seconds an HTTP/2 request may take to arrive whole */
#define GW_MAX_BODY_TIMEOUT 300
#define GW_DEFAULT_SEND_TIMEOUT 10 /* seconds a connection's pending output may go without progress */
#define GW_MAX_SEND_TIMEOUT 300
/* seconds a connection may take to complete its TLS handshake, or on a plain listener to send a first
   request: one that sends nothing holds its share of max_connections until then (docs/security.md) */
#define GW_DEFAULT_HANDSHAKE_TIMEOUT 5
#define GW_MAX_HANDSHAKE_TIMEOUT 10
/* libh2o's own handshake timeout (its default is 10 s), which closes a connection uncounted: past the
   longest handshake_timeout and the sweep that ends it */
#define GW_H2O_HANDSHAKE_TIMEOUT_MS (GW_MAX_HANDSHAKE_TIMEOUT * 1000 + 2 * GW_SWEEP_MS)
/* a trusted proxy's PROXY header, from the accept: as long, counted by the sweep on the monotonic clock */
#define GW_PROXY_HEADER_TIMEOUT_MS GW_H2O_HANDSHAKE_TIMEOUT_MS
#define GW_SWEEP_MS 1000 /* how often connections and HTTP/2 requests are checked against all three */
/* request input a connection may hold beyond a CMP body (GW_MAX_CMP_BODY): a request head, whose own cap in
   libh2o 2.2.5 is H2O_MAX_REQLEN, some 408 KiB; past the two a connection is ended at the sweep */
#define GW_MAX_HEAD_INPUT (16 * 1024)
/* HTTP/2 requests of one connection arriving, queued, or answered and unsent since the last sweep */
#define GW_MAX_H2_OPEN 4

/* "admin.token_file": bytes of the bearer token that POST /reload carries */
#define GW_MIN_ADMIN_TOKEN_LEN 16
#define GW_MAX_ADMIN_TOKEN_LEN 4096

/* threads and queues */
#define GW_DEFAULT_LOOP_THREADS 2
#define GW_MAX_LOOP_THREADS 64
#define GW_DEFAULT_WORKERS 16
#define GW_MAX_WORKERS 1024
#define GW_DEFAULT_QUEUE_DEPTH 256
#define GW_MAX_QUEUE_DEPTH 65536
#define GW_QUEUE_WAIT_MS 10000 /* a job older than this when a worker picks it up is refused */

/* CMP */
#define GW_MIN_TID_LEN 16 /* transactionID: RFC 9483 §3.1, 128 bits of random data */
#define GW_MAX_TID_LEN 64
#define GW_MIN_NONCE_LEN 16 /* senderNonce: RFC 9483 §3.1, at least 128 bits */
#define GW_MAX_NONCE_LEN 64
#define GW_MAX_KID_LEN 128               /* senderKID (PBM reference or SKID) */
#define GW_DEFAULT_MSGTIME_WINDOW 300    /* seconds either side of now */
#define GW_DEFAULT_TXN_TTL 300           /* seconds an unconfirmed transaction stays open */
#define GW_MAX_REDIS_PASSWORD 512        /* a Redis ACL password, in "cmp.state.password_file" */
#define GW_DEFAULT_REDIS_TIMEOUT_MS 1000 /* a Redis command's connect and reply timeout */
#define GW_MAX_REDIS_TIMEOUT_MS 10000
#define GW_STATE_GRACE 60       /* seconds a shared reservation outlives its transaction's deadline */
#define GW_MIN_STATE_MAC_KEY 16 /* "cmp.state.mac_key_file": bytes of the secret every instance shares */
#define GW_MAX_STATE_MAC_KEY 64
#define GW_STATE_LEASE_SECS 30 /* an instance continuing a transaction holds it at most this long */
#define GW_STATE_CLAIM_BATCH 8 /* expired shared transactions one instance records per tick (main thread) */
#define GW_STATE_CLAIM_SLACK 5 /* seconds past a shared deadline before another instance records it */
#define GW_STATE_CLOCK_SKEW_MS 2000 /* an instance gives up on another's upstream call this late */
#define GW_STATE_PING_SECS 1        /* how often readiness asks the shared state's Redis (PING) */
#define GW_STATE_OWNER_LEN 33       /* an instance's name in the shared state: 32 hex digits and a NUL */
#define GW_STATE_POLICY_LEN 32      /* a Redis maxmemory-policy name, as INFO memory says it, and its NUL */
/* what a record's end took (its result), or an expiry claim (the records), kept this long for the instance
   to read back should the answer be lost (gateway/cmp/cluster.c S_DROP, S_CLAIM): its one retry comes
   within two timeouts. A literal: it is spelled into a script */
#define GW_STATE_TOOK_SECS 30
/* the retry reads back what the lost answer's end took only if took: still lives then: the Redis timeout
   is capped so that two of them fit well inside GW_STATE_TOOK_SECS */
_Static_assert(GW_STATE_TOOK_SECS * 1000 > 2 * GW_MAX_REDIS_TIMEOUT_MS,
               "what a record's end took outlives that end's retry, within two Redis timeouts");
/* ends of a record whose every answer was lost, what they took read back at the next ticks within
   GW_STATE_TOOK_SECS (gateway/cmp/poll.c); past them one is logged as not read back at once */
#define GW_STATE_MAX_UNREAD_ENDS 64
/* the shared state's epoch (gateway/cmp/cluster.c): "<instance>:<count>" and its NUL */
#define GW_STATE_EPOCH_LEN 64
/* "cmp.max_revoked": certificates revoked through the gateway kept until they expire, per instance and
   in the shared state, whatever their CRLs say meanwhile (gateway/cmp/revoked.c); a full set takes no
   more. Some 24 bytes each in memory, 100 in Redis. */
#define GW_DEFAULT_MAX_REVOKED 262144
#define GW_MAX_REVOKED 1048576
/* seconds past its notAfter that the set keeps a revoked certificate: OpenSSL takes one at its very
   notAfter, and a request's chain is verified a moment before or after the set is asked */
#define GW_REVOKED_GRACE_SECS 2
/* seconds past its notAfter (and GW_REVOKED_GRACE_SECS) that a revoked certificate's entry stays in the set
   and in cmp.revoked_file, though it refuses nothing meanwhile: a clock ahead by less than this (a VM's
   hardware clock before its time sync) drops no entry its certificate needs once the clock is set right.
   A full set makes room for a live revocation from these, the one that expired first first */
#define GW_REVOKED_KEEP_SECS (7 * 86400)
/* revocations through the gateway under way at once (an rr, a withdrawal), each certificate's marked so
   that a second is not sent meanwhile (gateway/cmp/revoked.c): one per worker and withdrawal thread
   would do; a revocation past them waits for one to end, at most its upstream's timeout */
#define GW_MAX_REVOKING 256
/* revocations this instance's set could not keep (cmp.max_revoked reached, no memory, expired) remembered,
   each for as long as a shared mark lives (below), so that a second revocation of one, which waited for its
   mark, is not sent again (gateway/cmp/revoked.c); past them the one that ends first is forgotten first */
#define GW_MAX_REVOKED_UNKEPT 256
/* a revocation's mark in the shared state, which keeps a second instance from revoking the certificate
   meanwhile (gateway/cmp/revoked.c): it lasts twice the upstream's timeout (an rr asks for the certificate's
   status, then revokes it) and this much more (the audit records, the revoked set and file around the
   calls), and goes by itself should its end never reach Redis; a
   revocation waiting for another instance's asks again this often */
#define GW_STATE_REVOKING_SLACK_MS 15000
#define GW_STATE_REVOKING_POLL_MS 50
/* the certificates an instance let through lately, by issuer and serial and by their DER's hash: one with
   the serial of another of them is refused as a CA's reuse of a serial (gateway/cmp/recent.c). A ring,
   per process, across reloads: some 100 bytes each (their transactionIDs the most). A power of 2. */
#define GW_RECENT_ISSUED 4096
/* a transaction record and a deferred request's result in Redis: what an instance writes fits, and
   a larger value (a Redis writer's) is refused inside Redis, never pulled over and HMAC'd */
#define GW_STATE_MAX_RECORD (4 * GW_MAX_CMP_BODY)      /* the request, its certificate, a few fields */
#define GW_STATE_MAX_RESULT (2 * GW_MAX_UPSTREAM_BODY) /* a certificate and its chain, a reason */
/* one answer from Redis, read whole within "timeout": a claim's batch of records and results, and room */
#define GW_STATE_MAX_REPLY (GW_STATE_CLAIM_BATCH * (GW_STATE_MAX_RECORD + GW_STATE_MAX_RESULT) + 65536)
#define GW_DEFAULT_MAX_TXNS 10000
#define GW_DEFAULT_MAX_TXNS_PER_IDENTITY 16
#define GW_MAX_TXNS 1000000
#define GW_DEFAULT_PBM_MAX_ITER 10000 /* BouncyCastle sends 10 000; OpenSSL allows 100 000 */
#define GW_MIN_PBM_ITER 100           /* OpenSSL's own floor (crmf_pbm.c) */
#define GW_PBM_SPEND_SALT_LEN 16      /* the salt of cmp_pbm_spend's key: what OpenSSL's client sends */
#define GW_PBM_ANSWER_SALT_LEN 16     /* OpenSSL 3.0's MAC of a PBM answer: its context's pbm_slen, fixed */
#define GW_PBM_ANSWER_ITERATIONS 500  /* and its pbm_itercnt, which 3.0 has no option to change */
#define GW_REPLAY_MAX_ENTRIES 100000  /* transactionIDs remembered for replay detection */
#define GW_REPLAY_INITIAL_SLOTS 1024  /* the replay cache's ring at first; it doubles up to the max */
#define GW_DEFAULT_REPLAY_PER_IDENTITY 2000 /* of them, one identity's (per the cache's TTL) */
#define GW_REPLAY_SKETCH_WIDTH 65536        /* counters per row of the per-identity count (power of 2) */
/* "message_time_window" 0 (engine.c started_init): how far (s) a messageTime may lead the gateway's clock;
   it may lag it by the replay cache's TTL less this and GW_REPLAY_MARGIN */
#define GW_MSGTIME_AHEAD_NO_WINDOW 30
/* and the seconds the cache outlives the oldest messageTime let through, with a window (its TTL twice
   the window and this) or without: the second the clock reads whole, Redis's own clock and latency (the
   window on it lags by the time the checks took, up to this less a second: freshness.c redis_lag), a
   small step of the clock */
#define GW_REPLAY_MARGIN 30
#define GW_MIN_PBM_SECRET_LEN 8
#define GW_MAX_PBM_SECRET_LEN 1024
#define GW_MAX_PASSPHRASE_LEN 1024     /* of an encrypted private key, in its passphrase file */
#define GW_IDENTITY_LEN 256            /* printable identity (subject DN or PBM reference) */
#define GW_REPORT_NAME_LEN 256         /* a role, upstream or failInfo name as `cmpgw report` keeps it */
#define GW_REPORT_ROLES_NAMED 64       /* log roles `cmpgw report` names for a --role it lacks */
#define GW_IDENTITY_PREFIX 180         /* of a subject too long for it: its start, then its hash */
#define GW_TLS_CLIENT_LEN (7 + 64 + 1) /* "sha256:" and a TLS client certificate's hash in hex */
/* the credential a CMP sender authenticated with: "pbm:" and its reference, or its signer certificate's
   hash as GW_TLS_CLIENT_LEN */
#define GW_CREDENTIAL_LEN (4 + GW_MAX_KID_LEN + 1)
_Static_assert(GW_CREDENTIAL_LEN >= GW_TLS_CLIENT_LEN, "a credential holds a certificate's hash");
/* "<TLS client> <identity>": a share of a per-identity cap */
#define GW_QUOTA_KEY_LEN (GW_TLS_CLIENT_LEN + GW_IDENTITY_LEN)
#define GW_MAX_EXTRA_CERTS 16                   /* certificates in a request's extraCerts: signer and chain */
#define GW_MAX_EXTRA_CERTS_BYTES (32 * 1024)    /* their DER, of a GW_MAX_CMP_BODY message */
#define GW_MAX_EXTRA_CERTS_EXT_BYTES (8 * 1024) /* of it, their extensions' values: parsed once looked at */
#define GW_CERT_CACHE_SLOTS 256                 /* extraCerts parsed lately, kept to be parsed once */
/* public keys (SubjectPublicKeyInfo) one request may hold before OpenSSL decodes it: its extraCerts' and
   the request's own (a template, its POPO, a CSR), with room; OpenSSL 3.0 spends some 0.2 ms on each,
   and 64 KiB of them (300) cost 60-100 ms of CPU before any check */
#define GW_MAX_MSG_KEYS (GW_MAX_EXTRA_CERTS + 8)
/* ASN.1 elements (TLVs) of one request, the same way: 16 certificates of some 100 each, a request, room;
   OpenSSL spends some 0.5 us on each, and 64 KiB of small ones (20 000) cost 11 ms */
#define GW_MAX_MSG_ELEMENTS 4096
/*
 * Levels walked for them (the message's own TLV is level 0): what lies deeper OpenSSL 3.0 leaves undecoded
 * in an ANY, or refuses. It nests at most 30 items (ASN1_MAX_CONSTRUCTED_NEST), and an item spans up to
 * three levels (its own tag, an EXPLICIT tag, a SEQUENCE OF: extraCerts' [1] EXPLICIT SEQUENCE OF), so
 * the 30 items alone would allow 90; the CMP schema does not. Its one recursion is a nested PKIMessage,
 * as the body's nested (three levels for three items) or a generalInfo ITAV's origPKIMessage (header,
 * [8], SEQUENCE OF, ITAV, SEQUENCE OF: six levels for four items). The deepest PKIMessage whose header
 * still decodes is the 7th, item 25 at level 36 (an 8th, item 29, would have its sender at item 31).
 * In the five items left, a generalInfo ITAV's caProtEncCert no longer decodes (its AlgorithmIdentifier's
 * OID would be item 31): the deepest path is an rp body's revCerts (the body, item 26: its [12],
 * RevRepContent item 27, [0], SEQUENCE OF: levels 37 to 40), a CertId (item 28, level 41), its issuer a
 * GeneralName (item 29) directoryName ([4], level 42), an X509_NAME (item 30 at level 43, an EXTERN that
 * decodes its SEQUENCE, SET, AttributeTypeAndValue and string with a count of its own), its string at level
 * 46 in pieces six levels more (ASN1_MAX_STRING_NEST 5): level 52, every other path ending above it
 * (test_shim.c builds it, and a string in one more layer, and an 8th PKIMessage, which OpenSSL refuses).
 */
#define GW_DER_SCAN_DEPTH 64
#define GW_CURVE_KEYS 128                /* > OpenSSL 3.0's 82 named curves: a key kept for each (x509.c) */
#define GW_EC_POINT_MAX 145              /* an uncompressed point of the largest built-in curve (sect571) */
#define GW_CHAIN_CACHE_SLOTS 1024        /* validated client chains remembered per configuration generation */
#define GW_CHAIN_CACHE_SECS 300          /* how long one is: a trust change takes a reload anyway */
#define GW_X509_LINK_SLOTS 16            /* upstream chain links found signed, per generation (x509.c) */
#define GW_X509_LINK_DER_INLINE 8192     /* a link looked up: its two certificates' DER on the stack */
#define GW_MAX_SIGNER_CANDIDATES 4       /* certificates naming the sender that are tried as signer */
#define GW_MAX_VERIFY_KEY_BITS 8192      /* keys of anything verified for a client (signer, chain, POPO) */
#define GW_MAX_RSA_EXPONENT_BITS 32      /* their RSA public exponent: below 2^32 */
#define GW_MAX_CHAIN_DEPTH 8             /* certificates between a client's and its trust anchor */
#define GW_DEFAULT_REVOCATION_GRACE 3600 /* seconds a CRL past its nextUpdate still answers */
#define GW_MAX_REVOCATION_GRACE (7 * 24 * 3600)
#define GW_STATUS_REFRESH_SECS 300  /* an upstream's CRL is fetched again at least this often */
#define GW_STATUS_RETRY_SECS 5      /* and not sooner than this after a fetch failed or was past nextUpdate */
#define GW_MAX_STATUS_ISSUER_REFS 8 /* issuers' CRLs (Vault issuer/<ref>) one such fetch may try */
#define GW_MAX_GENM_ITAVS 8         /* infoTypes one genm may ask for (RFC 9483 §4.3 asks one) */
#define GW_GENM_CRL_SECS 5          /* a CRL fetched for a genm answers the genms this long after */
#define GW_GENM_CRL_REFS 8          /* issuers per upstream whose last genm fetch is remembered */
#define GW_MAX_GENP_VALUE (GW_MAX_RESPONSE - 16 * 1024) /* genp values: room left for header, extraCerts */
#define GW_MAX_GENERAL_INFO                                                                                  \
    16 /* generalInfo entries read from a request header (RFC 9483 §3.1 uses three)                         \
        */
#define GW_MAX_PROFILE_NAME_LEN                                                                              \
    GW_MAX_NAME_LEN /* a certProfile name (RFC 9483 §3.1): as long as a config name */

/* upstream */
#define GW_DEFAULT_UPSTREAM_TIMEOUT_MS 10000
#define GW_DEFAULT_UPSTREAM_MAX_INFLIGHT 64
/* "max_connections": an HTTP upstream's connections for asynchronous sign calls */
#define GW_DEFAULT_UPSTREAM_CONNECTIONS 64
#define GW_MAX_UPSTREAM_CONNECTIONS 1024
#define GW_MAX_UPSTREAM_BODY (1024 * 1024) /* an upstream answer (JSON with a certificate chain) */
#define GW_MAX_UPSTREAM_EXTRA_CERTS 32     /* of a CMP CA's answer: its signer's, the new one's chains */
#define GW_UPSTREAM_RETRIES 2              /* 412/429/503 retries, only where nothing happened */
#define GW_UPSTREAM_BACKOFF_MS 200         /* first backoff; doubles */
#define GW_UPSTREAM_END_CHECK_MS                                                                             \
    1000                              /* libcurl's progress callback comes at least this often: an end       \
                                         lowered while a transfer runs is seen that much later at most */
#define GW_UPSTREAM_PAUSE_CHECK_MS 20 /* a backoff pause reads its call's end this often */
#define GW_DEFAULT_PROBE_INTERVAL 10  /* seconds between an upstream's health probes */
#define GW_MAX_PROBE_INTERVAL 3600
#define GW_UPSTREAM_DOWN_AFTER 2       /* failed probes in a row before an upstream counts as down */
#define GW_VAULT_TOKEN_RENEW_MARGIN 60 /* re-login this many seconds before the token expires */
#define GW_MAX_VAULT_TOKEN_LEN 4096    /* a Vault token (file or login); batch tokens are the longest */
#define GW_ROLE_POLICY_TTL 60          /* seconds an upstream role policy stays cached */
#define GW_ROLE_POLICY_RETRY 5         /* seconds a failed read of a delegate's role refuses at once */
#define GW_ROLE_POLICY_WAIT_MS 200     /* a request's wait for another's read of its role's policy */
#define GW_MAX_ROLE_USAGES 64          /* usage names or OIDs read from one field of an upstream role */
#define GW_MAX_UPSTREAM_INFLIGHT 100000
/* what one upstream JSON answer may hold (upstream/answers.h); beyond it the answer is refused */
#define GW_MAX_VAULT_LEASE (10 * 365 * 24 * 3600) /* a Vault login's lease_duration, seconds */
#define GW_MAX_UPSTREAM_PEM (64 * 1024)           /* one PEM string: a certificate, a CA, a ca_chain entry */
#define GW_MAX_UPSTREAM_CHAIN 16                  /* CA certificates of one answer's chain */
#define GW_MAX_UPSTREAM_MESSAGES 16               /* entries of an answer's errors, warnings or messages */
#define GW_MAX_UPSTREAM_MESSAGE (4 * 1024)        /* one of them, bytes */
#define GW_MAX_UPSTREAM_CONTAINERS 1024           /* JSON objects and arrays: its '{' and '[' bytes */
#define GW_MAX_VAULT_QUOTE 150                    /* bytes of Vault's error message a reason quotes */
#define GW_MAX_VAULT_WHY 150                      /* bytes of why a Vault call failed a reason keeps */
#define GW_MAX_VAULT_CALL_ERR 120                 /* ... of a failed call's reason, under its path */
#define GW_MAX_VAULT_SIGN_ERR 200                 /* ... of why a sign was not asked or answered */
#define GW_MAX_VAULT_WARNINGS 200                 /* bytes of Vault's warnings a reason quotes */
/* one comma-separated SAN list of a Vault sign call (alt_names, ip_sans, uri_sans): every name a plan may
   hold, each whole with its comma; one that would not fit refuses the sign, never cuts the list */
#define GW_VAULT_SAN_LIST_LEN (GW_MAX_SANS * (GW_MAX_PATTERN_LEN + 1))
#define GW_MAX_CFSSL_QUOTE 120              /* bytes of cfssl's error message a reason quotes */
#define GW_MAX_CFSSL_WHY 150                /* bytes of why a cfssl answer is refused a reason keeps */
#define GW_MAX_UPSTREAM_TIME 253402300799LL /* a Unix time: 9999-12-31T23:59:59Z (RFC 5280 §4.1.2.5) */
#define GW_MAX_CFSSL_CODE 99999             /* cfssl error codes: category * 1000 + reason */
#define GW_MAX_KEY_TYPE_LEN 15              /* an upstream role's key_type ("rsa", "ec", "ed25519") */
#define GW_MAX_ISSUER_REF_LEN 128 /* an upstream role's issuer_ref (Vault: an issuer's id or name) */
#define GW_MAX_SERIAL_OCTETS 20   /* a certificate serial number (RFC 5280 §4.1.2.2) */
#define GW_MAX_CHECK_AFTER 60     /* seconds: the longest checkAfter a pollRep asks (polling) */
/* octets of a serial a record or log line keeps whole: a CA's longer one is refused, and its operator
   revokes it by hand by the serial on record; one longer still is cut, marked (gw_x509_serial_hex) */
#define GW_MAX_SERIAL_SHOWN 64
#define GW_SERIAL_HEX_LEN (2 * GW_MAX_SERIAL_SHOWN + 2) /* that in hex, a '-' and the NUL */

/* certificates */
#define GW_SERIAL_BITS 159 /* random serials; RFC 5280 caps at 20 octets */
#define GW_DEFAULT_TTL (30 * 24 * 3600)
#define GW_DEFAULT_MAX_TTL (90 * 24 * 3600)
/* what caps a Vault role without max_ttl: the mount's max lease TTL, which the gateway does not read (a
   delegate holds to Vault's default system max lease TTL, 768h, whatever the mount is tuned to) */
#define GW_VAULT_MAX_LEASE_TTL (768 * 3600)
#define GW_BACKDATE_SECS 60 /* notBefore backdated against client clock skew */
#define GW_MAX_SANS 100     /* subjectAltName entries one request may ask for */
/* their DER, all entries together: what the gateway issues stays within what it accepts from a client
   (GW_MAX_EXTRA_CERTS_EXT_BYTES of extensions in extraCerts, GW_MAX_TLS_CLIENT_CHAIN) */
#define GW_MAX_SAN_BYTES 4096
#define GW_ISSUED_TTL_SLACK 300 /* an upstream's notAfter may pass now + max_ttl by this (rounding) */
/* a notAfter this much before the planned one, or after the one the client asked for, is no change */
#define GW_ISSUED_SHORTEN_SLACK 300
#define GW_ISSUED_BACKDATE_SLACK 600 /* an upstream's notBefore may precede the plan's by this */
/* a plan this much short of whole days asks a CMP CA for them (a client's "-days 3" reaches the gateway a
   moment after its notAfter was counted); what the CA adds to the plan stays within both slacks above */
#define GW_ISSUED_DAYS_SLACK 60
_Static_assert(GW_ISSUED_DAYS_SLACK < GW_ISSUED_SHORTEN_SLACK && GW_ISSUED_DAYS_SLACK < GW_ISSUED_TTL_SLACK,
               "a CA's whole days must stay within the slacks of the issued check");
/* OpenSSL's security level for an upstream's chain (X509_VERIFY_PARAM_set_auth_level): 112 bits,
   so no SHA-1 or MD5 signature (63 and 39 bits in OpenSSL 3.0) and no RSA key under 2048 bits, as
   the gateway's TLS client chains at the distribution default and the keys it lets clients request */
#define GW_ISSUED_AUTH_LEVEL 2
/* The same for a client's signer chain (the ir/cr/kur/p10cr/rr/genm/certConf signer, an RA) and a TLS
   client certificate held to a role's tls_trust: no SHA-1 or MD5 signature below the trust anchor, no
   RSA key under 2048 bits in the chain */
#define GW_SIGNER_AUTH_LEVEL 2
/* the hash of a signature protecting a message, in bits of output: SHA-224 (112 bits of security) or
   more; SHA-1 (63 in OpenSSL 3.0) and MD5 are what level 2 refuses in a certificate */
#define GW_MIN_PROTECTION_HASH_BITS 224
/* a protectionAlg OpenSSL does not know, named in its refusal in dotted form: a longer one is cut */
#define GW_OID_TEXT_LEN 80
/* the same for a request's POPO signature and a p10cr's CSR signature: the key the CA certifies is
   bound to its holder by that signature alone */
#define GW_MIN_POPO_HASH_BITS 224
#define GW_CRL_NEXT_UPDATE_SECS (24 * 3600) /* local issuer's CRL: nextUpdate = thisUpdate + this */
#define GW_CRL_REFRESH_SECS 3600            /* its cached CRL is re-signed at least this often */
/* a revoked certificate stays on it this long past its notAfter, then leaves it (RFC 5280 §5.1.2.6): every
   CRL valid at the moment it expired, and every one issued the day after, still lists it */
#define GW_CRL_EXPIRED_KEEP_SECS GW_CRL_NEXT_UPDATE_SECS
/* a re-signing for age alone that failed: the cached CRL, still within its nextUpdate, is served this
   long before the next try, rather than every unauthenticated GET listing revoked/ again */
#define GW_CRL_RETRY_SECS 30
/* a CRL's thisUpdate may be this far ahead of the reader's clock (clocks differ): the revocation check
   and a genm take it, and the local issuer warns of a crl.state dated further ahead */
#define GW_CRL_CLOCK_SKEW_SECS 300
/* a store's crl.lock (the local issuer's CRL number, a revocation's generation) is waited for this long,
   never more: a frozen instance holding it must not hold every worker asking for a CRL here */
#define GW_CRL_LOCK_WAIT_MS 2000
#define GW_CRL_LOCK_PAUSE_MS 50 /* the longest pause between two tries of it */
/* a shared store's crl.gen (another instance's revocation) is read at most this often per instance */
#define GW_CRL_GEN_CHECK_MS 1000
#define GW_MAX_CERT_EXTS 64     /* extensions of an issued certificate (compared pairwise) */
#define GW_MAX_SUBJECT_ATTRS 64 /* planned subject attributes an issued one is matched against (pairwise) */

/* config */
#define GW_MAX_CONFIG_SIZE (1024 * 1024)
/* a file gw_conf_open reads whole (certificates, CRLs, allow-lists): a bigger one is refused unread */
#define GW_MAX_CONF_FILE_SIZE (64 * 1024 * 1024)
#define GW_MAX_NAME_LEN 64 /* role, label, upstream, trust names */
#define GW_MAX_LISTENERS 16
#define GW_MAX_PATH_PREFIX_LEN 128 /* "path_prefix", e.g. "/v1/pki" */
#define GW_MAX_DN_LEN 1024         /* a one-line DN, e.g. a cmp upstream's "expected_sender" */
#define GW_MAX_UPSTREAM_TIMEOUT_MS (3600 * 1000)
#define GW_MAX_UPSTREAM_DELAY_MS (600 * 1000)
#define GW_MAX_CERT_TTL (100u * 365 * 24 * 3600) /* role ttl/max_ttl cap (seconds) */
#define GW_MAX_MSGTIME_WINDOW (24 * 3600)
#define GW_MAX_TXN_TTL (24 * 3600)
#define GW_MAX_PBM_ITER 100000                   /* OpenSSL's own ceiling (crmf_pbm.c) */
#define GW_MAX_PATTERN_LEN (GW_MAX_NAME_LEN * 4) /* one authorization pattern or CIDR */
#define GW_MAX_PATTERNS 256                      /* entries in one pattern list */
#define GW_MAX_RDN_ATTRS 16                      /* attributes of one RDN a subject pattern matches */
#define GW_MAX_KEY_RULES 16                      /* entries in allowed_key_types */
#define GW_MIN_RSA_BITS 2048                     /* any requested RSA key, allowed_key_types */
#define GW_MIN_RSA_EXPONENT 65537UL              /* any requested RSA key's public exponent (also odd) */
#define GW_MAX_RSA_BITS 16384
#define GW_MAX_URL_LEN 256     /* upstream base URL */
#define GW_MAX_MOUNT_LEN 128   /* vault mount path, namespace */
#define GW_MIN_HMAC_KEY_LEN 16 /* cfssl auth key, bytes after hex decoding */
#define GW_MAX_HMAC_KEY_LEN 64
#define GW_DELEGATE_MAX_DAYS 397              /* a delegate issuer's validity above this is warned about */
#define GW_MAX_ALLOWLIST_ENTRIES 100000       /* lines of a role's "device_allowlist" (3GPP) */
#define GW_MAX_ALLOWLIST_LINE GW_IDENTITY_LEN /* one line: [trust:<name> ] subject or "serial:<hex>" */
#define GW_MAX_ALLOWLIST_TRUST 16             /* trust entries its lines name ("trust:<name> ...") */
#define GW_MAX_ALLOWED_EXTS 32                /* entries in a role's "allowed_extensions" */
#define GW_MAX_OID_TEXT 64                    /* a dotted OID in the config or an upstream role ("1.2.3.4") */

/* audit log and the local issuer's inventory */
/* one transaction field of a record (tid, route, role, identity, tls_subject, credential_status,
   body_type, upstream, serial, status), escaped; cut beyond it. What the gateway puts there comes from a
   buffer of at most 2 * GW_ERR_LEN bytes or is a configured name (gateway/cmp/record.c asserts it), six
   times as long escaped at worst, which this keeps whole: it bounds a record whatever a caller hands
   gw_audit_write */
#define GW_AUDIT_TXN_FIELD_MAX (4 * 1024)
#define GW_AUDIT_LINE_MAX (1024 * 1024)      /* one audit line: a CSR in PEM, escaped subjects and SANs */
#define GW_AUDIT_FIELD_MAX (16 * 1024)       /* one audit_fields name field, escaped; cut beyond it */
#define GW_AUDIT_CSR_MAX (128 * 1024)        /* the "csr" field escaped: a GW_MAX_CMP_BODY request's in PEM */
#define GW_AUDIT_SYNC_RING 64                /* fsync results an audit log keeps for its waiting writers */
#define GW_AUDIT_ERR_LOG_SECS 1              /* at most one "audit_failed" log line per second */
#define GW_STORE_LIST_MAX (16 * 1024 * 1024) /* a store's certificates listed, revoked/ records held */
#define GW_STORE_FILE_MAX (64 * 1024)        /* one stored <serial>.pem */
#define GW_STORE_TMP_STALE_SECS 60           /* a temporary file this old in a store was left by a crash */

/* logs and errors */
#define GW_ERR_LEN 256 /* one human-readable error line */
/* a name a client sent, quoted in an error line: a longer one is cut and ends in "..." */
#define GW_ERR_NAME_SHOWN 96
#define GW_LOG_LINE_MAX 4096
/* an event a peer can cause before it authenticates: at most GW_LOG_PACE_LINES lines a window of
   GW_LOG_PACE_SECS, the rest counted and reported with the next line (gw_log_pace_due) */
#define GW_LOG_PACE_SECS 10
#define GW_LOG_PACE_LINES 20
/* an event an authenticated peer causes: GW_LOG_PACE_LINES a window for each peer, so many peers at once,
   each found among GW_LOG_PACE_PROBE places (gw_log_peer_pace_due) */
#define GW_LOG_PACE_PEERS 256
#define GW_LOG_PACE_PROBE 8
/* a peer's name: its TLS client certificate's hash, or the credential of its CMP protection */
#define GW_LOG_PACE_NAME_LEN GW_CREDENTIAL_LEN
/* an error every request meets while it lasts (the shared state unreachable): one line in GW_LOG_OUTAGE_SECS,
   the first of an outage at once unless the last went out within the interval (an earlier outage's), the
   rest counted and reported with the next line or its end (gw_log_outage_due) */
#define GW_LOG_OUTAGE_SECS 10

#endif
