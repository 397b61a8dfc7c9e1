package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/dpop"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/internal/redisslot"
)

// openRedis returns the client storage.redis describes: a single server,
// or a Redis Cluster when the address list has several entries or its one
// address is a cluster node (found by INFO cluster, and then used as the
// seed). A configuration the host cannot serve correctly is refused, naming
// its key: several addresses that are not a cluster, or a keyPrefix whose
// braces would put the keys of one script in different slots. A server
// that cannot be reached at start is not refused (the readiness check
// reports it); its kind is then taken from the address count.
func openRedis(ctx context.Context, cfg *config.Config, log *slog.Logger) (redis.UniversalClient, error) {
	r := cfg.Storage.Redis
	addrs := strings.Split(r.Addr, ",")
	for i := range addrs {
		addrs[i] = strings.TrimSpace(addrs[i])
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if len(addrs) == 1 {
		single := redis.NewClient(&redis.Options{Addr: addrs[0], Password: r.Password, DB: r.DB})
		if info, err := single.Info(pctx, "cluster").Result(); err != nil || !strings.Contains(info, "cluster_enabled:1") {
			return single, nil
		}
		single.Close() // a cluster node: seed the cluster client with it
	}
	if r.DB != 0 {
		return nil, errors.New("storage.redis.db: a Redis Cluster has only database 0")
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Password: r.Password})
	if err := cc.ClusterInfo(pctx).Err(); err != nil && strings.Contains(err.Error(), "cluster support disabled") {
		cc.Close()
		return nil, fmt.Errorf("storage.redis.addr: %d addresses name a Redis Cluster, but %v is not in cluster mode: give one address for a single server, or the nodes of one cluster", len(addrs), err)
	}
	if err := checkClusterLayout(cfg, cc, log); err != nil {
		cc.Close()
		return nil, err
	}
	log.Info("authority.redis.cluster", "seeds", len(addrs), "dpop_shards", dpop.ClusterShards)
	return cc, nil
}

// checkClusterLayout refuses a keyPrefix under which the keys of one DPoP
// state call, or of one plugin scope, would hash to different slots (the
// cluster would answer CROSSSLOT to every request), and warns when a hash
// tag of the prefix's own puts every key in one slot (correct, but one
// primary then carries all the traffic).
func checkClusterLayout(cfg *config.Config, cc *redis.ClusterClient, log *slog.Logger) error {
	prefix := cfg.Storage.Redis.KeyPrefix
	spread, err := dpop.NewRedisState(cc, prefix+"dpop:", dpop.NonceOptions{}).Layout()
	if err != nil {
		return fmt.Errorf("storage.redis.keyPrefix %q: %v: remove the braces from the prefix (the host tags keys per shard itself)", prefix, err)
	}
	keys := plugin.RedisScopeKeys(prefix+"plugin:", true, plugin.Scope{Tenant: "t", Plugin: "p"})
	for _, k := range keys[1:] {
		if redisslot.Slot(k) != redisslot.Slot(keys[0]) {
			return fmt.Errorf("storage.redis.keyPrefix %q: the keys of one plugin scope hash to different cluster slots (%q, %q): remove the braces from the prefix", prefix, keys[0], k)
		}
	}
	if spread == 1 {
		log.Warn("authority.redis.cluster.single_slot", "keyPrefix", prefix,
			"why", "the prefix's hash tag puts every key in one slot: one primary carries all DPoP and plugin traffic; remove the braces so that keys spread")
	}
	return nil
}

// redisCheck is the /readyz check of Redis. With the DPoP state there, it
// runs the state script in the shape requests run it, once per slot range
// of a cluster: not ready when every probe fails (no DPoP request could be
// served), degraded when some do (the requests of those slots answer 503).
// Otherwise it pings.
func redisCheck(rc redis.UniversalClient, state *dpop.RedisState) func(context.Context) error {
	if state == nil {
		return func(ctx context.Context) error { return rc.Ping(ctx).Err() }
	}
	return func(ctx context.Context) error {
		n, errs := state.Probe(ctx)
		switch {
		case len(errs) == 0:
			return nil
		case len(errs) < n:
			return degraded(fmt.Sprintf("%d of %d Redis Cluster slot ranges failed the DPoP state script", len(errs), n))
		}
		return errs[0]
	}
}
