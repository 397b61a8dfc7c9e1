// Command loadgen drives the DPoP client_credentials flow against a token
// endpoint and reports what it cost the server (make bench-e2e):
//
//	loadgen -url http://127.0.0.1:8080 -client demo-dpop -secret demo-dpop-secret -pid PID
//	loadgen -floor
//
// Every request carries a freshly signed ES256 proof (RFC 9449 §4.2); a
// use_dpop_nonce answer or a DPoP-Nonce header on success updates the
// connection's nonce (§8), as a real client does, and the retried request
// is not an error. It reports tokens/s, latency p50 and p99 of successful
// requests, errors, and the server's CPU per 1,000 tokens, read from
// /proc/PID/stat before and after the measured interval. -floor measures
// the ES256 sign + verify pair a DPoP token costs at least, on the core it
// is run on. The last line of output is one JSON object.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is the JSON summary of one run.
type result struct {
	Label        string  `json:"label"`
	Tokens       int64   `json:"tokens"`
	Seconds      float64 `json:"seconds"`
	TokensPerSec float64 `json:"tokens_per_s"`
	P50Micros    int64   `json:"p50_us"`
	P99Micros    int64   `json:"p99_us"`
	NonceRetries int64   `json:"nonce_retries"`
	Errors       int64   `json:"errors"`
	// CPUMsPer1000 is the server process's user+system CPU per 1,000
	// tokens (0 without -pid).
	CPUMsPer1000 float64 `json:"server_cpu_ms_per_1000"`
	// FloorMicros is one ES256 sign + verify (-floor only).
	FloorMicros float64 `json:"floor_us,omitempty"`
	FirstError  string  `json:"first_error,omitempty"`
}

func main() {
	var (
		base     = flag.String("url", "http://127.0.0.1:8080", "issuer URL (the proof's htu is URL/token)")
		client   = flag.String("client", "demo-dpop", "client_id (client_secret_basic)")
		secret   = flag.String("secret", "demo-dpop-secret", "client secret")
		conns    = flag.Int("conns", 16, "concurrent connections, one DPoP key each")
		duration = flag.Duration("duration", 20*time.Second, "measured interval")
		warmup   = flag.Duration("warmup", 3*time.Second, "unmeasured load before it")
		pid      = flag.Int("pid", 0, "server process whose CPU time is read from /proc")
		label    = flag.String("label", "", "name of the run in the output")
		floor    = flag.Bool("floor", false, "measure the ES256 sign + verify floor instead")
	)
	flag.Parse()
	if *floor {
		us := measureFloor(2 * time.Second)
		fmt.Printf("ES256 sign + verify: %.1f µs\n", us)
		emit(result{Label: "floor", FloorMicros: us})
		return
	}
	r, err := run(*base, *client, *secret, *conns, *warmup, *duration, *pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	r.Label = *label
	fmt.Printf("%s: %.0f tokens/s, p50 %d µs, p99 %d µs, %d errors, %d nonce retries, server CPU %.1f ms per 1,000 tokens\n",
		r.Label, r.TokensPerSec, r.P50Micros, r.P99Micros, r.Errors, r.NonceRetries, r.CPUMsPer1000)
	emit(r)
	if r.Tokens == 0 {
		os.Exit(1)
	}
}

func emit(r result) {
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

// worker is one connection's client: its key, its nonce, its latencies.
type worker struct {
	key   *ecdsa.PrivateKey
	hdr   string // base64url protected header (typ, alg, jwk)
	nonce string
	lat   []time.Duration
}

func newWorker() (*worker, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	raw, err := k.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	b := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256",
		"jwk": map[string]string{"kty": "EC", "crv": "P-256", "x": b.EncodeToString(raw[1:33]), "y": b.EncodeToString(raw[33:])}})
	return &worker{key: k, hdr: b.EncodeToString(h)}, nil
}

func (w *worker) proof(htu string) (string, error) {
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	b := base64.RawURLEncoding
	c := map[string]any{"jti": b.EncodeToString(jti[:]), "htm": "POST", "htu": htu, "iat": time.Now().Unix()}
	if w.nonce != "" {
		c["nonce"] = w.nonce
	}
	pl, _ := json.Marshal(c)
	in := w.hdr + "." + b.EncodeToString(pl)
	d := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, w.key, d[:])
	if err != nil {
		return "", err
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + b.EncodeToString(sig[:]), nil
}

func run(base, client, secret string, conns int, warmup, duration time.Duration, pid int) (result, error) {
	htu := strings.TrimRight(base, "/") + "/token"
	body := url.Values{"grant_type": {"client_credentials"}}.Encode()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	var measuring, stop atomic.Bool
	var tokens, retries, errs atomic.Int64
	var firstErr atomic.Value
	workers := make([]*worker, conns)
	for i := range workers {
		w, err := newWorker()
		if err != nil {
			return result{}, err
		}
		workers[i] = w
	}
	fail := func(msg string) {
		if measuring.Load() {
			errs.Add(1)
		}
		firstErr.CompareAndSwap(nil, msg)
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for !stop.Load() {
				p, err := w.proof(htu)
				if err != nil {
					fail(err.Error())
					continue
				}
				req, _ := http.NewRequest(http.MethodPost, htu, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("DPoP", p)
				req.SetBasicAuth(url.QueryEscape(client), url.QueryEscape(secret))
				start := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					fail(err.Error())
					time.Sleep(10 * time.Millisecond)
					continue
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				took := time.Since(start)
				if n := resp.Header.Get("DPoP-Nonce"); n != "" {
					w.nonce = n
				}
				switch {
				case resp.StatusCode == http.StatusOK && !strings.Contains(string(raw), `"token_type":"DPoP"`):
					fail("200 without token_type DPoP: " + strings.TrimSpace(string(raw)))
				case resp.StatusCode == http.StatusOK:
					if measuring.Load() {
						tokens.Add(1)
						w.lat = append(w.lat, took)
					}
				case resp.StatusCode == http.StatusBadRequest && strings.Contains(string(raw), `"use_dpop_nonce"`):
					if measuring.Load() {
						retries.Add(1)
					}
				default:
					fail(strconv.Itoa(resp.StatusCode) + " " + strings.TrimSpace(string(raw)))
				}
			}
		})
	}
	time.Sleep(warmup)
	cpu0, err := cpuTicks(pid)
	if err != nil {
		stop.Store(true)
		wg.Wait()
		return result{}, err
	}
	measuring.Store(true)
	t0 := time.Now()
	time.Sleep(duration)
	measuring.Store(false)
	secs := time.Since(t0).Seconds()
	cpu1, _ := cpuTicks(pid)
	stop.Store(true)
	wg.Wait()

	var lat []time.Duration
	for _, w := range workers {
		lat = append(lat, w.lat...)
	}
	slices.Sort(lat)
	r := result{Tokens: tokens.Load(), Seconds: secs, NonceRetries: retries.Load(), Errors: errs.Load()}
	r.TokensPerSec = float64(r.Tokens) / secs
	if len(lat) > 0 {
		r.P50Micros = lat[len(lat)/2].Microseconds()
		r.P99Micros = lat[len(lat)*99/100].Microseconds()
	}
	if pid != 0 && r.Tokens > 0 {
		// Linux reports CPU time in USER_HZ ticks, 100 per second.
		r.CPUMsPer1000 = float64(cpu1-cpu0) * 10 / float64(r.Tokens) * 1000
	}
	if v, ok := firstErr.Load().(string); ok {
		r.FirstError = v
	}
	return r, nil
}

// cpuTicks is the user + system time of process pid (0: none), from
// /proc/PID/stat fields 14 and 15.
func cpuTicks(pid int) (int64, error) {
	if pid == 0 {
		return 0, nil
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return u + k, nil
}

// measureFloor is the mean time of one ES256 sign + one verify over d.
func measureFloor(d time.Duration) float64 {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	msg := sha256.Sum256([]byte("the floor of a DPoP token: verify its proof, sign the token"))
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		sig, err := ecdsa.SignASN1(rand.Reader, k, msg[:])
		if err != nil || !ecdsa.VerifyASN1(&k.PublicKey, msg[:], sig) {
			panic("ES256 sign/verify failed")
		}
		n++
	}
	return float64(time.Since(start).Microseconds()) / float64(n)
}
