package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrValueTooLarge is returned by RedisKV.Set for a value over 64 KiB (the
// kv_set limit of abi/SPEC.md §5).
var ErrValueTooLarge = errors.New("plugin: kv value over 64 KiB")

// redisMaxPlainKey is the longest key stored verbatim; longer ones are
// stored under their SHA-256. The host passes at most 256 printable ASCII
// bytes, so in practice keys stay readable (and scannable per tenant) in
// Redis.
const redisMaxPlainKey = 512

// redisTrimBatch bounds the expired index members one write removes. A
// write adds at most one member, so any batch above one keeps up; a
// refusal can thus only happen while fewer than this many expired members
// were left, or when the scope is genuinely full.
const redisTrimBatch = 64

// The Redis layout. Data keys are as before quotas existed, the scope's
// "plugin:<len(tenant)>:<tenant>:<plugin>:" then the plugin's key:
//
//	<prefix>c:plugin:4:acme:rl:<key>     counter (string, PX = window)
//	<prefix>kv:plugin:4:acme:rl:<key>    kv value (string, PX = ttl)
//
// (kind "c#"/"kv#" and the hex SHA-256 of the scoped key when that is over
// 512 bytes). The quota is kept beside them, per scope:
//
//	<prefix>cq:4:acme:rl    sorted set: counter key -> expiry (Unix ms)
//	<prefix>kvq:4:acme:rl   sorted set: "<kv key> <bytes>" -> expiry (Unix ms)
//	<prefix>kvb:4:acme:rl   string: sum of <bytes> over kvq
//
// where <bytes> is len(key)+len(value), the key spelled as in the data key
// after the scope (its "#"+hex form when over 512 bytes). The index keys
// carry a TTL at least as long as their last member's, so a quiet scope
// leaves nothing behind. A script touches one scope's keys and nothing
// else. On a Redis Cluster (a *redis.ClusterClient) every key of a scope
// sits under "<prefix>{p<16 hex of SHA-256 of the scope id>}:": one scope's
// keys share a hash slot, and the scopes, that is the (tenant, plugin)
// pairs, spread over the slots and so over the primaries.
//
// Expiry times come from the Redis server's clock (TIME), like the TTLs of
// the data keys, so nodes with skewed clocks agree on them.

// counterScript is one Incr in one server-side step: one round trip
// (EVALSHA; go-redis falls back to EVAL once if the script is not cached)
// and atomic against every other node.
//
//	KEYS[1] counter key   KEYS[2] the scope's counter index
//	ARGV[1] delta   ARGV[2] window ms (0: no window)
//	ARGV[3] index member   ARGV[4] counterKeys quota   ARGV[5] trim batch
//
// Returns {value as a decimal string, ms left in the window}, or
// {"quota", 0} when creating the key would exceed the quota (nothing is
// written then). An absent (or expired) key with delta 0 or no window is
// not created: {"0", 0}. Otherwise, when the key is absent, at most ARGV[5]
// expired members leave the index, the quota is checked against what
// remains (a member left by this very key, whose value Redis evicted,
// counts once), SET PX starts the window and the key joins the index.
// INCRBY adds, and the value is read back with GET so that it crosses Lua
// as a string (Lua numbers are doubles: INCRBY's reply would lose
// precision above 2^53). A key left without a TTL (written by something
// else) gets the window again rather than living forever. Increments of a
// live key never touch the index.
const counterScript = `
local k, idx = KEYS[1], KEYS[2]
if redis.call('EXISTS', k) == 0 then
  if ARGV[1] == '0' or ARGV[2] == '0' then return {'0', 0} end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local old = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[5]))
  if #old > 0 then redis.call('ZREM', idx, unpack(old)) end
  if not redis.call('ZSCORE', idx, ARGV[3]) and redis.call('ZCARD', idx) >= tonumber(ARGV[4]) then
    return {'quota', 0}
  end
  redis.call('SET', k, '0', 'PX', ARGV[2])
  redis.call('ZADD', idx, now + tonumber(ARGV[2]), ARGV[3])
  if redis.call('PTTL', idx) < tonumber(ARGV[2]) then redis.call('PEXPIRE', idx, ARGV[2]) end
end
if ARGV[1] ~= '0' then redis.call('INCRBY', k, ARGV[1]) end
local v = redis.call('GET', k)
local t = redis.call('PTTL', k)
if t < 0 then
  if ARGV[2] == '0' then
    t = 0
  else
    redis.call('PEXPIRE', k, ARGV[2])
    t = tonumber(ARGV[2])
  end
end
return {v, t}
`

var redisCounterScript = redis.NewScript(counterScript)

// kvSetScript is one Set with its quota in one server-side step.
//
//	KEYS[1] kv key   KEYS[2] the scope's kv index   KEYS[3] its byte total
//	ARGV[1] value   ARGV[2] ttl ms   ARGV[3] key as in the index
//	ARGV[4] counted key length   ARGV[5] kvEntries quota
//	ARGV[6] kvBytes quota   ARGV[7] trim batch
//
// Returns 1 when stored, 0 when refused by kvEntries, -1 by kvBytes
// (nothing is written then but the trim). The byte total is rebuilt from
// the index when it is missing (evicted) and dropped when the index is, so
// that a lost key costs at most one O(entries) rebuild, never a wrong count
// that outlives the members it miscounts. The write replaces the key's
// index member (found from the stored value's length, or equal to the new
// one); when the value was evicted and its size changes, the old member
// stays counted until its own expiry. A write is refused only if it raises
// the entries or the bytes above their quota.
const kvSetScript = `
local k, idx, tot = KEYS[1], KEYS[2], KEYS[3]
local function size(m) return tonumber(string.match(m, ' (%d+)$')) or 0 end
local function save(used)
  local p = redis.call('PTTL', idx)
  if p > 0 then redis.call('SET', tot, used, 'PX', p) else redis.call('DEL', tot) end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local used = 0
if redis.call('EXISTS', idx) == 0 then
  redis.call('DEL', tot)
else
  local u = redis.call('GET', tot)
  if u then
    used = tonumber(u)
  else
    for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do used = used + size(m) end
  end
  local old = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[7]))
  if #old > 0 then
    for _, m in ipairs(old) do used = used - size(m) end
    redis.call('ZREM', idx, unpack(old))
  end
  if #old > 0 or not u then save(used) end
end
local n = redis.call('ZCARD', idx)
local klen = tonumber(ARGV[4])
local newsize = klen + #ARGV[1]
local newm = ARGV[3] .. ' ' .. newsize
local oldm, oldsize = nil, 0
if redis.call('EXISTS', k) == 1 then
  local s = klen + redis.call('STRLEN', k)
  local m = ARGV[3] .. ' ' .. s
  if redis.call('ZSCORE', idx, m) then oldm, oldsize = m, s end
end
if not oldm and redis.call('ZSCORE', idx, newm) then oldm, oldsize = newm, newsize end
if not oldm and n + 1 > tonumber(ARGV[5]) then return 0 end
local after = used - oldsize + newsize
if after > tonumber(ARGV[6]) and after > used then return -1 end
redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
if oldm then redis.call('ZREM', idx, oldm) end
redis.call('ZADD', idx, now + tonumber(ARGV[2]), newm)
if redis.call('PTTL', idx) < tonumber(ARGV[2]) then redis.call('PEXPIRE', idx, ARGV[2]) end
save(after)
return 1
`

var redisKVSetScript = redis.NewScript(kvSetScript)

// RedisCounters is the multi-node Counters implementation: every node with
// the same Redis and prefix shares the counters and their quotas (see the
// layout above). Every key carries a TTL.
type RedisCounters struct {
	client redis.UniversalClient
	prefix redisPrefix
}

// NewRedisCounters returns counters on client under prefix. It is safe for
// concurrent use.
func NewRedisCounters(client redis.UniversalClient, prefix string) Counters {
	return &RedisCounters{client: client, prefix: newRedisPrefix(client, prefix)}
}

// redisPrefix is the key prefix of a scope: the configured one, with the
// scope's hash tag on a cluster.
type redisPrefix struct {
	base    string
	cluster bool
}

func newRedisPrefix(client redis.UniversalClient, prefix string) redisPrefix {
	_, cluster := client.(*redis.ClusterClient)
	return redisPrefix{base: prefix, cluster: cluster}
}

func (p redisPrefix) of(id string) string {
	if !p.cluster {
		return p.base
	}
	sum := sha256.Sum256([]byte(id))
	return p.base + "{p" + hex.EncodeToString(sum[:8]) + "}:"
}

// RedisScopeKeys are the keys the scripts of one scope touch (a counter,
// its index; a kv value, its index and byte total) under prefix, as laid
// out on a cluster when cluster is set: what must share a hash slot.
func RedisScopeKeys(prefix string, cluster bool, scope Scope) []string {
	id := redisScopeID(scope)
	p := redisPrefix{base: prefix, cluster: cluster}.of(id)
	return []string{redisKey(p, "c", "plugin:"+id+":k"), p + "cq:" + id,
		redisKey(p, "kv", "plugin:"+id+":k"), p + "kvq:" + id, p + "kvb:" + id}
}

// Incr implements Counters in one round trip.
func (c *RedisCounters) Incr(ctx context.Context, scope Scope, key string, delta int64, window time.Duration) (int64, time.Duration, error) {
	keys, args := c.scriptArgs(redisScopeID(scope), scope, CounterOp{Key: key, Delta: delta, Window: window})
	res, err := redisCounterScript.Run(ctx, c.client, keys, args...).Slice()
	return counterReply(res, err)
}

// IncrMany implements CounterBatcher: the operations' scripts go in one
// pipeline, one round trip for the batch (scripts the server does not
// hold yet are loaded and rerun one by one).
func (c *RedisCounters) IncrMany(ctx context.Context, scope Scope, ops []CounterOp, out []CounterResult) {
	id := redisScopeID(scope)
	pipe := c.client.Pipeline()
	cmds := make([]*redis.Cmd, len(ops))
	for i, op := range ops {
		keys, args := c.scriptArgs(id, scope, op)
		cmds[i] = redisCounterScript.EvalSha(ctx, pipe, keys, args...)
	}
	_, _ = pipe.Exec(ctx) // errors are per command, read below
	for i, cmd := range cmds {
		res, err := cmd.Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			keys, args := c.scriptArgs(id, scope, ops[i])
			res, err = redisCounterScript.Run(ctx, c.client, keys, args...).Slice()
		}
		out[i].Value, out[i].TTL, out[i].Err = counterReply(res, err)
	}
}

// scriptArgs are the counter script's keys and arguments for op.
func (c *RedisCounters) scriptArgs(id string, scope Scope, op CounterOp) ([]string, []any) {
	win := int64(0)
	if op.Window > 0 {
		win = ceilMillis(op.Window)
	}
	p := c.prefix.of(id)
	return []string{redisKey(p, "c", "plugin:"+id+":"+op.Key), p + "cq:" + id},
		[]any{strconv.FormatInt(op.Delta, 10), strconv.FormatInt(win, 10), redisMember(op.Key),
			strconv.Itoa(scope.Quota.withDefaults().CounterKeys), strconv.Itoa(redisTrimBatch)}
}

// counterReply reads the counter script's reply: value and TTL, or the
// quota refusal.
func counterReply(res []any, err error) (int64, time.Duration, error) {
	if err != nil {
		return 0, 0, fmt.Errorf("plugin: redis counter: %w", err)
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("plugin: redis counter: unexpected reply %v", res)
	}
	s, ok1 := res[0].(string)
	ms, ok2 := res[1].(int64)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("plugin: redis counter: unexpected reply %v", res)
	}
	if s == "quota" {
		return 0, 0, errQuotaCounterKeys
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("plugin: redis counter: value %q: %w", s, err)
	}
	return v, time.Duration(ms) * time.Millisecond, nil
}

// RedisKV is the multi-node KV implementation: every node with the same
// Redis and prefix shares the store and its quotas (see the layout above).
// Get is one GET; Set one script. Values are limited to 64 KiB.
type RedisKV struct {
	client redis.UniversalClient
	prefix redisPrefix
}

// NewRedisKV returns a store on client under prefix. It is safe for
// concurrent use.
func NewRedisKV(client redis.UniversalClient, prefix string) KV {
	return &RedisKV{client: client, prefix: newRedisPrefix(client, prefix)}
}

// Get implements KV.
func (k *RedisKV) Get(ctx context.Context, scope Scope, key string) ([]byte, bool, error) {
	id := redisScopeID(scope)
	b, err := k.client.Get(ctx, redisKey(k.prefix.of(id), "kv", "plugin:"+id+":"+key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("plugin: redis kv get: %w", err)
	}
	return b, true, nil
}

// Set implements KV in one round trip. ttl is rounded up to whole
// milliseconds.
func (k *RedisKV) Set(ctx context.Context, scope Scope, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("plugin: kv ttl must be > 0")
	}
	if len(val) > maxKVValueBytes {
		return ErrValueTooLarge
	}
	id := redisScopeID(scope)
	p := k.prefix.of(id)
	q := scope.Quota.withDefaults()
	// go-redis writes val to the connection before Run returns: nothing
	// retains the caller's slice.
	st, err := redisKVSetScript.Run(ctx, k.client,
		[]string{redisKey(p, "kv", "plugin:"+id+":"+key), p + "kvq:" + id, p + "kvb:" + id},
		val, strconv.FormatInt(ceilMillis(ttl), 10), redisMember(key), strconv.Itoa(len(key)),
		strconv.Itoa(q.KVEntries), strconv.FormatInt(q.KVBytes, 10), strconv.Itoa(redisTrimBatch)).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("plugin: redis kv set: %w", err)
	case st == 0:
		return errQuotaKVEntries
	case st < 0:
		return errQuotaKVBytes
	}
	return nil
}

// redisScopeID is "<len(tenant)>:<tenant>:<plugin>": unambiguous whatever
// the tenant contains (plugin names have no ':').
func redisScopeID(s Scope) string {
	return strconv.Itoa(len(s.Tenant)) + ":" + s.Tenant + ":" + s.Plugin
}

// redisMember is key as an index member: itself, or "#"+hex(SHA-256) when
// over 512 bytes.
func redisMember(key string) string {
	if len(key) <= redisMaxPlainKey {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "#" + hex.EncodeToString(sum[:])
}

func redisKey(prefix, kind, key string) string {
	if len(key) <= redisMaxPlainKey {
		return prefix + kind + ":" + key
	}
	sum := sha256.Sum256([]byte(key))
	return prefix + kind + "#" + hex.EncodeToString(sum[:])
}

func ceilMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
