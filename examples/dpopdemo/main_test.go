package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/host/app"
	"stellaops.org/authority/host/config"
)

// demoConfig is the demo-dpop tenant of examples/authority.yaml, with its
// files under DIR.
const demoConfig = `
signing:
  keys:
    - file: DIR/signing-1.pem
      active: true
      generate: true
plugins:
  cacheDir: DIR/plugin-cache
tenants:
  - id: demo-dpop
    senderConstraint:
      requireDPoP: true
      requireDPoPNonce: true
    clients:
      - id: demo-dpop
        secretDigest: DIGEST
        authMethod: client_secret_basic
        grants: [client_credentials]
        scopes: [demo.read]
        audiences: [demo-api]
`

// syncBuffer collects the server's logs (written from request goroutines).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAuthority runs a real Authority in-process on a loopback port and
// returns its issuer URL. wrap, when set, sits in front of its handler.
func startAuthority(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	dir := t.TempDir()
	doc := strings.NewReplacer("DIR", dir, "DIGEST", config.DigestSecret("demo-dpop-secret")).Replace(demoConfig)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	// The server listens on 127.0.0.1:0; its address is the issuer, and so
	// the htu the proofs must carry.
	srv := httptest.NewUnstartedServer(nil)
	cfg.Listen.HTTP = srv.Listener.Addr().String()
	cfg.Issuer = "http://" + cfg.Listen.HTTP
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	a, err := app.Build(context.Background(), cfg, app.NewLogger(logs, "info"), app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = a.Server.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		a.Close()
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	if srv.URL != cfg.Issuer {
		t.Fatalf("server URL %s, issuer %s", srv.URL, cfg.Issuer)
	}
	return cfg.Issuer
}

func testOptions(issuer string) options {
	// Generous: a loaded machine may be slow, and nothing here is timed.
	return options{issuer: issuer, client: "demo-dpop", secret: "demo-dpop-secret", timeout: time.Minute, introspect: true}
}

func runFlow(t *testing.T, o options) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, o, &out)
	t.Logf("output:\n%s", out.String())
	return out.String(), err
}

func TestFlowAgainstAuthority(t *testing.T) {
	issuer := startAuthority(t, nil)
	out, err := runFlow(t, testOptions(issuer))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a key line and four step lines, got %d", len(lines))
	}
	jkt := strings.TrimPrefix(lines[0], "DPoP key: ES256 (P-256), RFC 7638 thumbprint ")
	if jkt == lines[0] || len(jkt) != 43 { // base64url of 32 bytes
		t.Fatalf("key line %q", lines[0])
	}
	for i, want := range []string{
		"1. no nonce      -> 400 use_dpop_nonce (nonce received)",
		"2. with nonce    -> 200 DPoP token, cnf.jkt=" + jkt + " ",
		"3. same proof    -> 401 invalid_dpop_proof (replay refused): {",
		"4. introspect    -> 200 active=true cnf.jkt=" + jkt,
	} {
		if !strings.HasPrefix(lines[i+1], want) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i+1], want)
		}
	}

	// The server saw the same thing: one nonce miss, one valid proof, one
	// replay.
	resp, err := http.Get(issuer + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"authority_dpop_nonce_miss_total 1\n",
		`authority_dpop_proofs_total{authority_dpop_result="valid",tenant="demo-dpop"} 1` + "\n",
		`authority_dpop_proofs_total{authority_dpop_result="replay",tenant="demo-dpop"} 1` + "\n",
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %q", strings.TrimSpace(want))
		}
	}
}

// A broken deployment (here a cache in front of the Authority that answers
// a repeated DPoP proof with the earlier response) accepts the replay; the
// demo must notice, name step 3 and exit 1.
func TestReplayAcceptedIsAFailure(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]*httptest.ResponseRecorder{}
	issuer := startAuthority(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := r.Header.Get("DPoP")
			mu.Lock()
			rec, ok := seen[p]
			mu.Unlock()
			if !ok {
				rec = httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				if p != "" {
					mu.Lock()
					seen[p] = rec
					mu.Unlock()
				}
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		})
	})
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"-issuer", issuer, "-timeout", "1m"}, &stdout, &stderr)
	t.Logf("stdout:\n%sstderr:\n%s", stdout.String(), stderr.String())
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "step 3 (same proof): want 401 invalid_dpop_proof (a replay), got 200 ") {
		t.Fatalf("stderr %q does not name step 3 and its 200", stderr.String())
	}
	if !strings.Contains(stdout.String(), "2. with nonce    -> 200 DPoP token") || strings.Contains(stdout.String(), "3. ") {
		t.Fatalf("steps 1 and 2 pass, 3 must not print success: %q", stdout.String())
	}
}

func TestWrongSecretFailsStepOne(t *testing.T) {
	issuer := startAuthority(t, nil)
	o := testOptions(issuer)
	o.secret = "wrong"
	_, err := runFlow(t, o)
	if err == nil || !strings.HasPrefix(err.Error(), "step 1 (no nonce): want 400 use_dpop_nonce") ||
		!strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("err = %v", err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-nosuchflag"},
		{"extra"},
		{"-issuer", "ftp://127.0.0.1"},
		{"-issuer", "http://127.0.0.1:8080?x=1"},
		{"-issuer", "127.0.0.1:8080"},
		{"-timeout", "0s"},
		{"-client", ""},
	} {
		var stdout, stderr bytes.Buffer
		if code := realMain(args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit code %d, want 2 (stderr %q)", args, code, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: usage errors print nothing on stdout, got %q", args, stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "-issuer") {
		t.Errorf("-h: exit code %d, stderr %q", code, stderr.String())
	}
}

func TestTrailingSlashIssuer(t *testing.T) {
	o, err := parseFlags([]string{"-issuer", "http://127.0.0.1:9999/"}, io.Discard)
	if err != nil || o.issuer != "http://127.0.0.1:9999" {
		t.Fatalf("issuer %q, err %v", o.issuer, err)
	}
}
