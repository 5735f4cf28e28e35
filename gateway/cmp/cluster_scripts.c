/*
 * The shared state's steps, one Lua script each, atomic in Redis (cluster.c runs them and says what the
 * keys are). Above each: the keys and arguments it takes, and what it answers.
 */
#include "gateway/cmp/cluster_local.h"
#include "base/limits.h"

_Static_assert(GW_STATE_LEASE_SECS < GW_STATE_GRACE, "a lease's hold (S_TAKE) never outlasts a reservation");

/* In a script: the result key, or the reservation, of the record key KEYS[1] (or |k|) */
#define LUA_RES_OF(k) "(string.gsub(" k ", 'rec:(%x+)$', 'res:%1'))"
#define LUA_TXN_OF(k) "(string.gsub(" k ", 'rec:(%x+)$', 'txn:%1'))"
#define LUA_TOOK_OF(k) "(string.gsub(" k ", 'rec:(%x+)$', 'took:%1'))"
#define LUA_DEADLINES_OF(k) "(string.gsub(" k ", 'rec:%x+$', 'deadlines'))"
#define LUA_EPOCH_OF(k) "(string.gsub(" k ", 'rec:%x+$', 'epoch'))"
#define LUA_NUM_(n) #n
#define LUA_NUM(n) LUA_NUM_(n)
/* In a script: the revoking: mark beside the revoked: entry |k| */
#define LUA_MARK_OF(k) "(string.gsub(" k ", 'revoked:(%x+)$', 'revoking:%1'))"
/* In a script: the counted set of the revoked: entry |k| */
#define LUA_REVOKED_SET_OF(k) "(string.gsub(" k ", 'revoked:%x+$', 'revoked'))"
/* In a script: the seconds (or milliseconds) |a| as a TTL, 1 at least: Redis refuses SET ... EX 0, or a
   negative one, failing the whole script, and EXPIRE 0 deletes the key */
#define LUA_TTL(a) "math.max(1, tonumber(" a "))"

/* clang-format off */
/*
 * KEYS: the entry and the share's sorted set; ARGV: value, ttl (1 at least), cap (0: none). Both counted
 * steps end alike: expired members out, the cap, then the entry and its member. Scores are expiries on
 * Redis's clock, as S_PUT writes them: an instance's own clock, skewed, would keep a member counted past
 * its end or sweep one still open (scripts replicate as their effects, so TIME is safe before a write).
 */
#define LUA_COUNTED_SET \
    "local ttl, now = " LUA_TTL("ARGV[2]") ", tonumber(redis.call('TIME')[1])\n" \
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)\n" \
    "if tonumber(ARGV[3]) > 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 3 end\n" \
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)\n" \
    "redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])\n" \
    "if redis.call('TTL', KEYS[2]) < ttl then redis.call('EXPIRE', KEYS[2], ttl) end\n" \
    "return 0\n"

/* In a script: the reservation of the record KEYS[1] lasts |secs| seconds more at least, as what is
   written beside the record for that long does (TTL rounds to the second: <= keeps it the longer). Its
   score in the share's open: set stays: a lease's hold (S_TAKE) acts only with the record's deadline
   passed, which S_TAKE refuses first (the reservation lives GW_STATE_GRACE past it, longer than a lease),
   and a result's (S_RESULT) outlasts the record's deadline and grace only for the result: the transaction
   is past its deadline then, and counts as open no more, as one its instance released */
#define LUA_HOLD_TXN(secs) \
    "if redis.call('TTL', " LUA_TXN_OF("KEYS[1]") ") <= tonumber(" secs ") then\n" \
    "  redis.call('EXPIRE', " LUA_TXN_OF("KEYS[1]") ", " LUA_TTL(secs) ")\n" \
    "end\n"

/* One line of Lua per line of C: */
const char *const cluster_scripts[N_SCRIPTS] = {
    /* KEYS: the replay entry and the share's sorted set; ARGV: the senderNonce, ttl, cap (LUA_COUNTED_SET's),
       the messageTime ('': none) and the seconds it may lag and lead (the lag the window's and the seconds
       since the instance read its own clock for the request: gw_cluster_seen). {4, messageTime less Redis's
       clock}, nothing written, when outside that window on Redis's clock; 1 (same nonce), 2 (another), or
       LUA_COUNTED_SET's. The entry's TTL runs on Redis's clock, so the window is judged on it too: on each
       instance's own alone, one whose clock lags (or a fleet stepped back) would let a messageTime through
       again once Redis dropped the entry. A message let through at Redis's time r has a messageTime of r +
       ahead at most, so once its entry expires at r + ttl (ttl > lag + ahead) that messageTime is more
       than the lag old here, whatever the instances' clocks. Without a messageTime the entry alone bounds it */
    [S_SEEN] = "if ARGV[4] ~= '' then\n"
               "  local off = tonumber(ARGV[4]) - tonumber(redis.call('TIME')[1])\n"
               "  if off < -tonumber(ARGV[5]) or off > tonumber(ARGV[6]) then return {4, off} end\n"
               "end\n"
               "local v = redis.call('GET', KEYS[1])\n"
               "if v then if v == ARGV[1] then return 1 end return 2 end\n" LUA_COUNTED_SET,
    [S_RESERVE] = "if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end\n" LUA_COUNTED_SET,
    /* KEYS: the reservation and the share's sorted set; ARGV: this instance. The share's count goes
       down; the reservation stays (until it expires) while a record, result or lease of the
       transactionID lives: an instance may still continue, end or rewrite it. 0; 1, nothing touched,
       when another instance holds the reservation: this one's ran out (a transaction it held outlived
       it) and that one reserved the transactionID for a transaction of its own, open now and counted
       in its share (the instance that ends a record holds its reservation from then: S_DROP) */
    [S_RELEASE] = "local o = redis.call('GET', KEYS[1])\n"
                  "if o and o ~= ARGV[1] then return 1 end\n"
                  "local r = string.gsub(KEYS[1], 'txn:(%x+)$', 'rec:%1')\n"
                  "local l = string.gsub(KEYS[1], 'txn:(%x+)$', 'lease:%1')\n"
                  "local res = string.gsub(KEYS[1], 'txn:(%x+)$', 'res:%1')\n"
                  "if redis.call('EXISTS', r, l, res) == 0 then redis.call('DEL', KEYS[1]) end\n"
                  "redis.call('ZREM', KEYS[2], KEYS[1])\n"
                  "return 0\n",
    /* KEYS: the record and the deadlines; ARGV: the record, its seconds, the seconds to its deadline,
       this instance, the share's open: set. The record, its deadline on Redis's clock (for the instance
       that records its expiry if its own is gone: gw_cluster_claim_expired), and the transactionID's
       reservation until the record goes, taken again if it ran out (an upstream call longer than it),
       counted in the share as long: the reservation's score moves with it, or the count would sweep a
       transaction still open once its first score passed (on Redis's clock, as LUA_COUNTED_SET's). 0; 2,
       nothing written, when
       another instance reserved the transactionID meanwhile */
    [S_PUT] = "local t = " LUA_TXN_OF("KEYS[1]") "\n"
              "local o = redis.call('GET', t)\n"
              "if o and o ~= ARGV[4] then return 2 end\n"
              "local secs, now = " LUA_TTL("ARGV[2]") ", tonumber(redis.call('TIME')[1])\n"
              "redis.call('SET', t, ARGV[4], 'EX', secs)\n"
              "redis.call('SET', KEYS[1], ARGV[1], 'EX', secs)\n"
              "redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), KEYS[1])\n"
              "redis.call('ZADD', ARGV[5], now + secs, t)\n"
              "if redis.call('TTL', ARGV[5]) < secs then redis.call('EXPIRE', ARGV[5], secs) end\n"
              "return 0\n",
    /* KEYS: the record and its lease; ARGV: this instance ("": read without the lease), the lease's
       seconds, the largest record and result an instance writes. The record, its result (or nil) and the
       instance that holds the transactionID's reservation (or nil: the one whose transaction it is, S_DROP), 1
       when another instance holds it, 2 when either is larger than an instance writes, 3 when its
       deadline (its score in the deadlines, as the claim reads it: ZADD XX INCR 0 reads it unchanged with
       a command the gateway's ACL has) has passed on Redis's clock (neither sent nor leased, for 2 and
       3), or nil; the lease holds the reservation */
    [S_TAKE] = "local v = redis.call('GET', KEYS[1])\n"
               "if not v then return nil end\n"
               "local d = redis.call('ZADD', " LUA_DEADLINES_OF("KEYS[1]") ", 'XX', 'INCR', 0, KEYS[1])\n"
               "if d and tonumber(d) <= tonumber(redis.call('TIME')[1]) then return 3 end\n"
               "local r = redis.call('GET', " LUA_RES_OF("KEYS[1]") ")\n"
               "if #v > tonumber(ARGV[3]) or (r and #r > tonumber(ARGV[4])) then return 2 end\n"
               "if ARGV[1] ~= '' then\n"
               "  if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', " LUA_TTL("ARGV[2]") ") then return 1 end\n"
               LUA_HOLD_TXN("ARGV[2]")
               "end\n"
               "return {v, r, redis.call('GET', " LUA_TXN_OF("KEYS[1]") ")}\n",
    /* KEYS: the record and its lease; ARGV: this instance, the deadlines, '1' to end it whoever holds
       its lease ('r': read back only what the end of that id took, as it answered, or {0, ''}, touching nothing),
       the largest result an instance writes, this end's id (its retry's too), the instance that reserved
       the transaction ending ('': this one). A record under a reservation another instance holds is not
       that transaction's: its reservation and record ran out (a deferred request's call outlived them) and
       that instance reserved the transactionID for a transaction of its own, as S_RELEASE finds it. It is
       left as it is, result, lease and reservation, and the end answers (and keeps) {0, ''} as for a record
       gone. 2 when another
       instance holds the lease (and it stays); else {1 if the record was there, the result that went
       with it ('' if none, or larger than an instance writes), the epoch ('' if none): a retry that ran
       the end itself tells by it whether Redis lost what its first try took}; the lease goes only if this
       instance holds it. What an end took ('1' and the result; '0' if it found no record) is kept under a
       took: key of its own (the instance, the end's id) for GW_STATE_TOOK_SECS: the same end asked again
       answers it as the lost answer did, touching nothing (a record there by then is a later transaction's
       under the transactionID), and 'r' reads it back should that answer be lost too: {0, '', the epoch
       ('' if none)} when nothing is kept, for the instance to tell an end that never ran from a took: that
       Redis lost. No other end, of this instance or another (a later transaction under the transactionID),
       is handed it or deletes it before then. An end that removed the record passes the transactionID's
       reservation to this instance (while the record lived, the reservation was the record's
       transaction's: S_PUT writes both, and the reservation outlives the record), for this instance's
       release (S_RELEASE) to end it, whichever instance reserved it */
    [S_DROP] = "local took = " LUA_TOOK_OF("KEYS[1]") " .. ':' .. ARGV[1] .. ':' .. ARGV[5]\n"
               "local p = redis.call('GET', took)\n"
               "if p then p = {string.sub(p, 1, 1) == '1' and 1 or 0, string.sub(p, 2)} end\n"
               "if p and #p[2] > tonumber(ARGV[4]) then p[2] = '' end\n"
               "if p then return p end\n"
               "if ARGV[3] == 'r' then return {0, '', redis.call('GET', " LUA_EPOCH_OF("KEYS[1]") ") or ''} end\n"
               "local o = redis.call('GET', " LUA_TXN_OF("KEYS[1]") ")\n"
               "if o and o ~= (ARGV[6] ~= '' and ARGV[6] or ARGV[1]) then\n"
               "  redis.call('SET', took, '0', 'EX', " LUA_NUM(GW_STATE_TOOK_SECS) ")\n"
               "  return {0, '', redis.call('GET', " LUA_EPOCH_OF("KEYS[1]") ") or ''}\n"
               "end\n"
               "local l = redis.call('GET', KEYS[2])\n"
               "if l and l ~= ARGV[1] and ARGV[3] ~= '1' then return 2 end\n"
               "local res = " LUA_RES_OF("KEYS[1]") "\n"
               "local r = redis.call('GET', res) or ''\n"
               "if #r > tonumber(ARGV[4]) then r = '' end\n"
               "local n = redis.call('DEL', KEYS[1])\n"
               "if n == 1 then redis.call('SET', " LUA_TXN_OF("KEYS[1]") ", ARGV[1], 'XX', 'KEEPTTL') end\n"
               "redis.call('DEL', res)\n"
               "if l == ARGV[1] then redis.call('DEL', KEYS[2]) end\n"
               "redis.call('ZREM', ARGV[2], KEYS[1])\n"
               "redis.call('SET', took, n .. r, 'EX', " LUA_NUM(GW_STATE_TOOK_SECS) ")\n"
               "return {n, r, redis.call('GET', " LUA_EPOCH_OF("KEYS[1]") ") or ''}\n",
    /* KEYS[2], a record's lease, goes if this instance holds it */
    [S_UNLEASE] = "if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end\n"
                  "return 0\n",
    /* readiness: scripts run (an ACL that forbids them, or a Redis that refuses writes, shows). KEYS[1]: the
       epoch, ARGV[1] if there is none; its value */
    [S_PING] = "redis.call('SET', KEYS[1], ARGV[1], 'NX')\n"
               "return redis.call('GET', KEYS[1])\n",
    /* KEYS: the deadlines and this instance's claimed:; ARGV: the slack, how many, the largest record and
       result an instance writes, this claim's id. The records past their deadline, each taken by exactly
       one caller: key, record, result (or ""), key, record, result...; a larger one as "" and "" (it does
       not verify). What a claim took is kept under its id until this instance's next claim, asked under
       another id once the answer came: a claim asked again under its id, its answer lost, answers it as
       the lost answer did, and takes nothing more */
    [S_CLAIM] =
        "local t = redis.call('GET', KEYS[2])\n"
        "local id = t and string.match(t, '^(%d+):')\n"
        "if id == ARGV[5] then return cmsgpack.unpack(string.sub(t, #id + 2)) end\n"
        "if t then redis.call('DEL', KEYS[2]) end\n"
        "local out = {}\n"
        "local now = tonumber(redis.call('TIME')[1]) - tonumber(ARGV[1])\n"
        "for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])) do\n"
        "  local l = string.gsub(k, 'rec:(%x+)$', 'lease:%1')\n"
        "  if redis.call('EXISTS', l) == 0 and redis.call('ZREM', KEYS[1], k) == 1 then\n"
        "    local v = redis.call('GET', k)\n"
        "    local r = " LUA_RES_OF("k") "\n"
        "    if v then\n"
        "      local res = redis.call('GET', r) or ''\n"
        "      if #v > tonumber(ARGV[3]) or #res > tonumber(ARGV[4]) then v, res = '', '' end\n"
        "      table.insert(out, k) table.insert(out, v) table.insert(out, res)\n"
        "      redis.call('DEL', k, r)\n"
        "    end\n"
        "  end\n"
        "end\n"
        "if #out > 0 then\n"
        "  redis.call('SET', KEYS[2], ARGV[5] .. ':' .. cmsgpack.pack(out), 'EX', " LUA_NUM(GW_STATE_TOOK_SECS) ")\n"
        "end\n"
        "return out\n",
    /* KEYS: the record, the result; ARGV: the result, its seconds. 1, or 0 when the record is gone; the
       result holds the reservation */
    [S_RESULT] = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                 "redis.call('SET', KEYS[2], ARGV[1], 'EX', " LUA_TTL("ARGV[2]") ")\n"
                 LUA_HOLD_TXN("ARGV[2]")
                 "return 1\n",
    /* KEYS: the record, its lease; ARGV: the record, this instance. 1; 0 when the record is gone; 2
       when this instance no longer holds the lease (another may be answering: its rewrite stands) */
    [S_UPDATE] = "if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 2 end\n"
                 "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                 "redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')\n"
                 "return 1\n",
    /* KEYS: a certificate's keyed revoked: entry and its entry by issuer and serial (one key twice for a
       certificate that names no CA key); ARGV: the value that marks the latter as kept beside a keyed one.
       1 when an instance revoked it: its keyed entry, its entry by issuer and serial unless marked (an
       earlier version's, which writes "1"), or the mark of that one left "done" (S_UNMARK) while that
       lives; else 0. The mark is read, never written */
    [S_REVOKED] = "if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end\n"
                  "local v = redis.call('GET', KEYS[2])\n"
                  "if v and v ~= ARGV[1] then return 1 end\n"
                  "if redis.call('GET', " LUA_MARK_OF("KEYS[2]") ") == 'done' then return 1 end\n"
                  "return 0\n",
    /* KEYS: as S_REVOKED; ARGV: this instance, the mark's milliseconds, the marking value. 2 when an
       instance revoked it (nothing marked), as S_REVOKED finds; 1 when another instance's mark holds
       (the revoking: mark of its entry by issuer and serial, which an earlier version takes too); else
       0, marked. A mark of this instance's own is taken again: its revocations of one certificate run
       one at a time (revoked.c), so that one is left over (its end, or the answer to its taking, was
       lost) */
    [S_REVOKING] = "if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end\n"
                   "local v = redis.call('GET', KEYS[2])\n"
                   "if v and v ~= ARGV[3] then return 2 end\n"
                   "local k = " LUA_MARK_OF("KEYS[2]") "\n"
                   "local m = redis.call('GET', k)\n"
                   "if m == 'done' then return 2 end\n"
                   "if m and m ~= ARGV[1] then return 1 end\n"
                   "redis.call('SET', k, ARGV[1], 'PX', " LUA_TTL("ARGV[2]") ")\n"
                   "return 0\n",
    /* KEYS: a certificate's revoked: entry and its revoking: mark; ARGV: this instance, '1' when it
       revoked the certificate but the revoked set did not take it. The mark, while this instance's,
       goes; or in that case stays for its TTL as "done": who waited for it finds the revocation */
    [S_UNMARK] = "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
                 "if ARGV[2] == '1' then redis.call('SET', KEYS[2], 'done', 'KEEPTTL') return 1 end\n"
                 "redis.call('DEL', KEYS[2])\n"
                 "return 0\n",
    /* KEYS: as S_REVOKED; ARGV: the certificate's expiry (its notAfter, seconds since the epoch), the cap (0:
       none), the marking value. 4, nothing written, when that expiry is GW_STATE_GRACE seconds past or more
       on Redis's clock. Else the TTL is counted to that expiry and GW_STATE_GRACE on Redis's clock, the same
       for every instance: one counted on an instance's own clock, skewed, would end the entries early (the
       certificate let in again everywhere before it expires) or keep them late; the grace covers an instance
       whose clock lags Redis's, which takes the certificate as valid that much past its expiry on Redis's
       clock (an instance that sent it, its own clock ahead, may take it as expired already: the write does
       not depend on it). An earlier version runs its own script
       (another text, another SHA-1), which takes the seconds to the expiry as its own clock counts them, over
       the same keys. The keyed entry ("1") and its member in the counted set, as LUA_COUNTED_SET keeps one: 3
       when the cap is reached, nothing written; else 0. The entry by issuer and serial (which an earlier
       version only tests the presence of) is written marked where none is: one there already, marked or an
       earlier version's, stays as it is. Either one there already lives as long as this certificate at least:
       whoever reads it next refuses this certificate until then. A keyed entry that is one key with the other
       (a certificate that names no CA key) and found marked is taken as new, "1" from then on, its TTL kept
       where longer. The keyed entry's member is scored by the entry's expiry, whichever TTL it keeps, and the
       set lives as long: the cap counts the entry while it lives. An entry whose member is not there (any
       more: an expired score swept, a set lost) is counted under the cap as a new one is: 3 with the set
       full, the entry left as it was (still found). Scores are expiries on Redis's clock, as
       LUA_COUNTED_SET's: an instance's own clock, skewed, would sweep another's live entry (the cap counting
       low) or count expired ones (refusing a revocation) */
    [S_PUT_REVOKED] =
        "local now = tonumber(redis.call('TIME')[1])\n"
        "local ends = tonumber(ARGV[1]) + " LUA_NUM(GW_STATE_GRACE) "\n"
        "if ends <= now then return 4 end\n"
        "local ttl = " LUA_TTL("ends - now") "\n"
        "local function outlive(k)\n"
        "  local t = redis.call('TTL', k)\n"
        "  if t >= 0 and t < ttl then redis.call('EXPIRE', k, ttl) end\n"
        "end\n"
        "local set = " LUA_REVOKED_SET_OF("KEYS[1]") "\n"
        "local function count()\n"
        "  local t = redis.call('TTL', KEYS[1])\n"
        "  if t < 0 then t = ttl end\n"
        "  redis.call('ZADD', set, now + t, KEYS[1])\n"
        "  if redis.call('TTL', set) < t then redis.call('EXPIRE', set, t) end\n"
        "end\n"
        "local v = redis.call('GET', KEYS[1])\n"
        "redis.call('ZREMRANGEBYSCORE', set, '-inf', now)\n"
        "local counted = redis.call('ZADD', set, 'XX', 'INCR', 0, KEYS[1])\n"
        "if not counted and tonumber(ARGV[2]) > 0 and redis.call('ZCARD', set) >= tonumber(ARGV[2]) then\n"
        "  return 3\n"
        "end\n"
        "if v and v ~= ARGV[3] then outlive(KEYS[1])\n"
        "elseif v then redis.call('SET', KEYS[1], '1', 'KEEPTTL') outlive(KEYS[1])\n"
        "else redis.call('SET', KEYS[1], '1', 'EX', ttl) end\n"
        "count()\n"
        "if KEYS[2] ~= KEYS[1] and not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'EX', ttl) then\n"
        "  outlive(KEYS[2])\n"
        "end\n"
        "return 0\n",
};
/* clang-format on */
