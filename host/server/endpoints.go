package server

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"stellaops.org/authority/host/oauth"
)

func (s *Server) token(c *gin.Context, r *oauth.Request) {
	resp, e := s.svc.Load().Token(c.Request.Context(), r)
	if e != nil {
		s.fail(c, r, e)
		return
	}
	ok(c, resp.Header, resp)
}

func (s *Server) introspect(c *gin.Context, r *oauth.Request) {
	resp, e := s.svc.Load().Introspect(c.Request.Context(), r)
	if e != nil {
		s.fail(c, r, e)
		return
	}
	noStore(c)
	c.JSON(http.StatusOK, resp)
}

func (s *Server) revoke(c *gin.Context, r *oauth.Request) {
	if e := s.svc.Load().Revoke(c.Request.Context(), r); e != nil {
		s.fail(c, r, e)
		return
	}
	noStore(c)
	c.Status(http.StatusOK)
}

func (s *Server) freshAuth(c *gin.Context, r *oauth.Request) {
	resp, e := s.svc.Load().FreshAuth(c.Request.Context(), r)
	if e != nil {
		s.fail(c, r, e)
		return
	}
	ok(c, resp.Header, resp)
}

func (s *Server) jwks(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/jwk-set+json", s.keys.JWKS())
}

// wellKnown serves the RFC 8414 document of the running configuration:
// the bytes the current Service built, so a reload that swaps the Service
// swaps the document with it, and both listeners and both well-known paths
// answer the same bytes.
func (s *Server) wellKnown(c *gin.Context) {
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/json", s.svc.Load().MetadataJSON())
}
