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
// stored under their SHA-256. The host passes "plugin:<n>:<tenant>:<name>:"
// plus at most 256 printable ASCII bytes, so in practice keys stay
// readable (and scannable per tenant) in Redis.
const redisMaxPlainKey = 512

// counterScript is one Incr in one server-side step: one round trip
// (EVALSHA; go-redis falls back to EVAL once if the script is not cached)
// and atomic against every other node.
//
//	KEYS[1] counter key   ARGV[1] delta   ARGV[2] window ms (0: no window)
//
// Returns {value as a decimal string, ms left in the window}. An absent
// (or expired) key with delta 0 or no window is not created: {"0", 0}.
// Otherwise SET PX starts the window when the key is absent, INCRBY
// adds, and the value is read back with GET so that it crosses Lua as a
// string (Lua numbers are doubles: INCRBY's reply would lose precision
// above 2^53). A key left without a TTL (written by something else) gets
// the window again rather than living forever.
const counterScript = `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then
  if ARGV[1] == '0' or ARGV[2] == '0' then return {'0', 0} end
  redis.call('SET', k, '0', 'PX', ARGV[2])
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

// RedisCounters is the multi-node Counters implementation: every node with
// the same Redis and prefix shares the counters. Keys are
// prefix+"c:"+key (prefix+"c#"+hex(SHA-256(key)) for keys over 512
// bytes); every key carries its window as a TTL.
type RedisCounters struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisCounters returns counters on client under prefix. It is safe for
// concurrent use.
func NewRedisCounters(client redis.UniversalClient, prefix string) Counters {
	return &RedisCounters{client: client, prefix: prefix}
}

// Incr implements Counters in one round trip.
func (c *RedisCounters) Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, time.Duration, error) {
	win := int64(0)
	if window > 0 {
		win = ceilMillis(window)
	}
	res, err := redisCounterScript.Run(ctx, c.client, []string{redisKey(c.prefix, "c", key)},
		strconv.FormatInt(delta, 10), strconv.FormatInt(win, 10)).Slice()
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
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("plugin: redis counter: value %q: %w", s, err)
	}
	return v, time.Duration(ms) * time.Millisecond, nil
}

// RedisKV is the multi-node KV implementation: every node with the same
// Redis and prefix shares the store. Keys are prefix+"kv:"+key
// (prefix+"kv#"+hex(SHA-256(key)) for keys over 512 bytes), written with
// SET PX and read with GET. Values are limited to 64 KiB.
type RedisKV struct {
	client redis.UniversalClient
	prefix string
}

// NewRedisKV returns a store on client under prefix. It is safe for
// concurrent use.
func NewRedisKV(client redis.UniversalClient, prefix string) KV {
	return &RedisKV{client: client, prefix: prefix}
}

// Get implements KV.
func (k *RedisKV) Get(ctx context.Context, key string) ([]byte, bool, error) {
	b, err := k.client.Get(ctx, redisKey(k.prefix, "kv", key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("plugin: redis kv get: %w", err)
	}
	return b, true, nil
}

// Set implements KV. ttl is rounded up to whole milliseconds.
func (k *RedisKV) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("plugin: kv ttl must be > 0")
	}
	if len(val) > maxKVValueBytes {
		return ErrValueTooLarge
	}
	// go-redis writes val to the connection before Set returns: nothing
	// retains the caller's slice.
	err := k.client.Set(ctx, redisKey(k.prefix, "kv", key), val, time.Duration(ceilMillis(ttl))*time.Millisecond).Err()
	if err != nil {
		return fmt.Errorf("plugin: redis kv set: %w", err)
	}
	return nil
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
