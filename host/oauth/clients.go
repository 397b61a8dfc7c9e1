package oauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/mtls"
)

// Client is a registered client, immutable after NewRegistry.
type Client struct {
	ID         string
	Tenant     string
	AuthMethod string
	Grants     []string
	Scopes     []string
	Audiences  []string
	Policy     config.SenderPolicy
	// TLS is the certificate identity of tls_client_auth clients.
	TLS config.ClientTLS
	// secretDigest is SHA-256(secret); zero for certificate clients.
	secretDigest [32]byte
	hasSecret    bool
}

// SecretMethod reports whether authMethod authenticates with a client
// secret (client_secret_basic or client_secret_post).
func SecretMethod(authMethod string) bool {
	return authMethod == MethodSecretBasic || authMethod == MethodSecretPost
}

// isCertificateMethod reports whether authMethod authenticates with a
// client certificate (RFC 8705 §2).
func isCertificateMethod(authMethod string) bool {
	return authMethod == string(mtls.MethodTLSClientAuth) || authMethod == string(mtls.MethodSelfSignedTLSClientAuth)
}

// Client authentication methods (RFC 7591 §2 token_endpoint_auth_method).
const (
	MethodSecretBasic = "client_secret_basic"
	MethodSecretPost  = "client_secret_post"
)

// AllowsGrant reports whether the client may use grant.
func (c *Client) AllowsGrant(g string) bool { return slices.Contains(c.Grants, g) }

// Registry holds the clients from configuration.
type Registry struct {
	clients map[string]*Client
	// dummy is compared against when a client id is unknown, so the time
	// taken does not reveal which ids exist.
	dummy [32]byte
}

// NewRegistry builds the registry from a validated configuration.
func NewRegistry(cfg *config.Config) (*Registry, error) {
	r := &Registry{clients: map[string]*Client{}}
	for ti := range cfg.Tenants {
		t := &cfg.Tenants[ti]
		for ci := range t.Clients {
			cc := &t.Clients[ci]
			cl := &Client{
				ID:         cc.ID,
				Tenant:     t.ID,
				AuthMethod: cc.AuthMethod,
				Grants:     slices.Clone(cc.Grants),
				Scopes:     slices.Clone(cc.Scopes),
				Audiences:  slices.Clone(cc.Audiences),
				Policy:     t.Policy(cc),
				TLS:        cc.TLS,
			}
			if cc.SecretDigest != "" {
				if !SecretMethod(cc.AuthMethod) {
					// Validation refuses this; a registry never holds a
					// secret a certificate client could be reached with.
					return nil, fmt.Errorf("tenants[%d].clients[%d].secretDigest: not allowed for %s clients", ti, ci, cc.AuthMethod)
				}
				h, ok := strings.CutPrefix(cc.SecretDigest, "sha256:")
				raw, err := hex.DecodeString(h)
				if !ok || err != nil || len(raw) != 32 {
					return nil, fmt.Errorf("tenants[%d].clients[%d].secretDigest: malformed", ti, ci)
				}
				copy(cl.secretDigest[:], raw)
				cl.hasSecret = true
			}
			r.clients[cl.ID] = cl
		}
	}
	return r, nil
}

// anyGrant reports whether some client may use grant.
func (r *Registry) anyGrant(grant string) bool {
	for _, c := range r.clients {
		if c.AllowsGrant(grant) {
			return true
		}
	}
	return false
}

// anyPublic reports whether some client is public (authMethod none).
func (r *Registry) anyPublic() bool {
	for _, c := range r.clients {
		if c.AuthMethod == MethodNone {
			return true
		}
	}
	return false
}

// Client returns a client by id.
func (r *Registry) Client(id string) (*Client, bool) {
	c, ok := r.clients[id]
	return c, ok
}

// Credentials are what a request presented to authenticate its client.
type Credentials struct {
	// Basic is set when an Authorization: Basic header was present.
	Basic              bool
	BasicID, BasicPass string
	// PostID/PostSecret come from the form (client_secret_post, or the
	// client_id of certificate-authenticated clients).
	PostID, PostSecret string
	HasPostSecret      bool
	// Certificate authentication is delegated: CertAuth is called for
	// tls_client_auth and self_signed_tls_client_auth clients.
	CertAuth func(*Client) *Error
}

// Authenticate implements RFC 6749 §2.3 client authentication. Exactly one
// method may be used per request (§2.3: "MUST NOT use more than one").
func (r *Registry) Authenticate(cr Credentials) (*Client, *Error) {
	if cr.Basic && (cr.HasPostSecret || (cr.PostID != "" && cr.PostID != cr.BasicID)) {
		return nil, ErrInvalidRequest("more than one client authentication method was used")
	}
	if cr.Basic {
		// RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic.
		id, err1 := url.QueryUnescape(cr.BasicID)
		secret, err2 := url.QueryUnescape(cr.BasicPass)
		if err1 != nil || err2 != nil {
			return nil, ErrInvalidClient("malformed-basic")
		}
		return r.checkSecret(id, secret, MethodSecretBasic)
	}
	if cr.HasPostSecret {
		return r.checkSecret(cr.PostID, cr.PostSecret, MethodSecretPost)
	}
	if cr.PostID == "" {
		return nil, ErrInvalidClient("no-credentials")
	}
	cl, ok := r.clients[cr.PostID]
	if !ok {
		return nil, ErrInvalidClient("unknown-client")
	}
	switch cl.AuthMethod {
	case MethodNone:
		// A public client (RFC 6749 §2.1): identified, not authenticated.
		return cl, nil
	case "tls_client_auth", "self_signed_tls_client_auth":
		if cr.CertAuth == nil {
			return nil, errCertificateClient("certificate-auth-unavailable")
		}
		if e := cr.CertAuth(cl); e != nil {
			return nil, e
		}
		return cl, nil
	default:
		// A secret client that sent only its id: no credentials.
		return nil, ErrInvalidClient("no-credentials")
	}
}

// Claimed is the registered client that credentials name, whether or not
// they authenticate it; nil when they name none. A failed authentication
// of a registered client is that client's tenant's event (a lockout
// counts it), never the anonymous "unknown" tenant's.
func (r *Registry) Claimed(cr Credentials) *Client {
	id := cr.PostID
	if cr.Basic {
		var err error
		if id, err = url.QueryUnescape(cr.BasicID); err != nil {
			return nil
		}
	}
	return r.clients[id]
}

// checkSecret authenticates a secret client that used method. A client
// authenticates only with its registered method (RFC 7591 §2
// token_endpoint_auth_method): a certificate client never with a secret,
// a client_secret_basic client never with a form secret, and the reverse.
// The digest comparison runs whatever the outcome, so the time taken does
// not reveal whether the id exists or which method it is registered with.
func (r *Registry) checkSecret(id, secret, method string) (*Client, *Error) {
	sum := sha256.Sum256([]byte(secret))
	cl, ok := r.clients[id]
	want := &r.dummy
	if ok && cl.hasSecret {
		want = &cl.secretDigest
	}
	match := subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	switch {
	case !ok:
		return nil, ErrInvalidClient("unknown-client")
	case !cl.hasSecret || cl.AuthMethod != method:
		return nil, ErrInvalidClient("method-not-registered")
	case !match:
		return nil, ErrInvalidClient("bad-secret")
	}
	return cl, nil
}

// errCertificateClient is invalid_client for a request that named a
// certificate client and sent no Authorization header: RFC 6749 §5.2 makes
// 401 (and its WWW-Authenticate challenge) mandatory only when the client
// used the Authorization header, and there is no challenge a certificate
// client could answer, so the answer is 400 without one.
func errCertificateClient(reason string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidClient, Description: "client authentication failed", Reason: reason}
}
