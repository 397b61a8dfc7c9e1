package dpop

import (
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"testing"
	"time"
)

// RFC 9449 example proofs, line continuations removed. All use the key of
// Figure 4, whose thumbprint is published in Figures 8 and 9.
const (
	rfc9449Fig2TokenProof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19" +
		".eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ" +
		".2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg"
	rfc9449Fig7RefreshProof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19" +
		".eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjY1Mjk2fQ" +
		".pAqut2IRDm_De6PR93SYmGBPXpwrAk90e8cP2hjiaG5QsGSuKDYW7_X620BxqhvYC8ynrrvZLTk41mSRroapUA"
	rfc9449Fig13ResourceProof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19" +
		".eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9" +
		".2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA"

	rfc9449JKT         = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	rfc9449AccessToken = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
	rfc9449ATH         = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
)

func TestRFC9449_ExampleProofsVerify(t *testing.T) {
	for _, tc := range []struct {
		name, proof, method, url, token, jti string
		iat                                  int64
	}{
		{"4.1 Figure 2 token request", rfc9449Fig2TokenProof, "POST", "https://server.example.com/token", "", "-BwC3ESc6acc2lTc", 1562262616},
		{"5 Figure 7 refresh request", rfc9449Fig7RefreshProof, "POST", "https://server.example.com/token", "", "-BwC3ESc6acc2lTc", 1562265296},
		{"7.1 Figure 13 resource request", rfc9449Fig13ResourceProof, "GET", "https://resource.example.org/protectedresource", rfc9449AccessToken, "e1j3V_bKic8-LAEB", 1562262618},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("ES256")
			cfg.Now = func() time.Time { return time.Unix(tc.iat+5, 0) }
			v := newTestVerifier(t, cfg, MemoryOptions{})
			r := Request{Header: []string{tc.proof}, Method: tc.method, URL: tc.url, AccessToken: tc.token, BoundJKT: rfc9449JKT}
			res, err := v.Verify(bg, r)
			if err != nil {
				t.Fatal(err)
			}
			p := res.Proof
			if p.JKT != rfc9449JKT || p.JTI != tc.jti || p.IssuedAt.Unix() != tc.iat || p.Alg != "ES256" || p.HTM != tc.method {
				t.Fatalf("proof %+v", p)
			}
			// Replayed as is: refused.
			_, err = v.Verify(bg, r)
			wantCheck(t, err, CheckReplay)
		})
	}
}

func TestRFC9449_ExampleProofsRefusedWhenStale(t *testing.T) {
	// With the real clock the 2019 examples are far too old.
	cfg := testConfig("ES256")
	cfg.Now = time.Now
	v := newTestVerifier(t, cfg, MemoryOptions{})
	_, err := v.Verify(bg, Request{Header: []string{rfc9449Fig2TokenProof}, Method: "POST", URL: "https://server.example.com/token"})
	wantCheck(t, err, CheckIATTooOld)
}

func TestRFC9449_ExampleTokenAndRefreshShareJTI(t *testing.T) {
	// Figures 2 and 7 share a jti but differ in iat: with one replay cache
	// and a clock that accepts both, the second is refused as a replay.
	clock := &fakeClock{t: time.Unix(1562262616, 0)}
	cfg := testConfig("ES256")
	cfg.Now = clock.Now
	cfg.ProofLifetime = time.Hour
	cfg.ReplayWindow = 2 * time.Hour
	v := newTestVerifier(t, cfg, MemoryOptions{Now: clock.Now})
	req := func(p string) Request {
		return Request{Header: []string{p}, Method: "POST", URL: "https://server.example.com/token"}
	}
	if _, err := v.Verify(bg, req(rfc9449Fig2TokenProof)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2680 * time.Second)
	_, err := v.Verify(bg, req(rfc9449Fig7RefreshProof))
	wantCheck(t, err, CheckReplay)
}

func TestRFC9449_7_1_ExampleATH(t *testing.T) {
	if got := AccessTokenHash(rfc9449AccessToken); got != rfc9449ATH {
		t.Fatalf("ath = %s, want %s", got, rfc9449ATH)
	}
	cfg := testConfig("ES256")
	cfg.Now = func() time.Time { return time.Unix(1562262618, 0) }
	v := newTestVerifier(t, cfg, MemoryOptions{})
	_, err := v.Verify(bg, Request{Header: []string{rfc9449Fig13ResourceProof}, Method: "GET",
		URL: "https://resource.example.org/protectedresource", AccessToken: "another-token"})
	wantCheck(t, err, CheckATH)
}

func TestRFC9449_6_1_ExampleThumbprint(t *testing.T) {
	key, kerr := parseJWK([]byte(`{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}`), mustAlg(t, "ES256"))
	if kerr != nil {
		t.Fatal(kerr)
	}
	if key.jkt != rfc9449JKT {
		t.Fatalf("jkt %s", key.jkt)
	}
	if got, _ := Thumbprint(key.key); got != rfc9449JKT {
		t.Fatalf("Thumbprint %s", got)
	}
}

func TestRFC7638_3_1_RSAThumbprint(t *testing.T) {
	const n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	const want = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	// Through the JWK parser, with optional members that must be ignored.
	key, kerr := parseJWK([]byte(`{"kty":"RSA","n":"`+n+`","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`), mustAlg(t, "RS256"))
	if kerr != nil {
		t.Fatal(kerr)
	}
	if key.jkt != want {
		t.Fatalf("jkt %s, want %s", key.jkt, want)
	}
	// Through Thumbprint on a crypto key.
	raw, _ := base64.RawURLEncoding.DecodeString(n)
	if got, _ := Thumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(raw), E: 65537}); got != want {
		t.Fatalf("Thumbprint %s", got)
	}
	// A modulus sent with a leading zero octet has the same thumbprint.
	padded := base64.RawURLEncoding.EncodeToString(append([]byte{0}, raw...))
	key, kerr = parseJWK([]byte(`{"kty":"RSA","n":"`+padded+`","e":"AAEAAQ"}`), mustAlg(t, "RS256"))
	if kerr != nil || key.jkt != want {
		t.Fatalf("padded: %v %s", kerr, key.jkt)
	}
}

func mustAlg(t *testing.T, name string) algorithm {
	a, ok := lookupAlgorithm(name)
	if !ok {
		t.Fatal(name)
	}
	return a
}
