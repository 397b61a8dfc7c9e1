package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// checkRedisReplayDurability reads the Redis settings that decide whether
// the DPoP replay state can silently lose entries while keeping its epoch
// key (RATIONALE.md, "DPoP state loss"), and logs each unsafe one as
// authority.dpop.state.unsafe. The epoch detects an empty Redis; it cannot
// detect a state rolled back to a snapshot or trimmed by eviction.
// Managed services often refuse CONFIG: then it logs that it could not
// check (authority.dpop.state.unchecked). It never fails the start: the
// settings belong to the Redis operator, and a Redis restarted without
// persistence is the safe case.
func checkRedisReplayDurability(ctx context.Context, rc redis.UniversalClient, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	get := func(name string) (string, error) {
		m, err := rc.ConfigGet(ctx, name).Result()
		if err != nil {
			return "", err
		}
		return m[name], nil
	}
	policy, err := get("maxmemory-policy")
	if err != nil {
		log.InfoContext(ctx, "authority.dpop.state.unchecked", "error", err.Error(),
			"hint", "make sure Redis uses maxmemory-policy noeviction and restarts empty or from an fsync-always AOF")
		return
	}
	if policy != "noeviction" {
		log.ErrorContext(ctx, "authority.dpop.state.unsafe", "setting", "maxmemory-policy", "value", policy,
			"why", "eviction can drop DPoP replay entries (every one has a TTL) while the epoch key stays: a replayed proof would be accepted; use noeviction")
	}
	save, _ := get("save")
	aof, _ := get("appendonly")
	fsync, _ := get("appendfsync")
	if aof == "yes" && fsync != "always" {
		log.WarnContext(ctx, "authority.dpop.state.unsafe", "setting", "appendfsync", "value", fsync,
			"why", "a restart restores an AOF that can lack the last replay entries but has the epoch key; use appendfsync always, or no persistence")
	} else if aof != "yes" && save != "" {
		log.WarnContext(ctx, "authority.dpop.state.unsafe", "setting", "save", "value", save,
			"why", "a restart restores a snapshot older than the newest replay entries but with the epoch key; use save \"\" (no persistence) or an fsync-always AOF")
	}
}
