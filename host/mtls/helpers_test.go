package mtls_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"stellaops.org/authority/host/mtls"
	"stellaops.org/authority/host/mtls/mtlstest"
)

// tlsHarness is an HTTPS server configured with mtls.ServerTLSConfig whose
// handler runs an Extractor on each request and hands back the result, so
// tests see exactly what production handlers get in r.TLS.
type tlsHarness struct {
	srv      *httptest.Server
	serverCA *mtlstest.CA
	got      chan extracted
}

type extracted struct {
	p   mtls.Presented
	err error
}

func newTLSHarness(t *testing.T, ext *mtls.Extractor) *tlsHarness {
	t.Helper()
	h := &tlsHarness{serverCA: mtlstest.NewCA(t, "harness server root"), got: make(chan extracted, 1)}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := ext.FromRequest(r)
		h.got <- extracted{p, err}
		w.WriteHeader(http.StatusNoContent)
	}))
	h.srv.TLS = mtls.ServerTLSConfig(h.serverCA.Server(t).TLS)
	h.srv.StartTLS()
	t.Cleanup(h.srv.Close)
	return h
}

// clientConfig returns a client TLS config trusting the harness server and
// presenting client (nil: no certificate).
func (h *tlsHarness) clientConfig(client *mtlstest.Cert) *tls.Config {
	cfg := &tls.Config{RootCAs: h.serverCA.Pool()}
	if client != nil {
		c := client.TLS
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	return cfg
}

// present performs one HTTPS request with client's certificate (nil: none)
// and extra headers, and returns what the server extracted.
func (h *tlsHarness) present(t *testing.T, client *mtlstest.Cert, header http.Header) (mtls.Presented, error) {
	t.Helper()
	return h.presentWith(t, h.clientConfig(client), header)
}

func (h *tlsHarness) presentWith(t *testing.T, cfg *tls.Config, header http.Header) (mtls.Presented, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, h.srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("HTTPS request: %v", err)
	}
	resp.Body.Close()
	select {
	case r := <-h.got:
		return r.p, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not run")
		return mtls.Presented{}, nil
	}
}

// reasonOf returns the AuthError reason of err, "" for nil, and fails the
// test for any other error type.
func reasonOf(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var ae *mtls.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not *mtls.AuthError", err, err)
	}
	return ae.Reason
}

// withoutChain returns a copy of c whose TLS certificate carries the leaf
// only, as a misconfigured client would send it.
func withoutChain(c *mtlstest.Cert) *mtlstest.Cert {
	cp := *c
	cp.TLS.Certificate = cp.TLS.Certificate[:1]
	return &cp
}
