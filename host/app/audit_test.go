package app_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/app"
	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/internal/testenv"
)

// auditRecords closes the node (its writer flushes and writes the final
// checkpoint) and returns the records of its audit file.
func (e *env) auditRecords() []audit.Record {
	e.t.Helper()
	e.plain.Close()
	e.secure.Close()
	if err := e.a.Close(); err != nil {
		e.t.Fatal(err)
	}
	raw, err := os.ReadFile(e.cfg.Audit.File)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []audit.Record
	for _, l := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var r audit.Record
		if err := json.Unmarshal(l, &r); err != nil {
			e.t.Fatalf("%v: %s", err, l)
		}
		out = append(out, r)
	}
	return out
}

func (e *env) verifyAudit() audit.Report {
	e.t.Helper()
	pub, err := audit.LoadVerifyKey(e.cfg.Audit.SigningKeyFile)
	if err != nil {
		e.t.Fatal(err)
	}
	rep, err := audit.Verify(context.Background(), fileScanner(e.cfg.Audit.File),
		audit.VerifyOptions{Keys: []ed25519.PublicKey{pub}, Now: e.clock.Now(), MaxCheckpointAge: 10 * time.Minute})
	if err != nil {
		e.t.Fatal(err)
	}
	return rep
}

type fileScanner string

func (f fileScanner) Scan(ctx context.Context, fn func(audit.Sealed) error) error {
	return audit.ScanFile(ctx, string(f), fn)
}

func (e *env) tenantPseudonym(tenant, v string) string {
	e.t.Helper()
	raw, err := os.ReadFile(e.cfg.Plugins.PseudonymSecretFile)
	if err != nil {
		e.t.Fatal(err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		e.t.Fatal(err)
	}
	key, _ := app.TenantSecrets(secret).PseudonymKey(context.Background(), tenant)
	return plugin.PseudonymString(key, []byte(v))
}

func byType(recs []audit.Record, typ string) []audit.Record {
	var out []audit.Record
	for _, r := range recs {
		if r.EventType == typ {
			out = append(out, r)
		}
	}
	return out
}

// TestAuditTrailRecordsIssuanceReplayAndMismatch is the issue's "done
// when": a token issuance, a replay and a certificate mismatch are records
// in the durable sink, pseudonymized, the trail verifies, and it fails
// after an edit.
func TestAuditTrailRecordsIssuanceReplayAndMismatch(t *testing.T) {
	e := newEnv(t, envOptions{})
	const ua = "curl/8.99-distinctive-agent"
	r := e.do("/token", reqOpts{basic: basic("demo-bearer"), form: map[string][]string{"grant_type": {"client_credentials"}},
		headers: map[string][]string{"User-Agent": {ua}}})
	if r.status != 200 {
		t.Fatalf("token: %d %s", r.status, r.raw)
	}
	if r := e.replayedProof(); r.status != 401 {
		t.Fatalf("replay: %d", r.status)
	}
	cert, other := e.demoMTLSCert(), e.demoMTLSCert()
	tok := e.mtlsToken("demo-mtls", &cert.TLS, nil).str("access_token")
	if r := e.do("/fresh-auth", reqOpts{client: e.tlsClient(&other.TLS), base: e.secure.URL,
		headers: map[string][]string{"Authorization": {"Bearer " + tok}}}); r.status != 401 {
		t.Fatalf("mismatch: %d %s", r.status, r.raw)
	}
	recs := e.auditRecords()

	issued := byType(recs, abi.EventTokenIssued)
	if len(issued) < 3 { // demo-bearer, demo-dpop (replay setup), demo-mtls
		t.Fatalf("%d issuance records", len(issued))
	}
	first := issued[0]
	if first.Tenant != "demo" || first.Client != "demo-bearer" || first.Outcome != "success" || first.Source != "host" ||
		first.Properties["jti"] == "" || !slices.IsSorted(first.Scopes) {
		t.Fatalf("issuance record: %+v", first)
	}
	if first.Subject != e.tenantPseudonym("demo", "demo-bearer") {
		t.Fatalf("subject %q is not the tenant's pseudonym of the client", first.Subject)
	}
	if first.Network == nil || first.Network.IP != e.tenantPseudonym("demo", "127.0.0.1") || first.Network.UserAgent != e.tenantPseudonym("demo", ua) {
		t.Fatalf("network %+v is not pseudonymized", first.Network)
	}
	replay := byType(recs, abi.EventDPoPReplay)
	if len(replay) != 1 || replay[0].SenderConstraint == nil || replay[0].SenderConstraint.Kind != "dpop" ||
		replay[0].SenderConstraint.DPoP != abi.DPoPReplay || replay[0].SenderConstraint.JKT == "" {
		t.Fatalf("replay records: %+v", replay)
	}
	mismatch := byType(recs, abi.EventMTLSBindingMismatch)
	if len(mismatch) != 1 || mismatch[0].Reason != abi.MTLSThumbprintMismatch || mismatch[0].SenderConstraint.X5tS256 == "" {
		t.Fatalf("mismatch records: %+v", mismatch)
	}
	if len(byType(recs, abi.EventDPoPNonceMiss)) == 0 {
		t.Fatal("the nonce dance's first answer is not recorded as a nonce miss")
	}
	raw, _ := os.ReadFile(e.cfg.Audit.File)
	// (The server's own URL, 127.0.0.1 here, may appear: a proof's htu.)
	for _, secret := range []string{ua, `"ip":"127.0.0.1"`, secrets["demo-bearer"], tok} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("%q appears raw in the audit file", secret)
		}
	}
	if rep := e.verifyAudit(); !rep.OK() || len(rep.Chains) != 1 || !rep.Chains[0].Final {
		t.Fatalf("verify: %+v", rep)
	}
	// Any edit is found.
	edited := bytes.Replace(raw, []byte(`"outcome":"failure"`), []byte(`"outcome":"success"`), 1)
	if bytes.Equal(edited, raw) {
		t.Fatal("nothing to edit")
	}
	if err := os.WriteFile(e.cfg.Audit.File, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep := e.verifyAudit(); rep.OK() || rep.Problems[0].Kind != audit.ProblemEdited {
		t.Fatalf("verify after an edit: %+v", rep)
	}
}

// TestAuditTenantTruncatesNetwork: a tenant that chose truncation records
// the /24 of the client address instead of its pseudonym.
func TestAuditTenantTruncatesNetwork(t *testing.T) {
	e := newEnv(t, envOptions{mutate: func(c *config.Config) {
		c.Tenants[0].Audit = config.TenantAudit{Network: "truncate"}
	}})
	e.mustToken("demo-bearer")
	recs := byType(e.auditRecords(), abi.EventTokenIssued)
	if len(recs) != 1 || recs[0].Network == nil || recs[0].Network.IP != "127.0.0.0/24" {
		t.Fatalf("records: %+v", recs)
	}
}

// failingStore is an audit store whose writes fail while broken is set.
func failingStore() *audit.MemoryStore { return audit.NewMemoryStore() }

// TestAuditOnFailureRefuse: with audit.onFailure refuse, a failing sink
// makes /token answer 503 with Retry-After (counted as a degraded refusal)
// and /readyz fail; once it heals, tokens are issued and recorded.
func TestAuditOnFailureRefuse(t *testing.T) {
	st := failingStore()
	e := newEnv(t, envOptions{auditStore: st, mutate: func(c *config.Config) {
		c.Audit.OnFailure = config.OnFailureRefuse
		c.Audit.WriteTimeout = config.Duration(time.Second)
	}})
	e.mustToken("demo-bearer")
	st.SetFail(errors.New("disk on fire"))
	// The first refused request may be the one that finds the sink failing
	// (its record cannot be made durable in time); every one after is
	// refused up front.
	var r response
	for range 3 {
		r = e.token("demo-bearer", nil)
		if r.status != http.StatusServiceUnavailable || r.str("error") != "temporarily_unavailable" || r.header.Get("Retry-After") == "" {
			t.Fatalf("token while the sink fails: %d %s", r.status, r.raw)
		}
	}
	if !strings.Contains(e.metrics(), `authority_degraded_refusals_total{reason="audit-unavailable"}`) {
		t.Fatal("refusals not counted")
	}
	if rr := e.do("/readyz", reqOpts{method: http.MethodGet}); rr.status != http.StatusServiceUnavailable || !strings.Contains(rr.raw, "audit") {
		t.Fatalf("readyz while the sink fails: %d %s", rr.status, rr.raw)
	}
	st.SetFail(nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r = e.token("demo-bearer", nil); r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token after the sink healed: %d %s", r.status, r.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Every token handed out has its record.
	jtis := map[string]bool{}
	for _, l := range st.Lines() {
		var rec audit.Record
		if json.Unmarshal(l, &rec) == nil && rec.EventType == abi.EventTokenIssued {
			jtis[rec.Properties["jti"]] = true
		}
	}
	if len(jtis) < 2 {
		t.Fatalf("issuance records: %v", jtis)
	}
}

// TestAuditOnFailureContinue: with the default policy a failing sink does
// not stop issuance; /readyz stays 200 with a note, and once the queue is
// full the lost records are counted.
func TestAuditOnFailureContinue(t *testing.T) {
	st := failingStore()
	e := newEnv(t, envOptions{auditStore: st, mutate: func(c *config.Config) { c.Audit.QueueSize = 4 }})
	st.SetFail(errors.New("disk on fire"))
	// The writer learns of the failure with its next write: the first
	// token's record. Until then /readyz is green.
	e.mustToken("demo-bearer")
	deadline := time.Now().Add(30 * time.Second)
	for {
		rr := e.do("/readyz", reqOpts{method: http.MethodGet})
		if rr.status != 200 {
			t.Fatalf("readyz under continue: %d %s", rr.status, rr.raw)
		}
		if strings.Contains(rr.raw, "audit sink unavailable") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never noted the failing sink: %s", rr.raw)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 12 {
		e.mustToken("demo-bearer")
	}
	if m := e.metrics(); !strings.Contains(m, `authority_audit_records_dropped_total{reason="sink-unavailable"}`) ||
		strings.Contains(m, `authority_audit_records_dropped_total{reason="sink-unavailable"} 0`) {
		t.Fatalf("drops not counted:\n%s", grepLines(m, "authority_audit"))
	}
	st.SetFail(nil)
}

// TestAuditRecordsConfigReload: a reload, good or bad, is a record.
func TestAuditRecordsConfigReload(t *testing.T) {
	e := newEnv(t, envOptions{})
	path := e.writeConfig(func(doc string) string { return doc })
	e.a.ConfigPath = path
	if err := e.a.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("issuer: [not a url\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.a.Reload(context.Background()); err == nil {
		t.Fatal("a broken file reloaded")
	}
	recs := byType(e.auditRecords(), audit.EventConfigReload)
	if len(recs) != 2 || recs[0].Outcome != "success" || recs[1].Outcome != "failure" {
		t.Fatalf("reload records: %+v", recs)
	}
}

// TestAuditTrailOnPostgres: beside PostgreSQL tokens the trail is the
// authority_audit table; two nodes write their own chains into it, and
// both verify after the nodes stop.
func TestAuditTrailOnPostgres(t *testing.T) {
	dsn, schema := testenv.FreshSchema(t)
	keys := t.TempDir()
	a := newEnv(t, envOptions{postgres: dsn, pgSchema: schema, keyDir: keys})
	b := newEnv(t, envOptions{postgres: dsn, pgSchema: schema, keyDir: keys})
	a.mustToken("demo-bearer")
	b.mustToken("demo-bearer")
	a.mustToken("demo-bearer")
	if a.cfg.AuditSink() != "postgres" || a.cfg.Audit.Node == b.cfg.Audit.Node {
		t.Fatalf("sink %s, nodes %s and %s", a.cfg.AuditSink(), a.cfg.Audit.Node, b.cfg.Audit.Node)
	}
	for _, e := range []*env{a, b} {
		e.plain.Close()
		e.secure.Close()
		if err := e.a.Close(); err != nil {
			t.Fatal(err)
		}
	}
	st, _, err := app.OpenAuditStore(context.Background(), a.cfg, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub, err := audit.LoadVerifyKey(a.cfg.Audit.SigningKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(context.Background(), st, audit.VerifyOptions{Keys: []ed25519.PublicKey{pub}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Chains) != 2 || rep.Chains[0].Records+rep.Chains[1].Records != 3+4 {
		t.Fatalf("verify: %+v", rep) // 3 issuances, a start and a final checkpoint per node
	}
	for _, c := range rep.Chains {
		if !c.Final {
			t.Fatalf("chain %+v does not end with its final checkpoint", c)
		}
	}
}
