//go:build wasip1

package main

import (
	"os"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

// sec3 is this instance's limiter: an instance serves one tenant, so its
// configuration is that tenant's.
var sec3 = limiter{host: hostFuncs{
	config:       sdk.Config,
	incr:         sdk.CounterIncr,
	incrMany:     sdk.CounterIncrMany,
	pseudonymize: sdk.Pseudonymize,
	audit:        sdk.Audit,
	logError:     logStderr,
}}

func init() {
	sdk.HandleDecision(func(in *abi.DecisionInput) abi.Decision { return sec3.decide(in) })
	sdk.HandleEvent(func(ev *abi.Event) error { return sec3.event(ev) })
}

// logStderr writes one line to standard error (a rate-limited guest log
// line without the log grant, as SEC2 does).
func logStderr(msg string) { _, _ = os.Stderr.WriteString(msg + "\n") }
