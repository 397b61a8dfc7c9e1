package oauth_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/dpop/dpoptest"
	"stellaops.org/authority/host/oauth"
)

// nonceFor runs the RFC 9449 §8 handshake for client dpop: the first
// request is answered use_dpop_nonce with the nonce to use.
func (f *fixture) nonceFor(k *dpoptest.Key) string {
	f.t.Helper()
	_, e := f.svc.Token(context.Background(), withProof(basic("dpop", "dpop-secret", cc()), f.proofFor(k, "")))
	wantError(f.t, e, 400, oauth.CodeUseDPoPNonce)
	n := e.Header.Get("DPoP-Nonce")
	if n == "" {
		f.t.Fatal("RFC 9449 §8: use_dpop_nonce without a DPoP-Nonce header")
	}
	return n
}

// RFC 9449 §4.3 and §8 at the token endpoint, for a client that must use
// DPoP with a server nonce: every refusal is the RFC's code, and every DPoP
// answer carries a nonce the client can use next.
func TestRFC9449_TokenEndpointRules(t *testing.T) {
	htu := issuer + "/token"
	cases := []struct {
		name   string
		proofs func(f *fixture, k *dpoptest.Key, nonce string) []string
		status int
		code   string
	}{
		{"§8 no proof: use_dpop_nonce", func(*fixture, *dpoptest.Key, string) []string { return nil }, 400, oauth.CodeUseDPoPNonce},
		{"§8 proof without nonce", func(f *fixture, k *dpoptest.Key, _ string) []string { return []string{f.proofFor(k, "")} },
			400, oauth.CodeUseDPoPNonce},
		{"§8 made-up nonce", func(f *fixture, k *dpoptest.Key, _ string) []string { return []string{f.proofFor(k, "made-up")} },
			400, oauth.CodeUseDPoPNonce},
		{"§4.3 (1) two DPoP headers", func(f *fixture, k *dpoptest.Key, n string) []string {
			return []string{f.proofFor(k, n), f.proofFor(k, n)}
		}, 400, oauth.CodeInvalidDPoPProof},
		{"§4.3 (4) typ is not dpop+jwt", func(f *fixture, k *dpoptest.Key, n string) []string {
			return []string{k.Proof(t, dpoptest.Proof{Typ: "JWT", HTU: htu, IAT: f.now, Nonce: n})}
		}, 400, oauth.CodeInvalidDPoPProof},
		{"§4.3 (8) htm is not the request's method", func(f *fixture, k *dpoptest.Key, n string) []string {
			return []string{k.Proof(t, dpoptest.Proof{HTM: "GET", HTU: htu, IAT: f.now, Nonce: n})}
		}, 400, oauth.CodeInvalidDPoPProof},
		{"§4.3 (9) htu is not the endpoint's public URL", func(f *fixture, k *dpoptest.Key, n string) []string {
			return []string{k.Proof(t, dpoptest.Proof{HTU: "https://attacker.test/token", IAT: f.now, Nonce: n})}
		}, 400, oauth.CodeInvalidDPoPProof},
		{"§4.3 (11) iat too old", func(f *fixture, k *dpoptest.Key, n string) []string {
			return []string{k.Proof(t, dpoptest.Proof{HTU: htu, IAT: f.now.Add(-time.Hour), Nonce: n})}
		}, 400, oauth.CodeInvalidDPoPProof},
		{"§4.3 (7) signature by another key", func(f *fixture, k *dpoptest.Key, n string) []string {
			return []string{dpoptest.NewKey(t).Proof(t, dpoptest.Proof{HTU: htu, IAT: f.now, Nonce: n, JWK: k.JWK})}
		}, 400, oauth.CodeInvalidDPoPProof},
		{"§11.1 replayed proof", func(f *fixture, k *dpoptest.Key, n string) []string {
			p := f.proofFor(k, n)
			if _, e := f.svc.Token(context.Background(), withProof(basic("dpop", "dpop-secret", cc()), p)); e != nil {
				t.Fatalf("first use: %v", e)
			}
			return []string{p}
		}, 401, oauth.CodeInvalidDPoPProof},
		{"§5 valid proof with the server's nonce", func(f *fixture, k *dpoptest.Key, n string) []string {
			return []string{f.proofFor(k, n)}
		}, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			k := dpoptest.NewKey(t)
			nonce := f.nonceFor(k)
			resp, e := f.svc.Token(context.Background(), withProof(basic("dpop", "dpop-secret", cc()), tc.proofs(f, k, nonce)...))
			if tc.code == "" {
				if e != nil {
					t.Fatalf("refused: %v (%s)", e, e.Reason)
				}
				if resp.TokenType != "DPoP" || resp.Header.Get("DPoP-Nonce") == "" {
					t.Fatalf("response %+v", resp)
				}
				cnf, _ := claims(t, resp.AccessToken)["cnf"].(map[string]any)
				if cnf["jkt"] != k.Thumbprint() {
					t.Fatalf("RFC 9449 §6.1: cnf %v, want jkt %s", cnf, k.Thumbprint())
				}
				return
			}
			wantError(t, e, tc.status, tc.code)
			if e.Header.Get("DPoP-Nonce") == "" {
				t.Fatal("a refused DPoP request without a DPoP-Nonce to go on with")
			}
			if tc.status == http.StatusUnauthorized && !strings.HasPrefix(e.Header.Get("WWW-Authenticate"), "DPoP ") {
				t.Fatalf("RFC 9449 §7.1: 401 challenge %q", e.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// A client that need not use DPoP and sends a header that is not a proof is
// refused without a nonce being minted for it (junk cannot fill the nonce
// store); one that sends no proof gets a Bearer token.
func TestRFC9449_OptionalClientJunkHeaderMintsNoNonce(t *testing.T) {
	f := newFixture(t, nil)
	_, e := f.svc.Token(context.Background(), withProof(basic("dpop-opt", "dpop-opt-secret", cc()), "not-a-jwt"))
	wantError(t, e, 400, oauth.CodeInvalidDPoPProof)
	if n := e.Header.Get("DPoP-Nonce"); n != "" {
		t.Fatalf("nonce %q minted for junk", n)
	}
	resp, e := f.svc.Token(context.Background(), basic("dpop-opt", "dpop-opt-secret", cc()))
	if e != nil || resp.TokenType != "Bearer" {
		t.Fatalf("%+v %v", resp, e)
	}
}

// The rollout plan's temporary bypass: a DPoP-required client without a
// proof gets an unbound token, audited as authority.dpop.proof.bypass.
func TestDPoPTemporaryBypassIsAudited(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.Security.SenderConstraints.DPoP.AllowTemporaryBypass = true })
	resp, e := f.svc.Token(context.Background(), basic("dpop", "dpop-secret", cc()))
	if e != nil || resp.TokenType != "Bearer" || claims(t, resp.AccessToken)["cnf"] != nil {
		t.Fatalf("%+v %v", resp, e)
	}
	if got := f.audit.types(); len(got) != 2 || got[0] != "authority.dpop.proof.bypass" || got[1] != "authority.token.issued" {
		t.Fatalf("audit %v", got)
	}
}

// One DPoP path: /token and /fresh-auth each log exactly one
// authority.dpop.request per proof check, with the same fields.
func TestDPoPRequestLoggedOncePerCheckAtBothEndpoints(t *testing.T) {
	f := newFixture(t, nil)
	k := dpoptest.NewKey(t)
	tok := f.dpopToken(k)
	if _, e := f.svc.FreshAuth(context.Background(), f.freshAuth(k, tok, dpoptest.ATH(tok))); e != nil {
		t.Fatal(e)
	}
	lines := f.logLines("authority.dpop.request")
	if len(lines) != 2 {
		t.Fatalf("%d authority.dpop.request lines, want 2", len(lines))
	}
	for i, want := range []string{"/token", "/fresh-auth"} {
		l := lines[i]
		if l["endpoint"] != want || l["dpop_result"] != "valid" || l["cnf_jkt"] != k.Thumbprint() || l["proof_jkt"] != k.Thumbprint() ||
			l["tenant"] != "t1" || l["client"] != "dpop-opt" {
			t.Fatalf("line %d: %v", i, l)
		}
	}
}
