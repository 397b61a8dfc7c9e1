package oauth_test

import (
	"context"
	"strings"
	"testing"

	"stellaops.org/authority/host/dpop/dpoptest"
	"stellaops.org/authority/host/oauth"
)

// dpopToken is an access token of client dpop-opt bound to k (no nonce
// required for it).
func (f *fixture) dpopToken(k *dpoptest.Key) string {
	f.t.Helper()
	resp, e := f.svc.Token(context.Background(), withProof(basic("dpop-opt", "dpop-opt-secret", cc()), f.proofFor(k, "")))
	if e != nil {
		f.t.Fatal(e)
	}
	return resp.AccessToken
}

// freshAuth is a /fresh-auth request presenting tok with the DPoP scheme
// and a proof of k carrying ath ("" for none; k nil for no proof).
func (f *fixture) freshAuth(k *dpoptest.Key, tok, ath string) *oauth.Request {
	r := &oauth.Request{Method: "POST", Path: "/fresh-auth", Authorization: "DPoP " + tok}
	if k != nil {
		r.DPoP = []string{k.Proof(f.t, dpoptest.Proof{HTU: issuer + "/fresh-auth", IAT: f.now, ATH: ath})}
	}
	return r
}

// RFC 9449 §7 at /fresh-auth (a protected resource): the bound key must
// prove possession with ath, under the DPoP scheme; every refusal is a 401
// with a challenge.
func TestRFC9449_7_FreshAuthRules(t *testing.T) {
	cases := []struct {
		name string
		req  func(f *fixture, k *dpoptest.Key, tok string) *oauth.Request
		code string
	}{
		{"§7.1 bound key, ath of the token", func(f *fixture, k *dpoptest.Key, tok string) *oauth.Request {
			return f.freshAuth(k, tok, dpoptest.ATH(tok))
		}, ""},
		{"§7.1 no proof", func(f *fixture, _ *dpoptest.Key, tok string) *oauth.Request { return f.freshAuth(nil, tok, "") },
			oauth.CodeInvalidDPoPProof},
		{"§4.3 (12) no ath", func(f *fixture, k *dpoptest.Key, tok string) *oauth.Request { return f.freshAuth(k, tok, "") },
			oauth.CodeInvalidDPoPProof},
		{"§4.3 (12) ath of another token", func(f *fixture, k *dpoptest.Key, tok string) *oauth.Request {
			return f.freshAuth(k, tok, dpoptest.ATH("another token"))
		}, oauth.CodeInvalidDPoPProof},
		{"§7.1 another key", func(f *fixture, _ *dpoptest.Key, tok string) *oauth.Request {
			return f.freshAuth(dpoptest.NewKey(t), tok, dpoptest.ATH(tok))
		}, oauth.CodeInvalidToken},
		{"§7.2 DPoP-bound token as Bearer", func(f *fixture, k *dpoptest.Key, tok string) *oauth.Request {
			r := f.freshAuth(k, tok, dpoptest.ATH(tok))
			r.Authorization = "Bearer " + tok
			return r
		}, oauth.CodeInvalidToken},
		{"RFC 6750 §3.1 unknown token", func(f *fixture, k *dpoptest.Key, _ string) *oauth.Request {
			return f.freshAuth(k, "not-a-token", dpoptest.ATH("not-a-token"))
		}, oauth.CodeInvalidToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			k := dpoptest.NewKey(t)
			tok := f.dpopToken(k)
			resp, e := f.svc.FreshAuth(context.Background(), tc.req(f, k, tok))
			if tc.code == "" {
				if e != nil {
					t.Fatalf("refused: %v (%s)", e, e.Reason)
				}
				if resp.Cnf == nil || resp.Cnf.JKT != k.Thumbprint() || resp.Confirmation == "" || resp.ClientID != "dpop-opt" {
					t.Fatalf("response %+v", resp)
				}
				return
			}
			wantError(t, e, 401, tc.code)
			if ch := e.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "DPoP ") || !strings.Contains(ch, `algs="`) {
				t.Fatalf("challenge %q", ch)
			}
		})
	}
}

// A token bound to nothing has nothing to prove at /fresh-auth.
func TestFreshAuthRefusesAnUnboundToken(t *testing.T) {
	f := newFixture(t, nil)
	resp, e := f.svc.Token(context.Background(), basic("bearer", "bearer-secret", cc()))
	if e != nil {
		t.Fatal(e)
	}
	_, e = f.svc.FreshAuth(context.Background(), &oauth.Request{Method: "POST", Path: "/fresh-auth", Authorization: "Bearer " + resp.AccessToken})
	wantError(t, e, 401, oauth.CodeInvalidToken)
	if e.Reason != "unbound" {
		t.Fatalf("reason %q", e.Reason)
	}
}
