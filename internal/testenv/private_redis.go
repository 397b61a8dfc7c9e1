package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// PrivateRedis is a redis-server of the test's own, on a loopback port,
// without persistence, that the test may kill and restart (never the
// machine's shared server).
type PrivateRedis struct {
	Addr string
	tb   testing.TB
	dir  string
	port int
	// extra are further redis-server arguments (after the defaults, so
	// they override them).
	extra []string
	mu    sync.Mutex
	cmd   *exec.Cmd
}

// StartPrivateRedis starts one, or skips when redis-server is not
// installed and AUTHORITY_TEST_REDIS=off. It is stopped at cleanup.
func StartPrivateRedis(tb testing.TB, extra ...string) *PrivateRedis {
	tb.Helper()
	if os.Getenv("AUTHORITY_TEST_REDIS") == "off" {
		tb.Skip("AUTHORITY_TEST_REDIS=off: skipping Redis tests")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("redis-server is not installed: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &PrivateRedis{Addr: fmt.Sprintf("127.0.0.1:%d", port), tb: tb, dir: tb.TempDir(), port: port, extra: extra}
	r.Start()
	tb.Cleanup(r.Kill)
	return r
}

// Start runs the server (empty: it keeps nothing) and waits until it
// accepts connections.
func (r *PrivateRedis) Start() {
	r.tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return
	}
	args := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--daemonize", "no", "--loglevel", "warning"}, r.extra...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		r.tb.Fatal(err)
	}
	r.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("private redis-server on %s did not start: %v", r.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL): its data is gone.
func (r *PrivateRedis) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}
