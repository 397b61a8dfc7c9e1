package app_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stellaops.org/authority/host/config"
)

// owaspKDF restores the default (OWASP) Argon2id cost over withUsers'
// cheap one: the password benchmarks measure the real KDF.
func owaspKDF(c *config.Config) {
	c.Security.Passwords.Argon2id = config.Default().Security.Passwords.Argon2id
}

func passwordRequest(user, pw string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=password&username="+user+"&password="+pw))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("app-confidential", secrets["app-confidential"])
	return r
}

// BenchmarkPasswordGrant is password-grant throughput at the default cost
// (m=19 MiB, t=2) and the default KDF bounds: the CPU budget
// (security.passwords.maxCpuShare of the cores), not the callers, sets it.
// Answers other than 200 (503 when the budget is spent) are counted apart.
func BenchmarkPasswordGrant(b *testing.B) {
	e := newEnv(b, envOptions{quiet: true, mutate: withUsers(owaspKDF)})
	h := e.a.Server.Handler()
	var ok, busy atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, passwordRequest("alice", "alice-password"))
			switch w.Code {
			case 200:
				ok.Add(1)
			case 503:
				busy.Add(1)
			default:
				b.Errorf("status %d: %s", w.Code, w.Body.String())
				return
			}
		}
	})
	s := time.Since(start).Seconds()
	b.ReportMetric(float64(ok.Load())/s, "tokens/s")
	b.ReportMetric(float64(busy.Load())/s, "503/s")
}

// BenchmarkClientCredentialsUnderPasswordFlood is client_credentials
// throughput (GOMAXPROCS x 16 callers) alone and while 16 attackers send
// wrong passwords back to back (target: flooded >= 0.8 x alone). The
// flood's answers per second are reported with it.
func BenchmarkClientCredentialsUnderPasswordFlood(b *testing.B) {
	for _, flood := range []bool{false, true} {
		name := "alone"
		if flood {
			name = "flooded"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, envOptions{quiet: true, mutate: withUsers(owaspKDF)})
			h := e.a.Server.Handler()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var refused, rejected atomic.Int64
			start := time.Now()
			if flood {
				for range 16 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							select {
							case <-stop:
								return
							default:
							}
							w := httptest.NewRecorder()
							h.ServeHTTP(w, passwordRequest("alice", "guess"))
							if w.Code == 503 {
								refused.Add(1)
							} else {
								rejected.Add(1)
							}
						}
					}()
				}
			}
			issueParallel(b, e)
			close(stop)
			wg.Wait()
			if flood {
				s := time.Since(start).Seconds()
				b.ReportMetric(float64(rejected.Load())/s, "flood-checked/s")
				b.ReportMetric(float64(refused.Load())/s, "flood-503/s")
			}
		})
	}
}
