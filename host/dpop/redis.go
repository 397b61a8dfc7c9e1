package dpop

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"stellaops.org/authority/internal/redisslot"
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
// Every key but those two carries a TTL.
//
// On a Redis Cluster (a *redis.ClusterClient) the keys are split into
// ClusterShards shards, each under "<prefix>{d<shard>}:", so that every key
// of one script call shares a hash slot (the shard's tag) while the shards
// spread over the slots, and so over the primaries. A call's shard is a
// hash of the proof key's thumbprint (StateCheck.Route): every replay of a
// proof carries the same key (the proof's signature covers it), so it is
// checked in the shard that recorded the proof, and replay detection stays
// complete. Each shard has its own epoch and watermark, so a primary that
// loses its data is detected as a loss of its own shards. A nonce is valid
// in the shard it was minted in: a client keeps one key, so its nonces and
// proofs meet; a nonce minted without a proof (Nonce, for an answer to a
// request that sent none) is in its scope's shard, and the first proof that
// presents it may be asked for another (one more round trip).
type RedisState struct {
	client    redis.UniversalClient
	prefix    string
	ttl       time.Duration
	singleUse bool
	script    *redis.Script
	// prefixes are the shards' key prefixes (one, the prefix itself, on a
	// single server), and slots their hash slots on a cluster.
	prefixes []string
	slots    []int
	// seen is, per shard, the highest state watermark this node has been
	// returned: a state holding less was rolled back (see stateScript).
	seen []atomic.Int64
}

// ClusterShards is the number of key shards of a RedisState on a Redis
// Cluster: enough to spread over any practical number of primaries (a
// cluster has 16384 slots), few enough that each shard's epoch is created
// soon after a deployment starts.
const ClusterShards = 1024

// NewRedisState returns a State on client with keys under prefix, sharded
// when client is a cluster client.
func NewRedisState(client redis.UniversalClient, prefix string, opts NonceOptions) *RedisState {
	s := &RedisState{
		client:    client,
		prefix:    prefix,
		ttl:       opts.ttl(),
		singleUse: opts.SingleUse,
		script:    redis.NewScript(stateScript),
		prefixes:  []string{prefix},
	}
	if _, ok := client.(*redis.ClusterClient); ok {
		s.prefixes = ShardPrefixes(prefix)
		s.slots = make([]int, len(s.prefixes))
		for i, p := range s.prefixes {
			s.slots[i] = redisslot.Slot(p)
		}
	}
	s.seen = make([]atomic.Int64, len(s.prefixes))
	return s
}

// ShardPrefixes are the key prefixes of the ClusterShards shards under
// prefix.
func ShardPrefixes(prefix string) []string {
	out := make([]string, ClusterShards)
	for i := range out {
		out[i] = fmt.Sprintf("%s{d%03x}:", prefix, i)
	}
	return out
}

// shard is the shard of a call routed by route (a proof key's thumbprint,
// else a nonce scope): FNV-1a, stable across nodes and releases.
func (s *RedisState) shard(route string) int {
	if len(s.prefixes) == 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(route); i++ {
		h ^= uint32(route[i])
		h *= 16777619
	}
	return int(h % uint32(len(s.prefixes)))
}

// Keys are the keys one script call of shard touches (the replay, nonce and
// candidate keys as placeholders): what must share a hash slot.
func (s *RedisState) Keys(shard int) []string {
	p := s.prefixes[shard]
	return []string{p + "r:-", p + "n:-", p + "c:-", p + "n:-:-", p + "e", p + "w"}
}

// Shards is the number of shards (1 on a single server).
func (s *RedisState) Shards() int { return len(s.prefixes) }

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
	route     string // the shard's route (see shard)
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
	if c.route == "" {
		c.route = c.scope
	}
	return s.runIn(ctx, s.shard(c.route), c)
}

func (s *RedisState) runIn(ctx context.Context, shard int, c scriptCall) (StateResult, error) {
	var res StateResult
	prefix := s.prefixes[shard]
	sid := scopeID(c.scope)
	scopeHex := hex.EncodeToString(sid[:])
	replayKey, replayTTL := prefix+"r:-", "0"
	if c.replay != nil {
		replayKey, replayTTL = prefix+"r:"+hex.EncodeToString(c.replay[:]), millis(c.replayTTL)
	}
	validate, presented, presentedKey := "0", "0", prefix+"n:-"
	if c.presented != "" {
		presented, presentedKey = "1", prefix+"n:"+scopeHex+":"+c.presented
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
	seen := &s.seen[shard]
	keys := []string{replayKey, presentedKey, prefix + "c:" + scopeHex, prefix + "n:" + scopeHex + ":" + candidate, prefix + "e", prefix + "w"}
	out, err := s.script.Run(ctx, s.client, keys,
		replayTTL, mode, validate, issue, candidate, millis(s.ttl), millis(s.ttl/2),
		iat, fmt.Sprint(c.margin.Milliseconds()), presented, fmt.Sprint(seen.Load())).Slice()
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
	for cur := seen.Load(); mark > cur && !seen.CompareAndSwap(cur, mark); cur = seen.Load() {
	}
	res.Replayed, res.NonceValid, res.NextNonce, res.StateLost = replayed == 1, valid == 1, next, lost == 1
	return res, nil
}

// Check implements State in one round trip.
func (s *RedisState) Check(ctx context.Context, c StateCheck) (StateResult, error) {
	call := scriptCall{route: c.Route, replay: &c.ReplayKey, replayTTL: c.ReplayTTL, scope: c.NonceScope,
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

// Remember implements ReplayCache (SET NX PX), in the shard of the key
// itself (no proof key is known here).
func (s *RedisState) Remember(ctx context.Context, key ReplayKey, ttl time.Duration) (bool, error) {
	k := hex.EncodeToString(key[:])
	ok, err := s.client.SetNX(ctx, s.prefixes[s.shard(k)]+"r:"+k, "1", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("dpop: redis replay cache: %w", err)
	}
	return ok, nil
}

// Probe runs the state script, in the shape every check runs it, once per
// key range of the cluster (once on a single server): it records nothing
// but the shards' epochs and watermarks, as any call does. It returns the
// number of probes and their errors, so that the caller can tell a node
// that serves nothing from one whose cluster lost some slots.
func (s *RedisState) Probe(ctx context.Context) (probes int, errs []error) {
	shards := []int{0}
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		ranges, err := cc.ClusterSlots(ctx).Result()
		if err != nil {
			return 1, []error{fmt.Errorf("dpop: redis cluster slots: %w", err)}
		}
		shards = shards[:0]
		for _, r := range ranges {
			for i, sl := range s.slots {
				if sl >= int(r.Start) && sl <= int(r.End) {
					shards = append(shards, i)
					break
				}
			}
		}
	}
	for _, sh := range shards {
		if _, err := s.runIn(ctx, sh, scriptCall{scope: "probe"}); err != nil {
			errs = append(errs, err)
		}
	}
	return len(shards), errs
}

// Layout checks the sharded key layout: every key of one call of a shard
// must share a hash slot (else the cluster refuses the script, CROSSSLOT),
// and spread is the number of distinct slots the shards use (1 when the
// prefix carries a hash tag of its own, which puts every key on one
// primary). On a single server there are no slots: 1, nil.
func (s *RedisState) Layout() (spread int, err error) {
	if len(s.prefixes) == 1 {
		return 1, nil
	}
	slots := map[int]bool{}
	for i := range s.prefixes {
		keys := s.Keys(i)
		first := redisslot.Slot(keys[0])
		for _, k := range keys[1:] {
			if sl := redisslot.Slot(k); sl != first {
				return 0, fmt.Errorf("the keys of one DPoP state call hash to different cluster slots (%q: %d, %q: %d)", keys[0], first, k, sl)
			}
		}
		slots[first] = true
	}
	return len(slots), nil
}
