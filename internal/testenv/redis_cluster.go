package testenv

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of the test's own: n primaries (no
// replicas) on private loopback ports, each a PrivateRedis started with
// --cluster-enabled yes, the slots spread by redis-cli --cluster create.
// cluster-require-full-coverage is off, so a killed primary takes only its
// own slots down.
type RedisCluster struct {
	Nodes []*PrivateRedis
}

// Addrs are the nodes' addresses, comma-separated (storage.redis.addr).
func (c *RedisCluster) Addrs() string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return strings.Join(a, ",")
}

// StartRedisCluster starts one, skipping only when redis-server or
// redis-cli is not installed (or AUTHORITY_TEST_REDIS=off). It is stopped
// at cleanup.
func StartRedisCluster(tb testing.TB, n int) *RedisCluster {
	tb.Helper()
	if os.Getenv("AUTHORITY_TEST_REDIS") == "off" {
		tb.Skip("AUTHORITY_TEST_REDIS=off: skipping Redis tests")
	}
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("%s is not installed: Redis Cluster tests skipped", bin)
		}
	}
	c := &RedisCluster{}
	args := []string{"--cluster", "create"}
	for range n {
		// Each node's cluster state file lives in its own directory.
		r := StartPrivateRedis(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no")
		c.Nodes = append(c.Nodes, r)
		args = append(args, r.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must agree that the cluster is up before a test uses it.
	deadline := time.Now().Add(20 * time.Second)
	for _, node := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: node.Addr})
		for {
			info, err := cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				cl.Close()
				tb.Fatalf("Redis Cluster node %s not ready: %v %s", node.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cl.Close()
	}
	return c
}

// Client returns a cluster client on the nodes, closed at cleanup.
func (c *RedisCluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	addrs := strings.Split(c.Addrs(), ",")
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

// PrimariesHolding is how many of the cluster's primaries hold at least
// one key: a layout that spreads puts keys on all of them.
func (c *RedisCluster) PrimariesHolding(tb testing.TB) int {
	tb.Helper()
	n := 0
	for _, node := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: node.Addr})
		size, err := cl.DBSize(context.Background()).Result()
		cl.Close()
		if err != nil {
			tb.Fatalf("DBSIZE %s: %v", node.Addr, err)
		}
		if size > 0 {
			n++
		}
	}
	return n
}
