package oauth_test

import (
	"context"
	"net/http"
	"testing"

	"stellaops.org/authority/host/oauth"
)

// RFC 6749 §4.4 and §5: the client credentials grant, rule by rule. Each
// case is one request against a fresh Service; the error cases name the
// rule that produces them.
func TestRFC6749_4_4_ClientCredentials(t *testing.T) {
	cases := []struct {
		name   string
		req    *oauth.Request
		status int
		code   string
	}{
		{"§4.4.2 basic client, all its scopes and audiences", basic("bearer", "bearer-secret", cc()), 200, ""},
		{"§2.3.1 client_secret_post", &oauth.Request{Form: cc("client_id", "post", "client_secret", "post-secret"),
			Creds: oauth.Credentials{PostID: "post", PostSecret: "post-secret", HasPostSecret: true}}, 200, ""},
		{"§3.3 requested scope narrows", basic("bearer", "bearer-secret", cc("scope", "read")), 200, ""},
		{"§2.3.1 wrong secret", basic("bearer", "wrong", cc()), 401, oauth.CodeInvalidClient},
		{"§2.3.1 unknown client", basic("nobody", "x", cc()), 401, oauth.CodeInvalidClient},
		{"§2.3.1 post secret for a basic client", &oauth.Request{Form: cc(),
			Creds: oauth.Credentials{PostID: "bearer", PostSecret: "bearer-secret", HasPostSecret: true}}, 401, oauth.CodeInvalidClient},
		{"§2.3 two authentication methods", &oauth.Request{Form: cc(), Creds: oauth.Credentials{Basic: true,
			BasicID: "bearer", BasicPass: "bearer-secret", PostID: "bearer", PostSecret: "bearer-secret", HasPostSecret: true}},
			400, oauth.CodeInvalidRequest},
		{"§2.3 no credentials", &oauth.Request{Form: cc()}, 401, oauth.CodeInvalidClient},
		{"§4.4.2 grant_type missing", basic("bearer", "bearer-secret", nil), 400, oauth.CodeInvalidRequest},
		{"§5.2 unsupported_grant_type", basic("bearer", "bearer-secret", map[string][]string{"grant_type": {"implicit"}}),
			400, oauth.CodeUnsupportedGrantType},
		{"§5.2 unauthorized_client", basic("no-grant", "no-grant-secret", cc()), 400, oauth.CodeUnauthorizedClient},
		{"§3.3 invalid_scope", basic("bearer", "bearer-secret", cc("scope", "admin")), 400, oauth.CodeInvalidScope},
		{"§3.2 repeated parameter", basic("bearer", "bearer-secret", cc("scope", "read", "scope", "write")),
			400, oauth.CodeInvalidRequest},
		{"RFC 8707 §2 resource not registered", basic("bearer", "bearer-secret", cc("resource", "elsewhere")),
			400, oauth.CodeInvalidTarget},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			resp, e := f.svc.Token(context.Background(), tc.req)
			if tc.code != "" {
				wantError(t, e, tc.status, tc.code)
				if tc.status == http.StatusUnauthorized && e.Header.Get("WWW-Authenticate") == "" {
					t.Fatal("RFC 6749 §5.2: a 401 invalid_client without a WWW-Authenticate challenge")
				}
				if got := f.audit.types(); len(got) != 1 || got[0] != "authority.token.denied" {
					t.Fatalf("audit %v, want one authority.token.denied", got)
				}
				return
			}
			if e != nil {
				t.Fatalf("refused: %v (%s)", e, e.Reason)
			}
			if resp.TokenType != "Bearer" || resp.ExpiresIn != 300 || resp.RefreshToken != "" {
				t.Fatalf("response %+v", resp)
			}
			c := claims(t, resp.AccessToken)
			if c["iss"] != issuer || c["tid"] != "t1" || c["cnf"] != nil || c["client_id"] != c["sub"] {
				t.Fatalf("claims %v", c)
			}
			if got := f.audit.types(); len(got) != 1 || got[0] != "authority.token.issued" {
				t.Fatalf("audit %v, want one authority.token.issued", got)
			}
		})
	}
}

// RFC 6749 §3.3: the granted scope is the requested one, sorted and
// de-duplicated, and RFC 8707 audiences are the requested ones.
func TestRFC6749_3_3_ScopeAndAudience(t *testing.T) {
	f := newFixture(t, nil)
	resp, e := f.svc.Token(context.Background(), basic("bearer", "bearer-secret", cc("scope", "write read write", "resource", "other-api")))
	if e != nil {
		t.Fatal(e)
	}
	c := claims(t, resp.AccessToken)
	if resp.Scope != "read write" || c["scope"] != "read write" {
		t.Fatalf("scope %q / %v", resp.Scope, c["scope"])
	}
	if aud, _ := c["aud"].([]any); len(aud) != 1 || aud[0] != "other-api" {
		t.Fatalf("aud %v", c["aud"])
	}
}
