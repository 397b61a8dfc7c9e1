package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/dpop"
	"stellaops.org/authority/host/keys"
	"stellaops.org/authority/host/store"
	"stellaops.org/authority/host/telemetry"
	"stellaops.org/authority/host/users"
)

// Service issues, introspects and revokes tokens.
type Service struct {
	cfg      *config.Config
	Registry *Registry
	keys     *keys.Set
	store    store.TokenStore
	log      *slog.Logger
	now      func() time.Time
	plugins  PolicyDecider

	// What the service reports to: metrics, traces and the audit sinks.
	metrics *telemetry.Metrics
	tracing *telemetry.Tracing
	// audit takes every security event (others and the trail); others is
	// the log and the plugins.
	audit, others audit.Sink
	// trail is the durable audit trail (nil with audit.sink log). With
	// refuseWithoutTrail, no token leaves before its issuance record is
	// durable in it, waited for at most trailTimeout.
	trail              Trail
	refuseWithoutTrail bool
	trailTimeout       time.Duration

	// The native sender constraints: the DPoP verifier (nil when DPoP was
	// off at start; a reload that turns DPoP off keeps it, and sender.dpop
	// decides), the resolved security.senderConstraints and the
	// certificates client authentication checks against.
	dpop   *dpop.Verifier
	sender senderPolicy
	certs  Certificates
	// users and passwords serve the password grant (nil without one).
	users     users.Store
	passwords *users.Verifier
	// metadata is the encoded RFC 8414 document of cfg (MetadataJSON).
	metadata []byte
}

// Options are the dependencies of a Service.
type Options struct {
	Config *config.Config
	Keys   *keys.Set
	Store  store.TokenStore
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Metrics and Tracing may be nil (nothing is recorded).
	Metrics *telemetry.Metrics
	Tracing *telemetry.Tracing
	// Audit receives every security event: the log and the plugins (a log
	// sink on Logger when nil).
	Audit audit.Sink
	// Trail is the durable audit trail (nil with audit.sink log); every
	// event goes to it too. With RefuseWithoutTrail (audit.onFailure
	// refuse), no token is handed out before its issuance record is
	// durable in it, waited for at most TrailTimeout (5 s when zero).
	Trail              Trail
	RefuseWithoutTrail bool
	TrailTimeout       time.Duration
	// DPoP verifies proofs; required when
	// security.senderConstraints.dpop.enabled is true.
	DPoP *dpop.Verifier
	// Certificates are the tenants' trust roots and the certificate
	// clients' rules (mTLS client authentication).
	Certificates Certificates
	// Plugins, when set, decides after the native checks (deny only).
	Plugins PolicyDecider
	// Users are the password grant's users; nil: the tenants[].users of
	// Config (storage.users config).
	Users users.Store
	// Passwords checks passwords; nil: one built from
	// security.passwords when a client may use the password grant.
	Passwords *users.Verifier
}

// NewService wires a Service from validated configuration.
func NewService(o Options) (*Service, error) {
	reg, err := NewRegistry(o.Config)
	if err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Service{cfg: o.Config, Registry: reg, keys: o.Keys, store: o.Store, log: o.Logger, now: o.Now, plugins: o.Plugins,
		users: o.Users, passwords: o.Passwords}
	if s.users == nil {
		if s.users, err = ConfigUsers(o.Config); err != nil {
			return nil, err
		}
	}
	if s.passwords == nil && reg.anyGrant("password") {
		if s.passwords, err = NewPasswordVerifier(o.Config); err != nil {
			return nil, err
		}
	}
	s.metrics, s.tracing, s.audit, s.dpop, s.certs = o.Metrics, o.Tracing, o.Audit, o.DPoP, o.Certificates
	if s.audit == nil {
		s.audit = audit.LogSink{Logger: o.Logger}
	}
	s.others = s.audit
	if o.Trail != nil {
		s.trail, s.refuseWithoutTrail, s.trailTimeout = o.Trail, o.RefuseWithoutTrail, o.TrailTimeout
		s.audit = audit.Multi{s.others, o.Trail}
		if s.trailTimeout <= 0 {
			s.trailTimeout = 5 * time.Second
		}
	}
	s.sender = resolveSenderPolicy(o.Config)
	if s.sender.dpop && s.dpop == nil {
		return nil, errNoVerifier
	}
	if err := checkCertificates(o.Config, s.certs); err != nil {
		return nil, err
	}
	if s.metadata, err = encodeMetadata(o.Config); err != nil {
		return nil, err
	}
	return s, nil
}

// Request is what every endpoint gets from HTTP: the parsed form, the
// credentials and the connection facts the native checks need.
type Request struct {
	Form  url.Values
	Creds Credentials
	// Peer is the client certificate context (mTLS).
	Peer Peer
	// DPoP holds every value of the DPoP header.
	DPoP []string
	// Authorization is the raw Authorization header (fresh-auth).
	Authorization string
	Method        string
	// ViaMTLS is true when the request arrived on the HTTPS listener, whose
	// public URL is the mTLS alias.
	ViaMTLS       bool
	Path          string
	RemoteAddr    string
	UserAgent     string
	CorrelationID string
}

// TokenResponse is the RFC 6749 §5.1 success body.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
	// RefreshToken is set by the password and refresh_token grants for a
	// client allowed the refresh_token grant.
	RefreshToken string `json:"refresh_token,omitempty"`
	// Header carries response headers (DPoP-Nonce).
	Header http.Header `json:"-"`
	// jti is the token's id (for the audit record).
	jti string
}

// Cnf is the RFC 7800 confirmation claim (RFC 9449 §6, RFC 8705 §3.1).
type Cnf struct {
	JKT     string `json:"jkt,omitempty"`
	X5tS256 string `json:"x5t#S256,omitempty"`
}

// AccessClaims are the RFC 9068 claims of an access token.
type AccessClaims struct {
	Iss      string   `json:"iss"`
	Sub      string   `json:"sub"`
	Aud      []string `json:"aud"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
	Nbf      int64    `json:"nbf"`
	Jti      string   `json:"jti"`
	ClientID string   `json:"client_id"`
	Scope    string   `json:"scope,omitempty"`
	Tid      string   `json:"tid"`
	Cnf      *Cnf     `json:"cnf,omitempty"`
}

// TokenTypeJWT is the JOSE typ of access tokens (RFC 9068 §2.1).
const TokenTypeJWT = "at+jwt"

// Token handles POST /token and counts its outcome.
func (s *Service) Token(ctx context.Context, r *Request) (*TokenResponse, *Error) {
	out := tokenOutcome{TokenOutcome: telemetry.TokenOutcome{Tenant: "unknown", GrantType: "other", SenderConstraint: "none"}}
	var resp *TokenResponse
	var e *Error
	if err := s.admitTrail(); err != nil {
		e = ErrUnavailable("audit-unavailable", err)
	} else {
		resp, e = s.token(ctx, r, &out)
	}
	ev := tokenEvent(r, &out, e)
	if e == nil && s.refuseWithoutTrail {
		// audit.onFailure refuse: the token leaves only with its record.
		tctx, cancel := context.WithTimeout(ctx, s.trailTimeout)
		err := s.trail.RecordDurable(tctx, ev)
		cancel()
		if err == nil {
			s.metrics.Token(ctx, out.TokenOutcome)
			s.others.Record(ctx, ev)
			return resp, nil
		}
		if out.jti != "" {
			if _, rerr := s.store.Revoke(context.WithoutCancel(ctx), out.jti, s.now()); rerr != nil {
				s.log.ErrorContext(ctx, "authority.audit.revoke.failed", "jti", out.jti, "error", rerr.Error())
			}
		}
		resp, e = nil, ErrUnavailable("audit-unavailable", err)
		ev = tokenEvent(r, &out, e)
	}
	if e != nil {
		out.Error = e.Code
	}
	s.metrics.Token(ctx, out.TokenOutcome)
	s.audit.Record(ctx, ev)
	return resp, e
}

// admitTrail refuses a token request up front, under audit.onFailure
// refuse, while the audit trail cannot take records.
func (s *Service) admitTrail() error {
	if !s.refuseWithoutTrail {
		return nil
	}
	return s.trail.Admit()
}

// tokenEvent is the audit event of a token request's outcome.
func tokenEvent(r *Request, out *tokenOutcome, e *Error) audit.Event {
	ev := audit.Event{Type: abi.EventTokenIssued, Outcome: audit.OutcomeSuccess, CorrelationID: r.CorrelationID,
		Tenant: out.Tenant, Client: out.client, Subject: out.subjectOrClient(), Scopes: out.scopes, TokenID: out.jti,
		RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent, Annotations: annotationMap(out.annotations)}
	if e != nil {
		ev.Type, ev.Outcome, ev.Reason = abi.EventTokenDenied, audit.OutcomeFailure, e.Reason
		switch {
		case e.Status >= 500:
			ev.Outcome = audit.OutcomeError
		case e.Status == http.StatusTooManyRequests:
			ev.Outcome = audit.OutcomeRateLimited // a policy plugin's rate limit
		case e.Status == http.StatusLocked:
			ev.Outcome = audit.OutcomeLockedOut // a policy plugin's lockout
		}
	}
	if out.cnf.JKT != "" || out.cnf.X5tS256 != "" {
		ev.SenderConstraint = map[string]string{"jkt": out.cnf.JKT, "x5t#S256": out.cnf.X5tS256}
		if out.alg != "" {
			ev.SenderConstraint["alg"] = out.alg
		}
		if out.nonce != "" {
			ev.SenderConstraint["nonce"] = out.nonce
		}
	} else if out.bypass && e == nil {
		ev.SenderConstraint = map[string]string{"bypass": "true"}
	} else if out.DPoPResult != "" && e != nil {
		// A DPoP request refused before it bound a key (or a bypass a
		// plugin refused) keeps its native result: events plugins then see
		// every DPoP token request authority_dpop_proofs_total counts
		// (SEC5's nonce-miss ratio), and the record says why.
		ev.SenderConstraint = map[string]string{"dpop": abiDPoPResult(out.DPoPResult)}
	}
	return ev
}

// tokenOutcome is what a token request produced, for metrics and audit.
type tokenOutcome struct {
	telemetry.TokenOutcome
	client string
	// subject is the resource owner (password, refresh_token grants), as
	// presented when the request failed before verifying it.
	subject string
	jti     string
	scopes  []string
	cnf     Cnf
	alg     string // the DPoP proof's algorithm, when one bound the token
	nonce   string // the DPoP nonce status (abi.Nonce*), when a proof bound it
	bypass  bool   // issued unbound under allowTemporaryBypass
	// annotations are the plugin chain's, for the audit record.
	annotations []abi.KV
}

func (o *tokenOutcome) subjectOrClient() string {
	if o.subject != "" {
		return o.subject
	}
	return o.client
}

var knownGrants = []string{"client_credentials", "password", "refresh_token"}

func (s *Service) token(ctx context.Context, r *Request, out *tokenOutcome) (*TokenResponse, *Error) {
	if e := checkSingleValued(r.Form); e != nil {
		return nil, e
	}
	grant := r.Form.Get("grant_type")
	if grant == "" {
		return nil, ErrInvalidRequest("grant_type is required")
	}
	if slices.Contains(knownGrants, grant) {
		out.GrantType = grant
	}
	cl, e := s.authenticate(ctx, r)
	if e != nil {
		if claimed := s.Registry.Claimed(r.Creds); claimed != nil {
			out.Tenant, out.client = claimed.Tenant, claimed.ID
		}
		return nil, e
	}
	out.Tenant, out.client = cl.Tenant, cl.ID
	switch {
	case !slices.Contains(knownGrants, grant):
		return nil, &Error{Status: 400, Code: CodeUnsupportedGrantType, Description: "the grant_type is not supported", Reason: "unsupported-grant"}
	case !cl.AllowsGrant(grant):
		return nil, &Error{Status: 400, Code: CodeUnauthorizedClient, Description: "the client may not use this grant_type", Reason: "grant-not-allowed"}
	}
	switch grant {
	case "password":
		return s.passwordGrant(ctx, r, cl, out)
	case "refresh_token":
		return s.refreshGrant(ctx, r, cl, out)
	}
	scopes, e := grantScopes(cl, r.Form.Get("scope"))
	if e != nil {
		return nil, e
	}
	auds, e := grantAudiences(cl, r.Form)
	if e != nil {
		return nil, e
	}
	b, e := s.bind(ctx, r, cl, auds, out)
	if e != nil {
		return nil, e
	}
	out.scopes = scopes
	withNonce := nonceHeader(b)
	if e := s.decide(ctx, r, policyFacts{endpoint: abi.HookToken, grant: grant, subject: cl.ID, client: cl,
		scopes: scopes, audiences: auds, b: b, dpopPresent: len(r.DPoP) > 0, annotations: &out.annotations}); e != nil {
		return nil, withNonce(e)
	}
	resp, e := s.issue(ctx, cl, cl.ID, scopes, auds, b, "", time.Time{})
	if e != nil {
		return nil, withNonce(e)
	}
	out.jti = resp.jti
	if b.nonce != "" {
		resp.Header = http.Header{"Dpop-Nonce": {b.nonce}}
	}
	return resp, nil
}

// bind runs the native sender-constraint checks and records their
// result in out.
func (s *Service) bind(ctx context.Context, r *Request, cl *Client, auds []string, out *tokenOutcome) (binding, *Error) {
	b, e := s.bindToken(ctx, r, cl, auds)
	out.DPoPResult = b.dpopResult
	if e != nil {
		return b, e
	}
	out.SenderConstraint, out.cnf, out.alg, out.bypass = b.kind(), b.cnf, b.alg, b.dpopResult == "bypass"
	if b.cnf.JKT != "" {
		out.nonce = b.nonceStatus
	}
	return b, nil
}

func (s *Service) authenticate(ctx context.Context, r *Request) (*Client, *Error) {
	cr := r.Creds
	cr.CertAuth = func(cl *Client) *Error { return s.certAuth(ctx, r, cl) }
	cl, e := s.Registry.Authenticate(cr)
	if e != nil {
		if e.Code == CodeInvalidClient {
			s.log.InfoContext(ctx, "authority.client.authentication.failed", "reason", e.Reason, "correlation_id", r.CorrelationID)
		}
		return nil, e
	}
	return cl, nil
}

// issue signs and stores an access token. parent is its refresh family
// ("" for none) and authTime when the subject authenticated (zero: now).
func (s *Service) issue(ctx context.Context, cl *Client, subject string, scopes, auds []string, b binding, parent string, authTime time.Time) (*TokenResponse, *Error) {
	now := s.now().Truncate(time.Second)
	life := s.cfg.Tokens.AccessTokenLifetime.D()
	claims := AccessClaims{
		Iss:      s.sender.issuer,
		Sub:      subject,
		Aud:      auds,
		Iat:      now.Unix(),
		Nbf:      now.Unix(),
		Exp:      now.Add(life).Unix(),
		Jti:      newID(),
		ClientID: cl.ID,
		Scope:    strings.Join(scopes, " "),
		Tid:      cl.Tenant,
	}
	if b.cnf.JKT != "" || b.cnf.X5tS256 != "" {
		c := b.cnf
		claims.Cnf = &c
	}
	tok, err := s.keys.Sign(TokenTypeJWT, &claims)
	if err != nil {
		return nil, ErrServer(err)
	}
	rec := &store.Token{
		ID:                claims.Jti,
		Kind:              store.KindAccessToken,
		Tenant:            cl.Tenant,
		ClientID:          cl.ID,
		Subject:           subject,
		Scopes:            scopes,
		Audiences:         auds,
		IssuedAt:          now,
		ExpiresAt:         now.Add(life),
		Status:            store.StatusActive,
		SenderConstraint:  b.kind(),
		KeyThumbprint:     b.cnf.JKT,
		SenderCertificate: b.cnf.X5tS256,
		ParentID:          parent,
		AuthTime:          authTime,
	}
	// The response is sent only after the store reports the token durable.
	if err := s.store.Put(ctx, rec); err != nil {
		return nil, storeUnavailable(err)
	}
	typ := "Bearer"
	if b.cnf.JKT != "" {
		typ = "DPoP"
	}
	return &TokenResponse{AccessToken: tok, TokenType: typ, ExpiresIn: int64(life / time.Second), Scope: claims.Scope, jti: rec.ID}, nil
}

// checkSingleValued enforces RFC 6749 §3.2: parameters MUST NOT be
// included more than once.
func checkSingleValued(f url.Values) *Error {
	for k, v := range f {
		if len(v) > 1 && k != "resource" && k != "audience" {
			return ErrInvalidRequest(repeatedParameter(k))
		}
	}
	return nil
}

// grantScopes returns the sorted, de-duplicated scopes to grant: the
// requested ones, each registered for the client, or all of the client's
// scopes when none are requested (RFC 6749 §3.3).
func grantScopes(cl *Client, requested string) ([]string, *Error) {
	if strings.TrimSpace(requested) == "" {
		out := slices.Clone(cl.Scopes)
		slices.Sort(out)
		return slices.Compact(out), nil
	}
	parts := strings.Fields(requested)
	for _, p := range parts {
		if !slices.Contains(cl.Scopes, p) {
			return nil, &Error{Status: 400, Code: CodeInvalidScope, Description: "a requested scope is not allowed for this client", Reason: "scope-not-allowed"}
		}
	}
	slices.Sort(parts)
	return slices.Compact(parts), nil
}

// grantAudiences resolves the audiences from RFC 8707 `resource` or the
// common `audience` parameter; each must be registered for the client. With
// none requested, every registered audience is granted.
func grantAudiences(cl *Client, f url.Values) ([]string, *Error) {
	req := append(slices.Clone(f["resource"]), f["audience"]...)
	if len(req) == 0 {
		out := slices.Clone(cl.Audiences)
		if len(out) == 0 {
			return nil, &Error{Status: 400, Code: CodeInvalidTarget, Description: "the client has no registered audience", Reason: "no-audience"}
		}
		slices.Sort(out)
		return slices.Compact(out), nil
	}
	for _, a := range req {
		if !slices.Contains(cl.Audiences, a) {
			return nil, &Error{Status: 400, Code: CodeInvalidTarget, Description: "a requested resource or audience is not allowed for this client", Reason: "audience-not-allowed"}
		}
	}
	slices.Sort(req)
	return slices.Compact(req), nil
}

// knownParameters are the request parameters the endpoints read; only
// these are ever named in an error_description. Anything else a request
// sends is the client's own text and is never echoed (RFC 6749 §5.2 limits
// error_description to %x20-21 / %x23-5B / %x5D-7E, and an echo would let a
// caller put its words in the server's mouth).
var knownParameters = map[string]bool{
	"grant_type": true, "scope": true, "client_id": true, "client_secret": true, "token": true,
	"token_type_hint": true, "username": true, "password": true, "refresh_token": true,
}

func repeatedParameter(k string) string {
	if knownParameters[k] {
		return "parameter " + k + " is repeated"
	}
	return "a parameter is repeated"
}

// SafeDescription returns s restricted to RFC 6749 §5.2's error_description
// characters (%x20-21 / %x23-5B / %x5D-7E), every other byte replaced by
// '?', and at most abi.MaxDescriptionLen bytes (what a plugin may send). Every error the HTTP layer writes passes
// through it, so no description, whatever produced it, can break the JSON
// string's intended content or a WWW-Authenticate quoted-string.
func SafeDescription(s string) string {
	const max = abi.MaxDescriptionLen
	clean := len(s) <= max
	for i := 0; clean && i < len(s); i++ {
		clean = descriptionByte(s[i])
	}
	if clean {
		return s
	}
	if len(s) > max {
		s = s[:max]
	}
	b := []byte(s)
	for i, c := range b {
		if !descriptionByte(c) {
			b[i] = '?'
		}
	}
	return string(b)
}

func descriptionByte(c byte) bool {
	return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\'
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Trail is the durable audit trail (audit.Writer).
type Trail interface {
	audit.Sink
	// Admit says whether a record would be taken now.
	Admit() error
	// RecordDurable returns once e is durable, or why it is not.
	RecordDurable(ctx context.Context, e audit.Event) error
}
