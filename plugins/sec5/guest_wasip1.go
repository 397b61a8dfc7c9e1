//go:build wasip1

package main

import (
	"os"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

// sec5 is this instance's policy: an instance serves one tenant, so its
// configuration is that tenant's.
var sec5 = policy{host: hostFuncs{
	config:   sdk.Config,
	now:      sdk.Now,
	incrMany: sdk.CounterIncrMany,
	audit:    sdk.Audit,
	logError: logStderr,
}}

func init() {
	sdk.HandleDecision(func(in *abi.DecisionInput) abi.Decision { return sec5.decide(in) })
	sdk.HandleEvent(func(ev *abi.Event) error { return sec5.event(ev) })
}

// logStderr writes one line to standard error (a rate-limited guest log
// line without the log grant, as SEC2 and SEC3 do).
func logStderr(msg string) { _, _ = os.Stderr.WriteString(msg + "\n") }
