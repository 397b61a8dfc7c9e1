package postgres_test

import (
	"testing"

	"stellaops.org/authority/host/store/postgres"
	"stellaops.org/authority/host/users"
	"stellaops.org/authority/host/users/userstest"
)

func TestUserContract(t *testing.T) {
	userstest.Run(t, func(t *testing.T) users.Store { return openStore(t, postgres.Options{}).Users() })
}
