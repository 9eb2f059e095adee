package saver

import "github.com/redis/go-redis/v9"

// Redis layout (P is RedisOptions.Prefix). Every per-user key holds its uid
// in a hash tag, so in Redis Cluster a user's data is one slot and every
// script below touches one key.
//
//	P u{uid}      HASH, one per user:
//	  e           epoch the hash was last filled from MySQL in (absent: never)
//	  n           number of m fields
//	  x           latest expiry of the entries ("0": one never expires)
//	  y           latest expiry of the broadcasts a cursor write covered:
//	              the hash outlives it too (absent: none)
//	  m<id8>      entry: the record value of codec.go (app, expire, qos, payload)
//	  l<id8>      loads of the entry so far (absent: none)
//	  p<id8>      "1": the entry is parked
//	  c<app4>     the user's broadcast cursor of app (4 big-endian bytes):
//	              uvarint write count, then bcursor (redis_cursor.go)
//	  b<id8>      the previous version's state of broadcast id:
//	              "<loads>:<expire>", "a:<expire>" (ACKed) or "p:<expire>"
//	              (parked); folded into the cursors when read, never written
//	  t<id8>      tombstone: id was ACKed while the hash was not of the
//	              current epoch, so a reload running meanwhile must not bring
//	              it back from MySQL (whose delete may still be queued); the
//	              value lists the ACKing apps (",1,2,"): only an entry of one
//	              of them is kept out ("1", older savers: any entry)
//	P {bc}        HASH: v (version, bumped on every change), m<id8> broadcasts
//	P {bc}:q      HASH: s (the last seq given out), id8 -> seq of the
//	              broadcast (decimal): the order cursors follow
//	P {meta}      HASH: epoch, fp (fingerprint of the Redis servers)
//	P {meta}:sweep  lock of the expiry sweep (one saver at a time)
//	P {stats:k}   HASH, k in 0..statShards-1: a<app> pending entries, parked
//	P {stats:0}:reconcile, :reconciled  lock of the counter reconcile, time
//	              of the last one (redis_reconcile.go)
//
// id8 is the big-endian id, so fields sort like ids. One hash per user (not a
// sorted set beside it) keeps a user's state in one key: a key evicted or
// expired takes its epoch marker with it, which makes the next Load reload
// the user from MySQL instead of trusting a half-empty inbox. The hash lives
// until its last entry expires plus IdleTTL, and is touched on every write;
// a hash with cursors also lives until the broadcasts they covered when
// written (y) expire, plus IdleTTL.

// luaLib is prepended to every script.
const luaLib = `
local function app_of(v) return (struct.unpack('>I4', v, 2)) end
local function exp_of(v) local hi, lo = struct.unpack('>I4I4', v, 6); return hi * 4294967296 + lo end
local function touch(k, now, idle)
  local x = redis.call('HGET', k, 'x')
  if x == '0' then redis.call('PERSIST', k) return end
  local t = tonumber(x or '0')
  if t < now then t = now end
  local y = tonumber(redis.call('HGET', k, 'y') or '0')
  if y and t < y then t = y end
  if t > 253402300799 then redis.call('PERSIST', k) return end
  redis.call('EXPIREAT', k, t + idle)
end
local function widen(k, e)
  local x = redis.call('HGET', k, 'x')
  if e == '0' then x = '0' elseif x ~= '0' and (not x or tonumber(x) < tonumber(e)) then x = e end
  redis.call('HSET', k, 'x', x)
end
-- keep_for raises y to e: a cursor just written covers broadcasts living
-- until e, and losing the hash before then (an idle open session) would
-- lose their ACKs before Checkpoint saves them.
local function keep_for(k, e)
  e = tonumber(e)
  if e > 0 and e > tonumber(redis.call('HGET', k, 'y') or '0') then
    redis.call('HSET', k, 'y', string.format('%d', e))
  end
end
local function cas_ok(k, a, i, n)
  for j = 0, n - 1 do
    if (redis.call('HGET', k, a[i + 3*j]) or '') ~= a[i + 3*j + 1] then return false end
  end
  return true
end
local function cas_apply(k, a, i, n)
  for j = 0, n - 1 do
    local f, v = a[i + 3*j], a[i + 3*j + 2]
    if v == '' then redis.call('HDEL', k, f) else redis.call('HSET', k, f, v) end
  end
end
local function forget(k, id, n)
  redis.call('HDEL', k, 'm' .. id, 'l' .. id)
  local p = redis.call('HDEL', k, 'p' .. id)
  n = n - 1
  if n <= 0 then redis.call('HDEL', k, 'n', 'x') else redis.call('HSET', k, 'n', n) end
  return n, p
end
`

func newScript(body string) *redis.Script { return redis.NewScript(luaLib + body) }

// scriptSave stores one entry. ARGV: id8, value, expire, now, idle.
// Returns {app of the entry it replaced or -1, entries now}.
var scriptSave = newScript(`
local k = KEYS[1]
local f = 'm' .. ARGV[1]
local old = redis.call('HGET', k, f)
redis.call('HSET', k, f, ARGV[2])
local oldapp, n = -1, 0
if old then
  oldapp = app_of(old)
  n = tonumber(redis.call('HGET', k, 'n') or '0')
else
  n = redis.call('HINCRBY', k, 'n', 1)
end
widen(k, ARGV[3])
touch(k, tonumber(ARGV[4]), tonumber(ARGV[5]))
return {oldapp, n}
`)

// scriptTrim drops the given entries, oldest first, while the hash holds
// more than cap. ARGV: cap, now, idle, id8... Returns {entries now, then
// id8, app, parked (0/1) per dropped entry}.
var scriptTrim = newScript(`
local k = KEYS[1]
local n = tonumber(redis.call('HGET', k, 'n') or '0')
local cap = tonumber(ARGV[1])
local out = {0}
for i = 4, #ARGV do
  if n <= cap then break end
  local id = ARGV[i]
  local v = redis.call('HGET', k, 'm' .. id)
  if v then
    local p
    n, p = forget(k, id, n)
    out[#out+1] = id; out[#out+1] = app_of(v); out[#out+1] = p
  end
end
out[1] = n
touch(k, tonumber(ARGV[2]), tonumber(ARGV[3]))
return out
`)

// scriptMark counts one load of what a Load returned and writes the
// cursors the Load computed, if they still hold what it read. ARGV:
// maxLoads, now, idle, keep (the latest expiry of the live broadcasts of
// the cursors' apps: keep_for), C, then C triples field, bytes read (""
// absent), new bytes ("" deletes), then the id8 of the unicast entries
// returned.
// Returns {1, then the id8 of what it parked}, or {0} having changed
// nothing when a cursor changed since the read.
var scriptMark = newScript(`
local k = KEYS[1]
local max = tonumber(ARGV[1])
local nc = tonumber(ARGV[5])
if not cas_ok(k, ARGV, 6, nc) then return {0} end
cas_apply(k, ARGV, 6, nc)
if nc > 0 then keep_for(k, ARGV[4]) end
local out = {1}
for i = 6 + 3*nc, #ARGV do
  local id = ARGV[i]
  if max > 0 and redis.call('HEXISTS', k, 'm' .. id) == 1 and redis.call('HEXISTS', k, 'p' .. id) == 0 then
    if redis.call('HINCRBY', k, 'l' .. id, 1) >= max then
      redis.call('HDEL', k, 'l' .. id)
      redis.call('HSET', k, 'p' .. id, '1')
      out[#out+1] = id
    end
  end
end
touch(k, tonumber(ARGV[2]), tonumber(ARGV[3]))
return out
`)

// scriptAck deletes the entries of the given apps and writes the
// broadcast cursors the call computed (compare-and-set, as scriptMark); on
// a hash not of the current epoch it also leaves tombstones (for the
// entries it deletes and, with tomb, for the ids it does not know). ARGV:
// epoch, now, idle, apps (",1,2,"), tomb ('1'/'0'), keep (as scriptMark),
// C, C cursor triples, then the id8 of the ids that are no broadcast. Returns {1 if the hash
// carries epoch else 0, 1 if applied else 0 (a cursor changed since the
// read: nothing done), then kind..id8, app, parked per id that took effect
// ('u' entry deleted) or is another app's entry ('o', no effect)}. It
// writes nothing when nothing takes effect on a hash of the current epoch.
var scriptAck = newScript(`
local k = KEYS[1]
local out = {0, 1}
if redis.call('HGET', k, 'e') == ARGV[1] then out[1] = 1 end
local nc = tonumber(ARGV[7])
if not cas_ok(k, ARGV, 8, nc) then out[2] = 0; return out end
cas_apply(k, ARGV, 8, nc)
if nc > 0 then keep_for(k, ARGV[6]) end
local apps, tomb = ARGV[4], ARGV[5] == '1'
local n = tonumber(redis.call('HGET', k, 'n') or '0')
local wrote = nc > 0
for i = 8 + 3*nc, #ARGV do
  local id = ARGV[i]
  local v = redis.call('HGET', k, 'm' .. id)
  if v and (#v < 5 or not string.find(apps, ',' .. app_of(v) .. ',', 1, true)) then
    out[#out+1] = 'o' .. id; out[#out+1] = 0; out[#out+1] = 0
    v = nil
  elseif out[1] == 0 and (v or tomb) then
    redis.call('HSET', k, 't' .. id, apps)
    wrote = true
  end
  if v then
    local p
    n, p = forget(k, id, n)
    wrote = true
    out[#out+1] = 'u' .. id; out[#out+1] = app_of(v); out[#out+1] = p
  end
end
if wrote then touch(k, tonumber(ARGV[2]), tonumber(ARGV[3])) end
return out
`)

// scriptReload merges what MySQL holds for a user into its hash and stamps
// the epoch. ARGV: epoch, now, idle, keep (as scriptMark), E, then E
// triples id8, value, parked ('0'/'1'), then C, then C cursor triples
// (compare-and-set, as scriptMark: the cursors joined with MySQL's). Entries the hash has are
// kept as they are, tombstoned ones are not added, and the tombstones go.
// A hash already of this epoch was reloaded by a concurrent call, whose
// MySQL read may be the more recent: it is left alone. A tombstone keeps
// out an entry of the apps it lists. Returns {2, entries} when the hash was
// of the epoch already, {0, entries} when a cursor changed since the read
// (nothing done), else {1, entries now, then app, parked per entry added}.
var scriptReload = newScript(`
local k = KEYS[1]
local n = tonumber(redis.call('HGET', k, 'n') or '0')
if redis.call('HGET', k, 'e') == ARGV[1] then return {2, n} end
local i = 6 + 3 * tonumber(ARGV[5])
local nc = tonumber(ARGV[i])
if not cas_ok(k, ARGV, i + 1, nc) then return {0, n} end
cas_apply(k, ARGV, i + 1, nc)
if nc > 0 then keep_for(k, ARGV[4]) end
local out = {1, n}
i = 6
for j = 1, tonumber(ARGV[5]) do
  local id, v, p = ARGV[i], ARGV[i+1], ARGV[i+2]
  i = i + 3
  local t = redis.call('HGET', k, 't' .. id)
  local dead = t and (t == '1' or string.find(t, ',' .. app_of(v) .. ',', 1, true))
  if not dead and redis.call('HSETNX', k, 'm' .. id, v) == 1 then
    n = n + 1
    local pk = 0
    if p == '1' and redis.call('HSETNX', k, 'p' .. id, '1') == 1 then pk = 1 end
    out[#out+1] = app_of(v); out[#out+1] = pk
    local e = exp_of(v)
    widen(k, string.format('%d', e))
  end
end
for _, f in ipairs(redis.call('HKEYS', k)) do
  if string.sub(f, 1, 1) == 't' then redis.call('HDEL', k, f) end
end
redis.call('HSET', k, 'e', ARGV[1], 'n', n)
out[2] = n
touch(k, tonumber(ARGV[2]), tonumber(ARGV[3]))
return out
`)

// scriptUserStats counts a user's entries of one app (0: every app) and,
// of them, the parked ones: the hash is read inside Redis, so no payload
// crosses the network. ARGV: epoch, app. Returns {1 if the hash carries
// epoch else 0, entries, parked}, then, when the hash holds records of the
// previous version (b<id8>), every b and c field and its value, for the
// caller to fold them into the cursors.
var scriptUserStats = newScript(`
local k = KEYS[1]
local app = tonumber(ARGV[2])
local out = {0, 0, 0}
local all = redis.call('HGETALL', k)
local mine, parked, curs = {}, {}, {}
local legacy = false
for i = 1, #all, 2 do
  local f, v = all[i], all[i+1]
  local c = string.sub(f, 1, 1)
  if f == 'e' then
    if v == ARGV[1] then out[1] = 1 end
  elseif c == 'm' and #f == 9 and #v >= 14 and string.byte(v, 1) == 1 then
    if app == 0 or app_of(v) == app then
      mine[string.sub(f, 2)] = true
      out[2] = out[2] + 1
    end
  elseif c == 'p' and #f == 9 then
    parked[#parked+1] = string.sub(f, 2)
  elseif (c == 'b' and #f == 9) or (c == 'c' and #f == 5) then
    if c == 'b' then legacy = true end
    curs[#curs+1] = f; curs[#curs+1] = v
  end
end
for _, id in ipairs(parked) do
  if mine[id] then out[3] = out[3] + 1 end
end
if legacy then
  for _, x in ipairs(curs) do out[#out+1] = x end
end
return out
`)

// scriptCursorCAS writes cursors if they still hold what was read. ARGV:
// now, idle, keep, C, C triples (as scriptMark). Returns 1 if applied,
// else 0 (nothing done).
var scriptCursorCAS = newScript(`
local k = KEYS[1]
local nc = tonumber(ARGV[4])
if not cas_ok(k, ARGV, 5, nc) then return 0 end
cas_apply(k, ARGV, 5, nc)
if nc > 0 then keep_for(k, ARGV[3]) end
touch(k, tonumber(ARGV[1]), tonumber(ARGV[2]))
return 1
`)

// scriptExpire drops the given entries if they expired at now. ARGV: now,
// idle, id8... Returns {app, parked} per entry dropped.
var scriptExpire = newScript(`
local k = KEYS[1]
local now = tonumber(ARGV[1])
local n = tonumber(redis.call('HGET', k, 'n') or '0')
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local v = redis.call('HGET', k, 'm' .. id)
  if v then
    local e = exp_of(v)
    if e ~= 0 and e <= now then
      local p
      n, p = forget(k, id, n)
      out[#out+1] = app_of(v); out[#out+1] = p
    end
  end
end
if #out > 0 then touch(k, now, tonumber(ARGV[2])) end
return out
`)

// bcLib is prepended to the broadcast scripts. KEYS[1] is {bc}, KEYS[2]
// {bc}:q. next_seq gives out the next seq: above the last one, above
// floor (the highest this process knows) and at least the server's clock
// in microseconds, so that seqs keep rising even after Redis lost {bc}:q
// (a cursor never steps back, and a seq it passed must never be given
// again). Seqs stay below 2^53: exact in Lua's numbers.
const bcLib = `
local function next_seq(floor)
  local s = tonumber(redis.call('HGET', KEYS[2], 's') or '0')
  local t = redis.call('TIME')
  local n = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if n <= s then n = s + 1 end
  if n < floor then n = floor end
  local v = string.format('%d', n)
  redis.call('HSET', KEYS[2], 's', v)
  return v
end
`

func newBcScript(body string) *redis.Script { return redis.NewScript(luaLib + bcLib + body) }

// scriptBroadcastSave stores a broadcast, giving it a seq unless it has
// one (a re-save keeps it), in the same script that makes it visible. A
// re-save of one expired at now (not swept yet) is a new broadcast with a
// new seq: cursors may have stepped over its old one. ARGV: id8, value,
// floor, now. Returns {new version, seq, the last seq given out before}.
var scriptBroadcastSave = newBcScript(`
local old = redis.call('HGET', KEYS[1], 'm' .. ARGV[1])
redis.call('HSET', KEYS[1], 'm' .. ARGV[1], ARGV[2])
local prev = redis.call('HGET', KEYS[2], 's') or '0'
local seq = redis.call('HGET', KEYS[2], ARGV[1])
if seq and old and #old >= 14 then
  local e = exp_of(old)
  if e ~= 0 and e <= tonumber(ARGV[4]) then seq = nil end
end
if not seq then
  seq = next_seq(tonumber(ARGV[3]))
  redis.call('HSET', KEYS[2], ARGV[1], seq)
end
return {redis.call('HINCRBY', KEYS[1], 'v', 1), seq, prev}
`)

// scriptBroadcastRestore adds the broadcasts the hash lacks, with their
// seqs; those without one (seq '0': rows of the previous version) get one,
// in the order given (id order). ARGV: floor, then triples id8, value,
// seq. Returns {version, added, then id8, seq per seq given out}.
var scriptBroadcastRestore = newBcScript(`
local out = {0, 0}
local s = tonumber(redis.call('HGET', KEYS[2], 's') or '0')
for i = 2, #ARGV, 3 do
  local id, sq = ARGV[i], ARGV[i+2]
  out[2] = out[2] + redis.call('HSETNX', KEYS[1], 'm' .. id, ARGV[i+1])
  if sq ~= '0' and redis.call('HSETNX', KEYS[2], id, sq) == 1 and tonumber(sq) > s then
    s = tonumber(sq)
    redis.call('HSET', KEYS[2], 's', sq)
  end
end
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[2], id) == 0 then
    local seq = next_seq(tonumber(ARGV[1]))
    redis.call('HSET', KEYS[2], id, seq)
    out[#out+1] = id; out[#out+1] = seq
  end
end
out[1] = redis.call('HINCRBY', KEYS[1], 'v', 1)
return out
`)

// scriptBroadcastSeq gives a seq to the given broadcasts that have none
// (stored by the previous version), in the order given (id order). ARGV:
// floor, id8... Returns {version, then id8, seq per seq given out}.
var scriptBroadcastSeq = newBcScript(`
local out = {0}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], 'm' .. id) == 1 and redis.call('HEXISTS', KEYS[2], id) == 0 then
    local seq = next_seq(tonumber(ARGV[1]))
    redis.call('HSET', KEYS[2], id, seq)
    out[#out+1] = id; out[#out+1] = seq
  end
end
if #out > 1 then out[1] = redis.call('HINCRBY', KEYS[1], 'v', 1)
else out[1] = tonumber(redis.call('HGET', KEYS[1], 'v') or '0') end
return out
`)

// scriptBroadcastExpire drops the broadcasts expired at now, with their
// seqs. ARGV: now. Returns {version, id8...}.
var scriptBroadcastExpire = newBcScript(`
local k = KEYS[1]
local now = tonumber(ARGV[1])
local all = redis.call('HGETALL', k)
local out = {0}
for i = 1, #all, 2 do
  local f, v = all[i], all[i+1]
  if string.sub(f, 1, 1) == 'm' and #v >= 14 then
    local e = exp_of(v)
    if e ~= 0 and e <= now then
      redis.call('HDEL', k, f)
      redis.call('HDEL', KEYS[2], string.sub(f, 2))
      out[#out+1] = string.sub(f, 2)
    end
  end
end
if #out > 1 then out[1] = redis.call('HINCRBY', k, 'v', 1)
else out[1] = tonumber(redis.call('HGET', k, 'v') or '0') end
return out
`)

// scriptEpoch returns the current epoch, starting a new one (ARGV[2]) when
// there is none or the servers' fingerprint changed. ARGV: fingerprint (empty
// when unknown: not compared), candidate epoch. Returns {epoch, 1 if new}.
var scriptEpoch = redis.NewScript(`
local e = redis.call('HGET', KEYS[1], 'epoch')
local fp = redis.call('HGET', KEYS[1], 'fp')
if e and (ARGV[1] == '' or fp == ARGV[1]) then return {e, 0} end
if e and not fp then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1])
  return {e, 0}
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[2])
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'fp', ARGV[1]) end
return {ARGV[2], 1}
`)

// scriptUnlock releases a lock if it still holds our token.
var scriptUnlock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
