// Command dpopdemo walks through a DPoP (RFC 9449) client_credentials flow
// against the Authority that `make run` serves (examples/authority.yaml), for
// the demo tenant demo-dpop, which requires DPoP proofs and server nonces:
//
//	go run ./examples/dpopdemo [-issuer URL] [-client ID] [-secret S] [-timeout D] [-introspect]
//
// Plain curl cannot do this: every request needs a freshly signed proof. The
// program is also a reference for client authors; it uses only the standard
// library, and each step cites the section of RFC 9449 it exercises:
//
//  1. POST /token with a proof but no nonce: the server answers
//     400 use_dpop_nonce with a DPoP-Nonce header (§8).
//  2. The same request with a new proof carrying that nonce: 200, a token of
//     token_type DPoP (§5) bound to the key by cnf.jkt, the RFC 7638
//     thumbprint of the proof's public key (§6.1).
//  3. The proof of step 2 sent again: refused as a replay,
//     401 invalid_dpop_proof (§11.1).
//  4. With -introspect: the token at /introspect shows active and cnf.jkt
//     (§6.2).
//
// It exits 0 when every step behaved as expected, 1 when one did not (the
// message names the step and what came back) and 2 on usage errors.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// options are the command-line flags.
type options struct {
	issuer     string // the Authority's issuer URL; endpoints are below it
	client     string // client_id, authenticated with client_secret_basic
	secret     string
	timeout    time.Duration // for the whole flow
	introspect bool          // also run step 4
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain parses args, runs the flow and returns the exit code.
func realMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "dpopdemo:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if err := run(ctx, o, stdout); err != nil {
		fmt.Fprintln(stderr, "dpopdemo: FAILED:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("dpopdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.issuer, "issuer", "http://127.0.0.1:8080", "issuer URL of the Authority")
	fs.StringVar(&o.client, "client", "demo-dpop", "client_id (client_secret_basic)")
	fs.StringVar(&o.secret, "secret", "demo-dpop-secret", "client secret")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline for the whole flow")
	fs.BoolVar(&o.introspect, "introspect", false, "also introspect the token and print active and cnf")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: dpopdemo [flags]\n\nRuns a DPoP (RFC 9449) client_credentials flow: nonce challenge, bound token, replay refusal.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, errors.New("bad flags (see -h)") // the flag package printed why
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	u, err := url.Parse(o.issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return o, fmt.Errorf("-issuer must be an http(s) URL without query or fragment, got %q", o.issuer)
	}
	o.issuer = strings.TrimSuffix(o.issuer, "/")
	if o.client == "" {
		return o, errors.New("-client must not be empty")
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("-timeout must be positive, got %s", o.timeout)
	}
	return o, nil
}

// run performs the flow, printing one line per step to out. It returns an
// error naming the first step whose answer was not the expected one.
func run(ctx context.Context, o options, out io.Writer) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	jkt := key.thumbprint()
	fmt.Fprintf(out, "DPoP key: ES256 (P-256), RFC 7638 thumbprint %s\n", jkt)

	tokenURL := o.issuer + "/token"
	form := url.Values{"grant_type": {"client_credentials"}}

	// Step 1 (RFC 9449 §8): a client that has no nonce yet sends its proof
	// without one; a server that requires nonces refuses it with
	// use_dpop_nonce and supplies one in the DPoP-Nonce header. (A client
	// that already knows a nonce from an earlier response skips this.)
	proof, err := key.proof("POST", tokenURL, "")
	if err != nil {
		return err
	}
	r, err := post(ctx, tokenURL, o, form, proof)
	if err != nil {
		return fmt.Errorf("step 1 (no nonce): %w", err)
	}
	nonce := r.header.Get("DPoP-Nonce")
	if r.status != http.StatusBadRequest || r.str("error") != "use_dpop_nonce" || nonce == "" {
		return fmt.Errorf("step 1 (no nonce): want 400 use_dpop_nonce with a DPoP-Nonce header, got %s", r)
	}
	fmt.Fprintf(out, "1. no nonce      -> %d %s (nonce received)\n", r.status, r.str("error"))

	// Step 2 (RFC 9449 §5, §8): retry with a NEW proof (new jti, iat)
	// carrying the nonce. The answer is a DPoP token (token_type DPoP), a
	// JWT whose cnf.jkt is the thumbprint of the proof's key (§6.1).
	proof, err = key.proof("POST", tokenURL, nonce)
	if err != nil {
		return err
	}
	r, err = post(ctx, tokenURL, o, form, proof)
	if err != nil {
		return fmt.Errorf("step 2 (with nonce): %w", err)
	}
	tok := r.str("access_token")
	if r.status != http.StatusOK || r.str("token_type") != "DPoP" || tok == "" {
		return fmt.Errorf("step 2 (with nonce): want 200 with token_type DPoP, got %s", r)
	}
	// The client does not need to read its token (it is the resource
	// server's business); the demo decodes the payload, unverified, only to
	// show the binding.
	got, err := tokenJKT(tok)
	if err != nil {
		return fmt.Errorf("step 2 (with nonce): access token: %w", err)
	}
	if got != jkt {
		return fmt.Errorf("step 2 (with nonce): token cnf.jkt = %q, want the key's thumbprint %q", got, jkt)
	}
	fmt.Fprintf(out, "2. with nonce    -> %d %s token, cnf.jkt=%s (the key's thumbprint)\n", r.status, r.str("token_type"), got)
	// Every response carries the nonce to use next (§8.2); a real client
	// keeps the latest one. Step 3 deliberately sends the old proof.

	// Step 3 (RFC 9449 §11.1): a proof is single-use. The server
	// remembers the jti of every proof it accepted for as long as the proof
	// could be valid, so resending it, as an attacker who captured it
	// would, is refused.
	r, err = post(ctx, tokenURL, o, form, proof)
	if err != nil {
		return fmt.Errorf("step 3 (same proof): %w", err)
	}
	if r.status != http.StatusUnauthorized || r.str("error") != "invalid_dpop_proof" {
		return fmt.Errorf("step 3 (same proof): want 401 invalid_dpop_proof (a replay), got %s", r)
	}
	fmt.Fprintf(out, "3. same proof    -> %d %s (replay refused): %s\n", r.status, r.str("error"), strings.TrimSpace(r.raw))

	if !o.introspect {
		return nil
	}
	// Step 4 (RFC 7662, RFC 9449 §6.2): introspection needs no proof, only
	// the client's authentication, and reports the binding as cnf.jkt.
	r, err = post(ctx, o.issuer+"/introspect", o, url.Values{"token": {tok}}, "")
	if err != nil {
		return fmt.Errorf("step 4 (introspect): %w", err)
	}
	var in struct {
		Active bool `json:"active"`
		Cnf    struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	_ = json.Unmarshal([]byte(r.raw), &in)
	if r.status != http.StatusOK || !in.Active || in.Cnf.JKT != jkt {
		return fmt.Errorf("step 4 (introspect): want 200 active with cnf.jkt %s, got %s", jkt, r)
	}
	fmt.Fprintf(out, "4. introspect    -> %d active=%t cnf.jkt=%s\n", r.status, in.Active, in.Cnf.JKT)
	return nil
}

// dpopKey is the client's DPoP key pair. One key serves every proof of a
// client (and every token bound to it); only the proofs are per request.
type dpopKey struct {
	priv *ecdsa.PrivateKey
	x, y string // public coordinates, base64url (RFC 7518 §6.2.1)
}

var b64 = base64.RawURLEncoding // base64url without padding, as JOSE uses it

func newKey() (*dpopKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// The uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
	pt, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, err
	}
	return &dpopKey{priv: priv, x: b64.EncodeToString(pt[1:33]), y: b64.EncodeToString(pt[33:])}, nil
}

// jwk is the public key as the proof's "jwk" header carries it (never the
// private part "d": the server refuses such a proof).
func (k *dpopKey) jwk() map[string]string {
	return map[string]string{"kty": "EC", "crv": "P-256", "x": k.x, "y": k.y}
}

// thumbprint is the RFC 7638 JWK thumbprint: SHA-256 over the required
// members in lexicographic order, without whitespace, base64url. It is the
// token's cnf.jkt (RFC 9449 §6.1).
func (k *dpopKey) thumbprint() string {
	s := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + k.x + `","y":"` + k.y + `"}`))
	return b64.EncodeToString(s[:])
}

// proof builds a DPoP proof (RFC 9449 §4.2) for one request: a JWS with
// header typ dpop+jwt, alg ES256 and the public jwk, and claims jti (unique
// per proof), htm and htu (the request's method and URL without query and
// fragment), iat (now) and, once the server has supplied one, nonce.
func (k *dpopKey) proof(htm, htu, nonce string) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	hdr, err := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk()})
	if err != nil {
		return "", err
	}
	claims := map[string]any{"jti": b64.EncodeToString(jti[:]), "htm": htm, "htu": htu, "iat": time.Now().Unix()}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	pl, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	// ES256 (RFC 7518 §3.4): ECDSA P-256 over SHA-256 of the signing input,
	// the signature being r || s, each left-padded to 32 bytes (not the
	// ASN.1 DER that ecdsa.SignASN1 would produce).
	in := b64.EncodeToString(hdr) + "." + b64.EncodeToString(pl)
	d := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, d[:])
	if err != nil {
		return "", err
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + b64.EncodeToString(sig[:]), nil
}

// tokenJKT returns cnf.jkt from a JWT access token's payload, without
// verifying the signature (a resource server would verify it with /jwks).
func tokenJKT(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWS compact serialization")
	}
	raw, err := b64.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var c struct {
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", err
	}
	if c.Cnf.JKT == "" {
		return "", errors.New("no cnf.jkt claim")
	}
	return c.Cnf.JKT, nil
}

// response is what came back from one request.
type response struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func (r response) str(k string) string { s, _ := r.body[k].(string); return s }

// String is the status and the body, shortened (it may hold a token).
func (r response) String() string {
	b := strings.TrimSpace(r.raw)
	if len(b) > 200 {
		b = b[:200] + "..."
	}
	return fmt.Sprintf("%d %s", r.status, b)
}

// post sends form to u with the client's Basic authentication
// (client_secret_basic, RFC 6749 §2.3.1) and, unless proof is empty, the
// proof in the DPoP header (RFC 9449 §4.1; exactly one such header).
func post(ctx context.Context, u string, o options, form url.Values, proof string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(o.client), url.QueryEscape(o.secret)) // RFC 6749 §2.3.1 encodes both
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return response{}, err
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r, nil
}
