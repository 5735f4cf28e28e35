/*
 * Admission by client address (docs/security.md, "Bounded work"): connections in total and per
 * address, requests in flight per address, and a budget of failed authentications per address. One
 * table with one lock, shared by the loop threads; memory is fixed at creation. An address is a
 * client's IP, never its port: an IPv4 address, an IPv4-mapped IPv6 address as the IPv4 address it
 * maps, any other IPv6 address as its first |ipv6_prefix| bits (one host is commonly given a whole
 * /64, and would otherwise have 2^64 addresses' worth of every limit).
 */
#ifndef GW_GUARD_H
#define GW_GUARD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

struct gw_guard_conf {
    uint32_t max_connections; /* in total */
    uint32_t max_connections_per_address;
    uint32_t max_requests_per_address; /* in flight at once: from the handler to the answer */
    /* in flight at once in total, whoever sent them: what the workers, their queue and the upstream
       calls can hold (set by the listener); 0 = max_connections */
    uint32_t max_requests;
    uint32_t auth_failures;       /* per address and window; 0 = no budget */
    uint32_t auth_failure_window; /* seconds */
    uint32_t ipv6_prefix;         /* bits of an IPv6 address that make the address: 1..128 */
};

struct gw_guard;

/*
 * gw_guard_new sizes its table for |conf| (copied): for every connection and every request in flight
 * on addresses of their own (a request outlives its connection when its client leaves before the
 * answer), so that an address that holds none is let in: an address that holds only failures gives
 * up its slot to it if need be, and to another's new failure when the table is full of them, the one
 * with fewest failures first. NULL on a zero limit, an |ipv6_prefix| outside 1..128, or out of memory.
 */
struct gw_guard *gw_guard_new(const struct gw_guard_conf *conf);
void gw_guard_free(struct gw_guard *g);

/*
 * gw_guard_set_max_requests sets the guard's max_requests (0: max_connections), as a reload changes
 * what the upstream calls can hold, and grows the table to have room for them as gw_guard_new would:
 * 0, or GW_ERR_NOMEM with nothing changed (out of memory, or, at negligible odds, an address that
 * holds a connection or request finds no room near where it now belongs). The requests in flight stay
 * counted. Any thread.
 */
int gw_guard_set_max_requests(struct gw_guard *g, uint32_t max_requests);

/*
 * gw_guard_set_auth_budget sets auth_failures and auth_failure_window, as a reload changes them:
 * neither sizes the table. A window already open keeps its start and its failures and is judged by
 * the new values from then on. Each address the new values shut out at |now| and the old ones did not
 * (a lower budget than its failures) is passed to |on_shut_out| (NULL: none is) as its IPv4 address,
 * its IPv6 prefix or its IPv6 site (gw_guard_auth_failed), the bits past it zero, with |bits| the
 * bits that make it (32, ipv6_prefix, GW_GUARD_SITE_BITS), with the guard's lock held: it must not call
 * the guard. GW_ERR_INVAL with nothing changed on a budget without a window. Any thread.
 */
int gw_guard_set_auth_budget(
    struct gw_guard *g, uint32_t auth_failures, uint32_t auth_failure_window, time_t now,
    void (*on_shut_out)(void *arg, const struct sockaddr *sa, socklen_t len, uint32_t bits), void *arg);

/*
 * gw_guard_conn_open counts a new connection from |sa|: 0, or GW_ERR_BUSY (this address holds its share,
 * said first where the total is reached too; or the table has no room for another address), GW_ERR_LIMIT
 * (the total is reached), GW_ERR_INVAL (not an IPv4 or IPv6 address). Only a 0 is to be closed with
 * gw_guard_conn_close.
 */
int gw_guard_conn_open(struct gw_guard *g, const struct sockaddr *sa, socklen_t len);
void gw_guard_conn_close(struct gw_guard *g, const struct sockaddr *sa, socklen_t len);

/* gw_guard_same_address: whether |a| and |b| are one client address as the guard counts them. Any thread. */
bool gw_guard_same_address(const struct gw_guard *g, const struct sockaddr *a, socklen_t alen,
                           const struct sockaddr *b, socklen_t blen);

/*
 * gw_guard_conn_kept: whether a connection is not one to make room with at |now| (ms, gw_now_ms) for what its
 * client showed: its last request that passed every check of its sender was answered at |proven_at| (0: none)
 * less than GW_PROVEN_HOLD_MS ago, or it is before |grace_until| (0: none), the end of a verified TLS client
 * certificate's grace for its first request. Any thread.
 */
bool gw_guard_conn_kept(uint64_t now, uint64_t proven_at, uint64_t grace_until);

/*
 * gw_guard_req_begin counts a request of |sa| that is handed to the workers: 0, or GW_ERR_LIMIT
 * (max_requests are in flight), GW_ERR_BUSY (this address holds max_requests_per_address, or the
 * table has no room for it), GW_ERR_INVAL.
 * Only a 0 is to be ended with gw_guard_req_end, when the request is answered or its client gone.
 */
int gw_guard_req_begin(struct gw_guard *g, const struct sockaddr *sa, socklen_t len);
void gw_guard_req_end(struct gw_guard *g, const struct sockaddr *sa, socklen_t len);

/*
 * gw_guard_auth_check: 0 if |sa| may still try to authenticate at |now|, else GW_ERR_LIMIT with
 * *retry_after the seconds until its window ends. gw_guard_auth_failed counts one failure: nonzero for
 * the one that uses up a budget (once a window, however many come after), so that the caller says so
 * once and not at every refusal that follows: the bits of |sa| that make what is now shut out, 32 or
 * ipv6_prefix for its address, GW_GUARD_SITE_BITS for its IPv6 site. A site's failures count together
 * besides its addresses' only for an ipv6_prefix longer than a site's, and only within a window of the
 * last time one of its own prefixes, to be counted (a connection, a request or a failure), took the
 * place of another of its prefixes' live failure or found no place: a table crowded by other addresses
 * merges no site.
 */
int gw_guard_auth_check(struct gw_guard *g, const struct sockaddr *sa, socklen_t len, time_t now,
                        uint32_t *retry_after);
uint32_t gw_guard_auth_failed(struct gw_guard *g, const struct sockaddr *sa, socklen_t len, time_t now);

/*
 * gw_guard_probes: the slots the guard has looked at to find addresses since gw_guard_new, at most
 * GW_GUARD_PROBES a lookup however crowded the table: what a caller holds the lock for. Any thread.
 */
uint64_t gw_guard_probes(struct gw_guard *g);

#endif
