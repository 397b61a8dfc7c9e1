package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"stellaops.org/authority/host/oauth"
)

// adminReload re-reads the configuration and swaps in the new clients,
// tenants and plugin set, or keeps the old ones serving when the new set
// fails. It requires the admin token; without one configured it does not
// exist.
func (s *Server) adminReload(c *gin.Context) {
	if !s.hasAdmin || s.reload == nil {
		writeError(c, &oauth.Error{Status: 404, Code: "not_found", Description: "no such endpoint"})
		return
	}
	tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(tok))
	if !ok || subtle.ConstantTimeCompare(sum[:], s.adminKey[:]) != 1 {
		e := &oauth.Error{Status: 401, Code: oauth.CodeInvalidToken, Description: "admin token required"}
		writeError(c, e.WithHeader("WWW-Authenticate", `Bearer realm="authority-admin"`))
		return
	}
	s.log.InfoContext(c.Request.Context(), "authority.config.reload", "trigger", "admin")
	if err := s.reload(c.Request.Context()); err != nil { // Reload logs and counts the failure
		c.JSON(http.StatusConflict, gin.H{"reloaded": false, "error": err.Error()})
		return
	}
	c.JSON(http.StatusOK, gin.H{"reloaded": true})
}
