//go:build wasip1

package main

import (
	"os"

	"stellaops.org/authority/sdk"
)

// sec2 is this instance's recorder: an instance serves one tenant, so its
// configuration is that tenant's.
var sec2 = recorder{host: hostFuncs{
	config:       sdk.Config,
	pseudonymize: sdk.Pseudonymize,
	audit:        sdk.Audit,
	logError:     logStderr,
}}

func init() { sdk.HandleEvent(sec2.handle) }

// logStderr writes one line to standard error, which the host turns into
// a rate-limited guest log line (authority.plugin.log, source "stderr")
// without any grant. sdk.Log would need the "log" grant, and a module
// importing an ungranted host function is refused at load (abi/SPEC.md
// §5), so SEC2 does not import it.
func logStderr(msg string) { _, _ = os.Stderr.WriteString(msg + "\n") }
