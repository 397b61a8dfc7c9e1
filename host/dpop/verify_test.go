package dpop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRFC9449_4_3_1_ExactlyOneHeader(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	p := s.proof(t, nil)
	for _, tc := range []struct {
		name   string
		header []string
		check  string
	}{
		{"none", nil, CheckMissing},
		{"empty", []string{""}, CheckMissing},
		{"two", []string{p, p}, CheckHeaderCount},
		{"two different", []string{p, s.proof(t, nil)}, CheckHeaderCount},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tokenRequest("")
			r.Header = tc.header
			_, err := v.Verify(bg, r)
			wantCheck(t, err, tc.check)
		})
	}
}

func TestRFC9449_4_3_SizeCap(t *testing.T) {
	s := newSigner(t, "ES256")
	cfg := testConfig()
	cfg.MaxProofBytes = 600
	v := newTestVerifier(t, cfg, MemoryOptions{})
	big := s.proof(t, func(h, c map[string]any) { c["pad"] = strings.Repeat("x", 600) })
	_, err := v.Verify(bg, tokenRequest(big))
	wantCheck(t, err, CheckSize)
}

func TestRFC9449_4_3_2_WellFormedJWT(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	p := s.proof(t, nil)
	parts := strings.Split(p, ".")
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name, proof, check string
	}{
		{"two parts", parts[0] + "." + parts[1], CheckMalformed},
		{"four parts", p + ".x", CheckMalformed},
		{"empty payload", parts[0] + ".." + parts[2], CheckMalformed},
		{"empty signature", parts[0] + "." + parts[1] + ".", CheckMalformed},
		{"empty header", "." + parts[1] + "." + parts[2], CheckMalformed},
		{"padding", parts[0] + "=." + parts[1] + "." + parts[2], CheckMalformed},
		{"standard base64", parts[0] + "." + parts[1] + "." + parts[2][:4] + "+" + parts[2][5:], CheckMalformed},
		{"non-canonical trailing bits", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + "B", CheckMalformed},
		{"header not json", enc("nope") + "." + parts[1] + "." + parts[2], CheckHeader},
		{"header array", enc("[1]") + "." + parts[1] + "." + parts[2], CheckHeader},
		{"header null", enc("null") + "." + parts[1] + "." + parts[2], CheckHeader},
		{"JWE-like", "a.b.c.d.e", CheckMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(bg, tokenRequest(tc.proof))
			wantCheck(t, err, tc.check)
		})
	}
}

func TestRFC9449_4_3_3_RequiredClaims(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	for _, tc := range []struct {
		name  string
		edit  func(c map[string]any)
		check string
	}{
		{"no jti", func(c map[string]any) { delete(c, "jti") }, CheckJTI},
		{"empty jti", func(c map[string]any) { c["jti"] = "" }, CheckJTI},
		{"numeric jti", func(c map[string]any) { c["jti"] = 12345 }, CheckJTI},
		{"null jti", func(c map[string]any) { c["jti"] = nil }, CheckJTI},
		{"jti too long", func(c map[string]any) { c["jti"] = strings.Repeat("a", 257) }, CheckJTI},
		{"upper-case JTI member", func(c map[string]any) { c["JTI"] = c["jti"]; delete(c, "jti") }, CheckJTI},
		{"no htm", func(c map[string]any) { delete(c, "htm") }, CheckHTM},
		{"no htu", func(c map[string]any) { delete(c, "htu") }, CheckHTU},
		{"no iat", func(c map[string]any) { delete(c, "iat") }, CheckIAT},
		{"string iat", func(c map[string]any) { c["iat"] = "1700000000" }, CheckIAT},
		{"null iat", func(c map[string]any) { c["iat"] = nil }, CheckIAT},
		{"huge iat", func(c map[string]any) { c["iat"] = 1e300 }, CheckIAT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := s.proof(t, func(h, c map[string]any) { tc.edit(c) })
			_, err := v.Verify(bg, tokenRequest(p))
			e := wantCheck(t, err, tc.check)
			if e.Proof == nil || e.Proof.JKT == "" {
				t.Fatal("errors after signature verification must carry the proof")
			}
		})
	}
	t.Run("payload not an object", func(t *testing.T) {
		h := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWK(s.key.Public())}
		hj := mustJSON(t, h)
		input := b64u(hj) + "." + b64u([]byte(`"str"`))
		p := input + "." + b64u(signRaw(t, "ES256", s.key, []byte(input)))
		_, err := v.Verify(bg, tokenRequest(p))
		wantCheck(t, err, CheckClaims)
	})
}

func TestRFC9449_4_3_TypMustBeDPoPJWT(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	for _, typ := range []any{nil, "", "JWT", "DPOP+JWT", "application/dpop+jwt", "dpop+jwt ", 1} {
		p := s.proof(t, func(h, c map[string]any) {
			if typ == nil {
				delete(h, "typ")
			} else {
				h["typ"] = typ
			}
		})
		_, err := v.Verify(bg, tokenRequest(p))
		wantCheck(t, err, CheckTyp)
	}
	// A member that differs only in case is not typ (exact member names).
	p := s.proof(t, func(h, c map[string]any) { delete(h, "typ"); h["TYP"] = "dpop+jwt" })
	_, err := v.Verify(bg, tokenRequest(p))
	wantCheck(t, err, CheckTyp)
}

func TestRFC9449_4_3_5_AlgMustBeAsymmetricAndAllowed(t *testing.T) {
	es := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig("ES256"), MemoryOptions{})
	for _, tc := range []struct {
		name string
		alg  any
	}{
		{"none", "none"},
		{"HS256", "HS256"},
		{"HS512", "HS512"},
		{"missing", nil},
		{"lower-case", "es256"},
		{"not allowed here", "ES384"},
		{"unknown", "ES256K"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := es.proof(t, func(h, c map[string]any) {
				if tc.alg == nil {
					delete(h, "alg")
				} else {
					h["alg"] = tc.alg
				}
			})
			_, err := v.Verify(bg, tokenRequest(p))
			wantCheck(t, err, CheckAlg)
		})
	}
	t.Run("none with empty signature", func(t *testing.T) {
		h := mustJSON(t, map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": publicJWK(es.key.Public())})
		c := mustJSON(t, map[string]any{"jti": "x", "htm": "POST", "htu": testURL, "iat": testNow.Unix()})
		_, err := v.Verify(bg, tokenRequest(b64u(h)+"."+b64u(c)+"."))
		wantCheck(t, err, CheckMalformed)
	})
}

func TestNewVerifierRefusesUnsafeConfig(t *testing.T) {
	st := NewMemoryState(MemoryOptions{})
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no algs", func(c *Config) { c.AllowedAlgorithms = nil }, "AllowedAlgorithms"},
		{"none", func(c *Config) { c.AllowedAlgorithms = []string{"none"} }, "AllowedAlgorithms"},
		{"HS256", func(c *Config) { c.AllowedAlgorithms = []string{"ES256", "HS256"} }, "AllowedAlgorithms"},
		{"lifetime", func(c *Config) { c.ProofLifetime = 0 }, "ProofLifetime"},
		{"skew", func(c *Config) { c.AllowedClockSkew = -1 }, "AllowedClockSkew"},
		{"window", func(c *Config) { c.ReplayWindow = 60 * time.Second }, "ReplayWindow"},
		{"size", func(c *Config) { c.MaxProofBytes = 0 }, "MaxProofBytes"},
		{"clock", func(c *Config) { c.Now = nil }, "Now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.edit(&cfg)
			_, err := NewVerifier(cfg, st)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error naming %s, got %v", tc.want, err)
			}
		})
	}
	if _, err := NewVerifier(testConfig(), nil); err == nil {
		t.Fatal("nil state accepted")
	}
}

func TestRFC9449_4_3_AcceptsAsymmetricAlgorithms(t *testing.T) {
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	for _, alg := range []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA", "Ed25519"} {
		t.Run(alg, func(t *testing.T) {
			s := newSigner(t, alg)
			res, err := v.Verify(bg, tokenRequest(s.proof(t, nil)))
			wantCheck(t, err, "")
			want, _ := Thumbprint(s.key.Public())
			if res.Proof.JKT != want || res.Proof.Alg != alg {
				t.Fatalf("got jkt %s alg %s, want %s %s", res.Proof.JKT, res.Proof.Alg, want, alg)
			}
		})
	}
}

func TestRFC9449_4_3_Ed25519UnderBothAlgNames(t *testing.T) {
	s := newSigner(t, "EdDSA")
	for _, tc := range []struct {
		allowed []string
		alg     string
		check   string
	}{
		{[]string{"EdDSA"}, "EdDSA", ""},
		{[]string{"Ed25519"}, "Ed25519", ""},
		{[]string{"EdDSA"}, "Ed25519", CheckAlg},
		{[]string{"Ed25519"}, "EdDSA", CheckAlg},
	} {
		v := newTestVerifier(t, testConfig(tc.allowed...), MemoryOptions{})
		p := signer{tc.alg, s.key}.proof(t, nil)
		_, err := v.Verify(bg, tokenRequest(p))
		wantCheck(t, err, tc.check)
	}
	// EdDSA with an Ed448 key is not supported.
	v := newTestVerifier(t, testConfig("EdDSA"), MemoryOptions{})
	p := s.proof(t, func(h, c map[string]any) { h["jwk"].(map[string]any)["crv"] = "Ed448" })
	_, err := v.Verify(bg, tokenRequest(p))
	wantCheck(t, err, CheckJWKAlgMismatch)
}

func TestRFC9449_4_3_RejectsRSA1024(t *testing.T) {
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	for _, alg := range []string{"RS256", "PS256"} {
		s := signer{alg, rsaKey(t, 1024)}
		_, err := v.Verify(bg, tokenRequest(s.proof(t, nil)))
		wantCheck(t, err, CheckJWKAlgMismatch)
	}
}

func TestRFC9449_4_3_6_SignatureMustVerify(t *testing.T) {
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	for _, alg := range []string{"ES256", "RS256", "PS256", "EdDSA"} {
		s := newSigner(t, alg)
		other := newSigner(t, alg)
		if alg == "RS256" || alg == "PS256" {
			other = signer{alg, rsaKey(t, 3072)}
		}
		t.Run(alg, func(t *testing.T) {
			p := s.proof(t, nil)
			parts := strings.Split(p, ".")
			// Same claims, key of s in the header, signature of other.
			q := other.proof(t, func(h, c map[string]any) {})
			qparts := strings.Split(q, ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sig[len(sig)/2] ^= 1
			cases := map[string]string{
				"flipped bit":      parts[0] + "." + parts[1] + "." + b64u(sig),
				"other key's sig":  parts[0] + "." + parts[1] + "." + qparts[2],
				"truncated":        parts[0] + "." + parts[1] + "." + b64u(sig[:len(sig)-1]),
				"swapped payload":  parts[0] + "." + qparts[1] + "." + parts[2],
				"key swapped in":   qparts[0] + "." + parts[1] + "." + parts[2],
				"signature of nil": parts[0] + "." + parts[1] + "." + b64u(make([]byte, len(sig))),
			}
			for name, proof := range cases {
				_, err := v.Verify(bg, tokenRequest(proof))
				if e, ok := err.(*Error); !ok || e.Check != CheckSignature {
					t.Errorf("%s: want signature refusal, got %v", name, err)
				}
			}
		})
	}
}

func TestRFC9449_4_3_RejectsPrivateJWK(t *testing.T) {
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	es := newSigner(t, "ES256")
	rs := newSigner(t, "RS256")
	for _, member := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		for _, s := range []signer{es, rs} {
			p := s.proof(t, func(h, c map[string]any) { h["jwk"].(map[string]any)[member] = "AQAB" })
			_, err := v.Verify(bg, tokenRequest(p))
			wantCheck(t, err, CheckJWKPrivate)
		}
	}
	// A real private EC JWK (d is the scalar).
	p := es.proof(t, func(h, c map[string]any) {
		d, _ := es.key.(*ecdsa.PrivateKey).Bytes()
		h["jwk"].(map[string]any)["d"] = b64u(d)
	})
	_, err := v.Verify(bg, tokenRequest(p))
	wantCheck(t, err, CheckJWKPrivate)
	// A symmetric key.
	p = es.proof(t, func(h, c map[string]any) { h["jwk"] = map[string]any{"kty": "oct", "kk": "x"} })
	_, err = v.Verify(bg, tokenRequest(p))
	wantCheck(t, err, CheckJWKPrivate)
}

func TestRFC9449_4_3_JWKMustBePresentAndFitAlg(t *testing.T) {
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	es := newSigner(t, "ES256")
	es384 := newSigner(t, "ES384")
	rs := newSigner(t, "RS256")
	ed := newSigner(t, "EdDSA")
	for _, tc := range []struct {
		name  string
		edit  func(h map[string]any)
		check string
	}{
		{"no jwk", func(h map[string]any) { delete(h, "jwk") }, CheckJWKMissing},
		{"jwk string", func(h map[string]any) { h["jwk"] = "x" }, CheckJWKInvalid},
		{"jwk null", func(h map[string]any) { h["jwk"] = nil }, CheckJWKInvalid},
		{"no kty", func(h map[string]any) { delete(h["jwk"].(map[string]any), "kty") }, CheckJWKInvalid},
		{"P-384 key under ES256", func(h map[string]any) { h["jwk"] = publicJWK(es384.key.Public()) }, CheckJWKAlgMismatch},
		{"RSA key under ES256", func(h map[string]any) { h["jwk"] = publicJWK(rs.key.Public()) }, CheckJWKAlgMismatch},
		{"OKP key under ES256", func(h map[string]any) { h["jwk"] = publicJWK(ed.key.Public()) }, CheckJWKAlgMismatch},
		{"short x", func(h map[string]any) {
			j := h["jwk"].(map[string]any)
			x, _ := base64.RawURLEncoding.DecodeString(j["x"].(string))
			j["x"] = b64u(x[1:])
		}, CheckJWKInvalid},
		{"point off curve", func(h map[string]any) {
			j := h["jwk"].(map[string]any)
			y, _ := base64.RawURLEncoding.DecodeString(j["y"].(string))
			y[31] ^= 1
			j["y"] = b64u(y)
		}, CheckJWKInvalid},
		{"crit", func(h map[string]any) { h["crit"] = []string{"exp"} }, CheckCrit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := es.proof(t, func(h, c map[string]any) { tc.edit(h) })
			_, err := v.Verify(bg, tokenRequest(p))
			wantCheck(t, err, tc.check)
		})
	}
	t.Run("RSA even exponent", func(t *testing.T) {
		p := rs.proof(t, func(h, c map[string]any) { h["jwk"].(map[string]any)["e"] = "AQAA" })
		_, err := v.Verify(bg, tokenRequest(p))
		wantCheck(t, err, CheckJWKInvalid)
	})
}

func TestRFC9449_4_3_8_HTMMustMatch(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	for _, htm := range []string{"GET", "post", "PUT", " POST"} {
		p := s.proof(t, func(h, c map[string]any) { c["htm"] = htm })
		_, err := v.Verify(bg, tokenRequest(p))
		wantCheck(t, err, CheckHTM)
	}
}

func TestRFC9449_4_3_9_HTUMustMatch(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	for _, htu := range []string{
		"https://other.example.com/token",
		"https://as.example.com/token2",
		"https://as.example.com/Token",
		"http://as.example.com/token",
		"https://as.example.com:8443/token",
		"https://as.example.com/token/",
		"https://user@as.example.com/token",
		"/token",
		"as.example.com/token",
		"ftp://as.example.com/token",
		"",
		"https://as.example.com/%zz",
	} {
		p := s.proof(t, func(h, c map[string]any) { c["htu"] = htu })
		_, err := v.Verify(bg, tokenRequest(p))
		wantCheck(t, err, CheckHTU)
	}
}

func TestRFC9449_HTUIgnoresQueryAndFragment(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	for _, htu := range []string{
		testURL + "?a=b",
		testURL + "#frag",
		testURL + "?a=b#frag",
		testURL + "?",
	} {
		p := s.proof(t, func(h, c map[string]any) { c["htu"] = htu })
		_, err := v.Verify(bg, tokenRequest(p))
		wantCheck(t, err, "")
	}
}

func TestRFC3986_6_2_HTUNormalization(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://Example.COM:443/token", "https://example.com/token"},
		{"HTTPS://example.com/token", "https://example.com/token"},
		{"http://example.com:80/a", "http://example.com/a"},
		{"http://example.com:443/a", "http://example.com:443/a"},
		{"https://example.com:/a", "https://example.com/a"},
		{"https://example.com:0443/a", "https://example.com/a"},
		{"https://example.com", "https://example.com/"},
		{"https://example.com?x", "https://example.com/"},
		{"https://example.com/a/./b/../c", "https://example.com/a/c"},
		{"https://example.com/%7Euser/%2f%2F", "https://example.com/~user/%2F%2F"},
		{"https://example.com/%41", "https://example.com/A"},
		{"https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"},
		{"https://example.com/p?q#f", "https://example.com/p"},
	} {
		got, ok := normalizeHTU(tc.in)
		if !ok || got != tc.want {
			t.Errorf("normalizeHTU(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"", "/x", "mailto:a@b", "https://", "https://u:p@h/x", "https://h:99999/", "https://h/%g0", "ws://h/"} {
		if got, ok := normalizeHTU(bad); ok {
			t.Errorf("normalizeHTU(%q) = %q, want refusal", bad, got)
		}
	}
}

func TestRFC9449_4_3_11_IATWindow(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	for _, tc := range []struct {
		offset time.Duration
		check  string
	}{
		{0, ""},
		{-10 * time.Second, ""},
		{10 * time.Second, ""},
		{-60 * time.Second, ""},
		{30 * time.Second, ""},
		{-61 * time.Second, CheckIATTooOld},
		{31 * time.Second, CheckIATInFuture},
		{-time.Hour, CheckIATTooOld},
		{time.Hour, CheckIATInFuture},
	} {
		p := s.proof(t, func(h, c map[string]any) { c["iat"] = testNow.Add(tc.offset).Unix() })
		_, err := v.Verify(bg, tokenRequest(p))
		wantCheck(t, err, tc.check)
	}
	// Fractional NumericDate.
	p := s.proof(t, func(h, c map[string]any) { c["iat"] = float64(testNow.Unix()) + 0.5 })
	_, err := v.Verify(bg, tokenRequest(p))
	wantCheck(t, err, "")
}

func TestRFC9449_4_3_12_ATHMustMatchAccessToken(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	const token = "some.access.token"
	for _, tc := range []struct {
		ath   any
		check string
	}{
		{AccessTokenHash(token), ""},
		{nil, CheckATH},
		{AccessTokenHash("other"), CheckATH},
		{AccessTokenHash(token) + "=", CheckATH},
		{42, CheckATH},
	} {
		p := s.proof(t, func(h, c map[string]any) {
			if tc.ath != nil {
				c["ath"] = tc.ath
			}
		})
		r := tokenRequest(p)
		r.AccessToken = token
		_, err := v.Verify(bg, r)
		wantCheck(t, err, tc.check)
	}
}

func TestRFC9449_4_3_12_KeyMustMatchTokenBinding(t *testing.T) {
	s := newSigner(t, "ES256")
	other := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	jkt, _ := Thumbprint(s.key.Public())
	otherJKT, _ := Thumbprint(other.key.Public())
	for _, tc := range []struct{ bound, check string }{
		{jkt, ""},
		{otherJKT, CheckJKTMismatch},
		{jkt[:42], CheckJKTMismatch},
	} {
		r := tokenRequest(s.proof(t, nil))
		r.BoundJKT = tc.bound
		_, err := v.Verify(bg, r)
		wantCheck(t, err, tc.check)
	}
}

func TestRFC9449_11_1_ReplayRejected(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	p := s.proof(t, nil)
	if _, err := v.Verify(bg, tokenRequest(p)); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(bg, tokenRequest(p))
	e := wantCheck(t, err, CheckReplay)
	if !e.Replay || e.Proof == nil || e.Proof.JTI == "" {
		t.Fatalf("replay error must have Replay and the proof: %+v", e)
	}
	// Same jti, same key, htu written differently: still a replay.
	jti := freshJTI()
	p1 := s.proof(t, func(h, c map[string]any) { c["jti"] = jti })
	p2 := s.proof(t, func(h, c map[string]any) { c["jti"] = jti; c["htu"] = "https://AS.example.com:443/token?x" })
	if _, err := v.Verify(bg, tokenRequest(p1)); err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(bg, tokenRequest(p2))
	wantCheck(t, err, CheckReplay)
	// Same jti from another key is another proof.
	other := newSigner(t, "ES256")
	_, err = v.Verify(bg, tokenRequest(other.proof(t, func(h, c map[string]any) { c["jti"] = jti })))
	wantCheck(t, err, "")
}

func TestRFC9449_11_1_ReplayWindowCoversProofLifetime(t *testing.T) {
	clock := &fakeClock{t: testNow}
	cfg := testConfig()
	cfg.Now = clock.Now
	v := newTestVerifier(t, cfg, MemoryOptions{Now: clock.Now})
	s := newSigner(t, "ES256")
	// iat at the far future edge: acceptable for lifetime+skew = 90 s.
	p := s.proof(t, func(h, c map[string]any) { c["iat"] = testNow.Add(30 * time.Second).Unix() })
	if _, err := v.Verify(bg, tokenRequest(p)); err != nil {
		t.Fatal(err)
	}
	for _, step := range []time.Duration{30 * time.Second, 30 * time.Second, 29 * time.Second} {
		clock.Advance(step)
		_, err := v.Verify(bg, tokenRequest(p))
		if e, ok := err.(*Error); !ok || (e.Check != CheckReplay && e.Check != CheckIATTooOld) {
			t.Fatalf("after %v: want replay or too old, got %v", clock.Now().Sub(testNow), err)
		}
	}
}

func TestRFC9449_8_NonceRequired(t *testing.T) {
	for _, singleUse := range []bool{false, true} {
		name := map[bool]string{false: "rotating", true: "single-use"}[singleUse]
		t.Run(name, func(t *testing.T) {
			s := newSigner(t, "ES256")
			v := newTestVerifier(t, testConfig(), MemoryOptions{Nonce: NonceOptions{SingleUse: singleUse}})
			req := func(p string) Request { r := tokenRequest(p); r.NonceRequired = true; return r }

			_, err := v.Verify(bg, req(s.proof(t, nil)))
			e := wantCheck(t, err, CheckNonceMissing)
			if e.NextNonce == "" {
				t.Fatal("use_dpop_nonce without NextNonce")
			}
			res, err := v.Verify(bg, req(s.proof(t, func(h, c map[string]any) { c["nonce"] = e.NextNonce })))
			wantCheck(t, err, "")
			if res.NextNonce == "" || res.Proof.Nonce != e.NextNonce {
				t.Fatalf("result %+v", res)
			}
			for _, bad := range []string{"bogus", "", strings.Repeat("A", 22)} {
				_, err = v.Verify(bg, req(s.proof(t, func(h, c map[string]any) { c["nonce"] = bad })))
				wantCheck(t, err, map[bool]string{true: CheckNonceMissing, false: CheckNonceInvalid}[bad == ""])
			}
			// Another scope's nonce is not valid here.
			otherScope, _ := v.Nonce(bg, "tenant-b/client-9")
			_, err = v.Verify(bg, req(s.proof(t, func(h, c map[string]any) { c["nonce"] = otherScope })))
			wantCheck(t, err, CheckNonceInvalid)
			// A fresh nonce from Nonce() is accepted (no endless challenge loop).
			n, err := v.Nonce(bg, testScope)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(bg, req(s.proof(t, func(h, c map[string]any) { c["nonce"] = n })))
			wantCheck(t, err, "")
			if singleUse {
				_, err = v.Verify(bg, req(s.proof(t, func(h, c map[string]any) { c["nonce"] = n })))
				wantCheck(t, err, CheckNonceInvalid)
			}
		})
	}
}

func TestRFC9449_ReplayCheckedBeforeNonce(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{Nonce: NonceOptions{SingleUse: true}})
	n, _ := v.Nonce(bg, testScope)
	p := s.proof(t, func(h, c map[string]any) { c["nonce"] = n })
	r := tokenRequest(p)
	r.NonceRequired = true
	if _, err := v.Verify(bg, r); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(bg, r)
	e := wantCheck(t, err, CheckReplay)
	if e.NextNonce == "" {
		t.Fatal("replay with nonces on should carry NextNonce")
	}
	// A replayed proof without nonce is still a replay, not a nonce error.
	p = s.proof(t, nil)
	r = tokenRequest(p)
	r.NonceRequired = true
	_, _ = v.Verify(bg, r)
	_, err = v.Verify(bg, r)
	wantCheck(t, err, CheckReplay)
}

func TestFAPI2_AcceptedVariants(t *testing.T) {
	s := newSigner(t, "ES256")
	v := newTestVerifier(t, testConfig(), MemoryOptions{})
	cases := map[string]func(h, c map[string]any){
		"htu with query and fragment": func(h, c map[string]any) { c["htu"] = testURL + "?foo=bar#baz" },
		"extra claims":                func(h, c map[string]any) { c["extra"] = map[string]any{"a": 1}; c["exp"] = testNow.Unix() + 60 },
		"extra header":                func(h, c map[string]any) { h["kid"] = "k1"; h["x-custom"] = true },
		"iat 10s past":                func(h, c map[string]any) { c["iat"] = testNow.Add(-10 * time.Second).Unix() },
		"iat 10s future":              func(h, c map[string]any) { c["iat"] = testNow.Add(10 * time.Second).Unix() },
		"upper-case host":             func(h, c map[string]any) { c["htu"] = "https://AS.EXAMPLE.COM/token" },
		"explicit default port":       func(h, c map[string]any) { c["htu"] = "https://as.example.com:443/token" },
		"upper-case scheme":           func(h, c map[string]any) { c["htu"] = "HTTPS://as.example.com/token" },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(bg, tokenRequest(s.proof(t, edit)))
			wantCheck(t, err, "")
		})
	}
	// The configured URL may itself be written unnormalized.
	r := tokenRequest(s.proof(t, nil))
	r.URL = "https://As.Example.com:443/token"
	_, err := v.Verify(bg, r)
	wantCheck(t, err, "")
}

// failingState simulates unreachable shared state.
type failingState struct{}

var errDown = errors.New("connection refused")

func (failingState) Check(ctx contextT, c StateCheck) (StateResult, error) {
	return StateResult{}, errDown
}
func (failingState) Nonce(ctx contextT, scope string) (string, error) { return "", errDown }

func TestInfrastructureErrorsAreNotProofErrors(t *testing.T) {
	v, err := NewVerifier(testConfig(), failingState{})
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(t, "ES256")
	_, err = v.Verify(bg, tokenRequest(s.proof(t, nil)))
	var e *Error
	if errors.As(err, &e) || !errors.Is(err, errDown) {
		t.Fatalf("want wrapped infrastructure error, got %v", err)
	}
	if _, err := v.Nonce(bg, testScope); !errors.Is(err, errDown) {
		t.Fatalf("Nonce: %v", err)
	}
}

func TestThumbprintKeepsECLeadingZeros(t *testing.T) {
	// Find a P-256 key whose x coordinate starts with a zero octet.
	for i := 0; i < 5000; i++ {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		raw, _ := k.PublicKey.Bytes()
		if raw[1] != 0 {
			continue
		}
		jwk := publicJWK(&k.PublicKey)
		want := hashB64([]byte(`{"crv":"P-256","kty":"EC","x":"` + jwk["x"].(string) + `","y":"` + jwk["y"].(string) + `"}`))
		if len(jwk["x"].(string)) != 43 {
			t.Fatal("fixture lost the leading zero")
		}
		got, _ := Thumbprint(&k.PublicKey)
		if got != want {
			t.Fatalf("got %s want %s", got, want)
		}
		// And the verifier computes the same from the JWK.
		v := newTestVerifier(t, testConfig(), MemoryOptions{})
		res, err := v.Verify(bg, tokenRequest(signer{"ES256", k}.proof(t, nil)))
		if err != nil || res.Proof.JKT != want {
			t.Fatalf("verify: %v %v", err, res.Proof)
		}
		return
	}
	t.Fatal("no key with a leading zero in 5000 tries (probability 3e-9): the generator is broken")
}
