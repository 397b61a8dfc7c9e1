package dpop

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// stateScript is the whole of a RedisState check in one server-side step,
// so a request costs one round trip (EVALSHA; go-redis falls back to EVAL
// once if the script is not cached) and is atomic against other nodes.
//
//	KEYS[1] replay key            ARGV[1] replay TTL ms ("0": skip replay)
//	KEYS[2] presented nonce key   ARGV[2] mode: "r" rotating, "s" single-use
//	KEYS[3] scope's current key   ARGV[3] "1": validate the presented nonce
//	KEYS[4] candidate nonce key   ARGV[4] "1": return a next nonce
//	KEYS[5] epoch key             ARGV[5] candidate nonce (minted by the caller)
//	KEYS[6] watermark key
//	                              ARGV[6] nonce TTL ms
//	                              ARGV[7] rotation age ms (TTL/2)
//	                              ARGV[8] proof iat, unix ms ("": no epoch check)
//	                              ARGV[9] epoch margin ms
//	                              ARGV[10] "1": KEYS[2] is a presented nonce
//	                              ARGV[11] highest watermark this node has seen (ms)
//
// Returns {replayed 0/1, nonce valid 0/1, next nonce or "", state lost 0/1,
// watermark ms}.
//
// Epoch first: KEYS[5] holds the Redis time (ms) at which this state began.
// It has no TTL. When it is missing the state was lost (a restart without
// persistence, a flush, an eviction) or never existed, which the script
// cannot tell apart: any call writes the current time. A proof whose iat is
// before epoch + margin may have been used before the loss, so unless it
// carries a nonce valid in the new state (minted after the loss, hence the
// proof too) or was already recorded in it (then it is a replay), it is
// answered "state lost": nothing is recorded and a next nonce is always
// returned. A value of "0" means no loss is known.
//
// Rollback: KEYS[6] is the Redis time of the latest proof check (a
// watermark that only grows), and every node passes the highest value it
// has been returned. A node that saw a higher watermark than the state now
// holds was talking to a newer state than this one (a snapshot was
// restored, a lagging replica took over): the script starts a new epoch
// as for an empty state. Nonces carry the epoch they were minted in (their
// key's value; the scope's current pointer is "<nonce> <epoch>"), so a
// nonce restored from before the rollback does not vouch for a proof.
//
// Replay next: SET NX PX records the proof or detects the replay; a
// replayed proof spends nothing. A nonce is valid while its key exists
// (PX = TTL). Single-use validation is DEL (GETDEL semantics: exactly one
// caller sees 1). In rotating mode the scope's current key points at the
// current nonce and expires after TTL/2; the next Issue after that mints a
// new one, while the old nonce key lives on to the end of its own TTL.
const stateScript = `
local lost = 0
local check = ARGV[3] == '1'
local ep = redis.call('GET', KEYS[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local w = tonumber(redis.call('GET', KEYS[6]) or '0')
if not ep or tonumber(ARGV[11]) > w then
  ep = tostring(now)
  redis.call('SET', KEYS[5], ep)
end
if now > w then
  w = now
  redis.call('SET', KEYS[6], tostring(w))
end
if ARGV[8] ~= '' then
  if tonumber(ARGV[8]) < tonumber(ep) + tonumber(ARGV[9]) then
    lost = 1
    if ARGV[1] ~= '0' and redis.call('EXISTS', KEYS[1]) == 1 then
      lost = 0
    elseif ARGV[10] == '1' and redis.call('GET', KEYS[2]) == ep then
      lost = 0
      check = true
    end
  end
end
local replayed = 0
if lost == 0 and ARGV[1] ~= '0' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then replayed = 1 end
end
local valid = 0
if lost == 0 and replayed == 0 and check then
  if ARGV[2] == 's' then
    valid = redis.call('DEL', KEYS[2])
  else
    valid = redis.call('EXISTS', KEYS[2])
  end
end
local nxt = ''
if ARGV[4] == '1' or lost == 1 then
  if ARGV[2] == 's' then
    redis.call('SET', KEYS[4], ep, 'PX', ARGV[6])
    nxt = ARGV[5]
  else
    local cur = redis.call('GET', KEYS[3])
    if cur then
      local n, e = string.match(cur, '^(%S+) (%S+)$')
      if e == ep then nxt = n end
    end
    if nxt == '' then
      redis.call('SET', KEYS[4], ep, 'PX', ARGV[6])
      redis.call('SET', KEYS[3], ARGV[5] .. ' ' .. ep, 'PX', ARGV[7])
      nxt = ARGV[5]
    end
  end
end
return {replayed, valid, nxt, lost, w}
`

// RedisState is the multi-node State (and NonceStore and ReplayCache) on
// Redis: every node with the same client target and prefix accepts every
// other node's nonces and sees every other node's proofs.
//
// Keys (all under prefix): "r:<hex replay key>" replay entries,
// "n:<hex scope id>:<nonce>" valid nonces, "c:<hex scope id>" a scope's
// current nonce, "e" the epoch and "w" the watermark (see stateScript).
// Every key but those two carries a TTL. For Redis Cluster, put a hash tag
// in the prefix (for example "{authority-dpop}:") so that one script's keys
// share a slot.
type RedisState struct {
	client    redis.UniversalClient
	prefix    string
	ttl       time.Duration
	singleUse bool
	script    *redis.Script
	// seen is the highest state watermark this node has been returned:
	// a state holding less was rolled back (see stateScript).
	seen atomic.Int64
}

// NewRedisState returns a State on client with keys under prefix.
func NewRedisState(client redis.UniversalClient, prefix string, opts NonceOptions) *RedisState {
	return &RedisState{
		client:    client,
		prefix:    prefix,
		ttl:       opts.ttl(),
		singleUse: opts.SingleUse,
		script:    redis.NewScript(stateScript),
	}
}

// NewRedisNonceStore returns the NonceStore view of a RedisState: the same
// keys, so it interoperates with RedisStates on the same prefix.
func NewRedisNonceStore(client redis.UniversalClient, prefix string, opts NonceOptions) NonceStore {
	return NewRedisState(client, prefix, opts)
}

// NewRedisReplayCache returns the ReplayCache view of a RedisState.
func NewRedisReplayCache(client redis.UniversalClient, prefix string) ReplayCache {
	return NewRedisState(client, prefix, NonceOptions{})
}

func millis(d time.Duration) string {
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return fmt.Sprint(ms)
}

type scriptCall struct {
	replay    *ReplayKey
	replayTTL time.Duration
	scope     string
	presented string // the proof's nonce, when well-formed ("" none)
	validate  bool   // presented must be validated (spent in single-use mode)
	issue     bool
	iat       time.Time     // zero: no epoch check
	margin    time.Duration // epoch margin
}

func (s *RedisState) run(ctx context.Context, c scriptCall) (StateResult, error) {
	var res StateResult
	sid := scopeID(c.scope)
	scopeHex := hex.EncodeToString(sid[:])
	replayKey, replayTTL := s.prefix+"r:-", "0"
	if c.replay != nil {
		replayKey, replayTTL = s.prefix+"r:"+hex.EncodeToString(c.replay[:]), millis(c.replayTTL)
	}
	validate, presented, presentedKey := "0", "0", s.prefix+"n:-"
	if c.presented != "" {
		presented, presentedKey = "1", s.prefix+"n:"+scopeHex+":"+c.presented
		if c.validate {
			validate = "1"
		}
	}
	iat := ""
	if !c.iat.IsZero() {
		iat = fmt.Sprint(c.iat.UnixMilli())
	}
	issue, candidate := "0", ""
	if c.issue {
		issue = "1"
		candidate, _ = newNonce()
	}
	mode := "r"
	if s.singleUse {
		mode = "s"
	}
	if candidate == "" && iat != "" {
		candidate, _ = newNonce() // a lost state always answers a nonce
	}
	keys := []string{replayKey, presentedKey, s.prefix + "c:" + scopeHex, s.prefix + "n:" + scopeHex + ":" + candidate, s.prefix + "e", s.prefix + "w"}
	out, err := s.script.Run(ctx, s.client, keys,
		replayTTL, mode, validate, issue, candidate, millis(s.ttl), millis(s.ttl/2),
		iat, fmt.Sprint(c.margin.Milliseconds()), presented, fmt.Sprint(s.seen.Load())).Slice()
	if err != nil {
		return res, fmt.Errorf("dpop: redis state script: %w", err)
	}
	if len(out) != 5 {
		return res, fmt.Errorf("dpop: redis state script: unexpected reply of %d items", len(out))
	}
	replayed, ok1 := out[0].(int64)
	valid, ok2 := out[1].(int64)
	next, ok3 := out[2].(string)
	lost, ok4 := out[3].(int64)
	mark, ok5 := out[4].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return res, fmt.Errorf("dpop: redis state script: unexpected reply %v", out)
	}
	for cur := s.seen.Load(); mark > cur && !s.seen.CompareAndSwap(cur, mark); cur = s.seen.Load() {
	}
	res.Replayed, res.NonceValid, res.NextNonce, res.StateLost = replayed == 1, valid == 1, next, lost == 1
	return res, nil
}

// Check implements State in one round trip.
func (s *RedisState) Check(ctx context.Context, c StateCheck) (StateResult, error) {
	call := scriptCall{replay: &c.ReplayKey, replayTTL: c.ReplayTTL, scope: c.NonceScope,
		iat: c.IssuedAt, margin: c.LossMargin, validate: c.NonceRequired,
		issue: c.NonceRequired || c.IssueNonce}
	if _, ok := parseNonce(c.Nonce); ok {
		call.presented = c.Nonce
	}
	return s.run(ctx, call)
}

// Nonce implements State.
func (s *RedisState) Nonce(ctx context.Context, scope string) (string, error) {
	return s.Issue(ctx, scope)
}

// Issue implements NonceStore.
func (s *RedisState) Issue(ctx context.Context, scope string) (string, error) {
	res, err := s.run(ctx, scriptCall{scope: scope, issue: true})
	return res.NextNonce, err
}

// Validate implements NonceStore.
func (s *RedisState) Validate(ctx context.Context, scope, nonce string) (bool, error) {
	if _, ok := parseNonce(nonce); !ok {
		return false, nil
	}
	res, err := s.run(ctx, scriptCall{scope: scope, presented: nonce, validate: true})
	return res.NonceValid, err
}

// Remember implements ReplayCache (SET NX PX).
func (s *RedisState) Remember(ctx context.Context, key ReplayKey, ttl time.Duration) (bool, error) {
	ok, err := s.client.SetNX(ctx, s.prefix+"r:"+hex.EncodeToString(key[:]), "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("dpop: redis replay cache: %w", err)
	}
	return ok, nil
}
