package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/host/store"
	"stellaops.org/authority/host/users"
)

// MethodNone is the token_endpoint_auth_method of public clients (RFC 7591
// §2): they send client_id and no credential.
const MethodNone = "none"

// errInvalidGrant is RFC 6749 §5.2 invalid_grant. The description never
// says which part failed (user, password, token, binding): reason does, in
// the audit record only.
func errInvalidGrant(desc, reason string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidGrant, Description: desc, Reason: reason}
}

const badCredentials = "the username or password is incorrect"

// passwordGrant is RFC 6749 §4.3. The plugin chain decides before the
// password is checked (with the presented username's subject), so a
// lockout or rate limit refuses without running the KDF and a locked
// account is no oracle for the right password; native checks (client,
// scopes, audiences, DPoP, mTLS) come first, as for client_credentials.
func (s *Service) passwordGrant(ctx context.Context, r *Request, cl *Client, out *tokenOutcome) (*TokenResponse, *Error) {
	username, password := r.Form.Get("username"), r.Form.Get("password")
	if username == "" || password == "" {
		return nil, ErrInvalidRequest("username and password are required")
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
	if s.users == nil || s.passwords == nil {
		return nil, ErrServer(errors.New("the password grant has no user store"))
	}
	u, err := s.users.Lookup(ctx, cl.Tenant, username)
	switch {
	case errors.Is(err, users.ErrNotFound):
		u = nil
	case err != nil:
		return nil, ErrUnavailable("user-store", err)
	}
	out.subject = username
	withNonce := nonceHeader(b)
	if e := s.decide(ctx, r, policyFacts{endpoint: abi.HookToken, grant: "password", subject: out.subject, client: cl,
		scopes: scopes, audiences: auds, b: b, dpopPresent: len(r.DPoP) > 0, annotations: &out.annotations}); e != nil {
		return nil, withNonce(e)
	}
	hash := ""
	if u != nil && !u.Disabled {
		hash = u.PasswordHash
	}
	ok, err := s.passwords.Check(ctx, hash, password)
	switch {
	case errors.Is(err, users.ErrBusy):
		return nil, withNonce(ErrUnavailable("password-checks-busy", err))
	case errors.Is(err, users.ErrMalformedHash):
		s.log.ErrorContext(ctx, "authority.password.hash.malformed", "tenant", cl.Tenant, "error", err.Error(), "correlation_id", r.CorrelationID)
		return nil, withNonce(errInvalidGrant(badCredentials, "password-hash-malformed"))
	case err != nil:
		return nil, withNonce(ErrUnavailable("password-check", err))
	case u == nil:
		return nil, withNonce(errInvalidGrant(badCredentials, "unknown-user"))
	case u.Disabled:
		return nil, withNonce(errInvalidGrant(badCredentials, "user-disabled"))
	case !ok:
		return nil, withNonce(errInvalidGrant(badCredentials, "bad-password"))
	}
	// Scope limits of the user are applied only now: an invalid_scope
	// before the password check would say the user exists.
	if scopes, e = userScopes(u, scopes, r.Form.Get("scope") != ""); e != nil {
		return nil, withNonce(e)
	}
	out.scopes = scopes
	now := s.now().Truncate(time.Second)
	g := grantFacts{client: cl, subject: u.Username, scopes: scopes, auds: auds, b: b, authTime: now}
	return s.issueWithRefresh(ctx, g, nil, out)
}

// userScopes narrows scopes to a user's limit (nil: none). Explicitly
// requested scopes outside it are invalid_scope; defaulted ones are dropped.
func userScopes(u *users.User, scopes []string, requested bool) ([]string, *Error) {
	if u.Scopes == nil {
		return scopes, nil
	}
	var out []string
	for _, sc := range scopes {
		switch {
		case slices.Contains(u.Scopes, sc):
			out = append(out, sc)
		case requested:
			return nil, &Error{Status: 400, Code: CodeInvalidScope, Description: "a requested scope is not allowed for this user", Reason: "scope-not-allowed-for-user"}
		}
	}
	return out, nil
}

// grantFacts are what a new token pair is issued from.
type grantFacts struct {
	client   *Client
	subject  string
	scopes   []string
	auds     []string
	b        binding // the access token's binding
	authTime time.Time
	family   string // the refresh family (its first token's ID); "" for a new one
	// rtScopes and rtAuds are the new refresh token's, when they differ
	// from the access token's: RFC 6749 §6 keeps a refresh token's scope
	// when a refresh asks for less.
	rtScopes, rtAuds []string
}

// issueWithRefresh issues the access token and, when the client may use
// the refresh_token grant, a refresh token of g.family (a new family when
// empty). A public client's refresh token is bound to the DPoP key and
// certificate of the request (RFC 9449 §5, RFC 8705 §4); without either it
// gets none, since an unbound refresh token of a public client could be
// used by anyone holding it. A confidential client's refresh token is
// bound to the client through its authentication. Both are durable
// before the response. before, when set, runs after both are stored and
// before the answer (the rotation of the refresh token presented).
func (s *Service) issueWithRefresh(ctx context.Context, g grantFacts, before func() *Error, out *tokenOutcome) (*TokenResponse, *Error) {
	cl := g.client
	var raw string
	var rt *store.Token
	public := cl.AuthMethod == MethodNone
	if cl.AllowsGrant("refresh_token") && (!public || g.b.cnf.JKT != "" || g.b.cnf.X5tS256 != "") {
		now := s.now()
		rtc := s.cfg.Tokens.RefreshToken
		exp := now.Add(rtc.IdleLifetime.D())
		if end := g.authTime.Add(rtc.AbsoluteLifetime.D()); end.Before(exp) {
			exp = end
		}
		if !now.Before(exp) {
			return nil, nonceHeader(g.b)(errInvalidGrant("the refresh token is invalid, expired or revoked", "refresh-expired"))
		}
		raw = newRefreshToken()
		rt = &store.Token{ID: refreshID(raw), Kind: store.KindRefreshToken, Tenant: cl.Tenant, ClientID: cl.ID,
			Subject: g.subject, Scopes: orElse(g.rtScopes, g.scopes), Audiences: orElse(g.rtAuds, g.auds), IssuedAt: now, ExpiresAt: exp,
			ParentID: g.family, AuthTime: g.authTime, SenderConstraint: abi.ConstraintNone}
		if public {
			rt.SenderConstraint, rt.KeyThumbprint, rt.SenderCertificate = g.b.kind(), g.b.cnf.JKT, g.b.cnf.X5tS256
		}
		if err := s.store.Put(ctx, rt); err != nil {
			return nil, nonceHeader(g.b)(storeUnavailable(err))
		}
		if g.family == "" {
			g.family = rt.ID
		}
	}
	resp, e := s.issue(ctx, cl, g.subject, g.scopes, g.auds, g.b, g.family, g.authTime)
	if e == nil && before != nil {
		e = before()
	}
	if e != nil {
		if rt != nil {
			s.revokeQuietly(ctx, rt.ID)
		}
		if resp != nil {
			s.revokeQuietly(ctx, resp.jti)
		}
		return nil, nonceHeader(g.b)(e)
	}
	resp.RefreshToken = raw
	out.jti = resp.jti
	if g.b.nonce != "" {
		resp.Header = http.Header{"Dpop-Nonce": {g.b.nonce}}
	}
	return resp, nil
}

func (s *Service) revokeQuietly(ctx context.Context, id string) {
	if _, err := s.store.Revoke(context.WithoutCancel(ctx), id, s.now()); err != nil {
		s.log.ErrorContext(ctx, "authority.token.revoke.failed", "jti", id, "error", err.Error())
	}
}

// refreshGrant is RFC 6749 §6 with rotation (RFC 9700 §4.14.2): the
// presented token is used up and a new one of the same family returned; a
// token presented again after its rotation is reuse, which revokes the
// whole family (refresh and access tokens) on every node.
func (s *Service) refreshGrant(ctx context.Context, r *Request, cl *Client, out *tokenOutcome) (*TokenResponse, *Error) {
	raw := r.Form.Get("refresh_token")
	if raw == "" {
		return nil, ErrInvalidRequest("refresh_token is required")
	}
	const inactiveRefresh = "the refresh token is invalid, expired or revoked"
	rec, err := s.store.Get(ctx, refreshID(raw))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errInvalidGrant(inactiveRefresh, "refresh-unknown")
	case err != nil:
		return nil, storeUnavailable(err)
	}
	if rec.Kind != store.KindRefreshToken || rec.Tenant != cl.Tenant || rec.ClientID != cl.ID {
		// RFC 6749 §6: the token must have been issued to this client.
		return nil, errInvalidGrant(inactiveRefresh, "refresh-foreign-client")
	}
	out.subject = rec.Subject
	now := s.now()
	switch {
	case rec.Status == store.StatusRotated:
		return nil, s.refreshReused(ctx, r, rec)
	case rec.Status != store.StatusActive:
		return nil, errInvalidGrant(inactiveRefresh, "refresh-revoked")
	case !now.Before(rec.ExpiresAt):
		return nil, errInvalidGrant(inactiveRefresh, "refresh-expired")
	}
	scopes, e := refreshScopes(cl, rec, r.Form.Get("scope"))
	if e != nil {
		return nil, e
	}
	auds, e := refreshAudiences(cl, rec, r.Form)
	if e != nil {
		return nil, e
	}
	// What the new refresh token keeps: the original grant, less what the
	// client (and, below, the user) lost since.
	keep, _ := refreshScopes(cl, rec, "")
	keepAuds, _ := refreshAudiences(cl, rec, nil)
	b, e := s.bind(ctx, r, cl, auds, out)
	if e != nil {
		return nil, e
	}
	withNonce := nonceHeader(b)
	// RFC 9449 §5 and RFC 8705 §4: a bound refresh token is used only with
	// its key and its certificate.
	if rec.KeyThumbprint != "" && b.cnf.JKT != rec.KeyThumbprint {
		return nil, withNonce(errInvalidGrant("the refresh token is bound to another DPoP key", "refresh-dpop-key-mismatch"))
	}
	if rec.SenderCertificate != "" && peerThumbprint(r) != rec.SenderCertificate {
		return nil, withNonce(errInvalidGrant("the refresh token is bound to another client certificate", "refresh-certificate-mismatch"))
	}
	if rec.Subject != "" {
		// The user may have been disabled or removed since: the family ends.
		u, e := s.userStillActive(ctx, rec)
		if e != nil {
			return nil, withNonce(e)
		}
		// A scope limit set on the user since the grant applies at once,
		// as a client's lost scopes do.
		if u.Scopes != nil {
			scopes = slices.DeleteFunc(slices.Clone(scopes), func(sc string) bool { return !slices.Contains(u.Scopes, sc) })
			keep = slices.DeleteFunc(keep, func(sc string) bool { return !slices.Contains(u.Scopes, sc) })
		}
	}
	if e := s.decide(ctx, r, policyFacts{endpoint: abi.HookToken, grant: "refresh_token", subject: rec.Subject, client: cl,
		scopes: scopes, audiences: auds, b: b, dpopPresent: len(r.DPoP) > 0, annotations: &out.annotations}); e != nil {
		return nil, withNonce(e)
	}
	out.scopes = scopes
	authTime := rec.AuthTime
	if authTime.IsZero() {
		authTime = rec.IssuedAt
	}
	g := grantFacts{client: cl, subject: rec.Subject, scopes: scopes, auds: auds, b: b, authTime: authTime, family: familyOf(rec),
		rtScopes: keep, rtAuds: keepAuds}
	// The new pair is stored before the old token is used up, so a failed
	// write leaves the client its old token (retrying is not reuse); the
	// rotation decides who won when the token was presented twice at once,
	// and the loser's request is reuse.
	return s.issueWithRefresh(ctx, g, func() *Error {
		_, err := s.store.Rotate(ctx, rec.ID, s.now())
		switch {
		case errors.Is(err, store.ErrNotActive):
			return s.refreshReused(ctx, r, rec)
		case err != nil:
			return storeUnavailable(err)
		}
		return nil
	}, out)
}

// userStillActive ends a family whose user was disabled or removed.
// It returns the user as stored now.
func (s *Service) userStillActive(ctx context.Context, rec *store.Token) (*users.User, *Error) {
	if s.users == nil {
		return nil, ErrServer(errors.New("refresh tokens without a user store"))
	}
	u, err := s.users.Lookup(ctx, rec.Tenant, rec.Subject)
	if err != nil && !errors.Is(err, users.ErrNotFound) {
		return nil, ErrUnavailable("user-store", err)
	}
	if err == nil && !u.Disabled {
		return u, nil
	}
	n, rerr := s.revokeFamily(ctx, rec)
	s.log.InfoContext(ctx, "authority.token.refresh.user_inactive", "tenant", rec.Tenant, "client", rec.ClientID, "revoked", n)
	if rerr != nil {
		return nil, storeUnavailable(rerr)
	}
	return nil, errInvalidGrant("the refresh token is invalid, expired or revoked", "refresh-user-inactive")
}

// refreshReused handles a rotated refresh token presented again: the
// whole family is revoked and the event audited.
func (s *Service) refreshReused(ctx context.Context, r *Request, rec *store.Token) *Error {
	n, err := s.revokeFamily(ctx, rec)
	s.log.WarnContext(ctx, "authority.token.refresh.reused", "tenant", rec.Tenant, "client", rec.ClientID,
		"family", familyOf(rec), "revoked", n, "correlation_id", r.CorrelationID)
	ev := audit.Event{Type: abi.EventRefreshReused, Outcome: audit.OutcomeFailure, Tenant: rec.Tenant, Client: rec.ClientID,
		Subject: rec.Subject, Scopes: rec.Scopes, Reason: "refresh-reused", CorrelationID: r.CorrelationID,
		RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent, TokenID: familyOf(rec)}
	// The family's binding is a fact about the stored token, not a proof
	// verified now: it goes in the properties, and the event's sender
	// constraint stays "none" (what plugins see, abi/SPEC.md §4.6).
	if rec.KeyThumbprint != "" || rec.SenderCertificate != "" {
		ev.Properties = map[string]string{}
		if rec.KeyThumbprint != "" {
			ev.Properties["family.jkt"] = rec.KeyThumbprint
		}
		if rec.SenderCertificate != "" {
			ev.Properties["family.x5t#S256"] = rec.SenderCertificate
		}
	}
	s.audit.Record(ctx, ev)
	if err != nil {
		return storeUnavailable(err)
	}
	return errInvalidGrant("the refresh token is invalid, expired or revoked", "refresh-reused")
}

// revokeFamily revokes every active token of rec's refresh family.
func (s *Service) revokeFamily(ctx context.Context, rec *store.Token) (int64, error) {
	ctx = context.WithoutCancel(ctx)
	fam, now := familyOf(rec), s.now()
	var n int64
	if ok, err := s.store.Revoke(ctx, fam, now); err != nil {
		return 0, err
	} else if ok {
		n++
	}
	m, err := s.store.RevokeByParent(ctx, fam, now)
	return n + m, err
}

// familyOf is the ID of the first refresh token of rec's family (every
// later token and every access token of the family has it as ParentID).
func familyOf(rec *store.Token) string {
	if rec.ParentID != "" {
		return rec.ParentID
	}
	return rec.ID
}

// refreshScopes are RFC 6749 §6: the requested scope must not exceed the
// original grant; omitted, the original scopes. Scopes the client lost in
// a reload since are dropped (requested explicitly: invalid_scope).
func refreshScopes(cl *Client, rec *store.Token, requested string) ([]string, *Error) {
	if strings.TrimSpace(requested) == "" {
		var out []string
		for _, sc := range rec.Scopes {
			if slices.Contains(cl.Scopes, sc) {
				out = append(out, sc)
			}
		}
		return out, nil
	}
	parts := strings.Fields(requested)
	for _, p := range parts {
		if !slices.Contains(rec.Scopes, p) || !slices.Contains(cl.Scopes, p) {
			return nil, &Error{Status: 400, Code: CodeInvalidScope, Description: "the requested scope exceeds the original grant", Reason: "scope-exceeds-grant"}
		}
	}
	slices.Sort(parts)
	return slices.Compact(parts), nil
}

// refreshAudiences are the original audiences still registered for the
// client, or the requested subset of them (RFC 8707 §2.2).
func refreshAudiences(cl *Client, rec *store.Token, f map[string][]string) ([]string, *Error) {
	req := append(slices.Clone(f["resource"]), f["audience"]...)
	var out []string
	for _, a := range rec.Audiences {
		if slices.Contains(cl.Audiences, a) && (len(req) == 0 || slices.Contains(req, a)) {
			out = append(out, a)
		}
	}
	for _, a := range req {
		if !slices.Contains(out, a) {
			return nil, &Error{Status: 400, Code: CodeInvalidTarget, Description: "a requested resource or audience exceeds the original grant", Reason: "audience-exceeds-grant"}
		}
	}
	if len(out) == 0 {
		return nil, &Error{Status: 400, Code: CodeInvalidTarget, Description: "the client has no registered audience left of the original grant", Reason: "no-audience"}
	}
	return out, nil
}

// newRefreshToken is 256 random bits, base64url: the secret the client keeps.
func newRefreshToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// refreshID is the store ID of a refresh token: its SHA-256, base64url.
// The store never holds the token itself, so a read of the table (a backup,
// a replica) yields nothing to present; a fast hash is right for 256-bit
// random secrets.
func refreshID(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// nonceHeader returns a function that adds the binding's DPoP-Nonce to an
// error answer.
func nonceHeader(b binding) func(*Error) *Error {
	return func(e *Error) *Error {
		if b.nonce != "" {
			e.WithHeader("DPoP-Nonce", b.nonce)
		}
		return e
	}
}

// ConfigUsers is the users.Store of cfg's tenants[].users.
func ConfigUsers(cfg *config.Config) (*users.Memory, error) {
	var us []users.User
	for _, t := range cfg.Tenants {
		for _, u := range t.Users {
			us = append(us, users.User{Tenant: t.ID, Username: u.Username, PasswordHash: u.PasswordHash,
				Scopes: slices.Clone(u.Scopes), Disabled: u.Disabled})
		}
	}
	return users.NewMemory(us...)
}

// NewPasswordVerifier is the password Verifier of security.passwords.
func NewPasswordVerifier(cfg *config.Config) (*users.Verifier, error) {
	p := cfg.Security.Passwords
	n := p.MaxConcurrent
	if n == 0 {
		n = max(1, runtime.GOMAXPROCS(0)/4)
	}
	v, err := users.NewVerifier(users.VerifierOptions{
		Params:        users.Params{MemoryKiB: p.Argon2id.MemoryKiB, Iterations: p.Argon2id.Iterations, Parallelism: p.Argon2id.Parallelism},
		MaxConcurrent: n, MaxWaiting: p.MaxWaiting, WaitTimeout: p.WaitTimeout.D(), CPUShare: p.MaxCPUShare,
	})
	if err != nil {
		return nil, fmt.Errorf("security.passwords.%w", err)
	}
	return v, nil
}

// orElse is a unless it is empty, else b.
func orElse(a, b []string) []string {
	if len(a) > 0 {
		return a
	}
	return b
}
