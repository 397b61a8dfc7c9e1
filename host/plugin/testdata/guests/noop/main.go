// Command noop is a test guest: it allows everything and accepts every event.
package main

import (
	"stellaops.org/authority/abi"
	"stellaops.org/authority/sdk"
)

func init() {
	sdk.HandleDecision(func(*abi.DecisionInput) abi.Decision { return abi.Allowed() })
	sdk.HandleEvent(func(*abi.Event) error { return nil })
}

func main() {}
