package dpop

import (
	"context"
	"crypto"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// alwaysFresh is a State that never sees a replay: the fuzzer may feed the
// same input many times.
type alwaysFresh struct{}

func (alwaysFresh) Check(context.Context, StateCheck) (StateResult, error) {
	return StateResult{NonceValid: true, NextNonce: "n"}, nil
}
func (alwaysFresh) Nonce(context.Context, string) (string, error) { return "n", nil }

// FuzzVerify feeds arbitrary header values to Verify. It must never panic,
// and any proof it accepts must verify independently with go-jose under the
// jwk it carries, whose RFC 7638 thumbprint is the returned JKT.
func FuzzVerify(f *testing.F) {
	es := newSigner(f, "ES256")
	valid := es.proof(f, nil)
	parts := strings.Split(valid, ".")
	f.Add(valid)
	f.Add(es.proof(f, func(h, c map[string]any) { c["htu"] = testURL + "?q#f"; c["x"] = []any{1, "2"} }))
	f.Add(es.proof(f, func(h, c map[string]any) { h["jwk"].(map[string]any)["d"] = "AQAB" }))
	f.Add(es.proof(f, func(h, c map[string]any) { h["alg"] = "none" }))
	f.Add(es.proof(f, func(h, c map[string]any) { c["iat"] = "soon" }))
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + ".." + parts[2])
	f.Add(rfc9449Fig2TokenProof)
	f.Add(rfc9449Fig13ResourceProof)
	f.Add("")
	f.Add("...")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"","y":""}}`)) + ".e30.AAAA")

	cfg := testConfig("ES256", "RS256", "PS256", "EdDSA")
	cfg.ProofLifetime = 100 * 365 * 24 * time.Hour // accept the RFC examples too
	cfg.ReplayWindow = cfg.ProofLifetime + cfg.AllowedClockSkew
	v, err := NewVerifier(cfg, alwaysFresh{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		for _, url := range []string{testURL, "https://server.example.com/token"} {
			res, err := v.Verify(context.Background(), Request{Header: []string{header}, Method: "POST", URL: url})
			if err != nil {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("non-*Error from a stateless failure: %v", err)
				}
				continue
			}
			jws, perr := jose.ParseSigned(header, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.PS256, jose.EdDSA})
			if perr != nil {
				t.Fatalf("accepted but go-jose cannot parse: %v", perr)
			}
			jwk := jws.Signatures[0].Protected.JSONWebKey
			if jwk == nil {
				t.Fatal("accepted without jwk")
			}
			if _, verr := jws.Verify(jwk); verr != nil {
				t.Fatalf("accepted but go-jose does not verify: %v", verr)
			}
			tp, _ := jwk.Thumbprint(crypto.SHA256)
			if base64.RawURLEncoding.EncodeToString(tp) != res.Proof.JKT {
				t.Fatalf("jkt %s differs from go-jose's", res.Proof.JKT)
			}
		}
	})
}
