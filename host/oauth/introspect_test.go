package oauth_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"stellaops.org/authority/host/dpop/dpoptest"
	"stellaops.org/authority/host/oauth"
)

func introspect(f *fixture, caller, secret, tok string) (*oauth.Introspection, *oauth.Error) {
	r := basic(caller, secret, url.Values{"token": {tok}})
	r.Path = "/introspect"
	return f.svc.Introspect(context.Background(), r)
}

func revoke(f *fixture, caller, secret, tok string) *oauth.Error {
	r := basic(caller, secret, url.Values{"token": {tok}})
	r.Path = "/revoke"
	return f.svc.Revoke(context.Background(), r)
}

// RFC 7662 §2.2 and RFC 7009 §2: what introspection answers for each kind
// of token, and what revocation changes.
func TestRFC7662_IntrospectionAndRFC7009_Revocation(t *testing.T) {
	f := newFixture(t, nil)
	k := dpoptest.NewKey(t)
	bound := f.dpopToken(k)
	resp, e := f.svc.Token(context.Background(), basic("bearer", "bearer-secret", cc()))
	if e != nil {
		t.Fatal(e)
	}
	plain := resp.AccessToken
	foreign, e := f.svc.Token(context.Background(), basic("other", "other-secret", cc()))
	if e != nil {
		t.Fatal(e)
	}

	cases := []struct {
		name, tok string
		active    bool
		typ       string
	}{
		{"§2.2 an active Bearer token", plain, true, "Bearer"},
		{"§2.2 an active DPoP token carries cnf (RFC 9449 §6.2)", bound, true, "DPoP"},
		{"§2.2 a token of another tenant is inactive", foreign.AccessToken, false, ""},
		{"§2.2 an unknown string is inactive", "garbage", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, e := introspect(f, "bearer", "bearer-secret", tc.tok)
			if e != nil {
				t.Fatal(e)
			}
			if in.Active != tc.active || in.TokenType != tc.typ {
				t.Fatalf("%+v", in)
			}
			if raw, _ := json.Marshal(in); !tc.active && string(raw) != `{"active":false}` {
				t.Fatalf("an inactive answer says more than active=false: %+v", in)
			}
			if tc.typ == "DPoP" && (in.Cnf == nil || in.Cnf.JKT != k.Thumbprint()) {
				t.Fatalf("cnf %+v", in.Cnf)
			}
		})
	}
	if _, e := introspect(f, "bearer", "wrong", plain); e == nil || e.Code != oauth.CodeInvalidClient {
		t.Fatalf("RFC 7662 §2.1: an unauthenticated caller got %v", e)
	}

	// RFC 7009 §2.1: only the token's own client revokes it.
	e = revoke(f, "dpop-opt", "dpop-opt-secret", plain)
	wantError(t, e, 400, oauth.CodeUnauthorizedClient)
	// §2.2: unknown and foreign tokens answer 200 and change nothing.
	for _, tok := range []string{"garbage", foreign.AccessToken} {
		if e := revoke(f, "bearer", "bearer-secret", tok); e != nil {
			t.Fatalf("revoke %q: %v", tok, e)
		}
	}
	if in, _ := introspect(f, "other", "other-secret", foreign.AccessToken); !in.Active {
		t.Fatal("a foreign revocation reached another tenant's token")
	}
	if e := revoke(f, "bearer", "bearer-secret", plain); e != nil {
		t.Fatal(e)
	}
	if in, _ := introspect(f, "bearer", "bearer-secret", plain); in.Active {
		t.Fatal("RFC 7009 §2: a revoked token is still active")
	}
	// RFC 7662 §2.2: an expired token is inactive.
	f.now = f.now.Add(6 * time.Minute)
	if in, _ := introspect(f, "dpop-opt", "dpop-opt-secret", bound); in.Active {
		t.Fatal("an expired token is active")
	}
}
